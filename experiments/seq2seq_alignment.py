"""Alignment of relevance in an encoder-decoder LSTM with attention, on a task whose alignment is known.

Task (reversal): a source of L tokens (L in [min_len, max_len], tokens from a vocabulary of ``symbols``
ids) is to be output reversed; the decoder reads BOS, y_1, ..., y_{L-1} (teacher forcing) and output
step t predicts y_{t+1} = source[L - 1 - t], so the source position that output step t copies is known:
``L - 1 - t``. The model (lrpjax.models.Seq2Seq: a bidirectional LSTM encoder, an LSTM decoder,
Luong's general attention) is trained here with optax (cross-entropy over the valid target steps).

For test pairs, every method's relevance matrix (target steps x (source + target) positions, summed over
the embedding) is computed for the reference next token at every step in one vmapped program
(``Program(..., "per_step")``), and its *alignment accuracy* is measured: how often the argmax over the
valid source positions of row t is ``L - 1 - t``; beside it, the raw attention weights' argmax, and the
share of each row's absolute relevance that lies on the source (the rest is on the earlier target tokens).

    python experiments/seq2seq_alignment.py                       # full size (a few minutes on 2 CPU cores)
    python experiments/seq2seq_alignment.py --quick --out /tmp/q  # seconds (tests)

Writes OUT/seq2seq_alignment.json, .md and .png (one example's matrix per method), and with
``--checkpoint`` the trained model (``checkpoints.save_model``: its config, the vocabulary and greedy decoding
from "<bos>", so ``checkpoints.load_model`` and ``lrpjax explain --checkpoint ... --source "3 5 7"`` read it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from dataclasses import dataclass

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import lrpjax  # noqa: E402
from lrpjax.core.cells import StandardCell  # noqa: E402
from lrpjax.core.rules import preset  # noqa: E402
from lrpjax.io import checkpoints  # noqa: E402
from lrpjax.methods.program import Program, explain_chunk  # noqa: E402
from lrpjax.models.seq2seq import Seq2Seq  # noqa: E402

PAD, BOS = 0, 1
KIND = "seq2seq-reversal"


@dataclass(frozen=True)
class Config:
    """Everything that decides the result (recorded in the JSON and the checkpoint)."""

    symbols: int = 10
    min_len: int = 4
    max_len: int = 8
    n_train: int = 6000
    n_test: int = 200
    data_seed: int = 0
    embed: int = 16
    encoder_units: int = 16
    units: int = 32
    steps: int = 1500
    batch: int = 64
    lr: float = 3e-3
    seed: int = 0
    eps: float = 1e-3
    all_methods: bool = True


QUICK = Config(symbols=6, min_len=3, max_len=4, n_train=256, n_test=8, embed=6, encoder_units=4, units=8,
               steps=30, batch=32, all_methods=False)


def vocabulary(config: Config) -> list[str]:
    """The words of the ids: "<pad>", "<bos>", then each symbol's id as its word ("2", ..., as in the figure)."""
    return ["<pad>", "<bos>"] + [str(i) for i in range(2, 2 + config.symbols)]


def reversal_pairs(config: Config, n: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` sources (L,) with ids in [2, 2 + symbols) and their decoder inputs [BOS, reversed[:-1]]."""
    rng = np.random.default_rng(seed)
    sources, inputs = [], []
    for _ in range(n):
        source = rng.integers(2, 2 + config.symbols, rng.integers(config.min_len, config.max_len + 1))
        sources.append(source)
        inputs.append(np.concatenate([[BOS], source[::-1][:-1]]))
    return sources, inputs


def labels_of(sources, T: int) -> tuple[np.ndarray, np.ndarray]:
    """The next-token labels (B, T) (the reversed source) and the aligned source positions (B, T), -1 beyond."""
    labels = np.zeros((len(sources), T), np.int32)
    aligned = np.full((len(sources), T), -1, np.int32)
    for b, s in enumerate(sources):
        labels[b, :len(s)] = s[::-1]
        aligned[b, :len(s)] = np.arange(len(s))[::-1]
    return labels, aligned


def model_of(config: Config) -> Seq2Seq:
    return Seq2Seq(config.max_len, StandardCell(), config.encoder_units, config.units, score="general")


def train_model(config: Config, model: Seq2Seq, X, mask, labels, log=print):
    """Adam on the cross-entropy of the valid target steps; returns (params, final loss)."""
    params = model.init(jax.random.PRNGKey(config.seed), config.symbols + 2, config.embed, jnp.float64)
    optimizer = optax.adam(config.lr)
    state = optimizer.init(params)
    S = model.source_steps

    def loss_fn(p, x, m, y):
        scores = jax.vmap(lambda x_, m_: model.apply(p, x_, mask=m_))(x, m)
        nll = optax.softmax_cross_entropy_with_integer_labels(scores, y)
        valid = m[:, S:]
        return jnp.sum(jnp.where(valid, nll, 0.0)) / jnp.sum(valid).astype(nll.dtype)

    @jax.jit
    def step(p, s, x, m, y):
        loss, grads = jax.value_and_grad(loss_fn)(p, x, m, y)
        updates, s = optimizer.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    rng = np.random.default_rng(config.seed)
    loss = float("nan")
    for k in range(config.steps):
        rows = rng.integers(0, len(X), config.batch)
        params, state, loss = step(params, state, X[rows], mask[rows], labels[rows])
        if k % 250 == 0 or k == config.steps - 1:
            log(f"step {k:5d}  loss {float(loss):.4f}")
    return params, float(loss)


def methods_of(model: Seq2Seq, eps: float, everything: bool = True) -> dict:
    """The compared methods by label (``everything=False``: two of them, for the quick run)."""
    modes = ("gate", "prop", "abs", "half", "attnlrp") if everything else ("gate",)
    methods = {f"LRP-all, attention {mode}": lrpjax.lrp(model.apply, preset("lrp-all", eps=eps, attention=mode))
               for mode in modes}
    if not everything:
        return {**methods, "Occlusion (f-diff)": lrpjax.occlusion(model.apply, "f")}
    methods["LRP-half, attention attnlrp"] = lrpjax.lrp(model.apply, preset("lrp-half", eps=eps, attention="attnlrp"))
    methods["Gradient x Input"] = lrpjax.gradient_x_input(model.apply)
    methods["Sensitivity"] = lrpjax.sensitivity(model.apply)
    methods["Integrated Gradients"] = lrpjax.integrated_gradients(model.apply, steps=16)
    methods["Occlusion (f-diff)"] = lrpjax.occlusion(model.apply, "f")
    methods["Contextual Decomposition"] = lrpjax.contextual_decomposition(model.apply)
    return methods


def alignment(matrices, mask, aligned, S: int) -> dict:
    """Alignment accuracy of matrices (B, T, S + T) (or attention weights (B, T, S)) over the valid output
    steps: the argmax over the valid source positions equals the aligned one; and the mean share of each
    row's absolute relevance on the source."""
    source = np.where(mask[:, None, :S], matrices[..., :S], -np.inf)
    hits = (source.argmax(-1) == aligned)[aligned >= 0]
    absolute = np.abs(matrices)
    shares = (absolute[..., :S].sum(-1) / np.maximum(absolute.sum(-1), 1e-300))[aligned >= 0]
    return {"accuracy": float(hits.mean()), "source_share": float(shares.mean()), "n_steps": int(hits.size)}


def run(config: Config, out: str, checkpoint: str | None = None, log=print) -> dict:
    os.makedirs(out, exist_ok=True)
    started = time.time()
    model = model_of(config)
    S, T = config.max_len, config.max_len
    sources, inputs = reversal_pairs(config, config.n_train, config.data_seed)
    X, mask = model.pack(sources, inputs, T)
    labels, _ = labels_of(sources, T)
    with jax.numpy_dtype_promotion("standard"):    # optax's step counts mix ints and floats
        params, loss = train_model(config, model, X, mask, labels, log)
    trained = time.time() - started

    test_sources, test_inputs = reversal_pairs(config, config.n_test, config.data_seed + 1)
    Xt, mt = model.pack(test_sources, test_inputs, T)
    yt, aligned = labels_of(test_sources, T)
    scores = np.asarray(jax.jit(jax.vmap(lambda x, m: model.apply(params, x, mask=m)))(Xt, mt))
    valid = mt[:, S:]
    token_accuracy = float((scores.argmax(-1) == yt)[valid].mean())
    greedy = [np.asarray(model.greedy(params, s, BOS, len(s))) for s in test_sources]
    exact = float(np.mean([np.array_equal(g, s[::-1]) for g, s in zip(greedy, test_sources)]))
    log(f"test: token accuracy {token_accuracy:.4f} (teacher forcing), exact reversal {exact:.4f} (greedy)")

    weights = np.asarray(jax.jit(jax.vmap(lambda x, m: model.weights(params, x, m)))(Xt, mt))
    results = {"Attention weights": alignment(weights, mt, aligned, S)}
    matrices = {"Attention weights": weights}
    index = jnp.arange(len(Xt), dtype=jnp.int32)
    for label, method in methods_of(model, config.eps, config.all_methods).items():
        t0 = time.time()
        program = Program((method,), "per_step", tokens=True)
        outputs = jax.jit(explain_chunk, static_argnums=0)(program, params, Xt, mt, yt, index)
        matrix = np.asarray(outputs.relevance)                     # (B, T, S + T)
        matrices[label] = matrix
        results[label] = alignment(matrix, mt, aligned, S)
        results[label]["seconds"] = round(time.time() - t0, 2)
        log(f"{label:32s} alignment {results[label]['accuracy']:.3f}  source share "
            f"{results[label]['source_share']:.3f}")

    record = {"config": dataclasses.asdict(config), "train_loss": loss, "train_seconds": round(trained, 1),
              "token_accuracy": token_accuracy, "exact_reversal": exact, "methods": results,
              "example": {"source": test_sources[0].tolist(), "target_input": test_inputs[0].tolist(),
                          "labels": yt[0, :len(test_sources[0])].tolist()}}
    with open(os.path.join(out, "seq2seq_alignment.json"), "w") as f:
        json.dump(record, f, indent=1)
    table = markdown(record)
    with open(os.path.join(out, "seq2seq_alignment.md"), "w") as f:
        f.write(table)
    figure(matrices, test_sources[0], test_inputs[0], S, os.path.join(out, "seq2seq_alignment.png"))
    if checkpoint:
        checkpoints.save_model(checkpoint, model, params, {"kind": KIND, "experiment": dataclasses.asdict(config),
                                                           "token_accuracy": token_accuracy, "exact_reversal": exact},
                               vocab=vocabulary(config), decoding={"bos": "<bos>", "eos": None, "steps": "source"})
    log(table)
    return record


def markdown(record: dict) -> str:
    lines = [f"Token accuracy (teacher forcing) {record['token_accuracy']:.4f}, exact reversals (greedy) "
             f"{record['exact_reversal']:.4f}; {next(iter(record['methods'].values()))['n_steps']} output steps.",
             "", "| method | alignment accuracy | relevance share on the source |", "| --- | --- | --- |"]
    for label, r in record["methods"].items():
        lines.append(f"| {label} | {r['accuracy']:.3f} | {r['source_share']:.3f} |")
    return "\n".join(lines) + "\n"


def figure(matrices: dict, source, target_input, S: int, path: str) -> None:
    """One panel per method: the (target step x source position) matrix of one example, each row scaled
    by its largest absolute value; the aligned cells outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    L = len(source)
    n = len(matrices)
    cols = 4
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax, (label, m) in zip(axes.flat, matrices.items()):
        block = m[0, :L, :L]
        block = block / np.maximum(np.abs(block).max(axis=1, keepdims=True), 1e-300)
        ax.imshow(block, cmap="bwr", vmin=-1, vmax=1)
        for t in range(L):
            ax.add_patch(plt.Rectangle((L - 1 - t - 0.5, t - 0.5), 1, 1, fill=False, lw=1.2, color="black"))
        ax.set_title(label, fontsize=8)
        ax.set_xticks(range(L), [str(int(s)) for s in source], fontsize=7)
        ax.set_yticks(range(L), [f"{int(y)}" for y in source[::-1]], fontsize=7)
        ax.set_xlabel("source token", fontsize=7)
        ax.set_ylabel("output token", fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("Reversal task: relevance of each output step over the source (rows scaled; boxes: true alignment)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny configuration that runs in seconds")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--checkpoint", default=None, help="write the trained model here (.npz)")
    args = parser.parse_args(argv)
    run(QUICK if args.quick else Config(), args.out, args.checkpoint)


if __name__ == "__main__":
    main()
