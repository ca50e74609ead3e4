"""Conv1D: relevance equal to the float64 oracle for every padding, kind and rule; masks; gradients; errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrpjax
from lrpjax.core.cells import StandardCell
from lrpjax.core.rules import Epsilon, Flat, RuleSet
from lrpjax.models import Conv1D, Dense, Pool, Recurrent, Sequential
from lrpjax.models.layers import layer_from_config
from reference_mamba import conv_forward, conv_relevance

T, D, F, K = 6, 3, 4, 3
RULES = (("epsilon", 0.0, False), ("epsilon", 0.1, True), ("flat", 0.0, False))


def _rule_set(rule, eps, share):
    return RuleSet(linear=Flat()) if rule == "flat" else RuleSet(linear=Epsilon(eps, share))


CONFIGS = [("causal", False, 1), ("same", False, 1), ("causal", True, 2), ("same", True, 1)]


@pytest.fixture(scope="module")
def cases():
    """Per configuration: the layer, its parameters, inputs, output relevance and one compiled function giving
    the forward and, for every rule of RULES, the relevance of the unmasked and the masked (length 4) input."""
    rng = np.random.default_rng(1)
    out = {}
    for padding, depthwise, dilation in CONFIGS:
        layer = Conv1D(None if depthwise else F, K, padding, depthwise=depthwise, dilation=dilation, name="conv")
        model = Sequential((layer,))
        W = rng.normal(size=(K, D) if depthwise else (K, D, F))
        b = rng.normal(size=(D if depthwise else F,))
        params = {"conv": {"W": W, "b": b}}
        x = rng.normal(size=(T, D))
        r = rng.normal(size=(T, D if depthwise else F))
        mask = np.arange(T) < 4

        @jax.jit
        def run(params, x, r, mask, model=model):
            results = []
            for rule in RULES:
                for m in (None, mask):
                    _, pull = jax.vjp(lambda x_: model.apply(params, x_, _rule_set(*rule), mask=m), x)
                    results.append(pull(r)[0])
            return model.apply(params, x), model.apply(params, x, mask=mask), results

        out[(padding, depthwise, dilation)] = (layer, params, x, r, mask, run(params, x, r, mask))
    return out


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c[0]}-{'depthwise' if c[1] else 'full'}-d{c[2]}")
def test_forward_and_relevance_equal_the_oracle_for_every_rule_and_mask(cases, config):
    padding, depthwise, dilation = config
    layer, params, x, r, mask, (z, z_masked, results) = cases[config]
    W, b = params["conv"]["W"], params["conv"]["b"]
    np.testing.assert_allclose(z, conv_forward(x, W, b, padding, dilation, depthwise), atol=1e-12)
    expected_masked = conv_forward(x, W, b, padding, dilation, depthwise, length=4)
    np.testing.assert_allclose(z_masked, expected_masked, atol=1e-12)
    np.testing.assert_allclose(z_masked[:4], conv_forward(x[:4], W, b, padding, dilation, depthwise), atol=1e-12)
    k = 0
    for rule, eps, share in RULES:
        for length in (None, 4):
            r_used = r if length is None else np.where(mask[:, None], r, 0.0)
            expected = conv_relevance(x, W, b, r_used, padding, dilation, depthwise, eps, share, rule, length)
            np.testing.assert_allclose(results[k], expected, atol=1e-10, err_msg=f"{rule} eps={eps} share={share}")
            if share or rule == "flat":   # conservation: padding taps are not inputs
                np.testing.assert_allclose(results[k].sum(), r_used.sum(), rtol=1e-12)
            if length is not None:
                assert np.all(results[k][4:] == 0)
            k += 1


def _reference_conv(x, W, b, left, dilation):
    """An independent jnp convolution (zero padding, cross-correlation) for the gradient check."""
    K = W.shape[0]
    T = x.shape[0]
    padded = jnp.pad(x, ((left, dilation * (K - 1) - left), (0, 0)))
    return sum(padded[k * dilation:k * dilation + T] @ W[k] for k in range(K)) + b[None, :]


def test_without_rules_the_gradient_is_the_true_one(cases):
    layer, params, x, r, _, _ = cases[("same", False, 1)]
    model = Sequential((layer,))
    W, b = params["conv"]["W"], params["conv"]["b"]
    g, g_ref = jax.jit(lambda x, W, b, r: (jax.grad(lambda x_: jnp.sum(r * model.apply(params, x_)))(x),
                                           jax.grad(lambda x_: jnp.sum(r * _reference_conv(x_, W, b, 1, 1)))(x)))(
        x, W, b, r)
    np.testing.assert_allclose(g, g_ref, atol=1e-12)


def test_cnn_lstm_conserves_and_a_padded_batch_equals_each_example():
    model = Sequential((Conv1D(4, 2, "causal", activation="relu"), Recurrent(StandardCell(), 3), Dense(2)))
    params = model.init(jax.random.PRNGKey(0), 3, jnp.float64)
    X = np.random.default_rng(2).normal(size=(2, 5, 3))
    mask = np.array([[True] * 5, [True] * 3 + [False] * 2])
    explain = lrpjax.lrp(model.apply, lrpjax.rules.preset("lrp-all", eps=1e-3, share=True))
    batch = explain.batch(params, X, np.array([1, 0]), mask=mask)
    full = explain.full(params, X[1, :3], 0)
    np.testing.assert_allclose(batch[1, :3], full.relevance, atol=1e-12)
    assert np.all(batch[1, 3:] == 0)
    # Conservation: the target's score is the inputs' relevance plus the LSTM's initial states' share.
    assert abs(float(full.residual)) < 1e-10
    np.testing.assert_allclose(full.target_score, model.apply(params, X[1, :3])[0], rtol=1e-12)


def test_config_round_trip_and_summary():
    layer = Conv1D(4, 3, "same", depthwise=False, bias=False, dilation=2, activation="silu", name="c")
    assert layer_from_config(layer.config()) == layer
    assert "Conv1D(K=3, same, dilation 2, silu)" == layer.describe()
    model = Sequential((Conv1D(2, 2), Pool("mean"), Dense(1)))
    assert model.layers[0].name == "conv_0"


def test_bad_configurations_and_parameters_are_named():
    with pytest.raises(ValueError, match="padding"):
        Conv1D(4, 3, "valid")
    with pytest.raises(ValueError, match="kernel_size"):
        Conv1D(4, 0)
    with pytest.raises(ValueError, match="activation"):
        Conv1D(4, 3, activation="gelu")
    model = Sequential((Conv1D(4, 3, name="conv"),))
    with pytest.raises(ValueError, match=r"params\['conv'\]\['W'\]"):
        model.apply({"conv": {"W": np.zeros((3, 3)), "b": np.zeros(4)}}, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="kernel_size = 3"):
        model.apply({"conv": {"W": np.zeros((2, 3, 4)), "b": np.zeros(4)}}, np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"\['b'\]"):
        model.apply({"conv": {"W": np.zeros((3, 3, 4)), "b": np.zeros(3)}}, np.zeros((5, 3)))
