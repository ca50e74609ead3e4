"""Explanation-guided training against a planted confounder ("right for the right reasons").

A sequence classification task in which a decoy predicts the training labels perfectly but carries no
information at test time, after Ross, Hughes and Doshi-Velez (2017, "Right for the right reasons") and
their DecoyMNIST:

* a sequence has T in {8..12} signal steps ``[s_t, 0, u_t]`` with ``s_t, u_t ~ N(0, 1)``; the label is
  ``1[sum_t s_t > 0]``, flipped with probability ``flip`` (0.1), so the signal predicts 90 % of the
  labels, in training and at test time alike (the Bayes rate);
* one extra *decoy step* ``[0, d, 0]`` is inserted at a random position p. In training (and in the
  validation data, drawn the same way) ``d = +1`` for label 1 and ``-1`` for label 0: the decoy predicts
  100 % of the training labels, more than the signal can. Test sets: ``agree`` (as in training),
  ``shuffled`` (d = +-1 independent of the label) and ``free`` (d = 0).

Groups of ``n_models`` one-layer LSTMs (standard cell, H = 8, linear output without bias) are trained
with the same seeds, data and optimiser, all models of a group at once (``train.fit_many``): ``plain``
(cross-entropy) and, for each penalised method and each weight lambda, cross-entropy plus
``lambda * mean_b sum over the decoy step's entries of R^2`` (``train.explanation_penalty`` with the
decoy positions as the annotation and ``explain="all_log_probs"``, the sum of the log-probabilities,
linearised, as in Ross et al.): ``gradient`` (their penalty exactly), ``lrp-all`` (eps = 1e-3) and
``occlusion`` (f-diff: the decoy step set to zero). Reported per group, mean (std) over models: test
accuracy on the three test sets, and the share of relevance on the decoy step ``E[|R_p| / sum_t |R_t|]``
for the label's score on the ``agree`` test set, under LRP-all, Gradient x Input and Occlusion. The
accuracy on the ``shuffled`` test set is also logged after every epoch (``fit_many``'s validation
data; nothing is selected on it: fixed epochs, last parameters).

    python experiments/decoy_training.py                      # full size
    python experiments/decoy_training.py --quick --out /tmp/q  # about a minute

Writes OUT/decoy_training.json and OUT/decoy_training.png and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lrpjax  # noqa: E402
from lrpjax import train  # noqa: E402
from lrpjax.io.files import atomic_write_text  # noqa: E402
from lrpjax.cells import StandardCell  # noqa: E402
from lrpjax.models.lstm import LSTM  # noqa: E402
from lrpjax.rules import preset  # noqa: E402

MODEL = LSTM(StandardCell())
E, C = 3, 2
PENALISED = ("gradient", "lrp-all", "occlusion")
LABELS = {"plain": "plain", "gradient": "gradient (RRR)", "lrp-all": "LRP-all", "occlusion": "occlusion"}
TESTS = ("agree", "shuffled", "free")
SHARES = ("lrp-all", "gradient_x_input", "occlusion")


@dataclass(frozen=True)
class Config:
    """Size of a run; the optimiser is Adam with a constant learning rate."""

    n_models: int = 10
    hidden: int = 8
    n_train: int = 4000
    n_val: int = 1000
    n_test: int = 2000
    flip: float = 0.1
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.01
    weights: str = "1,10"       # lambda of every penalised method, comma-separated
    eps: float = 1e-3
    data_seed: int = 0
    seed: int = 0


FULL = Config()
QUICK = Config(n_models=2, n_train=1000, n_val=250, n_test=300, epochs=6, batch_size=32, weights="1")


# --- data ----------------------------------------------------------------------------------------------

def make_split(n: int, rng: np.random.Generator, decoy: str, flip: float) -> dict[str, np.ndarray]:
    """``n`` padded sequences (module docstring) with ``decoy`` "agree", "shuffled" or "free".

    Returns:
        {"x": (n, L, 3) float32, "mask": (n, L) bool, "decoy": (n, L) bool (the decoy step), "y": (n,)
        int32 labels, "signal_label": (n,) the unflipped labels ``1[sum s > 0]``}, L = 13.
    """
    if decoy not in TESTS:
        raise ValueError(f"`decoy` must be one of {TESTS}; got {decoy!r}.")
    lengths = rng.integers(8, 13, n)
    L = 13
    x = np.zeros((n, L, E), np.float32)
    mask = np.zeros((n, L), bool)
    marked = np.zeros((n, L), bool)
    y = np.zeros(n, np.int32)
    signal_label = np.zeros(n, np.int32)
    for k, T in enumerate(lengths):
        s, u = rng.normal(size=T), rng.normal(size=T)
        signal_label[k] = int(s.sum() > 0)
        y[k] = 1 - signal_label[k] if rng.random() < flip else signal_label[k]
        p = int(rng.integers(0, T + 1))
        d = {"agree": 2.0 * y[k] - 1.0, "shuffled": float(rng.choice([-1.0, 1.0])), "free": 0.0}[decoy]
        steps = np.stack([s, np.zeros(T), u], axis=1)
        x[k, :T + 1] = np.concatenate([steps[:p], [[0.0, d, 0.0]], steps[p:]])
        mask[k, :T + 1] = True
        marked[k, p] = True
    return {"x": x, "mask": mask, "decoy": marked, "y": y, "signal_label": signal_label}


def make_data(cfg: Config) -> dict[str, dict[str, np.ndarray]]:
    """The training and validation sets (decoy agrees) and the three test sets, from ``cfg.data_seed``."""
    rng = np.random.default_rng(cfg.data_seed)
    data = {"train": make_split(cfg.n_train, rng, "agree", cfg.flip), "val": make_split(cfg.n_val, rng, "agree", cfg.flip)}
    for test in TESTS:
        data[test] = make_split(cfg.n_test, rng, test, cfg.flip)
    return data


# --- training ------------------------------------------------------------------------------------------

def _predict(params, x, mask):
    return MODEL.apply(params, x, mask=mask)


def weights_of(cfg: Config) -> tuple[float, ...]:
    """The penalty weights of ``cfg.weights`` ("1,10" -> (1.0, 10.0)).

    Raises:
        ValueError: an entry that is not a number >= 0.
    """
    try:
        weights = tuple(float(w) for w in cfg.weights.split(",") if w.strip())
    except ValueError:
        raise ValueError(f"weights must be comma-separated numbers; got {cfg.weights!r}") from None
    if not weights or not all(0 <= w < float("inf") for w in weights):
        raise ValueError(f"weights must be finite numbers >= 0; got {cfg.weights!r}")
    return weights


def groups_of(cfg: Config) -> list[tuple[str, str, float]]:
    """``(name, penalised method, lambda)`` of every group: plain first, then each method at each weight."""
    return [("plain", "plain", 0.0)] + [(f"{m} λ={w:g}", m, w) for m in PENALISED for w in weights_of(cfg)]


def explanation(name: str, cfg: Config):
    """The explanation method ``name`` of the study's model."""
    if name == "gradient":
        return lrpjax.gradient(MODEL.apply)
    if name == "gradient_x_input":
        return lrpjax.gradient_x_input(MODEL.apply)
    if name == "occlusion":
        return lrpjax.occlusion(MODEL.apply, "f")
    return lrpjax.lrp(MODEL.apply, preset(name, cfg.eps))


def penalty_of(method: str, weight: float, cfg: Config):
    """The explanation penalty of a group (None for ``plain``)."""
    if method == "plain":
        return None
    return train.explanation_penalty(explanation(method, cfg), weight, "decoy", explain="all_log_probs")


def _batch(split: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: split[k] for k in ("x", "mask", "decoy", "y")}


def train_group(method: str, weight: float, cfg: Config, data: dict) -> tuple[dict, train.TrainResult, float]:
    """Trains the ``n_models`` models of a group at once; returns (stacked params, result, seconds).

    The accuracy on the shuffled test set is logged after every epoch (it selects nothing).
    """
    keys = jnp.stack([jax.random.PRNGKey(cfg.seed * 1000 + k) for k in range(cfg.n_models)])
    params = jax.vmap(lambda k: MODEL.init(k, E, cfg.hidden, C))(keys)
    loss = train.make_loss(_predict, "xent", penalty=penalty_of(method, weight, cfg))
    config = train.TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed, restore_best=False,
                               progress=None)
    start = time.perf_counter()
    result = train.fit_many(loss, params, _batch(data["train"]), val=_batch(data["shuffled"]),
                            metrics={"acc_shuffled": train.make_metric(_predict, "accuracy")}, config=config,
                            optimizer=optax.adam(cfg.lr))
    return result.params, result, time.perf_counter() - start


# --- evaluation ----------------------------------------------------------------------------------------

_accuracy = jax.jit(jax.vmap(lambda p, x, m, y: jnp.mean(
    (jnp.argmax(jax.vmap(lambda x_, m_: MODEL.apply(p, x_, mask=m_))(x, m), axis=-1).astype(y.dtype) == y)
    .astype(jnp.float32)), in_axes=(0, None, None, None)))


def decoy_share(R: np.ndarray, split: dict) -> np.ndarray:
    """Per example the share of absolute word-level relevance on the decoy step, R (B, T) -> (B,)."""
    total = np.sum(np.abs(R) * split["mask"], axis=1)
    on_decoy = np.sum(np.abs(R) * split["decoy"], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return on_decoy / total


def evaluate_group(params: dict, cfg: Config, data: dict) -> dict:
    """Per model: accuracy on each test set, decoy share under LRP-all, Gradient x Input and Occlusion
    (agree set, the label's score)."""
    out = {f"acc_{t}": np.asarray(_accuracy(params, data[t]["x"], data[t]["mask"], data[t]["y"])).tolist()
           for t in TESTS}
    split = data["agree"]
    for name in SHARES:
        method = explanation(name, cfg)
        shares = []
        for model in train.unstack(params):
            R = np.asarray(lrpjax.per_token(method.batch(model, split["x"], split["y"], mask=split["mask"]), 3))
            shares.append(float(np.nanmean(decoy_share(R, split))))
        out[f"share_{name}"] = shares
    return out


def summarise(per_model: dict) -> dict:
    """mean and std (in %) over models of every statistic."""
    return {key: {"mean": float(100 * np.mean(v)), "std": float(100 * np.std(v))} for key, v in per_model.items()}


# --- output --------------------------------------------------------------------------------------------

STAT_LABELS = {"acc_agree": "acc. decoy agrees", "acc_shuffled": "acc. decoy shuffled", "acc_free": "acc. decoy free",
               "share_lrp-all": "decoy share LRP-all", "share_gradient_x_input": "decoy share G×I",
               "share_occlusion": "decoy share occlusion"}


def markdown(results: dict) -> str:
    cfg = results["config"]
    lines = [f"{cfg['n_models']} models per group; test sets of {cfg['n_test']} sequences; the signal alone "
             f"predicts {100 * (1 - cfg['flip']):.0f} % of the labels (Bayes rate), the decoy 100 % of the training "
             "labels. Mean (std) over models, in %.", "",
             "| penalty | λ | " + " | ".join(STAT_LABELS[k] for k in STAT_LABELS) + " |",
             "| --- | ---: |" + " ---: |" * len(STAT_LABELS)]
    for info in results["groups"].values():
        cells = [f"{info['summary'][k]['mean']:.1f} ({info['summary'][k]['std']:.1f})" for k in STAT_LABELS]
        lines.append(f"| {LABELS[info['method']]} | {info['weight']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(results["groups"])
    fig, axes = plt.subplots(1, 3, figsize=(18, 4.6), gridspec_kw={"width_ratios": [1.2, 1.0, 1.0]})
    width = 0.8 / len(groups)
    colors = plt.cm.tab10(np.arange(len(groups)))
    for panel, keys, title in ((0, [f"acc_{t}" for t in TESTS], "test accuracy (%)"),
                               (1, [f"share_{m}" for m in SHARES], "relevance share on the decoy (%), agree set")):
        ax = axes[panel]
        x = np.arange(len(keys))
        for k, group in enumerate(groups):
            info = results["groups"][group]
            offset = (k - (len(groups) - 1) / 2) * width
            ax.bar(x + offset, [info["summary"][key]["mean"] for key in keys], width,
                   yerr=[info["summary"][key]["std"] for key in keys], capsize=2, color=colors[k], label=group)
            for j, key in enumerate(keys):
                values = 100 * np.asarray(info["per_model"][key])
                ax.scatter(np.full(len(values), x[j] + offset), values, s=4, color="black", zorder=3)
        ax.set_xticks(x, [STAT_LABELS[key] for key in keys], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, 105)
    bayes = 100 * (1 - results["config"]["flip"])
    axes[0].axhline(bayes, color="grey", ls="--", lw=1)
    axes[0].axhline(50, color="grey", ls=":", lw=1)
    ax = axes[2]
    for k, group in enumerate(groups):
        history = results["groups"][group]["history"]
        curve = 100 * np.asarray(history["acc_shuffled"])   # (epochs, N)
        epochs = np.asarray(history["epoch"]) + 1
        ax.plot(epochs, curve.mean(axis=1), color=colors[k], label=group)
        ax.fill_between(epochs, curve.min(axis=1), curve.max(axis=1), color=colors[k], alpha=0.12)
    ax.axhline(bayes, color="grey", ls="--", lw=1)
    ax.set_xlabel("epochs trained")
    ax.set_title("accuracy with the decoy shuffled, during training (%; band: min-max)", fontsize=10)
    ax.set_ylim(30, 100)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    fig.suptitle("A decoy step predicts every training label (dashed: Bayes rate of the signal; dots: models)",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(cfg: Config, out: str, quick: bool = False, command: str = "") -> dict:
    os.makedirs(out, exist_ok=True)
    data = make_data(cfg)
    results = {"config": dataclasses.asdict(cfg), "quick": quick, "command": command, "groups": {}}
    for group, method, weight in groups_of(cfg):
        params, result, seconds = train_group(method, weight, cfg, data)
        per_model = evaluate_group(params, cfg, data)
        history = {"epoch": result.history["epoch"].tolist(), "acc_shuffled": result.history["acc_shuffled"].tolist(),
                   "train_loss": result.history["train_loss"].tolist()}
        results["groups"][group] = {"method": method, "weight": weight, "train_seconds": seconds,
                                    "steps": int(result.steps), "history": history, "per_model": per_model,
                                    "summary": summarise(per_model)}
        print(f"{group}: trained in {seconds:.1f} s; " + ", ".join(
            f"{k} {v['mean']:.1f}" for k, v in results["groups"][group]["summary"].items()), flush=True)
    atomic_write_text(os.path.join(out, "decoy_training.json"), json.dumps(results, indent=1) + "\n")
    plot(results, os.path.join(out, "decoy_training.png"))
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small configuration (about a minute)")
    parser.add_argument("--out", default="experiments/results", help="output directory")
    for field in dataclasses.fields(Config):
        kind = {"float": float, "str": str}.get(field.type, int)
        parser.add_argument("--" + field.name.replace("_", "-"), type=kind, default=None, help=f"override {field.name}")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if getattr(args, f.name) is not None}
    try:
        cfg = dataclasses.replace(cfg, **overrides)
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    for name in ("n_models", "hidden", "n_train", "n_val", "n_test", "epochs", "batch_size"):
        if getattr(cfg, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1; got {getattr(cfg, name)}")
    if not 0 <= cfg.flip < 0.5:
        parser.error(f"--flip must be in [0, 0.5); got {cfg.flip}")
    try:
        weights_of(cfg)
    except ValueError as error:
        parser.error(str(error))
    command = ("python experiments/decoy_training.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))).rstrip()
    results = run(cfg, args.out, args.quick, command)
    print(markdown(results))


if __name__ == "__main__":
    main()
