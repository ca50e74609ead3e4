"""A stack of layers listed input side first, as the JAX importers (Flax NNX, Equinox) read it.

A JAX framework's model is the user's own module: its ``__call__`` decides how the layers connect, and
an importer cannot read it. The NNX and Equinox importers therefore take the layers as a list, input
side first, with the one composition every item states (:func:`assemble`), and turn each framework
layer into one of the items here. Nothing here imports a framework.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from lrpjax._types import Params
from lrpjax.interop._common import Parts, dense_params
from lrpjax.models import Dense, Recurrent, Sequential

__all__ = ["RecurrentItem", "LinearItem", "ActivationItem", "activation_name", "assemble"]


@dataclass
class RecurrentItem:
    """A recurrent layer: one cell, one parameter dict per direction (forward first)."""

    cell: Any
    directions: list[Params]
    where: str


@dataclass
class LinearItem:
    """A linear layer ``x W + b``: ``W`` (D, M), ``b`` (M,) or None."""

    W: np.ndarray
    b: np.ndarray | None
    where: str


@dataclass
class ActivationItem:
    """An element-wise activation (``"relu"``, ``"tanh"``, ``"sigmoid"``) of the linear layer before it."""

    name: str
    where: str


def activation_name(fn: Any) -> str | None:
    """The name of a JAX activation function recognised by identity (``jax.nn.relu``, ``jax.nn.sigmoid``,
    ``jax.numpy.tanh``, ``jax.nn.tanh`` where it exists), or None for any other callable."""
    import jax
    import jax.numpy as jnp

    known = [(jax.nn.relu, "relu"), (jax.nn.sigmoid, "sigmoid"), (jnp.tanh, "tanh")]
    if hasattr(jax.nn, "tanh"):
        known.append((jax.nn.tanh, "tanh"))
    for function, name in known:
        if fn is function:
            return name
    return None


def assemble(items: list[Any], input_size: int, sequence_output: bool, what: str) -> tuple[Sequential, Params]:
    """The :class:`~lrpjax.models.Sequential` computing the items in order.

    The composition: every recurrent layer but the last feeds the next layer all its steps (a
    bidirectional one ``[forward_t, backward_t]``); the last gives its final state(s) (the final ``h``
    of each direction, concatenated) or, with ``sequence_output``, all its steps; a linear layer acts
    on a vector or at every step of a sequence; an activation folds into the linear layer before it.
    Keys: ``"lstm_<k>"`` / ``"gru_<k>"`` (``_forward`` / ``_backward`` for two directions), ``"dense_<k>"``,
    the last linear layer ``"out"``.

    Args:
        items: :class:`RecurrentItem`, :class:`LinearItem` and :class:`ActivationItem` values.
        input_size: E, the size of an input step.
        sequence_output: whether the last recurrent layer outputs all steps.
        what: the imported object, for the messages.

    Raises:
        ValueError: no recurrent layer, an activation not after a linear layer, or sizes that do not fit
            (naming the item).
    """
    last_recurrent = max((k for k, item in enumerate(items) if isinstance(item, RecurrentItem)), default=None)
    if last_recurrent is None:
        raise ValueError(f"`{what}` holds no recurrent layer (an RNN, a Bidirectional or a cell).")
    layers: list[Any] = []
    params: Params = {}
    parts = Parts(("input",), (input_size,))
    counts = {"recurrent": 0, "dense": 0}
    for k, item in enumerate(items):
        if isinstance(item, RecurrentItem):
            E = int(item.directions[0]["W"].shape[0])
            H = int(item.directions[0]["U"].shape[0])
            if E != parts.size or any(d["W"].shape[0] != E or d["U"].shape != item.directions[0]["U"].shape
                                      for d in item.directions):
                raise ValueError(f"`{item.where}` reads inputs of size {E} with H = {H} per direction; the layer "
                                 f"before it outputs {parts.size} features (directions must share one size).")
            name = f"{'gru' if item.cell.kind == 'gru' else 'lstm'}_{counts['recurrent']}"
            counts["recurrent"] += 1
            layer = Recurrent(item.cell, H, bidirectional=len(item.directions) == 2,
                              sequences=k != last_recurrent or sequence_output, name=name)
            params.update(zip(layer.keys(), item.directions))
            layers.append(layer)
            parts = Parts(layer.keys(), (H,) * len(layer.keys()))
        elif isinstance(item, LinearItem):
            name = f"dense_{counts['dense']}"
            counts["dense"] += 1
            params[name] = dense_params(item.W, item.b, parts, item.where)
            layers.append(Dense(int(item.W.shape[1]), "identity", bias=item.b is not None, name=name))
            parts = Parts((name,), (int(item.W.shape[1]),))
        else:
            last = layers[-1] if layers else None
            if not isinstance(last, Dense) or last.activation != "identity" or parts.names != (last.name,):
                raise ValueError(f"`{item.where}` ({item.name}) must follow a linear layer without activation (it "
                                 "becomes that layer's activation).")
            layers[-1] = dataclasses.replace(last, activation=item.name)
    if isinstance(layers[-1], Dense):
        last = layers[-1]
        params["out"] = params.pop(last.label)
        layers[-1] = dataclasses.replace(last, name="out")
    model = Sequential(tuple(layers))
    model.specs(params)
    return model, params
