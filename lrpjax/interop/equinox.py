"""Equinox layers (``eqx.nn.LSTMCell``, ``eqx.nn.GRUCell``, ``eqx.nn.Linear``, ``eqx.nn.Embedding``) as an
lrpjax model.

Equinox has cells, not recurrent layers: the user's own ``eqx.Module`` scans them over the steps. The
importer takes the layers as a list, input side first, and computes the scan :func:`from_equinox`
states, which is the usual way to write one (the pattern is in its docstring and in the guide).
Equinox is imported inside :func:`from_equinox` only.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from lrpjax.core.cells import GRUCell, StandardCell
from lrpjax.interop._common import Imported, as_weight, check_class, check_dtypes, gate_blocks, with_table
from lrpjax.interop._stack import ActivationItem, LinearItem, RecurrentItem, activation_name, assemble

__all__ = ["from_equinox", "EQUINOX_LAYERS"]

EQUINOX_LAYERS = ("Embedding (first)", "LSTMCell", "GRUCell", "(forward cell, backward cell)", "Linear",
                  "jax.nn.relu / jax.nn.sigmoid / jax.numpy.tanh (after a Linear)")
"""What the list given to :func:`from_equinox` may hold."""

_COMPUTING = ("__call__",)
# Equinox's LSTMCell stacks the gate rows i, f, g, o (as PyTorch); lrpjax's StandardCell i, z (= g), f, o.
_LSTM_ORDER = (0, 2, 1, 3)


def from_equinox(layers: Sequence[Any], *, sequence_output: bool = False) -> Imported:
    """Imports Equinox layers, listed input side first, scanned as the pattern below does.

    The model computes, for one sequence ``x`` (T, E) (token ids (T,) with an ``eqx.nn.Embedding``
    first), what this module computes with ``layers = [embedding, cell, head]`` (or any list of the
    items below)::

        class Classifier(eqx.Module):
            embedding: eqx.nn.Embedding
            cell: eqx.nn.LSTMCell
            head: eqx.nn.Linear

            def __call__(self, ids):
                xs = jax.vmap(self.embedding)(ids)
                H = self.cell.hidden_size
                def step(carry, x):
                    carry = self.cell(x, carry)       # (h, c); a GRUCell's carry is h
                    return carry, carry[0]
                (h, c), hs = jax.lax.scan(step, (jnp.zeros(H), jnp.zeros(H)), xs)
                return self.head(h)                   # sequence_output=True: jax.vmap(self.head)(hs)

    * a cell (``eqx.nn.LSTMCell``, ``eqx.nn.GRUCell``): scanned forward from zero states; a pair
      ``(forward_cell, backward_cell)``: the second scanned with ``jax.lax.scan(..., reverse=True)``
      (its outputs at the original positions), the two concatenated ``[forward, backward]`` per step,
      and their final ``h`` concatenated. Every recurrent item but the last feeds the next item all its
      steps; the last gives its final ``h`` (``sequence_output=False``) or all steps;
    * ``eqx.nn.Linear``: ``weight @ x + bias`` on a vector or at every step (``jax.vmap``);
    * ``jax.nn.relu``, ``jax.nn.sigmoid``, ``jax.numpy.tanh`` (recognised by identity): the activation of
      the ``Linear`` before it.

    Conventions: ``LSTMCell`` has ``weight_ih`` (4H, E), ``weight_hh`` (4H, H) and one ``bias`` (4H,),
    gate rows i, f, g, o: reordered to lrpjax's i, z (= g), f, o and transposed (``StandardCell``);
    ``GRUCell`` has ``weight_ih`` (3H, E), ``weight_hh`` (3H, H), rows r, z, n, the input ``bias``
    (3H,) and ``bias_n`` (H,) inside the reset product, ``n = tanh(W_n x + b_n + r (U_n h + b_hn))``:
    ``GRUCell(reset_after=True)`` with ``b`` = ``bias`` and ``b_hn`` = ``bias_n``. ``use_bias=False``
    gives zero biases. Exact classes only (a subclass defining ``__call__`` may compute anything);
    initial states are zero (a module that starts from learned or other states computes something else).

    Args:
        layers: the Equinox layers, input side first (see above); an ``eqx.nn.Embedding`` may come first.
        sequence_output: the last recurrent item outputs all steps (tagging, per-step heads).

    Returns:
        an :class:`~lrpjax.interop.Imported`, unpacked as ``(model, params)``; with an ``eqx.nn.Embedding``
        first the model takes token ids (its first layer an :class:`~lrpjax.models.embedding.Embedding`
        holding the table, also ``imported.table``; ``model.vector_model(params)`` reads vectors).

    Raises:
        TypeError: ``layers`` not a list of supported items (the message lists them), a subclass that
            defines ``__call__``, float64 weights while JAX runs in 32 bits, mixed dtypes.
        ValueError: an ``Embedding`` after the first item, a ``Linear`` with ``"scalar"`` features, a pair
            of cells of different kinds, sizes that do not fit, no cell.
    """
    import equinox as eqx

    if not isinstance(layers, (list, tuple)) or not layers:
        raise TypeError(f"`layers` must be a non-empty list of Equinox layers, input side first; got "
                        f"{type(layers).__name__}.")
    if not isinstance(sequence_output, bool):
        raise TypeError(f"`sequence_output` must be a bool; got {type(sequence_output).__name__}.")
    cells = (eqx.nn.LSTMCell, eqx.nn.GRUCell)
    table = None
    items: list[Any] = []
    for k, layer in enumerate(layers):
        where = f"layers[{k}]"
        if isinstance(layer, eqx.nn.Embedding):
            if k != 0:
                raise ValueError(f"`{where}` is an eqx.nn.Embedding after the first layer; only a first one is "
                                 "supported.")
            check_class(layer, (eqx.nn.Embedding,), _COMPUTING, where)
            table = as_weight(np.asarray(layer.weight), f"{where}.weight")
        elif isinstance(layer, eqx.nn.Linear):
            check_class(layer, (eqx.nn.Linear,), _COMPUTING, where)
            if layer.in_features == "scalar" or layer.out_features == "scalar":
                raise ValueError(f"`{where}` has 'scalar' features; give it in_features and out_features as ints.")
            W = as_weight(np.asarray(layer.weight), f"{where}.weight").T
            b = None if layer.bias is None else as_weight(np.asarray(layer.bias), f"{where}.bias")
            items.append(LinearItem(np.ascontiguousarray(W), b, f"{where}.weight"))
        elif isinstance(layer, cells):
            cell, params = _cell(eqx, layer, where)
            items.append(RecurrentItem(cell, [params], where))
        elif isinstance(layer, tuple) and len(layer) == 2 and all(isinstance(c, cells) for c in layer):
            pair = [_cell(eqx, c, f"{where}[{d}]") for d, c in enumerate(layer)]
            if type(layer[0]) is not type(layer[1]):
                raise ValueError(f"`{where}`: both directions must be the same kind of cell; got "
                                 f"{type(layer[0]).__name__} and {type(layer[1]).__name__}.")
            items.append(RecurrentItem(pair[0][0], [p for _, p in pair], where))
        elif callable(layer) and activation_name(layer) is not None:
            items.append(ActivationItem(activation_name(layer), where))   # type: ignore[arg-type]
        else:
            raise TypeError(f"`{where}` is a {type(layer).__name__}; supported: {', '.join(EQUINOX_LAYERS)}.")
    first = next((item for item in items if isinstance(item, (RecurrentItem, LinearItem))), None)
    E = table.shape[1] if table is not None else (
        int(first.directions[0]["W"].shape[0]) if isinstance(first, RecurrentItem)
        else int(first.W.shape[0]) if isinstance(first, LinearItem) else 0)
    model, params = assemble(items, E, sequence_output, "layers")
    check_dtypes({**params, **({} if table is None else {"embedding": table})}, "layers")
    return with_table(model, params, table)


def _cell(eqx, cell: Any, where: str) -> tuple[Any, dict[str, np.ndarray]]:
    """``(lrpjax cell, its parameters)`` of one Equinox cell (conventions: :func:`from_equinox`)."""
    cls = check_class(cell, (eqx.nn.LSTMCell, eqx.nn.GRUCell), _COMPUTING, where)
    H, E = int(cell.hidden_size), int(cell.input_size)
    G = 4 if cls is eqx.nn.LSTMCell else 3
    w_ih = as_weight(np.asarray(cell.weight_ih), f"{where}.weight_ih", (G * H, E))
    w_hh = as_weight(np.asarray(cell.weight_hh), f"{where}.weight_hh", (G * H, H))
    bias = (as_weight(np.asarray(cell.bias), f"{where}.bias", (G * H,)) if cell.use_bias
            else np.zeros((G * H,), w_ih.dtype))
    if cls is eqx.nn.LSTMCell:
        return StandardCell(), {"W": gate_blocks(w_ih.T, _LSTM_ORDER), "U": gate_blocks(w_hh.T, _LSTM_ORDER),
                                "b": gate_blocks(bias, _LSTM_ORDER)}
    b_hn = as_weight(np.asarray(cell.bias_n), f"{where}.bias_n", (H,)) if cell.use_bias else np.zeros((H,), w_ih.dtype)
    return GRUCell(reset_after=True), {"W": np.ascontiguousarray(w_ih.T), "U": np.ascontiguousarray(w_hh.T),
                                       "b": bias, "b_hn": b_hn}
