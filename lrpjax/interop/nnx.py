"""Flax NNX layers (``nnx.RNN``, ``nnx.Bidirectional``, ``nnx.LSTMCell``, ``nnx.OptimizedLSTMCell``,
``nnx.GRUCell``, ``nnx.Linear``, ``nnx.Embed``) as an lrpjax model.

An NNX model is the user's own ``nnx.Module``, whose ``__call__`` connects its layers; the importer
takes the layers as a list, input side first, with the composition :func:`from_nnx` states. Flax is
imported inside :func:`from_nnx` only.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from lrpjax.core.cells import GRUCell, StandardCell
from lrpjax.interop._common import Imported, as_weight, check_class, check_dtypes, gate_blocks, with_table
from lrpjax.interop._stack import ActivationItem, LinearItem, RecurrentItem, activation_name, assemble

__all__ = ["from_nnx", "NNX_LAYERS"]

NNX_LAYERS = ("Embed (first)", "RNN", "Bidirectional", "LSTMCell", "OptimizedLSTMCell", "GRUCell", "Linear",
              "jax.nn.relu / jax.nn.sigmoid / jax.numpy.tanh (after a Linear)")
"""What the list given to :func:`from_nnx` may hold."""

_COMPUTING = ("__call__", "initialize_carry")
# NNX's LSTMCell sub-layers, in lrpjax's gate order i, z (= g), f, o: input "i<g>" without bias, hidden
# "h<g>" with bias; "if" is a Python keyword, so the input forget gate is the attribute "if_".
_LSTM_GATES = (("ii", "hi"), ("ig", "hg"), ("if_", "hf"), ("io", "ho"))
# OptimizedLSTMCell's fused kernels stack i, f, g, o (lrpjax i, z, f, o); GRUCell's stack r, z, n.
_LSTM_ORDER = (0, 2, 1, 3)


def from_nnx(layers: Sequence[Any], *, sequence_output: bool = False) -> Imported:
    """Imports Flax NNX layers, listed input side first: weights and conventions.

    The model computes, for one sequence ``x`` (T, E) (token ids (T,) with an ``nnx.Embed``
    first), what this composition of the layers computes:

    * ``nnx.RNN(cell)`` / ``nnx.Bidirectional(nnx.RNN(cell), nnx.RNN(cell))``, or a bare cell (scanned
      forward over the steps from a zero carry, as ``nnx.RNN(cell)`` does): every recurrent layer but
      the last feeds the next one all its outputs (``Bidirectional``: ``concatenate(forward,
      backward)`` per step, as its default ``merge_fn``); the last gives its final ``h`` (the carry of
      ``return_carry=True``; both directions' concatenated for ``Bidirectional``), or all its outputs
      with ``sequence_output=True``;
    * ``nnx.Linear``: ``x @ kernel + bias`` on a vector or at every step;
    * ``jax.nn.relu``, ``jax.nn.sigmoid``, ``jax.numpy.tanh`` (the functions themselves, recognised by
      identity): the activation of the ``Linear`` before it.

    Cells: ``nnx.LSTMCell`` (sub-layers ``ii, if_, ig, io`` without bias, ``hi, hf, hg, ho`` with bias;
    ``c' = f c + i g``, ``h' = o tanh(c')``), ``nnx.OptimizedLSTMCell`` (the same gates fused in
    ``dense_i`` (E, 4H) and ``dense_h`` (H, 4H) with bias, stacked i, f, g, o) as ``StandardCell``;
    ``nnx.GRUCell`` (``dense_i`` (E, 3H) with bias, ``dense_h`` (H, 3H) without, stacked r, z, n;
    ``n = tanh(x W_n + b_n + r (h U_n))``) as ``GRUCell(reset_after=True)`` with ``b_hn = 0``.

    Exactly what NNX computes, or refused: modules of their NNX class (a subclass defining ``__call__``
    or ``initialize_carry`` itself is refused), ``gate_fn`` sigmoid and ``activation_fn`` tanh, zero
    initial carries (a ``carry_init`` that gives anything but zeros is refused; a carry passed to the
    call is the caller's and not seen here), no ``time_major``, ``reverse`` only as ``Bidirectional``'s
    backward direction, compute dtype equal to the weights' dtype. Padded batches: NNX's
    ``seq_lengths`` correspond to lrpjax's prefix masks.

    Args:
        layers: the NNX layers, input side first (see above); an ``nnx.Embed`` may come first.
        sequence_output: the last recurrent layer outputs all steps (tagging, per-step heads).

    Returns:
        an :class:`~lrpjax.interop.Imported`, unpacked as ``(model, params)``; with an ``nnx.Embed``
        first the model takes token ids (its first layer an :class:`~lrpjax.models.embedding.Embedding`
        holding the table, also ``imported.table``; ``model.vector_model(params)`` reads vectors).

    Raises:
        TypeError: ``layers`` not a list of supported layers (the message lists them), a subclass that
            defines how it computes, other gate or activation functions, float64 weights while JAX runs
            in 32 bits, mixed dtypes.
        ValueError: an unsupported option (``time_major``, ``reverse``, ``merge_fn``, ``carry_init``,
            ``dtype``), an ``Embed`` after the first item, sizes that do not fit, no recurrent layer.
    """
    from flax import nnx

    if not isinstance(layers, (list, tuple)) or not layers:
        raise TypeError(f"`layers` must be a non-empty list of NNX layers, input side first; got "
                        f"{type(layers).__name__}.")
    if not isinstance(sequence_output, bool):
        raise TypeError(f"`sequence_output` must be a bool; got {type(sequence_output).__name__}.")
    table = None
    items: list[Any] = []
    for k, layer in enumerate(layers):
        where = f"layers[{k}]"
        if isinstance(layer, nnx.Embed):
            if k != 0:
                raise ValueError(f"`{where}` is an nnx.Embed after the first layer; only a first Embed is supported.")
            check_class(layer, (nnx.Embed,), _COMPUTING, where)
            _check_dtype(layer, where)
            table = as_weight(np.asarray(layer.embedding[...]), f"{where}.embedding")
            if table.ndim != 2:
                raise ValueError(f"`{where}.embedding` must be (V, E); got shape {table.shape}.")
        elif isinstance(layer, nnx.Linear):
            check_class(layer, (nnx.Linear,), _COMPUTING, where)
            _check_dtype(layer, where)
            W = as_weight(np.asarray(layer.kernel[...]), f"{where}.kernel")
            b = None if layer.bias is None else as_weight(np.asarray(layer.bias[...]), f"{where}.bias")
            items.append(LinearItem(W, b, f"{where}.kernel"))
        elif isinstance(layer, (nnx.RNN, nnx.Bidirectional, nnx.RNNCellBase)):
            items.append(_recurrent(nnx, layer, where))
        elif callable(layer) and activation_name(layer) is not None:
            items.append(ActivationItem(activation_name(layer), where))   # type: ignore[arg-type]
        else:
            raise TypeError(f"`{where}` is a {type(layer).__name__}; supported: {', '.join(NNX_LAYERS)}.")
    first_recurrent = next((item for item in items if isinstance(item, (RecurrentItem, LinearItem))), None)
    E = table.shape[1] if table is not None else (
        int(first_recurrent.directions[0]["W"].shape[0]) if isinstance(first_recurrent, RecurrentItem)
        else int(first_recurrent.W.shape[0]) if isinstance(first_recurrent, LinearItem) else 0)
    model, params = assemble(items, E, sequence_output, "layers")
    check_dtypes({**params, **({} if table is None else {"embedding": table})}, "layers")
    return with_table(model, params, table)


def _check_dtype(module: Any, where: str) -> None:
    dtype = getattr(module, "dtype", None)
    param_dtype = np.dtype(getattr(module, "param_dtype", np.float32))
    if dtype is not None and np.dtype(dtype) != param_dtype:
        raise ValueError(f"`{where}` computes in {np.dtype(dtype)} with {param_dtype} weights (dtype != param_dtype); "
                         "import a module that computes in its weights' dtype.")


def _recurrent(nnx, layer: Any, where: str) -> RecurrentItem:
    """One recurrent item from an RNN, a Bidirectional of two RNNs, or a bare cell."""
    if isinstance(layer, nnx.Bidirectional):
        check_class(layer, (nnx.Bidirectional,), _COMPUTING, where)
        if layer.merge_fn is not nnx.nn.recurrent._concatenate:
            raise ValueError(f"`{where}` (Bidirectional) must merge the directions with its default concatenation.")
        if layer.time_major:
            raise ValueError(f"`{where}` has time_major=True; lrpjax reads one sequence (T, E) (batch with vmap).")
        rnns = [(layer.forward_rnn, f"{where}.forward_rnn"), (layer.backward_rnn, f"{where}.backward_rnn")]
        if layer.forward_rnn is layer.backward_rnn:
            raise ValueError(f"`{where}`: forward_rnn and backward_rnn are one module (shared weights); give two.")
    elif isinstance(layer, nnx.RNN):
        rnns = [(layer, where)]
        if layer.reverse:
            raise ValueError(f"`{where}` is an nnx.RNN with reverse=True; a reversed direction is supported inside "
                             "nnx.Bidirectional only (its backward_rnn).")
    else:
        cell, params = _cell(nnx, layer, where)
        return RecurrentItem(cell, [params], where)
    cells = []
    for rnn, rnn_where in rnns:
        if not isinstance(rnn, nnx.RNN):
            raise TypeError(f"`{rnn_where}` must be an nnx.RNN; got {type(rnn).__name__}.")
        check_class(rnn, (nnx.RNN,), _COMPUTING, rnn_where)
        if rnn.time_major:
            raise ValueError(f"`{rnn_where}` has time_major=True; lrpjax reads one sequence (T, E) (batch with vmap).")
        cells.append(_cell(nnx, rnn.cell, f"{rnn_where}.cell"))
    if len({type(cell) for cell, _ in cells}) != 1:
        raise ValueError(f"`{where}`: both directions must hold the same kind of cell.")
    return RecurrentItem(cells[0][0], [params for _, params in cells], where)


def _cell(nnx, cell: Any, where: str) -> tuple[Any, dict[str, np.ndarray]]:
    """``(lrpjax cell, its parameters)`` of one NNX cell (conventions: :func:`from_nnx`)."""
    import jax

    cls = check_class(cell, (nnx.LSTMCell, nnx.OptimizedLSTMCell, nnx.GRUCell), _COMPUTING, where)
    if cell.gate_fn is not jax.nn.sigmoid or cell.activation_fn is not jax.numpy.tanh:
        raise TypeError(f"`{where}` ({cls.__name__}) must use gate_fn=jax.nn.sigmoid and activation_fn="
                        f"jax.numpy.tanh, the functions of lrpjax's cells; got {cell.gate_fn!r} and "
                        f"{cell.activation_fn!r}.")
    _check_dtype(cell, where)
    if cell.carry_init is not None:
        probe = np.asarray(cell.carry_init(jax.random.PRNGKey(0), (2,), np.dtype(cell.param_dtype)))
        if np.any(probe != 0):
            raise ValueError(f"`{where}` ({cls.__name__}) has a carry_init that gives non-zero initial states; "
                             "lrpjax's recurrent layers start from zero states (import a cell with the default "
                             "carry_init, or one that gives zeros).")
    H = int(cell.hidden_features)
    if cls is nnx.LSTMCell:
        inputs = [_weight(getattr(cell, i).kernel, f"{where}.{i}.kernel") for i, _ in _LSTM_GATES]
        hidden = [_weight(getattr(cell, h).kernel, f"{where}.{h}.kernel", (H, H)) for _, h in _LSTM_GATES]
        biases = [_weight(getattr(cell, h).bias, f"{where}.{h}.bias", (H,)) for _, h in _LSTM_GATES]
        for i, _ in _LSTM_GATES:
            if getattr(cell, i).bias is not None:
                raise ValueError(f"`{where}.{i}` has a bias; NNX's LSTMCell input layers have none.")
        return StandardCell(), {"W": np.concatenate(inputs, axis=1), "U": np.concatenate(hidden, axis=1),
                                "b": np.concatenate(biases)}
    G = 3 if cls is nnx.GRUCell else 4
    W = _weight(cell.dense_i.kernel, f"{where}.dense_i.kernel")
    U = _weight(cell.dense_h.kernel, f"{where}.dense_h.kernel", (H, G * H))
    if W.shape[1] != G * H:
        raise ValueError(f"`{where}.dense_i.kernel` must have {G * H} columns; got shape {W.shape}.")
    if cls is nnx.OptimizedLSTMCell:
        b = _weight(cell.dense_h.bias, f"{where}.dense_h.bias", (4 * H,))
        return StandardCell(), {"W": gate_blocks(W, _LSTM_ORDER), "U": gate_blocks(U, _LSTM_ORDER),
                                "b": gate_blocks(b, _LSTM_ORDER)}
    if cell.dense_h.bias is not None:
        raise ValueError(f"`{where}.dense_h` has a bias; NNX's GRUCell hidden layer has none.")
    b = _weight(cell.dense_i.bias, f"{where}.dense_i.bias", (3 * H,))
    return GRUCell(reset_after=True), {"W": W, "U": U, "b": b, "b_hn": np.zeros((H,), W.dtype)}


def _weight(param: Any, where: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    if param is None:
        raise ValueError(f"`{where}` is missing (use_bias=False is not what this cell computes here).")
    return as_weight(np.asarray(param[...]), where, shape)
