"""Keras functional models with self-attention over LSTM states (interop.from_keras_functional): the
forward pass and the input gradient equal Keras's for every attention form; graphs that are not a chain
are refused."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")

import lrpjax  # noqa: E402
from lrpjax.interop import from_keras_functional  # noqa: E402

from framework_parity import numpy_promotion  # noqa: E402

CASES = {   # two attention layers in a row per model: every mapping of the importer in two models
    "dot, then concat": (
        lambda h: keras.layers.Attention(use_scale=True, score_mode="concat")([a := keras.layers.Attention()([h, h]), a]),
        ("SelfAttention(dot)", "SelfAttention(additive)")),
    "scaled causal dot, then additive": (
        lambda h: keras.layers.AdditiveAttention()(
            [a := keras.layers.Attention(use_scale=True)([h, h], use_causal_mask=True), a]),
        ("SelfAttention(general, causal)", "SelfAttention(additive)")),
}


def _model(attention):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, 4))
    h = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True))(inputs)
    z = keras.layers.GlobalAveragePooling1D()(attention(h))
    z = keras.layers.Dense(5, activation="tanh")(z)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(z))
    for w in model.weights:   # scales away from their initial 1 and 0
        if "scale" in w.path or "concat_score_weight" in w.path:
            w.assign((0.7 + 0.1 * np.arange(int(np.prod(w.shape))).reshape(w.shape)).astype(np.float32))
    return model


@pytest.mark.parametrize("case", list(CASES))
def test_forward_and_input_gradient_equal_keras(case):
    attention, described = CASES[case]
    x = jnp.asarray(np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32))
    with numpy_promotion():
        keras_model = _model(attention)
        with pytest.warns(UserWarning, match="final softmax"):
            model, params = from_keras_functional(keras_model)
        before_softmax = keras.Model(keras_model.inputs, keras_model.layers[-2].output)
        last = keras_model.layers[-1]

        def logits(x_):
            return before_softmax(x_[None])[0] @ last.kernel.value + last.bias.value

        expected, expected_gradient = jax.jit(lambda x_: (logits(x_), jax.grad(lambda y: logits(y)[1])(x_)))(x)
    assert tuple(layer.describe() for layer in model.layers[1:3]) == described
    np.testing.assert_allclose(jax.jit(model.apply)(params, x), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(lrpjax.gradient(model.apply)(params, x, 1), expected_gradient, rtol=0, atol=1e-6)


@numpy_promotion()
def test_graphs_that_are_not_one_chain_or_have_no_attention_are_refused():
    inputs = keras.Input((None, 4))
    h = keras.layers.LSTM(3, return_sequences=True)(inputs)
    branched = keras.Model(inputs, keras.layers.Add()([keras.layers.Attention()([h, h]), h]))
    with pytest.raises(ValueError, match="only chains are supported"):
        from_keras_functional(branched)
    plain = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(h)))
    with pytest.raises(ValueError, match="no Attention or AdditiveAttention"):
        from_keras_functional(plain)
    cross = keras.Model(inputs, keras.layers.Attention()([h, inputs[:, :, :3]]))
    with pytest.raises(ValueError, match="only chains are supported"):
        from_keras_functional(cross)
    with pytest.raises(TypeError, match="functional keras.Model"):
        from_keras_functional(keras.Sequential([keras.Input((None, 4)), keras.layers.LSTM(3)]))
