"""Importers accept only what they reproduce: every refusal class, with the framework's model that triggers
it, names the layer and what is unsupported; subclasses that do not change how a layer computes, and Keras
masks (returned as the mask function to apply), are reproduced exactly."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import gc  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from framework_parity import numpy_promotion, rel_err  # noqa: E402
from lrpjax import interop  # noqa: E402

E, H, C, V = 3, 2, 2, 7


@pytest.fixture(autouse=True)
def _release_programs():
    yield
    jax.clear_caches()
    gc.collect()


# --- PyTorch -----------------------------------------------------------------------------------------

def test_torch_subclasses_with_their_own_forward_and_hooks_are_refused():
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class ScaledLSTM(nn.LSTM):
        def forward(self, x, hx=None):
            return super().forward(2 * x, hx)

    class NamedLSTM(nn.LSTM):
        def describe(self):
            return "an LSTM with a helper method"

    class ScaledLinear(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    class LeakyReLU(nn.ReLU):
        def forward(self, x):
            return torch.where(x > 0, x, 0.1 * x)

    class Skipping(nn.Sequential):
        def forward(self, x):
            return self[-1](x[:H])

    class Scaled(nn.Embedding):
        def forward(self, ids):
            return 2 * super().forward(ids)

    def cases():
        yield (ScaledLSTM(E, H),), r"`rnn` is a ScaledLSTM.*defines forward"
        yield (nn.LSTM(E, H), ScaledLinear(H, C)), r"`head` is a ScaledLinear.*defines forward"
        yield (nn.GRU(E, H), nn.Sequential(nn.Linear(H, C), LeakyReLU())), r"`head\[1\]` is a LeakyReLU"
        yield (nn.GRU(E, H), Skipping(nn.Linear(H, C))), r"`head` is a Skipping"
        yield (nn.GRU(E, H), None, Scaled(V, E)), r"`embedding` is a Scaled"
        hooked = nn.GRU(E, H)
        hooked.register_forward_hook(lambda module, args, out: (2 * out[0], out[1]))
        yield (hooked,), r"`rnn` \(GRU\) has forward hooks"
        head = nn.Sequential(nn.Linear(H, C))
        head[0].register_forward_pre_hook(lambda module, args: (2 * args[0],))
        yield (nn.GRU(E, H), head), r"`head\[0\]` \(Linear\) has forward hooks"

    for args, match in cases():
        with pytest.raises(TypeError, match=match):
            interop.from_torch(*args)
    handle = nn.modules.module.register_module_forward_hook(lambda module, args, out: out)
    try:
        with pytest.raises(TypeError, match="global forward hooks"):
            interop.from_torch(nn.GRU(E, H))
    finally:
        handle.remove()
    # a subclass that does not change how the module computes is imported as its class
    torch.manual_seed(0)
    named = NamedLSTM(E, H)
    plain = nn.LSTM(E, H)
    plain.load_state_dict(named.state_dict())
    got, want = interop.from_torch(named).params, interop.from_torch(plain).params
    for key in want:
        for leaf in want[key]:
            np.testing.assert_array_equal(got[key][leaf], want[key][leaf])


def test_torch_import_unpacks_as_before_and_names_its_values():
    torch = pytest.importorskip("torch")
    rnn, head, embedding = torch.nn.GRU(E, H), torch.nn.Linear(H, C), torch.nn.Embedding(V, E)
    model, params = imported = interop.from_torch(rnn, head)
    assert imported.model is model and imported.params is params and imported.table is None
    assert imported.mask is None
    model, params = imported = interop.from_torch(rnn, head, embedding)
    np.testing.assert_array_equal(imported.table, embedding.weight.detach().numpy())
    assert params["embedding"]["table"] is imported.table and model.takes_ids


# --- Keras -------------------------------------------------------------------------------------------

def _keras():
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip("the Keras tests need KERAS_BACKEND=jax")
    return keras


def tanh(x):
    """Not keras.activations.tanh, though serialised under its name."""
    return 2.0 * x


def test_keras_layers_that_compute_otherwise_are_refused():
    keras = _keras()
    L = keras.layers

    class DoubledLSTM(L.LSTM):
        def call(self, sequences, initial_state=None, mask=None, training=False):
            return 2 * super().call(sequences, initial_state, mask, training)

    class Doubled(keras.Sequential):
        def call(self, inputs, training=None, mask=None):
            return 2 * super().call(inputs, training, mask)

    def sequential(*layers, cls=None, shape=(4, E)):
        with numpy_promotion():
            return (cls or keras.Sequential)([keras.Input(shape), *layers])

    cases = [
        (lambda: sequential(DoubledLSTM(H)), TypeError, r"layers\[0\] \(doubled_lstm\)` is a DoubledLSTM.*defines call"),
        (lambda: sequential(L.LSTM(H), cls=Doubled), TypeError, "`keras_model` is a Doubled.*defines call"),
        (lambda: sequential(L.LSTM(H), L.Dense(C, activation=tanh)), ValueError,
         "activation \"custom function 'tanh'"),
        (lambda: sequential(L.GRU(H, activation=tanh)), ValueError, "activation = \"custom function 'tanh'"),
        (lambda: sequential(L.LSTM(H), L.Dense(C, dtype="mixed_float16")), ValueError, "mixed precision"),
        (lambda: sequential(L.LSTM(H, return_sequences=True), L.Masking(), L.GRU(H)), ValueError,
         "Masking .*after its first layer"),
        (lambda: sequential(L.Embedding(V, E, mask_zero=True), L.Bidirectional(L.GRU(H, return_sequences=True)),
                            L.GlobalMaxPooling1D(), L.Dense(C), shape=(4,)), ValueError,
         r"GlobalMaxPooling1D.*ignores the model's mask.*Bidirectional layer, which writes zeros"),
        (lambda: sequential(L.Masking(), L.GlobalMaxPooling1D(), L.Dense(C)), ValueError,
         "GlobalMaxPooling1D.*the padded input itself"),
    ]
    for build, error, match in cases:
        keras_model = build()
        with pytest.raises(error, match=match):
            interop.from_keras(keras_model)
        keras.backend.clear_session()


def test_keras_masks_are_returned_and_reproduce_keras_on_padded_inputs():
    keras = _keras()
    L = keras.layers
    with numpy_promotion():
        keras.utils.set_random_seed(0)
        # a unidirectional layer carries its last valid output over the padding: Keras's max (which ignores
        # the mask) equals the masked max there
        by_ids = keras.Sequential([keras.Input((5,), dtype="int32"), L.Embedding(V, E, mask_zero=True, dtype="float64"),
                                   L.GRU(H, return_sequences=True, dtype="float64"), L.GlobalMaxPooling1D(dtype="float64"),
                                   L.Dense(C, dtype="float64")])
        by_value = keras.Sequential([keras.Input((5, E)), L.Masking(mask_value=0.0, dtype="float64"),
                                     L.Bidirectional(L.LSTM(H, return_sequences=True, dtype="float64"), dtype="float64"),
                                     L.GlobalAveragePooling1D(dtype="float64"), L.Dense(C, dtype="float64")])
        rng = np.random.default_rng(0)
        for keras_model in (by_ids, by_value):
            keras_model.set_weights([rng.normal(0, 0.7, w.shape) for w in keras_model.weights])
    ids = np.array([[3, 1, 6, 0, 0], [2, 5, 4, 1, 0]], np.int32)
    with pytest.warns(UserWarning, match=r"masks its input \(Embedding\(mask_zero=True\)\)"):
        imported = interop.from_keras(by_ids)
    model, params = imported
    table = imported.table
    np.testing.assert_array_equal(imported.mask(ids), ids != 0)
    with numpy_promotion():
        want = np.asarray(by_ids(ids))
    apply = jax.jit(jax.vmap(lambda ids, m: model.apply(params, ids, mask=m)))
    # Keras's float64 recurrent layers agree with lrpjax to ~1e-8 even unpadded (test_interop_keras: 1e-6);
    # without the mask the padded scores differ by far more (checked below)
    assert rel_err(apply(ids, imported.mask(ids)), want) <= 1e-6

    x = table[ids] * (ids != 0)[..., None]
    with pytest.warns(UserWarning, match=r"Masking\(mask_value=0\)"):
        imported = interop.from_keras(by_value)
    with numpy_promotion():
        want = np.asarray(by_value(x))
    apply = jax.jit(jax.vmap(lambda x, m: imported.model.apply(imported.params, x, mask=m)))
    assert rel_err(apply(x, imported.mask(x)), want) <= 1e-6
    assert rel_err(apply(x, np.ones(ids.shape, bool)), want) > 1e-3
    # Keras masks an id 0 anywhere; lrpjax's masks mark a valid prefix: such inputs are refused
    with pytest.raises(ValueError, match=r"row 1: Embedding\(mask_zero=True\) masks a step before a valid one"):
        interop.from_keras(by_ids).mask(np.array([[1, 2, 3, 0, 0], [3, 0, 2, 0, 0]]))


# --- Flax linen --------------------------------------------------------------------------------------

def test_flax_cells_that_compute_otherwise_are_refused():
    nn = pytest.importorskip("flax.linen")

    class Doubled(nn.GRUCell):
        def __call__(self, carry, inputs):
            return super().__call__(carry, 2 * inputs)

    params = {"params": {}}
    with pytest.raises(TypeError, match="`kind` is a Doubled.*defines __call__"):
        interop.from_flax_cell(params, Doubled(H))
    with pytest.raises(ValueError, match="carry_init that gives non-zero"):
        interop.from_flax_cell(params, nn.LSTMCell(H, carry_init=nn.initializers.ones))
    with pytest.raises(ValueError, match="dtype != param_dtype"):
        interop.from_flax_cell(params, nn.GRUCell(H, dtype=np.float16))

    class Doubling(nn.RNN):
        def __call__(self, inputs, **options):
            return 2 * super().__call__(inputs, **options)

    with pytest.raises(TypeError, match="`module` is a Doubling.*defines __call__"):
        interop.from_flax_rnn(Doubling(nn.GRUCell(H)), params)
