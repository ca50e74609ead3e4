"""The dense model: forward and gradient against an independent plain model, LRP against a layer-by-layer
float64 oracle, layer-wise relevances and their conservation, checks, training, and an LSTM with a dense
layer before the recurrence."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads
from reference_dense import oracle

import lrpjax
from lrpjax import train
from lrpjax.models import lstm
from lrpjax.models.mlp import MLP, layerwise
from lrpjax.rules import AlphaBeta, Epsilon, Flat, Gamma, RuleSet, WSquare, Z, ZB, ZPlus, composite, preset

WIDTHS = (7, 5, 4, 3)


def _params(model, seed=0):
    params = model.init(jax.random.PRNGKey(seed), jnp.float64)
    # non-zero biases, so that bias absorption is exercised
    return {name: {"W": layer["W"], "b": jnp.linspace(-0.3, 0.4, layer["b"].shape[0])}
            for name, layer in params.items()}


def _x(seed=1, D=WIDTHS[0]):
    return jax.random.uniform(jax.random.PRNGKey(seed), (D,), jnp.float64, 0.0, 1.0)


def _plain(params, x, names, act):
    """An independent plain-JAX MLP (no lrpjax code)."""
    a = x
    for k, name in enumerate(names):
        a = a @ params[name]["W"] + params[name]["b"]
        if k < len(names) - 1:
            a = jnp.maximum(a, 0) if act == "relu" else jnp.tanh(a)
    return a


def _oracle_lrp(params, x, names, act, rules, target):
    """Layer-by-layer NumPy LRP: forward, then each layer's rule from the output down."""
    acts = [np.asarray(x)]
    for k, name in enumerate(names):
        z = acts[-1] @ np.asarray(params[name]["W"]) + np.asarray(params[name]["b"])
        acts.append(z if k == len(names) - 1 else (np.maximum(z, 0) if act == "relu" else np.tanh(z)))
    r = np.zeros_like(acts[-1])
    r[target] = acts[-1][target]
    layer_inputs = {}
    for k in reversed(range(len(names))):
        r, _ = oracle(rules.at(names[k]).linear, acts[k], params[names[k]]["W"], params[names[k]]["b"], r)
        layer_inputs[names[k]] = r
    return r, layer_inputs


def _full(model, params, x, rules, target):
    """LRP with layer-wise relevances: Method.full runs jax.vjp of apply with the model's zero taps."""
    return lrpjax.lrp(model.apply, rules).full(params, x, target)


def test_layer_names_and_parameter_shapes():
    model = MLP(WIDTHS)
    assert model.layers == ("dense_0", "dense_1", "out")
    assert model.output_size(model.init(jax.random.PRNGKey(0))) == 3
    assert MLP((4, 2)).layers == ("out",)
    assert MLP([4, 3, 2], prefix="pre_").layers == ("pre_dense_0", "pre_out")
    params = model.init(jax.random.PRNGKey(0))
    assert {k: (v["W"].shape, v["b"].shape) for k, v in params.items()} == {
        "dense_0": ((7, 5), (5,)), "dense_1": ((5, 4), (4,)), "out": ((4, 3), (3,))}
    assert params["out"]["W"].dtype == jnp.float32
    assert hash(model) == hash(MLP((7, 5, 4, 3)))


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_forward_and_gradient_equal_an_independent_plain_model(act):
    model = MLP(WIDTHS, act)
    params = _params(model)
    x = _x() - 0.5
    np.testing.assert_allclose(model.apply(params, x), _plain(params, x, model.layers, act), rtol=1e-12)
    for target in (0, 2):
        got = jax.grad(lambda p, x_: model.apply(p, x_)[target], argnums=(0, 1))(params, x)
        want = jax.grad(lambda p, x_: _plain(p, x_, model.layers, act)[target], argnums=(0, 1))(params, x)
        for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)
    check_grads(lambda x_: model.apply(params, x_), (x,), 1, modes=("rev",))
    grad = lrpjax.gradient(model.apply)(params, x, 2)
    np.testing.assert_allclose(grad, jax.grad(lambda x_: _plain(params, x_, model.layers, act)[2])(x), rtol=1e-12)


COMPOSITES = [
    preset("lrp-all"),
    RuleSet(linear=Epsilon(0.1)),
    composite(RuleSet(linear=Epsilon(0.1)), first=ZB(0.0, 1.0)),
    composite(RuleSet(linear=AlphaBeta(2.0, 1.0)), first=Flat(), by_layer={"out": Z()}),
    composite(RuleSet(linear=Gamma(0.25)), first=WSquare(), by_layer={"dense_1": ZPlus(), "out": Epsilon(0.2)}),
]


@pytest.mark.parametrize("rules", COMPOSITES, ids=range(len(COMPOSITES)))
@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_lrp_equals_layer_by_layer_oracle(rules, act):
    model = MLP(WIDTHS, act)
    params = _params(model, seed=2)
    x = _x(3)
    target = 1
    full = _full(model, params, x, rules, target)
    want_x, want_layers = _oracle_lrp(params, x, model.layers, act, rules, target)
    np.testing.assert_allclose(full.relevance, want_x, rtol=1e-9, atol=1e-12)
    for name in model.layers:
        np.testing.assert_allclose(full.states[name], want_layers[name], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(full.states["dense_0"], full.relevance)
    np.testing.assert_allclose(lrpjax.lrp(model.apply, rules)(params, x, target), want_x, rtol=1e-9, atol=1e-12)


def test_layerwise_relevance_shapes_and_conservation():
    model = MLP((6, 5, 5, 4, 3))
    params = _params(model, seed=4)
    x = _x(5, D=6)
    full = _full(model, params, x, preset("lrp-all", eps=0.0, share=True), 2)
    assert {k: v.shape for k, v in full.states.items()} == {
        "dense_0": (6,), "dense_1": (5,), "dense_2": (5,), "out": (4,)}
    sums = layerwise(full)
    assert list(sums) == ["dense_0", "dense_1", "dense_2", "out", "output"]
    for value in sums.values():
        np.testing.assert_allclose(value, full.target_score, rtol=1e-10)
    assert abs(float(full.residual)) < 1e-12
    assert full.initial == {}
    # without sharing every layer passes on what it received minus what its bias absorbed
    full = _full(model, params, x, RuleSet(linear=Z()), 2)
    sums = layerwise(full)
    names = list(model.layers) + ["output"]
    for below, above in zip(names[:-1], names[1:]):
        np.testing.assert_allclose(sums[below] + full.params[below]["b"].sum(), sums[above], rtol=1e-10)
    assert abs(float(full.params["out"]["b"].sum())) > 1e-6


def test_layerwise_orders_layers_naturally():
    model = MLP(tuple([3] * 12 + [2]))
    params = model.init(jax.random.PRNGKey(0), jnp.float64)
    full = _full(model, params, _x(D=3), preset("lrp-all"), 0)
    assert list(layerwise(full))[9:] == ["dense_9", "dense_10", "out", "output"]
    with pytest.raises(TypeError, match="Explanation"):
        layerwise({"states": {}})


def test_checks_name_the_argument():
    model = MLP(WIDTHS)
    params = _params(model)
    with pytest.raises(ValueError, match="widths"):
        MLP((5,))
    with pytest.raises(ValueError, match="widths"):
        MLP((5, 0, 2))
    with pytest.raises(ValueError, match="activation"):
        MLP((5, 2), "sigmoid")
    with pytest.raises(ValueError, match=r"`x` must be one input vector of shape \(D,\) = \(7,\)"):
        model.apply(params, jnp.ones((1, 7)))
    with pytest.raises(TypeError, match=r"`x` has integer dtype int32, but this model reads vectors \(D,\), not token ids"):
        model.apply(params, jnp.ones(7, jnp.int32))
    with pytest.raises(ValueError, match="mask"):
        model.apply(params, _x(), mask=jnp.ones(7, bool))
    with pytest.raises(ValueError, match=r"params\['dense_1'\]\['W'\]"):
        model.apply({**params, "dense_1": {"W": jnp.ones((5, 5)), "b": jnp.ones(4)}}, _x())
    with pytest.raises(ValueError, match="missing"):
        model.apply({"out": params["out"]}, _x())
    with pytest.raises(TypeError, match="params"):
        model.apply([params], _x())
    with pytest.raises(ValueError, match=r"\(D,\) = \(7,\)"):           # through the explanation methods too
        lrpjax.lrp(model.apply)(params, jnp.ones((2, 7)), 0)
    with pytest.raises(ValueError, match="target"):
        lrpjax.lrp(model.apply)(params, _x(), 3)


def test_trainer_lowers_the_loss():
    model = MLP((4, 8, 2), "tanh")
    params = model.init(jax.random.PRNGKey(0), jnp.float64)
    X = jax.random.normal(jax.random.PRNGKey(1), (64, 4), jnp.float64)
    y = (X[:, 0] + X[:, 1] > 0).astype(jnp.int32)
    loss = train.make_loss(lambda p, x, m: model.apply(p, x), "xent")
    before = float(loss(params, {"x": X, "y": y}))
    result = train.fit(loss, params, {"x": X, "y": y},
                       config=train.TrainConfig(epochs=10, batch_size=16, progress=False),
                       optimizer=optax.adam(0.05))
    assert float(loss(result.params, {"x": X, "y": y})) < 0.5 * before


# --- dense layers around the recurrence --------------------------------------------------------------------

class DenseThenLSTM:
    """A dense projection of every embedded step (an MLP with prefix "pre_") followed by the LSTM."""

    pre = MLP((4, 6, 3), "relu", prefix="pre_")

    def init(self, key):
        k1, k2 = jax.random.split(key)
        return {"pre": self.pre.init(k1, jnp.float64), "lstm": lstm.init(k2, 3, 5, 2, jnp.float64)}

    def apply(self, params, x, rules=None, *, mask=None):
        h = jax.vmap(lambda x_t: self.pre.apply(params["pre"], x_t, rules))(x)
        return lstm.apply(params["lstm"], h, rules, mask=mask)


@pytest.mark.slow
def test_lstm_with_a_dense_layer_before_the_recurrence():
    model = DenseThenLSTM()
    params = model.init(jax.random.PRNGKey(0))
    params["pre"] = {k: {"W": v["W"], "b": v["b"] + 0.2} for k, v in params["pre"].items()}
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 4), jnp.float64)
    mask = jnp.array([True, True, True, False, False])

    def plain(x_):
        h = jnp.maximum(x_ @ params["pre"]["pre_dense_0"]["W"] + params["pre"]["pre_dense_0"]["b"][None], 0)
        h = h @ params["pre"]["pre_out"]["W"] + params["pre"]["pre_out"]["b"][None]
        return lstm.apply(params["lstm"], h, mask=mask)[1]

    grad = jax.grad(lambda x_: model.apply(params, x_, mask=mask)[1])(x)
    np.testing.assert_allclose(grad, jax.grad(plain)(x), rtol=1e-12)
    # LRP of the composition = LRP of the LSTM down to the projected steps h, then LRP of the dense
    # layers of every step seeded with that relevance; with shared biases the dense part conserves
    rules = composite(preset("lrp-all", eps=0.01, share=True), first=Flat(), first_layer="pre_dense_0")
    seed = jnp.array([0.0, 1.0])
    scores, pullback = jax.vjp(lambda x_: model.apply(params, x_, rules, mask=mask), x)
    (r_x,) = pullback(seed * scores)
    h = jax.vmap(lambda x_t: model.pre.apply(params["pre"], x_t))(x)
    _, pull_lstm = jax.vjp(lambda h_: lstm.apply(params["lstm"], h_, rules, mask=mask), h)
    (r_h,) = pull_lstm(seed * scores)
    chain = jnp.stack([jax.vjp(lambda x_t: model.pre.apply(params["pre"], x_t, rules), x[t])[1](r_h[t])[0]
                       for t in range(5)])
    np.testing.assert_allclose(r_x, chain, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(r_x.sum(axis=1), r_h.sum(axis=1), rtol=1e-10, atol=1e-15)
    assert np.all(np.asarray(r_x[3:]) == 0)                         # padded steps get nothing
    per_step = r_x[:3].sum(axis=1)                                  # flat: equal shares within a step
    np.testing.assert_allclose(r_x[:3], jnp.repeat(per_step[:, None] / 4, 4, axis=1), rtol=1e-12)
