"""xLSTM importer against the xlstm package (2.0.6) itself: an xLSTMBlockStack of mLSTM and sLSTM blocks
(vanilla sLSTM backend) and its language model, forward and input gradient (float64 to 1e-10, float32 to
its rounding); a state dict saved in the CUDA backend's layout; every refused configuration. The
package's recurrent kernels and mLSTM gate weights start at zero: every parameter is perturbed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
xlstm = pytest.importorskip("xlstm", reason="the xlstm package (pip install 'lrpjax[interop]') is not installed")

from lrpjax.interop.xlstm import from_xlstm  # noqa: E402

D, T = 4, 5


def _config(act_fn="gelu", function="slstm", slstm_at=(1,)):
    return dict(
        mlstm_block=xlstm.mLSTMBlockConfig(mlstm=xlstm.mLSTMLayerConfig(
            conv1d_kernel_size=2, qkv_proj_blocksize=2, num_heads=2, proj_factor=2.0, round_proj_up_to_multiple_of=4)),
        slstm_block=xlstm.sLSTMBlockConfig(
            slstm=xlstm.sLSTMLayerConfig(backend="vanilla", num_heads=2, conv1d_kernel_size=2, function=function),
            feedforward=xlstm.FeedForwardConfig(proj_factor=1.5, act_fn=act_fn, round_proj_up_to_multiple_of=2)),
        context_length=T, num_blocks=2, embedding_dim=D, slstm_at=list(slstm_at))


def _perturb(module, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return module.eval()


@pytest.fixture(scope="module")
def stack64():
    torch.manual_seed(0)
    return _perturb(xlstm.xLSTMBlockStack(xlstm.xLSTMBlockStackConfig(**_config())).double())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_block_stack_computes_what_the_package_computes(stack64, dtype):
    stack = stack64 if dtype == "float64" else _perturb(
        xlstm.xLSTMBlockStack(xlstm.xLSTMBlockStackConfig(**_config())), 1)
    tdtype = torch.float64 if dtype == "float64" else torch.float32
    model, params = from_xlstm(stack)
    assert [layer.kind for layer in model.layers] == ["mlstm_block", "slstm_block", "layer_norm"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(T, D)).astype(dtype)
    w = rng.normal(size=(T, D)).astype(dtype)
    x_t = torch.tensor(x[None], dtype=tdtype, requires_grad=True)
    out = stack(x_t)
    (out[0] * torch.tensor(w, dtype=tdtype)).sum().backward()
    y, pull = jax.jit(lambda p, x_: jax.vjp(lambda v: model.apply(p, v), x_))(params, jnp.asarray(x))
    (grad,) = pull(jnp.asarray(w))
    tol = 1e-10 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(y, out[0].detach().numpy(), atol=tol, rtol=0)
    np.testing.assert_allclose(grad, x_t.grad[0].numpy(), atol=tol, rtol=0)


def test_a_language_model_computes_what_the_package_computes():
    torch.manual_seed(2)
    config = xlstm.xLSTMLMModelConfig(**_config(slstm_at=(0,)), vocab_size=7)
    lm = _perturb(xlstm.xLSTMLMModel(config).double(), 2)
    model, params = from_xlstm(lm)
    assert model.layers[0].kind == "embedding" and model.layers[-1].name == "lm_head"
    ids = np.array([3, 0, 6, 2, 2])
    expected = lm(torch.tensor(ids[None])).detach().numpy()[0]
    inner, inner_params = model.vector_model(params)
    vectors = lm.token_embedding(torch.tensor(ids[None])).detach().requires_grad_(True)
    logits = lm.lm_head(lm.xlstm_block_stack(vectors))
    logits[0, -1, 4].backward()
    embedded = model.embed(params, jnp.asarray(ids))
    # the logits of the ids, and the input gradient with respect to the embedded tokens, in one program
    seed = jnp.zeros(expected.shape).at[-1, 4].set(1.0)

    @jax.jit
    def logits_and_gradient(v):
        out, pull = jax.vjp(lambda v_: inner.apply(inner_params, v_), v)
        return out, pull(seed)[0]

    y, grad = logits_and_gradient(embedded)
    np.testing.assert_allclose(embedded, vectors.detach().numpy()[0], atol=0, rtol=0)
    np.testing.assert_allclose(y, expected, atol=1e-10, rtol=0)
    np.testing.assert_allclose(grad, vectors.grad[0].numpy(), atol=1e-10, rtol=0)


def test_a_state_dict_in_the_cuda_layout_is_read_by_its_layout(stack64):
    state = {k: v.clone() for k, v in stack64.state_dict().items()}
    cell = stack64.blocks[1].xlstm.slstm_cell
    NH, DH = cell.config.num_heads, cell.config.head_dim
    # The CUDA backend keeps the external layouts flattened: R (NH, DH, 4 DH), b [head][gate][unit].
    state["blocks.1.xlstm.slstm_cell._recurrent_kernel_"] = cell.recurrent_kernel[:].reshape(NH, DH, 4 * DH)
    state["blocks.1.xlstm.slstm_cell._bias_"] = cell.bias[:].reshape(-1)
    _, ours = from_xlstm(stack64)
    _, cuda = from_xlstm(stack64, state_dict=state, layout="cuda")
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(cuda)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="'vanilla' layout"):
        from_xlstm(stack64, state_dict=state, layout="vanilla")
    with pytest.raises(ValueError, match="layout"):
        from_xlstm(stack64, layout="tpu")


def test_what_cannot_be_reproduced_is_refused():
    with pytest.raises(ValueError, match="activation 'relu\\^2'"):
        from_xlstm(xlstm.xLSTMBlockStack(xlstm.xLSTMBlockStackConfig(**_config(act_fn="relu^2"))))
    with pytest.raises(ValueError, match="function is 'lstm'"):
        from_xlstm(xlstm.xLSTMBlockStack(xlstm.xLSTMBlockStackConfig(**_config(function="lstm"))))
    with pytest.raises(TypeError, match="xLSTMBlockStack"):
        from_xlstm(torch.nn.Linear(2, 2))
