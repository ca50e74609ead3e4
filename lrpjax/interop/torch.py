"""PyTorch ``nn.LSTM`` / ``nn.GRU`` (and the head reading their final states) as an lrpjax model.

PyTorch is imported inside :func:`from_torch` only; ``import lrpjax`` never imports it.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from lrpjax._types import Params
from lrpjax.core.cells import GRUCell, StandardCell
from lrpjax.interop._common import Parts, as_weight, check_dtypes, dense_params, gate_blocks
from lrpjax.models import Dense, Recurrent, Sequential

__all__ = ["from_torch", "HEAD_MODULES"]

# PyTorch stacks the LSTM's gate rows i, f, g, o; lrpjax's StandardCell stacks i, z (= g), f, o.
_LSTM_ORDER = (0, 2, 1, 3)

HEAD_MODULES = ("Linear", "ReLU", "Tanh", "Sigmoid", "Dropout", "Identity")
"""The modules a head may hold (``nn.Linear`` or an ``nn.Sequential`` of these)."""

_ACTIVATIONS = {"ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid"}


def from_torch(rnn: Any, head: Any = None, embedding: Any = None, *,
               sequence_output: bool = False) -> tuple[Sequential, Params] | tuple[Sequential, Params, np.ndarray]:
    """Imports a PyTorch ``nn.LSTM`` or ``nn.GRU`` and the head on top of it, weights and conventions.

    The model computes, for one embedded sequence ``x`` (T, E), what PyTorch computes for the same
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
        embedding: None or an ``nn.Embedding`` whose rows are the inputs of ``rnn``. Explanations stay
            with respect to the embedded inputs: embed a sentence as ``table[ids]``.
        sequence_output: apply the head at every step instead of to the final states.

    Returns:
        ``(model, params)``: a :class:`~lrpjax.models.Sequential` and its parameters (numpy arrays), or
        ``(model, params, table)`` when ``embedding`` is given, ``table`` its weight (V, E) as a numpy
        array (the ``padding_idx`` row is whatever the module holds, zeros unless changed).

    Raises:
        TypeError: ``rnn`` not an LSTM/GRU, a head module that is not supported (the message lists those
            that are), ``embedding`` not an ``nn.Embedding``, mixed or unsupported dtypes, or float64
            weights while JAX runs in 32 bits.
        ValueError: ``proj_size > 0``, an activation with no linear before it, a head or embedding whose
            sizes do not fit ``rnn``, an embedding with ``max_norm`` (it rescales rows at lookup).
    """
    import torch

    if not isinstance(rnn, (torch.nn.LSTM, torch.nn.GRU)):
        raise TypeError(f"`rnn` must be a torch.nn.LSTM or torch.nn.GRU; got {type(rnn).__name__}.")
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
    return (model, params) if table is None else (model, params, table)


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
    modules = list(head) if isinstance(head, torch.nn.Sequential) else [head]
    if not modules:
        raise ValueError("`head` is an empty nn.Sequential; give None for no head.")
    linears: list[list] = []   # [module, activation, where]
    after_linear = False          # the last module that computes something is a Linear
    for position, module in enumerate(modules):
        name = type(module).__name__
        where = "head" if module is head else f"head[{position}]"
        if isinstance(module, torch.nn.Linear):
            linears.append([module, "identity", where])
            after_linear = True
        elif name in _ACTIVATIONS and isinstance(module, getattr(torch.nn, name)):
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
    if not isinstance(embedding, torch.nn.Embedding):
        raise TypeError(f"`embedding` must be a torch.nn.Embedding; got {type(embedding).__name__}.")
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
