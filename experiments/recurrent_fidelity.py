"""Adding / subtracting fidelity (Sec. 11.5.1, Table 11.2) of LRP under exponential gating and selective
scans: sLSTM cells, an mLSTM block and a Mamba block beside the standard LSTM.

For each task ("add": n_a + n_b, "sub": n_a - n_b) and each model with a linear output without bias --
one-cell recurrent layers read at their final state: the standard LSTM (17 parameters), the sLSTM with its
sigmoid forget gate (17 parameters: W (2, 4), R (1, 1, 4), b (4,), output 1) and the sLSTM with an
exponential forget gate; and one residual block read at the last valid step (``Pool("last")``) after a
linear input projection without bias to D = 4 units (the blocks' pre-norms would reduce the two input
columns to their signs): the xLSTM package's mLSTM block (one head, I = 8, convolution width 2) and a
Mamba block (N = 4, I = 8, convolution width 2) -- this trains several seeds at once
(``lrpjax.train.fit_many``) on the toy data of :mod:`lrpjax.data.toy`, keeps the models with the lowest
validation MSE, explains the test sequences with Gradient x Input, Occlusion (f-diff), LRP-prop/-abs/-half/
-all (eps = 0) and, for the blocks, their own rules: MambaLRP's (``mamba_lrp()``, which is LRP-half at
eps = 0 on a Mamba block) and the xLSTM analogue (``xlstm_lrp()``), and reports per model rho(n_a, R_a),
rho(n_b, R_b) and E[(|R_a| + |R_b|) / sum_t |R_t|] as mean (std) over models in %, as the chapter's
Table 11.2 does.

    python experiments/recurrent_fidelity.py                      # every model (the recorded results: three runs
                                                                  # merged with --merge, README_recurrent_fidelity.md)
    python experiments/recurrent_fidelity.py --quick --out /tmp/q  # a minute or two

Writes OUT/recurrent_fidelity.json, OUT/recurrent_fidelity.md and OUT/recurrent_fidelity.png.
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
from lrpjax.core.cells import StandardCell  # noqa: E402
from lrpjax.core.rules import preset  # noqa: E402
from lrpjax.core.xlstm import SLSTMCell  # noqa: E402
from lrpjax.data import toy  # noqa: E402
from lrpjax.models import Dense, Pool, Recurrent, Sequential  # noqa: E402
from lrpjax.models.mamba import MambaBlock, mamba_lrp  # noqa: E402
from lrpjax.models.xlstm import MLSTMBlock, xlstm_lrp  # noqa: E402

BLOCK_D = 4
"""The width of the blocks' residual stream (a linear projection of the two input columns, no bias)."""

MODELS = {"lstm": Sequential((Recurrent(StandardCell(), 1), Dense(1, bias=False))),
          "slstm": Sequential((Recurrent(SLSTMCell(1), 1), Dense(1, bias=False))),
          "slstm-exp": Sequential((Recurrent(SLSTMCell(1, "exp"), 1), Dense(1, bias=False))),
          "mlstm": Sequential((Dense(BLOCK_D, bias=False, name="embed"),
                               MLSTMBlock(heads=1, inner=8, conv_kernel=2, qkv_blocksize=4, name="mlstm"),
                               Pool("last"), Dense(1, bias=False))),
          "mamba": Sequential((Dense(BLOCK_D, bias=False, name="embed"),
                               MambaBlock(d_state=4, expand=2, d_conv=2, name="mamba"), Pool("last"),
                               Dense(1, bias=False)))}
MODEL_LABELS = {"lstm": "LSTM", "slstm": "sLSTM (sigmoid forget)", "slstm-exp": "sLSTM (exponential forget)",
                "mlstm": "mLSTM block", "mamba": "Mamba block"}
METHODS = ("gradient_x_input", "occlusion", "lrp-prop", "lrp-abs", "lrp-half", "lrp-all")
OWN_RULES = {"mlstm": ("xlstm-lrp", xlstm_lrp), "mamba": ("mamba-lrp", mamba_lrp)}
"""A block's own rule set, explained beside the presets (MambaLRP is LRP-half at eps = 0: reported once)."""
LABELS = {"gradient_x_input": "Gradient × Input", "occlusion": "Occlusion", "lrp-prop": "LRP-prop",
          "lrp-abs": "LRP-abs", "lrp-half": "LRP-half", "lrp-all": "LRP-all", "xlstm-lrp": "xLSTM-LRP (xlstm_lrp)",
          "mamba-lrp": "MambaLRP (mamba_lrp)"}
STATS = ("rho_a", "rho_b", "share")


@dataclass(frozen=True)
class Config:
    """Size of a run (Adam, cosine-decayed learning rate)."""

    n_models: int = 10
    n_seeds: int = 16
    epochs: int = 30
    batch_size: int = 32
    lr: float = 0.03
    lr_floor: float = 0.01
    eval_every: int = 200
    n_train: int | None = None
    n_val: int | None = 1000
    n_test: int | None = 1000
    data_seed: int = 0


FULL = Config()
QUICK = Config(n_models=2, n_seeds=4, epochs=2, n_train=1000, n_val=200, n_test=100, eval_every=50)


def _arrays(split: toy.ToySplit) -> dict[str, np.ndarray]:
    return {"x": split.x.astype(np.float32), "mask": split.mask, "y": split.y.astype(np.float32)}


def train_models(kind: str, task: str, cfg: Config) -> tuple[list[dict], dict]:
    """Trains ``n_seeds`` models at once; the ``n_models`` with the lowest validation MSE (float64)."""
    model = MODELS[kind]
    data = {s: toy.load_toy(task, s, cfg.data_seed, n=getattr(cfg, f"n_{s}")) for s in ("train", "val")}
    keys = jnp.stack([jax.random.PRNGKey(k) for k in range(cfg.n_seeds)])
    params = jax.vmap(lambda k: model.init(k, 2, jnp.float32))(keys)
    predict = lambda p, x, mask: model.apply(p, x, mask=mask)  # noqa: E731
    steps = cfg.epochs * (len(data["train"].y) // cfg.batch_size)
    optimizer = optax.adam(optax.cosine_decay_schedule(cfg.lr, steps, alpha=cfg.lr_floor))
    config = train.TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, eval_every=cfg.eval_every, seed=0,
                               progress=None)
    start = time.perf_counter()
    result = train.fit_many(train.make_loss(predict, "mse"), params, _arrays(data["train"]),
                            val=_arrays(data["val"]), metrics={"mse": train.make_metric(predict, "mse")},
                            config=config, optimizer=optimizer)
    order = np.argsort(np.asarray(result.best_metric))[:cfg.n_models]
    models = train.unstack(result.params)
    kept = [jax.tree.map(lambda a: np.asarray(a, np.float64), models[int(n)]) for n in order]
    return kept, {"seconds": time.perf_counter() - start, "val_mse": [float(result.best_metric[n]) for n in order]}


def statistics(R: np.ndarray, split: toy.ToySplit) -> dict[str, float]:
    """rho(n_a, R_a), rho(n_b, R_b) and E[(|R_a| + |R_b|) / sum_t |R_t|] (fractions) of R (B, T)."""
    rows = np.arange(len(split.y))
    R_a, R_b = R[rows, split.a], R[rows, split.b]
    n_a, n_b = split.numbers[rows, split.a], split.numbers[rows, split.b]
    total = np.sum(np.abs(R) * split.mask, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"rho_a": float(np.corrcoef(n_a, R_a)[0, 1]), "rho_b": float(np.corrcoef(n_b, R_b)[0, 1]),
                "share": float(np.mean((np.abs(R_a) + np.abs(R_b)) / total))}


def methods_of(kind: str) -> tuple[str, ...]:
    """The methods explained for a model: :data:`METHODS` and the block's own rules (MambaLRP once, as
    LRP-half, whose rule set it is)."""
    own = OWN_RULES.get(kind)
    if own is None or own[1]() == preset("lrp-half", eps=0.0):
        return METHODS
    return METHODS + (own[0],)


def explain(kind: str, models: list[dict], split: toy.ToySplit) -> dict:
    """Per method the statistics of every model."""
    model = MODELS[kind]
    methods = {"gradient_x_input": lrpjax.gradient_x_input(model.apply), "occlusion": lrpjax.occlusion(model.apply, "f")}
    methods.update({name: lrpjax.lrp(model.apply, preset(name, eps=0.0)) for name in METHODS[2:]})
    if kind in OWN_RULES:
        methods[OWN_RULES[kind][0]] = lrpjax.lrp(model.apply, OWN_RULES[kind][1]())
    X, mask = jnp.asarray(split.x, jnp.float64), jnp.asarray(split.mask)
    targets = jnp.zeros((len(split.y),), jnp.int32)
    out = {}
    for name in methods_of(kind):
        rows = [statistics(np.asarray(lrpjax.per_token(methods[name].batch(p, X, targets, mask=mask), 3)), split)
                for p in models]
        out[name] = {s: [row[s] for row in rows] for s in STATS}
    return out


def summarise(values: list[float]) -> dict:
    v = 100 * np.asarray(values, np.float64)
    ok = np.isfinite(v)
    return {"mean": float(np.mean(v[ok])) if ok.any() else float("nan"),
            "std": float(np.std(v[ok])) if ok.any() else float("nan"), "n_nan": int((~ok).sum())}


def markdown(results: dict) -> str:
    lines = []
    for task, per_kind in results["tasks"].items():
        lines += [f"### {task}", "", "| model | method | ρ(n_a, R_a) | ρ(n_b, R_b) | E[(|R_a|+|R_b|)/Σ|R_t|] |",
                  "| --- | --- | --- | --- | --- |"]
        for kind, entry in per_kind.items():
            for name in methods_of(kind):
                cells = [f"{entry['summary'][name][s]['mean']:.1f} ({entry['summary'][name][s]['std']:.1f})"
                         for s in STATS]
                label = LABELS[name] + (" = MambaLRP" if kind == "mamba" and name == "lrp-half" else "")
                lines.append(f"| {MODEL_LABELS[kind]} | {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(results["tasks"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(7.5 * len(tasks), 4.4), squeeze=False)
    columns = METHODS + ("own",)   # the last: a block's own rules (xLSTM-LRP, MambaLRP = LRP-half)
    n_kinds = max(len(per_kind) for per_kind in results["tasks"].values())
    width = 0.8 / n_kinds
    for ax, task in zip(axes[0], tasks):
        for k, kind in enumerate(results["tasks"][task]):
            summary = results["tasks"][task][kind]["summary"]
            own = OWN_RULES[kind][0] if kind in OWN_RULES else None
            own = "lrp-half" if own is not None and own not in summary else own
            names = [m for m in METHODS] + [own]
            means = [summary[m]["share"]["mean"] if m else np.nan for m in names]
            stds = [summary[m]["share"]["std"] if m else np.nan for m in names]
            ax.bar(np.arange(len(columns)) + (k - (n_kinds - 1) / 2) * width, means, width, yerr=stds,
                   label=MODEL_LABELS[kind], capsize=2)
        ax.set_xticks(np.arange(len(columns)), [LABELS[m] for m in METHODS] + ["block's own rules"], rotation=25,
                      ha="right")
        ax.set_ylabel("E[(|R_a|+|R_b|)/Σ|R_t|]  (%)")
        ax.set_ylim(0, 105)
        ax.set_title(f"{task}: relevance on the two marked steps (mean, std over models)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(cfg: Config, out: str, tasks=("add", "sub"), kinds=tuple(MODELS), merge: str | None = None) -> dict:
    """Trains and explains ``kinds`` on ``tasks``; with ``merge`` (a results JSON of this script) the entries of
    other models are kept from it, each with the configuration it was run with (``entry["config"]``)."""
    os.makedirs(out, exist_ok=True)
    results: dict = {"config": dataclasses.asdict(cfg), "tasks": {}}
    if merge is not None:
        with open(merge) as f:
            previous = json.load(f)
        for task, per_kind in previous["tasks"].items():
            results["tasks"][task] = {kind: {"config": entry.get("config", previous["config"]), **entry}
                                      for kind, entry in per_kind.items() if kind not in kinds}
    for task in tasks:
        test = toy.load_toy(task, "test", cfg.data_seed, n=cfg.n_test)
        results["tasks"].setdefault(task, {})
        for kind in kinds:
            models, info = train_models(kind, task, cfg)
            per_method = explain(kind, models, test)
            results["tasks"][task][kind] = {
                "config": dataclasses.asdict(cfg), "train": info, "per_model": per_method,
                "summary": {m: {s: summarise(per_method[m][s]) for s in STATS} for m in methods_of(kind)}}
            print(f"{task} {kind}: val MSE {np.round(info['val_mse'], 5).tolist()} ({info['seconds']:.0f} s)",
                  file=sys.stderr)
    results["tasks"] = {task: {kind: per_kind[kind] for kind in MODELS if kind in per_kind}
                        for task, per_kind in results["tasks"].items()}
    with open(os.path.join(out, "recurrent_fidelity.json"), "w") as f:
        json.dump(results, f, indent=1)
    table = markdown(results)
    with open(os.path.join(out, "recurrent_fidelity.md"), "w") as f:
        f.write(table + "\n")
    plot(results, os.path.join(out, "recurrent_fidelity.png"))
    print(table)
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small configuration (about a minute)")
    parser.add_argument("--out", default="experiments/results", help="output directory")
    parser.add_argument("--tasks", default="add,sub", help="comma-separated: add, sub")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated: {', '.join(MODELS)}")
    for field in ("n_models", "n_seeds", "epochs"):
        parser.add_argument("--" + field.replace("_", "-"), type=int, default=None, help=f"override {field}")
    parser.add_argument("--merge", default=None, help="a results JSON of this script whose other models are kept")
    args = parser.parse_args(argv)
    kinds = tuple(args.models.split(","))
    unknown = [k for k in kinds if k not in MODELS]
    if unknown:
        parser.error(f"--models: unknown {unknown}; known: {list(MODELS)}")
    overrides = {f: getattr(args, f) for f in ("n_models", "n_seeds", "epochs") if getattr(args, f) is not None}
    run(dataclasses.replace(QUICK if args.quick else FULL, **overrides), args.out, tuple(args.tasks.split(",")), kinds,
        args.merge)


if __name__ == "__main__":
    main()
