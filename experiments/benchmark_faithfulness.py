"""One faithfulness benchmark: every method x a registry of models x every metric of lrpjax.evaluate.

Models (:data:`REGISTRY`; ``--models`` picks some, default every one whose checkpoint is present,
``--checkpoint NAME=PATH`` adds one): the shipped SST BiLSTM (lrpjax.app.model, embedded words), the
JapaneseVowels GRU and the BasicMotions classifier (checkpoints written by
experiments/timeseries_japanese_vowels.py; standardised test series), and the SST attention, xLSTM and
Mamba models over token ids (checkpoints/sst_<arch>.npz, written by experiments/train_sst.py --arch
...). A checkpoint over token ids is measured on SST test sentences of 10-30 words; one over vectors on
the test split of the time-series set its metadata names (``dataset``).

Methods: LRP (lrp-all at eps 0.001 and 0.1, lrp-prop at eps 0.2, lrp-half at eps 0.001; MambaLRP's rules
on a Mamba model, AttnLRP's attention rule on an attention model), the gradient, Gradient x Input,
Integrated Gradients (32 points), SmoothGrad (32 samples), occlusion (f-diff), Contextual Decomposition
(on the models it decomposes: standard-cell LSTMs) and the random baseline. The predicted class of each example is
explained once (its relevance per step is reused by every faithfulness metric, ``relevance=``) and
measured by (lrpjax.evaluate.metrics): MoRF and LeRF deletion curves (10 steps) with two removals each
(zero and ROAD's noisy linear imputation for vectors; the <unk> token and deletion for token ids), their
AOPC and Delta A_F; MoRF and LeRF insertion curves (first removal) and their area difference; ERASER
comprehensiveness and sufficiency AOPC (bins 1, 5, 10, 20, 50 %, probabilities); faithfulness correlation
(|S| = 3, 32 subsets); sensitivity-n (n = 1, 2, 4, 8; 32 subsets each); and the sanity checks
(lrpjax.evaluate.sanity): the random-logit test and model-parameter randomisation, cascading and
independent, each by Spearman's rho and SSIM of the maps (lower is better). Every figure is a mean over
examples with a 95 % percentile bootstrap interval (1000 resamples); the wall time of the explanation and
of every metric call is recorded. Finally the batched metrics are timed against a per-example Python loop
of the same metric (a compiled call per example) and the deletion curve against a loop over examples and
steps that calls the compiled model once per perturbed input (how image libraries evaluate).

    python experiments/benchmark_faithfulness.py --n 100
    python experiments/benchmark_faithfulness.py --n 100 --models sst-attention,sst-xlstm,sst-mamba --update
    python experiments/benchmark_faithfulness.py --quick --out /tmp/q        # a minute or two

``--update`` keeps the other models' results already in OUT/benchmark_faithfulness.json. Writes
OUT/benchmark_faithfulness.json, .md, .png (faithfulness) and _sanity.png (cascading randomisation).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass

# These programs are small and many (one per method and metric): compilation, not running, dominates,
# and a lower XLA backend optimisation level compiles several times faster (results agree to float32
# rounding). Set XLA_FLAGS yourself to override.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import lrpjax
from lrpjax.data import timeseries
from lrpjax.data.sst import load_sst
from lrpjax.evaluate import aopc, metrics, sanity
from lrpjax.io import checkpoints
from lrpjax.models import bilstm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENSITIVITY_SIZES = (1, 2, 4, 8)
FAITHFULNESS = ("aopc morf ({0})", "delta A_F ({0})", "aopc morf ({1})", "delta A_F ({1})",
                "insertion delta A ({0})", "comprehensiveness", "sufficiency", "faithfulness corr.") + \
    tuple(f"sensitivity-{k}" for k in SENSITIVITY_SIZES)
SANITY = ("random-logit rho", "random-logit ssim", "cascading rho", "cascading ssim", "independent rho",
          "independent ssim")
LOWER = ("sufficiency",) + SANITY


def better(metric: str) -> str:
    return "lower" if metric in LOWER else "higher"


@dataclass(frozen=True)
class Entry:
    """A model of the benchmark: its name in the tables and where it comes from (``"sst-bundle"``, the
    shipped SST BiLSTM, or a checkpoint path relative to the repository root)."""

    title: str
    source: str


REGISTRY = {
    "sst-bilstm": Entry("SST BiLSTM", "sst-bundle"),
    "japanese-vowels-gru": Entry("JapaneseVowels GRU", "checkpoints/japanese_vowels_gru.npz"),
    "basic-motions-lstm": Entry("BasicMotions LSTM", "checkpoints/basic_motions_lstm.npz"),
    "sst-attention": Entry("SST attention BiLSTM", "checkpoints/sst_attention.npz"),
    "sst-xlstm": Entry("SST xLSTM", "checkpoints/sst_xlstm.npz"),
    "sst-mamba": Entry("SST Mamba", "checkpoints/sst_mamba.npz"),
}


@dataclass
class Data:
    """One model's benchmark input: ``apply``, ``params``, the padded batch ``X`` (B, T, E) or token ids
    (B, T), its ``mask``, the removals (first, second), the kind of model (a checkpoint's ``kind``)."""

    apply: object
    params: object
    X: np.ndarray
    mask: np.ndarray
    removals: dict
    kind: str


def _sst_sentences(n: int):
    return [ex for ex in load_sst("test") if 10 <= len(ex.tokens) <= 30][:n]


def sst_data(n: int) -> Data:
    from lrpjax.app.model import SSTModel

    bundle = SSTModel.load()
    sentences = _sst_sentences(n)
    T = max(len(ex.tokens) for ex in sentences)
    E = np.asarray(bundle.params["embed"]).shape[1]
    X = np.zeros((len(sentences), T, E), np.float32)
    mask = np.zeros((len(sentences), T), bool)
    for b, ex in enumerate(sentences):
        X[b, :len(ex.tokens)] = bundle.embed(list(ex.tokens))
        mask[b, :len(ex.tokens)] = True
    params = jax.tree.map(jnp.asarray, bundle.params["model"])
    return Data(bilstm.apply, params, X, mask, VECTOR_REMOVALS, "sst-bilstm")


VECTOR_REMOVALS = {"zero": metrics.Removal(), "road": metrics.Removal("road", noise=0.1)}


def checkpoint_data(path: str, n: int) -> Data:
    """A checkpoint over token ids on SST test sentences, or one over vectors on its time-series set."""
    loaded = checkpoints.load_model(path)
    params = jax.tree.map(jnp.asarray, loaded.params)
    kind = str(loaded.metadata.get("kind", ""))
    if loaded.model.takes_ids:
        from lrpjax.app.bundle import TextModel
        from lrpjax.data.sst import UNK

        text = TextModel(loaded.model, loaded.params, [str(w) for w in loaded.extra["vocab"]], loaded.metadata)
        sentences = _sst_sentences(n)
        T = max(len(ex.tokens) for ex in sentences)
        X = np.zeros((len(sentences), T), np.int32)
        mask = np.zeros((len(sentences), T), bool)
        for b, ex in enumerate(sentences):
            X[b, :len(ex.tokens)] = text.encode(list(ex.tokens))[1]
            mask[b, :len(ex.tokens)] = True
        unk = text.vocab.index(UNK)
        return Data(loaded.model.apply, params, X, mask,
                    {"unk": metrics.Removal("token", unk), "delete": metrics.Removal("delete")}, kind)
    dataset = loaded.metadata.get("dataset") or ("JapaneseVowels" if "japanese" in kind else None)
    if dataset not in timeseries.NAMES:
        raise ValueError(f"checkpoint {path!r} reads vectors but names no time-series set (metadata 'dataset' in "
                         f"{timeseries.NAMES}); got {dataset!r}.")
    _, test_set = timeseries.standardise(timeseries.load(dataset, "train"), timeseries.load(dataset, "test"))
    return Data(loaded.model.apply, params, test_set.X[:n], test_set.mask[:n], VECTOR_REMOVALS, kind)


def load_entry(entry: Entry, n: int) -> Data:
    return sst_data(n) if entry.source == "sst-bundle" else checkpoint_data(os.path.join(ROOT, entry.source), n)


def source(entry: Entry) -> dict:
    """Where a model came from: the checkpoint's path and SHA-256 (the shipped SST bundle's file too)."""
    import hashlib

    path = os.path.join(ROOT, "checkpoints", "sst_bilstm.npz") if entry.source == "sst-bundle" else \
        os.path.join(ROOT, entry.source)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return {"path": os.path.relpath(path, ROOT), "sha256": digest}


def present(entry: Entry) -> bool:
    return entry.source == "sst-bundle" or os.path.exists(os.path.join(ROOT, entry.source))


QUICK_METHODS = ("lrp-all eps=0.001", "gradient x input", "occlusion", "random")
FIRST = ("lrp-all eps=0.001", "random", "lrp-all attnlrp eps=0.001", "mamba-lrp", "gradient x input", "occlusion",
         "integrated gradients")
"""Measured first (a run that is stopped keeps these); the tables keep the order of :func:`methods`."""


def methods(data: Data) -> dict:
    apply = data.apply
    out = {"lrp-all eps=0.001": lrpjax.lrp(apply, lrpjax.rules.preset("lrp-all", eps=1e-3)),
           "lrp-all eps=0.1": lrpjax.lrp(apply, lrpjax.rules.preset("lrp-all", eps=0.1)),
           "lrp-prop eps=0.2": lrpjax.lrp(apply, lrpjax.rules.preset("lrp-prop", eps=0.2)),
           "lrp-half eps=0.001": lrpjax.lrp(apply, lrpjax.rules.preset("lrp-half", eps=1e-3))}
    if "attention" in data.kind:
        out["lrp-all attnlrp eps=0.001"] = lrpjax.lrp(apply, lrpjax.rules.preset("lrp-all", eps=1e-3,
                                                                                   attention="attnlrp"))
    if "mamba" in data.kind:
        from lrpjax.models.mamba import mamba_lrp

        out["mamba-lrp"] = lrpjax.lrp(apply, mamba_lrp())
    out.update({"gradient": lrpjax.gradient(apply),
                "gradient x input": lrpjax.gradient_x_input(apply),
                "integrated gradients": lrpjax.integrated_gradients(apply, 32),
                "smoothgrad": lrpjax.methods.smoothgrad(apply, 0.15, 32, 0),
                "occlusion": lrpjax.occlusion(apply, "f")})
    from lrpjax.methods.decomposition import cd

    try:                                  # standard-cell LSTMs only; the constructor refuses other models
        out["contextual decomposition"] = cd(apply)
    except TypeError:
        pass
    out["random"] = lrpjax.methods.random_baseline(apply, 0)
    return out


def bootstrap(values, n: int = 1000, seed: int = 0) -> dict[str, float]:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n, len(values)))].mean(axis=1)
    return {"mean": float(values.mean()), "lo": float(np.percentile(means, 2.5)),
            "hi": float(np.percentile(means, 97.5)), "n": int(len(values))}


def timed(seconds: dict, name: str, fn):
    start = time.perf_counter()
    value = jax.block_until_ready(fn())
    seconds[name] = round(time.perf_counter() - start, 3)
    return value


def evaluate(method, data: Data, with_sanity: bool) -> tuple[dict, dict, dict]:
    """Every metric of one method on one model: (bootstrap summaries, seconds per call, per-layer sanity)."""
    s: dict = {}
    params, X, mask = data.params, data.X, data.mask
    R, targets = timed(s, "explain", lambda: metrics.explained_relevance(method, params, X, mask=mask))
    kw = dict(mask=mask, relevance=R, targets=targets)
    (first, r1), (second, r2) = data.removals.items()
    values = {}
    for name, removal in ((first, r1), (second, r2)):
        morf = timed(s, f"morf ({name})", lambda: metrics.deletion_curves(method, params, X, steps=10,
                                                                          removal=removal, **kw))
        lerf = timed(s, f"lerf ({name})", lambda: metrics.deletion_curves(method, params, X, steps=10, order="least",
                                                                          removal=removal, **kw))
        values[f"aopc morf ({name})"] = aopc(morf)
        values[f"delta A_F ({name})"] = metrics.delta_af(morf, lerf)
    ins_m = timed(s, f"insertion morf ({first})", lambda: metrics.insertion_curves(method, params, X, steps=10,
                                                                                  removal=r1, **kw))
    ins_l = timed(s, f"insertion lerf ({first})", lambda: metrics.insertion_curves(
        method, params, X, steps=10, order="least", removal=r1, **kw))
    values[f"insertion delta A ({first})"] = metrics.area(ins_m) - metrics.area(ins_l)
    bins = (0,) + metrics.ERASER_BINS                    # k = 0 in the same call: one compiled program
    comp = timed(s, "comprehensiveness", lambda: metrics.comprehensiveness(method, params, X, k=bins, removal=r1,
                                                                           **kw))
    suff = timed(s, "sufficiency", lambda: metrics.sufficiency(method, params, X, k=bins, removal=r1, **kw))
    values["comprehensiveness"] = metrics.eraser_aopc(comp[:, 1:], comp[:, 0])
    values["sufficiency"] = metrics.eraser_aopc(suff[:, 1:], suff[:, 0])
    values["faithfulness corr."] = timed(s, "faithfulness correlation", lambda: metrics.faithfulness_correlation(
        method, params, X, size=3, n=32, removal=r1, **kw))
    sens = timed(s, "sensitivity-n", lambda: metrics.sensitivity_n(method, params, X, sizes=SENSITIVITY_SIZES, n=32,
                                                                   removal=r1, **kw))
    for j, k in enumerate(SENSITIVITY_SIZES):
        values[f"sensitivity-{k}"] = sens[:, j]
    layers = {}
    if with_sanity and method.name != "random":          # the random baseline's maps depend on neither
        logit = timed(s, "random logit", lambda: sanity.random_logit(method, params, X, mask=mask))
        values["random-logit rho"], values["random-logit ssim"] = logit.spearman, logit.ssim
        for mode in ("cascading", "independent"):
            check = timed(s, mode, lambda: sanity.parameter_randomisation(method, params, X, mask=mask, mode=mode))
            # cascading: every layer re-drawn (the last column); independent: the mean over the layers
            pick = (lambda a: np.asarray(a)[:, -1]) if mode == "cascading" else (lambda a: np.nanmean(np.asarray(a), 1))
            values[f"{mode} rho"], values[f"{mode} ssim"] = pick(check.spearman), pick(check.ssim)
            layers[mode] = {"layers": list(check.layers),
                            "rho": [bootstrap(np.asarray(check.spearman)[:, j]) for j in range(len(check.layers))],
                            "ssim": [bootstrap(np.asarray(check.ssim)[:, j]) for j in range(len(check.layers))]}
    return {k: bootstrap(np.asarray(v)) for k, v in values.items()}, s, layers


def _clock(fn, repeats: int) -> float:
    jax.block_until_ready(fn())                                      # compiles
    start = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn())
    return (time.perf_counter() - start) / repeats


def speedup(name: str, method, data: Data, B: int, repeats: int = 3) -> dict:
    """Batched metrics against a per-example Python loop of the same metric (each a compiled call on one
    example, the relevance given as in the benchmark), and the deletion curve against a loop over examples
    and steps that calls the compiled model once per perturbed input. Compile time excluded (one warm-up
    each); mean of ``repeats`` runs. The batched results are checked against the loops'."""
    apply, params = data.apply, data.params
    X, mask = data.X[:B], data.mask[:B]
    removal = next(iter(data.removals.values()))
    R, targets = metrics.explained_relevance(method, params, X, mask=mask)
    R, targets = np.asarray(R), np.asarray(targets)
    calls = {
        "deletion curves (MoRF, 10 steps)": lambda x, m, r, t: metrics.deletion_curves(
            method, params, x, t, mask=m, relevance=r, removal=removal, steps=10),
        "comprehensiveness (6 bins)": lambda x, m, r, t: metrics.comprehensiveness(
            method, params, x, t, mask=m, relevance=r, removal=removal, k=(0,) + metrics.ERASER_BINS),
        "faithfulness correlation (32 subsets)": lambda x, m, r, t: metrics.faithfulness_correlation(
            method, params, x, t, mask=m, relevance=r, removal=removal, size=3, n=32),
        "random logit (2 explanations)": lambda x, m, r, t: sanity.random_logit(method, params, x, t, mask=m).spearman,
    }
    rows = {}
    for metric, call in calls.items():
        batched = lambda: call(X, mask, R, targets)  # noqa: E731
        loop = lambda: [call(X[b:b + 1], mask[b:b + 1], R[b:b + 1], targets[b:b + 1]) for b in range(B)]  # noqa: E731
        if not metric.startswith("faithfulness") and not metric.startswith("random logit"):
            # subsets and other classes are drawn per example index: only the deterministic ones compare
            np.testing.assert_allclose(np.asarray(batched()), np.concatenate([np.asarray(v) for v in loop()]),
                                       rtol=1e-4, atol=1e-4)
        t_batched, t_loop = _clock(batched, repeats), _clock(loop, repeats)
        rows[metric] = {"batched": round(t_batched, 4), "per-example loop": round(t_loop, 4),
                        "speedup": round(t_loop / t_batched, 1)}
    if data.X.ndim == 3 and removal.kind == "zero":
        score = jax.jit(lambda x, m, t: apply(params, x, None, mask=m)[t])

        def naive():
            out = np.zeros((B, 11))
            for b in range(B):
                order = np.argsort(-np.where(mask[b], R[b], -np.inf), kind="stable")
                x = np.array(X[b])
                out[b, 0] = score(x, mask[b], targets[b])
                for s in range(1, 11):
                    if s <= mask[b].sum():
                        x[order[s - 1]] = 0.0
                    out[b, s] = score(x, mask[b], targets[b])
            return out

        np.testing.assert_allclose(np.asarray(calls["deletion curves (MoRF, 10 steps)"](X, mask, R, targets)),
                                   naive(), rtol=1e-4, atol=1e-4)
        t_naive = _clock(naive, repeats)
        rows["deletion curves: loop over examples and steps"] = {
            "batched": rows["deletion curves (MoRF, 10 steps)"]["batched"], "per-example loop": round(t_naive, 4),
            "speedup": round(t_naive / rows["deletion curves (MoRF, 10 steps)"]["batched"], 1)}
    return {"examples": int(B), "method": name, "rows": rows}


def _bars(path: str, results: dict, columns: tuple, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results)
    shown = {m: [c for c in columns if any(c in v for v in results[m].values())] for m in models}
    width = max(len(v) for v in shown.values())
    fig, axes = plt.subplots(len(models), width, figsize=(2.9 * width, 0.32 * max(len(results[m]) for m in models)
                                                            * len(models) + 1.4 * len(models)), squeeze=False)
    for i, model in enumerate(models):
        names = list(results[model])
        for j in range(width):
            ax = axes[i, j]
            if j >= len(shown[model]):
                ax.axis("off")
                continue
            metric = shown[model][j]
            rows = [(n, results[model][n].get(metric)) for n in names]
            rows = [(n, v) for n, v in rows if v is not None and v["n"] > 0]
            y = np.arange(len(rows))
            means = np.array([v["mean"] for _, v in rows])
            err = np.array([[v["mean"] - v["lo"], v["hi"] - v["mean"]] for _, v in rows]).T.reshape(2, -1)
            colors = ["tab:red" if n.startswith(("lrp", "mamba")) else "tab:grey" if n == "random" else "tab:blue"
                      for n, _ in rows]
            ax.barh(y, means, xerr=err, color=colors, capsize=2)
            ax.set_yticks(y, [n for n, _ in rows] if j == 0 else [""] * len(rows), fontsize=7)
            ax.invert_yaxis()
            ax.axvline(0, color="black", lw=0.5)
            ax.set_title(f"{metric}\n({better(metric)} better)", fontsize=7)
            ax.tick_params(axis="x", labelsize=6)
        axes[i, 0].set_ylabel(results and model, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def figure(path: str, summary: dict) -> None:
    """One bar per method and metric with its interval; red LRP, grey random. Titles carry each model's
    removal names, so the columns are the metric families."""
    generic = {}
    for model, per_method in summary["results"].items():
        first, second = summary["removals"][model]
        rename = {c.format(first, second): c.format("removal 1", "removal 2") for c in FAITHFULNESS}
        generic[f"{model}\n(removal 1 = {first}, 2 = {second})"] = {
            m: {rename.get(k, k): v for k, v in vals.items()} for m, vals in per_method.items()}
    cols = tuple(c.format("removal 1", "removal 2") for c in FAITHFULNESS)
    _bars(path, generic, cols, "Faithfulness benchmark: mean over examples, 95% bootstrap intervals")


def sanity_figure(path: str, summary: dict) -> None:
    """Cascading randomisation (Adebayo et al. 2018, Fig. 2): the rank correlation of each method's map
    with the trained model's as the layers are re-drawn from the output down."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in summary["layers"] if summary["layers"][m]]
    if not models:
        return
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.8), squeeze=False)
    names = list(dict.fromkeys(n for m in models for n, v in summary["layers"][m].items() if "cascading" in v))
    colour = {n: plt.get_cmap("tab20")(i % 20) for i, n in enumerate(names)}       # one colour per method
    for ax, model in zip(axes[0], models):
        for name, per_mode in summary["layers"][model].items():
            if "cascading" not in per_mode:
                continue
            rho = per_mode["cascading"]["rho"]
            x = np.arange(len(rho) + 1)
            y = [1.0] + [r["mean"] for r in rho]
            style = "-" if name.startswith(("lrp", "mamba")) else "--"
            ax.plot(x, y, style, marker="o", ms=3, label=name, color=colour[name])
            labels = ["none"] + list(per_mode["cascading"]["layers"])
        ax.set_xticks(np.arange(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        ax.axhline(0, color="black", lw=0.5)
        ax.set_ylim(-0.4, 1.05)
        ax.set_title(model, fontsize=9)
        ax.set_xlabel("re-drawn down to (cumulative)", fontsize=8)
    axes[0, 0].set_ylabel("Spearman rho with the trained model's map", fontsize=8)
    handles = [plt.Line2D([], [], color=colour[n], ls="-" if n.startswith(("lrp", "mamba")) else "--", marker="o",
                          ms=3, label=n) for n in names]
    axes[0, -1].legend(handles=handles, fontsize=6, loc="upper right")
    fig.suptitle("Cascading parameter randomisation: a map that explains the model loses its rank correlation",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _cell(values: dict, m: str) -> str:
    if m not in values:
        return "-"
    v = values[m]
    return f"{v['mean']:.3f} [{v['lo']:.3f}, {v['hi']:.3f}]" if v["n"] else "n/a"


def markdown(summary: dict) -> str:
    lines = []
    for model, per_method in summary["results"].items():
        first, second = summary["removals"][model]
        faith = [c.format(first, second) for c in FAITHFULNESS]
        for title, columns in (("faithfulness", faith), ("sanity checks", SANITY)):
            shown = [m for m in columns if any(m in v for v in per_method.values())]
            if not shown:
                continue
            lines += [f"### {model}: {title} ({summary['examples'][model]} examples)", "",
                      "| method | " + " | ".join(f"{m} ({better(m)})" for m in shown) + " |",
                      "|" + " --- |" * (len(shown) + 1)]
            lines += [f"| {method} | " + " | ".join(_cell(values, m) for m in shown) + " |"
                      for method, values in per_method.items()]
            lines.append("")
        for method, error in summary.get("errors", {}).get(model, {}).items():
            lines += [f"{method}: failed ({error})", ""]
        ref = "lrp-all eps=0.001"
        if ref in summary["seconds"][model]:
            lines += [f"Wall time per call (s, the first call of a shape compiles), {ref}: "
                      + ", ".join(f"{k} {v}" for k, v in summary["seconds"][model][ref].items()), ""]
        if summary["total_seconds"].get(model):
            lines += [f"Total for the model: {summary['total_seconds'][model]:.0f} s.", ""]
    lines += ["### Batched metrics against Python loops (compile time excluded, mean of 3 runs)", "",
              "| model | method | examples | metric | batched (s) | loop (s) | speedup |", "|" + " --- |" * 7]
    for model, sp in summary["speedup"].items():
        for name, row in sp.get("rows", {}).items():
            lines.append(f"| {model} | {sp['method']} | {sp['examples']} | {name} | {row['batched']} | "
                         f"{row['per-example loop']} | {row['speedup']}x |")
    return "\n".join(lines) + "\n"


KEYS = ("examples", "results", "seconds", "total_seconds", "speedup", "layers", "removals", "errors", "commands",
        "sources")


def overlay(summary: dict, other: dict, keep: set) -> None:
    """Adds ``other``'s models to ``summary``, except those in ``keep`` (this run's own)."""
    for k in KEYS:
        summary.setdefault(k, {})
        summary[k].update({m: v for m, v in other.get(k, {}).items() if m not in keep})


def write(out: str, summary: dict, update: bool = False) -> str:
    """Writes the JSON and the tables; with ``update`` the models another run wrote to the JSON meanwhile
    are kept (re-read just before writing, so that runs of different models can share OUT)."""
    path = os.path.join(out, "benchmark_faithfulness.json")
    if update and os.path.exists(path):
        with open(path) as f:
            on_disk = json.load(f)
        overlay(summary, on_disk, set(summary["commands"]))
    with open(path + ".tmp", "w") as f:
        json.dump(summary, f, indent=1)
    os.replace(path + ".tmp", path)
    table = markdown(summary)
    with open(os.path.join(out, "benchmark_faithfulness.md"), "w") as f:
        f.write(table)
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 examples, four methods")
    parser.add_argument("--out", default=os.path.join(ROOT, "experiments", "results"))
    parser.add_argument("--n", type=int, default=None, help="examples per model (default 100, quick 8)")
    parser.add_argument("--models", default=None, help="comma-separated registry names (default: every one whose "
                        f"checkpoint is present); the registry: {', '.join(REGISTRY)}")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                        help="add a model checkpoint to the registry (and to the run)")
    parser.add_argument("--update", action="store_true", help="keep the other models' results in OUT's JSON")
    parser.add_argument("--merge", action="append", default=[], metavar="JSON",
                        help="add the models of another run's benchmark_faithfulness.json (implies --update)")
    parser.add_argument("--methods", default=None, help="comma-separated method names (default: all)")
    parser.add_argument("--no-sanity", action="store_true", help="leave out the random-logit and randomisation checks")
    parser.add_argument("--speedup-examples", type=int, default=64)
    args = parser.parse_args(argv)
    n = args.n or (8 if args.quick else 100)
    registry = dict(REGISTRY)
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            parser.error(f"--checkpoint takes NAME=PATH; got {item!r}.")
        registry[name] = Entry(name, os.path.abspath(path))
    args.update = args.update or bool(args.merge)
    if args.models == "none":                         # only --merge: assemble the tables and figures
        chosen = []
    elif args.models:
        chosen = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in chosen if m not in registry]
        if unknown:
            parser.error(f"--models: unknown {unknown}; the registry has {list(registry)}.")
        missing = [m for m in chosen if not present(registry[m])]
        if missing:
            parser.error(f"--models: no checkpoint for {missing} ({[registry[m].source for m in missing]}).")
    else:
        chosen = [m for m, e in registry.items() if present(e)]
        skipped = [m for m, e in registry.items() if not present(e)]
        if skipped:
            print(f"not present, skipped: {skipped}", file=sys.stderr)
    os.makedirs(args.out, exist_ok=True)
    command = "python experiments/benchmark_faithfulness.py " + " ".join(argv if argv is not None else sys.argv[1:])
    summary = {k: {} for k in KEYS}
    own = {registry[c].title for c in chosen}
    for other in args.merge:
        with open(other) as f:
            overlay(summary, json.load(f), own)
    path = os.path.join(args.out, "benchmark_faithfulness.json")
    if args.update and os.path.exists(path):
        with open(path) as f:
            overlay(summary, json.load(f), own | set(summary["commands"]))
    summary.update(quick=args.quick, device=str(jax.devices()[0]))
    wanted = None if args.methods is None else {m.strip() for m in args.methods.split(",") if m.strip()}
    for key in chosen:
        entry = registry[key]
        model = entry.title
        start = time.perf_counter()
        data = load_entry(entry, n)
        for k in KEYS:
            summary[k][model] = {}
        summary["examples"][model] = int(len(data.X))
        summary["removals"][model] = list(data.removals)
        summary["commands"][model] = command
        summary["sources"][model] = source(entry)
        all_methods = methods(data)
        order = [m for m in FIRST if m in all_methods] + [m for m in all_methods if m not in FIRST]
        for name in order:
            method = all_methods[name]
            if (args.quick and name not in QUICK_METHODS) or (wanted is not None and name not in wanted):
                continue
            try:
                result, sec, layers = evaluate(method, data, not args.no_sanity)
            except Exception as error:                  # one method failing on one model is reported, not fatal
                traceback.print_exc()
                summary["errors"][model][name] = f"{type(error).__name__}: {str(error)[:300]}"
                continue
            summary["results"][model][name], summary["seconds"][model][name] = result, sec
            summary["layers"][model][name] = layers
            for k in ("results", "seconds", "layers"):     # the tables in the order of methods()
                summary[k][model] = {m: summary[k][model][m] for m in all_methods if m in summary[k][model]}
            write(args.out, summary, args.update)          # after every method: a stopped run keeps what it has
            print(model, name, round(sum(sec.values()), 1), "s", {k: round(v["mean"], 3) for k, v in result.items()},
                  file=sys.stderr, flush=True)
        summary["speedup"][model] = speedup("lrp-all eps=0.001", all_methods["lrp-all eps=0.001"], data,
                                            min(len(data.X), args.speedup_examples))
        print(model, summary["speedup"][model], file=sys.stderr, flush=True)
        summary["total_seconds"][model] = round(time.perf_counter() - start, 1)
        write(args.out, summary, args.update)            # after every model: a long run keeps what it has
    table = write(args.out, summary, args.update)
    figure(os.path.join(args.out, "benchmark_faithfulness.png"), summary)
    sanity_figure(os.path.join(args.out, "benchmark_faithfulness_sanity.png"), summary)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
