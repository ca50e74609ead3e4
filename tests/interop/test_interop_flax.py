"""Flax importer against flax linen itself: LSTMCell, OptimizedLSTMCell and GRUCell, one step and in
nn.RNN / nn.Bidirectional layers with a dense head (forward and jax.grad of the flax module's apply);
the gate order shown to matter; LRP on imported models; every refused configuration."""

import gc
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

nn = pytest.importorskip("flax.linen")

import lrpjax  # noqa: E402
from lrpjax import interop  # noqa: E402
from lrpjax.cells import GRUCell, StandardCell  # noqa: E402
from lrpjax.models import Dense, Recurrent, Sequential  # noqa: E402
from lrpjax.rules import preset  # noqa: E402
from framework_parity import numpy_promotion as flax_context, rel_err  # noqa: E402

E, H, T, C = 4, 3, 5, 2
CELLS = {"lstm": nn.LSTMCell, "optimized_lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}


@pytest.fixture(autouse=True)
def _release_programs():
    yield
    jax.clear_caches()
    gc.collect()


def randomised(variables, seed, dtype):
    """Every parameter drawn anew (flax initialises biases to zero)."""
    leaves, tree = jax.tree_util.tree_flatten(variables)
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_unflatten(tree, [jnp.asarray(rng.normal(0, 0.5, np.shape(v)), dtype) for v in leaves])


class Classifier(nn.Module):
    """A flax RNN (uni- or bidirectional) reading x (T, E), then a dense head on the last step's output
    (its final state forward; the backward direction's state after reading all of x is at step 0)."""

    kind: str
    bidirectional: bool
    dtype: type

    @nn.compact
    def __call__(self, x):
        cell = lambda: CELLS[self.kind](H, param_dtype=self.dtype, parent=None)  # noqa: E731  (owned by the RNN)
        if self.bidirectional:
            rnn = nn.Bidirectional(nn.RNN(cell(), parent=None), nn.RNN(cell(), parent=None), name="rnn")
            ys = rnn(x)
            features = jnp.concatenate([ys[-1, :H], ys[0, H:]])
        else:
            features = nn.RNN(cell(), name="rnn")(x)[-1]
        return nn.Dense(C, param_dtype=self.dtype, name="out")(features)


def import_classifier(module, variables):
    rnn = (nn.Bidirectional(nn.RNN(CELLS[module.kind](H)), nn.RNN(CELLS[module.kind](H))) if module.bidirectional
           else nn.RNN(CELLS[module.kind](H)))
    layer, params = interop.from_flax_rnn(rnn, variables["params"]["rnn"], sequences=False, name="rnn")
    head = variables["params"]["out"]
    W = np.asarray(head["kernel"])
    if module.bidirectional:
        params["out"] = {"W_rnn_forward": W[:H], "W_rnn_backward": W[H:], "b": np.asarray(head["bias"])}
    else:
        params["out"] = {"W": W, "b": np.asarray(head["bias"])}
    return Sequential((layer, Dense(C, name="out"))), params


@pytest.mark.parametrize("kind,bidirectional,dtype", [
    *itertools.product(CELLS, (False, True), (jnp.float64,)), ("lstm", True, jnp.float32), ("gru", True, jnp.float32)])
def test_scores_and_input_gradient_equal_flax(kind, bidirectional, dtype):
    module = Classifier(kind, bidirectional, dtype)
    x = np.random.default_rng(0).normal(0, 1, (T, E)).astype(dtype)
    with flax_context():
        variables = randomised(module.init(jax.random.PRNGKey(0), x), 1, dtype)
        both = jax.jit(lambda x_: (module.apply(variables, x_), jax.grad(lambda z: module.apply(variables, z)[1])(x_)))
        want, want_grad = both(x)
    model, params = import_classifier(module, variables)
    tol = 1e-10 if dtype == jnp.float64 else 1e-5
    got = jax.jit(model.apply)(params, x)
    assert got.dtype == x.dtype
    assert rel_err(got, want) <= tol
    assert rel_err(lrpjax.gradient(model.apply)(params, x, 1), want_grad) <= tol
    full = lrpjax.lrp(model.apply, preset("lrp-all", eps=1e-3, share=True)).full(params, x, 1)
    assert abs(float(full.residual)) <= (1e-9 if dtype == jnp.float64 else 1e-4) * max(1.0, abs(float(full.target_score)))


@pytest.mark.parametrize("kind", CELLS)
def test_one_step_of_the_imported_cell_equals_the_flax_cell(kind):
    flax_cell = CELLS[kind](H, param_dtype=jnp.float64)
    rng = np.random.default_rng(2)
    x, h = rng.normal(0, 1, (E,)), rng.normal(0, 1, (H,))
    carry = h if kind == "gru" else (rng.normal(0, 1, (H,)), h)
    with flax_context():
        variables = randomised(flax_cell.init(jax.random.PRNGKey(0), carry, x), 3, jnp.float64)
        new_carry, _ = flax_cell.apply(variables, carry, x)
    cell, params = interop.from_flax_cell(variables, kind)
    if kind == "gru":
        assert cell == GRUCell(reset_after=True)
        (got,) = cell.step(params, None, (h,), x)
        assert rel_err(got, new_carry) <= 1e-12
    else:
        assert cell == StandardCell()
        y, c = cell.step(params, None, (h, carry[0]), x)
        assert rel_err(c, new_carry[0]) <= 1e-12 and rel_err(y, new_carry[1]) <= 1e-12
    assert interop.from_flax_cell(variables["params"], flax_cell)[0] == cell   # a module as `kind`, no wrapper


def test_per_step_outputs_of_a_bidirectional_rnn_equal_flax_with_seq_lengths():
    rnn = nn.Bidirectional(nn.RNN(nn.GRUCell(H, param_dtype=jnp.float64)), nn.RNN(nn.GRUCell(H, param_dtype=jnp.float64)))
    rng = np.random.default_rng(4)
    X = rng.normal(0, 1, (2, T, E))
    lengths = np.array([T, 3])
    with flax_context():
        variables = randomised(rnn.init(jax.random.PRNGKey(0), X), 5, jnp.float64)
        want = rnn.apply(variables, X, seq_lengths=lengths)
    layer, params = interop.from_flax_rnn(rnn, variables)
    model = Sequential((layer,))
    mask = np.arange(T)[None, :] < lengths[:, None]
    got = jax.vmap(lambda x, m: model.apply(params, x, mask=m))(X, mask)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got[1, :3], want[1, :3], rtol=1e-10, atol=1e-12)
    assert model.keys == ("rnn_forward", "rnn_backward")


def test_lstm_gates_stacked_in_flax_name_order_do_not_match():
    """Stacking i, f, g, o (flax's names) as lrpjax's i, z, f, o breaks parity: the order matters."""
    flax_cell = nn.LSTMCell(H, param_dtype=jnp.float64)
    rng = np.random.default_rng(6)
    x, carry = rng.normal(0, 1, (E,)), (rng.normal(0, 1, (H,)), rng.normal(0, 1, (H,)))
    with flax_context():
        variables = randomised(flax_cell.init(jax.random.PRNGKey(0), carry, x), 7, jnp.float64)
        (c_want, _), _ = flax_cell.apply(variables, carry, x)
    p = variables["params"]
    naive = {"W": np.concatenate([p[f"i{g}"]["kernel"] for g in "ifgo"], 1),
             "U": np.concatenate([p[f"h{g}"]["kernel"] for g in "ifgo"], 1),
             "b": np.concatenate([p[f"h{g}"]["bias"] for g in "ifgo"])}
    _, params = interop.from_flax_cell(variables, "lstm")
    _, c = StandardCell().step(params, None, (carry[1], carry[0]), x)
    _, c_naive = StandardCell().step(naive, None, (carry[1], carry[0]), x)
    assert rel_err(c, c_want) <= 1e-12
    assert rel_err(c_naive, c_want) > 1e-2


def _gru_params():
    with flax_context():
        return nn.GRUCell(H).init(jax.random.PRNGKey(0), jnp.zeros((H,)), jnp.zeros((E,)))["params"]


def _without(tree, key):
    return {k: v for k, v in tree.items() if k != key}


@pytest.mark.parametrize("make,kind,error,match", [
    (lambda: _gru_params(), "elman", TypeError, "`kind` must be one of"),
    (lambda: _gru_params(), nn.SimpleCell(H), TypeError, "SimpleCell"),
    (lambda: _gru_params(), nn.GRUCell(H, activation_fn=jax.nn.relu), TypeError, "activation_fn=tanh"),
    (lambda: _without(_gru_params(), "hn"), "gru", ValueError, r"missing \['hn'\]"),
    (lambda: {**_gru_params(), "extra": {}}, "gru", ValueError, r"unexpected \['extra'\]"),
    (lambda: {**_gru_params(), "hz": {"kernel": np.zeros((H, H)), "bias": np.zeros(H)}}, "gru", ValueError,
     r"cell_params\['hz'\].*exactly \['kernel'\]"),
    (lambda: {**_gru_params(), "iz": {"kernel": np.zeros((E + 1, H)), "bias": np.zeros(H)}}, "gru", ValueError,
     "input kernels"),
    (lambda: {**_gru_params(), "hr": {"kernel": np.zeros((H, H + 1))}}, "gru", ValueError, "hidden kernels"),
    (lambda: {**_gru_params(), "in": {"kernel": np.zeros((E, H)), "bias": np.zeros(H + 1)}}, "gru", ValueError,
     r"cell_params\['in'\]\['bias'\]"),
    (lambda: [1, 2], "gru", TypeError, "mapping"),
    (lambda: {**_gru_params(), "hz": {"kernel": np.zeros((H,))}}, "gru", ValueError, r"\['hz'\]\['kernel'\]` must be a matrix"),
    (lambda: _gru_params(), "lstm", ValueError, "LSTMCell"),
])
def test_refused_cell_parameters(make, kind, error, match):
    with pytest.raises(error, match=match):
        interop.from_flax_cell(make(), kind)


def test_refused_rnn_modules():
    cell = nn.GRUCell(H)
    with flax_context():
        variables = nn.RNN(cell).init(jax.random.PRNGKey(0), jnp.zeros((T, E), jnp.float32))
        bi = nn.Bidirectional(nn.RNN(nn.GRUCell(H)), nn.RNN(nn.GRUCell(H)))
        bi_variables = bi.init(jax.random.PRNGKey(0), jnp.zeros((T, E), jnp.float32))
    with pytest.raises(ValueError, match="reverse=True"):
        interop.from_flax_rnn(nn.RNN(cell, reverse=True), variables)
    with pytest.raises(ValueError, match="time_major"):
        interop.from_flax_rnn(nn.RNN(cell, time_major=True), variables)
    with pytest.raises(TypeError, match="nn.RNN or nn.Bidirectional"):
        interop.from_flax_rnn(cell, variables)
    with pytest.raises(TypeError, match="must hold nn.RNN layers"):
        interop.from_flax_rnn(nn.Bidirectional(nn.GRUCell(H), nn.GRUCell(H)), bi_variables)
    with pytest.raises(ValueError, match="concatenation"):
        interop.from_flax_rnn(nn.Bidirectional(nn.RNN(cell), nn.RNN(cell), merge_fn=lambda a, b: a + b), bi_variables)
    with pytest.raises(ValueError, match="same kind of cell"):
        interop.from_flax_rnn(nn.Bidirectional(nn.RNN(cell), nn.RNN(nn.GRUCell(H + 1))),
                              {"forward_rnn": bi_variables["params"]["forward_rnn"],
                               "backward_rnn": _bigger_gru()})
    with pytest.raises(ValueError, match="'forward_rnn'"):
        interop.from_flax_rnn(bi, variables)


def _bigger_gru():
    with flax_context():
        return nn.RNN(nn.GRUCell(H + 1)).init(jax.random.PRNGKey(1), jnp.zeros((T, E), jnp.float32))["params"]


def test_float64_parameters_need_64_bit_jax():
    with flax_context():
        variables = nn.GRUCell(H, param_dtype=jnp.float64).init(jax.random.PRNGKey(0), jnp.zeros((H,)), jnp.zeros((E,)))
    params = jax.tree_util.tree_map(np.asarray, variables)
    with jax.enable_x64(False):
        with pytest.raises(TypeError, match="jax_enable_x64"):
            interop.from_flax_cell(params, "gru")


def test_recurrent_layer_is_usable_in_any_composition():
    rnn = nn.RNN(nn.OptimizedLSTMCell(H, param_dtype=jnp.float64))
    with flax_context():
        variables = randomised(rnn.init(jax.random.PRNGKey(0), jnp.zeros((T, E))), 8, jnp.float64)
    layer, params = interop.from_flax_rnn(rnn, variables, sequences=True, name="encoder")
    assert isinstance(layer, Recurrent) and layer.sequences and set(params) == {"encoder"}
    model = Sequential((layer, Dense(C, name="tag")))
    params["tag"] = {"W": np.ones((H, C)), "b": np.zeros(C)}
    x = np.random.default_rng(9).normal(0, 1, (T, E))
    with flax_context():
        want = rnn.apply(variables, x) @ np.ones((H, C))
    np.testing.assert_allclose(model.apply(params, x), want, rtol=1e-10)
