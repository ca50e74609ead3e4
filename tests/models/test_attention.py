"""Attention layers (AttentionPool, SelfAttention) against an independent float64 oracle for every rule
option; conservation with sharing; padded batches equal per-example results; the gradient path equals
``jax.grad`` of an independently written model; Contextual Decomposition; errors; configs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrpjax
from lrpjax.core.cells import StandardCell
from lrpjax.core.rules import ATTENTION_MODES, AttentionRule, RuleSet, preset
from lrpjax.io.checkpoints import load_model, save_model
from lrpjax.methods.decomposition import decompose
from lrpjax.models import AttentionPool, Dense, Pool, Recurrent, SelfAttention, Sequential
from lrpjax.models.layers import layer_from_config

import reference_attention as ref

T, D, C, L = 5, 3, 2, 4
RULES = [(mode, eps, share) for mode in ATTENTION_MODES for eps, share in ((0.0, False), (0.01, True))]
SHARED = [(mode, 0.01, True) for mode in ATTENTION_MODES]   # fewer programs where the scores repeat a path


def _rule_set(mode, eps, share):
    return preset("lrp-all", eps=eps, share=share, attention=mode)


def _explain_every_rule(model, rules):
    """One compiled function: the relevance under every rule option of ``rules`` (stacked), and the scores."""
    methods = [lrpjax.lrp(model.apply, _rule_set(*r)) for r in rules]

    @jax.jit
    def run(params, x, mask):
        relevance = jnp.stack([m.relevance(params, x, jnp.asarray(1), mask, jnp.asarray(0)) for m in methods])
        return relevance, model.apply(params, x, mask=mask)

    return run


def _inputs(seed):
    rng = np.random.default_rng(seed)
    H = rng.normal(0, 0.8, (T, D))
    mask = np.arange(T) < L
    return H, mask


def _numpy_params(params, name):
    return {k: np.asarray(v) for k, v in params.get(name, {}).items()}


@pytest.mark.parametrize("score, heads, rules", [("additive", 2, RULES), ("dot", 1, SHARED), ("general", 2, SHARED)])
def test_attention_pool_equals_the_oracle_for_every_rule(score, heads, rules):
    model = Sequential((AttentionPool(score, 4 if score == "additive" else None, heads=heads), Dense(C)))
    params = model.init(jax.random.PRNGKey(1), D, jnp.float64)
    params["attention_0"] = jax.tree_util.tree_map(lambda a: a * 3.0, params["attention_0"])   # peaked weights
    params["out"]["b"] = jnp.asarray([0.1, -0.2])
    H, mask = _inputs(2)
    P, Wo, bo = _numpy_params(params, "attention_0"), np.asarray(params["out"]["W"]), np.asarray(params["out"]["b"])

    y, weights, _ = ref.pool_model(score, P, Wo, bo, H, L, 1)
    relevance, scores = _explain_every_rule(model, rules)(params, H, mask)
    np.testing.assert_allclose(scores, y, rtol=0, atol=1e-12)
    np.testing.assert_allclose(jax.jit(model.layers[0].weights)(params, jnp.asarray(H), jnp.asarray(mask)), weights,
                               rtol=0, atol=1e-12)
    relevance = np.asarray(relevance)
    for got, (mode, eps, share) in zip(relevance, rules):
        _, _, expected = ref.pool_model(score, P, Wo, bo, H, L, 1, mode, eps, share)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10, err_msg=f"{mode} eps={eps} share={share}")
        if share:   # conservation: the inputs carry the target's score
            assert abs(got.sum() - y[1]) < 1e-10, (mode, got.sum(), y[1])
    assert np.abs(relevance[:, L:]).max() == 0.0             # padded steps receive nothing


@pytest.mark.parametrize("score, causal, rules", [("dot", False, SHARED), ("general", True, SHARED),
                                                 ("additive", True, RULES)])
def test_self_attention_equals_the_oracle_for_every_rule(score, causal, rules):
    layer = SelfAttention(score, 3 if score == "additive" else None, causal=causal)
    model = Sequential((Dense(D, bias=False, name="proj"), layer, Pool("sum"), Dense(C)))
    params = model.init(jax.random.PRNGKey(3), D, jnp.float64)
    params["out"]["b"] = jnp.asarray([0.05, 0.1])
    X, mask = _inputs(4)
    P, Wo, bo = _numpy_params(params, "attention_0"), np.asarray(params["out"]["W"]), np.asarray(params["out"]["b"])
    Wp = np.asarray(params["proj"]["W"])

    y, _ = ref.self_model(score, P, Wp, Wo, bo, X, L, 1, causal)
    relevance, scores = _explain_every_rule(model, rules)(params, X, mask)
    np.testing.assert_allclose(scores, y, rtol=0, atol=1e-12)
    for got, (mode, eps, share) in zip(np.asarray(relevance), rules):
        _, expected = ref.self_model(score, P, Wp, Wo, bo, X, L, 1, causal, mode, eps, share)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10, err_msg=f"{mode} eps={eps} share={share}")
        if share:
            assert abs(got.sum() - y[1]) < 1e-10, (mode, got.sum(), y[1])


# --- a BiLSTM with attention: conservation, full(), padded batches ------------------------------------

@pytest.fixture(scope="module")
def bilstm_attention():
    model = Sequential((Recurrent(StandardCell(), 3, bidirectional=True, sequences=True),
                        AttentionPool("additive", 4, heads=2), Dense(C)))
    return model, model.init(jax.random.PRNGKey(7), 4, jnp.float64)


def test_bilstm_attention_conserves_relevance_under_the_rules(bilstm_attention):
    model, params = bilstm_attention
    methods = [lrpjax.lrp(model.apply, preset(p, eps=1e-3, share=True, attention=mode))
               for p, mode in (("lrp-all", "gate"), ("lrp-prop", "prop"), ("lrp-half", "attnlrp"))]

    @jax.jit
    def residuals(x, mask):
        return jnp.stack([m.full(params, x, 0, mask=mask).residual for m in methods]), model.apply(params, x, mask=mask)

    for seed in range(2):
        x = np.random.default_rng(seed).normal(0, 1.0, (T, 4))
        res, _ = residuals(x, np.arange(T) < 4 + seed)
        assert np.abs(np.asarray(res)).max() < 1e-10


def test_padded_batches_equal_per_example_results(bilstm_attention):
    model, params = bilstm_attention
    rng = np.random.default_rng(11)
    sequences = [rng.normal(size=(n, 4)) for n in (2, 5)]
    X, mask = lrpjax.pad(sequences)
    method = lrpjax.lrp(model.apply, preset("lrp-half", eps=1e-3, attention="attnlrp"))
    batch = method.batch(params, X, [0, 1], mask=mask)
    for b, x in enumerate(sequences):
        np.testing.assert_allclose(batch[b, :len(x)], method(params, x, b), rtol=0, atol=1e-12)
        assert np.all(np.asarray(batch[b, len(x):]) == 0)


# --- the gradient path --------------------------------------------------------------------------------

def _plain_pool(P, Wo, bo, x):
    """AttentionPool(additive, K heads) + dense, written independently with jnp."""
    e = jnp.tanh(x @ P["W"] + P["b"][None, :]) @ P["v"]                 # (T, K)
    a = jax.nn.softmax(e, axis=0)
    return jnp.concatenate([a[:, k] @ x for k in range(e.shape[1])]) @ Wo + bo


def _plain_self(P, Wo, bo, x):
    """SelfAttention(general, causal) + sum pooling + dense, written independently with jnp."""
    n = x.shape[0]
    e = x @ (x @ P["W"]).T                                     # e[s, t] = h_s . (h_t W)
    e = jnp.where(jnp.tril(jnp.ones((n, n), bool)), e, -jnp.inf)
    return (jax.nn.softmax(e, axis=1) @ x).sum(axis=0) @ Wo + bo


@pytest.mark.parametrize("layer, plain", [(AttentionPool("additive", 4, heads=2), _plain_pool),
                                          (SelfAttention("general", causal=True), _plain_self)])
def test_gradient_equals_jax_grad_of_an_independent_model(layer, plain):
    model = Sequential((layer,) + ((Pool("sum"),) if isinstance(layer, SelfAttention) else ()) + (Dense(C),))
    params = model.init(jax.random.PRNGKey(5), D, jnp.float64)
    x = np.random.default_rng(6).normal(size=(T, D))
    P = params["attention_0"]
    Wo, bo = params["out"]["W"], params["out"]["b"]
    expected = jax.jit(jax.grad(lambda x_: plain(P, Wo, bo, x_)[1]))(jnp.asarray(x))
    np.testing.assert_allclose(lrpjax.gradient(model.apply)(params, x, 1), expected, rtol=0, atol=1e-12)
    # and with respect to the attention parameters, through the same model
    grad_p = jax.jit(jax.grad(lambda p: model.apply({**params, "attention_0": p}, x)[1]))(P)
    grad_q = jax.jit(jax.grad(lambda p: plain(p, Wo, bo, jnp.asarray(x))[1]))(P)
    for key in P:
        np.testing.assert_allclose(grad_p[key], grad_q[key], rtol=0, atol=1e-12)


# --- Contextual Decomposition -------------------------------------------------------------------------

def test_contextual_decomposition_weighs_the_relevant_steps_by_the_attention():
    model = Sequential((AttentionPool("dot"), Dense(C)))
    params = model.init(jax.random.PRNGKey(2), D, jnp.float64)
    H, _ = _inputs(8)
    relevant = np.array([True, False, True, False, False])
    parts = decompose(model.apply, params, H, relevant)
    alpha = np.asarray(model.layers[0].weights(params, jnp.asarray(H)))[:, 0]
    expected = (alpha[relevant] @ H[relevant]) @ np.asarray(params["out"]["W"])
    np.testing.assert_allclose(parts.beta, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(parts.beta + parts.gamma, model.apply(params, H), rtol=0, atol=1e-12)


def test_contextual_decomposition_runs_through_a_bilstm_with_attention(bilstm_attention):
    model, params = bilstm_attention
    x = np.random.default_rng(9).normal(size=(T, 4))
    parts = decompose(model.apply, params, x, np.ones(T, bool))
    np.testing.assert_allclose(parts.beta + parts.gamma, model.apply(params, x), rtol=0, atol=1e-12)


# --- configuration and errors -------------------------------------------------------------------------

def test_layers_come_back_from_their_configs_and_checkpoints(tmp_path):
    for layer in (AttentionPool("additive", 4, heads=3, name="att"), SelfAttention("dot", causal=True, name="sa")):
        assert layer_from_config(layer.config()) == layer
    model = Sequential((AttentionPool("dot", heads=2), Dense(C)))
    params = model.init(jax.random.PRNGKey(0), D)
    assert Sequential.from_config(model.config()) == model
    assert "AttentionPool(dot, 2 heads)" in model.summary(params)
    model = Sequential((Recurrent(StandardCell(), 3, sequences=True), SelfAttention("dot", causal=True),
                        AttentionPool("additive", 4), Dense(C)))
    params = model.init(jax.random.PRNGKey(0), D)
    assert "attention_0" not in params                       # dot self-attention has no parameters
    loaded = load_model(save_model(str(tmp_path / "attention.npz"), model, params))
    assert loaded[0] == model
    for key in params:
        for leaf in params[key]:
            np.testing.assert_array_equal(loaded[1][key][leaf], params[key][leaf])


def test_bad_configurations_and_parameters_are_refused_by_name():
    with pytest.raises(ValueError, match="`score` of AttentionPool"):
        AttentionPool("cosine")
    with pytest.raises(ValueError, match="`units` of SelfAttention"):
        SelfAttention("dot", units=4)
    with pytest.raises(ValueError, match="`heads` of AttentionPool"):
        AttentionPool("dot", heads=0)
    with pytest.raises(TypeError, match="`causal` of SelfAttention"):
        SelfAttention("dot", causal=1)
    with pytest.raises(ValueError, match="`mode` of AttentionRule"):
        AttentionRule("softmax")
    with pytest.raises(ValueError, match="`mode` of AttentionRule"):
        preset("lrp-all", attention="cp")
    with pytest.raises(TypeError, match="`attention` of RuleSet"):
        RuleSet(attention="gate")
    model = Sequential((AttentionPool("additive", 4, heads=2), Dense(C)))
    params = model.init(jax.random.PRNGKey(0), D)
    bad = {**params, "attention_0": {**params["attention_0"], "v": jnp.zeros((5, 2), jnp.float32)}}
    with pytest.raises(ValueError, match=r"params\['attention_0'\]\['v'\]` must have shape \(4, 2\)"):
        model.apply(bad, np.zeros((T, D), np.float32))
    with pytest.raises(ValueError, match="needs a sequence"):
        Sequential((Recurrent(StandardCell(), 3), AttentionPool("dot"), Dense(C)))
