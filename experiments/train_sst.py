"""Trains the SST sentiment BiLSTM shipped as ``checkpoints/sst_bilstm.npz``.

The reference architecture (Li et al. 2016; Sec. 11.5.1): 60-d word embeddings learnt from small
random values, a BiLSTM with 60 hidden units per direction, a linear output layer without bias, five
classes. Training uses every labelled phrase of the training trees (the sentences included), Adam with
gradient clipping (the optax pieces of :mod:`lrpjax.train`), dropout on the embedded words (training
only: the explained model is the plain BiLSTM), and keeps the parameters with the best five-class
accuracy on the dev sentences. Batches are bucketed by length, so each padded length compiles once.

    python experiments/train_sst.py                      # the shipped model
    python experiments/train_sst.py --quick --out /tmp/sst_quick.npz

At the end it prints (and stores in the checkpoint's metadata) dev and test accuracy on full sentences:
five-class, and binary (non-neutral sentences; positive when the largest of the four non-neutral
scores is class 3 or 4).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrpjax import train  # noqa: E402
from lrpjax.data.sst import Vocabulary, binary_accuracy, five_class_accuracy, load_sst, pad_batch  # noqa: E402
from lrpjax.models import bilstm  # noqa: E402
from lrpjax.app.model import SSTModel, buckets  # noqa: E402

# Length buckets for training (phrases are short: median 5 tokens, longest 52); few, since each
# compiles once (~10 s on two cores) while padding costs little.
TRAIN_GRID = (3, 6, 10, 16, 24, 34, 56)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "checkpoints" / "sst_bilstm.npz"), help="checkpoint to write")
    parser.add_argument("--quick", action="store_true", help="tiny run (a few hundred sentences) for tests")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--decay", type=float, default=0.6,
                        help="learning-rate factor per epoch (exponential decay; 1 keeps it constant)")
    parser.add_argument("--dropout", type=float, default=0.5, help="dropout rate on embedded words (training only)")
    parser.add_argument("--word-dropout", type=float, default=0.05,
                        help="probability of replacing a training word by <unk> (teaches the unknown word)")
    parser.add_argument("--l2", type=float, default=0.0, help="L2 penalty on the looked-up embeddings")
    parser.add_argument("--clip", type=float, default=5.0, help="global gradient-norm clipping")
    parser.add_argument("--embed-scale", type=float, default=0.1, help="std of the initial embeddings")
    parser.add_argument("--no-phrases", action="store_true", help="train on full sentences only")
    parser.add_argument("--eval-every", type=int, default=500, help="dev evaluation every this many steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--E", type=int, default=60, help="embedding size")
    parser.add_argument("--H", type=int, default=60, help="hidden units per direction")
    return parser.parse_args(argv)


def make_loss(dropout: float, word_dropout: float, l2: float):
    """loss(params, batch) -> scalar: weighted softmax cross-entropy of a padded batch, with dropout
    keyed by ``batch["key"]``."""

    def loss(params, batch):
        key_drop, key_word = jax.random.split(jax.random.wrap_key_data(batch["key"]))
        ids = batch["ids"]
        if word_dropout > 0:
            drop = jax.random.bernoulli(key_word, word_dropout, ids.shape) & batch["mask"]
            ids = jnp.where(drop, 1, ids)
        X = params["embed"][ids]
        if dropout > 0:
            keep = jax.random.bernoulli(key_drop, 1.0 - dropout, X.shape)
            X_in = jnp.where(keep, X / (1.0 - dropout), jnp.zeros((), X.dtype))
        else:
            X_in = X
        scores = jax.vmap(lambda x, m: bilstm.apply(params["model"], x, mask=m))(X_in, batch["mask"])
        xent = -jnp.take_along_axis(jax.nn.log_softmax(scores), batch["y"][:, None], axis=1)[:, 0]
        w = batch["w"]
        value = jnp.sum(w * xent) / jnp.maximum(jnp.sum(w), 1.0)
        if l2 > 0:
            per_word = jnp.sum(X * X, axis=-1) * batch["mask"]
            value = value + l2 * jnp.sum(per_word) / jnp.maximum(jnp.sum(w), 1.0)
        return value

    return loss


def make_batches(lengths, batch_size: int, rng: np.random.Generator, grid=TRAIN_GRID):
    """Shuffled batches of indices of equal padded length (one epoch)."""
    order = rng.permutation(len(lengths))
    batches = []
    for length, index in buckets(np.asarray(lengths)[order], batch_size, grid):
        batches.append((length, order[index]))
    rng.shuffle(batches)
    return batches


def evaluate(params, vocab, examples) -> dict[str, float]:
    model = SSTModel(vocab, params)
    ids = [vocab.encode(e.tokens)[0] for e in examples]
    labels = np.asarray([e.label for e in examples])
    scores = model.scores_ids(ids)
    return {"five_class": five_class_accuracy(scores, labels), "binary": binary_accuracy(scores, labels)}


def main(argv=None) -> int:
    args = parse_args(argv)
    command = ("python experiments/train_sst.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))).rstrip()
    sentences = load_sst("train")
    train_examples = sentences if args.no_phrases else load_sst("train", phrases=True)
    dev, test = load_sst("dev"), load_sst("test")
    if args.quick:
        # A few hundred short phrases and short sentences, one length bucket (one compilation):
        # checks the pipeline, not the accuracy.
        train_examples = [e for e in train_examples if len(e.tokens) <= 16][:640]
        dev = [e for e in dev if len(e.tokens) <= 16][:64]
        test = [e for e in test if len(e.tokens) <= 16][:64]
        args.epochs, args.eval_every = 1, 10
    vocab = Vocabulary.build(e.tokens for e in sentences)
    print(f"vocabulary {len(vocab)} words; {len(train_examples)} training examples; "
          f"dev {len(dev)}, test {len(test)} sentences", flush=True)

    key = jax.random.PRNGKey(args.seed)
    k_model, k_embed, key = jax.random.split(key, 3)
    params = {"embed": args.embed_scale * jax.random.normal(k_embed, (len(vocab), args.E), jnp.float32),
              "model": bilstm.init(k_model, args.E, args.H, 5, jnp.float32)}
    ids_all = [vocab.encode(e.tokens)[0] for e in train_examples]
    labels_all = np.asarray([e.label for e in train_examples], dtype=np.int32)
    lengths = [len(ids) for ids in ids_all]
    grid = (16,) if args.quick else TRAIN_GRID
    rng = np.random.default_rng(args.seed)
    steps_per_epoch = len(make_batches(lengths, args.batch_size, np.random.default_rng(0), grid))
    lr = optax.exponential_decay(args.lr, steps_per_epoch, args.decay) if args.decay != 1.0 else args.lr
    tx = train.make_optimizer(optax.adam(lr), clip_norm=args.clip)
    opt_state = tx.init(params)
    step = jax.jit(train.make_step(make_loss(args.dropout, args.word_dropout, args.l2), tx))
    best = {"five_class": -1.0}
    best_params, count, start_time, losses = params, 0, time.time(), []
    history = []
    for epoch in range(args.epochs):
        for length, index in make_batches(lengths, args.batch_size, rng, grid):
            ids, mask = pad_batch([ids_all[i] for i in index], length)
            B = len(index)
            w = np.zeros(args.batch_size, np.float32)
            w[:B] = 1.0
            y = np.zeros(args.batch_size, np.int32)
            y[:B] = labels_all[index]
            if B < args.batch_size:  # a short last batch: dummy rows of one pad token, weight 0
                ids = np.concatenate([ids, np.zeros((args.batch_size - B, length), np.int32)])
                mask = np.concatenate([mask, np.zeros((args.batch_size - B, length), bool)])
                mask[B:, 0] = True
            key, k_step = jax.random.split(key)
            batch = {"ids": ids, "mask": mask, "y": y, "w": w, "key": jax.random.key_data(k_step)}
            params, opt_state, loss = step(params, opt_state, batch)
            losses.append(float(loss))
            count += 1
            if count % args.eval_every == 0:
                acc = evaluate(params, vocab, dev)
                history.append({"step": count, "epoch": epoch, "loss": float(np.mean(losses)), **acc})
                print(f"step {count} epoch {epoch} loss {np.mean(losses):.4f} dev five-class {acc['five_class']:.4f} "
                      f"binary {acc['binary']:.4f} ({time.time() - start_time:.0f} s)", flush=True)
                losses = []
                if acc["five_class"] > best["five_class"]:
                    best, best_params = {**acc, "step": count, "epoch": epoch}, jax.tree_util.tree_map(np.asarray, params)
    acc = evaluate(params, vocab, dev)
    if acc["five_class"] > best["five_class"]:
        best, best_params = {**acc, "step": count, "epoch": args.epochs - 1}, jax.tree_util.tree_map(np.asarray, params)
    test_acc = evaluate(best_params, vocab, test)
    print(f"best dev five-class {best['five_class']:.4f} binary {best['binary']:.4f} (step {best['step']}); "
          f"test five-class {test_acc['five_class']:.4f} binary {test_acc['binary']:.4f}", flush=True)
    model = SSTModel(vocab, jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), best_params))
    metadata = {
        "command": command,
        "quick": bool(args.quick),
        "training": {k: v for k, v in vars(args).items() if k != "out"},
        "train_examples": len(train_examples),
        "steps": count,
        "best_step": best["step"],
        "seconds": round(time.time() - start_time, 1),
        "dev_accuracy": {"five_class": best["five_class"], "binary": best["binary"]},
        "test_accuracy": test_acc,
        "test_sentences": len(test),
        "history": history,
    }
    path = model.save(args.out, metadata)
    print(f"wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
