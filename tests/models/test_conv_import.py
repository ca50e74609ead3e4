"""Conv1D imported from PyTorch ``nn.Conv1d`` and Keras ``Conv1D`` / ``DepthwiseConv1D`` (a CNN-LSTM):
forward and input gradient equal to the framework's, float64."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from lrpjax.models import Sequential  # noqa: E402
from framework_parity import numpy_promotion  # noqa: E402

T, D = 6, 3


def _check(model, params, x, w, out_ref, grad_ref, tol=1e-10):
    f = jax.jit(lambda x_: (model.apply(params, x_), jax.grad(lambda v: jnp.sum(w * model.apply(params, v)))(x_)))
    out, grad = f(x)
    np.testing.assert_allclose(out, out_ref, atol=tol)
    np.testing.assert_allclose(grad, grad_ref, atol=tol)


TORCH_CASES = [  # (out channels, K, padding, dilation, groups, causal)
    (4, 3, "same", 1, 1, False), (4, 4, "same", 1, 1, False), (3, 3, 4, 2, 3, True), (2, 2, 1, 1, 1, True)]


@pytest.mark.parametrize("case", TORCH_CASES, ids=["same-odd", "same-even", "causal-depthwise-d2", "causal-full"])
def test_torch_conv1d_forward_and_input_gradient(case):
    torch = pytest.importorskip("torch", reason="needs torch (pip install -e '.[interop]')")
    from lrpjax.interop.torch import conv1d_from_torch

    F, K, padding, dilation, groups, causal = case
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(D, F, K, padding=padding, dilation=dilation, groups=groups).double()
    layer, params = conv1d_from_torch(conv, causal=causal)
    model = Sequential((layer,))
    x = np.random.default_rng(0).normal(size=(T, D))
    w = np.random.default_rng(1).normal(size=(T, F))
    xt = torch.tensor(x.T[None], requires_grad=True)
    out = conv(xt)[0, :, :T].T
    (out * torch.from_numpy(w)).sum().backward()
    _check(model, params, x, w, out.detach().numpy(), xt.grad[0].T.numpy())


def test_torch_refuses_what_it_cannot_reproduce():
    torch = pytest.importorskip("torch", reason="needs torch (pip install -e '.[interop]')")
    from lrpjax.interop.torch import conv1d_from_torch

    with pytest.raises(ValueError, match="stride"):
        conv1d_from_torch(torch.nn.Conv1d(2, 2, 3, stride=2, padding=1))
    with pytest.raises(ValueError, match="padding"):
        conv1d_from_torch(torch.nn.Conv1d(2, 2, 3))
    with pytest.raises(ValueError, match="causal=True"):
        conv1d_from_torch(torch.nn.Conv1d(2, 2, 3, padding=1), causal=True)
    with pytest.raises(ValueError, match="groups"):
        conv1d_from_torch(torch.nn.Conv1d(4, 2, 3, padding=1, groups=2))
    with pytest.raises(TypeError, match="nn.Conv1d"):
        conv1d_from_torch(torch.nn.Linear(2, 2))


def test_keras_cnn_lstm_forward_and_input_gradient():
    keras = pytest.importorskip("keras", reason="needs keras (pip install -e '.[interop]')")
    if keras.backend.backend() != "jax":
        pytest.skip("the Keras parity test needs KERAS_BACKEND=jax")
    from lrpjax import interop

    L = keras.layers
    with numpy_promotion():
        keras.utils.set_random_seed(0)
        net = keras.Sequential([keras.Input((T, D), dtype="float64"),
                                L.Conv1D(4, 3, padding="causal", activation="relu", dtype="float64"),
                                L.DepthwiseConv1D(2, padding="same", dilation_rate=2, dtype="float64"),
                                L.LSTM(3, dtype="float64"), L.Dense(2, dtype="float64")])
        rng = np.random.default_rng(0)
        net.set_weights([rng.normal(0, 0.5, v.shape) for v in net.weights])
    model, params = interop.from_keras(net)
    assert [type(layer).__name__ for layer in model.layers] == ["Conv1D", "Conv1D", "Recurrent", "Dense"]
    x = np.random.default_rng(1).normal(size=(T, D))
    w = np.array([0.3, -1.2])
    trainable = [v.value for v in net.trainable_variables]
    other = [v.value for v in net.non_trainable_variables]

    def output(x_):
        return net.stateless_call(trainable, other, x_[None])[0][0]

    with numpy_promotion():
        out_ref, grad_ref = jax.jit(lambda x_: (output(x_), jax.grad(lambda v: jnp.sum(w * output(v)))(x_)))(x)
    # Keras 3's tanh returns float32 even for float64 tensors: its LSTM is float32-accurate (the convolutions
    # alone agree to 1e-15), so the CNN-LSTM agrees to float32 rounding.
    _check(model, params, x, w, np.asarray(out_ref), np.asarray(grad_ref), tol=1e-6)


def test_keras_refuses_valid_padding_and_strides():
    keras = pytest.importorskip("keras", reason="needs keras (pip install -e '.[interop]')")
    from lrpjax.interop.keras import conv1d_from_keras

    layer = keras.layers.Conv1D(2, 3)
    layer.build((None, T, D))
    with pytest.raises(ValueError, match="valid"):
        conv1d_from_keras(layer)
    layer = keras.layers.Conv1D(2, 3, strides=2, padding="same")
    layer.build((None, T, D))
    with pytest.raises(ValueError, match="strides"):
        conv1d_from_keras(layer)
