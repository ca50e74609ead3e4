"""Explain a model trained in PyTorch: a stacked BiGRU sentiment classifier on SST, imported into lrpjax.

1. trains, in PyTorch, an embedding (32-d), a 2-layer bidirectional GRU (32 units per direction) and a
   linear output on the SST training sentences (five classes; packed sequences, Adam, seeded; the
   epoch with the best dev accuracy is kept);
2. imports it with ``lrpjax.interop.from_torch(rnn, head, embedding)`` and checks parity on the test
   set: the largest absolute difference between PyTorch's and lrpjax's scores, sentence by sentence
   and through padded, masked batches;
3. explains a few test sentences with every method that applies to a GRU (LRP-all/-prop/-abs/-half,
   Gradient, Sensitivity, Gradient x Input, Occlusion f-diff / P-diff, random; Contextual
   Decomposition is defined for LSTMs only) and draws them as one heatmap per sentence;
4. explains the whole test set with ``lrpjax.datasets.explain_dataset`` (the four LRP presets and
   Gradient x Input in one compiled call per length bucket) and lists the words most often the most
   relevant one for a positive or a negative prediction.

    python examples/torch_sst_bigru.py                  # full run (a few minutes), writes examples/results/
    python examples/torch_sst_bigru.py --quick --out /tmp/bigru     # under a minute

Writes ``OUT/torch_sst_bigru.json`` (configuration, accuracies, parity, explanations) and
``OUT/torch_sst_bigru.png`` (the first sentence's heatmap), ``OUT/torch_sst_bigru_<k>.png`` for the others.
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import torch  # noqa: E402

import lrpjax  # noqa: E402
from lrpjax import interop  # noqa: E402
from lrpjax.viz import plot  # noqa: E402
from lrpjax import datasets as scale  # noqa: E402
from lrpjax.data.sst import LABEL_NAMES, Vocabulary, binary_accuracy, five_class_accuracy, load_sst  # noqa: E402
from lrpjax.rules import preset  # noqa: E402

NAME = "torch_sst_bigru"
EPS = 1e-3
FULL = {"embedding": 32, "hidden": 32, "layers": 2, "epochs": 12, "batch": 64, "lr": 3e-3, "dropout": 0.3,
        "train": None, "test": None}
QUICK = {**FULL, "epochs": 1, "train": 1500, "test": 300}
EXPLAINED = (0, 2, 7)   # indices into the test sentences of length 6..20, shown as heatmaps


class Classifier(torch.nn.Module):
    """Embedding -> stacked BiGRU -> linear output on cat(h_n[-2], h_n[-1])."""

    def __init__(self, vocab_size: int, config: dict):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab_size, config["embedding"], padding_idx=0)
        self.rnn = torch.nn.GRU(config["embedding"], config["hidden"], num_layers=config["layers"],
                                bidirectional=True, batch_first=True, dropout=config["dropout"])
        self.drop = torch.nn.Dropout(config["dropout"])
        self.head = torch.nn.Linear(2 * config["hidden"], len(LABEL_NAMES))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids (B, T) padded with 0, lengths (B,) -> scores (B, C)."""
        packed = torch.nn.utils.rnn.pack_padded_sequence(self.drop(self.embedding(ids)), lengths,
                                                         batch_first=True, enforce_sorted=False)
        _, h_n = self.rnn(packed)
        return self.head(self.drop(torch.cat([h_n[-2], h_n[-1]], dim=-1)))


def encode(vocab: Vocabulary, examples) -> tuple[list[np.ndarray], np.ndarray]:
    return [vocab.encode(ex.tokens)[0] for ex in examples], np.array([ex.label for ex in examples])


def batches(ids: list[np.ndarray], labels: np.ndarray, size: int, rng: np.random.Generator | None):
    order = np.arange(len(ids)) if rng is None else rng.permutation(len(ids))
    for start in range(0, len(ids), size):
        rows = order[start:start + size]
        lengths = np.array([len(ids[i]) for i in rows])
        padded = np.zeros((len(rows), lengths.max()), np.int64)
        for k, i in enumerate(rows):
            padded[k, :lengths[k]] = ids[i]
        yield torch.tensor(padded), torch.tensor(lengths), torch.tensor(labels[rows])


def torch_scores(net: Classifier, ids: list[np.ndarray]) -> np.ndarray:
    net.eval()
    with torch.no_grad():
        return np.concatenate([net(x, n).numpy() for x, n, _ in batches(ids, np.zeros(len(ids), int), 256, None)])


def train(net: Classifier, data: dict, config: dict, seed: int) -> dict:
    """Adam on cross-entropy; keeps the weights of the epoch with the best dev accuracy."""
    optimiser = torch.optim.Adam(net.parameters(), lr=config["lr"])
    rng = np.random.default_rng(seed)
    best, history = (-1.0, None), []
    for epoch in range(config["epochs"]):
        net.train()
        for x, n, y in batches(*data["train"], config["batch"], rng):
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x, n), y)
            loss.backward()
            optimiser.step()
        dev = five_class_accuracy(torch_scores(net, data["dev"][0]), data["dev"][1])
        history.append({"epoch": epoch + 1, "last_batch_loss": round(loss.item(), 4), "dev_accuracy": dev})
        print(f"epoch {epoch + 1}: last batch loss {loss.item():.3f}, dev accuracy {dev:.3f}", flush=True)
        if dev > best[0]:
            best = (dev, copy.deepcopy(net.state_dict()))
    net.load_state_dict(best[1])
    net.eval()
    return {"history": history, "best_dev_accuracy": best[0]}


def parity(model, params, table, ids: list[np.ndarray], torch_out: np.ndarray) -> dict:
    """Largest |torch - lrpjax| over the test scores, all sentences in one padded, masked batch."""
    X, mask = lrpjax.pad([table[s] for s in ids])
    batched = np.asarray(jax.jit(jax.vmap(lambda x, m: model.apply(params, x, mask=m)))(X, mask))
    return {"max_abs_difference": float(np.abs(batched - torch_out).max()),
            "max_abs_score": float(np.abs(torch_out).max()), "sentences": len(ids), "dtype": str(batched.dtype)}


def methods(apply) -> dict:
    """Every method of lrpjax that applies to a GRU, by label."""
    out = {f"LRP-{rule}": lrpjax.lrp(apply, preset(f"lrp-{rule}", eps=EPS)) for rule in ("all", "prop", "abs", "half")}
    out.update({"Gradient": lrpjax.gradient(apply), "Sensitivity": lrpjax.sensitivity(apply),
                "Gradient x Input": lrpjax.gradient_x_input(apply), "Occlusion f-diff": lrpjax.occlusion(apply, "f"),
                "Occlusion P-diff": lrpjax.occlusion(apply, "p"), "Random": lrpjax.random_baseline(apply, seed=0)})
    return out


def explain_sentences(model, params, table, vocab, examples, out: Path) -> list[dict]:
    """Word-level relevance of the predicted class under every method, for a few test sentences (one
    padded, masked batch per method: one compilation each)."""
    candidates = [ex for ex in examples if 6 <= len(ex.tokens) <= 20]
    chosen = [candidates[i] for i in EXPLAINED if i < len(candidates)]
    X, mask = lrpjax.pad([table[vocab.encode(ex.tokens)[0]] for ex in chosen])
    scores = np.asarray(jax.vmap(lambda x, m: model.apply(params, x, mask=m))(X, mask))
    preds = scores.argmax(axis=1)
    words = {label: np.asarray(lrpjax.per_token(m.batch(params, X, preds, mask=mask), 3))
             for label, m in methods(model.apply).items()}
    conserving = lrpjax.lrp(model.apply, preset("lrp-all", eps=EPS, share=True))
    results = []
    for k, ex in enumerate(chosen):
        T, pred = len(ex.tokens), int(preds[k])
        residual = conserving.full(params, X[k], pred, mask=mask[k]).residual   # one shape: one compilation
        rows = {label: r[k, :T] for label, r in words.items()}
        path = out / (f"{NAME}.png" if k == 0 else f"{NAME}_{k}.png")
        title = f"predicted: {LABEL_NAMES[pred]}   true: {LABEL_NAMES[ex.label]}   (relevance of the predicted class)"
        plot.sentence_heatmap(list(ex.tokens), rows, path, scale="row", title=title, width=9.0)
        unpadded = np.asarray(model.apply(params, X[k, :T]))   # the sentence alone, as PyTorch saw it
        results.append({"tokens": list(ex.tokens), "label": ex.label, "predicted": pred,
                        "max_abs_difference_padded_vs_alone": float(np.abs(unpadded - scores[k]).max()),
                        "scores": scores[k].round(6).tolist(), "figure": path.name,
                        "lrp_all_share_residual": float(residual),
                        "relevance": {label: r.round(6).tolist() for label, r in rows.items()}})
    return results


def explain_test_set(model, params, table, vocab, examples, torch_out: np.ndarray, quick: bool) -> dict:
    """``scale.explain_dataset`` over the test sentences (its scores checked against PyTorch's too); the
    words most often ranked first."""
    sentences = [table[vocab.encode(ex.tokens)[0]] for ex in examples]
    all_methods = methods(model.apply)
    labels = ("LRP-all",) if quick else ("LRP-all", "LRP-prop", "LRP-abs", "LRP-half", "Gradient x Input")
    start = time.perf_counter()
    result = scale.explain_dataset([all_methods[label] for label in labels], params, sentences, "pred", tokens=True,
                                   buckets=2 if quick else None)
    seconds = time.perf_counter() - start
    top = {"positive": collections.Counter(), "negative": collections.Counter()}
    for ex, r, pred in zip(examples, result.relevance, result.targets):
        side = "positive" if pred >= 3 else "negative" if pred <= 1 else None
        if side:
            top[side][ex.tokens[int(np.argmax(r[0]))]] += 1
    return {"sentences": len(sentences), "methods": list(labels), "seconds": round(seconds, 2),
            "compilations": result.compilations, "bucket_lengths": [int(e) for e in result.edges],
            "max_abs_score_difference_to_torch": float(np.abs(result.scores - torch_out).max()),
            "most_often_most_relevant_word_lrp_all": {side: c.most_common(12) for side, c in top.items()}}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run, under a minute")
    parser.add_argument("--out", default=str(ROOT / "examples" / "results"), help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)   # one thread: deterministic, and fastest on a small shared machine
    splits = {s: load_sst(s)[:config[s]] if s in config else load_sst(s) for s in ("train", "dev", "test")}
    vocab = Vocabulary.build(ex.tokens for ex in splits["train"])
    data = {s: encode(vocab, splits[s]) for s in splits}
    net = Classifier(len(vocab), config)
    start = time.perf_counter()
    training = train(net, data, config, args.seed)
    training["seconds"] = round(time.perf_counter() - start, 1)

    imported = interop.from_torch(net.rnn, net.head, net.embedding)   # a model over token ids
    model, params = imported.model.vector_model(imported.params)     # the same layers over embedded vectors
    table = imported.table
    test_ids, test_labels = data["test"]
    torch_out = torch_scores(net, test_ids)
    report = {
        "command": "python examples/torch_sst_bigru.py" + (" " + shlex.join(argv) if argv else ""),
        "config": {**config, "seed": args.seed, "vocabulary": len(vocab), "eps": EPS},
        "versions": {"torch": torch.__version__, "jax": jax.__version__, "lrpjax": lrpjax.__version__},
        "model": model.summary(params).splitlines(),
        "training": training,
        "test": {"five_class_accuracy": five_class_accuracy(torch_out, test_labels),
                 "binary_accuracy": binary_accuracy(torch_out, test_labels)},
        "parity": parity(model, params, table, test_ids, torch_out),
        "sentences": explain_sentences(model, params, table, vocab, splits["test"], out),
        "dataset": explain_test_set(model, params, table, vocab, splits["test"], torch_out, args.quick),
    }
    (out / f"{NAME}.json").write_text(json.dumps(report, indent=1) + "\n")
    print(table_text(report))
    return report


def table_text(report: dict) -> str:
    p, t, d = report["parity"], report["test"], report["dataset"]
    lines = ["| quantity | value |", "| --- | --- |",
             f"| test five-class accuracy | {t['five_class_accuracy']:.3f} |",
             f"| test binary accuracy | {t['binary_accuracy']:.3f} |",
             f"| max abs score difference, PyTorch vs lrpjax ({p['sentences']} sentences, {p['dtype']}) | "
             f"{p['max_abs_difference']:.2e} (largest score {p['max_abs_score']:.2f}; through explain_dataset "
             f"{d['max_abs_score_difference_to_torch']:.2e}) |",
             f"| explain_dataset: {len(d['methods'])} methods x {d['sentences']} sentences | {d['seconds']} s, "
             f"{d['compilations']} compilations |"]
    for side, words in d["most_often_most_relevant_word_lrp_all"].items():
        lines.append(f"| most often top word (LRP-all), {side} predictions | "
                     f"{', '.join(f'{w} ({n})' for w, n in words[:8])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main(sys.argv[1:])
