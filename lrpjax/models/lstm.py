"""LSTM sequence models: one LSTM layer (uni- or bidirectional) and a linear output without bias.

``LSTM(cell, bidirectional)`` is a named composition of layers (:class:`~lrpjax.models.Sequential`): a
:class:`~lrpjax.models.layers.Recurrent` layer returning its final state(s) and a
:class:`~lrpjax.models.layers.Dense` output layer without bias. ``apply(params, x, rules=None)`` maps
one embedded sequence ``x`` (T, E) to scores (C,): class scores for classification, or C regression
outputs. In the bidirectional model both directions' final outputs enter the output layer as two
inputs of one linear mapping with one shared denominator, as in the reference implementation.
Parameter layout:

    unidirectional:  {"lstm": cell params, "out": {"W": (H, C)}}
    bidirectional:   {"left": cell params, "right": cell params,
                      "out": {"W_left": (H, C), "W_right": (H, C)}}

The right encoder of a bidirectional model reads the valid prefix reversed (x_L .. x_1 for a mask
with L valid steps), then the padding. Rule overrides may name ``"lstm"`` (the recurrent layer, both
directions), ``"left"``, ``"right"`` and ``"out"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import jax
import jax.numpy as jnp

from lrpjax._types import Array, ArrayLike, Params
from lrpjax.core.cells import StandardCell
from lrpjax.models.layers import Dense, Recurrent, Spec, reverse_valid
from lrpjax.models.sequential import Sequential, check_inputs
from lrpjax.core.rules import RuleSet

__all__ = ["LSTM", "apply", "init", "model", "check_inputs", "reverse_valid"]


@dataclass(frozen=True)
class LSTM:
    """An LSTM sequence model with a linear output layer without bias.

    Attributes:
        cell: the memory cell (``StandardCell`` or an LRP-friendly variant of ``lrpjax.core.cells``).
        bidirectional: add a right-to-left encoder (the reference's BiLSTM).
    """

    cell: Any = StandardCell()
    bidirectional: bool = False

    @cached_property
    def network(self) -> Sequential:
        """The composition this model is: ``Recurrent`` (final states) then ``Dense`` without bias."""
        recurrent = Recurrent(self.cell, bidirectional=self.bidirectional, name="lstm",
                              directions=("left", "right") if self.bidirectional else None)
        return Sequential((recurrent, Dense(bias=False, name="out")))

    @property
    def layers(self) -> tuple[str, ...]:
        """Names of the recurrent directions (also the keys of ``params`` and of ``RuleSet.at``)."""
        return self.network.layers[0].keys()

    @property
    def names(self) -> tuple[str, ...]:
        """Every name a rule override may use: ``"lstm"``, the directions, ``"out"``."""
        return self.network.names

    @property
    def kind(self) -> str:
        return ("bilstm" if self.bidirectional else "lstm") + ("" if self.cell.kind == "standard"
                                                               else f"-{self.cell.kind}")

    def init(self, key: Array, E: int, H: int, C: int, dtype=jnp.float32) -> Params:
        """Random parameters for input size E, H cells per direction and C outputs."""
        keys = jax.random.split(key, len(self.layers) + 1)
        params = {name: self.cell.init(k, E, H, dtype) for name, k in zip(self.layers, keys)}
        bound = 1.0 / float(H) ** 0.5
        out_keys = jax.random.split(keys[-1], len(self.layers))
        params["out"] = {self._out_key(name): jax.random.uniform(k, (H, C), dtype, -bound, bound)
                         for name, k in zip(self.layers, out_keys)}
        return params

    def _out_key(self, layer: str) -> str:
        return f"W_{layer}" if self.bidirectional else "W"

    def sizes(self, params: Params) -> tuple[int, int, int]:
        """(E, H, C) read off ``params``, checking every shape.

        Raises:
            ValueError: a missing parameter or a shape that does not fit the others.
        """
        specs = self.network.specs(params)
        return specs[0].size, specs[1].sizes[0], specs[-1].size

    def output_size(self, params: Params) -> int:
        """C, the number of outputs (checks every shape)."""
        return self.sizes(params)[2]

    def check_inputs(self, x: Any, mask: Any) -> None:
        """Static checks of one input sequence (T, E) and its mask (T,); see :func:`check_inputs`."""
        check_inputs(x, mask)

    def apply(self, params: Params, x: ArrayLike, rules: RuleSet | None = None, *,
              mask: ArrayLike | None = None, taps: Params | None = None) -> Array:
        """Scores of one embedded sequence.

        Args:
            params: model parameters (layout in the module docstring).
            x: embedded sequence, shape (T, E).
            rules: rule set (relevance backward) or None (true gradients).
            mask: valid steps, shape (T,) bool; padded steps leave the state untouched.
            taps: zero probes from :meth:`zero_taps`, to read relevance at the states.

        Returns:
            scores, shape (C,).
        """
        return self.network.apply(params, x, rules, mask=mask, taps=taps)

    def encode(self, params: Params, x: ArrayLike, rules: RuleSet | None = None, *,
               mask: ArrayLike | None = None, taps: Params | None = None) -> list[Array]:
        """The recurrent part alone: the final output ``y`` (H,) of each direction in :attr:`layers`.

        For models with other layers after the recurrence (e.g. an ``MLP`` head on the concatenated
        final states); ``params["out"]`` is not read. Arguments as in :meth:`apply`.
        """
        recurrent = self.network.layers[0]
        E = recurrent.input_size(params)
        spec = Spec(("input",), (E,), True)
        recurrent.output_spec(params, spec)
        check_inputs(x, mask, E)
        mask = None if mask is None else jnp.asarray(mask)
        return list(recurrent.apply(params, (jnp.asarray(x),), spec, mask, rules, taps))

    def zero_taps(self, params: Params, x: ArrayLike) -> Params:
        """Zero probes for :meth:`apply`: ``{"initial": {layer: {"y0", "c0"}}, "states": {layer: {"y", "c"},
        "out": (len(layers) * H,)}}``.

        The cotangent of ``"states"[layer]["y"][t]`` is the relevance at the layer's output after the
        step that read position t (original positions for the right encoder too); that of
        ``"states"["out"]`` the relevance at the output layer's input (the final states).
        """
        return self.network.zero_taps(params, x)


model = LSTM()
apply = model.apply
init = model.init
