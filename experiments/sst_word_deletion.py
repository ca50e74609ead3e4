"""Word-deletion study on the SST BiLSTM (Sec. 11.5.1 "Testing Selectivity", Fig. 11.5).

For the test sentences with at least ten words (1849) and target = the true class, every method gives
one relevance per word, computed once on the original sentence. Up to five words are then deleted
(removed, the rest concatenated): the most relevant first for sentences the model initially classifies
correctly, the least relevant first for those it initially gets wrong. The accuracy after 0..5
deletions is reported per group: a steep decline (correct) and a steep incline (false) indicate
selective relevance. LRP uses eps = 0.0019 (0.2 for LRP-prop, as in the chapter); the random baseline
is averaged over 10 seeded runs (its std is reported too). Beyond the chapter's methods, two baselines:
Integrated Gradients (all-zero embeddings as baseline, ``lrpjax.app.model.IG_STEPS`` points) and SmoothGrad
(the mean gradient over ``lrpjax.app.model.SMOOTHGRAD_SAMPLES`` noisy copies, summed over the embedding; seed 0).

    python experiments/sst_word_deletion.py                 # full size, writes experiments/results/
    python experiments/sst_word_deletion.py --quick --out /tmp/deletion

Explanations run in jit-compiled padded batches (``SSTModel.explain_many``); the deleted sentences
are re-padded and scored in batches too (``SSTModel.scores_ids``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrpjax.data.sst import load_sst  # noqa: E402
from lrpjax.app.model import SSTModel  # noqa: E402

METHODS = (  # (label in the results, method name of lrpjax.app.model, eps)
    ("LRP-all", "lrp-all", 0.0019),
    ("LRP-prop", "lrp-prop", 0.2),
    ("LRP-abs", "lrp-abs", 0.0019),
    ("LRP-half", "lrp-half", 0.0019),
    ("Gradient", "sa", None),
    ("Gradient x Input", "gi", None),
    ("Occlusion f-diff", "occlusion-f", None),
    ("Occlusion P-diff", "occlusion-p", None),
    ("CD", "cd", None),
    ("Integrated Gradients", "ig", None),
    ("SmoothGrad", "smoothgrad", None),
)
RANDOM_RUNS = 10
MIN_WORDS = 10
MAX_DELETE = 5


def deletion_order(relevance: np.ndarray, correct: bool) -> np.ndarray:
    """Positions in deletion order: decreasing relevance if ``correct``, else increasing.

    Ties keep the left-to-right order (a stable sort), so the order is deterministic.
    """
    r = np.asarray(relevance, dtype=np.float64)
    return np.argsort(-r if correct else r, kind="stable")


def delete_words(ids: np.ndarray, order: np.ndarray, k: int) -> np.ndarray:
    """``ids`` (T,) without the positions ``order[:k]``, the remaining words concatenated in order."""
    keep = np.ones(len(ids), dtype=bool)
    keep[np.asarray(order[:k], dtype=np.int64)] = False
    return np.asarray(ids)[keep]


def deletion_accuracy(model: SSTModel, ids_list: list[np.ndarray], labels: np.ndarray, correct: np.ndarray,
                      relevance: list[np.ndarray], max_delete: int = MAX_DELETE,
                      batch_size: int = 256) -> dict[str, np.ndarray]:
    """Accuracy after 0..max_delete deletions, separately for initially correct and false sentences.

    Args:
        model: the classifier.
        ids_list: N sentences as id arrays (T_n,), each with more than ``max_delete`` words.
        labels: true classes (N,).
        correct: whether the original sentence is classified correctly (N,) bool.
        relevance: N word-level relevance arrays (T_n,), computed on the original sentences.

    Returns:
        {"correct": (max_delete + 1,), "false": (max_delete + 1,)} accuracies; entry 0 is the
        undeleted sentence (1 for "correct", 0 for "false" by definition).
    """
    n = len(ids_list)
    deleted = []
    for ids, r, ok in zip(ids_list, relevance, correct):
        if len(ids) <= max_delete:
            raise ValueError(f"every sentence needs more than {max_delete} words; got one with {len(ids)}.")
        order = deletion_order(r, bool(ok))
        deleted.extend(delete_words(ids, order, k) for k in range(1, max_delete + 1))
    predictions = model.scores_ids(deleted, batch_size=batch_size).argmax(axis=1).reshape(n, max_delete)
    hits = np.concatenate([correct[:, None], predictions == labels[:, None]], axis=1)
    out = {}
    for key, group in (("correct", correct), ("false", ~correct)):
        out[key] = hits[group].mean(axis=0) if group.any() else np.full(max_delete + 1, np.nan)
    return out


def random_relevance(lengths, seed: int) -> list[np.ndarray]:
    """The random baseline: standard-normal relevance per word from one seeded numpy generator per
    run (drawn here rather than by the compiled ``random`` method, which would recompile per seed)."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(T) for T in lengths]


def run(model: SSTModel, sentences, batch_size: int = 64, log=partial(print, flush=True)) -> dict:
    """The whole study on ``sentences`` (examples with tokens and label); returns the results dict."""
    ids_list = [model.vocab.encode(s.tokens)[0] for s in sentences]
    tokens = [list(s.tokens) for s in sentences]
    labels = np.asarray([s.label for s in sentences], dtype=np.int64)
    predictions = model.scores_ids(ids_list).argmax(axis=1)
    correct = predictions == labels
    log(f"{len(sentences)} sentences with >= {MIN_WORDS} words; {int(correct.sum())} initially correct, "
        f"{int((~correct).sum())} initially false")
    curves, stds, seconds = {}, {}, {}
    for label, name, eps in METHODS:
        start = time.time()
        results = model.explain_many(tokens, name, labels, eps, batch_size=batch_size)
        relevance = [np.asarray(r.relevance, dtype=np.float64) for r in results]
        curves[label] = deletion_accuracy(model, ids_list, labels, correct, relevance)
        seconds[label] = round(time.time() - start, 1)
        log(f"{label:<18} correct {_fmt(curves[label]['correct'])}   false {_fmt(curves[label]['false'])}"
            f"   ({seconds[label]} s)")
    start = time.time()
    runs = []
    for seed in range(RANDOM_RUNS):
        relevance = random_relevance([len(ids) for ids in ids_list], seed)
        runs.append(deletion_accuracy(model, ids_list, labels, correct, relevance))
    curves["random"] = {key: np.mean([r[key] for r in runs], axis=0) for key in ("correct", "false")}
    stds["random"] = {key: np.std([r[key] for r in runs], axis=0) for key in ("correct", "false")}
    seconds["random"] = round(time.time() - start, 1)
    log(f"{'random':<18} correct {_fmt(curves['random']['correct'])}   false {_fmt(curves['random']['false'])}"
        f"   ({seconds['random']} s, {RANDOM_RUNS} runs; max std {max(stds['random']['correct'].max(), stds['random']['false'].max()):.4f})")
    return {
        "sentences": len(sentences),
        "initially_correct": int(correct.sum()),
        "initially_false": int((~correct).sum()),
        "max_delete": MAX_DELETE,
        "eps": {label: eps for label, _, eps in METHODS if eps is not None},
        "random_runs": RANDOM_RUNS,
        "accuracy": {m: {k: v.tolist() for k, v in c.items()} for m, c in curves.items()},
        "random_std": {k: v.tolist() for k, v in stds["random"].items()},
        "seconds": seconds,
    }


def _fmt(values) -> str:
    return " ".join(f"{v:.3f}" for v in values)


def markdown(results: dict) -> str:
    """The two tables (initially correct / initially false) in Markdown."""
    K = results["max_delete"]
    lines = []
    for key, title in (("correct", "Initially correct sentences, most relevant words deleted first "
                                   f"({results['initially_correct']} sentences): accuracy"),
                       ("false", "Initially false sentences, least relevant words deleted first "
                                 f"({results['initially_false']} sentences): accuracy")):
        lines += [f"**{title}**", "", "| method | " + " | ".join(str(k) for k in range(K + 1)) + " |",
                  "|---|" + "---:|" * (K + 1)]
        for method, parts in results["accuracy"].items():
            cells = [f"{v:.3f}" for v in parts[key]]
            if method == "random":
                cells = [f"{v:.3f} ± {s:.3f}" for v, s in zip(parts[key], results["random_std"][key])]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few dozen sentences (about a minute)")
    parser.add_argument("--out", default=str(ROOT / "experiments" / "results"), help="output directory")
    parser.add_argument("--checkpoint", default=None, help="model (default: the shipped checkpoint)")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per compiled explanation batch")
    args = parser.parse_args(argv)
    command = ("python experiments/sst_word_deletion.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))).rstrip()
    model = SSTModel.load(args.checkpoint)
    sentences = [s for s in load_sst("test") if len(s.tokens) >= MIN_WORDS]
    if args.quick:
        # A few dozen sentences of one padded length bucket: each method compiles once.
        sentences = [s for s in sentences if len(s.tokens) <= 16][:48]
    start = time.time()
    results = run(model, sentences, batch_size=min(args.batch_size, len(sentences)))
    results.update(command=command, quick=bool(args.quick), seconds_total=round(time.time() - start, 1),
                   checkpoint=str(args.checkpoint or "checkpoints/sst_bilstm.npz"),
                   model_accuracy=model.metadata.get("test_accuracy"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sst_word_deletion.json").write_text(json.dumps(results, indent=1) + "\n")
    table = markdown(results)
    (out / "sst_word_deletion.md").write_text(table)
    from lrpjax.viz.plot import deletion_figure

    deletion_figure(results["accuracy"], out / "sst_word_deletion.png",
                    stds={"random": results["random_std"]})
    print()
    print(table)
    print(f"wrote {out / 'sst_word_deletion.json'}, .md and .png ({results['seconds_total']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
