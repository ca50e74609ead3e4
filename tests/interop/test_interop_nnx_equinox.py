"""Flax NNX and Equinox importers against the frameworks themselves, in float64: forward scores and input
gradients (the framework's own gradient) of stacked uni- and bidirectional layers of every supported cell
with dense heads, per-step heads and embeddings; every refused configuration names the layer.

Few structures, each mixing several cells, so that the compile-heavy parity tests stay short."""

import gc

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from framework_parity import rel_err

nnx = pytest.importorskip("flax.nnx")
eqx = pytest.importorskip("equinox")

from lrpjax import interop  # noqa: E402

E, H, T, C, V = 3, 2, 4, 2, 6
F64 = jnp.float64


@pytest.fixture(autouse=True)
def _release_programs():
    yield
    jax.clear_caches()
    gc.collect()


def _randomize(module, seed):
    """Every NNX parameter (biases included) drawn at random, so that no convention hides behind zeros."""
    state = nnx.state(module, nnx.Param)
    leaves, tree = jax.tree_util.tree_flatten(state)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    nnx.update(module, jax.tree_util.tree_unflatten(tree, [0.5 * jax.random.normal(k, l.shape, l.dtype)
                                                           for k, l in zip(keys, leaves)]))


def _h(carry):
    return carry[1] if isinstance(carry, tuple) else carry


def _check(model, params, reference, x, target):
    """lrpjax's scores and input gradient of ``target`` against the framework's (one compilation each)."""
    ours = jax.jit(lambda x: (model.apply(params, x), jax.grad(lambda x: model.apply(params, x)[target])(x)))
    got, grad = ours(x)
    want, want_grad = reference(x)
    assert got.dtype == np.float64 and got.shape == want.shape
    assert rel_err(got, want) <= 1e-12
    assert rel_err(grad, want_grad) <= 1e-12


def test_nnx_embed_stacked_cells_and_mlp_head_equal_nnx():
    """One structure with every NNX layer: Embed, Bidirectional(LSTMCell), RNN(OptimizedLSTMCell),
    Bidirectional(GRUCell) (final states), Linear, relu, Linear."""
    rngs = nnx.Rngs(0)
    kw = dict(param_dtype=F64, rngs=rngs)
    embed = nnx.Embed(V, E, **kw)
    l1 = nnx.Bidirectional(nnx.RNN(nnx.LSTMCell(E, H, **kw)), nnx.RNN(nnx.LSTMCell(E, H, **kw)), rngs=rngs)
    l2 = nnx.RNN(nnx.OptimizedLSTMCell(2 * H, H, **kw))
    l3 = nnx.Bidirectional(nnx.RNN(nnx.GRUCell(H, H, **kw)), nnx.RNN(nnx.GRUCell(H, H, **kw)), rngs=rngs)
    d1, d2 = nnx.Linear(2 * H, 3, **kw), nnx.Linear(3, C, **kw)
    modules = (l1, l2, l3, d1, d2)
    for k, module in enumerate((embed, *modules)):
        _randomize(module, k)
    model, params = interop.from_nnx([embed, l1, l2, l3, d1, jax.nn.relu, d2])
    assert [layer.describe() for layer in model.layers][1:] == [
        "Recurrent(standard, bidirectional, sequences)", "Recurrent(standard, sequences)",
        "Recurrent(gru, bidirectional)", "Dense(relu, bias)", "Dense(identity, bias)"]
    assert model.takes_ids
    np.testing.assert_array_equal(params["embedding"]["table"], np.asarray(embed.embedding[...]))

    def forward(mods, x):
        l1, l2, l3, d1, d2 = mods
        (cf, cb), _ = l3(l2(l1(x[None])), return_carry=True)
        return d2(jax.nn.relu(d1(jnp.concatenate([_h(cf), _h(cb)], -1))))[0]

    def reference(x):
        return nnx.jit(lambda m, x: (forward(m, x), nnx.grad(lambda m, x: forward(m, x)[1], argnums=1)(m, x)))(
            modules, jnp.asarray(x))

    # the input gradient at the embedded vectors, through the model over vectors
    inner, inner_params = model.vector_model(params)
    ids = np.array([1, 5, 0, 3])
    _check(inner, inner_params, reference, params["embedding"]["table"][ids], 1)


def _eqx_random(module, seed):
    leaves, tree = jax.tree_util.tree_flatten(eqx.filter(module, eqx.is_inexact_array))
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return eqx.combine(jax.tree_util.tree_unflatten(tree, [0.5 * jax.random.normal(k, l.shape, l.dtype)
                                                           for k, l in zip(keys, leaves)]), module)


def _eqx_scan(cell, xs, reverse=False):
    """The documented pattern: a cell scanned from zero states; (final h, every h)."""
    zeros = jnp.zeros(cell.hidden_size, xs.dtype)
    init = (zeros, zeros) if isinstance(cell, eqx.nn.LSTMCell) else zeros

    def step(carry, x):
        carry = cell(x, carry)
        return carry, _first(carry)

    carry, hs = jax.lax.scan(step, init, xs, reverse=reverse)
    return _first(carry), hs


def _first(carry):
    return carry[0] if isinstance(carry, tuple) else carry


def test_equinox_embedding_stacked_cells_and_per_step_head_equal_equinox():
    """One structure with every Equinox layer: Embedding, a (GRUCell, GRUCell) pair, LSTMCell, a
    bidirectional LSTMCell pair, Linear, tanh, Linear without bias, at every step."""
    keys = jax.random.split(jax.random.PRNGKey(2), 8)
    embedding = eqx.nn.Embedding(V, E, dtype=F64, key=keys[0])
    pair = (eqx.nn.GRUCell(E, H, dtype=F64, key=keys[1]), eqx.nn.GRUCell(E, H, dtype=F64, key=keys[2]))
    lstm = eqx.nn.LSTMCell(2 * H, H, dtype=F64, key=keys[3])
    bi = (eqx.nn.LSTMCell(H, H, dtype=F64, key=keys[4]), eqx.nn.LSTMCell(H, H, dtype=F64, key=keys[5]))
    hidden = eqx.nn.Linear(2 * H, 3, dtype=F64, key=keys[6])
    head = eqx.nn.Linear(3, C, use_bias=False, dtype=F64, key=keys[7])
    embedding, pair, lstm, bi, hidden, head = (_eqx_random(m, k) for k, m in
                                               enumerate((embedding, pair, lstm, bi, hidden, head)))
    model, params = interop.from_equinox([embedding, pair, lstm, bi, hidden, jnp.tanh, head], sequence_output=True)
    assert model.keys == ("embedding", "gru_0_forward", "gru_0_backward", "lstm_1", "lstm_2_forward",
                          "lstm_2_backward", "dense_0", "out")
    np.testing.assert_array_equal(params["embedding"]["table"], np.asarray(embedding.weight))

    def forward(x):
        _, f = _eqx_scan(pair[0], x)
        _, b = _eqx_scan(pair[1], x, reverse=True)
        _, ys = _eqx_scan(lstm, jnp.concatenate([f, b], -1))
        _, hf = _eqx_scan(bi[0], ys)
        _, hb = _eqx_scan(bi[1], ys, reverse=True)
        return jax.vmap(lambda h: head(jnp.tanh(hidden(h))))(jnp.concatenate([hf, hb], -1))

    reference = jax.jit(lambda x: (forward(x), jax.grad(lambda x: forward(x)[1, 1])(x)))
    inner, inner_params = model.vector_model(params)
    ids = jnp.array([4, 0, 2, 5])
    _check(inner, inner_params, reference, np.asarray(jax.vmap(embedding)(ids)), (1, 1))


class _OwnLinear(eqx.nn.Linear):
    def __call__(self, x, *, key=None):
        return 2 * super().__call__(x)


class _OwnCell(nnx.GRUCell):
    def __call__(self, carry, inputs):
        return super().__call__(carry, 2 * inputs)


@pytest.mark.filterwarnings("ignore:carry_init is provided")
def test_nnx_refusals_name_the_layer():
    rngs = nnx.Rngs(0)
    kw = dict(param_dtype=F64, rngs=rngs)

    def gru(**options):
        return nnx.GRUCell(E, H, **{**kw, **options})

    cases = [
        (lambda: [nnx.RNN(_OwnCell(E, H, **kw))], TypeError, r"layers\[0\].cell.*_OwnCell.*defines __call__"),
        (lambda: [nnx.RNN(nnx.LSTMCell(E, H, gate_fn=jax.nn.hard_sigmoid, **kw))], TypeError, "gate_fn"),
        (lambda: [nnx.RNN(gru(carry_init=nnx.initializers.ones))], ValueError, "carry_init"),
        (lambda: [nnx.RNN(gru(), reverse=True)], ValueError, "reverse=True"),
        (lambda: [nnx.RNN(gru(), time_major=True)], ValueError, "time_major"),
        (lambda: [nnx.RNN(gru(dtype=jnp.float32))], ValueError, "dtype != param_dtype"),
        (lambda: [nnx.Bidirectional(nnx.RNN(gru()), nnx.RNN(gru()), merge_fn=lambda a, b: a + b, rngs=rngs)],
         ValueError, "concatenation"),
        (lambda: [nnx.RNN(gru()), nnx.Embed(V, E, **kw)], ValueError, r"layers\[1\].*Embed"),
        (lambda: [nnx.RNN(gru()), nnx.Linear(H, C, **kw), jax.nn.gelu], TypeError, r"layers\[2\].*supported"),
        (lambda: [nnx.RNN(gru()), jax.nn.relu], ValueError, r"layers\[1\].*must follow a linear"),
        (lambda: [nnx.Linear(E, C, **kw)], ValueError, "no recurrent layer"),
        (lambda: [nnx.RNN(gru()), nnx.Linear(H + 1, C, **kw)], ValueError, r"layers\[1\].kernel"),
        (lambda: nnx.RNN(gru()), TypeError, "list of NNX layers"),
    ]
    for build, error, match in cases:
        with pytest.raises(error, match=match):
            interop.from_nnx(build())


def test_equinox_refusals_name_the_layer():
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    cases = [
        ([eqx.nn.GRUCell(E, H, key=k[0]), _OwnLinear(H, C, key=k[1])], TypeError, r"layers\[1\].*defines __call__"),
        ([(eqx.nn.GRUCell(E, H, key=k[0]), eqx.nn.LSTMCell(E, H, key=k[1]))], ValueError, "same kind of cell"),
        ([eqx.nn.GRUCell(E, H, key=k[0]), eqx.nn.Linear(H, "scalar", key=k[1])], ValueError, "scalar"),
        ([eqx.nn.GRUCell(E, H, key=k[0]), eqx.nn.Embedding(V, E, key=k[1])], ValueError, "after the first"),
        ([eqx.nn.GRUCell(E, H, key=k[0]), eqx.nn.MLP(H, C, 2, 1, key=k[1])], TypeError, r"layers\[1\]` is a MLP"),
        ([eqx.nn.GRUCell(E, H, key=k[0]), eqx.nn.LSTMCell(H + 1, H, key=k[1])], ValueError, r"layers\[1\]` reads"),
        ([eqx.nn.Linear(E, C, key=k[0])], ValueError, "no recurrent layer"),
        ([eqx.nn.GRUCell(E, H, key=k[0]), eqx.nn.Linear(H, C, dtype=jnp.float32, key=k[1])], TypeError, "one dtype"),
    ]
    for layers, error, match in cases:
        with pytest.raises(error, match=match):
            interop.from_equinox(layers)
