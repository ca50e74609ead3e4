"""Adding / subtracting fidelity study (Sec. 11.5.1, Table 11.2).

For each task ("add": n_a + n_b, "sub": n_a - n_b) this trains one-cell standard LSTMs with a linear
output without bias (17 parameters) on the toy data of :mod:`lrpjax.data.toy`, many seeds at once
(``lrpjax.train.fit_many``), keeps the first models (in seed order) whose validation MSE is below the
threshold, and explains the test sequences with Gradient x Input, Occlusion (f-diff), LRP-prop/-abs/
-half/-all (eps = 0) and Contextual Decomposition, and with three baselines the chapter does not have:
Integrated Gradients (all-zero baseline, 128 points), SmoothGrad and SmoothGrad x Input (noise 0.15 of each
sequence's value range, 64 samples, seed 0). Per model it computes over the test points
rho(n_a, R_a), rho(n_b, R_b) (Pearson) and E[(|R_a| + |R_b|) / sum_t |R_t|], with R_t the relevance of
step t summed over the two input dimensions, and reports mean (std) over models in %, beside the
chapter's numbers.

    python experiments/toy_arithmetic.py                      # full size (50 models per task)
    python experiments/toy_arithmetic.py --quick --out /tmp/q  # about a minute

Writes OUT/toy_arithmetic.json and OUT/toy_arithmetic.png and prints the Markdown table;
``--checkpoints DIR`` also saves the first model of each task as DIR/toy_<task>.npz.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import lrpjax  # noqa: E402
from lrpjax import train  # noqa: E402
from lrpjax.io import checkpoints  # noqa: E402
from lrpjax.methods.decomposition import cd  # noqa: E402
from lrpjax.cells import StandardCell  # noqa: E402
from lrpjax.data import toy  # noqa: E402
from lrpjax.methods import integrated_gradients, smoothgrad  # noqa: E402
from lrpjax.models.lstm import LSTM  # noqa: E402
from lrpjax.rules import preset  # noqa: E402

MODEL = LSTM(StandardCell())
METHODS = ("gradient_x_input", "occlusion", "lrp-prop", "lrp-abs", "lrp-half", "lrp-all", "cd",
           "integrated_gradients", "smoothgrad", "smoothgrad_x_input")
LABELS = {"gradient_x_input": "Gradient × Input", "occlusion": "Occlusion", "lrp-prop": "LRP-prop",
          "lrp-abs": "LRP-abs", "lrp-half": "LRP-half", "lrp-all": "LRP-all", "cd": "CD",
          "integrated_gradients": "Integrated Gradients", "smoothgrad": "SmoothGrad",
          "smoothgrad_x_input": "SmoothGrad × Input"}
IG_STEPS, SMOOTHGRAD_SIGMA, SMOOTHGRAD_SAMPLES = 128, 0.15, 64
STATS = ("rho_a", "rho_b", "share")
STAT_LABELS = {"rho_a": "ρ(n_a, R_a)", "rho_b": "ρ(n_b, R_b)", "share": "E[(|R_a|+|R_b|)/Σ|R_t|]"}

# Table 11.2 of the chapter: mean (std) in % over 50 models, per statistic (the baselines it does not
# have are absent).
CHAPTER = {
    "add": {
        "gradient_x_input": ((99.960, 0.017), (99.954, 0.019), (99.68, 0.53)),
        "occlusion": ((99.990, 0.004), (99.990, 0.004), (99.82, 0.27)),
        "lrp-prop": ((0.785, 3.619), (10.111, 12.362), (18.14, 4.23)),
        "lrp-abs": ((7.002, 6.224), (12.410, 17.440), (18.01, 4.48)),
        "lrp-half": ((29.035, 9.478), (51.460, 19.939), (54.09, 17.53)),
        "lrp-all": ((99.995, 0.002), (99.995, 0.002), (99.95, 0.05)),
        "cd": ((99.997, 0.002), (99.997, 0.002), (99.92, 0.06)),
    },
    "sub": {
        "gradient_x_input": ((97.9, 1.6), (-98.8, 0.6), (98.3, 0.6)),
        "occlusion": ((99.0, 2.0), (-69.0, 19.1), (25.4, 16.8)),
        "lrp-prop": ((3.1, 4.8), (-8.4, 18.9), (15.0, 2.4)),
        "lrp-abs": ((1.2, 7.6), (-23.0, 11.1), (15.1, 1.6)),
        "lrp-half": ((7.7, 15.3), (-28.9, 6.4), (42.3, 8.3)),
        "lrp-all": ((98.5, 3.5), (-99.3, 1.3), (99.3, 0.6)),
        "cd": ((-25.9, 39.1), (-50.0, 29.2), (49.4, 26.1)),
    },
}


@dataclass(frozen=True)
class Config:
    """Size of a run. The optimiser is Adam with a cosine-decayed learning rate ``lr -> lr * lr_floor``."""

    n_models: int = 50          # models kept per task
    n_seeds: int = 72           # seeds trained at once in one vmapped run
    max_rounds: int = 3         # further runs with fresh seeds if too few converge
    threshold: float = 1e-4     # validation MSE a model must reach
    epochs: int = 100
    batch_size: int = 32
    lr: float = 0.03
    lr_floor: float = 0.01
    eval_every: int = 100       # steps between validations
    stop_at_threshold: int = 0  # 1: a model stops once it reaches the threshold; 0: it trains all epochs
    n_train: int | None = None  # None: the chapter's split sizes
    n_val: int | None = None
    n_test: int | None = None
    data_seed: int = 0
    seed: int = 0


FULL = Config()
QUICK = Config(n_models=4, n_seeds=8, max_rounds=1, epochs=10, n_val=500, n_test=300,
               eval_every=50)


# --- training ----------------------------------------------------------------------------------------

def _arrays(split: toy.ToySplit, dtype=np.float32) -> dict[str, np.ndarray]:
    return {"x": split.x.astype(dtype), "mask": split.mask, "y": split.y.astype(dtype)}


def _predict(params, x, mask):
    return MODEL.apply(params, x, mask=mask)


def train_round(task: str, cfg: Config, first_seed: int) -> tuple[dict, train.TrainResult, float]:
    """Trains ``cfg.n_seeds`` models with seeds ``first_seed ..`` at once; returns (params, result, seconds)."""
    data = {s: toy.load_toy(task, s, cfg.data_seed, n=getattr(cfg, f"n_{s}")) for s in ("train", "val")}
    keys = jnp.stack([jax.random.PRNGKey(first_seed + k) for k in range(cfg.n_seeds)])
    params = jax.vmap(lambda k: MODEL.init(k, 2, 1, 1, jnp.float32))(keys)
    steps = cfg.epochs * (len(data["train"].y) // cfg.batch_size)
    optimizer = optax.adam(optax.cosine_decay_schedule(cfg.lr, steps, alpha=cfg.lr_floor))
    config = train.TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, eval_every=cfg.eval_every,
                               seed=cfg.seed, progress=None)
    start = time.perf_counter()
    result = train.fit_many(train.make_loss(_predict, "mse"), params, _arrays(data["train"]),
                            val=_arrays(data["val"]), metrics={"mse": train.make_metric(_predict, "mse")},
                            config=config, optimizer=optimizer,
                            stop_when=(lambda m: m["mse"] < cfg.threshold) if cfg.stop_at_threshold else None)
    return result.params, result, time.perf_counter() - start


def train_task(task: str, cfg: Config, quick: bool = False) -> tuple[list[dict], dict]:
    """Trains rounds of seeds until ``cfg.n_models`` reach the threshold (or ``max_rounds`` are spent).

    In ``quick`` mode the best models are kept whatever their MSE (the run is too short to converge).
    Returns the kept models (float64 numpy params) and a summary of the training.
    """
    kept, tried, converged, seconds, rounds = [], 0, 0, 0.0, []
    candidates = []
    for r in range(cfg.max_rounds):
        first = cfg.seed * 100000 + r * cfg.n_seeds
        params, result, took = train_round(task, cfg, first)
        tried += cfg.n_seeds
        reached = np.asarray(result.best_metric) < cfg.threshold  # = result.converged with stop_at_threshold
        converged += int(reached.sum())
        seconds += took
        rounds.append({"first_seed": first, "n_seeds": cfg.n_seeds, "converged": int(reached.sum()),
                       "seconds": took, "steps": int(result.steps)})
        for n, model in enumerate(train.unstack(params)):
            candidates.append((first + n, bool(reached[n]), float(result.best_metric[n]), model))
        if converged >= cfg.n_models:
            break
    good = [c for c in candidates if c[1]]
    if quick and len(good) < cfg.n_models:
        good = sorted(candidates, key=lambda c: c[2])
    kept = good[:cfg.n_models]
    to64 = lambda p: jax.tree.map(lambda a: np.asarray(a, np.float64), p)  # noqa: E731
    summary = {"seeds_tried": tried, "converged": converged, "kept": len(kept), "train_seconds": seconds,
               "rounds": rounds, "kept_seeds": [c[0] for c in kept], "kept_val_mse": [c[2] for c in kept]}
    return [to64(c[3]) for c in kept], summary


# --- explanation and statistics ----------------------------------------------------------------------

def methods() -> dict[str, lrpjax.Method]:
    """The methods of Table 11.2 (LRP with eps = 0) and the baselines."""
    found = {"gradient_x_input": lrpjax.gradient_x_input(MODEL.apply),
             "occlusion": lrpjax.occlusion(MODEL.apply, "f"), "cd": cd(MODEL.apply),
             "integrated_gradients": integrated_gradients(MODEL.apply, IG_STEPS),
             "smoothgrad": smoothgrad(MODEL.apply, SMOOTHGRAD_SIGMA, SMOOTHGRAD_SAMPLES),
             "smoothgrad_x_input": smoothgrad(MODEL.apply, SMOOTHGRAD_SIGMA, SMOOTHGRAD_SAMPLES,
                                              map="gradient_x_input")}
    for name in ("lrp-prop", "lrp-abs", "lrp-half", "lrp-all"):
        found[name] = lrpjax.lrp(MODEL.apply, preset(name, eps=0.0))
    return {name: found[name] for name in METHODS}


def statistics(R: np.ndarray, split: toy.ToySplit) -> dict[str, float]:
    """rho(n_a, R_a), rho(n_b, R_b) and E[(|R_a| + |R_b|) / sum_t |R_t|] (fractions) of R (B, T)."""
    rows = np.arange(len(split.y))
    R_a, R_b = R[rows, split.a], R[rows, split.b]
    n_a, n_b = split.numbers[rows, split.a], split.numbers[rows, split.b]
    total = np.sum(np.abs(R) * split.mask, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (np.abs(R_a) + np.abs(R_b)) / total
        return {"rho_a": float(np.corrcoef(n_a, R_a)[0, 1]), "rho_b": float(np.corrcoef(n_b, R_b)[0, 1]),
                "share": float(np.mean(share))}


def explain_task(models: list[dict], split: toy.ToySplit) -> tuple[dict, dict]:
    """Per method and model the three statistics; also the relevance of the first model (for plots)."""
    X, mask = jnp.asarray(split.x, jnp.float64), jnp.asarray(split.mask)
    targets = jnp.zeros((len(split.y),), jnp.int32)
    per_method, first = {}, {}
    for name, method in methods().items():
        rows = []
        for params in models:
            R = np.asarray(lrpjax.per_token(method.batch(params, X, targets, mask=mask), 3))
            rows.append(statistics(R, split))
            if len(rows) == 1:
                first[name] = R
        per_method[name] = {s: [row[s] for row in rows] for s in STATS}
    return per_method, first


def summarise(per_method: dict) -> dict:
    """mean and std (in %) over models of every statistic; NaNs (e.g. 0/0) are counted and dropped."""
    out = {}
    for name, stats in per_method.items():
        out[name] = {}
        for s, values in stats.items():
            v = 100 * np.asarray(values, np.float64)
            ok = np.isfinite(v)
            out[name][s] = {"mean": float(np.mean(v[ok])) if ok.any() else float("nan"),
                            "std": float(np.std(v[ok])) if ok.any() else float("nan"), "n_nan": int((~ok).sum())}
    return out


_predict_batch = jax.jit(jax.vmap(lambda p, x, m: MODEL.apply(p, x, mask=m)[0], in_axes=(None, 0, 0)))


def evaluate_mse(models: list[dict], split: toy.ToySplit) -> list[float]:
    """Test MSE of each model (float64)."""
    X, mask = jnp.asarray(split.x, jnp.float64), jnp.asarray(split.mask)
    return [float(np.mean((np.asarray(_predict_batch(p, X, mask)) - split.y) ** 2)) for p in models]


# --- output ------------------------------------------------------------------------------------------

def markdown(results: dict) -> str:
    lines = []
    for task, title in (("add", "Addition n_a + n_b"), ("sub", "Subtraction n_a − n_b")):
        if task not in results["tasks"]:
            continue
        info = results["tasks"][task]
        lines += [f"**{title}** ({info['training']['kept']} models; {info['training']['converged']} of "
                  f"{info['training']['seeds_tried']} seeds reached val MSE < {results['config']['threshold']:g}; "
                  f"{info['n_test']} test points)", "",
                  "| method | " + " | ".join(f"{STAT_LABELS[s]} ours | chapter" for s in STATS) + " |",
                  "| --- |" + " ---: | ---: |" * len(STATS)]
        for name in METHODS:
            cells = []
            for k, s in enumerate(STATS):
                ours = info["methods"][name][s]
                ref = CHAPTER[task].get(name)
                cells += [f"{ours['mean']:.3f} ({ours['std']:.3f})", "—" if ref is None else f"{ref[k][0]} ({ref[k][1]})"]
            lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, relevance: dict, splits: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in ("add", "sub") if t in results["tasks"]]
    fig, axes = plt.subplots(len(tasks), 4, figsize=(18, 4.2 * len(tasks)), squeeze=False)
    x = np.arange(len(METHODS))
    for row, task in enumerate(tasks):
        info = results["tasks"][task]["methods"]
        for col, s in enumerate(STATS):
            ax = axes[row, col]
            means = [info[m][s]["mean"] for m in METHODS]
            stds = [info[m][s]["std"] for m in METHODS]
            ax.bar(x, means, yerr=stds, color="tab:blue", alpha=0.8, label="lrpjax", capsize=3)
            ax.plot(x, [CHAPTER[task][m][col][0] if m in CHAPTER[task] else np.nan for m in METHODS], "k_",
                    markersize=18, mew=2, label="chapter")
            ax.set_xticks(x, [LABELS[m] for m in METHODS], rotation=40, ha="right", fontsize=8)
            ax.set_title(f"{task}: {STAT_LABELS[s]} (%)", fontsize=10)
            ax.axhline(0, color="grey", lw=0.5)
            if col == 0:
                ax.legend(fontsize=8)
        ax = axes[row, 3]
        split = splits[task]
        rows = np.arange(len(split.y))
        for name, color in (("lrp-all", "tab:green"), ("cd", "tab:red"), ("lrp-prop", "tab:orange")):
            ax.scatter(split.numbers[rows, split.b], relevance[task][name][rows, split.b], s=3, color=color,
                       label=LABELS[name], alpha=0.5)
        ax.set_xlabel("n_b")
        ax.set_ylabel("R_b (first model)")
        ax.set_title(f"{task}: R_b against n_b", fontsize=10)
        ax.legend(fontsize=8, markerscale=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_model(directory: str, task: str, params: dict, info: dict, cfg: Config) -> str:
    """Saves the first kept model of a task as ``directory/toy_<task>.npz``."""
    metadata = {"kind": MODEL.kind, "cell": "standard", "sizes": {"E": 2, "H": 1, "C": 1}, "task": task,
                "target": "n_a + n_b" if task == "add" else "n_a - n_b", "seed": info["kept_seeds"][0],
                "val_mse": info["kept_val_mse"][0], "test_mse": info["test_mse"][0],
                "data": {"generator": "lrpjax.data.toy.load_toy", "seed": cfg.data_seed,
                         "splits": {k: {"n": v[0], "lengths": list(v[1])} for k, v in toy.SPLITS.items()}},
                "training": {"optimizer": "adam, cosine decay", "lr": cfg.lr, "lr_floor": cfg.lr_floor,
                             "epochs": cfg.epochs, "batch_size": cfg.batch_size, "loss": "mse",
                             "threshold": cfg.threshold}}
    os.makedirs(directory, exist_ok=True)
    return checkpoints.save(os.path.join(directory, f"toy_{task}.npz"), params, metadata)


def _stack_layout(metadata: dict) -> dict:
    """The arrays of a toy_arithmetic.models.npz: per task in its metadata a stack of N_task one-cell
    models (E = 2, H = 1, C = 1), float64 (see `run`)."""
    spec = checkpoints.ArraySpec
    layout = {}
    for task in metadata["training"]:
        n = f"N_{task}"
        cell = {name: spec((n, *shape), np.float64) for name, shape in MODEL.cell.shapes(2, 1).items()}
        layout[task] = {"lstm": cell, "out": {"W": spec((n, 1, 1), np.float64)}}
    return layout


def _load_models(path: str, task: str) -> tuple[list[dict], dict]:
    saved = checkpoints.load(path, expect_kind="lstm-stack", expect=_stack_layout)
    if task not in saved.params:
        raise checkpoints.CheckpointError(f"checkpoint {path!r} holds the models of {sorted(saved.params)}, "
                                          f"not of {task!r}.")
    return train.unstack(saved.params[task]), saved.metadata["training"][task]


def run(cfg: Config, out: str, tasks=("add", "sub"), quick: bool = False, checkpoint_dir: str | None = None,
        models_from: str | None = None) -> dict:
    os.makedirs(out, exist_ok=True)
    results = {"config": dataclasses.asdict(cfg), "quick": quick, "tasks": {}, "chapter": CHAPTER,
               "models_from": models_from}
    relevance, splits, stacks = {}, {}, {}
    for task in tasks:
        models, info = _load_models(models_from, task) if models_from else train_task(task, cfg, quick)
        if not models:
            print(f"{task}: no model reached val MSE < {cfg.threshold:g}", file=sys.stderr)
            continue
        stacks[task] = jax.tree.map(lambda *a: np.stack(a), *models)
        split = toy.load_toy(task, "test", cfg.data_seed, dtype=np.float64, n=cfg.n_test)
        info["test_mse"] = evaluate_mse(models, split)
        start = time.perf_counter()
        per_method, relevance[task] = explain_task(models, split)
        splits[task] = split
        results["tasks"][task] = {"training": info, "n_test": len(split.y),
                                  "explain_seconds": time.perf_counter() - start,
                                  "methods": summarise(per_method), "per_model": per_method}
        if checkpoint_dir is not None:
            save_model(checkpoint_dir, task, models[0], info, cfg)
    if stacks and not models_from:
        # Every kept model (float64), so that the explanations can be recomputed without training.
        checkpoints.save(os.path.join(out, "toy_arithmetic.models.npz"), stacks,
                         {"kind": "lstm-stack", "model": MODEL.kind, "config": dataclasses.asdict(cfg),
                          "training": {t: results["tasks"][t]["training"] for t in stacks}})
    with open(os.path.join(out, "toy_arithmetic.json"), "w") as f:
        json.dump(results, f, indent=1, allow_nan=True)
    if results["tasks"]:
        plot(results, relevance, splits, os.path.join(out, "toy_arithmetic.png"))
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small configuration (about a minute)")
    parser.add_argument("--out", default="experiments/results", help="output directory")
    parser.add_argument("--tasks", default="add,sub", help="comma-separated: add, sub")
    parser.add_argument("--checkpoints", default=None, help="save the first model of each task here")
    parser.add_argument("--models-from", default=None,
                        help="skip training: explain the models of a toy_arithmetic.models.npz of an earlier run")
    for field in dataclasses.fields(Config):
        parser.add_argument("--" + field.name.replace("_", "-"), type=float if field.type == "float" else int,
                            default=None, help=f"override {field.name}")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if getattr(args, f.name) is not None}
    cfg = dataclasses.replace(cfg, **overrides)
    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    for t in tasks:
        if t not in toy.TASKS:
            parser.error(f"unknown task {t!r}; choose from {toy.TASKS}")
    results = run(cfg, args.out, tasks, args.quick, args.checkpoints, args.models_from)
    print(markdown(results))


if __name__ == "__main__":
    main()
