"""Markov-LSTM backward analysis (Sec. 11.5.2): relevance through the input gate, and the experiment."""

import importlib.util
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrpjax import lrp
from lrpjax.io import checkpoints
from lrpjax.cells import MarkovCell
from lrpjax.data.gridworld import LEFT, RIGHT, GridWorld, explore
from lrpjax.models.lstm import LSTM
from lrpjax.rules import preset

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = LSTM(MarkovCell())


def _experiment():
    spec = importlib.util.spec_from_file_location("markov_reward", ROOT / "experiments" / "markov_reward.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("markov_reward", module)  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _hand_built():
    """Cell 0 stores the Moneybag; its output opens the input gate of cell 1, which counts Coins.

    The output reads cell 1 only, and cell 1's input weights ignore the Moneybag feature, so the
    Moneybag can matter to the prediction only through cell 1's input gate.
    """
    f64 = jnp.float64
    return {"lstm": {"W": jnp.array([[6.0, 0.0], [0.0, 6.0], [0.0, 0.0], [0.0, 0.0]], f64),
                     "b_z": jnp.array([-4.0, -4.0], f64),
                     "U": jnp.array([[0.0, 10.0], [0.0, 0.0]], f64), "b": jnp.array([-0.5, -6.0], f64)},
            "out": {"W": jnp.array([[0.0], [1.0]], f64)}}


def _episode():
    world = GridWorld(size=5, length=16)
    actions = [LEFT, LEFT] + [RIGHT] * 4 + [LEFT, RIGHT] * 5
    run = world.rollout(actions)
    assert run["moneybag"][1] and run["return"] == 6
    return jnp.asarray(run["features"])


@pytest.mark.parametrize("name", ["lrp-all", "lrp-prop", "lrp-half"])
def test_moneybag_relevance_flows_only_through_input_gate(name):
    params, x = _hand_built(), _episode()
    ex = lrp(MODEL.apply, preset(name)).full(params, x, 0)
    r_moneybag = float(ex.relevance[1, 0])
    r_coins = float(ex.relevance[:, 1].sum())
    if name == "lrp-all":
        assert r_moneybag == 0.0                 # the gate takes nothing: the Moneybag is invisible
        assert np.all(np.asarray(ex.states["lstm"]["y"][:-1]) == 0.0)
    else:
        assert r_moneybag > 0.5 * float(ex.target_score)
        assert np.abs(np.asarray(ex.states["lstm"]["y"][:-1])).sum() > 0.1
    assert r_coins > 0.5 * float(ex.target_score)
    assert abs(float(ex.residual)) < 1e-12     # eps = 0: bias shares are the only sink


@pytest.mark.slow
def test_trained_checkpoint_shows_the_chapter_finding():
    path = ROOT / "checkpoints" / "markov_lstm.npz"
    if not path.exists():
        pytest.skip("checkpoints/markov_lstm.npz not built yet")
    ckpt = checkpoints.load(path, expect_kind="lstm-markov")
    cell = ckpt.metadata["cell"]
    model = LSTM(MarkovCell(a_g=cell["a_g"], a_h=cell["a_h"]))
    params = jax.tree.map(jnp.asarray, ckpt.params)
    world = GridWorld(size=ckpt.metadata["data"]["size"], length=ckpt.metadata["data"]["length"])
    episodes = explore(world, 60, seed=12345, dtype=np.float64)
    pred = jax.vmap(lambda x: model.apply(params, x))(jnp.asarray(episodes.features))[:, 0]
    assert float(jnp.mean((pred - episodes.returns) ** 2)) < 0.05
    shares = {}
    for name in ("lrp-all", "lrp-prop", "lrp-half"):
        R = np.asarray(lrp(model.apply, preset(name, 0.1, share=True)).batch(
            params, jnp.asarray(episodes.features), jnp.zeros(60, int))).sum(-1)
        shares[name] = np.abs(R[episodes.moneybag]).sum() / np.abs(R).sum()
    assert shares["lrp-prop"] > 5 * shares["lrp-all"] and shares["lrp-half"] > 5 * shares["lrp-all"]


@pytest.mark.slow
def test_quick_run_writes_results(tmp_path):
    module = _experiment()
    module.main(["--quick", "--out", str(tmp_path), "--n-train", "256", "--n-val", "64", "--n-test", "40",
                 "--epochs", "2", "--H", "3"])
    results = json.loads((tmp_path / "markov_reward.json").read_text())
    assert (tmp_path / "markov_reward.png").stat().st_size > 0
    assert set(results["rules"]) == {"lrp-all", "lrp-prop", "lrp-half"}
    for stats in results["rules"].values():
        # share=True: steps and initial state account for the whole predicted return.
        total = sum(stats[f"frac_{k}"] for k in ("moneybag", "counted_coin", "uncounted_coin", "other", "initial"))
        assert abs(total - 1.0) < 1e-8
        assert abs(stats["frac_residual"]) < 1e-10
    assert set(results["examples"]) == {"coins_after_moneybag", "coins_without_moneybag"}
