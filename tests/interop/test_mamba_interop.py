"""Mamba importers against the frameworks themselves: forward and input gradient, float64 (and float32)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch", reason="the Mamba importers' parity tests need torch (pip install -e '.[interop]')")
mambapy = pytest.importorskip("mambapy.mamba", reason="needs mambapy (pip install -e '.[interop]')")
transformers = pytest.importorskip("transformers", reason="needs transformers (pip install -e '.[interop]')")

import lrpjax  # noqa: E402
from lrpjax.interop.mamba import from_mamba  # noqa: E402


def _perturb(module, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return module


def _torch_output_and_gradient(fn, x, w):
    xt = torch.tensor(x, requires_grad=True)
    out = fn(xt[None])[0]
    (out * torch.from_numpy(w)).sum().backward()
    return out.detach().numpy(), xt.grad.numpy()


def _check(model, params, x, w, out_ref, grad_ref, tol):
    out, grad = jax.jit(lambda x_: (model.apply(params, x_),
                                    jax.grad(lambda v: jnp.sum(w * model.apply(params, v)))(x_)))(x)
    np.testing.assert_allclose(out, out_ref, atol=tol, rtol=tol)
    np.testing.assert_allclose(grad, grad_ref, atol=tol, rtol=tol)


def test_mambapy_float64_forward_and_input_gradient_and_both_scans():
    cfg = mambapy.MambaConfig(d_model=4, n_layers=2, d_state=3, d_conv=3, expand_factor=2)
    torch.manual_seed(0)
    m = _perturb(mambapy.Mamba(cfg).double(), 1)
    x = np.random.default_rng(0).normal(size=(5, 4))
    w = np.random.default_rng(1).normal(size=(5, 4))
    out_ref, grad_ref = _torch_output_and_gradient(m, x, w)
    model, params = from_mamba(m)
    _check(model, params, x, w, out_ref, grad_ref, 1e-10)
    parallel, _ = from_mamba(m, scan="parallel")
    np.testing.assert_allclose(parallel.apply(params, x), out_ref, atol=1e-10)
    # An explanation of the imported model: LRP-all with sharing conserves the explained step's score.
    R = lrpjax.lrp(model.apply, lrpjax.rules.preset("lrp-all", eps=1e-3, share=True))(params, x, (4, 2))
    np.testing.assert_allclose(R.sum(), out_ref[4, 2], rtol=1e-10)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-6), (torch.float32, 2e-5)], ids=["float64", "float32"])
def test_huggingface_causal_lm_forward_and_input_gradient(dtype, tol):
    config = transformers.MambaConfig(vocab_size=7, hidden_size=4, state_size=3, num_hidden_layers=2, conv_kernel=3,
                                      expand=2, residual_in_fp32=False)
    torch.manual_seed(0)
    hf = _perturb(transformers.MambaForCausalLM(config).to(dtype).eval(), 2)
    imported = from_mamba(hf)
    ids_model, ids_params = imported
    model, params = ids_model.vector_model(ids_params)
    assert [layer.name for layer in ids_model.layers] == ["embedding", "mamba_0", "mamba_1", "norm_f", "lm_head"]
    ids = np.array([1, 2, 3, 4, 5, 6])
    x = imported.table[ids]
    np.testing.assert_array_equal(ids_model.apply(ids_params, ids), model.apply(params, x))
    w = np.random.default_rng(2).normal(size=(6, 7)).astype(x.dtype)
    out_ref, grad_ref = _torch_output_and_gradient(lambda e: hf(inputs_embeds=e).logits, x, w)
    # HuggingFace's RMSNorm computes in float32 whatever the dtype: float64 agrees to float32 rounding.
    _check(model, params, x, w, out_ref, grad_ref, tol)


def test_huggingface_backbone_is_the_hidden_states_after_the_final_norm():
    config = transformers.MambaConfig(vocab_size=5, hidden_size=3, state_size=2, num_hidden_layers=1, conv_kernel=2,
                                      expand=2, residual_in_fp32=False, use_bias=True)
    torch.manual_seed(0)
    hf = _perturb(transformers.MambaModel(config).double(), 3)
    imported = from_mamba(hf)
    model, params = imported.model.vector_model(imported.params)
    x = imported.table[np.array([0, 4, 2])]
    with torch.no_grad():
        expected = hf(inputs_embeds=torch.from_numpy(x)[None]).last_hidden_state[0].numpy()
    np.testing.assert_allclose(model.apply(params, x), expected, atol=1e-6)


def test_other_modules_and_configurations_are_refused():
    with pytest.raises(TypeError, match="`module` must be one of"):
        from_mamba(torch.nn.Linear(2, 2))
    cfg = mambapy.MambaConfig(d_model=4, n_layers=1, d_state=2, d_conv=2, inner_layernorms=True)
    with pytest.raises(ValueError, match="inner_layernorms"):
        from_mamba(mambapy.Mamba(cfg))
    with pytest.raises(ValueError, match="scan"):
        from_mamba(mambapy.Mamba(mambapy.MambaConfig(d_model=4, n_layers=1)), scan="fast")
