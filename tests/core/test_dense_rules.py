"""Dense-layer rules (z, z+, alpha-beta, gamma, flat, w², zB) and composites.

Every rule is checked against a float64 NumPy oracle written here from the papers' equations in
matrix form (Bach et al. 2015; Montavon et al. 2017, 2019; Lapuschkin et al. 2016), with no code
shared with the library: directly, through ``ops.linear`` (the custom_vjp backward), with several
inputs sharing one denominator, with and without bias.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrpjax
from lrpjax.core import ops
from lrpjax.models import bilstm
from lrpjax.rules import (LINEAR_RULES, AlphaBeta, Epsilon, Flat, Gamma, RuleSet, WSquare, Z, ZB, ZPlus,
                          composite, preset)

from reference_dense import oracle  # noqa: E402  (tests/oracles, the independent float64 oracle)


RULES = [Z(), Z(share=True), ZPlus(), AlphaBeta(), AlphaBeta(2.0, 1.0), AlphaBeta(3.0, 2.0, share=True),
         Gamma(0.25), Gamma(1.0, eps=0.1), Gamma(0.5, eps=0.1, share=True), Flat(), WSquare(),
         ZB(-2.0, 2.0), ZB(tuple(-1.5 - 0.1 * j for j in range(6)), tuple(1.5 + 0.2 * j for j in range(6))),
         Epsilon(0.3), Epsilon(0.3, share=True)]


def _layer(seed, D=6, M=4, positive_x=False):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1.5, D) if positive_x else rng.uniform(-1.4, 1.4, D)
    W = rng.normal(size=(D, M))
    b = rng.normal(scale=0.5, size=M)
    return x, W, b, x @ W + b


@pytest.mark.parametrize("rule", RULES, ids=repr)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rule_matches_oracle(rule, seed):
    x, W, b, z = _layer(seed)
    r = z * np.random.default_rng(seed + 10).uniform(0.5, 1.5, z.shape)
    (r_x,), r_b = rule.linear((jnp.asarray(x),), (jnp.asarray(W),), jnp.asarray(b), jnp.asarray(z), jnp.asarray(r))
    want_x, want_b = oracle(rule, x, W, b, r)
    np.testing.assert_allclose(r_x, want_x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(r_b, want_b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rule", RULES, ids=repr)
def test_rule_without_bias_matches_oracle(rule):
    x, W, _, _ = _layer(3)
    z = x @ W
    (r_x,), r_b = rule.linear((jnp.asarray(x),), (jnp.asarray(W),), None, jnp.asarray(z), jnp.asarray(z))
    assert r_b is None
    np.testing.assert_allclose(r_x, oracle(rule, x, W, None, z)[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rule", RULES, ids=repr)
def test_rule_through_ops_linear_with_two_inputs_sharing_one_denominator(rule):
    x, W, b, _ = _layer(4)
    x1, x2, W1, W2 = x[:2], x[2:], W[:2], W[2:]
    rules = RuleSet(linear=rule)
    z, pullback = jax.vjp(lambda a, c, bias: ops.linear(rules, (a, c), (W1, W2), bias),
                          jnp.asarray(x1), jnp.asarray(x2), jnp.asarray(b))
    r = z
    r1, r2, r_b = pullback(r)
    want_x, want_b = oracle(rule, x, W, b, np.asarray(r))
    np.testing.assert_allclose(jnp.concatenate([r1, r2]), want_x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(r_b, want_b, rtol=1e-10, atol=1e-12)


# --- conservation --------------------------------------------------------------------------------------

def _total(rule, x, W, b, r):
    (r_x,), r_b = rule.linear((jnp.asarray(x),), (jnp.asarray(W),), jnp.asarray(b), jnp.asarray(x @ W + b),
                              jnp.asarray(r))
    return float(r_x.sum()), float(r_b.sum())


@pytest.mark.parametrize("rule", [Z(), Gamma(0.25), Gamma(2.0), AlphaBeta(2.0, 1.0), Epsilon(0.0)], ids=repr)
def test_inputs_plus_bias_conserve(rule):
    x, W, b, z = _layer(5, D=8, M=5)
    r = z
    inputs, bias = _total(rule, x, W, b, r)
    np.testing.assert_allclose(inputs + bias, r.sum(), rtol=1e-12)
    assert abs(bias) > 1e-6   # the bias really absorbs something without share


@pytest.mark.parametrize("rule", [Z(share=True), Gamma(0.25, eps=0.3, share=True), AlphaBeta(2.0, 1.0, share=True),
                                  ZPlus(), Flat(), WSquare(), ZB(-1.5, 1.5), ZB(-5.0, 5.0)], ids=repr)
def test_inputs_alone_conserve(rule):
    x, W, b, z = _layer(6, D=8, M=5)
    inputs, bias = _total(rule, x, W, b, z)
    np.testing.assert_allclose(inputs, z.sum(), rtol=1e-12)
    assert bias == 0.0


@pytest.mark.parametrize("rule", [Flat(), WSquare()], ids=repr)
def test_flat_and_wsquare_ignore_input_values(rule):
    _, W, b, _ = _layer(7)
    r = jnp.asarray(np.linspace(-1, 2, 4))
    outs = [rule.linear((jnp.asarray(x),), (jnp.asarray(W),), jnp.asarray(b), jnp.zeros(4), r)[0][0]
            for x in (np.zeros(6), np.full(6, 3.0), np.linspace(-2, 2, 6))]
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-14)
    np.testing.assert_allclose(outs[0], outs[2], rtol=1e-14)
    np.testing.assert_allclose(outs[0].sum(), r.sum(), rtol=1e-12)


def test_epsilon_stabiliser_absorbs_without_share():
    x, W, b, z = _layer(8)
    inputs, bias = _total(Gamma(0.5, eps=1.0), x, W, b, z)
    assert abs(inputs + bias - z.sum()) > 1e-3


def test_alpha_beta_does_not_conserve_when_contributions_have_one_sign():
    # documented: all contributions positive -> alpha * R_k goes down, nothing is subtracted
    x = np.array([1.0, 2.0, 0.5])
    W = np.abs(np.random.default_rng(0).normal(size=(3, 2)))
    b = np.zeros(2)
    r = x @ W
    inputs, _ = _total(AlphaBeta(2.0, 1.0), x, W, b, r)
    np.testing.assert_allclose(inputs, 2.0 * r.sum(), rtol=1e-12)
    inputs, _ = _total(AlphaBeta(1.0, 0.0), x, W, b, r)
    np.testing.assert_allclose(inputs, r.sum(), rtol=1e-12)


def test_z_equals_epsilon_zero_and_zplus_equals_positive_weights_for_positive_inputs():
    x, W, b, z = _layer(9, positive_x=True)
    args = ((jnp.asarray(x),), (jnp.asarray(W),), jnp.asarray(b), jnp.asarray(z), jnp.asarray(z))
    np.testing.assert_array_equal(Z().linear(*args)[0][0], Epsilon(0.0).linear(*args)[0][0])
    Wp = np.maximum(W, 0)
    want = (x[:, None] * Wp) @ (z / (x @ Wp))      # Montavon et al. 2017: x_j w_jk^+ / sum_j x_j w_jk^+
    np.testing.assert_allclose(ZPlus().linear(*args)[0][0], want, rtol=1e-12)


def test_zb_numerators_are_non_negative_inside_the_box():
    x, W, b, z = _layer(10)
    lo, hi = -1.4, 1.4
    N = x[:, None] * W - lo * np.maximum(W, 0) - hi * np.minimum(W, 0)
    assert (N >= 0).all()
    r = np.abs(z)
    (r_x,), _ = ZB(lo, hi).linear((jnp.asarray(x),), (jnp.asarray(W),), jnp.asarray(b), jnp.asarray(z), jnp.asarray(r))
    assert (np.asarray(r_x) >= 0).all()      # positive relevance stays positive


def test_zero_denominators_give_zero_not_nan():
    x = jnp.zeros(3)
    W = jnp.zeros((3, 2))
    r = jnp.ones(2)
    for rule in (Z(), ZPlus(), AlphaBeta(2.0, 1.0), Gamma(), WSquare(), ZB(0.0, 1.0)):
        (r_x,), _ = rule.linear((x,), (W,), None, jnp.zeros(2), r)
        assert np.all(np.asarray(r_x) == 0), rule


def test_relevance_keeps_float32():
    x = jnp.linspace(0.1, 1.0, 6, dtype=jnp.float32)
    W = jnp.ones((6, 2), jnp.float32)
    b = jnp.ones(2, jnp.float32)
    for rule in RULES:
        (r_x,), r_b = rule.linear((x,), (W,), b, x @ W + b, jnp.ones(2, jnp.float32))
        assert r_x.dtype == jnp.float32 and r_b.dtype == jnp.float32, rule


# --- validation ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("make,error,match", [
    (lambda: AlphaBeta(1.5, 0.0), ValueError, "alpha. - .beta. = 1"),
    (lambda: AlphaBeta(2.0, 2.0), ValueError, "alpha. - .beta. = 1"),
    (lambda: AlphaBeta(0.5, -0.5), ValueError, "alpha"),
    (lambda: AlphaBeta(2.0, float("nan")), ValueError, "beta"),
    (lambda: AlphaBeta("2", 1.0), TypeError, "alpha"),
    (lambda: AlphaBeta(2.0, 1.0, share="yes"), TypeError, "share"),
    (lambda: Gamma(-0.1), ValueError, "gamma"),
    (lambda: Gamma(float("inf")), ValueError, "gamma"),
    (lambda: Gamma(0.25, eps=-1.0), ValueError, "eps"),
    (lambda: Gamma(True), TypeError, "gamma"),
    (lambda: Z(share=1), TypeError, "share"),
    (lambda: ZB(1.0, 0.0), ValueError, "low. < .high"),
    (lambda: ZB(0.0, 0.0), ValueError, "low. < .high"),
    (lambda: ZB((0.0, 0.0), (1.0,)), ValueError, "same length"),
    (lambda: ZB((0.0, 2.0), 1.0), ValueError, "index 1"),
    (lambda: ZB(float("nan"), 1.0), ValueError, "low"),
    (lambda: ZB((), 1.0), ValueError, "low"),
    (lambda: ZB("0", 1.0), TypeError, "low"),
])
def test_invalid_hyper_parameters_are_rejected(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_zb_bounds_must_match_the_inputs():
    rule = ZB((0.0, 0.0), (1.0, 1.0))
    with pytest.raises(ValueError, match="D = 3"):
        rule.linear((jnp.ones(3),), (jnp.ones((3, 2)),), None, jnp.ones(2), jnp.ones(2))


def test_rules_are_hashable_values():
    for rule in RULES:
        assert hash(rule) == hash(type(rule)(**{f: getattr(rule, f) for f in rule.__dataclass_fields__}))
    assert ZB([0, 0], np.array([1.0, 2.0])) == ZB((0.0, 0.0), (1.0, 2.0))
    assert hash(ZB([0, 0], [1, 2]))
    assert AlphaBeta(2, 1) == AlphaBeta(2.0, 1.0)
    assert set(LINEAR_RULES) >= {type(rule) for rule in RULES}


# --- composites ----------------------------------------------------------------------------------------

def test_composite_assigns_rules_by_layer_name():
    default = RuleSet(linear=Epsilon(0.1))
    rs = composite(default, first=ZB(0.0, 1.0), by_layer={"out": Z(), "dense_1": RuleSet(linear=Flat())})
    assert rs.at("dense_0").linear == ZB(0.0, 1.0)
    assert rs.at("dense_0").gate == default.gate
    assert rs.at("dense_1").linear == Flat()
    assert rs.at("out").linear == Z()
    assert rs.at("dense_7") == rs and rs.linear == Epsilon(0.1)
    assert hash(rs) == hash(composite(default, first=ZB(0.0, 1.0),
                                      by_layer={"out": Z(), "dense_1": RuleSet(linear=Flat())}))
    assert composite(default, first=Flat(), first_layer="pre_dense_0").at("pre_dense_0").linear == Flat()
    assert composite(default, first=Flat(), by_layer={"dense_0": Z()}).at("dense_0").linear == Z()


def test_composite_errors():
    with pytest.raises(TypeError, match="default"):
        composite(Epsilon())
    with pytest.raises(TypeError, match="first"):
        composite(RuleSet(), first="zb")
    with pytest.raises(TypeError, match="by_layer"):
        composite(RuleSet(), by_layer=[("out", Z())])
    with pytest.raises(TypeError, match="layer names"):
        composite(RuleSet(), by_layer={0: Z()})
    with pytest.raises(TypeError, match="out"):
        composite(RuleSet(), by_layer={"out": 0.1})


@pytest.mark.slow
def test_composite_on_a_bilstm_changes_only_the_output_layer():
    params = bilstm.init(jax.random.PRNGKey(0), 4, 3, 2, jnp.float64)
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 4), jnp.float64)
    base = preset("lrp-all", eps=1e-3)
    out_rule = AlphaBeta(2.0, 1.0)
    mixed = composite(base, by_layer={"out": out_rule})
    assert mixed.at("left") == mixed.at("right") == mixed and mixed.linear == base.linear
    explanation = lrpjax.lrp(bilstm.apply, mixed).full(params, x, 1)
    # relevance at the final outputs of both directions = the output rule applied by the oracle
    y_left = explanation.states["left"]["y"][-1]
    y_right = explanation.states["right"]["y"][0]
    h = np.concatenate(_final_states(params, x))
    W = np.concatenate([params["out"]["W_left"], params["out"]["W_right"]])
    r = np.zeros(2)
    r[1] = (h @ W)[1]
    want, _ = oracle(out_rule, h, W, None, r)
    np.testing.assert_allclose(np.concatenate([y_left, y_right]), want, rtol=1e-8, atol=1e-12)
    eps_out, _ = oracle(base.linear, h, W, None, r)
    assert not np.allclose(want, eps_out, rtol=1e-3)   # the override really changed something


def _final_states(params, x):
    """Final hidden states of both directions with an independent plain-NumPy LSTM."""
    def run(p, xs):
        W, U, b = (np.asarray(p[k]) for k in ("W", "U", "b"))
        Hn = U.shape[0]
        y = c = np.zeros(Hn)
        for x_t in xs:
            pre = x_t @ W + y @ U + b
            i, z, f, o = (pre[k * Hn:(k + 1) * Hn] for k in range(4))
            sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
            c = sig(f) * c + sig(i) * np.tanh(z)
            y = sig(o) * np.tanh(c)
        return y
    xs = np.asarray(x)
    return run(params["left"], xs), run(params["right"], xs[::-1])
