"""PyTorch ``nn.LSTM`` / ``nn.GRU`` (and the head reading their final states) as an lrpjax model.

PyTorch is imported inside :func:`from_torch` only; ``import lrpjax`` never imports it.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from lrpjax._types import Params
from lrpjax.core.cells import GRUCell, StandardCell
from lrpjax.interop._common import (Imported, Parts, as_weight, check_class, check_dtypes, dense_params,
                                    gate_blocks, with_table)
from lrpjax.models import Dense, Recurrent, Sequential

__all__ = ["from_torch", "conv1d_from_torch", "HEAD_MODULES"]

# PyTorch stacks the LSTM's gate rows i, f, g, o; lrpjax's StandardCell stacks i, z (= g), f, o.
_LSTM_ORDER = (0, 2, 1, 3)

HEAD_MODULES = ("Linear", "ReLU", "Tanh", "Sigmoid", "Dropout", "Identity")
"""The modules a head may hold (``nn.Linear`` or an ``nn.Sequential`` of these)."""

_ACTIVATIONS = {"ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid"}

# The methods through which a torch module computes its output: a subclass defining one is refused.
_COMPUTING = ("forward", "__call__", "_call_impl", "_wrapped_call_impl")


def from_torch(rnn: Any, head: Any = None, embedding: Any = None, *,
               sequence_output: bool = False) -> Imported:
    """Imports a PyTorch ``nn.LSTM`` or ``nn.GRU`` and the head on top of it, weights and conventions.

    The model computes, for one embedded sequence ``x`` (T, E) (or its ids with an ``embedding``), what
    PyTorch computes for the same
    unbatched input ``rnn(x)`` (batch_first does not matter for an unbatched input; for a batch, use
    :meth:`lrpjax.Method.batch` or ``jax.vmap`` with a mask):

    * ``sequence_output=False`` (default): ``head(h_n[-1])`` for a unidirectional ``rnn``,
      ``head(cat(h_n[-2], h_n[-1]))`` (the last layer's forward and backward final states) for a
      bidirectional one; without a head, those final states, (H,) or (2H,);
    * ``sequence_output=True``: the head applied at every step of the last layer's ``output`` (T, D)
      (tagging, forecasting), (T, C); without a head, ``output`` itself.

    Layers: every recurrent layer but the last is ``Recurrent(sequences=True)`` (a bidirectional one feeds
    the next with ``[forward_t, backward_t]``, as PyTorch does); the last gives the final states (or all
    steps). Parameter keys: ``"lstm_<k>"`` / ``"gru_<k>"`` for layer k of a unidirectional ``rnn``,
    ``"lstm_<k>_forward"`` and ``"lstm_<k>_backward"`` for a bidirectional one; the head's linear layers
    ``"dense_<k>"``, the last one ``"out"``. A head ``Linear`` after a bidirectional layer has weight
    (C, 2H); its columns become ``W_<forward key>`` and ``W_<backward key>`` (H, C) each, the two inputs
    of one linear mapping (one shared denominator for the rules).

    Conventions:

    * LSTM: PyTorch stacks the gate rows of ``weight_ih_l<k>`` (4H, E), ``weight_hh_l<k>`` (4H, H) and
      the biases as i, f, g, o; lrpjax stacks i, z (= g, the cell input), f, o. The blocks are reordered
      and the weights transposed to ``W`` (E, 4H), ``U`` (H, 4H); the two biases ``b_ih + b_hh`` are
      summed into ``b`` (4H,) (they only ever appear added). No peepholes (PyTorch has none).
    * GRU: PyTorch's rows r, z, n are lrpjax's order. ``b`` (3H,) holds ``b_ih + b_hh`` for r and z and
      the input bias ``b_in`` for n; the recurrent candidate bias ``b_hn`` (H,) is kept apart, because
      it sits inside the reset product ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``
      (``GRUCell(reset_after=True)``).
    * ``bias=False``: zero biases. ``dropout`` is ignored: the import computes inference (eval mode);
      a module left in training mode with dropout > 0 is accepted with a warning (call ``.eval()``
      before comparing with PyTorch).
    * dtype: float32 weights stay float32, float64 (``.double()``) stay float64 (needs
      ``jax_enable_x64``); the rnn, head and embedding must share one dtype.

    Args:
        rnn: a ``torch.nn.LSTM`` or ``torch.nn.GRU``, any ``num_layers``, uni- or bidirectional.
        head: None, an ``nn.Linear``, or an ``nn.Sequential`` of ``Linear``, ``ReLU``, ``Tanh``,
            ``Sigmoid`` (each activation folds into the ``Dense`` of the linear before it), ``Dropout``
            and ``Identity`` (no-ops at inference).
        embedding: None or an ``nn.Embedding`` whose rows are the inputs of ``rnn``: the model then
            takes token ids, and the relevance of a token is the sum over its embedding dimensions
            (``method.tokens(params, ids, target)``).
        sequence_output: apply the head at every step instead of to the final states.

    Exactly what PyTorch computes, or refused: every module must be of its torch class, or a subclass
    that does not define ``forward`` itself (a subclass with its own ``forward`` may compute anything);
    no forward hooks (they may change outputs). Initial states are zero, as PyTorch's when ``rnn`` is
    called without ``(h_0, c_0)``; a model that passes its own initial states computes something else.

    Returns:
        an :class:`~lrpjax.interop.Imported`, unpacked as ``(model, params)``: a
        :class:`~lrpjax.models.Sequential` and its parameters (numpy arrays). With an ``embedding`` the
        model takes token ids (T,): its first layer is an :class:`~lrpjax.models.embedding.Embedding`
        holding the module's weight (V, E) under ``params["embedding"]["table"]`` (the ``padding_idx``
        row is whatever the module holds, zeros unless changed), also ``imported.table``; explain
        embedded vectors directly with ``model.vector_model(params)``.

    Raises:
        TypeError: ``rnn`` not an LSTM/GRU, a module of a subclass with its own ``forward``, forward
            hooks, a head module that is not supported (the message lists those
            that are), ``embedding`` not an ``nn.Embedding``, mixed or unsupported dtypes, or float64
            weights while JAX runs in 32 bits.
        ValueError: ``proj_size > 0``, an activation with no linear before it, a head or embedding whose
            sizes do not fit ``rnn``, an embedding with ``max_norm`` (it rescales rows at lookup).
    """
    import torch

    _check_module(torch, rnn, (torch.nn.LSTM, torch.nn.GRU), "rnn")
    if not isinstance(sequence_output, bool):
        raise TypeError(f"`sequence_output` must be a bool; got {type(sequence_output).__name__}.")
    if getattr(rnn, "proj_size", 0):
        raise ValueError(f"`rnn` has proj_size = {rnn.proj_size}: LSTMs with projections are not supported "
                         "(lrpjax's cell outputs its H cells directly).")
    if rnn.training and rnn.dropout > 0 and rnn.num_layers > 1:
        warnings.warn(f"`rnn` is in training mode with dropout = {rnn.dropout}; the imported model computes "
                      "inference (no dropout), like rnn.eval().", UserWarning, stacklevel=2)
    layers, params, parts = _recurrent_layers(rnn, sequence_output)
    if head is not None:
        head_layers, head_params = _head(torch, head, parts)
        layers += head_layers
        params.update(head_params)
    table = None if embedding is None else _embedding(torch, embedding, rnn.input_size)
    check_dtypes({**params, **({} if table is None else {"embedding": table})}, "rnn, head and embedding")
    model = Sequential(tuple(layers))
    model.specs(params)   # the assembled model checks its own shapes
    return with_table(model, params, table)


def _check_module(torch, module, classes: tuple, where: str) -> type:
    """The torch class among ``classes`` that ``module`` is (:func:`~lrpjax.interop._common.check_class`:
    a subclass with its own ``forward`` is refused), without forward hooks (they may change the output)."""
    expected = " or ".join(f"a torch.nn.{c.__name__}" for c in classes)
    cls = check_class(module, classes, _COMPUTING, where, expected)
    hooks = torch.nn.modules.module
    if module._forward_hooks or module._forward_pre_hooks:
        raise TypeError(f"`{where}` ({type(module).__name__}) has forward hooks registered: they may change its "
                        "output, which the import cannot see; remove them (handle.remove()) before importing.")
    if getattr(hooks, "_global_forward_hooks", None) or getattr(hooks, "_global_forward_pre_hooks", None):
        raise TypeError(f"global forward hooks are registered (torch.nn.modules.module.register_module_forward_hook) "
                        f"while importing `{where}`: they may change every module's output; remove them first.")
    return cls


def _recurrent_layers(rnn, sequence_output: bool) -> tuple[list, Params, Parts]:
    """One :class:`Recurrent` per PyTorch layer and its parameters; the parts the last one outputs."""
    kind = "lstm" if rnn.mode == "LSTM" else "gru"
    cell = StandardCell() if kind == "lstm" else GRUCell(reset_after=True)
    H, E = rnn.hidden_size, rnn.input_size
    layers, params = [], {}
    for k in range(rnn.num_layers):
        last = k == rnn.num_layers - 1
        layer = Recurrent(cell, H, bidirectional=rnn.bidirectional, sequences=not last or sequence_output,
                          name=f"{kind}_{k}")
        for key, suffix in zip(layer.keys(), ("", "_reverse")):
            params[key] = _cell_params(rnn, kind, f"l{k}{suffix}", E if k == 0 else H * len(layer.keys()), H)
        layers.append(layer)
    last_keys = layers[-1].keys()
    return layers, params, Parts(last_keys, (H,) * len(last_keys))


def _cell_params(rnn, kind: str, suffix: str, E: int, H: int) -> Params:
    """The lrpjax cell parameters of one direction of one layer (class docstring: conventions)."""
    G = 4 if kind == "lstm" else 3
    w_ih = as_weight(_numpy(getattr(rnn, f"weight_ih_{suffix}")), f"rnn.weight_ih_{suffix}", (G * H, E))
    w_hh = as_weight(_numpy(getattr(rnn, f"weight_hh_{suffix}")), f"rnn.weight_hh_{suffix}", (G * H, H))
    if rnn.bias:
        b_ih = as_weight(_numpy(getattr(rnn, f"bias_ih_{suffix}")), f"rnn.bias_ih_{suffix}", (G * H,))
        b_hh = as_weight(_numpy(getattr(rnn, f"bias_hh_{suffix}")), f"rnn.bias_hh_{suffix}", (G * H,))
    else:
        b_ih = b_hh = np.zeros((G * H,), w_ih.dtype)
    if kind == "lstm":
        return {"W": gate_blocks(w_ih.T, _LSTM_ORDER), "U": gate_blocks(w_hh.T, _LSTM_ORDER),
                "b": gate_blocks(b_ih + b_hh, _LSTM_ORDER)}
    b = np.concatenate([b_ih[:2 * H] + b_hh[:2 * H], b_ih[2 * H:]])
    return {"W": np.ascontiguousarray(w_ih.T), "U": np.ascontiguousarray(w_hh.T), "b": b,
            "b_hn": b_hh[2 * H:].copy()}


def _head(torch, head, parts: Parts) -> tuple[list, Params]:
    """Dense layers for an ``nn.Linear`` or an ``nn.Sequential`` head (activations folded in)."""
    if isinstance(head, torch.nn.Sequential):
        _check_module(torch, head, (torch.nn.Sequential,), "head")
    modules = list(head) if isinstance(head, torch.nn.Sequential) else [head]
    if not modules:
        raise ValueError("`head` is an empty nn.Sequential; give None for no head.")
    linears: list[list] = []   # [module, activation, where]
    after_linear = False          # the last module that computes something is a Linear
    for position, module in enumerate(modules):
        name = type(module).__name__
        where = "head" if module is head else f"head[{position}]"
        known = (torch.nn.Linear, torch.nn.ReLU, torch.nn.Tanh, torch.nn.Sigmoid, torch.nn.Dropout, torch.nn.Identity)
        if isinstance(module, known):
            name = _check_module(torch, module, known, where).__name__
        if isinstance(module, torch.nn.Linear):
            linears.append([module, "identity", where])
            after_linear = True
        elif name in _ACTIVATIONS:
            if not after_linear:
                raise ValueError(f"`{where}` ({name}) must follow an nn.Linear (it becomes that dense layer's "
                                 "activation); an activation of the recurrent states or of another activation "
                                 "is not supported.")
            linears[-1][1] = _ACTIVATIONS[name]
            after_linear = False
        elif isinstance(module, (torch.nn.Dropout, torch.nn.Identity)):
            if isinstance(module, torch.nn.Dropout) and module.training and module.p > 0:
                warnings.warn(f"`{where}` (Dropout) is in training mode; the imported model computes inference "
                              "(no dropout), like head.eval().", UserWarning, stacklevel=3)
        else:
            raise TypeError(f"`{where}` is a {name}; a head may hold only nn.Linear, nn.ReLU, nn.Tanh, nn.Sigmoid, "
                            "nn.Dropout and nn.Identity (an nn.Linear or an nn.Sequential of them). A final "
                            "softmax is not needed: lrpjax explains the scores (logits).")
    if not linears:
        raise ValueError("`head` holds no nn.Linear; give None for no head.")
    layers, params = [], {}
    for k, (linear, activation, where) in enumerate(linears):
        name = "out" if k == len(linears) - 1 else f"dense_{k}"
        W = as_weight(_numpy(linear.weight), f"{where}.weight").T
        b = None if linear.bias is None else as_weight(_numpy(linear.bias), f"{where}.bias")
        params[name] = dense_params(np.ascontiguousarray(W), b, parts, f"{where}.weight")
        layers.append(Dense(linear.out_features, activation, bias=b is not None, name=name))
        parts = Parts((name,), (linear.out_features,))
    return layers, params


def _embedding(torch, embedding, E: int) -> np.ndarray:
    """The embedding table (V, E), checked against the rnn's input size."""
    _check_module(torch, embedding, (torch.nn.Embedding,), "embedding")
    if embedding.max_norm is not None:
        raise ValueError(f"`embedding` has max_norm = {embedding.max_norm}: PyTorch rescales its rows at lookup, so "
                         "the table alone does not give the embedded inputs; renormalise the weights once and set "
                         "max_norm=None.")
    if embedding.embedding_dim != E:
        raise ValueError(f"`embedding` has embedding_dim = {embedding.embedding_dim}; `rnn` reads inputs of size "
                         f"input_size = {E}.")
    return as_weight(_numpy(embedding.weight), "embedding.weight")


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def conv1d_from_torch(conv: Any, *, causal: bool = False, name: str = "conv") -> tuple[Any, Params]:
    """Imports a PyTorch ``nn.Conv1d`` as a :class:`~lrpjax.models.Conv1D` layer and its parameters.

    The layer computes, for one sequence ``x`` (T, D) (time first, lrpjax's layout),
    ``conv(x.T[None])[0].T`` (T, F) (PyTorch's layout is (batch, channels, time)):

    * ``padding="same"``, or an int ``p`` with ``2 p = dilation (K - 1)``: same padding;
    * ``causal=True`` with ``padding = dilation (K - 1)``: the first T outputs of the module (the causal
      convolution of Mamba and of most temporal convolutional networks, which truncate
      ``conv(x)[..., :T]``).

    ``groups=1`` is a full convolution; ``groups = in_channels = out_channels`` a depthwise one. The weight
    (F, D / groups, K) becomes ``W`` (K, D, F) (depthwise: (K, D)); ``W[k]`` reads the tap
    ``x_{t - left + k dilation}`` as PyTorch's ``weight[..., k]`` does (a cross-correlation).
    Compose it with other layers, e.g. a CNN-LSTM::

        conv_layer, conv_params = conv1d_from_torch(torch_conv, causal=True)
        rnn_model, rnn_params = from_torch(torch_lstm, head)
        model = Sequential((conv_layer,) + rnn_model.layers)
        params = {**conv_params, **rnn_params}

    Args:
        conv: a ``torch.nn.Conv1d``.
        causal: the module's output is truncated to its first T steps (``padding`` must be ``dilation (K - 1)``).
        name: the layer's name (its parameter key).

    Returns:
        ``(layer, params)``, ``params = {name: {"W": ..., "b": ...}}`` (numpy arrays of the module's dtype).

    Raises:
        TypeError: ``conv`` not an ``nn.Conv1d``.
        ValueError: a stride other than 1, a padding mode other than zeros, a padding that is neither same
            nor (with ``causal``) causal, groups other than 1 or the channels.
    """
    import torch

    from lrpjax.models.conv import Conv1D

    if type(conv) is not torch.nn.Conv1d:
        raise TypeError(f"`conv` must be a torch.nn.Conv1d; got {type(conv).__name__}.")
    K, d = conv.kernel_size[0], conv.dilation[0]
    if conv.stride != (1,):
        raise ValueError(f"`conv` has stride {conv.stride[0]}: lrpjax's Conv1D keeps the sequence's length (stride 1).")
    if conv.padding_mode != "zeros":
        raise ValueError(f"`conv` has padding_mode {conv.padding_mode!r}; only zero padding is imported.")
    span = d * (K - 1)
    pad = conv.padding
    if causal:
        if pad != (span,):
            raise ValueError(f"`conv` must have padding = dilation * (K - 1) = {span} for causal=True (its first T "
                             f"outputs are the causal convolution); got padding = {pad}.")
        padding = "causal"
    elif pad == "same" or (isinstance(pad, tuple) and 2 * pad[0] == span):
        padding = "same"
    else:
        raise ValueError(f"`conv` has padding = {pad!r}: the output keeps the sequence's length only with 'same' "
                         f"(or {span // 2} for an odd window), or with padding = {span} and causal=True (truncated "
                         "to the first T steps); 'valid' shortens the sequence.")
    D, F = conv.in_channels, conv.out_channels
    weight = as_weight(_numpy(conv.weight), "conv.weight")
    if conv.groups == 1:
        W = np.ascontiguousarray(np.transpose(weight, (2, 1, 0)))                  # (K, D, F)
        depthwise = False
    elif conv.groups == D == F:
        W = np.ascontiguousarray(weight[:, 0, :].T)                                 # (K, D)
        depthwise = True
    else:
        raise ValueError(f"`conv` has groups = {conv.groups}: imported are groups = 1 (full) and groups = "
                         f"in_channels = out_channels (depthwise); got in {D}, out {F}.")
    layer_params: Params = {"W": W}
    if conv.bias is not None:
        layer_params["b"] = as_weight(_numpy(conv.bias), "conv.bias")
    layer = Conv1D(None if depthwise else F, K, padding, depthwise=depthwise, bias=conv.bias is not None,
                   dilation=d, name=name)
    return layer, {name: layer_params}
