"""Recurrent classifiers of the UEA time-series sets, explained and measured with lrpjax.evaluate.

``--dataset JapaneseVowels`` (default): a GRU (32 units) with a linear read-out on JapaneseVowels (9
speakers, 12 LPC cepstrum coefficients per frame, 7-29 frames); ``--dataset BasicMotions``: an LSTM (16
units, the chapter's standard cell) on BasicMotions (4 activities, 3-D accelerometer and gyroscope of a
smart watch, 100 steps). Both read lrpjax.data.timeseries, standardised per channel by the training set,
with a few training series per class held out for early stopping; the script reports test accuracy
beside two nearest-neighbour baselines computed here on the same split (1-NN Euclidean on the
zero-padded series and 1-NN dependent DTW, the archive's standard baselines) and published figures.
Then explains the test set's predictions with LRP (lrp-all, lrp-half at eps 1e-3), Gradient x Input,
Integrated Gradients and TSR on top of the gradient, measures them with the suite (deletion curves
MoRF/LeRF with zero and ROAD removal, Delta A_F, ERASER comprehensiveness/sufficiency AOPC, faithfulness
correlation, random logit, cascading parameter randomisation) and draws time x feature heatmaps and
relevance over time.

    python experiments/timeseries_japanese_vowels.py --checkpoint checkpoints/japanese_vowels_gru.npz
    python experiments/timeseries_japanese_vowels.py --dataset BasicMotions --checkpoint checkpoints/basic_motions_lstm.npz
    python experiments/timeseries_japanese_vowels.py --quick --out /tmp/q        # about a minute

Writes OUT/timeseries_<set>.json, .md and the figures OUT/timeseries_<set>_heatmap.png and
OUT/timeseries_<set>_over_time.png (JapaneseVowels keeps its first names: timeseries_japanese_vowels.json,
timeseries_heatmap.png, timeseries_over_time.png).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass

# These programs are small and many (one per method and metric): compilation, not running, dominates,
# and a lower XLA backend optimisation level compiles several times faster (results agree to float32
# rounding). Set XLA_FLAGS yourself to override.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax

import lrpjax
from lrpjax import train
from lrpjax.core.cells import GRUCell, StandardCell
from lrpjax.data import timeseries
from lrpjax.evaluate import metrics, sanity
from lrpjax.io import checkpoints
from lrpjax.methods.tsr import tsr
from lrpjax.models import Dense, Recurrent, Sequential
from lrpjax.viz import timeseries as tsplot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PUBLISHED = {
    "JapaneseVowels": {"Kudo et al. 1999 (passing-through regions, the set's original paper)": 0.941},
    "BasicMotions": {},
}


@dataclass(frozen=True)
class Config:
    dataset: str = "JapaneseVowels"
    cell: str = "gru"              # "gru" (GRUCell) or "lstm" (StandardCell)
    H: int = 32
    seed: int = 0
    lr: float = 5e-3
    batch_size: int = 32
    epochs: int = 120
    patience: int = 20
    val_per_class: int = 6        # training series per class held out for early stopping
    n_explain: int = 370          # test series explained and measured (at most the test set)
    n_boot: int = 1000


DATASETS = {
    "JapaneseVowels": dict(),
    "BasicMotions": dict(dataset="BasicMotions", cell="lstm", H=16, batch_size=8, epochs=200, patience=40,
                         val_per_class=2, n_explain=40),
}
QUICK = dict(epochs=15, patience=5, n_explain=24, n_boot=200)
QUICK_METHODS = ("lrp-all", "tsr(gradient)", "random")
FEATURES = {"JapaneseVowels": [f"c{i + 1}" for i in range(12)],
            "BasicMotions": ["acc x", "acc y", "acc z", "gyr x", "gyr y", "gyr z"]}


def stem(dataset: str) -> str:
    """File stem of a set's results: JapaneseVowels keeps its first names."""
    return "japanese_vowels" if dataset == "JapaneseVowels" else "basic_motions"


def make_model(config: Config, classes: int) -> Sequential:
    cell = GRUCell() if config.cell == "gru" else StandardCell()
    return Sequential((Recurrent(cell, config.H), Dense(classes)))


def split_validation(data: timeseries.TimeSeries, seed: int, per_class: int = 6):
    """``per_class`` series per class held out (stratified), the rest for training: (train, val) index arrays."""
    rng = np.random.default_rng(seed)
    val = np.concatenate([rng.permutation(np.flatnonzero(data.y == c))[:per_class]
                          for c in range(len(data.classes))])
    return np.setdiff1d(np.arange(len(data)), val), np.sort(val)


def fit(config: Config, data: timeseries.TimeSeries):
    model = make_model(config, len(data.classes))
    params = model.init(jax.random.PRNGKey(config.seed), data.X.shape[2])
    tr, va = split_validation(data, config.seed, config.val_per_class)
    predict = lambda p, x, mask: model.apply(p, x, mask=mask)  # noqa: E731
    batch = lambda idx: {"x": data.X[idx], "mask": data.mask[idx], "y": data.y[idx]}  # noqa: E731
    start = time.time()
    result = train.fit(train.make_loss(predict, "xent"), params, batch(tr), val=batch(va),
                       metrics={"acc": train.make_metric(predict, "accuracy")}, optimizer=optax.adam(config.lr),
                       config=train.TrainConfig(epochs=config.epochs, batch_size=config.batch_size,
                                                patience=config.patience, monitor="acc", mode="max",
                                                seed=config.seed, progress=False))
    record = {"val_accuracy": float(result.best_metric), "best_step": int(result.best_step),
              "steps": int(result.steps), "seconds": round(time.time() - start, 1)}
    return model, result.params, record


def accuracy(model, params, data) -> float:
    scores = jax.jit(jax.vmap(lambda x, m: model.apply(params, x, mask=m)))(data.X, data.mask)
    return float(np.mean(np.argmax(np.asarray(scores), axis=1) == data.y))


def nearest_neighbour_baselines(train_set, test_set) -> dict[str, float]:
    """1-NN with the Euclidean distance of the zero-padded series and with dependent DTW (all channels
    aligned together, squared Euclidean cost per frame, no window)."""
    Xtr, Xte = train_set.X.astype(np.float64), test_set.X.astype(np.float64)
    T = max(Xtr.shape[1], Xte.shape[1])
    pad = lambda X: np.pad(X, ((0, 0), (0, T - X.shape[1]), (0, 0)))  # noqa: E731
    d_ed = ((pad(Xte)[:, None] - pad(Xtr)[None]) ** 2).sum(axis=(2, 3))
    ed = float(np.mean(train_set.y[np.argmin(d_ed, axis=1)] == test_set.y))
    Ltr, correct = train_set.lengths, 0
    for n in range(len(test_set)):
        a = Xte[n, :test_set.lengths[n]]
        cost = ((a[None, :, None, :] - Xtr[:, None, :, :]) ** 2).sum(-1)          # (N, La, T)
        D = np.full((len(Xtr), len(a) + 1, Xtr.shape[1] + 1), np.inf)
        D[:, 0, 0] = 0.0
        for i in range(1, len(a) + 1):
            for j in range(1, Xtr.shape[1] + 1):
                D[:, i, j] = cost[:, i - 1, j - 1] + np.minimum(np.minimum(D[:, i - 1, j], D[:, i, j - 1]),
                                                                D[:, i - 1, j - 1])
        dist = D[np.arange(len(Xtr)), len(a), Ltr]
        correct += int(train_set.y[np.argmin(dist)] == test_set.y[n])
    return {"1-NN Euclidean (zero-padded), computed here": ed,
            "1-NN DTW (dependent, full window), computed here": correct / len(test_set)}


def methods(model) -> dict[str, lrpjax.methods.Method]:
    grad = lrpjax.gradient(model.apply)
    return {"lrp-all": lrpjax.lrp(model.apply, lrpjax.rules.preset("lrp-all", eps=1e-3)),
            "lrp-half": lrpjax.lrp(model.apply, lrpjax.rules.preset("lrp-half", eps=1e-3)),
            "gradient x input": lrpjax.gradient_x_input(model.apply),
            "integrated gradients": lrpjax.integrated_gradients(model.apply, steps=32),
            "random": lrpjax.methods.random_baseline(model.apply, seed=0),
            "tsr(gradient)": tsr(grad)}


def bootstrap(values: np.ndarray, n: int, seed: int = 0) -> dict[str, float]:
    """Mean and its 95 % percentile bootstrap interval over examples (NaN examples left out)."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n, len(values)))].mean(axis=1)
    return {"mean": float(values.mean()), "lo": float(np.percentile(means, 2.5)),
            "hi": float(np.percentile(means, 97.5)), "n": int(len(values))}


def evaluate(method, params, X, mask, n_boot: int) -> dict[str, dict[str, float]]:
    """Every metric of the suite on one method; the predicted class is explained and measured."""
    out, seconds = {}, {}

    def timed(name, fn):
        start = time.time()
        value = np.asarray(fn())
        seconds[name] = round(time.time() - start, 2)
        return value

    for removal_name, removal in (("zero", metrics.Removal()), ("road", metrics.Removal("road", noise=0.1))):
        morf = timed(f"morf-{removal_name}", lambda: metrics.deletion_curves(method, params, X, mask=mask,
                                                                            removal=removal, steps=10))
        lerf = timed(f"lerf-{removal_name}", lambda: metrics.deletion_curves(method, params, X, mask=mask,
                                                                            removal=removal, steps=10,
                                                                            order="least"))
        out[f"aopc morf ({removal_name})"] = bootstrap(lrpjax.evaluate.aopc(morf), n_boot)
        out[f"delta A_F ({removal_name})"] = bootstrap(metrics.delta_af(morf, lerf), n_boot)
    bins = (0,) + metrics.ERASER_BINS                    # k = 0 in the same call: one compiled program
    comp = timed("comprehensiveness", lambda: metrics.comprehensiveness(method, params, X, mask=mask, k=bins))
    suff = timed("sufficiency", lambda: metrics.sufficiency(method, params, X, mask=mask, k=bins))
    out["comprehensiveness aopc"] = bootstrap(metrics.eraser_aopc(comp[:, 1:], comp[:, 0]), n_boot)
    out["sufficiency aopc"] = bootstrap(metrics.eraser_aopc(suff[:, 1:], suff[:, 0]), n_boot)
    out["faithfulness correlation"] = bootstrap(timed("faithfulness", lambda: metrics.faithfulness_correlation(
        method, params, X, mask=mask, size=3, n=32)), n_boot)
    if not method.per_position and method.name != "random":
        logit = timed("random logit", lambda: sanity.random_logit(method, params, X, mask=mask).spearman)
        out["random-logit spearman"] = bootstrap(logit, n_boot)
        cascade = timed("randomisation", lambda: sanity.parameter_randomisation(method, params, X, mask=mask).spearman)
        out["cascading randomisation spearman (all layers)"] = bootstrap(cascade[:, -1], n_boot)
    return out, seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="JapaneseVowels", choices=list(DATASETS))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=os.path.join(ROOT, "experiments", "results"))
    parser.add_argument("--checkpoint", help="write the trained model here")
    parser.add_argument("--model", help="explain this checkpoint instead of training")
    parser.add_argument("--n-explain", type=int, default=None, help="test series measured (default: all)")
    args = parser.parse_args(argv)
    config = Config(**{**DATASETS[args.dataset], **(QUICK if args.quick else {})})
    if args.n_explain is not None:
        config = dataclasses.replace(config, n_explain=args.n_explain)
    os.makedirs(args.out, exist_ok=True)
    name = config.dataset
    train_set, test_set = timeseries.standardise(timeseries.load(name, "train"), timeseries.load(name, "test"))
    if args.model:
        loaded = checkpoints.load_model(args.model)
        model, params, record = loaded.model, loaded.params, loaded.metadata.get("metrics", {})
        if loaded.metadata.get("dataset", "JapaneseVowels") != name:
            parser.error(f"--model {args.model} was trained on {loaded.metadata.get('dataset')}; pass --dataset "
                         f"{loaded.metadata.get('dataset')}.")
    else:
        model, params, record = fit(config, train_set)
        if args.checkpoint:
            kind = "gru-japanese-vowels" if name == "JapaneseVowels" else f"{config.cell}-{stem(name).replace('_', '-')}"
            checkpoints.save_model(args.checkpoint, model, jax.tree.map(np.asarray, params),
                                   {"kind": kind, "dataset": name, "metrics": record,
                                    "config": dataclasses.asdict(config), "classes": list(train_set.classes),
                                    "data": f"{name} (data/timeseries), standardised by the training set",
                                    "command": "python experiments/timeseries_japanese_vowels.py "
                                               + " ".join(argv if argv is not None else sys.argv[1:])})
    test_acc = accuracy(model, params, test_set)
    baselines = nearest_neighbour_baselines(train_set, test_set) if not args.quick else {}
    print(f"test accuracy {test_acc:.4f}; baselines {baselines}", file=sys.stderr)

    X, mask = test_set.X[:config.n_explain], test_set.mask[:config.n_explain]
    example = int(np.argmax(test_set.lengths[:config.n_explain]))
    x, m = X[example], mask[example]
    target = int(np.argmax(model.apply(params, x, mask=m)))
    maps = {key: np.asarray(method(params, x, target, mask=m)) for key, method in methods(model).items()
            if not method.per_position}
    features = FEATURES[name]
    prefix = "timeseries" if name == "JapaneseVowels" else f"timeseries_{stem(name)}"
    what = f"speaker {target + 1}" if name == "JapaneseVowels" else f"class {train_set.classes[target]!r}"
    tsplot.time_heatmap(maps, os.path.join(args.out, f"{prefix}_heatmap.png"), x=x, mask=m, features=features,
                        title=f"{name} test series {example}: {what} explained")
    tsplot.relevance_over_time(maps, os.path.join(args.out, f"{prefix}_over_time.png"), mask=m,
                               title=f"relevance per step, summed over the {len(features)} channels (series {example})")
    summary = {"config": dataclasses.asdict(config), "quick": args.quick, "training": record,
               "test_accuracy": test_acc, "baselines": {**baselines, **PUBLISHED[name]}, "n_explained": int(len(X)),
               "command": "python experiments/timeseries_japanese_vowels.py "
                          + " ".join(argv if argv is not None else sys.argv[1:])}
    results, timings = {}, {}
    for method_name, method in methods(model).items():
        if args.quick and method_name not in QUICK_METHODS:
            continue
        results[method_name], timings[method_name] = evaluate(method, params, X, mask, config.n_boot)
        print(method_name, {k: round(v["mean"], 4) for k, v in results[method_name].items()}, file=sys.stderr,
              flush=True)
        write(args.out, name, {**summary, "metrics": results, "seconds": timings})
    print(write(args.out, name, {**summary, "metrics": results, "seconds": timings}))
    return 0


def write(out: str, dataset: str, summary: dict) -> str:
    """Writes the JSON and the Markdown table (after every method, so that a long run keeps what it has)."""
    with open(os.path.join(out, f"timeseries_{stem(dataset)}.json"), "w") as f:
        json.dump(summary, f, indent=1)
    table = markdown(summary)
    with open(os.path.join(out, f"timeseries_{stem(dataset)}.md"), "w") as f:
        f.write(table)
    return table


def markdown(summary: dict) -> str:
    model = "GRU" if summary["config"]["cell"] == "gru" else "LSTM"
    lines = [f"{summary['config']['dataset']}: test accuracy of the {model}: **{summary['test_accuracy']:.3f}** "
             f"({summary['n_explained']} test series explained).", "", "| baseline | accuracy |", "| --- | --- |"]
    lines += [f"| {k} | {v:.3f} |" for k, v in summary["baselines"].items()]
    names = list(next(iter(summary["metrics"].values())))
    lines += ["", "| method | " + " | ".join(names) + " |", "|" + " --- |" * (len(names) + 1)]
    for method, values in summary["metrics"].items():
        cells = [f"{values[n]['mean']:.3f} [{values[n]['lo']:.3f}, {values[n]['hi']:.3f}]" if n in values else "-"
                 for n in names]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
