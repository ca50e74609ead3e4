"""LSTM cells built only from the elementary computations of ``ops.py``, and their unrolling.

A cell is a frozen (hashable) dataclass holding static configuration; its parameters are a plain
dict of arrays. Cells process one example: ``x_t`` of shape (E,), carry ``(y, c)`` each (H,);
batching is ``jax.vmap`` at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax import lax

from lrpjax import ops
from lrpjax._types import Array, Params
from lrpjax.rules import RuleSet

__all__ = ["StandardCell", "unroll", "check_cell_params", "zero_layer_taps"]


@dataclass(frozen=True)
class StandardCell:
    """The standard LSTM cell without peepholes, Eqs. (11.1)-(11.6)::

        z_t = g(W_z x_t + U_z y_{t-1} + b_z)      cell input   (11.1)
        i_t = sigma(W_i x_t + U_i y_{t-1} + b_i)  input gate   (11.2)
        f_t = sigma(W_f x_t + U_f y_{t-1} + b_f)  forget gate  (11.3)
        c_t = i_t * z_t + f_t * c_{t-1}            cell state   (11.4)
        o_t = sigma(W_o x_t + U_o y_{t-1} + b_o)  output gate  (11.5)
        y_t = o_t * h(c_t)                         cell output  (11.6)

    with ``g = h = tanh``. Weights are stacked in the gate order i, z, f, o (the reference's
    i, g, f, o): ``W (E, 4H)``, ``U (H, 4H)``, ``b (4H,)``. The four pre-activations are one linear
    mapping with inputs ``(x_t, y_{t-1})``; ``i*z``, ``f*c_{t-1}`` and ``o*h(c)`` are gated
    interactions; ``c_t`` is an accumulation. Carry order ``(y, c)``.
    """

    kind: ClassVar[str] = "standard"

    def shapes(self, E: int, H: int) -> dict[str, tuple[int, ...]]:
        """Parameter shapes for input size ``E`` and ``H`` cells."""
        return {"W": (E, 4 * H), "U": (H, 4 * H), "b": (4 * H,)}

    def init(self, key: Array, E: int, H: int, dtype=jnp.float32) -> Params:
        """Uniform(-1/sqrt(H), 1/sqrt(H)) weights, zero biases."""
        k_w, k_u = jax.random.split(key)
        bound = 1.0 / float(H) ** 0.5
        return {
            "W": jax.random.uniform(k_w, (E, 4 * H), dtype, -bound, bound),
            "U": jax.random.uniform(k_u, (H, 4 * H), dtype, -bound, bound),
            "b": jnp.zeros((4 * H,), dtype),
        }

    def hidden_size(self, params: Params) -> int:
        return params["U"].shape[0]

    def step(self, params: Params, rules: RuleSet | None, carry: tuple[Array, Array],
             x_t: Array) -> tuple[Array, Array]:
        """One time step, ``(y_{t-1}, c_{t-1}), x_t -> (y_t, c_t)``; shapes (H,), (H,), (E,)."""
        y_prev, c_prev = carry
        pre = ops.linear(rules, (x_t, y_prev), (params["W"], params["U"]), params["b"])
        z_i, z_z, z_f, z_o = jnp.split(pre, 4)
        p_in = ops.gated(rules, z_i, z_z, ops.SIGMOID, ops.TANH)
        # The forget product is a gated interaction whose signal is the previous cell state.
        p_f = ops.gated(rules, z_f, c_prev, ops.SIGMOID, ops.IDENTITY)
        c = ops.accumulate(rules, p_f, p_in)
        y = ops.gated(rules, z_o, c, ops.SIGMOID, ops.TANH)
        return y, c


def check_cell_params(cell, params: Params, E: int, where: str) -> int:
    """Checks a cell's parameter dict against ``cell.shapes``; returns H.

    Raises:
        ValueError: naming the parameter, the expected and the received shape.
    """
    if not isinstance(params, dict):
        raise TypeError(f"`{where}` must be a dict of arrays; got {type(params).__name__}.")
    H = cell.hidden_size(params)
    expected = cell.shapes(E, H)
    missing = sorted(set(expected) - set(params))
    if missing:
        raise ValueError(f"`{where}` is missing parameters {missing} of the {cell.kind} cell.")
    for name, shape in expected.items():
        got = tuple(jnp.shape(params[name]))
        if got != shape:
            raise ValueError(f"`{where}[{name!r}]` must have shape {shape} for E={E}, H={H}; got {got}.")
    return H


def zero_layer_taps(T: int, H: int, dtype) -> dict[str, Array]:
    """Zero probes for one recurrent layer: initial state and the state after every step."""
    return {"y0": jnp.zeros((H,), dtype), "c0": jnp.zeros((H,), dtype),
            "y": jnp.zeros((T, H), dtype), "c": jnp.zeros((T, H), dtype)}


def unroll(cell, params: Params, x: Array, rules: RuleSet | None = None, mask: Array | None = None,
           taps: dict[str, Array] | None = None) -> tuple[Array, Array]:
    """Runs ``cell`` over ``x`` with ``lax.scan``; a masked step leaves the state untouched.

    Args:
        cell: a cell (``StandardCell`` or an LRP-friendly variant).
        params: the cell's parameters.
        x: input sequence, shape (T, E).
        rules: rule set or None.
        mask: valid steps, shape (T,) bool; None means all valid.
        taps: optional zero probes ``{"y0", "c0": (H,), "y", "c": (T, H)}`` added to the initial
            state and to the state after each step. Their cotangent is the relevance (or gradient)
            arriving at those states, which is how intermediate relevance is read out.

    Returns:
        (final output y_T (H,), outputs of every step (T, H)).
    """
    H = cell.hidden_size(params)
    zeros = jnp.zeros((H,), x.dtype)
    carry0 = (zeros, zeros) if taps is None else (zeros + taps["y0"], zeros + taps["c0"])
    inputs = (x,) if mask is None else (x, mask)
    if taps is not None:
        inputs = inputs + (taps["y"], taps["c"])

    def step(carry, inputs_t):
        """``((y, c), (x_t[, m_t][, tap_y, tap_c])) -> ((y', c'), y')``."""
        y, c = cell.step(params, rules, carry, inputs_t[0])
        if taps is not None:
            y, c = y + inputs_t[-2], c + inputs_t[-1]
        if mask is not None:
            y = jnp.where(inputs_t[1], y, carry[0])
            c = jnp.where(inputs_t[1], c, carry[1])
        return (y, c), y

    (y_last, _), ys = lax.scan(step, carry0, inputs)
    return y_last, ys
