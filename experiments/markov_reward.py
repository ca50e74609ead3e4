"""Markov-LSTM reward redistribution in the Moneybag/Coins grid world (Sec. 11.5.2, Figs. 11.6-11.7).

Trains an LSTM with Markov memory cells (Eqs. 11.12-11.15, Fig. 11.4b) and a linear output without
bias to predict the delayed return of an episode (MSE) from its four binary features per step, then
explains the prediction with LRP-all, LRP-prop and LRP-half. The relevance of a step, summed over the
features, is the redistributed reward. Over the test episodes it reports, per rule, the share of
relevance on Moneybag steps, on counted Coin steps (after the Moneybag) and on uncounted Coin steps,
and how much relevance stays trapped: at the initial state (the first step's input gate) with the
bias shares spread (``share=True``), or in the biases and stabilisers without spreading.

    python experiments/markov_reward.py --checkpoint checkpoints/markov_lstm.npz   # full size
    python experiments/markov_reward.py --quick --out /tmp/q                      # about a minute
    python experiments/markov_reward.py --model checkpoints/markov_lstm.npz       # explain a shipped model

Writes OUT/markov_reward.json and OUT/markov_reward.png and prints the Markdown tables.
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

from lrpjax import lrp, train  # noqa: E402
from lrpjax.io import checkpoints  # noqa: E402
from lrpjax.cells import MarkovCell  # noqa: E402
from lrpjax.data.gridworld import FEATURES, POLICIES, GridWorld, Episodes, splits  # noqa: E402
from lrpjax.models.lstm import LSTM  # noqa: E402
from lrpjax.rules import preset  # noqa: E402

RULES = ("lrp-all", "lrp-prop", "lrp-half")
KIND = "lstm-markov"


@dataclass(frozen=True)
class Config:
    """Everything that decides the result (recorded in the JSON and the checkpoint)."""

    size: int = 7
    length: int = 30
    n_train: int = 5000
    n_val: int = 1000
    n_test: int = 1000
    data_seed: int = 0
    H: int = 8
    a_g: float = 2.0
    a_h: float = 1.0
    seed: int = 0
    lr: float = 1e-2
    batch_size: int = 64
    epochs: int = 150
    patience: int = 20
    eps: float = 0.1
    share: int = 1
    sweep: int = 1


QUICK = dict(n_train=2000, n_val=200, n_test=200, epochs=40, patience=10, sweep=0)


# --- model and training ----------------------------------------------------------------------------

def make_model(config: Config) -> LSTM:
    return LSTM(MarkovCell(a_g=config.a_g, a_h=config.a_h))


def train_model(config: Config, data: dict[str, Episodes]):
    """Fits the Markov LSTM with Adam on the MSE of the return; returns (params, training record)."""
    model = make_model(config)
    params = model.init(jax.random.PRNGKey(config.seed), len(FEATURES), config.H, 1, jnp.float64)
    predict = lambda p, x, mask: model.apply(p, x)  # noqa: E731 - fixed-length episodes, no mask
    batch = lambda e: {"x": e.features, "y": e.returns}  # noqa: E731
    start = time.time()
    result = train.fit(train.make_loss(predict, "mse"), params, batch(data["train"]), val=batch(data["val"]),
                       metrics={"mse": train.make_metric(predict, "mse")}, optimizer=optax.adam(config.lr),
                       config=train.TrainConfig(epochs=config.epochs, batch_size=config.batch_size,
                                                patience=config.patience, seed=config.seed))
    record = {"val_mse": float(result.best_metric), "best_step": int(result.best_step), "steps": int(result.steps),
              "seconds": round(time.time() - start, 1)}
    return result.params, record


def mse(model: LSTM, params, episodes: Episodes) -> float:
    pred = jax.jit(jax.vmap(lambda x: model.apply(params, x)))(jnp.asarray(episodes.features))[:, 0]
    return float(np.mean((np.asarray(pred) - episodes.returns) ** 2))


def save_checkpoint(path: str, config: Config, params, record: dict) -> str:
    metadata = {"kind": KIND, "cell": {"kind": "markov", "a_g": config.a_g, "a_h": config.a_h},
                "sizes": {"E": len(FEATURES), "H": config.H, "C": 1}, "features": list(FEATURES),
                "output": "predicted episode return (regression, MSE)",
                "data": {"description": "Moneybag/Coins grid world (lrpjax.data.gridworld), exploring policy",
                         "size": config.size, "length": config.length, "seed": config.data_seed,
                         "n_train": config.n_train, "n_val": config.n_val, "n_test": config.n_test},
                "config": dataclasses.asdict(config), "metrics": record,
                "command": "python experiments/markov_reward.py --checkpoint " + path}
    return checkpoints.save(path, jax.tree.map(np.asarray, params), metadata)


def checkpoint_layout(metadata: dict) -> dict:
    """The arrays a Markov-LSTM checkpoint must hold (floating point), from its metadata's cell and sizes."""
    model = LSTM(MarkovCell(a_g=metadata["cell"]["a_g"], a_h=metadata["cell"]["a_h"]))
    E, H, C = (metadata["sizes"][k] for k in ("E", "H", "C"))
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), E, H, C, jnp.float64))
    return jax.tree.map(lambda s: checkpoints.ArraySpec(s.shape, "floating"), shapes)


def load_checkpoint(path: str) -> tuple[Config, dict, dict]:
    """(config, params, training record) of a checkpoint written by `save_checkpoint`; the arrays are
    checked against `checkpoint_layout` (a CheckpointError names the file and the array otherwise)."""
    ckpt = checkpoints.load(path, expect_kind=KIND, expect=checkpoint_layout)
    missing = [key for key in ("config", "metrics") if not isinstance(ckpt.metadata.get(key), dict)]
    if missing:
        raise checkpoints.CheckpointError(f"checkpoint {path!r}: its metadata lacks {missing} (written by "
                                          "save_checkpoint of this script?).")
    fields = {f.name for f in dataclasses.fields(Config)}
    config = Config(**{k: v for k, v in ckpt.metadata["config"].items() if k in fields})
    return config, jax.tree.map(jnp.asarray, ckpt.params), ckpt.metadata["metrics"]


# --- backward analysis -----------------------------------------------------------------------------

def explain(model: LSTM, params, episodes: Episodes, rule: str, eps: float, share: bool) -> dict[str, np.ndarray]:
    """LRP of every episode's predicted return: relevance (B, T, 4) and the accounting per episode (B,)."""
    method = lrp(model.apply, preset(rule, eps, share))
    full = jax.jit(jax.vmap(lambda x: method.full(params, x, 0)))(jnp.asarray(episodes.features))
    return {"relevance": np.asarray(full.relevance), "score": np.asarray(full.target_score),
            "initial": np.asarray(sum(leaf.sum(-1) for leaf in jax.tree.leaves(full.initial))),
            "bias_z": np.asarray(full.params["lstm"]["b_z"]).sum(-1),
            "bias_i": np.asarray(full.params["lstm"]["b"]).sum(-1),
            "residual": np.asarray(full.residual)}


def statistics(episodes: Episodes, ex: dict[str, np.ndarray]) -> dict[str, float]:
    """Shares of relevance per event type and the trapped relevance, over a set of episodes.

    ``abs_*``: share of the absolute step relevance sum_t |R_t| (all episodes) on each event type.
    ``frac_*``: signed relevance on each event type as a fraction of the predicted return, summed over
    the episodes with a positive return (with share=True the fractions of steps and initial state sum
    to 1). ``per_*``: mean relevance of one such step (in units of the return).
    """
    R_t = ex["relevance"].sum(-1)
    events = {"moneybag": episodes.moneybag, "counted_coin": episodes.counted,
              "uncounted_coin": episodes.coin & ~episodes.counted,
              "other": ~episodes.coin & ~episodes.moneybag}
    total_abs = np.abs(R_t).sum()
    pos = episodes.returns > 0
    score = ex["score"][pos].sum()
    out = {}
    for name, mask in events.items():
        out[f"abs_{name}"] = float(np.abs(R_t[mask]).sum() / total_abs)
        out[f"frac_{name}"] = float(R_t[pos][mask[pos]].sum() / score)
        out[f"per_{name}"] = float(R_t[mask].mean()) if mask.any() else float("nan")
    for name in ("initial", "bias_z", "bias_i", "residual"):
        out[f"frac_{name}"] = float(ex[name][pos].sum() / score)
    out["max_abs_step"] = float(np.abs(R_t).max())
    return out


def pick_examples(episodes: Episodes) -> dict[str, int]:
    """Two test episodes: Coins after the Moneybag (with some before it), and Coins without it."""
    n_counted, n_uncounted = episodes.counted.sum(1), (episodes.coin & ~episodes.counted).sum(1)
    has_mb = episodes.moneybag.any(1)
    first = lambda ok: int(np.flatnonzero(ok)[0]) if ok.any() else int(np.argmax(n_counted))  # noqa: E731
    return {"coins_after_moneybag": first((n_counted >= 3) & (n_uncounted >= 1) & has_mb),
            "coins_without_moneybag": first((n_uncounted >= 3) & ~has_mb)}


# --- output ----------------------------------------------------------------------------------------

def plot(path: str, episodes: Episodes, examples: dict[str, int], relevance: dict[str, np.ndarray],
         predictions: np.ndarray, subtitle: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2 + len(RULES), 2, figsize=(13, 2.0 * (2 + len(RULES)) + 0.8), squeeze=False)
    for col, (label, b) in enumerate(examples.items()):
        x = episodes.features[b].T
        ax = axes[0, col]
        ax.imshow(x, aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{label.replace('_', ' ')} (test episode {b}): return {episodes.returns[b]:.0f}, "
                     f"predicted {predictions[b]:.2f}", fontsize=9)
        ax.set_ylabel("input", fontsize=8)
        for row, rule in enumerate(RULES, start=1):
            R = relevance[rule][b].T
            bound = max(float(np.abs(R).max()), 1e-12)
            ax = axes[row, col]
            im = ax.imshow(R, aspect="auto", cmap="bwr", vmin=-bound, vmax=bound, interpolation="nearest")
            fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
            ax.set_ylabel(rule, fontsize=8)
            ax.set_title(f"{rule}: redistributed reward sum_t R_t = {R.sum():.2f}", fontsize=8)
        for row in range(1 + len(RULES)):
            axes[row, col].set_yticks(range(len(FEATURES)), FEATURES, fontsize=7)
            axes[row, col].set_xticks(range(0, x.shape[1], 5))
        ax = axes[-1, col]  # the redistributed reward: relevance of each step summed over the features
        for rule in RULES:
            ax.plot(relevance[rule][b].sum(-1), marker=".", label=rule)
        ax.axhline(0.0, color="grey", lw=0.5)
        ax.set_xlim(-0.5, x.shape[1] - 0.5)
        ax.set_ylabel("R_t (sum over features)", fontsize=8)
        ax.legend(fontsize=7)
        ax.set_xlabel("time step", fontsize=8)
    fig.suptitle("Markov LSTM, LRP with three product rules (Figs. 11.6-11.7); " + subtitle, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: dict) -> str:
    lines = [f"Markov LSTM (H={results['config']['H']}): val MSE {results['training']['val_mse']:.4g}, "
             f"test MSE {results['training']['test_mse']:.4g}; rules eps={results['config']['eps']}, "
             f"share={bool(results['config']['share'])}; {results['data']['n_test']} test episodes.", "",
             "| rule | abs share Moneybag | abs share counted Coins | abs share uncounted Coins | "
             "R per Moneybag step | R per counted Coin | R per uncounted Coin | trapped at initial state | "
             "bias (b_z, b_i) | residual |", "|" + " --- |" * 10]
    for rule, s in results["rules"].items():
        lines.append(f"| {rule} | {s['abs_moneybag']:.1%} | {s['abs_counted_coin']:.1%} | "
                     f"{s['abs_uncounted_coin']:.2%} | {s['per_moneybag']:+.3f} | {s['per_counted_coin']:+.3f} | "
                     f"{s['per_uncounted_coin']:+.4f} | {s['frac_initial']:+.2%} | "
                     f"{s['frac_bias_z']:+.2%}, {s['frac_bias_i']:+.2%} | {s['frac_residual']:+.1e} |")
    if results.get("sensitivity"):
        lines += ["", "Sensitivity to the stabiliser and to bias sharing (abs shares; trapped as a fraction of "
                  "the predicted return, episodes with return > 0):", "",
                  "| eps | share | rule | Moneybag | counted | uncounted | initial | bias b_z | bias b_i | "
                  "residual | max abs R_t |", "|" + " --- |" * 11]
        for key, per_rule in results["sensitivity"].items():
            eps, share = key.split(",")
            for rule, s in per_rule.items():
                lines.append(f"| {eps} | {share} | {rule} | {s['abs_moneybag']:.1%} | {s['abs_counted_coin']:.1%} | "
                             f"{s['abs_uncounted_coin']:.2%} | {s['frac_initial']:+.3f} | {s['frac_bias_z']:+.3f} | "
                             f"{s['frac_bias_i']:+.3f} | {s['frac_residual']:+.3f} | {s['max_abs_step']:.3g} |")
    return "\n".join(lines)


def run(config: Config, out: str, checkpoint: str | None = None, model_path: str | None = None) -> dict:
    world = GridWorld(size=config.size, length=config.length)
    data = splits(world, config.data_seed, (config.n_train, config.n_val, config.n_test), dtype=np.float64)
    if model_path is not None:
        config, params, record = load_checkpoint(model_path)
        config = dataclasses.replace(config, **{k: v for k, v in dataclasses.asdict(config).items()})
    else:
        params, record = train_model(config, data)
    model = make_model(config)
    record = {**record, "test_mse": mse(model, params, data["test"])}
    if checkpoint is not None:
        save_checkpoint(checkpoint, config, params, record)
    test = data["test"]
    share = bool(config.share)
    explained = {rule: explain(model, params, test, rule, config.eps, share) for rule in RULES}
    sensitivity = {}
    if config.sweep:
        for eps in (0.0, 0.01, 0.1):
            for sh in (True, False):
                sensitivity[f"{eps},{sh}"] = {rule: statistics(test, explain(model, params, test, rule, eps, sh))
                                              for rule in RULES}
    examples = pick_examples(test)
    predictions = explained[RULES[0]]["score"]
    results = {
        "config": dataclasses.asdict(config),
        "training": record,
        "data": {"n_test": len(test.returns), "policies": list(POLICIES),
                 "test_events": {"moneybag": int(test.moneybag.sum()), "counted_coin": int(test.counted.sum()),
                                 "uncounted_coin": int((test.coin & ~test.counted).sum()),
                                 "episodes_with_moneybag": int(test.moneybag.any(1).sum())}},
        "rules": {rule: statistics(test, ex) for rule, ex in explained.items()},
        "sensitivity": sensitivity,
        "examples": {label: {"episode": b, "return": float(test.returns[b]), "prediction": float(predictions[b]),
                             "features": test.features[b].tolist(),
                             "relevance": {rule: explained[rule]["relevance"][b].tolist() for rule in RULES}}
                     for label, b in examples.items()},
    }
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "markov_reward.json"), "w") as f:
        json.dump(results, f, indent=1, allow_nan=True)
    plot(os.path.join(out, "markov_reward.png"), test, examples,
         {rule: ex["relevance"] for rule, ex in explained.items()}, predictions,
         f"eps={config.eps}, share={share}, test MSE {record['test_mse']:.3g}")
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small configuration (about a minute)")
    parser.add_argument("--out", default="experiments/results", help="output directory")
    parser.add_argument("--checkpoint", default=None, help="save the trained model here (.npz)")
    parser.add_argument("--model", default=None, help="explain this checkpoint instead of training")
    for field in dataclasses.fields(Config):
        parser.add_argument("--" + field.name.replace("_", "-"), type=float if field.type == "float" else int,
                            default=None)
    args = parser.parse_args(argv)
    config = Config(**QUICK) if args.quick else Config()
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if getattr(args, f.name) is not None}
    config = dataclasses.replace(config, **overrides)
    results = run(config, args.out, args.checkpoint, args.model)
    print(markdown(results))


if __name__ == "__main__":
    sys.exit(main())
