"""Word deletion (Sec. 11.5.1, Fig. 11.5) on SST for the newest recurrent families: a small xLSTM and a small
Mamba trained here (``experiments/train_sst.py --arch xlstm|mamba``), beside the shipped BiLSTM (issue 22).

The protocol is that of ``experiments/sst_word_deletion.py`` and reuses its code (the deletion order, the
deletion, the accuracy curves, the random baseline, the tables): the test sentences with at least ten
words, target = the true class, one relevance per word computed once on the original sentence, up to five
words deleted -- the most relevant first from sentences the model classifies correctly, the least relevant
first from those it gets wrong. Each model is scored on its own correct and false sentences.

Methods: LRP with the chapter's presets (``preset("lrp-all" | "lrp-prop" | "lrp-abs" | "lrp-half")``, eps =
0.0019, 0.2 for LRP-prop, as in the BiLSTM study); for Mamba also MambaLRP's rules (``mamba_lrp()``: the
z-rule, the SiLU gate split half and half, Delta/A/B/C and the norm's denominator as constants), for the
xLSTM the analogous rules (``xlstm_lrp()``); Gradient (Sensitivity Analysis: the squared gradient summed over
the embedding), Gradient x Input, Integrated Gradients (all-zero embeddings as baseline,
``lrpjax.app.model.IG_STEPS`` points), Occlusion (the word's embedding zeroed; score and probability
difference), and the random baseline (10 seeded runs, mean and std).

    python experiments/sst_recurrent_models.py                 # both models, writes experiments/results/
    python experiments/sst_recurrent_models.py --quick --out /tmp/recurrent_models

The BiLSTM's curves are those of ``experiments/results/sst_word_deletion.json`` (the same protocol, run by
``experiments/sst_word_deletion.py``), shown beside these. The machinery here (:class:`TextClassifier`,
:func:`word_relevance`, :func:`study`) is shared with ``experiments/sst_attention.py``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import lrpjax  # noqa: E402
import sst_word_deletion as deletion  # noqa: E402
import train_sst  # noqa: E402
from lrpjax.app.model import IG_STEPS, buckets  # noqa: E402
from lrpjax.data.sst import Vocabulary, load_sst, pad_batch  # noqa: E402
from lrpjax.io import checkpoints  # noqa: E402
from lrpjax.methods.program import Program, explain_chunk  # noqa: E402

EPS = 0.0019
"""LRP's stabiliser, as in the BiLSTM study (``sst_word_deletion.METHODS``); LRP-prop takes :data:`EPS_PROP`."""
EPS_PROP = 0.2
GRID = (56,)
"""Padded length of the explained and of the shortened sentences (>= 5 words; the longest test sentence
has 56): every sentence is padded to 56 (masked), so each method compiles once (``--quick``: 16)."""
QUICK_GRID = (16,)
QUICK_SENTENCES = 24
MODELS = ("xlstm", "mamba")


@dataclass
class TextClassifier:
    """An SST checkpoint written by ``train_sst.py --arch ...`` (a model over token ids), split into its
    embedding table and the classifier over embedded words, which the methods explain.

    Attributes:
        path: the checkpoint.
        inner: the classifier over embedded words (T, E) -> (5,), a :class:`~lrpjax.models.Sequential`.
        params: its parameters.
        table: the embedding table (V, E).
        vocab: the vocabulary (``<pad>``, ``<unk>`` first).
        metadata: the checkpoint's metadata (training command, dev and test accuracy).
    """

    path: str
    inner: Any
    params: dict
    table: np.ndarray
    vocab: Vocabulary
    metadata: dict
    grid: tuple = GRID

    @classmethod
    def load(cls, path: str | Path) -> "TextClassifier":
        saved = checkpoints.load_model(path)
        if "vocab" not in saved.extra or not saved.model.takes_ids:
            raise ValueError(f"checkpoint {str(path)!r} is not a model over token ids with a vocabulary; write it "
                             "with experiments/train_sst.py --arch attention|xlstm|mamba.")
        inner, params = saved.model.vector_model(saved.params)
        table = np.asarray(saved.params["embed"]["table"])
        return cls(str(path), inner, params, table, Vocabulary([str(w) for w in saved.extra["vocab"]]),
                   saved.metadata)

    def encode(self, tokens) -> np.ndarray:
        return self.vocab.encode(tokens)[0]

    def scores_ids(self, ids_list, batch_size: int = 256) -> np.ndarray:
        """Class scores (N, 5) of id sequences (what ``sst_word_deletion.deletion_accuracy`` calls)."""
        return train_sst.scores_ids(self.inner.apply, {"embed": self.table, "model": self.params}, ids_list,
                                    batch_size, self.grid)


@partial(jax.jit, static_argnums=0)
def _explain_chunk(program: Program, params, table, ids, mask, targets, index):
    return explain_chunk(program, params, table[ids], mask, targets, index).relevance


def batched(compute: Callable, ids_list, targets, batch_size: int = 64, grid=GRID) -> list[np.ndarray]:
    """``compute(ids (B, L), mask (B, L), targets (B,)) -> (B, L)`` over every sentence, in padded batches of
    the lengths of ``grid`` (every batch ``min(batch_size, N)`` rows: one compilation per length; dummy rows
    hold one valid step and are dropped); the per-word values (T_n,) of every sentence, float64."""
    out: list[np.ndarray | None] = [None] * len(ids_list)
    rows = min(batch_size, len(ids_list))
    for length, index in buckets([len(ids) for ids in ids_list], rows, grid):
        ids, mask = pad_batch([ids_list[i] for i in index], length)
        full_ids = np.zeros((rows, length), np.int32)
        full_mask = np.zeros((rows, length), bool)
        full_mask[:, 0] = True
        full_ids[:len(index)], full_mask[:len(index)] = ids, mask
        full_targets = np.zeros((rows,), np.int32)
        full_targets[:len(index)] = np.asarray(targets)[index]
        values = np.asarray(compute(full_ids, full_mask, full_targets), np.float64)
        for r, i in enumerate(index):
            out[i] = values[r, :len(ids_list[i])]
    return out  # type: ignore[return-value]


def word_relevance(method, model: TextClassifier, ids_list, targets, batch_size: int = 64,
                   grid=GRID) -> list[np.ndarray]:
    """Word-level relevance (T_n,) of every sentence for its target class: ``method`` (an lrpjax method over
    ``model.inner.apply``) on the embedded words, summed over the embedding (``tokens``), vmapped over padded,
    masked batches (:func:`batched`); a per-position method (occlusion) gives one value per word."""
    program = Program((method,), "index", tokens=True)

    def compute(ids, mask, targets):
        return _explain_chunk(program, model.params, model.table, ids, mask, targets,
                              np.arange(ids.shape[0], dtype=np.int32))

    return batched(compute, ids_list, targets, batch_size, grid)


def lrp_methods(apply: Callable) -> list[tuple[str, Any]]:
    """The chapter's four presets with the stabilisers of the BiLSTM study."""
    return [(f"LRP-{mode}", lrpjax.lrp(apply, lrpjax.rules.preset(f"lrp-{mode}", eps=EPS_PROP if mode == "prop" else EPS)))
            for mode in ("all", "prop", "abs", "half")]


def baseline_methods(apply: Callable) -> list[tuple[str, Any]]:
    """Gradient (SA), Gradient x Input, Integrated Gradients, Occlusion f-diff and P-diff."""
    return [("Gradient", lrpjax.sensitivity(apply)),
            ("Gradient x Input", lrpjax.gradient_x_input(apply)),
            ("Integrated Gradients", lrpjax.integrated_gradients(apply, IG_STEPS)),
            ("Occlusion f-diff", lrpjax.occlusion(apply, "f")),
            ("Occlusion P-diff", lrpjax.occlusion(apply, "p"))]


def family_methods(arch: str, apply: Callable) -> list[tuple[str, Any]]:
    """The methods of the study for a model of ``arch`` (``"xlstm"`` or ``"mamba"``)."""
    if arch == "mamba":
        from lrpjax.models.mamba import mamba_lrp

        special = [("MambaLRP", lrpjax.lrp(apply, mamba_lrp()))]
    elif arch == "xlstm":
        from lrpjax.models.xlstm import xlstm_lrp

        special = [("xLSTM-LRP", lrpjax.lrp(apply, xlstm_lrp()))]
    else:
        raise ValueError(f"`arch` must be one of {MODELS}; got {arch!r}.")
    return lrp_methods(apply) + special + baseline_methods(apply)


def study(model: TextClassifier, sentences, methods, extra: dict[str, Callable] | None = None,
          batch_size: int = 64, log=partial(print, flush=True)) -> tuple[dict, dict[str, list[np.ndarray]]]:
    """Word deletion on ``sentences`` for every ``(label, method)`` of ``methods``, every
    ``{label: relevance_fn(ids_list, labels) -> list of (T_n,)}`` of ``extra`` and the random baseline.

    Returns:
        (results, relevance): the results in the layout of ``sst_word_deletion.run`` (curves under
        "accuracy", the random baseline's std, seconds per method, "nonfinite" sentences per method), and
        the word relevance of every method (by label) for further analysis.
    """
    ids_list = [model.encode(s.tokens) for s in sentences]
    labels = np.asarray([s.label for s in sentences], dtype=np.int64)
    predictions = model.scores_ids(ids_list).argmax(axis=1)
    correct = predictions == labels
    log(f"{model.path}: {len(sentences)} sentences with >= {deletion.MIN_WORDS} words; {int(correct.sum())} "
        f"initially correct, {int((~correct).sum())} initially false")
    curves, stds, seconds, nonfinite, relevances = {}, {}, {}, {}, {}
    jobs = [(label, partial(word_relevance, method, model, batch_size=batch_size, grid=model.grid))
            for label, method in methods]
    jobs += list((extra or {}).items())
    for label, fn in jobs:
        start = time.time()
        relevance = fn(ids_list, labels)
        bad = sum(not np.all(np.isfinite(r)) for r in relevance)
        nonfinite[label] = int(bad)
        # A non-finite relevance (none seen here; recorded if it happens) ranks as the least relevant word.
        relevance = [np.nan_to_num(r, nan=-np.inf) for r in relevance] if bad else relevance
        relevances[label] = relevance
        curves[label] = deletion.deletion_accuracy(model, ids_list, labels, correct, relevance)
        seconds[label] = round(time.time() - start, 1)
        log(f"  {label:<26} correct {deletion._fmt(curves[label]['correct'])}   false "
            f"{deletion._fmt(curves[label]['false'])}   ({seconds[label]} s{f', {bad} non-finite' if bad else ''})")
    start = time.time()
    runs = [deletion.deletion_accuracy(model, ids_list, labels, correct,
                                       deletion.random_relevance([len(ids) for ids in ids_list], seed))
            for seed in range(deletion.RANDOM_RUNS)]
    curves["random"] = {key: np.mean([r[key] for r in runs], axis=0) for key in ("correct", "false")}
    stds["random"] = {key: np.std([r[key] for r in runs], axis=0) for key in ("correct", "false")}
    seconds["random"] = round(time.time() - start, 1)
    log(f"  {'random':<26} correct {deletion._fmt(curves['random']['correct'])}   false "
        f"{deletion._fmt(curves['random']['false'])}   ({deletion.RANDOM_RUNS} runs)")
    results = {
        "checkpoint": model.path,
        "model": model.inner.summary(model.params),
        "test_accuracy": model.metadata.get("test_accuracy"),
        "dev_accuracy": model.metadata.get("dev_accuracy"),
        "training_command": model.metadata.get("command"),
        "sentences": len(sentences),
        "initially_correct": int(correct.sum()),
        "initially_false": int((~correct).sum()),
        "max_delete": deletion.MAX_DELETE,
        "random_runs": deletion.RANDOM_RUNS,
        "accuracy": {m: {k: np.asarray(v).tolist() for k, v in c.items()} for m, c in curves.items()},
        "random_std": {k: v.tolist() for k, v in stds["random"].items()},
        "nonfinite": nonfinite,
        "seconds": seconds,
    }
    return results, relevances


def choose(available: list[str], wanted: str | None, parser: argparse.ArgumentParser) -> set[str]:
    """The labels named by ``--methods`` (comma-separated; None: all), checked against ``available``."""
    if wanted is None:
        return set(available)
    names = {w.strip() for w in wanted.split(",") if w.strip()}
    unknown = sorted(names - set(available))
    if unknown or not names:
        parser.error(f"--methods must name some of {', '.join(available)}; got {wanted!r}.")
    return names


def study_sentences(quick: bool, n: int | None = None, seed: int = 0):
    """The test sentences of the protocol (>= 10 words, 1849), in test-set order; ``n``: a random subset of
    that many (seeded, kept in test-set order); ``quick``: the first few that fit one padded length."""
    sentences = [s for s in load_sst("test") if len(s.tokens) >= deletion.MIN_WORDS]
    if quick:
        return [s for s in sentences if len(s.tokens) <= QUICK_GRID[0]][:QUICK_SENTENCES]
    if n is not None and n < len(sentences):
        keep = np.sort(np.random.default_rng(seed).choice(len(sentences), n, replace=False))
        sentences = [sentences[i] for i in keep]
    return sentences


def summary_rows(name: str, results: dict, k: int = 3) -> list[str]:
    """Markdown rows ``| model | method | accuracy after k deletions (correct) | (false) |``."""
    rows = []
    for method, parts in results["accuracy"].items():
        rows.append(f"| {name} | {method} | {parts['correct'][k]:.3f} | {parts['false'][k]:.3f} |")
    return rows


def accuracy_line(name: str, metadata_accuracy: dict | None) -> str:
    acc = metadata_accuracy or {}
    five, binary = acc.get("five_class"), acc.get("binary")
    if five is None:
        return f"| {name} | n/a | n/a |"
    return f"| {name} | {100 * five:.1f} % | {100 * binary:.1f} % |"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_SENTENCES} sentences of one padded length (each method compiles once)")
    parser.add_argument("--out", default=str(ROOT / "experiments" / "results"), help="output directory")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated, of " + ", ".join(MODELS))
    parser.add_argument("--checkpoint-dir", default=str(ROOT / "checkpoints"),
                        help="where sst_<model>.npz are (written by experiments/train_sst.py --arch <model>)")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per compiled explanation batch")
    parser.add_argument("--methods", default=None,
                        help="comma-separated method labels to run (default all; the random baseline always runs)")
    parser.add_argument("--sentences", type=int, default=None,
                        help="a seeded random subset of this many of the 1849 test sentences (default: all)")
    args = parser.parse_args(argv)
    command = ("python experiments/sst_recurrent_models.py " +
               " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))).rstrip()
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown or not names:
        parser.error(f"--models must name some of {', '.join(MODELS)}; got {args.models!r}.")
    sentences = study_sentences(args.quick, args.sentences)
    start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    all_results: dict[str, Any] = {}
    models = {name: TextClassifier.load(Path(args.checkpoint_dir) / f"sst_{name}.npz") for name in names}
    for model in models.values():
        model.grid = QUICK_GRID if args.quick else GRID
    candidates = {name: family_methods(name, model.inner.apply) for name, model in models.items()}
    chosen = choose(list(dict.fromkeys(label for c in candidates.values() for label, _ in c)), args.methods, parser)
    for name, model in models.items():
        results, _ = study(model, sentences, [(label, m) for label, m in candidates[name] if label in chosen],
                           batch_size=min(args.batch_size, len(sentences)))
        all_results[name] = results
        from lrpjax.viz.plot import deletion_figure

        deletion_figure(results["accuracy"], out / f"sst_recurrent_models_{name}.png",
                        stds={"random": results["random_std"]})
    bilstm_json = ROOT / "experiments" / "results" / "sst_word_deletion.json"
    bilstm = json.loads(bilstm_json.read_text()) if bilstm_json.exists() else None
    payload = {"command": command, "quick": bool(args.quick), "seconds_total": round(time.time() - start, 1),
               "eps": EPS, "eps_prop": EPS_PROP, "models": all_results,
               "bilstm": None if bilstm is None else {
                   "source": "experiments/results/sst_word_deletion.json", "test_accuracy": bilstm.get("model_accuracy"),
                   "initially_correct": bilstm["initially_correct"], "initially_false": bilstm["initially_false"],
                   "accuracy": bilstm["accuracy"]}}
    (out / "sst_recurrent_models.json").write_text(json.dumps(payload, indent=1) + "\n")
    lines = ["**Test accuracy (full sentences)**", "", "| model | five-class | binary |", "|---|---:|---:|"]
    if bilstm is not None:
        lines.append(accuracy_line("BiLSTM (shipped)", bilstm.get("model_accuracy")))
    lines += [accuracy_line(name, r["test_accuracy"]) for name, r in all_results.items()]
    lines += ["", "**Accuracy after 3 deletions** (initially correct: lower is better; initially false: higher is better)",
              "", "| model | method | correct | false |", "|---|---|---:|---:|"]
    if bilstm is not None:
        lines += summary_rows("BiLSTM", payload["bilstm"])
    for name, r in all_results.items():
        lines += summary_rows(name, r)
    lines.append("")
    for name, r in all_results.items():
        lines += [f"### {name} ({r['sentences']} sentences)", "", deletion.markdown(r)]
    table = "\n".join(lines)
    (out / "sst_recurrent_models.md").write_text(table)
    print()
    print(table)
    print(f"wrote {out / 'sst_recurrent_models.json'}, .md and .png ({payload['seconds_total']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
