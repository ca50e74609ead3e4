"""Import xLSTM models of the ``xlstm`` package (PyTorch; Beck et al. 2024) as lrpjax models.

``from_xlstm(model)`` takes an ``xLSTMBlockStack`` (embedded inputs (T, D) -> (T, D)) or an
``xLSTMLMModel`` (token ids (T,) -> logits (T, V)) and returns ``(Sequential, params)``: one
:class:`~lrpjax.models.xlstm.MLSTMBlock` or :class:`~lrpjax.models.xlstm.SLSTMBlock` per block, the
post-blocks :class:`~lrpjax.models.xlstm.LayerNorm`, and for the language model an
:class:`~lrpjax.models.embedding.Embedding` first and the head (a per-step ``Dense`` without bias) last.
``model.apply`` computes what the package's ``forward`` computes (checked in the tests, float32 and
float64, forward and input gradient).

Conventions the importer takes care of:

* the sLSTM layer's ``fgate`` module computes the input gate's pre-activation and its ``igate`` module the
  forget gate's (``i, f, z, o = fgate(x), igate(x), zgate(x), ogate(x)`` in ``sLSTMLayer.forward``);
* the sLSTM cell's recurrent kernel and bias are stored in a backend's internal layout: the module's own
  backend when reading a module, ``layout`` (``"vanilla"`` or ``"cuda"``) for a ``state_dict`` saved by a
  model of that backend (the layouts differ: a CUDA-trained checkpoint loaded into a vanilla model is
  scrambled, so pass it here instead);
* the norms' weights are stored as offsets (``1 + weight`` is applied); head-wise projections are
  (heads, out, in) blocks.

Refused, with an error naming the setting: an sLSTM cell whose function is not ``"slstm"``, a
feed-forward that is not the gated one or whose activation is not one of
:data:`~lrpjax.models.xlstm.FFN_ACTIVATIONS`, norms with a bias, an mLSTM with a kernel size 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lrpjax.models.layers import Dense
from lrpjax.models.sequential import Sequential
from lrpjax.models.xlstm import FFN_ACTIVATIONS, LayerNorm, MLSTMBlock, SLSTMBlock

__all__ = ["from_xlstm", "LAYOUTS"]

LAYOUTS = ("vanilla", "cuda")
"""The sLSTM backends whose internal parameter layouts :func:`from_xlstm` reads."""


def _array(tensors: dict[str, Any], key: str, dtype) -> np.ndarray:
    if key not in tensors:
        raise ValueError(f"`state_dict` is missing {key!r}.")
    return np.asarray(tensors[key].detach().cpu().numpy(), dtype=dtype)


def _norm_scale(tensors, key, dtype) -> np.ndarray:
    if key.removesuffix(".weight") + ".bias" in tensors:
        raise ValueError(f"the norm {key.removesuffix('.weight')!r} has a bias, which lrpjax's xLSTM norms do not.")
    return 1.0 + _array(tensors, key, dtype)


def _optional_bias(tensors, key, dtype, node: dict) -> None:
    if key in tensors:
        node["b"] = _array(tensors, key, dtype)


def _headwise(tensors, key, dtype) -> dict[str, np.ndarray]:
    node = {"W": _array(tensors, key + ".weight", dtype).transpose(0, 2, 1)}
    _optional_bias(tensors, key + ".bias", dtype, node)
    return node


def _conv(tensors, key, dtype) -> dict[str, np.ndarray]:
    return {"W": _array(tensors, key + ".weight", dtype)[:, 0, :].T.copy(),
            "b": _array(tensors, key + ".bias", dtype)}


def _mlstm(block, tensors, p: str, name: str, dtype) -> tuple[MLSTMBlock, dict]:
    config = block.xlstm.config
    if config.conv1d_kernel_size < 1:
        raise ValueError(f"block {name!r}: an mLSTM layer without a convolution (conv1d_kernel_size = 0) is not "
                         "supported.")
    bias = f"{p}xlstm.proj_up.bias" in tensors
    layer: dict[str, Any] = {"norm": {"scale": _norm_scale(tensors, f"{p}xlstm_norm.weight", dtype)},
                             "proj_up": {"W": _array(tensors, f"{p}xlstm.proj_up.weight", dtype).T.copy()},
                             "conv": _conv(tensors, f"{p}xlstm.conv1d.conv", dtype),
                             "outnorm": {"scale": _norm_scale(tensors, f"{p}xlstm.mlstm_cell.outnorm.weight", dtype)},
                             "skip": _array(tensors, f"{p}xlstm.learnable_skip", dtype),
                             "proj_down": {"W": _array(tensors, f"{p}xlstm.proj_down.weight", dtype).T.copy()}}
    _optional_bias(tensors, f"{p}xlstm.proj_up.bias", dtype, layer["proj_up"])
    _optional_bias(tensors, f"{p}xlstm.proj_down.bias", dtype, layer["proj_down"])
    for part in ("q", "k", "v"):
        layer[part] = _headwise(tensors, f"{p}xlstm.{part}_proj", dtype)
    for gate in ("igate", "fgate"):
        layer[gate] = {"W": _array(tensors, f"{p}xlstm.mlstm_cell.{gate}.weight", dtype).T.copy(),
                       "b": _array(tensors, f"{p}xlstm.mlstm_cell.{gate}.bias", dtype)}
    return MLSTMBlock(config.num_heads, None, config.conv1d_kernel_size, config.qkv_proj_blocksize, bias,
                      name=name), layer


def _slstm_cell(tensors, p: str, NH: int, DH: int, layout: str, dtype) -> tuple[np.ndarray, np.ndarray]:
    """The recurrent kernel (NH, DH, 4 DH) and bias (4 H,) gate-major, from a backend's internal layout."""
    R = _array(tensors, f"{p}xlstm.slstm_cell._recurrent_kernel_", dtype)
    b = _array(tensors, f"{p}xlstm.slstm_cell._bias_", dtype)
    if layout == "vanilla":   # R[h, g DH + j, d], b [g][h][j]
        expected = (NH, 4 * DH, DH)
        R_ours = R.reshape(NH, 4, DH, DH).transpose(0, 3, 1, 2) if R.shape == expected else None
        b_ours = b
    else:                     # R[h, d, g DH + j], b [h][g][j]
        expected = (NH, DH, 4 * DH)
        R_ours = R if R.shape == expected else None
        b_ours = b.reshape(NH, 4, DH).transpose(1, 0, 2)
    if R_ours is None:
        raise ValueError(f"the sLSTM recurrent kernel {p}xlstm.slstm_cell._recurrent_kernel_ has shape {R.shape}; the "
                         f"{layout!r} layout has {expected} (is `layout` the backend that saved it?).")
    return R_ours.reshape(NH, DH, 4 * DH).copy(), b_ours.reshape(-1).copy()


def _slstm(block, tensors, p: str, name: str, layout: str, dtype) -> tuple[SLSTMBlock, dict]:
    config = block.xlstm.config
    if config.function != "slstm":
        raise ValueError(f"block {name!r}: the sLSTM cell's function is {config.function!r}; only 'slstm' is supported.")
    D, NH = config.embedding_dim, config.num_heads
    layer: dict[str, Any] = {"norm": {"scale": _norm_scale(tensors, f"{p}xlstm_norm.weight", dtype)},
                             "group_norm": {"scale": _norm_scale(tensors, f"{p}xlstm.group_norm.weight", dtype)}}
    K = config.conv1d_kernel_size
    if K > 0:
        layer["conv"] = _conv(tensors, f"{p}xlstm.conv1d.conv", dtype)
    # sLSTMLayer.forward: i, f, z, o = fgate(x_conv), igate(x_conv), zgate(x), ogate(x).
    for ours, theirs in (("W_i", "fgate"), ("W_f", "igate"), ("W_z", "zgate"), ("W_o", "ogate")):
        layer[ours] = _headwise(tensors, f"{p}xlstm.{theirs}", dtype)["W"]
    layer["R"], layer["b"] = _slstm_cell(tensors, p, NH, D // NH, layout, dtype)
    ffn = block.ffn is not None
    activation, bias = "gelu", False
    if ffn:
        ff = block.config.feedforward
        if ff.ff_type != "ffn_gated":
            raise ValueError(f"block {name!r}: feed-forward type {ff.ff_type!r}; only 'ffn_gated' is supported.")
        if ff.act_fn not in FFN_ACTIVATIONS:
            raise ValueError(f"block {name!r}: feed-forward activation {ff.act_fn!r}; supported: "
                             f"{tuple(FFN_ACTIVATIONS)}.")
        activation, bias = ff.act_fn, f"{p}ffn.proj_up.bias" in tensors
        layer["ffn_norm"] = {"scale": _norm_scale(tensors, f"{p}ffn_norm.weight", dtype)}
        layer["ffn_up"] = {"W": _array(tensors, f"{p}ffn.proj_up.weight", dtype).T.copy()}
        layer["ffn_down"] = {"W": _array(tensors, f"{p}ffn.proj_down.weight", dtype).T.copy()}
        _optional_bias(tensors, f"{p}ffn.proj_up.bias", dtype, layer["ffn_up"])
        _optional_bias(tensors, f"{p}ffn.proj_down.bias", dtype, layer["ffn_down"])
    return SLSTMBlock(NH, K, "sigmoid", ffn, None, activation, bias, name=name), layer


def from_xlstm(model, *, state_dict: dict | None = None, layout: str | None = None,
               dtype: Any = None) -> tuple[Sequential, dict]:
    """An xLSTM of the ``xlstm`` package (2.x) as a :class:`~lrpjax.models.Sequential` and its parameters.

    Args:
        model: an ``xlstm.xLSTMBlockStack`` or ``xlstm.xLSTMLMModel`` (its configuration; its parameters
            unless ``state_dict`` is given). Call ``model.eval()`` first if it has dropout.
        state_dict: parameters to read instead of the module's own (a checkpoint of the same configuration),
            with the module's keys.
        layout: the sLSTM cells' internal layout of ``state_dict``: ``"vanilla"`` or ``"cuda"``, the backend
            that saved it (default: the module's own backend).
        dtype: numpy dtype of the parameters (default: the module's, float32 or float64).

    Returns:
        ``(model, params)``: blocks named ``block_0``, ``block_1``, ..., ``post_norm``; the language model
        adds ``embedding`` first and ``lm_head`` last (per step, no bias). ``model.apply(params, x)``:
        x (T, D) embedded -> (T, D) for a stack, token ids (T,) -> logits (T, V) for the language model.

    Raises:
        TypeError: ``model`` not one of the two classes.
        ValueError: a setting lrpjax cannot reproduce (module docstring), an unknown ``layout``, or a
            ``state_dict`` that does not fit.
    """
    import torch
    from xlstm import xLSTMBlockStack, xLSTMLMModel

    if isinstance(model, xLSTMLMModel):
        stack, prefix = model.xlstm_block_stack, "xlstm_block_stack."
    elif isinstance(model, xLSTMBlockStack):
        stack, prefix = model, ""
    else:
        raise TypeError(f"`model` must be an xlstm.xLSTMBlockStack or xlstm.xLSTMLMModel; got {type(model).__name__}.")
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"`layout` must be one of {LAYOUTS}; got {layout!r}.")
    tensors = dict(model.state_dict() if state_dict is None else state_dict)
    weights = [v for v in tensors.values() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    dtype = np.dtype(dtype) if dtype is not None else (np.float64 if weights and weights[0].dtype == torch.float64
                                                       else np.float32)
    layers: list = []
    params: dict[str, Any] = {}
    if isinstance(model, xLSTMLMModel):
        from lrpjax.models.embedding import Embedding
        layers.append(Embedding(name="embedding"))
        params["embedding"] = {"table": _array(tensors, "token_embedding.weight", dtype)}
    for k, block in enumerate(stack.blocks):
        name, p = f"block_{k}", f"{prefix}blocks.{k}."
        layer: MLSTMBlock | SLSTMBlock
        if block.config.mlstm is not None:
            layer, layer_params = _mlstm(block, tensors, p, name, dtype)
        else:
            backend = block.xlstm.config.backend if layout is None else layout
            layer, layer_params = _slstm(block, tensors, p, name, backend, dtype)
        layers.append(layer)
        params[name] = layer_params
    if stack.config.add_post_blocks_norm:
        layers.append(LayerNorm(name="post_norm"))
        params["post_norm"] = {"scale": _norm_scale(tensors, f"{prefix}post_blocks_norm.weight", dtype)}
    if isinstance(model, xLSTMLMModel):
        head = "token_embedding.weight" if model.config.tie_weights and "lm_head.weight" not in tensors \
            else "lm_head.weight"
        layers.append(Dense(name="lm_head", bias=False))
        params["lm_head"] = {"W": _array(tensors, head, dtype).T.copy()}
    network = Sequential(tuple(layers))
    network.specs(params)
    return network, params
