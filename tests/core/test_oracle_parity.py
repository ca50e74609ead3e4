"""The engine against the independent float64 numpy oracle (tests/oracles/reference.py) to 1e-10 relative."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrpjax
import reference as ref
from lrpjax.core import ops
from lrpjax.models import bilstm, lstm
from lrpjax.rules import Epsilon, Gate, RuleSet

RTOL = 1e-10
E, H, C = 5, 3, 4


def _close(got, expected, scale=None):
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    scale = np.abs(expected).max() if scale is None else scale
    np.testing.assert_allclose(got, expected, rtol=0, atol=RTOL * max(scale, 1e-300) + 1e-15)


def _numpy_params(model, seed):
    params = model.init(jax.random.PRNGKey(seed), E, H, C, jnp.float64)
    params = jax.tree_util.tree_map(np.asarray, params)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        params[layer]["b"] = rng.normal(0, 0.5, params[layer]["b"].shape)
    return params


def _oracle_lstm_params(params):
    return {"cell": params["lstm"], "out": params["out"]}


# --- elementary computations ------------------------------------------------------------------------

@pytest.mark.parametrize("eps,share,bias", [(0.0, False, True), (1e-3, False, True), (0.3, True, True),
                                            (0.3, True, False), (0.0, False, False)])
def test_linear_rule_matches_oracle(rng, eps, share, bias):
    xs = (rng.normal(size=4), rng.normal(size=3))
    Ws = (rng.normal(size=(4, 6)), rng.normal(size=(3, 6)))
    b = rng.normal(size=6) if bias else None
    r = rng.normal(size=6)
    rules = RuleSet(linear=Epsilon(eps, share))
    _, pullback = jax.vjp(lambda xs_: ops.linear(rules, xs_, Ws, b), xs)
    (got,) = pullback(jnp.asarray(r))
    expected = ref.linear_eps(list(xs), list(Ws), b, r, eps, share)
    for g, e in zip(got, expected):
        _close(g, e)


@pytest.mark.parametrize("mode", ["all", "prop", "abs", "half"])
@pytest.mark.parametrize("eps,share", [(0.0, False), (0.2, False), (0.2, True)])
def test_gated_rule_matches_oracle(rng, mode, eps, share):
    z_g, z_s, r = rng.normal(size=7), rng.normal(size=7), rng.normal(size=7)
    z_g[0], z_s[0] = 0.5, -0.5          # a zero denominator for "prop" with eps = 0
    rules = RuleSet(gate=Gate(mode, eps, share))
    _, pullback = jax.vjp(lambda g, s: ops.gated(rules, g, s), z_g, z_s)
    got = pullback(jnp.asarray(r))
    expected = ref.gated_rule(mode, z_g, z_s, r, eps, share)
    for g, e in zip(got, expected):
        _close(g, e)
        assert np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize("eps,share", [(0.0, False), (0.1, False), (0.1, True)])
def test_accumulation_rule_matches_oracle(rng, eps, share):
    terms = (rng.normal(size=5), rng.normal(size=5))
    r = rng.normal(size=5)
    rules = RuleSet(accumulate=Epsilon(eps, share))
    _, pullback = jax.vjp(lambda t: ops.accumulate(rules, *t), terms)
    (got,) = pullback(jnp.asarray(r))
    for g, e in zip(got, ref.accumulate_eps(list(terms), r, eps, share)):
        _close(g, e)


def test_activation_passes_relevance_through(rng):
    r = rng.normal(size=4)
    _, pullback = jax.vjp(lambda z: ops.activation(lrpjax.rules.preset("lrp-all"), ops.TANH, z), rng.normal(size=4))
    _close(pullback(jnp.asarray(r))[0], r)


# --- whole models -----------------------------------------------------------------------------------

CONFIGS = [(name, eps, share) for name in lrpjax.rules.PRESETS
           for eps, share in ((0.0, False), (1e-3, False), (0.1, True))]


@pytest.mark.parametrize("name,eps,share", CONFIGS)
def test_bilstm_lrp_matches_oracle(name, eps, share):
    params = _numpy_params(bilstm.model, seed=3)
    x = np.random.default_rng(4).normal(size=(7, E))
    target = 2
    full = lrpjax.lrp(bilstm.apply, lrpjax.rules.preset(name, eps=eps, share=share)).full(params, x, target)
    expected = ref.bilstm_lrp(params, x, target, gate=name, eps=eps, share=share)
    scale = abs(expected["scores"][target])
    _close(full.relevance, expected["R_x"], scale)
    _close(full.states["left"]["y"], expected["R_y"]["left"], scale)
    _close(full.states["left"]["c"], expected["R_c"]["left"], scale)
    # the engine reports the right encoder's states at original positions; the oracle in its own order
    _close(full.states["right"]["c"][::-1], expected["R_c"]["right"], scale)
    for state in ("y0", "c0"):
        for side in ("left", "right"):
            _close(full.initial[side][state], expected[f"R_{state}"][side], scale)
    bias = sum(np.sum(v) for v in jax.tree_util.tree_leaves(full.params))
    _close(bias, expected["R_bias"], scale)
    _close(full.residual, expected["R_stab"], scale)


@pytest.mark.parametrize("name", lrpjax.rules.PRESETS)
def test_lstm_lrp_and_states_match_oracle_with_mask(name):
    params = _numpy_params(lstm.model, seed=5)
    x = np.random.default_rng(6).normal(size=(8, E))
    mask = np.arange(8) < 6
    rules = lrpjax.rules.preset(name, eps=0.01, share=True)
    full = lrpjax.lrp(lstm.apply, rules).full(params, x, 1, mask=mask)
    expected = ref.lstm_lrp(_oracle_lstm_params(params), x, 1, gate=name, eps=0.01, share=True, mask=mask)
    scale = abs(expected["scores"][1])
    _close(full.relevance, expected["R_x"], scale)
    # padded steps: the engine reports 0 (a padded step receives no relevance), the oracle repeats
    # the carried state's relevance; compare the valid steps
    _close(full.states["lstm"]["y"][:6], expected["R_y"][:6], scale)
    _close(full.states["lstm"]["c"][:6], expected["R_c"][:6], scale)
    assert np.all(np.asarray(full.states["lstm"]["y"][6:]) == 0)


def test_gradients_match_the_hand_written_backpropagation():
    params = _numpy_params(bilstm.model, seed=7)
    x = np.random.default_rng(8).normal(size=(6, E))
    for target in range(C):
        _close(lrpjax.gradient(bilstm.apply)(params, x, target), ref.bilstm_gradient(params, x, target))
    uni = _numpy_params(lstm.model, seed=9)
    _close(lrpjax.gradient(lstm.apply)(uni, x, 3), ref.lstm_gradient(_oracle_lstm_params(uni), x, 3))


def test_padded_bilstm_matches_oracle():
    params = _numpy_params(bilstm.model, seed=11)
    x = np.random.default_rng(12).normal(size=(9, E))
    mask = np.arange(9) < 5
    got = lrpjax.lrp(bilstm.apply, lrpjax.rules.preset("lrp-all", eps=1e-3))(params, x, 0, mask=mask)
    expected = ref.bilstm_lrp(params, x, 0, gate="all", eps=1e-3, mask=mask)
    _close(got, expected["R_x"])


# --- the real pretrained reference BiLSTM ----------------------------------------------------------

@pytest.fixture(scope="module")
def reference_weights():
    with np.load("tests/data/ref_bilstm.npz") as f:
        return {k: f[k] for k in f.files}


def test_reference_model_scores_and_lrp_match_the_reference_loop(reference_weights):
    params = bilstm.from_reference(reference_weights)
    x = np.random.default_rng(0).normal(0, 0.4, size=(7, 60))
    scores = bilstm.apply(params, x)
    expected_forward = ref.ref_bilstm_forward(reference_weights, x)
    _close(scores, expected_forward["s"])
    target = int(np.argmax(expected_forward["s"]))
    R = lrpjax.lrp(bilstm.apply, lrpjax.rules.preset("lrp-all", eps=1e-3))(params, x, target)
    expected = ref.ref_bilstm_lrp(reference_weights, x, target, eps=1e-3, bias_factor=0.0)
    _close(R, expected["R_x"])


def test_design_contract_snippet_runs_unchanged(reference_weights):
    weights = reference_weights
    x = np.random.default_rng(1).normal(0, 0.4, size=(5, 60))
    target = 3
    # --- DESIGN.md, "Public contract" ---
    params = bilstm.from_reference(weights)
    scores = bilstm.apply(params, x, rules=None)
    explain = lrpjax.lrp(bilstm.apply, lrpjax.rules.preset("lrp-all", eps=1e-3))
    R = explain(params, x, target)
    G = lrpjax.gradient(bilstm.apply)(params, x, target)
    # ---
    assert scores.shape == (5,) and R.shape == (5, 60) and G.shape == (5, 60)


def test_reference_importer_names_what_is_wrong(reference_weights):
    bad = dict(reference_weights)
    del bad["Why_Right"]
    with pytest.raises(ValueError, match="Why_Right"):
        bilstm.from_reference(bad)
    bad = dict(reference_weights, Whh_Right=reference_weights["Whh_Right"][:, :59])
    with pytest.raises(ValueError, match=r"`weights\['Whh_Right'\]` must have shape \(240, 60\)"):
        bilstm.from_reference(bad)
    bad = dict(reference_weights, bxh_Left=reference_weights["bxh_Left"].copy())
    bad["bxh_Left"][3] = np.nan
    with pytest.raises(ValueError, match="bxh_Left.*non-finite"):
        bilstm.from_reference(bad)
