"""Compositions of layers against the float64 oracle: GRUs, stacks, bidirectional layers, dense heads
with bias, pooling and per-step outputs; conservation, masks, jit/vmap and the gradient path."""

import dataclasses
import gc
import itertools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrpjax
import reference_layers as oracle
from lrpjax.cells import GRUCell, NondecreasingCell, StandardCell
from lrpjax.core import ops
from lrpjax.models import Dense, Pool, Recurrent, Sequential
from lrpjax.models.layers import Decomposable, Layer, Spec
from lrpjax.rules import Epsilon, composite, preset

PRESETS = ("lrp-all", "lrp-prop", "lrp-abs", "lrp-half")


@pytest.fixture(autouse=True)
def _release_programs():
    """Each test here compiles new model structures; free them (see conftest: memory mappings)."""
    yield
    jax.clear_caches()
    gc.collect()
CELLS = ("lstm", "gru", "gru-v1")


def to_lrpjax(model: list) -> tuple[Sequential, dict]:
    """The oracle's model description as an lrpjax composition and its parameters (same numbers)."""
    layers, params, parts = [], {}, ("input",)
    for spec in model:
        if spec["type"] in ("lstm", "gru"):
            cell = StandardCell() if spec["type"] == "lstm" else GRUCell(spec.get("reset_after", True))
            layer = Recurrent(cell, bidirectional=spec["bidirectional"], sequences=spec["sequences"],
                              name=spec["name"])
            for key, direction in zip(layer.keys(), spec["params"]):
                params[key] = {k: jnp.asarray(v) for k, v in spec["params"][direction].items()}
            parts = layer.keys()
        elif spec["type"] == "dense":
            layer = Dense(activation=spec["activation"], bias=spec["params"]["b"] is not None, name=spec["name"])
            keys = ["W"] if len(parts) == 1 else [f"W_{p}" for p in parts]
            params[spec["name"]] = {k: jnp.asarray(w) for k, w in zip(keys, spec["params"]["W"])}
            if spec["params"]["b"] is not None:
                params[spec["name"]]["b"] = jnp.asarray(spec["params"]["b"])
            parts = (spec["name"],)
        else:
            layer = Pool(spec["mode"], name=spec["name"])
        layers.append(layer)
    return Sequential(tuple(layers)), params


def oracle_rules(name: str, eps: float, share: bool) -> dict:
    return oracle.preset_rules(name, eps, share)


def _case(cell, bidirectional, n_layers, head, seed=0, T=5):
    rng = np.random.default_rng(seed)
    model = oracle.random_model(rng, cell, bidirectional, n_layers, head)
    x = rng.normal(0, 0.8, (T, 4))
    return model, x


def _seed(model, x, head, rng):
    output, _ = oracle.forward(model, x)
    if head == "per-step":
        w = np.zeros_like(output)
        w[2, 1] = 1.0
        return w, oracle.seed_for_weights(output, w)
    return 1, oracle.seed_for_target(output, 1)


# every cell x direction x head, two layers; each structure under two rule configurations that walk
# through the presets, so every preset meets every cell, eps > 0 and share=True
STRUCTURES = list(itertools.product(CELLS, (False, True), oracle.HEADS))


@pytest.mark.parametrize("k", range(len(STRUCTURES)))
def test_lrp_equals_the_oracle_at_the_input_and_at_every_state(k):
    cell, bidirectional, head = STRUCTURES[k]
    model, x = _case(cell, bidirectional, 2, head, seed=k)
    net, params = to_lrpjax(model)
    target, seed = _seed(model, x, head, np.random.default_rng(k))
    for name, eps, share in ((PRESETS[k % 4], 0.0, False), (PRESETS[(k + 1) % 4], 0.01, True)):
        want = oracle.lrp(model, x, seed, oracle_rules(name, eps, share))
        target_arg = jnp.asarray(target, jnp.float64) if head == "per-step" else target
        full = lrpjax.lrp(net.apply, preset(name, eps, share)).full(params, jnp.asarray(x), target_arg)
        scale = max(1.0, float(np.abs(want["R_x"]).max()))
        np.testing.assert_allclose(full.relevance, want["R_x"], rtol=1e-10, atol=1e-10 * scale)
        for spec in model:
            layer = want["layers"][spec["name"]]
            if spec["type"] in ("lstm", "gru"):
                keys = net.layers[[s["name"] for s in model].index(spec["name"])].keys()
                for key, direction in zip(keys, spec["params"]):
                    got, ref = full.states[key], layer["directions"][direction]
                    for state in (("y", "c") if spec["type"] == "lstm" else ("h",)):
                        np.testing.assert_allclose(got[state], ref[f"R_{state}"], rtol=1e-9, atol=1e-10 * scale)
                        np.testing.assert_allclose(full.initial[key][f"{state}0"], ref[f"R_{state}0"],
                                                   rtol=1e-9, atol=1e-10 * scale)
            else:
                np.testing.assert_allclose(full.states[spec["name"]], layer["R_in"], rtol=1e-9, atol=1e-10 * scale)
        absorbed = sum(float(np.sum(leaf)) for leaf in jax.tree_util.tree_leaves(full.params))
        np.testing.assert_allclose(absorbed, want["R_bias"], rtol=1e-9, atol=1e-10 * scale)
        np.testing.assert_allclose(full.residual, want["R_stab"], rtol=1e-8, atol=1e-9 * scale)


@pytest.mark.parametrize("cell,n_layers", [("gru", 1), ("gru-v1", 3), ("lstm", 3)])
def test_depth_one_and_three_equal_the_oracle(cell, n_layers):
    model, x = _case(cell, True, n_layers, "dense", seed=n_layers)
    net, params = to_lrpjax(model)
    output, _ = oracle.forward(model, x)
    np.testing.assert_allclose(net.apply(params, jnp.asarray(x)), output, rtol=1e-12)
    for name in PRESETS:
        want = oracle.lrp(model, x, oracle.seed_for_target(output, 2), oracle_rules(name, 0.001, False))
        got = lrpjax.lrp(net.apply, preset(name, 0.001))(params, jnp.asarray(x), 2)
        np.testing.assert_allclose(got, want["R_x"], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("head", oracle.HEADS)
def test_conservation_with_shared_biases(cell, head):
    model, x = _case(cell, True, 2, head, seed=7)
    net, params = to_lrpjax(model)
    target = jnp.ones(net.output_shape(params, 5), jnp.float64) if head == "per-step" else 0
    # two presets per structure, rotating with the cell and the head: every cell meets every preset
    turn = CELLS.index(cell) + oracle.HEADS.index(head)
    for name in (PRESETS[turn % 4], PRESETS[(turn + 2) % 4]):
        full = lrpjax.lrp(net.apply, preset(name, 0.01, share=True)).full(params, jnp.asarray(x), target)
        total = float(jnp.sum(full.relevance)) + sum(float(jnp.sum(v)) for v in jax.tree_util.tree_leaves(full.initial))
        assert abs(total - float(full.target_score)) <= 1e-10 * max(1.0, float(jnp.abs(full.relevance).sum()))
        assert abs(float(full.residual)) <= 1e-10 * max(1.0, float(jnp.abs(full.relevance).sum()))


def test_rule_overrides_by_layer_name_equal_the_oracle():
    model, x = _case("gru", True, 2, "mlp", seed=3)
    net, params = to_lrpjax(model)
    output, _ = oracle.forward(model, x)
    seed = oracle.seed_for_target(output, 0)
    rules = composite(preset("lrp-prop", 0.01), by_layer={"out": Epsilon(0.0), "rnn1": preset("lrp-half", 0.1)})
    want = oracle.lrp(model, x, seed, oracle_rules("lrp-prop", 0.01, False),
                      rules_by_layer={"out": {"linear": (0.0, False), "gate": ("prop", 0.01, False),
                                              "accumulate": (0.01, False)},
                                      "rnn1": oracle_rules("lrp-half", 0.1, False)})
    got = lrpjax.lrp(net.apply, rules)(params, jnp.asarray(x), 0)
    np.testing.assert_allclose(got, want["R_x"], rtol=1e-10, atol=1e-12)


def test_an_override_for_a_layer_that_does_not_exist_is_an_error():
    model, _ = _case("gru", False, 1, "dense")
    net, _ = to_lrpjax(model)
    with pytest.raises(ValueError, match=r"does not have; its layers are \['rnn1', 'out'\]"):
        lrpjax.lrp(net.apply, composite(preset("lrp-all"), by_layer={"outt": Epsilon(0.0)}))
    with pytest.raises(ValueError, match="dense_0"):
        lrpjax.lrp(net.apply, composite(preset("lrp-all"), first=Epsilon(0.1)))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("head", ("dense", "pool-max", "per-step"))
def test_gradient_path_is_jax_grad_of_an_independent_model(cell, head):
    model, x = _case(cell, True, 2, head, seed=11)
    net, params = to_lrpjax(model)
    output = oracle.jax_forward(model, jnp.asarray(x))
    np.testing.assert_allclose(net.apply(params, jnp.asarray(x)), output, rtol=1e-12, atol=1e-14)
    w = np.random.default_rng(0).normal(size=output.shape)
    want = jax.grad(lambda x_: jnp.sum(w * oracle.jax_forward(model, x_)))(jnp.asarray(x))
    got = lrpjax.gradient(net.apply)(params, jnp.asarray(x), jnp.asarray(w))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(oracle.gradient(model, x, w), want, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("k", range(len(CELLS) * len(oracle.HEADS)))
def test_padded_batches_equal_each_sequence_alone(k):
    cell, head = CELLS[k % 3], oracle.HEADS[k // 3]
    model, _ = _case(cell, True, 2, head, seed=5)
    net, params = to_lrpjax(model)
    rng = np.random.default_rng(1)
    xs = [rng.normal(0, 0.8, (T, 4)) for T in (4, 1)]
    X, mask = lrpjax.pad(xs, 6)
    per_step = head == "per-step"
    # LRP under a rule set with every kind of share, or the gradient, in turn
    method = lrpjax.lrp(net.apply, preset("lrp-prop", 0.01, True)) if k % 2 else lrpjax.gradient(net.apply)
    if per_step:
        targets = jnp.zeros((2, 6, 3), jnp.float64).at[:, 0, 1].set(1.0)
        batch = method.batch(params, X, targets, mask=mask)
        singles = [method(params, jnp.asarray(x), targets[b, :len(x)]) for b, x in enumerate(xs)]
    else:
        batch = method.batch(params, X, jnp.array([0, 2]), mask=mask)
        singles = [method(params, jnp.asarray(x), 2 * b) for b, x in enumerate(xs)]
    for b, (x, single) in enumerate(zip(xs, singles)):
        np.testing.assert_allclose(batch[b, :len(x)], single, rtol=1e-10, atol=1e-13)
        assert np.all(np.asarray(batch[b, len(x):]) == 0)
    scores = jax.vmap(lambda x_, m: net.apply(params, x_, mask=m))(X, mask)
    for b, x in enumerate(xs):
        alone = net.apply(params, jnp.asarray(x))
        np.testing.assert_allclose(scores[b, :len(x)] if per_step else scores[b], alone, rtol=1e-12)


def test_jit_and_vmap_equal_the_plain_call():
    model, _ = _case("gru", True, 2, "pool-mean", seed=2)
    net, params = to_lrpjax(model)
    X = jnp.asarray(np.random.default_rng(3).normal(0, 0.8, (3, 6, 4)))
    rules = preset("lrp-abs", 0.01)
    pull = lambda x: jax.vjp(lambda x_: net.apply(params, x_, rules), x)  # noqa: E731
    plain = [pull(x)[1](jnp.ones(3))[0] for x in X]
    batched = jax.jit(jax.vmap(lambda x: pull(x)[1](jnp.ones(3))[0]))(X)
    np.testing.assert_allclose(batched, np.stack(plain), rtol=1e-12, atol=1e-15)


def test_a_step_of_a_per_step_model_and_all_steps_at_once():
    model, x = _case("lstm", False, 1, "per-step", seed=4, T=6)
    net, params = to_lrpjax(model)
    method = lrpjax.lrp(net.apply, preset("lrp-all", 0.001))
    x = jnp.asarray(x)
    step = method(params, x, (3, 2))
    # causality: the output of step 3 of a forward-only model rests on steps 0..3 alone
    assert np.all(np.asarray(step[4:]) == 0) and np.abs(np.asarray(step[:4])).sum() > 0
    by_function = method(params, x, lambda s: s[3, 2])
    np.testing.assert_allclose(by_function, step, rtol=1e-12)
    every = method.all(params, x)
    assert every.shape == (6, 3, 6, 4)
    np.testing.assert_allclose(every[3, 2], step, rtol=1e-12)
    matrix = lrpjax.per_token(every, 4)                       # (T_out, C, T_in)
    assert matrix.shape == (6, 3, 6)
    assert np.all(np.triu(np.asarray(matrix[:, 2, :]), 1) == 0)
    with pytest.raises(ValueError, match=r"tuple of indices such as \(t, c\)"):
        method(params, x, 2)
    with pytest.raises(ValueError, match="outside the output"):
        method(params, x, (6, 0))
    with pytest.raises(ValueError, match=r"weights must have the output's shape \(6, 3\)"):
        method(params, x, jnp.ones((6, 2)))


def test_a_linear_combination_of_outputs_is_the_sum_of_its_parts():
    model, x = _case("gru", True, 2, "dense", seed=9)
    net, params = to_lrpjax(model)
    x = jnp.asarray(x)
    for method in (lrpjax.gradient(net.apply), lrpjax.occlusion(net.apply), lrpjax.lrp(net.apply, "lrp-all")):
        w = jnp.array([0.5, -2.0, 1.0])
        combined = method(params, x, w)
        parts = sum(w[c] * method(params, x, c) for c in range(3)) if method.name != "lrp" else None
        if parts is not None:
            np.testing.assert_allclose(combined, parts, rtol=1e-10, atol=1e-13)
    # LRP of a combination is seeded with w * output: the total relevance is sum(w * output)
    full = lrpjax.lrp(net.apply, preset("lrp-all", 0.0, share=True)).full(params, x, w)
    np.testing.assert_allclose(full.target_score, jnp.sum(w * net.apply(params, x)), rtol=1e-12)


def test_layer_checks_name_the_argument():
    with pytest.raises(ValueError, match="units"):
        Dense(0)
    with pytest.raises(ValueError, match="activation"):
        Dense(3, "softmax")
    with pytest.raises(ValueError, match="mode"):
        Pool("median")
    with pytest.raises(ValueError, match="directions"):
        Recurrent(directions=("a", "b"))
    with pytest.raises(ValueError, match="unique"):
        Sequential((Recurrent(name="a"), Dense(2, name="a")))
    with pytest.raises(ValueError, match="needs a sequence"):
        Sequential((Recurrent(), Recurrent()))
    net = Sequential((Recurrent(GRUCell(), 3), Dense(2)))
    params = net.init(jax.random.PRNGKey(0), 4, jnp.float64)
    assert net.names == ("gru_0", "out")
    with pytest.raises(ValueError, match=r"missing parameters \['b_hn'\]"):
        net.apply({**params, "gru_0": {k: v for k, v in params["gru_0"].items() if k != "b_hn"}}, jnp.ones((3, 4)))
    with pytest.raises(ValueError, match=r"`params\['out'\]` must have exactly the keys \['W', 'b'\]"):
        net.apply({**params, "out": {"W": params["out"]["W"]}}, jnp.ones((3, 4)))
    with pytest.raises(ValueError, match=r"belong to no layer"):
        net.apply({**params, "extra": {}}, jnp.ones((3, 4)))
    with pytest.raises(ValueError, match=r"E = 4"):
        net.apply(params, jnp.ones((3, 5)))
    with pytest.raises(ValueError, match="valid prefix"):
        net.apply(params, jnp.ones((4, 4)), mask=jnp.array([True, False, True, True]))


def test_config_round_trip_and_summary():
    net = Sequential((Recurrent(GRUCell(False), 4, bidirectional=True, sequences=True),
                      Recurrent(StandardCell(), 3, sequences=True), Pool("max"), Dense(5, "tanh"), Dense(2)))
    again = Sequential.from_config(net.config())
    assert again == net
    params = net.init(jax.random.PRNGKey(1), 6)
    text = net.summary(params)
    assert "gru_0" in text and "-> (T, 8)" in text and "out" in text


# --- dataset explanation and Contextual Decomposition on compositions ---------------------------------

def _dataset(T_list=(3, 6, 2, 5), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.8, (T, 4)) for T in T_list]


def test_explain_dataset_on_a_gru_stack_equals_each_sequence_alone():
    from lrpjax import datasets as scale

    model, _ = _case("gru", True, 2, "pool-max", seed=1)
    net, params = to_lrpjax(model)
    xs = _dataset()
    for method in (lrpjax.lrp(net.apply, preset("lrp-half", 0.01)), lrpjax.occlusion(net.apply, "p")):
        result = scale.explain_dataset(method, params, xs, targets="pred", buckets=(4, 8), chunk_size=2)
        for i, x in enumerate(xs):
            target = int(np.argmax(net.apply(params, jnp.asarray(x))))
            assert result.targets[i] == target
            np.testing.assert_allclose(result.relevance[i], method(params, jnp.asarray(x), target),
                                       rtol=1e-10, atol=1e-13)


def test_explain_dataset_on_a_per_step_model_gives_the_step_by_step_relevance_matrix():
    from lrpjax import datasets as scale

    model, _ = _case("lstm", True, 1, "per-step", seed=2)
    net, params = to_lrpjax(model)
    xs = _dataset()
    method = lrpjax.lrp(net.apply, preset("lrp-all", 0.001))
    pred = scale.explain_dataset(method, params, xs, targets="pred", buckets=(8,), chunk_size=2)
    every = scale.explain_dataset(method, params, xs, targets="all", buckets=(8,), chunk_size=2, tokens=True)
    fixed = scale.explain_dataset(lrpjax.gradient(net.apply), params, xs, targets=1, buckets=(8,), chunk_size=2)
    for i, x in enumerate(xs):
        x = jnp.asarray(x)
        T = x.shape[0]
        scores = net.apply(params, x)
        np.testing.assert_allclose(pred.scores[i], scores, rtol=1e-12)
        assert pred.relevance[i].shape == (T, T, 4) and every.relevance[i].shape == (T, 3, T)
        classes = np.argmax(np.asarray(scores), axis=-1)
        np.testing.assert_array_equal(pred.targets[i], classes)
        for t in range(T):
            np.testing.assert_allclose(pred.relevance[i][t], method(params, x, (t, int(classes[t]))),
                                       rtol=1e-10, atol=1e-13)
            np.testing.assert_allclose(fixed.relevance[i][t], lrpjax.gradient(net.apply)(params, x, (t, 1)),
                                       rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(every.relevance[i], lrpjax.per_token(method.all(params, x), 4),
                                   rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("head", ("mlp", "pool-max", "pool-mean", "per-step"))
def test_contextual_decomposition_through_stacks_and_heads_is_complete(head):
    from lrpjax.methods import decomposition as cd

    model, x = _case("lstm", True, 2, head, seed=6, T=6)
    net, params = to_lrpjax(model)
    x = jnp.asarray(x)
    mask = jnp.arange(6) < 4
    relevant = jnp.array([False, True, True, False, False, False])
    dec = cd.decompose(net.apply, params, x, relevant, mask=mask)
    scores = net.apply(params, x, mask=mask)
    np.testing.assert_allclose(dec.beta + dec.gamma, scores, rtol=1e-10, atol=1e-12)
    for key in ("rnn1_forward", "rnn1_backward", "rnn2_forward", "rnn2_backward"):
        assert dec.beta_y[key].shape == (6, 3)
    # padding changes nothing: the unpadded sequence decomposes identically
    alone = cd.decompose(net.apply, params, x[:4], relevant[:4])
    np.testing.assert_allclose(alone.beta, dec.beta[:4] if head == "per-step" else dec.beta, rtol=1e-10, atol=1e-12)
    # nothing relevant: the relevant part of the output is zero (up to rounding: the irrelevant parts are
    # the true states minus the relevant ones, and the two are computed by different programs)
    none = cd.decompose(net.apply, params, x, jnp.zeros(6, bool), mask=mask)
    np.testing.assert_allclose(none.beta, 0, atol=1e-14 * float(jnp.max(jnp.abs(scores))))
    target = (1, 2) if head == "per-step" else 2
    R = cd.cd(net.apply)(params, x, target, mask=mask)
    assert R.shape == (6,) and np.all(np.asarray(R[4:]) == 0)


def test_contextual_decomposition_of_the_composition_equals_the_reference_bilstm():
    from lrpjax.methods import decomposition as cd
    from lrpjax.models import bilstm

    params = bilstm.init(jax.random.PRNGKey(0), 4, 3, 5, jnp.float64)
    x = jax.random.normal(jax.random.PRNGKey(1), (6, 4), jnp.float64)
    net = Sequential((Recurrent(StandardCell(), bidirectional=True, name="enc", directions=("left", "right")),
                      Dense(bias=False, name="out")))
    np.testing.assert_array_equal(cd.cd(net.apply)(params, x, 3), cd.cd(bilstm.apply)(params, x, 3))


def test_contextual_decomposition_refuses_a_gru():
    from lrpjax.methods import decomposition as cd

    net = Sequential((Recurrent(GRUCell(), 3), Dense(2)))
    with pytest.raises(TypeError, match=r"cannot decompose layer 'gru_0' \(Recurrent\): its cell GRUCell \(kind "
                                         r"'gru'\) has no decomposition; it is defined for the standard LSTM cell"):
        cd.cd(net.apply)
    with pytest.raises(TypeError, match="cannot decompose layer 'lstm_0'.*NondecreasingCell"):
        cd.decompose(Sequential((Recurrent(NondecreasingCell(), 3), Dense(2))).apply, {}, jnp.ones((2, 4)),
                     jnp.ones(2, bool))


# --- the layer protocol: a layer answers questions about itself ----------------------------------------

def test_every_layer_follows_the_protocol_and_answers_for_itself():
    layers = (Recurrent(StandardCell(), 3, bidirectional=True, sequences=True, name="r"),
              Recurrent(GRUCell(), 3, name="g"), Dense(4, "tanh", name="d"), Pool("max", name="p"))
    for layer in layers:
        assert isinstance(layer, Layer) and isinstance(layer, Decomposable)
    r, g, d, p = layers
    assert [layer.needs_sequence for layer in layers] == [True, True, False, True]
    assert [layer.sequence_output(True) for layer in layers] == [True, False, True, False]
    assert d.sequence_output(False) is False
    assert [layer.default_output for layer in layers] == [False, False, True, False]
    assert [layer.describe() for layer in layers] == ["Recurrent(standard, bidirectional, sequences)",
                                                      "Recurrent(gru)", "Dense(tanh, bias)", "Pool(max)"]
    assert not isinstance(StandardCell(), Layer) and not isinstance(object(), Layer)
    # a layer is only the last "out" by default when it says so
    assert Sequential((Recurrent(units=2), Dense(2))).names[-1] == "out"
    assert Sequential((Recurrent(units=2, sequences=True), Pool())).names[-1] == "pool_0"


def test_sequential_refuses_what_is_not_a_layer_and_a_vector_where_a_sequence_is_needed():
    with pytest.raises(TypeError, match="members of lrpjax.models.layers.Layer"):
        Sequential((Recurrent(), StandardCell()))
    with pytest.raises(ValueError, match=r"layer 'pool_0' \(Pool\) needs a sequence"):
        Sequential((Dense(3), Pool()), sequence_input=False)


@dataclasses.dataclass(frozen=True)
class Scale:
    """A toy layer defined only here: ``x * s`` element-wise, ``s`` (D,) its parameters. It composes in a
    Sequential without any change to the model, because it has the members of ``Layer``."""

    name: str | None = None

    default_name: ClassVar[str] = "scale"
    default_output: ClassVar[bool] = False
    needs_sequence: ClassVar[bool] = False

    def sequence_output(self, sequence_input):
        return sequence_input

    def keys(self):
        return (self.name,)

    def rule_names(self):
        return (self.name,)

    def input_size(self, params):
        return params[self.name]["s"].shape[0]

    def output_spec(self, params, spec):
        if params[self.name]["s"].shape != (spec.size,):
            raise ValueError(f"`params[{self.name!r}]['s']` must have shape ({spec.size},).")
        return Spec((self.name,), (spec.size,), spec.sequence)

    def init(self, key, spec, dtype=jnp.float32):
        return {self.name: {"s": jax.random.uniform(key, (spec.size,), dtype, 0.5, 1.5)}}

    def apply(self, params, parts, spec, mask, rules, taps):
        x = jnp.concatenate(parts, axis=-1)
        W = jnp.diag(params[self.name]["s"])
        rules = None if rules is None else rules.at(self.name)
        scale = lambda v: ops.linear(rules, (v,), (W,))   # noqa: E731
        return (jax.vmap(scale)(x) if spec.sequence else scale(x),)

    def zero_taps(self, params, spec, T, dtype):
        return {}, {}

    def describe(self):
        return "Scale()"

    def config(self):
        return {"type": "scale", "name": self.name}


@dataclasses.dataclass(frozen=True)
class ScaleCD(Scale):
    """The toy layer with its own Contextual Decomposition: a linear map splits exactly."""

    def check_decomposable(self):
        pass

    def decompose(self, params, spec, beta, total, mask, relevant, bias_product, reads_input, record):
        s = params[self.name]["s"]
        return (jnp.concatenate(beta, axis=-1) * s,), (jnp.concatenate(total, axis=-1) * s,)


def _scaled_and_folded(layer):
    """A model with the toy layer between pooling and the output, and the same model with the scale folded
    into the output weights (mean pooling is linear: mean(x * s) W = mean(x) (diag(s) W))."""
    net = Sequential((Recurrent(StandardCell(), 3, bidirectional=True, sequences=True), Pool("mean"), layer,
                      Dense(2)))
    params = net.init(jax.random.PRNGKey(3), 4, jnp.float64)
    s = params["scale_0"]["s"]
    folded = Sequential((Recurrent(StandardCell(), 3, bidirectional=True, sequences=True), Pool("mean"), Dense(2)))
    folded_params = {k: v for k, v in params.items() if k != "scale_0"}
    W = s[:, None] * params["out"]["W"]   # the pooled parts are the two directions, 3 features each
    folded_params["out"] = {"W_lstm_0_forward": W[:3], "W_lstm_0_backward": W[3:], "b": params["out"]["b"]}
    return net, params, folded, folded_params


def test_a_new_layer_composes_without_changing_the_model():
    net, params, folded, folded_params = _scaled_and_folded(Scale())
    assert net.names == ("lstm_0", "lstm_0_forward", "lstm_0_backward", "pool_0", "scale_0", "out")
    assert "scale_0          Scale()  -> (6,), 6 parameters" in net.summary(params)
    assert net.sequence_output is False
    x = jax.random.normal(jax.random.PRNGKey(4), (5, 4), jnp.float64)
    mask = jnp.arange(5) < 4
    np.testing.assert_allclose(net.apply(params, x, mask=mask), folded.apply(folded_params, x, mask=mask),
                               rtol=1e-12, atol=1e-14)
    grad = jax.grad(lambda x: net.apply(params, x, mask=mask)[1])(x)
    np.testing.assert_allclose(grad, jax.grad(lambda x: folded.apply(folded_params, x, mask=mask)[1])(x),
                               rtol=1e-10, atol=1e-13)
    # relevance follows the rule set through the toy layer's diagonal linear mapping, which passes it on
    # unchanged (R_j = x_j s_j / (x_j s_j) R_j): the same as through the folded model
    rules = preset("lrp-all")

    def relevance(model, p):
        out, vjp = jax.vjp(lambda x: model.apply(p, x, rules, mask=mask), x)
        return vjp(jnp.zeros_like(out).at[1].set(out[1]))[0]

    np.testing.assert_allclose(relevance(net, params), relevance(folded, folded_params), rtol=1e-9, atol=1e-12)


def test_contextual_decomposition_refuses_a_layer_without_one_by_name():
    from lrpjax.methods import decomposition as cd

    net, params, _, _ = _scaled_and_folded(Scale())
    with pytest.raises(TypeError, match=r"cannot decompose layer 'scale_0' \(Scale\): it has no decomposition"):
        cd.decompose(net.apply, params, jnp.ones((5, 4)), jnp.ones(5, bool))


def test_contextual_decomposition_goes_through_a_new_layer_that_decomposes_itself():
    from lrpjax.methods import decomposition as cd

    net, params, folded, folded_params = _scaled_and_folded(ScaleCD())
    x = jax.random.normal(jax.random.PRNGKey(5), (5, 4), jnp.float64)
    mask = jnp.arange(5) < 4
    relevant = jnp.array([False, True, True, False, False])
    dec = cd.decompose(net.apply, params, x, relevant, mask=mask)
    want = cd.decompose(folded.apply, folded_params, x, relevant, mask=mask)
    np.testing.assert_allclose(dec.beta, want.beta, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dec.beta + dec.gamma, net.apply(params, x, mask=mask), rtol=1e-12, atol=1e-14)
