"""Why LRP-prop puts a large negative relevance on the Moneybag step of the Markov study's episode 0.

Loads the shipped Markov LSTM (checkpoints/markov_lstm.npz, written by experiments/markov_reward.py) and
its test episodes, and separates the candidate causes:

1. float precision: LRP-prop in float32 against float64;
2. the stabiliser and ``share``: the Moneybag step's relevance for eps in {0.01, 0.1, 1, 10} and share on/off;
3. the product rule itself: the proportional shares ``s_g = z_i / (z_i + z_z + eps sign)`` and
   ``s_z = z_z / (...)`` of the input gate and the cell input at the Moneybag step, per cell, from the
   pre-activations (Table 11.1) -- with the negative biases of A2/A7 the two pre-activations often
   have opposite signs, the denominator nearly cancels and the shares exceed 1 in magnitude with
   opposite signs;
4. what the model does: the output's drop when the Moneybag step is removed (all four features set to
   0), against the relevance each rule gives that step, over every test episode with a Moneybag; and the
   suite's faithfulness metrics (Delta A_F of step deletion, faithfulness correlation) per rule.

    python experiments/markov_reward_diagnosis.py                  # about two minutes
    python experiments/markov_reward_diagnosis.py --quick          # 100 test episodes

Writes OUT/markov_reward_diagnosis.json and prints a Markdown summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

# Many small programs (one per rule and eps): a lower XLA optimisation level compiles them faster.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import markov_reward as study  # noqa: E402

from lrpjax import lrp  # noqa: E402
from lrpjax.data.gridworld import GridWorld, splits  # noqa: E402
from lrpjax.evaluate import aopc, metrics  # noqa: E402
from lrpjax.rules import preset  # noqa: E402


def step_relevance(model, params, X, rule: str, eps: float, share: bool) -> np.ndarray:
    """R_t: relevance per step, summed over the four features, (B, T)."""
    method = lrp(model.apply, preset(rule, eps, share))
    return np.asarray(method.batch(params, X, 0)).sum(-1)


def forward_trace(params, config, x: np.ndarray) -> dict[str, np.ndarray]:
    """Pre-activations of the Markov cell (Eqs. 11.12-11.15) along one episode, in float64 NumPy."""
    p = {k: np.asarray(v, np.float64) for k, v in params["lstm"].items()}
    y = c = np.zeros(p["U"].shape[0])
    z_z, z_i, cs = [], [], []
    for x_t in x:
        zz = x_t @ p["W"] + p["b_z"]
        zi = y @ p["U"] + p["b"]
        c = c + config.a_g / (1 + np.exp(-zz)) / (1 + np.exp(-zi))
        y = config.a_h * np.tanh(c)
        z_z.append(zz), z_i.append(zi), cs.append(c.copy())
    return {"z_z": np.array(z_z), "z_i": np.array(z_i), "c": np.array(cs)}


def shares(z_i: np.ndarray, z_z: np.ndarray, eps: float, share: bool) -> tuple[np.ndarray, np.ndarray]:
    """LRP-prop's shares of the product's relevance (Table 11.1), as the rule computes them."""
    total = z_i + z_z
    den = total + eps * np.where(total >= 0, 1.0, -1.0)
    s_g, s_z = z_i / den, z_z / den
    if share:
        half = 0.5 * (1 - s_g - s_z)
        s_g, s_z = s_g + half, s_z + half
    return s_g, s_z


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="checkpoints/markov_lstm.npz")
    parser.add_argument("--out", default="experiments/results")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    config, params, _ = study.load_checkpoint(args.checkpoint)
    model = study.make_model(config)
    world = GridWorld(size=config.size, length=config.length)
    test = splits(world, config.data_seed, (config.n_train, config.n_val, config.n_test), dtype=np.float64)["test"]
    with_mb = np.flatnonzero(test.moneybag.any(1))
    if args.quick:
        with_mb = with_mb[:100]
    X = test.features[with_mb]
    mb_step = np.argmax(test.moneybag[with_mb], axis=1)
    episode = 0
    x0 = test.features[episode]
    t_mb = int(np.argmax(test.moneybag[episode]))
    out: dict = {"episode": episode, "moneybag_step": t_mb, "return": float(test.returns[episode]),
                 "eps": config.eps, "share": bool(config.share), "n_episodes": int(len(with_mb))}

    # 1. float precision
    prop = lrp(model.apply, preset("lrp-prop", config.eps, bool(config.share)))
    r64 = np.asarray(prop(params, x0, 0))
    params32 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    r32 = np.asarray(prop(params32, x0.astype(np.float32), 0), np.float64)
    out["float"] = {"moneybag_feature_float64": float(r64[t_mb, 0]), "moneybag_feature_float32": float(r32[t_mb, 0]),
                    "moneybag_step_float64": float(r64[t_mb].sum()), "moneybag_step_float32": float(r32[t_mb].sum()),
                    "max_abs_difference": float(np.abs(r64 - r32).max()),
                    "relative_to_max": float(np.abs(r64 - r32).max() / np.abs(r64).max())}

    # 2. stabiliser and share
    sweep = {}
    configurations = [("lrp-prop", eps, True) for eps in (0.01, 0.1, 1.0, 10.0)] + \
        [("lrp-prop", 0.1, False), ("lrp-half", 0.1, True), ("lrp-half", 0.1, False), ("lrp-all", 0.1, True)]
    for rule, eps, share in configurations:
        R = np.asarray(lrp(model.apply, preset(rule, eps, share))(params, x0, 0))
        sweep[f"{rule},{eps},{share}"] = {"moneybag_feature": float(R[t_mb, 0]), "moneybag_step": float(R[t_mb].sum()),
                                          "max_abs_step": float(np.abs(R.sum(-1)).max()), "sum_steps": float(R.sum())}
    out["sweep"] = sweep

    # 3. the product rule's shares at the Moneybag step, per cell
    trace = forward_trace(params, config, x0)
    full = prop.full(params, x0, 0)
    r_c = np.asarray(full.states["lstm"]["c"]) if isinstance(full.states, dict) and "lstm" in full.states else None
    s_g, s_z = shares(trace["z_i"][t_mb], trace["z_z"][t_mb], config.eps, bool(config.share))
    out["cells_at_moneybag"] = {"z_i": trace["z_i"][t_mb].tolist(), "z_z": trace["z_z"][t_mb].tolist(),
                                "s_gate": s_g.tolist(), "s_cell_input": s_z.tolist(),
                                "relevance_at_c": None if r_c is None else r_c[t_mb].tolist(),
                                "b_z": np.asarray(params["lstm"]["b_z"]).tolist(),
                                "b_i": np.asarray(params["lstm"]["b"]).tolist()}
    all_zi = np.concatenate([forward_trace(params, config, x)["z_i"][t][None] for x, t in zip(X, mb_step)])
    all_zz = np.concatenate([forward_trace(params, config, x)["z_z"][t][None] for x, t in zip(X, mb_step)])
    sg_all, sz_all = shares(all_zi, all_zz, config.eps, bool(config.share))
    out["shares_over_moneybag_steps"] = {
        "fraction_opposite_signs": float(np.mean(np.sign(all_zi) != np.sign(all_zz))),
        "fraction_abs_share_above_2": float(np.mean(np.maximum(np.abs(sg_all), np.abs(sz_all)) > 2)),
        "median_max_abs_share": float(np.median(np.maximum(np.abs(sg_all), np.abs(sz_all))))}

    # 4. the model's own answer, and the suite's metrics
    drop = np.asarray(jax.vmap(lambda x, t: model.apply(params, x)[0] - model.apply(
        params, jnp.where((jnp.arange(x.shape[0]) == t)[:, None], 0.0, x))[0])(jnp.asarray(X), jnp.asarray(mb_step)))
    out["occlusion_drop_moneybag"] = {"mean": float(drop.mean()), "episode_0": float(drop[0])}
    rows = {}
    for rule, eps in (("lrp-all", config.eps), ("lrp-prop", config.eps), ("lrp-half", config.eps),
                      ("lrp-prop", 1.0), ("lrp-prop", 10.0)):
        method = lrp(model.apply, preset(rule, eps, bool(config.share)))
        R_t = np.asarray(method.batch(params, X, 0)).sum(-1)
        r_mb = R_t[np.arange(len(X)), mb_step]
        morf = metrics.deletion_curves(method, params, X, np.zeros(len(X), np.int32), steps=5)
        lerf = metrics.deletion_curves(method, params, X, np.zeros(len(X), np.int32), steps=5, order="least")
        fc = np.asarray(metrics.faithfulness_correlation(method, params, X, np.zeros(len(X), np.int32), size=3, n=32))
        rows[f"{rule} eps={eps}"] = {
            "moneybag_R_mean": float(r_mb.mean()),
            "moneybag_R_negative_fraction": float(np.mean(r_mb < 0)),
            "corr_moneybag_R_vs_drop": float(np.corrcoef(r_mb, drop)[0, 1]),
            "mean_abs_error_vs_drop": float(np.mean(np.abs(r_mb - drop))),
            "sum_abs_R_t_over_return": float(np.mean(np.abs(R_t).sum(1) / np.maximum(test.returns[with_mb], 1))),
            "aopc_morf": float(np.mean(aopc(morf))),
            "delta_af": float(np.mean(metrics.delta_af(morf, lerf))),
            "faithfulness_correlation": float(np.nanmean(fc))}
    out["metrics"] = rows
    os.makedirs(args.out, exist_ok=True)
    if not args.quick:
        with open(os.path.join(args.out, "markov_reward_diagnosis.json"), "w") as f:
            json.dump(out, f, indent=1)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
