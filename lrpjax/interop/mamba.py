"""Mamba models of ``mambapy`` and of HuggingFace ``transformers`` as lrpjax models.

Both frameworks name a block's parameters alike (``norm``, ``mixer.in_proj``, ``mixer.conv1d``,
``mixer.x_proj``, ``mixer.dt_proj``, ``mixer.A_log``, ``mixer.D``, ``mixer.out_proj``), which are the
parameters of :class:`lrpjax.models.MambaBlock`. PyTorch (and the framework) are imported inside
:func:`from_mamba` only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lrpjax._types import Params
from lrpjax.interop._common import Imported, as_weight, check_dtypes, with_table
from lrpjax.models import Dense, MambaBlock, RMSNorm, Sequential
from lrpjax.models.mamba import SCANS

__all__ = ["from_mamba", "MAMBA_MODELS"]

MAMBA_MODELS = ("mambapy.mamba.Mamba", "transformers MambaModel", "transformers MambaForCausalLM")
"""The models :func:`from_mamba` imports."""


def from_mamba(module: Any, *, scan: str = "sequential") -> Imported:
    """Imports a Mamba model of ``mambapy`` (1.2) or HuggingFace ``transformers``: layers, weights, conventions.

    The model computes, for one embedded sequence ``x`` (T, D), what the framework computes for it:

    * ``mambapy.mamba.Mamba``: the blocks, ``Mamba(config)(x[None])[0]`` (T, D);
    * ``transformers.MambaModel``: blocks and final norm, ``last_hidden_state`` (T, D) for
      ``inputs_embeds=x[None]``;
    * ``transformers.MambaForCausalLM``: blocks, final norm and ``lm_head``, the logits (T, V).

    Layers: ``MambaBlock`` ``"mamba_<k>"`` per block, ``RMSNorm`` ``"norm_f"``, ``Dense(V, bias=False)``
    ``"lm_head"`` (logits at every step). Weights are transposed to lrpjax's ``x @ W``; the depthwise
    convolution's weight (I, 1, K) becomes ``conv_W`` (K, I), its padding of K - 1 steps truncated to the
    first T outputs being the causal convolution.

    Conventions: both frameworks compute ``A = -exp(A_log)`` and read ``D`` in float32, also in a float64
    model; the import takes ``A`` and ``D`` as the framework computes them (``A_log`` becomes
    ``log(exp_float32(A_log))``), so a float64 import equals ``mambapy`` to rounding. HuggingFace's RMSNorm
    normalises in float32 whatever the model's dtype, which lrpjax does not copy: a float64 HuggingFace model
    agrees to about 1e-7 (float32 rounding inside each norm), a float32 one to float32 rounding; with
    ``residual_in_fp32=True`` (HuggingFace's default) the residual is rounded to float32 too (set it False
    for a float64 model).

    Args:
        module: one of :data:`MAMBA_MODELS`, in eval mode or not (nothing of Mamba depends on it).
        scan: the blocks' scan, ``"sequential"`` or ``"parallel"`` (same results to rounding).

    ``mambapy.lm.LM`` is not imported: mambapy imports it only beside the CUDA package ``mamba_ssm``; import its
    ``lm.mamba`` (the blocks) and add its ``norm_f`` and ``lm_head`` as ``RMSNorm`` and ``Dense(bias=False)``.

    Returns:
        An :class:`~lrpjax.interop.Imported`, unpacked as ``(model, params)`` like every importer's result:
        for a ``mambapy.mamba.Mamba`` a model over embedded sequences (T, D); for the HuggingFace models a
        model over token ids, the framework's embedding first (``.table`` holds it, (V, D);
        ``model.vector_model(params)`` gives the model over embedded vectors, to explain those directly).

    Raises:
        TypeError: another module (the message lists the supported ones), mixed dtypes, float64 weights
            while JAX runs in 32 bits.
        ValueError: a configuration the import does not reproduce (mambapy's ``inner_layernorms``, ``mup``,
            ``use_cuda``; an activation other than SiLU; a convolution other than the causal depthwise
            one), or an unknown ``scan``.
    """
    import torch

    if scan not in SCANS:
        raise ValueError(f"`scan` must be one of {SCANS}; got {scan!r}.")
    kind = _kind(module)
    if kind == "mambapy":
        blocks, eps, embedding, norm_f, head = module.layers, None, None, None, None
        _check_mambapy(module.config)
    else:
        backbone = module.backbone if kind == "hf-lm" else module
        blocks, embedding, norm_f = backbone.layers, backbone.embeddings, backbone.norm_f
        head = module.lm_head if kind == "hf-lm" else None
        if getattr(module.config, "hidden_act", "silu") != "silu":
            raise ValueError(f"`module.config.hidden_act` is {module.config.hidden_act!r}; the import reproduces "
                             "Mamba's SiLU.")
    layers: list = []
    params: Params = {}
    with torch.no_grad():
        for k, block in enumerate(blocks):
            name = f"mamba_{k}"
            layer, params[name] = _block(block, scan, name, f"layers[{k}]")
            layers.append(layer)
        if norm_f is not None:
            layers.append(RMSNorm(_norm_eps(norm_f), name="norm_f"))
            params["norm_f"] = {"weight": as_weight(_numpy(norm_f.weight), "norm_f.weight")}
        if head is not None:
            if getattr(head, "bias", None) is not None:
                raise ValueError("`lm_head` has a bias; Mamba's head has none.")
            layers.append(Dense(int(head.weight.shape[0]), bias=False, name="lm_head"))
            params["lm_head"] = {"W": np.ascontiguousarray(as_weight(_numpy(head.weight), "lm_head.weight").T)}
        table = None if embedding is None else as_weight(_numpy(embedding.weight), "embedding.weight")
    check_dtypes({**params, **({} if table is None else {"embedding": table})}, "the Mamba model")
    model = Sequential(tuple(layers))
    model.specs(params)   # the assembled model checks its own shapes
    return with_table(model, params, table)


def _kind(module: Any) -> str:
    """Which supported model ``module`` is (by its class's exact module and name)."""
    cls = type(module)
    where = f"{cls.__module__}.{cls.__name__}"
    kinds = {"mambapy.mamba.Mamba": "mambapy",
             "transformers.models.mamba.modeling_mamba.MambaModel": "hf",
             "transformers.models.mamba.modeling_mamba.MambaForCausalLM": "hf-lm"}
    if where not in kinds:
        raise TypeError(f"`module` must be one of {', '.join(MAMBA_MODELS)}; got {where}.")
    return kinds[where]


def _check_mambapy(config: Any) -> None:
    for field in ("inner_layernorms", "mup", "use_cuda"):
        if getattr(config, field, False):
            raise ValueError(f"`module.config.{field}` is True; the import reproduces mambapy's Mamba without it.")


def _norm_eps(norm: Any) -> float:
    eps = getattr(norm, "eps", getattr(norm, "variance_epsilon", None))
    if eps is None:
        raise ValueError(f"the norm {type(norm).__name__} has no eps.")
    return float(eps)


def _block(block: Any, scan: str, name: str, where: str) -> tuple[MambaBlock, Params]:
    """One residual block's layer and parameters (module docstring: conventions)."""
    import torch

    mixer = block.mixer
    conv = mixer.conv1d
    I, N = mixer.A_log.shape
    K = conv.kernel_size[0]
    if conv.groups != I or tuple(conv.padding) != (K - 1,) or conv.stride != (1,) or conv.dilation != (1,):
        raise ValueError(f"`{where}.mixer.conv1d` must be Mamba's causal depthwise convolution (groups = {I}, "
                         f"padding = {K - 1}, stride 1, dilation 1); got groups = {conv.groups}, padding = "
                         f"{conv.padding}, stride = {conv.stride}, dilation = {conv.dilation}.")
    dtype = mixer.A_log.dtype
    W = lambda t, label: as_weight(_numpy(t), f"{where}.{label}")   # noqa: E731
    # A = -exp(A_log) and D as the framework computes them: in float32.
    A = torch.exp(mixer.A_log.float()).to(dtype)
    p = {"norm": W(block.norm.weight, "norm.weight"),
         "in_proj": np.ascontiguousarray(W(mixer.in_proj.weight, "mixer.in_proj.weight").T),
         "conv_W": np.ascontiguousarray(W(conv.weight, "mixer.conv1d.weight")[:, 0, :].T),
         "x_proj": np.ascontiguousarray(W(mixer.x_proj.weight, "mixer.x_proj.weight").T),
         "dt_proj": np.ascontiguousarray(W(mixer.dt_proj.weight, "mixer.dt_proj.weight").T),
         "dt_bias": W(mixer.dt_proj.bias, "mixer.dt_proj.bias"),
         "A_log": np.log(W(A, "mixer.A_log")),
         "D": W(mixer.D.float().to(dtype), "mixer.D"),
         "out_proj": np.ascontiguousarray(W(mixer.out_proj.weight, "mixer.out_proj.weight").T)}
    bias = mixer.in_proj.bias is not None
    if bias != (mixer.out_proj.bias is not None):
        raise ValueError(f"`{where}.mixer`: in_proj and out_proj must both have a bias or neither.")
    if bias:
        p["in_proj_b"] = W(mixer.in_proj.bias, "mixer.in_proj.bias")
        p["out_proj_b"] = W(mixer.out_proj.bias, "mixer.out_proj.bias")
    if conv.bias is not None:
        p["conv_b"] = W(conv.bias, "mixer.conv1d.bias")
    D = p["norm"].shape[0]
    layer = MambaBlock(d_state=N, expand=max(1, I // D), d_conv=K, dt_rank=int(p["dt_proj"].shape[0]),
                       norm_eps=_norm_eps(block.norm), scan=scan, bias=bias, conv_bias=conv.bias is not None,
                       name=name)
    return layer, p


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()
