"""Trains the SST sentiment BiLSTM shipped as ``checkpoints/sst_bilstm.npz`` (and, with ``--arch``, the
other SST models shipped beside it).

The reference architecture (Li et al. 2016; Sec. 11.5.1): 60-d word embeddings learnt from small
random values, a BiLSTM with 60 hidden units per direction, a linear output layer without bias, five
classes. Training uses every labelled phrase of the training trees (the sentences included), Adam with
gradient clipping (the optax pieces of :mod:`lrpjax.train`), dropout on the embedded words (training
only: the explained model is the plain BiLSTM), and keeps the parameters with the best five-class
accuracy on the dev sentences. Batches are bucketed by length, so each padded length compiles once.

    python experiments/train_sst.py                      # the shipped model
    python experiments/train_sst.py --quick --out /tmp/sst_quick.npz

``--arch`` trains another model on the same data, with the same embedding, dropout, optimiser and dev
selection (the default, ``bilstm``, is the shipped model, unchanged):

* ``attention``: the BiLSTM over every step (``Recurrent(StandardCell(), H, bidirectional=True,
  sequences=True)``), additive attention pooling (``AttentionPool("additive", units=--attention-units)``,
  Bahdanau scores ``v . tanh(W h_t + b)``) and a dense head with bias;
* ``xlstm``: :func:`lrpjax.models.xlstm.xlstm_stack` over the embedded words (``--blocks``, e.g. ``"ms"``:
  an mLSTM block, then an sLSTM block), the post-blocks layer norm, mean pooling over the words, a dense head;
* ``mamba``: ``--layers`` Mamba blocks (``MambaBlock(d_state=--d-state, expand=--expand)``), the final
  RMSNorm, mean pooling over the words, a dense head.

These are written with :func:`lrpjax.io.checkpoints.save_model` as a model over token ids (the embedding
table as its first layer, ``Embedding(E, name="embed")``) with the vocabulary, the treebank tokenizer
and the five class names, so ``lrpjax explain --checkpoint checkpoints/sst_attention.npz "a film"`` reads
them; the BiLSTM keeps the SST bundle's format (:class:`lrpjax.app.model.SSTModel`).

    python experiments/train_sst.py --arch attention --out checkpoints/sst_attention.npz

At the end it prints (and stores in the checkpoint's metadata) dev and test accuracy on full sentences:
five-class, and binary (non-neutral sentences; positive when the largest of the four non-neutral
scores is class 3 or 4).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from functools import partial
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
from lrpjax.data.sst import LABEL_NAMES, UNK  # noqa: E402
from lrpjax.io import checkpoints  # noqa: E402

ARCHS = ("bilstm", "attention", "xlstm", "mamba")
# Options of the other architectures: left out of the BiLSTM's metadata, which stays as it was.
ARCH_OPTIONS = ("grid", "time_limit", "max_steps", "arch", "attention_units", "blocks", "heads", "inner", "ffn_inner", "layers", "d_state", "expand")

# Length buckets for training (phrases are short: median 5 tokens, longest 52); few, since each
# compiles once (~10 s on two cores) while padding costs little.
TRAIN_GRID = (3, 6, 10, 16, 24, 34, 56)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default=None, help="checkpoint to write (default checkpoints/sst_<arch>.npz)")
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
    parser.add_argument("--grid", default=None,
                        help="comma-separated padded lengths of the training batches (default: "
                             + ",".join(map(str, TRAIN_GRID)) + "); fewer lengths, fewer compilations")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="stop training after this many seconds (then select on dev as usual); none by default")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop training after this many steps (reproduces a time-limited run: its metadata "
                             "records the steps it made)")
    parser.add_argument("--E", type=int, default=60, help="embedding size")
    parser.add_argument("--H", type=int, default=60, help="hidden units per direction (bilstm, attention)")
    parser.add_argument("--arch", choices=ARCHS, default="bilstm",
                        help="the model (module docstring); the default is the shipped BiLSTM")
    parser.add_argument("--attention-units", type=int, default=32, help="attention: hidden size of the additive scores")
    parser.add_argument("--blocks", default="ms", help="xlstm: one letter per block, 'm' mLSTM, 's' sLSTM")
    parser.add_argument("--heads", type=int, default=4, help="xlstm: heads of every block")
    parser.add_argument("--inner", type=int, default=None, help="xlstm: mLSTM up-projection size (default 2 E)")
    parser.add_argument("--ffn-inner", type=int, default=None, help="xlstm: sLSTM feed-forward size (default 2 E)")
    parser.add_argument("--layers", type=int, default=1, help="mamba: number of Mamba blocks")
    parser.add_argument("--d-state", type=int, default=8, help="mamba: state size N")
    parser.add_argument("--expand", type=int, default=2, help="mamba: inner channels I = expand * E")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = str(ROOT / "checkpoints" / f"sst_{args.arch}.npz")
    return args


def build_network(args: argparse.Namespace):
    """The classifier over embedded words (T, E) -> (5,) of ``args.arch`` (not the BiLSTM: that is
    :mod:`lrpjax.models.bilstm`), a :class:`~lrpjax.models.Sequential`."""
    from lrpjax.cells import StandardCell
    from lrpjax.models import Dense, Pool, Recurrent, Sequential
    from lrpjax.models.attention import AttentionPool
    from lrpjax.models.mamba import MambaBlock, RMSNorm
    from lrpjax.models.xlstm import xlstm_stack

    C = len(LABEL_NAMES)
    if args.arch == "attention":
        return Sequential((Recurrent(StandardCell(), args.H, bidirectional=True, sequences=True),
                           AttentionPool("additive", units=args.attention_units), Dense(C)))
    if args.arch == "xlstm":
        return xlstm_stack(args.blocks, C, heads=args.heads, inner=args.inner or 2 * args.E,
                           ffn_inner=args.ffn_inner or 2 * args.E, pool="mean")
    if args.arch == "mamba":
        blocks = tuple(MambaBlock(d_state=args.d_state, expand=args.expand) for _ in range(args.layers))
        return Sequential((*blocks, RMSNorm(), Pool("mean"), Dense(C)))
    raise ValueError(f"`arch` must be one of {ARCHS[1:]} here (the BiLSTM is lrpjax.models.bilstm); got {args.arch!r}.")


@partial(jax.jit, static_argnums=0)
def _batch_scores(apply, params, ids, mask):
    X = params["embed"][ids]
    return jax.vmap(lambda x, m: apply(params["model"], x, mask=m))(X, mask)


def scores_ids(apply, params, ids_list, batch_size: int = 256, grid=None) -> np.ndarray:
    """Class scores (N, C) of id sequences under ``apply(params["model"], table[ids], mask=...)``, in padded
    batches of the lengths of ``grid`` (None: the SST application's bucket lengths; one compilation per length)."""
    out = np.zeros((len(ids_list), len(LABEL_NAMES)), np.float64)
    rows = batch_size if len(ids_list) >= batch_size else max(1, 1 << max(len(ids_list) - 1, 0).bit_length())
    lengths = [len(ids) for ids in ids_list]
    for length, index in (buckets(lengths, rows) if grid is None else buckets(lengths, rows, grid)):
        ids, mask = pad_batch([ids_list[i] for i in index], length)
        full_ids = np.zeros((rows, length), np.int32)
        full_mask = np.zeros((rows, length), bool)
        full_mask[:, 0] = True                       # dummy rows: one valid step, results dropped
        full_ids[:len(index)], full_mask[:len(index)] = ids, mask
        out[index] = np.asarray(_batch_scores(apply, params, full_ids, full_mask))[:len(index)]
    return out


def make_loss(dropout: float, word_dropout: float, l2: float, apply=bilstm.apply):
    """loss(params, batch) -> scalar: weighted softmax cross-entropy of a padded batch, with dropout
    keyed by ``batch["key"]``; ``apply`` is the classifier over embedded words (default the BiLSTM)."""

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
        scores = jax.vmap(lambda x, m: apply(params["model"], x, mask=m))(X_in, batch["mask"])
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


def evaluate(params, vocab, examples, apply=None) -> dict[str, float]:
    ids = [vocab.encode(e.tokens)[0] for e in examples]
    labels = np.asarray([e.label for e in examples])
    scores = SSTModel(vocab, params).scores_ids(ids) if apply is None else scores_ids(apply, params, ids)
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
    if args.arch == "bilstm":
        network, apply = None, None
        model_params = bilstm.init(k_model, args.E, args.H, 5, jnp.float32)
    else:
        network = build_network(args)
        apply = network.apply
        model_params = network.init(k_model, input_size=args.E, dtype=jnp.float32)
    params = {"embed": args.embed_scale * jax.random.normal(k_embed, (len(vocab), args.E), jnp.float32),
              "model": model_params}
    ids_all = [vocab.encode(e.tokens)[0] for e in train_examples]
    labels_all = np.asarray([e.label for e in train_examples], dtype=np.int32)
    lengths = [len(ids) for ids in ids_all]
    grid = (16,) if args.quick else TRAIN_GRID if args.grid is None else tuple(int(g) for g in args.grid.split(","))
    rng = np.random.default_rng(args.seed)
    steps_per_epoch = len(make_batches(lengths, args.batch_size, np.random.default_rng(0), grid))
    lr = optax.exponential_decay(args.lr, steps_per_epoch, args.decay) if args.decay != 1.0 else args.lr
    tx = train.make_optimizer(optax.adam(lr), clip_norm=args.clip)
    opt_state = tx.init(params)
    loss = make_loss(args.dropout, args.word_dropout, args.l2) if apply is None else \
        make_loss(args.dropout, args.word_dropout, args.l2, apply)
    step = jax.jit(train.make_step(loss, tx))
    best = {"five_class": -1.0}
    best_params, count, start_time, losses = params, 0, time.time(), []
    history = []
    stopped = False
    for epoch in range(args.epochs):
        if stopped:
            break
        for length, index in make_batches(lengths, args.batch_size, rng, grid):
            if (args.time_limit is not None and time.time() - start_time > args.time_limit) or \
                    (args.max_steps is not None and count >= args.max_steps):
                stopped = True
                print(f"stopped after {count} steps (epoch {epoch})", flush=True)
                break
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
                acc = evaluate(params, vocab, dev, apply)
                history.append({"step": count, "epoch": epoch, "loss": float(np.mean(losses)), **acc})
                print(f"step {count} epoch {epoch} loss {np.mean(losses):.4f} dev five-class {acc['five_class']:.4f} "
                      f"binary {acc['binary']:.4f} ({time.time() - start_time:.0f} s)", flush=True)
                losses = []
                if acc["five_class"] > best["five_class"]:
                    best, best_params = {**acc, "step": count, "epoch": epoch}, jax.tree_util.tree_map(np.asarray, params)
    acc = evaluate(params, vocab, dev, apply)
    if acc["five_class"] > best["five_class"]:
        best, best_params = {**acc, "step": count, "epoch": epoch}, jax.tree_util.tree_map(np.asarray, params)
    test_acc = evaluate(best_params, vocab, test, apply)
    print(f"best dev five-class {best['five_class']:.4f} binary {best['binary']:.4f} (step {best['step']}); "
          f"test five-class {test_acc['five_class']:.4f} binary {test_acc['binary']:.4f}", flush=True)
    best_params = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), best_params)
    metadata = {
        "command": command,
        "quick": bool(args.quick),
        "training": {k: v for k, v in vars(args).items()
                     if k != "out" and (args.arch != "bilstm" or k not in ARCH_OPTIONS)},
        "train_examples": len(train_examples),
        "steps": count,
        **({"stopped_early": True} if stopped else {}),
        "best_step": best["step"],
        "seconds": round(time.time() - start_time, 1),
        "dev_accuracy": {"five_class": best["five_class"], "binary": best["binary"]},
        "test_accuracy": test_acc,
        "test_sentences": len(test),
        "history": history,
    }
    if network is None:
        path = SSTModel(vocab, best_params).save(args.out, metadata)
    else:
        path = save(args.out, network, best_params, vocab, metadata)
    print(f"wrote {path}", flush=True)
    return 0


def save(path, network, params, vocab, metadata) -> str:
    """Writes ``network`` with the embedding table as its first layer (``Embedding(E, name="embed")``), the
    vocabulary, the treebank tokenizer (lower-cased, unknown words as ``<unk>``) and the class names:
    a checkpoint ``lrpjax explain --checkpoint`` reads (:class:`lrpjax.app.bundle.TextModel`)."""
    from lrpjax.models.embedding import with_embedding

    model, model_params = with_embedding(network, dict(params["model"]), params["embed"], name="embed")
    return checkpoints.save_model(path, model, model_params, {"kind": "sst-" + metadata["training"]["arch"], **metadata},
                                  vocab=list(vocab.words), labels=list(LABEL_NAMES),
                                  tokenizer={"split": "sst", "lowercase": True, "unknown": UNK})


if __name__ == "__main__":
    sys.exit(main())
