"""One faithfulness benchmark: every method x the shipped models x every metric of lrpjax.evaluate.

Models: the shipped SST BiLSTM (lrpjax.app.model, test sentences of 10-30 words, embedded) and the
JapaneseVowels GRU (checkpoints/japanese_vowels_gru.npz, written by
experiments/timeseries_japanese_vowels.py; test series, standardised). Methods: LRP (lrp-all at eps
0.001 and 0.1, lrp-prop at eps 0.2, lrp-half at eps 0.001), the gradient, Gradient x Input,
Integrated Gradients (32 points), SmoothGrad (32 samples), occlusion (f-diff), Contextual
Decomposition (the BiLSTM only: CD is defined for standard LSTM cells) and the random baseline. The
predicted class of each example is explained and measured. Metrics (lrpjax.evaluate.metrics and
sanity): AOPC of the MoRF deletion curve (10 steps, zero removal), Delta A_F with zero removal and with
ROAD's noisy linear imputation, ERASER comprehensiveness and sufficiency AOPC, faithfulness
correlation (|S| = 3, 32 subsets), the random-logit test and cascading parameter randomisation (Spearman
rho of the maps with every layer re-drawn; lower is better for both). Every figure is a mean over
examples with a 95 % percentile bootstrap interval (1000 resamples); the wall time of every metric call
is recorded. Finally the batched deletion curves are timed against a per-example Python loop of the
same metric (a compiled call per example) and against a loop over examples and steps that calls the
compiled model once per perturbed input (how image libraries evaluate).

    python experiments/benchmark_faithfulness.py
    python experiments/benchmark_faithfulness.py --quick --out /tmp/q        # a few minutes

Writes OUT/benchmark_faithfulness.json, .md and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

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
METRICS = ("aopc morf", "delta A_F (zero)", "delta A_F (road)", "comprehensiveness", "sufficiency",
           "faithfulness corr.", "random-logit rho", "randomisation rho")
BETTER = {"aopc morf": "higher", "delta A_F (zero)": "higher", "delta A_F (road)": "higher",
          "comprehensiveness": "higher", "sufficiency": "lower", "faithfulness corr.": "higher",
          "random-logit rho": "lower", "randomisation rho": "lower"}


def sst_data(n: int):
    from lrpjax.app.model import SSTModel

    bundle = SSTModel.load()
    sentences = [ex for ex in load_sst("test") if 10 <= len(ex.tokens) <= 30][:n]
    T = max(len(ex.tokens) for ex in sentences)
    E = np.asarray(bundle.params["embed"]).shape[1]
    X = np.zeros((len(sentences), T, E), np.float32)
    mask = np.zeros((len(sentences), T), bool)
    for b, ex in enumerate(sentences):
        X[b, :len(ex.tokens)] = bundle.embed(list(ex.tokens))
        mask[b, :len(ex.tokens)] = True
    params = jax.tree.map(jnp.asarray, bundle.params["model"])
    return bilstm.apply, params, X, mask


def gru_data(n: int, path: str):
    loaded = checkpoints.load_model(path)
    train_set, test_set = timeseries.standardise(timeseries.load("JapaneseVowels", "train"),
                                                 timeseries.load("JapaneseVowels", "test"))
    return loaded.model.apply, jax.tree.map(jnp.asarray, loaded.params), test_set.X[:n], test_set.mask[:n]


QUICK_METHODS = ("lrp-all eps=0.001", "gradient x input", "occlusion", "random")


def methods(apply, with_cd: bool) -> dict:
    out = {"lrp-all eps=0.001": lrpjax.lrp(apply, lrpjax.rules.preset("lrp-all", eps=1e-3)),
           "lrp-all eps=0.1": lrpjax.lrp(apply, lrpjax.rules.preset("lrp-all", eps=0.1)),
           "lrp-prop eps=0.2": lrpjax.lrp(apply, lrpjax.rules.preset("lrp-prop", eps=0.2)),
           "lrp-half eps=0.001": lrpjax.lrp(apply, lrpjax.rules.preset("lrp-half", eps=1e-3)),
           "gradient": lrpjax.gradient(apply),
           "gradient x input": lrpjax.gradient_x_input(apply),
           "integrated gradients": lrpjax.integrated_gradients(apply, 32),
           "smoothgrad": lrpjax.methods.smoothgrad(apply, 0.15, 32, 0),
           "occlusion": lrpjax.occlusion(apply, "f")}
    if with_cd:
        from lrpjax.methods.decomposition import cd

        out["contextual decomposition"] = cd(apply)
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
    return np.asarray(value)


def evaluate(method, params, X, mask, with_sanity: bool) -> tuple[dict, dict]:
    s: dict = {}
    road = metrics.Removal("road", noise=0.1)
    morf = timed(s, "morf (zero)", lambda: metrics.deletion_curves(method, params, X, mask=mask, steps=10))
    lerf = timed(s, "lerf (zero)", lambda: metrics.deletion_curves(method, params, X, mask=mask, steps=10,
                                                                    order="least"))
    morf_r = timed(s, "morf (road)", lambda: metrics.deletion_curves(method, params, X, mask=mask, steps=10,
                                                                      removal=road))
    lerf_r = timed(s, "lerf (road)", lambda: metrics.deletion_curves(method, params, X, mask=mask, steps=10,
                                                                      removal=road, order="least"))
    bins = (0,) + metrics.ERASER_BINS                    # k = 0 in the same call: one compiled program
    comp = timed(s, "comprehensiveness", lambda: metrics.comprehensiveness(method, params, X, mask=mask, k=bins))
    suff = timed(s, "sufficiency", lambda: metrics.sufficiency(method, params, X, mask=mask, k=bins))
    fc = timed(s, "faithfulness", lambda: metrics.faithfulness_correlation(method, params, X, mask=mask, size=3,
                                                                            n=32))
    values = {"aopc morf": np.asarray(aopc(morf)), "delta A_F (zero)": np.asarray(metrics.delta_af(morf, lerf)),
              "delta A_F (road)": np.asarray(metrics.delta_af(morf_r, lerf_r)),
              "comprehensiveness": np.asarray(metrics.eraser_aopc(comp[:, 1:], comp[:, 0])),
              "sufficiency": np.asarray(metrics.eraser_aopc(suff[:, 1:], suff[:, 0])), "faithfulness corr.": fc}
    if with_sanity and method.name not in ("random",):
        values["random-logit rho"] = timed(s, "random logit",
                                           lambda: sanity.random_logit(method, params, X, mask=mask).spearman)
        values["randomisation rho"] = timed(s, "randomisation", lambda: sanity.parameter_randomisation(
            method, params, X, mask=mask).spearman[:, -1])
    return {k: bootstrap(v) for k, v in values.items()}, s


def speedup(method, apply, params, X, mask, repeats: int = 3) -> dict[str, float]:
    """Batched deletion curves against a per-example loop of the same metric and a loop over examples
    and steps (one compiled model call per perturbed input). Compile time excluded (one warm-up each)."""
    B = len(X)
    batched = lambda: metrics.deletion_curves(method, params, X, mask=mask, steps=10)  # noqa: E731
    per_example = lambda: [metrics.deletion_curves(method, params, X[b:b + 1], mask=mask[b:b + 1], steps=10)  # noqa: E731
                           for b in range(B)]
    score = jax.jit(lambda x, m, t: apply(params, x, None, mask=m)[t])
    R, targets = metrics.explained_relevance(method, params, X, mask=mask)
    R, targets = np.asarray(R), np.asarray(targets)

    def naive():
        out = np.zeros((B, 11))
        for b in range(B):
            order = np.argsort(-np.where(mask[b], R[b], -np.inf), kind="stable")
            x = X[b].copy()
            out[b, 0] = score(x, mask[b], targets[b])
            for s in range(1, 11):
                if s <= mask[b].sum():
                    x[order[s - 1]] = 0.0
                out[b, s] = score(x, mask[b], targets[b])
        return out

    result = {}
    for name, fn in (("batched", batched), ("per-example loop", per_example), ("loop over steps", naive)):
        jax.block_until_ready(fn())
        start = time.perf_counter()
        for _ in range(repeats):
            jax.block_until_ready(fn())
        result[name] = (time.perf_counter() - start) / repeats
    np.testing.assert_allclose(np.asarray(batched()), naive(), rtol=1e-4, atol=1e-4)
    return {"examples": B, **{k: round(v, 4) for k, v in result.items()},
            "speedup over per-example loop": round(result["per-example loop"] / result["batched"], 1),
            "speedup over loop over steps": round(result["loop over steps"] / result["batched"], 1)}


def figure(path: str, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results)
    present = [m for m in METRICS if any(m in v for per in results.values() for v in per.values())]
    fig, axes = plt.subplots(len(models), len(present), figsize=(3.1 * len(present), 3.6 * len(models)),
                             squeeze=False)
    for i, model in enumerate(models):
        names = list(results[model])
        for j, metric in enumerate(present):
            ax = axes[i, j]
            rows = [(n, results[model][n].get(metric)) for n in names]
            rows = [(n, v) for n, v in rows if v is not None]
            y = np.arange(len(rows))
            means = np.array([v["mean"] for _, v in rows])
            err = np.array([[v["mean"] - v["lo"], v["hi"] - v["mean"]] for _, v in rows]).T
            colors = ["tab:red" if n.startswith("lrp") else "tab:grey" if n == "random" else "tab:blue" for n, _ in rows]
            ax.barh(y, means, xerr=err, color=colors, capsize=2)
            ax.set_yticks(y, [n for n, _ in rows] if j == 0 else [""] * len(rows), fontsize=7)
            ax.invert_yaxis()
            ax.axvline(0, color="black", lw=0.5)
            ax.set_title(f"{metric} ({BETTER[metric]} better)", fontsize=8)
            ax.tick_params(axis="x", labelsize=7)
        axes[i, 0].set_ylabel(model, fontsize=9)
    fig.suptitle("Faithfulness benchmark: mean over examples, 95% bootstrap intervals", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(summary: dict) -> str:
    lines = []
    for model, per_method in summary["results"].items():
        present = [m for m in METRICS if any(m in v for v in per_method.values())]
        lines += [f"### {model} ({summary['examples'][model]} examples)", "",
                  "| method | " + " | ".join(f"{m} ({BETTER[m]} better)" for m in present) + " |",
                  "|" + " --- |" * (len(present) + 1)]
        for method, values in per_method.items():
            cells = [f"{values[m]['mean']:.3f} [{values[m]['lo']:.3f}, {values[m]['hi']:.3f}]" if m in values else "-"
                     for m in present]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines += ["", "Wall time per metric call (s, first call includes compilation), lrp-all eps=0.001: "
                  + ", ".join(f"{k} {v}" for k, v in summary["seconds"][model]["lrp-all eps=0.001"].items()), ""]
    lines += ["### Batched metric against Python loops (MoRF deletion curve, 10 steps, lrp-all eps=0.001, "
              "compile time excluded)", "", "| model | examples | batched (s) | per-example loop (s) | "
              "loop over steps (s) | speedup vs per-example | speedup vs steps loop |", "|" + " --- |" * 7]
    for model, sp in summary["speedup"].items():
        lines.append(f"| {model} | {sp['examples']} | {sp['batched']} | {sp['per-example loop']} | "
                     f"{sp['loop over steps']} | {sp['speedup over per-example loop']}x | "
                     f"{sp['speedup over loop over steps']}x |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=os.path.join(ROOT, "experiments", "results"))
    parser.add_argument("--n", type=int, default=None, help="examples per model (default 200, quick 12)")
    parser.add_argument("--gru", default=os.path.join(ROOT, "checkpoints", "japanese_vowels_gru.npz"))
    parser.add_argument("--no-sanity", action="store_true", help="leave out the random-logit and randomisation "
                        "checks (two more compiled programs per method)")
    args = parser.parse_args(argv)
    n = args.n or (8 if args.quick else 200)
    os.makedirs(args.out, exist_ok=True)
    data = {"SST BiLSTM": (sst_data(n), True), "JapaneseVowels GRU": (gru_data(n, args.gru), False)}
    results, seconds, speed, examples = {}, {}, {}, {}
    for model_name, ((apply, params, X, mask), with_cd) in data.items():
        results[model_name], seconds[model_name] = {}, {}
        examples[model_name] = int(len(X))
        for name, method in methods(apply, with_cd).items():
            if args.quick and name not in QUICK_METHODS:
                continue
            results[model_name][name], seconds[model_name][name] = evaluate(method, params, X, mask,
                                                                            not args.no_sanity)
            print(model_name, name, {k: round(v["mean"], 3) for k, v in results[model_name][name].items()},
                  file=sys.stderr, flush=True)
        lrp_all = methods(apply, False)["lrp-all eps=0.001"]
        speed[model_name] = speedup(lrp_all, apply, params, X[:min(len(X), 64)], mask[:min(len(X), 64)])
        print(model_name, speed[model_name], file=sys.stderr, flush=True)
    summary = {"examples": examples, "results": results, "seconds": seconds, "speedup": speed, "quick": args.quick,
               "device": str(jax.devices()[0]),
               "command": "python experiments/benchmark_faithfulness.py " + " ".join(argv or sys.argv[1:])}
    with open(os.path.join(args.out, "benchmark_faithfulness.json"), "w") as f:
        json.dump(summary, f, indent=1)
    table = markdown(summary)
    with open(os.path.join(args.out, "benchmark_faithfulness.md"), "w") as f:
        f.write(table)
    figure(os.path.join(args.out, "benchmark_faithfulness.png"), results)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
