"""Contextual Decomposition against a slow float64 NumPy oracle written from Murdoch et al.'s code."""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrpjax
from lrpjax.methods import decomposition as cdmod
from lrpjax.cells import StandardCell
from lrpjax.models import bilstm, lstm
from lrpjax.models.lstm import LSTM
from reference_cd import sigmoid, split_tanh, split_three


# --- oracle: explicit loops, one relevant position, no code shared with the library -----------------

def oracle_direction(cell, x, start):
    """CD of one direction over an unpadded sequence x (T, E), position `start` relevant.

    Returns (relevant_h, irrelevant_h, relevant_c, irrelevant_c, true_h, true_c), each (T, H).
    """
    W, U, b = (np.asarray(cell[k], np.float64) for k in ("W", "U", "b"))
    H = U.shape[0]
    W_i, W_g, W_f, W_o = (W[:, k * H:(k + 1) * H] for k in range(4))
    U_i, U_g, U_f, U_o = (U[:, k * H:(k + 1) * H] for k in range(4))
    b_i, b_g, b_f, b_o = (b[k * H:(k + 1) * H] for k in range(4))
    T = x.shape[0]
    rel_c, irr_c, rel_h, irr_h = (np.zeros((T, H)) for _ in range(4))
    true_h, true_c = np.zeros((T, H)), np.zeros((T, H))
    for i in range(T):
        prev_rh = rel_h[i - 1] if i > 0 else np.zeros(H)
        prev_ih = irr_h[i - 1] if i > 0 else np.zeros(H)
        rel = {g: prev_rh @ Ug for g, Ug in zip("igfo", (U_i, U_g, U_f, U_o))}
        irr = {g: prev_ih @ Ug for g, Ug in zip("igfo", (U_i, U_g, U_f, U_o))}
        for g, Wg in zip("igfo", (W_i, W_g, W_f, W_o)):
            if i == start:
                rel[g] = rel[g] + x[i] @ Wg
            else:
                irr[g] = irr[g] + x[i] @ Wg
        ri, ii, bi = split_three(rel["i"], irr["i"], b_i, sigmoid)
        rg, ig, bg = split_three(rel["g"], irr["g"], b_g, np.tanh)
        rel_c[i] = ri * (rg + bg) + bi * rg
        irr_c[i] = ii * (rg + ig + bg) + (ri + bi) * ig + bi * bg
        if i > 0:
            rf, if_, bf = split_three(rel["f"], irr["f"], b_f, sigmoid)
            rel_c[i] += (rf + bf) * rel_c[i - 1]
            irr_c[i] += (rf + if_ + bf) * irr_c[i - 1] + if_ * rel_c[i - 1]
        o = sigmoid(x[i] @ W_o + (prev_rh + prev_ih) @ U_o + b_o)
        new_rh, new_ih = split_tanh(rel_c[i], irr_c[i])
        rel_h[i], irr_h[i] = o * new_rh, o * new_ih
        # The plain forward pass, Eqs. (11.1)-(11.6), for the completeness property.
        prev_h = true_h[i - 1] if i > 0 else np.zeros(H)
        prev_c = true_c[i - 1] if i > 0 else np.zeros(H)
        pre = x[i] @ W + prev_h @ U + b
        gi, gz, gf, go = sigmoid(pre[:H]), np.tanh(pre[H:2 * H]), sigmoid(pre[2 * H:3 * H]), sigmoid(pre[3 * H:])
        true_c[i] = gf * prev_c + gi * gz
        true_h[i] = go * np.tanh(true_c[i])
    return rel_h, irr_h, rel_c, irr_c, true_h, true_c


def oracle_relevance(params, x, target, bidirectional=False):
    """(T,) CD relevance of an unpadded sequence, one position at a time."""
    x = np.asarray(x, np.float64)
    T = x.shape[0]
    R = np.zeros(T)
    for t in range(T):
        if not bidirectional:
            rel_h = oracle_direction(params["lstm"], x, t)[0]
            R[t] = rel_h[-1] @ np.asarray(params["out"]["W"], np.float64)[:, target]
        else:
            left = oracle_direction(params["left"], x, t)[0]
            right = oracle_direction(params["right"], x[::-1], T - 1 - t)[0]
            R[t] = (left[-1] @ np.asarray(params["out"]["W_left"], np.float64)[:, target]
                    + right[-1] @ np.asarray(params["out"]["W_right"], np.float64)[:, target])
    return R


# --- fixtures ---------------------------------------------------------------------------------------

def _params(model, seed, E, H, C, scale=1.5):
    params = model.init(jax.random.PRNGKey(seed), E, H, C, jnp.float64)
    # Nonzero biases so that the bias terms of the decomposition are exercised.
    return jax.tree.map(lambda w: w * scale + 0.3 * jnp.sin(jnp.arange(w.size, dtype=w.dtype).reshape(w.shape)),
                        params)


@pytest.mark.parametrize("seed,T,E,H,C", [(0, 1, 2, 1, 1), pytest.param(2, 7, 3, 4, 3, marks=pytest.mark.slow)])
def test_cd_matches_oracle_unidirectional(seed, T, E, H, C):
    params = _params(lstm.model, seed, E, H, C)
    x = np.random.default_rng(seed).normal(size=(T, E))
    target = C - 1
    R = cdmod.cd(lstm.apply)(params, x, target)
    assert R.shape == (T,)
    np.testing.assert_allclose(R, oracle_relevance(params, x, target), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed,T,E,H,C", [(4, 1, 2, 1, 1), pytest.param(6, 8, 4, 3, 3, marks=pytest.mark.slow)])
def test_cd_matches_oracle_bidirectional(seed, T, E, H, C):
    params = _params(bilstm.model, seed, E, H, C)
    x = np.random.default_rng(seed).normal(size=(T, E))
    R = cdmod.cd(bilstm.apply)(params, x, 1 % C)
    np.testing.assert_allclose(R, oracle_relevance(params, x, 1 % C, bidirectional=True), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("model", [lstm.model, bilstm.model], ids=["uni", "bi"])
def test_beta_plus_gamma_is_the_true_state(model):
    E, H, C, T = 3, 4, 2, 7
    params = _params(model, 7, E, H, C)
    x = np.random.default_rng(7).normal(size=(T, E))
    relevant = np.array([False, True, False, False, True, True, False])
    dec = cdmod.decompose(model.apply, params, x, relevant)
    for name in model.layers:
        x_dir = x if name != "right" else x[::-1]
        rel_dir = relevant if name != "right" else relevant[::-1]
        # The oracle has one relevant position; here only the true states (independent of the split) are used.
        *_, true_h, true_c = oracle_direction(params[name], x_dir, int(np.flatnonzero(rel_dir)[0]))
        if name == "right":
            true_h, true_c = true_h[::-1], true_c[::-1]
        np.testing.assert_allclose(dec.beta_y[name] + dec.gamma_y[name], true_h, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(dec.beta_c[name] + dec.gamma_c[name], true_c, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dec.beta + dec.gamma, model.apply(params, x), rtol=1e-12, atol=1e-13)


def test_decompose_single_position_states_match_oracle():
    E, H, C, T, t = 2, 3, 1, 6, 2
    params = _params(lstm.model, 8, E, H, C)
    x = np.random.default_rng(8).normal(size=(T, E))
    dec = cdmod.decompose(lstm.apply, params, x, np.arange(T) == t)
    rel_h, irr_h, rel_c, irr_c, _, _ = oracle_direction(params["lstm"], x, t)
    for got, want in ((dec.beta_y, rel_h), (dec.gamma_y, irr_h), (dec.beta_c, rel_c), (dec.gamma_c, irr_c)):
        np.testing.assert_allclose(got["lstm"], want, rtol=1e-10, atol=1e-12)
    # Before the relevant position nothing is relevant.
    assert np.all(np.asarray(dec.beta_c["lstm"][:t]) == 0)


def test_no_relevant_position_gives_everything_to_gamma():
    E, H, C, T = 2, 2, 1, 5
    params = _params(lstm.model, 9, E, H, C)
    x = np.random.default_rng(9).normal(size=(T, E))
    none = cdmod.decompose(lstm.apply, params, x, np.zeros(T, bool))
    np.testing.assert_allclose(none.beta, 0.0, atol=1e-15)
    np.testing.assert_allclose(none.gamma, lstm.apply(params, x), rtol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("model", [lstm.model, bilstm.model], ids=["uni", "bi"])
def test_masked_padding_equals_unpadded_and_batch(model):
    E, H, C = 2, 3, 2
    params = _params(model, 10, E, H, C)
    rng = np.random.default_rng(10)
    seqs = [rng.normal(size=(T, E)) for T in (3, 6, 1, 5)]
    X, mask = lrpjax.pad(seqs)
    method = cdmod.cd(model.apply)
    R = method.batch(params, X, jnp.array([0, 1, 1, 0]), mask=mask)
    assert R.shape == (4, 6)
    targets = [0, 1, 1, 0]
    for b, s in enumerate(seqs):
        T = s.shape[0]
        np.testing.assert_allclose(R[b, :T], oracle_relevance(params, s, targets[b], model.bidirectional),
                                   rtol=1e-10, atol=1e-12)
        assert np.all(np.asarray(R[b, T:]) == 0)
    # One padded example explained alone equals its row of the batch.
    np.testing.assert_allclose(method(params, X[0], 0, mask=mask[0]), R[0], rtol=1e-12, atol=1e-14)


def test_zero_input_gets_exactly_zero_relevance():
    # Nothing is relevant before t and x_t = 0 adds nothing relevant: beta stays exactly 0.
    params = _params(lstm.model, 11, 2, 1, 1)
    x = np.random.default_rng(11).normal(size=(4, 2))
    x[2] = 0.0
    R = cdmod.cd(lstm.apply)(params, x, 0)
    assert float(R[2]) == 0.0


def test_cd_rejects_other_cells_and_models():
    @dataclasses.dataclass(frozen=True)
    class OtherCell(StandardCell):
        kind: ClassVar[str] = "other"

    with pytest.raises(TypeError, match="standard LSTM cell"):
        cdmod.cd(LSTM(OtherCell()).apply)
    with pytest.raises(TypeError, match="apply"):
        cdmod.cd(lambda params, x, rules=None, mask=None: x.sum(0))


def test_decompose_checks_arguments():
    params = _params(lstm.model, 12, 2, 1, 1)
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match="relevant"):
        cdmod.decompose(lstm.apply, params, x, np.zeros(4, bool))
    with pytest.raises(TypeError, match="relevant"):
        cdmod.decompose(lstm.apply, params, x, np.zeros(3))
    with pytest.raises(ValueError, match="x"):
        cdmod.decompose(lstm.apply, params, np.zeros((3, 5)), np.zeros(3, bool))
