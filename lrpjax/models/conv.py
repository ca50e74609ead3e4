"""Convolution over time as a layer of its own: ``Conv1D``, causal or same padding, depthwise or full.

A one-dimensional convolution is a linear mapping per output step: the output at step t reads the
``K`` taps ``x_{t - left + k * dilation}``, k = 0 .. K-1, of the sequence (T, D)::

    z_t = sum_k x_{t - left + k d} W[k] + b                 (full: W (K, D, F), b (F,))
    z_t,c = sum_k x_{t - left + k d, c} W[k, c] + b_c       (depthwise: W (K, D), b (D,), F = D)

with ``left = d (K - 1)`` for causal padding (step t reads only steps <= t) and ``left = d (K - 1) // 2``
for same padding (PyTorch's and Keras' ``padding="same"``: the extra step of an even window goes to the
right). Under a rule set each output step is one :func:`~lrpjax.core.ops.linear` mapping whose inputs are
its taps, one shared denominator, so every linear rule (epsilon, z, z+, alpha-beta, gamma, flat, w², zB)
applies; a depthwise convolution is one mapping per channel, whose inputs are that channel's K taps.

Taps outside the sequence -- before its start, after its end, and, under a mask, on padded steps -- are
zero padding, not inputs: padded steps of a masked batch never reach a valid step (the same result as the
unpadded sequence), and what the rule assigns to a padding tap (nothing under the epsilon and z rules
without sharing, whose shares are proportional to the input; the equal share of ``share=True`` and of the
flat rule) is spread equally over the valid taps of the same output, so that the rule acts on the valid
taps only and relevance is conserved. At the ends of a same-padded sequence the window is therefore
shorter: the first ``left`` and last ``d (K - 1) - left`` outputs read fewer steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from lrpjax._types import Array, Params
from lrpjax.core import ops
from lrpjax.core.rules import RuleSet, safe_divide
from lrpjax.models.layers import Spec, _check_name, _Named, register_layer

__all__ = ["Conv1D", "conv1d", "PADDINGS", "CONV_ACTIVATIONS"]

PADDINGS = ("causal", "same")

CONV_ACTIVATIONS = {"identity": ops.IDENTITY, "relu": ops.RELU, "tanh": ops.TANH, "sigmoid": ops.SIGMOID,
                    "silu": ops.SILU}
"""The element-wise activations a :class:`Conv1D` may apply (relevance passes them unchanged)."""


def _left(kernel_size: int, dilation: int, padding: str) -> int:
    span = dilation * (kernel_size - 1)
    return span if padding == "causal" else span // 2


def conv1d(rules: RuleSet | None, x: Array, W: Array, b: Array | None, mask: Array | None = None, *,
           padding: str = "causal", dilation: int = 1, depthwise: bool = False) -> Array:
    """The convolution of a sequence (module docstring), each output step a linear mapping of its taps.

    Args:
        rules: rule set (``rules.linear`` for every output step), or None for the plain convolution.
        x: sequence, shape (T, D).
        W: kernel, (K, D, F), or (K, D) when ``depthwise``.
        b: bias (F,) (depthwise: (D,)), or None.
        mask: valid steps (T,) bool, a prefix, or None; padded steps are read as zeros.
        padding: ``"causal"`` or ``"same"``.
        dilation: the step between taps, >= 1.
        depthwise: one filter per channel (W (K, D)) instead of a full mapping.

    Returns:
        z, shape (T, F) (depthwise: (T, D)); padded steps hold whatever their taps give (the layer zeroes them).
    """
    T = x.shape[0]
    K = W.shape[0]
    index = (jnp.arange(T)[:, None] - _left(K, dilation, padding) + dilation * jnp.arange(K)[None, :])
    inside = (index >= 0) & (index < T)
    safe = jnp.clip(index, 0, T - 1)
    valid = inside if mask is None else inside & mask[safe]
    # The taps of every output step, (T, K, D); zero padding where a tap is not a valid step (routing).
    windows = jnp.where(valid[:, :, None], x[safe], jnp.zeros((), x.dtype))
    if rules is None:
        if depthwise:
            z = jnp.einsum("tkd,kd->td", windows, W)
        else:
            z = jnp.einsum("tkd,kdf->tf", windows, W)
        return z if b is None else z + b[None, :]
    valid_f = valid.astype(x.dtype)
    if not depthwise:
        return jax.vmap(lambda w, v: _taps_linear(rules, w, v, W, b))(windows, valid_f)

    # Depthwise: channel c is its own mapping, inputs its K taps (K, 1), weights (K, 1, 1).
    def channel(w_c, W_c, b_c):
        return jax.vmap(lambda w, v: _taps_linear(rules, w[:, None], v, W_c[:, None, None], b_c))(w_c, valid_f)[:, 0]

    b_channels = None if b is None else b[:, None]
    if b_channels is None:
        return jax.vmap(lambda w_c, W_c: channel(w_c, W_c, None), in_axes=(2, 1), out_axes=1)(windows, W)
    return jax.vmap(channel, in_axes=(2, 1, 0), out_axes=1)(windows, W, b_channels)


def _taps_forward(window, W, b):
    """``z = sum_k window[k] @ W[k] + b`` for one output step: window (K, D), W (K, D, F)."""
    z = jnp.einsum("kd,kdf->f", window, W)
    return z if b is None else z + b


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _taps_linear(rules, window, valid, W, b):
    """One output step's mapping of its taps, with the rule's backward; ``valid`` (K,) marks the real taps."""
    return _taps_forward(window, W, b)


def _taps_linear_fwd(rules, window, valid, W, b):
    # The plain forward (not the rule's op itself), so that an explanation differentiates truly.
    z = _taps_forward(window, W, b)
    return z, (window, valid, W, b, z)


def _taps_linear_bwd(rules, residuals, r):
    window, valid, W, b, z = residuals
    K, D = window.shape
    r_taps, r_b = rules.linear.linear(tuple(window[k] for k in range(K)), tuple(W[k] for k in range(K)), b, z, r)
    r_window = jnp.stack(r_taps)
    # A padding tap is not an input: what the rule gave it goes, in equal parts, to the valid taps.
    lost = jnp.sum(r_window * (1 - valid)[:, None])
    n_valid = jnp.sum(valid) * D
    r_window = valid[:, None] * (r_window + safe_divide(lost, n_valid))
    # The validity mask is a constant of the mapping and weights are not explained: zero cotangents.
    return r_window, jnp.zeros_like(valid), jnp.zeros_like(W), r_b


_taps_linear.defvjp(_taps_linear_fwd, _taps_linear_bwd)


def _check_positive(field: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{field}` of Conv1D must be a positive int; got {value!r}.")


@register_layer
@dataclass(frozen=True)
class Conv1D(_Named):
    """A one-dimensional convolution over time, then an element-wise activation (module docstring).

    The output is a sequence of the input's length (T, F); padded steps output 0. Parameters under
    ``params[name]``: ``"W"`` (K, D, F) for a full convolution, (K, D) for a depthwise one (one filter per
    channel, F = D); ``"b"`` (F,) when ``bias``. ``W[k]`` multiplies the tap ``x_{t - left + k d}``, so
    ``W[K - 1]`` reads the current step of a causal convolution (PyTorch's ``weight[:, :, k]`` transposed,
    Keras' ``kernel[k]``).

    Relevance: each output step is one linear mapping of its valid taps under the rule set's ``linear``
    rule (``rules.at(name)``); the activation passes relevance unchanged.

    Attributes:
        filters: F (a full convolution; needed by :meth:`init`, checked against the parameters), or None.
            A depthwise convolution has F = D and ignores it unless given (then it must equal D).
        kernel_size: K (needed by :meth:`init`; checked against the parameters), or None.
        padding: ``"causal"`` (step t reads steps <= t) or ``"same"`` (centred window).
        depthwise: one filter per channel instead of a full mapping.
        bias: whether the mapping has a bias.
        dilation: the step between taps, >= 1.
        activation: ``"identity"``, ``"relu"``, ``"tanh"``, ``"sigmoid"`` or ``"silu"``.
        name: the layer's name (None: chosen by the model, ``"conv_k"``).
    """

    filters: int | None = None
    kernel_size: int | None = None
    padding: str = "causal"
    depthwise: bool = False
    bias: bool = True
    dilation: int = 1
    activation: str = "identity"
    name: str | None = None

    kind: ClassVar[str] = "conv1d"
    default_name: ClassVar[str] = "conv"
    needs_sequence: ClassVar[bool] = True
    default_output: ClassVar[bool] = False

    def __post_init__(self):
        for field in ("filters", "kernel_size"):
            if getattr(self, field) is not None:
                _check_positive(field, getattr(self, field))
        _check_positive("dilation", self.dilation)
        if self.padding not in PADDINGS:
            raise ValueError(f"`padding` of Conv1D must be one of {PADDINGS} (a convolution that keeps the "
                             f"sequence's length); got {self.padding!r}.")
        for field in ("depthwise", "bias"):
            if not isinstance(getattr(self, field), bool):
                raise TypeError(f"`{field}` of Conv1D must be a bool; got {type(getattr(self, field)).__name__}.")
        if self.activation not in CONV_ACTIVATIONS:
            raise ValueError(f"`activation` of Conv1D must be one of {tuple(CONV_ACTIVATIONS)}; "
                             f"got {self.activation!r}.")
        _check_name("Conv1D", self.name)

    def sequence_output(self, sequence_input: bool) -> bool:
        """A sequence of the input's length."""
        return True

    def describe(self) -> str:
        """``Conv1D(K=<k>, <padding>[, depthwise][, dilation d], <activation>[, bias])``."""
        return (f"Conv1D(K={self.kernel_size or '?'}, {self.padding}{', depthwise' if self.depthwise else ''}"
                f"{f', dilation {self.dilation}' if self.dilation > 1 else ''}, {self.activation}"
                f"{', bias' if self.bias else ''})")

    def keys(self) -> tuple[str, ...]:
        return (self.label,)

    def rule_names(self) -> tuple[str, ...]:
        return (self.label,)

    def input_size(self, params: Params) -> int:
        """D read off the kernel ``W``."""
        return int(jnp.shape(self.own_entry(params, "W", "the kernel 'W'"))[1])

    def output_spec(self, params: Params, spec: Spec) -> Spec:
        """Checks ``params[name]`` against the input ``spec``; the output's spec.

        Raises:
            ValueError: a vector input, a missing or unexpected key, a kernel or bias of the wrong shape, K
                other than ``kernel_size``, F other than ``filters``.
        """
        where = f"params[{self.label!r}]"
        if not spec.sequence:
            raise ValueError(f"layer {self.label!r} (Conv1D) needs a sequence input; the layer before it outputs "
                             "a vector.")
        if not isinstance(params, dict) or self.label not in params:
            raise ValueError(f"`params` must have key {self.label!r} (layer {self.label!r}); got "
                             f"{sorted(params) if isinstance(params, dict) else type(params).__name__}.")
        layer = params[self.label]
        expected = {"W", "b"} if self.bias else {"W"}
        if not isinstance(layer, dict) or set(layer) != expected:
            raise ValueError(f"`{where}` must be a dict with exactly the keys {sorted(expected)} (bias={self.bias}); "
                             f"got {sorted(layer) if isinstance(layer, dict) else type(layer).__name__}.")
        shape = tuple(jnp.shape(layer["W"]))
        D = spec.size
        if self.depthwise:
            if len(shape) != 2 or shape[1] != D:
                raise ValueError(f"`{where}['W']` of a depthwise Conv1D must have shape (K, D) = (K, {D}); got {shape}.")
            F = D
        else:
            if len(shape) != 3 or shape[1] != D:
                raise ValueError(f"`{where}['W']` must have shape (K, D, F) = (K, {D}, F); got {shape}.")
            F = shape[2]
        if self.kernel_size is not None and shape[0] != self.kernel_size:
            raise ValueError(f"`{where}['W']` has K = {shape[0]} taps; layer {self.label!r} has kernel_size = "
                             f"{self.kernel_size}.")
        if self.filters is not None and F != self.filters:
            raise ValueError(f"`{where}['W']` has F = {F} filters; layer {self.label!r} has filters = {self.filters}.")
        if self.bias and tuple(jnp.shape(layer["b"])) != (F,):
            raise ValueError(f"`{where}['b']` must have shape (F,) = ({F},); got {tuple(jnp.shape(layer['b']))}.")
        return Spec((self.label,), (F,), True)

    def init(self, key: Array, spec: Spec, dtype=jnp.float32) -> Params:
        """Uniform weights with bound sqrt(1 / (K * fan-in)) (PyTorch's default), zero bias."""
        if self.kernel_size is None or (self.filters is None and not self.depthwise):
            raise ValueError(f"layer {self.label!r} (Conv1D) needs `kernel_size` (and `filters` unless depthwise) "
                             "to be initialised.")
        D, K = spec.size, self.kernel_size
        F: int = D if self.depthwise or self.filters is None else self.filters
        fan_in = K if self.depthwise else K * D
        bound = (1.0 / fan_in) ** 0.5
        shape: tuple[int, ...] = (K, D) if self.depthwise else (K, D, F)
        layer = {"W": jax.random.uniform(key, shape, dtype, -bound, bound)}
        if self.bias:
            layer["b"] = jnp.zeros((F,), dtype)
        return {self.label: layer}

    def apply(self, params: Params, parts: tuple[Array, ...], spec: Spec, mask: Array | None,
              rules: RuleSet | None, taps: Params | None) -> tuple[Array, ...]:
        """``act(conv(x) + b)`` over the concatenated input parts (T, D); one output part (T, F)."""
        layer = params[self.label]
        x = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)
        if taps is not None:
            x = x + taps["states"][self.label]
        layer_rules = None if rules is None else rules.at(self.label)
        z = conv1d(layer_rules, x, layer["W"], layer.get("b") if self.bias else None, mask, padding=self.padding,
                   dilation=self.dilation, depthwise=self.depthwise)
        act = CONV_ACTIVATIONS[self.activation]
        out = z if act is ops.IDENTITY else ops.activation(layer_rules, act, z)
        if mask is not None:
            out = jnp.where(mask[:, None], out, jnp.zeros((), out.dtype))
        return (out,)

    def zero_taps(self, params: Params, spec: Spec, T: int, dtype) -> tuple[Params, Params]:
        """``({}, {name: zeros (T, D)})``: a probe on the layer's input."""
        return {}, {self.label: jnp.zeros((T, spec.size), dtype)}

    def config(self) -> dict[str, Any]:
        return {"type": self.kind, "filters": self.filters, "kernel_size": self.kernel_size, "padding": self.padding,
                "depthwise": self.depthwise, "bias": self.bias, "dilation": self.dilation,
                "activation": self.activation, "name": self.name}

    @classmethod
    def from_config(cls, fields: dict[str, Any]) -> Conv1D:
        return cls(**fields)
