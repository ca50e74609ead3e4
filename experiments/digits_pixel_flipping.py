"""Pixel flipping on the 8x8 handwritten digits: LRP rules and composites vs Sensitivity vs random.

The tutorial slides of Samek, Montavon and Müller (ICASSP 2017; seeds/004) measure explanation quality
by pixel flipping: remove the most relevant pixels first and watch the class score fall; the area over
the perturbation curve (AOPC, Samek et al. 2017) is larger for a better explanation, and the slides
report LRP 0.722 > Sensitivity 0.691 > Random 0.523. This script does that with lrpjax on a small MLP:

1. trains an MLP 64-100-100-10 (ReLU) on a seeded split of the 1797 digits (80 % train, of which
   10 % validation for early stopping, 20 % test) with the optax trainer, and reports accuracy;
2. explains every correctly classified test digit (target = its class) with LRP under every dense
   rule and several composites (a rule for the input layer, another above), Sensitivity (squared
   gradient), Gradient x Input and a seeded random ranking (averaged over several seeds);
3. flips the pixels one at a time, most relevant first (all 64 steps), recording the target's score
   (pre-softmax) and whether the prediction is still right, for three replacement values: 0 (the
   background: ink is removed), the training mean image, and uniform noise in [0, 1];
4. writes OUT/digits_pixel_flipping.json (configuration, accuracy, mean curves, AOPC mean and
   standard error per method and baseline), OUT/digits_pixel_flipping.png (heatmaps of every method
   for a few digits and the mean curves) and prints the Markdown table.

    python experiments/digits_pixel_flipping.py                       # full size (a few minutes)
    python experiments/digits_pixel_flipping.py --quick --out /tmp/q  # about a minute

``--checkpoint PATH`` also saves the trained MLP (``lrpjax.io.checkpoints`` .npz).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from functools import partial

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import lrpjax  # noqa: E402
from lrpjax import train  # noqa: E402
from lrpjax.io import checkpoints  # noqa: E402
from lrpjax.data import digits  # noqa: E402
from lrpjax.evaluate import Score, aopc, perturbation_curves  # noqa: E402
from lrpjax.models.mlp import MLP  # noqa: E402
from lrpjax.rules import AlphaBeta, Epsilon, Flat, Gamma, RuleSet, WSquare, Z, ZB, ZPlus, composite  # noqa: E402

NAME = "digits_pixel_flipping"
EPS = 0.1
GAMMA = 0.25
BOX = ZB(0.0, 1.0)            # pixels scaled to [0, 1]
BASELINES = ("zero", "mean", "uniform")


def rule_sets() -> dict[str, RuleSet]:
    """Every dense rule everywhere, then composites "first layer | layers above [| output]"."""
    eps = RuleSet(linear=Epsilon(EPS))
    return {
        "LRP-z": RuleSet(linear=Z()),
        "LRP-eps": eps,
        "LRP-z+": RuleSet(linear=ZPlus()),
        "LRP-a1b0": RuleSet(linear=AlphaBeta(1.0, 0.0)),
        "LRP-a2b1": RuleSet(linear=AlphaBeta(2.0, 1.0)),
        "LRP-gamma": RuleSet(linear=Gamma(GAMMA)),
        "LRP-zB|eps": composite(eps, first=BOX),
        "LRP-flat|eps": composite(eps, first=Flat()),
        "LRP-w2|eps": composite(eps, first=WSquare()),
        "LRP-zB|a2b1": composite(RuleSet(linear=AlphaBeta(2.0, 1.0)), first=BOX),
        "LRP-zB|gamma|eps": composite(RuleSet(linear=Gamma(GAMMA)), first=BOX, by_layer={"out": Epsilon(EPS)}),
    }


@dataclass(frozen=True)
class Config:
    quick: bool = False
    hidden: tuple[int, ...] = (100, 100)
    epochs: int = 200
    patience: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-3
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    seed: int = 0
    max_explained: int | None = None       # None: every correctly classified test digit
    random_seeds: int = 10
    n_heatmaps: int = 4


QUICK = Config(quick=True, epochs=25, patience=5, max_explained=120, random_seeds=3)


# --- data and model ------------------------------------------------------------------------------------

def load(config: Config):
    X, y = digits.load_digits()
    rest, test = digits.split(len(y), config.test_fraction, config.seed)
    fit_idx, val_idx = digits.split(len(rest), config.val_fraction, config.seed + 1)
    train_idx, val_idx = rest[fit_idx], rest[val_idx]
    return {name: (X[idx], y[idx]) for name, idx in (("train", train_idx), ("val", val_idx), ("test", test))}


def fit_model(config: Config, data):
    model = MLP((digits.N_PIXELS, *config.hidden, digits.N_CLASSES), "relu")
    params = model.init(jax.random.PRNGKey(config.seed), jnp.float64)
    predict = lambda p, x, m: model.apply(p, x)  # noqa: E731 - an MLP takes no mask
    as_batch = lambda split: {"x": jnp.asarray(data[split][0]), "y": jnp.asarray(data[split][1])}  # noqa: E731
    result = train.fit(train.make_loss(predict, "xent"), params, as_batch("train"), val=as_batch("val"),
                       metrics={"acc": train.make_metric(predict, "accuracy")},
                       config=train.TrainConfig(epochs=config.epochs, batch_size=config.batch_size,
                                                patience=config.patience, monitor="acc", mode="max",
                                                seed=config.seed, progress=False),
                       optimizer=optax.adam(config.learning_rate))
    accuracy = {split: float(train.make_metric(predict, "accuracy")(result.params, as_batch(split)))
                for split in ("train", "val", "test")}
    return model, result, accuracy


def load_model(path: str) -> tuple[MLP, dict, dict]:
    """(model, params, metadata) of an MLP saved with ``--checkpoint`` (e.g. checkpoints/digits_mlp.npz);
    the arrays are checked against the layout of the metadata's widths, floating point."""

    def layout(metadata: dict) -> dict:
        model = MLP(tuple(metadata["widths"]), metadata["activation"])
        shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.float64))
        return jax.tree.map(lambda s: checkpoints.ArraySpec(s.shape, "floating"), shapes)

    ckpt = checkpoints.load(path, expect=layout)
    if not ckpt.metadata["kind"].startswith("mlp"):
        raise checkpoints.CheckpointError(f"checkpoint {path!r} holds a model of kind {ckpt.metadata['kind']!r}; "
                                          "expected an MLP ('mlp-relu', 'mlp-tanh').")
    model = MLP(tuple(ckpt.metadata["widths"]), ckpt.metadata["activation"])
    return model, jax.tree_util.tree_map(jnp.asarray, ckpt.params), ckpt.metadata


# --- explanations ------------------------------------------------------------------------------------

def methods(model: MLP, config: Config) -> dict[str, list[lrpjax.Method]]:
    """name -> methods (several seeds for random, whose curves are averaged)."""
    out = {name: [lrpjax.lrp(model.apply, rules)] for name, rules in rule_sets().items()}
    out["sensitivity"] = [lrpjax.sensitivity(model.apply)]
    out["gradient_x_input"] = [lrpjax.gradient_x_input(model.apply)]
    out["random"] = [lrpjax.random_baseline(model.apply, seed) for seed in range(config.random_seeds)]
    return out


def baselines(config: Config, data, X: np.ndarray) -> dict[str, np.ndarray | float]:
    noise = np.random.default_rng(config.seed + 2).uniform(0.0, 1.0, X.shape)
    return {"zero": 0.0, "mean": data["train"][0].mean(axis=0), "uniform": noise}


def evaluate(model, params, config, data):
    X_test, y_test = data["test"]
    scores = np.asarray(jax.vmap(lambda x: model.apply(params, x))(jnp.asarray(X_test)))
    correct = np.flatnonzero(scores.argmax(axis=1) == y_test)
    chosen = correct if config.max_explained is None else correct[:config.max_explained]
    X, targets = jnp.asarray(X_test[chosen]), jnp.asarray(y_test[chosen])
    score, right = Score(model.apply, "score"), Score(model.apply, "correct")
    results, heatmaps = {}, {}
    for name, ms in methods(model, config).items():
        per_seed = []
        for m in ms:
            R = m.batch(params, X, targets)
            per_seed.append(R)
        heatmaps[name] = np.asarray(per_seed[0][:config.n_heatmaps])
        entry = {"aopc": {}, "aopc_16": {}, "curve": {}, "accuracy_curve": {}}
        for base_name, base in baselines(config, data, np.asarray(X)).items():
            curves = [perturbation_curves(score, params, X, R, targets, baseline=base) for R in per_seed]
            accs = [perturbation_curves(right, params, X, R, targets, baseline=base) for R in per_seed]
            values = np.mean([np.asarray(aopc(c)) for c in curves], axis=0)          # (B,), seeds averaged
            values_16 = np.mean([np.asarray(aopc(c, steps=16)) for c in curves], axis=0)
            entry["aopc"][base_name] = {"mean": float(values.mean()),
                                        "sem": float(values.std(ddof=1) / np.sqrt(len(values)))}
            entry["aopc_16"][base_name] = {"mean": float(values_16.mean()),
                                           "sem": float(values_16.std(ddof=1) / np.sqrt(len(values_16)))}
            entry["curve"][base_name] = np.mean([np.asarray(c).mean(axis=0) for c in curves], axis=0).tolist()
            entry["accuracy_curve"][base_name] = np.mean([np.asarray(a).mean(axis=0) for a in accs], axis=0).tolist()
        results[name] = entry
        print(f"  {name:18s} AOPC " + "  ".join(f"{b}={entry['aopc'][b]['mean']:.3f}" for b in BASELINES),
              file=sys.stderr, flush=True)
    return results, heatmaps, np.asarray(X[:config.n_heatmaps]), np.asarray(targets[:config.n_heatmaps]), len(chosen)


# --- report ------------------------------------------------------------------------------------------

def table(results) -> str:
    head = ("| method | AOPC zero | AOPC mean image | AOPC uniform | AOPC@16 zero | accuracy after 8 px (zero) |\n"
            "| --- | --- | --- | --- | --- | --- |")
    rows = []
    for name, entry in results.items():
        cells = [f"{entry['aopc'][b]['mean']:.3f} ± {entry['aopc'][b]['sem']:.3f}" for b in BASELINES]
        cells.append(f"{entry['aopc_16']['zero']['mean']:.3f} ± {entry['aopc_16']['zero']['sem']:.3f}")
        cells.append(f"{entry['accuracy_curve']['zero'][8]:.3f}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join([head, *rows])


def ordering(results) -> dict[str, dict]:
    """Per baseline: the best LRP variant, and whether LRP > Sensitivity > Random (by mean AOPC)."""
    out = {}
    for b in BASELINES:
        lrp = {n: e["aopc"][b]["mean"] for n, e in results.items() if n.startswith("LRP")}
        best = max(lrp, key=lrp.get)
        sens, rand = results["sensitivity"]["aopc"][b]["mean"], results["random"]["aopc"][b]["mean"]
        out[b] = {"best_lrp": best, "best_lrp_aopc": lrp[best], "lrp_eps_aopc": lrp["LRP-eps"],
                  "sensitivity_aopc": sens, "random_aopc": rand,
                  "best_lrp > sensitivity > random": bool(lrp[best] > sens > rand),
                  "every LRP > sensitivity": bool(min(lrp.values()) > sens)}
    return out


def figure(results, heatmaps, X, targets, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(heatmaps)
    n_rows, n_cols = len(X), len(names) + 1
    fig = plt.figure(figsize=(1.25 * n_cols, 1.4 * n_rows + 3.6))
    grid = fig.add_gridspec(n_rows + 1, n_cols, height_ratios=[1.0] * n_rows + [2.4])
    for row in range(n_rows):
        ax = fig.add_subplot(grid[row, 0])
        ax.imshow(X[row].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_ylabel(f"class {int(targets[row])}", fontsize=7)
        if row == 0:
            ax.set_title("input", fontsize=7)
        for col, name in enumerate(names, start=1):
            R = heatmaps[name][row].reshape(8, 8)
            scale = float(np.abs(R).max()) or 1.0
            ax = fig.add_subplot(grid[row, col])
            ax.imshow(R, cmap="bwr", vmin=-scale, vmax=scale)
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=6)
    shown = ["LRP-eps", "LRP-zB|eps", "LRP-a2b1", "LRP-zB|gamma|eps", "gradient_x_input", "sensitivity", "random"]
    width = n_cols // len(BASELINES)
    for k, b in enumerate(BASELINES):
        ax = fig.add_subplot(grid[n_rows, k * width:(k + 1) * width])
        for name in shown:
            ax.plot(results[name]["curve"][b], label=f"{name} ({results[name]['aopc'][b]['mean']:.2f})",
                    lw=1.2, ls="--" if name in ("sensitivity", "random") else "-")
        ax.set_title(f"pixel flipping, replacement: {b}", fontsize=8)
        ax.set_xlabel("pixels flipped (most relevant first)", fontsize=7)
        ax.set_ylabel("mean target score", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5, title="method (AOPC)", title_fontsize=5)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small configuration (about a minute)")
    parser.add_argument("--out", default=os.path.join("experiments", "results"), help="output directory")
    parser.add_argument("--checkpoint", default=None, help="also save the trained MLP to this .npz")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else Config()
    os.makedirs(args.out, exist_ok=True)
    start = time.time()
    data = load(config)
    model, result, accuracy = fit_model(config, data)
    print(f"MLP {model.widths}: accuracy train {accuracy['train']:.4f}, val {accuracy['val']:.4f}, "
          f"test {accuracy['test']:.4f} (best step {result.best_step})", file=sys.stderr, flush=True)
    trained = time.time()
    results, heatmaps, X, targets, n_explained = evaluate(model, result.params, config, data)
    summary = ordering(results)
    report = {
        "config": dataclasses.asdict(config) | {"eps": EPS, "gamma": GAMMA, "zB": [BOX.low, BOX.high],
                                                "widths": list(model.widths), "activation": model.activation},
        "sizes": {split: int(len(v[1])) for split, v in data.items()} | {"explained": n_explained},
        "train_accuracy": accuracy["train"], "val_accuracy": accuracy["val"], "test_accuracy": accuracy["test"],
        "score": "target class score before softmax; curves have 65 points (0..64 pixels flipped)",
        "rule_sets": {name: repr(rules) for name, rules in rule_sets().items()},
        "ordering": summary,
        "methods": results,
        "seconds": {"train": round(trained - start, 1), "explain_and_flip": round(time.time() - trained, 1)},
        "jax": {"version": jax.__version__, "backend": jax.default_backend()},
    }
    with open(os.path.join(args.out, f"{NAME}.json"), "w") as stream:
        json.dump(report, stream, indent=1)
    figure(results, heatmaps, X, targets, os.path.join(args.out, f"{NAME}.png"))
    if args.checkpoint:
        path = checkpoints.save(args.checkpoint, jax.tree_util.tree_map(np.asarray, result.params),
                                {"kind": model.kind, "widths": list(model.widths), "activation": model.activation,
                                 "data": "digits 8x8 / 16", "split_seed": config.seed,
                                 "test_fraction": config.test_fraction, "test_accuracy": accuracy["test"]})
        print(f"saved {path}", file=sys.stderr)
    print(f"Digits MLP {model.widths}, test accuracy {accuracy['test']:.4f}; {n_explained} correctly classified "
          f"test digits explained; AOPC over 64 single-pixel flips (mean ± s.e.m.):\n")
    print(table(results))
    print()
    for b, s in summary.items():
        print(f"- {b}: best LRP {s['best_lrp']} {s['best_lrp_aopc']:.3f}, LRP-eps {s['lrp_eps_aopc']:.3f}, "
              f"Sensitivity {s['sensitivity_aopc']:.3f}, Random {s['random_aopc']:.3f}; "
              f"best LRP > Sensitivity > Random: {s['best_lrp > sensitivity > random']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
