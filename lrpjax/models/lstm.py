"""Recurrent sequence models: an LSTM layer (uni- or bidirectional) and a linear output without bias.

``apply(params, x, rules=None)`` maps one embedded sequence ``x`` (T, E) to scores (C,): class
scores for classification, or C regression outputs. The output layer is one linear mapping without
bias; in the bidirectional model both directions' final outputs enter it with one shared denominator,
as in the reference implementation. Parameter layout:

    unidirectional:  {"lstm": cell params, "out": {"W": (H, C)}}
    bidirectional:   {"left": cell params, "right": cell params,
                      "out": {"W_left": (H, C), "W_right": (H, C)}}

The right encoder of a bidirectional model reads the valid prefix reversed (x_L .. x_1 for a mask
with L valid steps), then the padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from lrpjax import ops
from lrpjax._types import Array, ArrayLike, Params
from lrpjax.cells import StandardCell, check_cell_params, unroll, zero_layer_taps
from lrpjax.rules import RuleSet

__all__ = ["LSTM", "apply", "init", "model", "check_inputs"]


def check_inputs(x: Any, mask: Any, E: int | None = None) -> None:
    """Static checks of an embedded sequence and its mask (free under ``jit``).

    Raises:
        ValueError: ``x`` not (T, E) with T >= 1, or ``mask`` not (T,) bool.
        TypeError: ``x`` not floating point.
    """
    shape = jnp.shape(x)
    if len(shape) != 2:
        raise ValueError(f"`x` must be an embedded sequence of shape (T, E); got shape {shape}.")
    if shape[0] == 0:
        raise ValueError("`x` is an empty sequence (T = 0); at least one step is needed.")
    if E is not None and shape[1] != E:
        raise ValueError(f"`x` must have shape (T, E) with E = {E} (the model's input size); got {shape}.")
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise TypeError(f"`x` must be floating point; got dtype {jnp.result_type(x)}.")
    if mask is not None:
        if tuple(jnp.shape(mask)) != (shape[0],):
            raise ValueError(f"`mask` must have shape (T,) = ({shape[0]},) to match `x`; got {jnp.shape(mask)}.")
        if jnp.result_type(mask) != jnp.bool_:
            raise TypeError(f"`mask` must be boolean; got dtype {jnp.result_type(mask)}.")


def reverse_valid(mask: Array) -> Array:
    """Indices that reverse the valid prefix of a sequence and keep the padding in place, (T,)."""
    T = mask.shape[0]
    t = jnp.arange(T)
    length = jnp.sum(mask.astype(jnp.int32))
    return jnp.where(t < length, length - 1 - t, t)


@dataclass(frozen=True)
class LSTM:
    """An LSTM sequence model with a linear output layer without bias.

    Attributes:
        cell: the memory cell (``StandardCell`` or an LRP-friendly variant of ``lrpjax.cells``).
        bidirectional: add a right-to-left encoder (the reference's BiLSTM).
    """

    cell: Any = StandardCell()
    bidirectional: bool = False

    @property
    def layers(self) -> tuple[str, ...]:
        """Names of the recurrent layers (also the keys of ``params`` and of ``RuleSet.at``)."""
        return ("left", "right") if self.bidirectional else ("lstm",)

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
        if not isinstance(params, dict):
            raise TypeError(f"`params` must be a dict of arrays; got {type(params).__name__}.")
        missing = [name for name in (*self.layers, "out") if name not in params]
        if missing:
            raise ValueError(f"`params` of a {self.kind} model must have keys {list(self.layers) + ['out']}; "
                             f"missing {missing}.")
        E = jnp.shape(params[self.layers[0]]["W"])[0]
        H = None
        for name in self.layers:
            H_layer = check_cell_params(self.cell, params[name], E, f"params[{name!r}]")
            if H is not None and H_layer != H:
                raise ValueError(f"Both directions must have the same H; got {H} and {H_layer}.")
            H = H_layer
        C = None
        for name in self.layers:
            key = self._out_key(name)
            if key not in params["out"]:
                raise ValueError(f"`params['out']` must have key {key!r}.")
            shape = tuple(jnp.shape(params["out"][key]))
            if len(shape) != 2 or shape[0] != H or (C is not None and shape[1] != C):
                raise ValueError(f"`params['out'][{key!r}]` must have shape (H, C) = ({H}, {C or 'C'}); got {shape}.")
            C = shape[1]
        return E, H, C

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
        self.sizes(params)
        finals = self.encode(params, x, rules, mask=mask, taps=taps)
        out_rules = None if rules is None else rules.at("out")
        weights = [params["out"][self._out_key(name)] for name in self.layers]
        return ops.linear(out_rules, finals, weights, None)

    def encode(self, params: Params, x: ArrayLike, rules: RuleSet | None = None, *,
               mask: ArrayLike | None = None, taps: Params | None = None) -> list[Array]:
        """The recurrent part alone: the final output ``y`` (H,) of each layer in :attr:`layers`.

        For models with other layers after the recurrence (e.g. an ``MLP`` head on the concatenated
        final states); ``params["out"]`` is not read. Arguments as in :meth:`apply`.
        """
        E = jnp.shape(params[self.layers[0]]["W"])[0]
        for name in self.layers:
            check_cell_params(self.cell, params[name], E, f"params[{name!r}]")
        check_inputs(x, mask, E)
        x = jnp.asarray(x)
        mask = None if mask is None else jnp.asarray(mask)
        finals = []
        for name in self.layers:
            x_dir, taps_dir = x, None if taps is None else _layer_taps(taps, name)
            if name == "right":
                order = reverse_valid(jnp.ones((x.shape[0],), bool) if mask is None else mask)
                x_dir = x[order]
                if taps_dir is not None:
                    taps_dir = {**taps_dir, "y": taps_dir["y"][order], "c": taps_dir["c"][order]}
            layer_rules = None if rules is None else rules.at(name)
            y_last, _ = unroll(self.cell, params[name], x_dir, layer_rules, mask, taps_dir)
            finals.append(y_last)
        return finals

    def zero_taps(self, params: Params, x: ArrayLike) -> Params:
        """Zero probes for :meth:`apply`: ``{"initial": {layer: {"y0", "c0"}}, "states": {layer: {"y", "c"}}}``.

        The cotangent of ``"states"[layer]["y"][t]`` is the relevance at the layer's output after the
        step that read position t (original positions for the right encoder too).
        """
        _, H, _ = self.sizes(params)
        T = jnp.shape(x)[0]
        initial, states = {}, {}
        for name in self.layers:
            layer = zero_layer_taps(T, H, jnp.result_type(x))
            initial[name] = {"y0": layer["y0"], "c0": layer["c0"]}
            states[name] = {"y": layer["y"], "c": layer["c"]}
        return {"initial": initial, "states": states}


def _layer_taps(taps: Params, name: str) -> dict[str, Array]:
    return {**taps["initial"][name], **taps["states"][name]}


model = LSTM()
apply = model.apply
init = model.init
