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

__all__ = ["StandardCell", "NondecreasingCell", "MarkovCell", "GatelessCell", "unroll", "check_cell_params",
           "zero_layer_taps"]


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

    def project(self, params: Params, rules: RuleSet | None, x: Array) -> Array | None:
        """Input projections that need no relevance, for all steps at once (one large matrix product
        outside the scan instead of T small ones); None when every projection carries relevance.

        Without rules: ``x W + b``, (T, 4H). Under rules every step's input mapping stays inside the
        rule's linear mapping (hoisting the gates' part under LRP-all measured slower).
        """
        return x @ params["W"] + params["b"][None] if rules is None else None

    def step(self, params: Params, rules: RuleSet | None, carry: tuple[Array, Array],
             x_t: Array, tap_c: Array | None = None, projected: Array | None = None) -> tuple[Array, Array]:
        """One time step, ``(y_{t-1}, c_{t-1}), x_t -> (y_t, c_t)``; shapes (H,), (H,), (E,).

        ``tap_c`` (H,), a zero probe added to ``c_t`` before its use in ``y_t``, reads out the relevance
        arriving at the cell state (see ``unroll``). ``projected`` is this step's row of
        :meth:`project`, when the caller computed it.
        """
        y_prev, c_prev = carry
        if rules is None and projected is not None:
            z_i, z_z, z_f, z_o = jnp.split(projected + y_prev @ params["U"], 4)
        elif rules is not None and rules.gate.mode == "all":
            z_i, z_z, z_f, z_o = _preactivations_signal_take_all(params, rules, x_t, y_prev)
        else:
            pre = ops.linear(rules, (x_t, y_prev), (params["W"], params["U"]), params["b"])
            z_i, z_z, z_f, z_o = jnp.split(pre, 4)
        p_in = ops.gated(rules, z_i, z_z, ops.SIGMOID, ops.TANH)
        # The forget product is a gated interaction whose signal is the previous cell state.
        p_f = ops.gated(rules, z_f, c_prev, ops.SIGMOID, ops.IDENTITY)
        c = ops.accumulate(rules, p_f, p_in)
        c = c if tap_c is None else c + tap_c
        y = ops.gated(rules, z_o, c, ops.SIGMOID, ops.TANH)
        return y, c


# --- LRP-friendly cells (Sec. 11.4) ---------------------------------------------------------------

def _check_scale(cell_name: str, name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"`{name}` of {cell_name} must be a Python float; got {type(value).__name__}.")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"`{name}` of {cell_name} must be a finite number > 0; got {value!r}.")
    return float(value)


def _check_bias(cell_name: str, name: str, value: float, strict: bool) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"`{name}` of {cell_name} must be a Python float; got {type(value).__name__}.")
    if not (value < 0 if strict else value <= 0):
        raise ValueError(f"`{name}` of {cell_name} must be {'< 0' if strict else '<= 0'} "
                         f"(Sec. 11.4.1, A2/A7/A8); got {value!r}.")
    return float(value)


@dataclass(frozen=True)
class _LRPCell:
    """What the three LRP-friendly cells share: the positive cell input (11.7) and the recurrent gates.

    Parameters (``G`` recurrent gates: 2 nondecreasing, 1 Markov, 0 gateless)::

        W   (E, H)     W_z, the cell input's input weights (A4: the only weights that read x_t)
        b_z (H,)       cell input bias, initialised to ``b_z_init < 0`` (A2)
        U   (H, G*H)   recurrent gate weights, stacked in the gate order i, o (A5, A6: no W_i, W_o)
        b   (G*H,)     gate biases in the same order, initialised to ``b_i_init < 0`` (A7) and
                       ``b_o_init <= 0`` (A8)

    There is no forget gate (A1, ``f_t = 1``) and no recurrent cell-input weight ``U_z`` (A4): the
    constraints A1, A4-A6 hold by construction, A9 (``c_0 = 0``) by :func:`unroll`, and ``c_t >= 0``
    nondecreasing because ``z_t > 0`` and ``i_t > 0``. The sign constraints on the biases (A2, A7, A8)
    hold at initialisation only: training may move them.
    """

    a_g: float = 2.0
    a_h: float = 1.0
    b_z_init: float = -2.0
    b_i_init: float = -1.0
    b_o_init: float = -1.0

    gates: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        name = type(self).__name__
        object.__setattr__(self, "a_g", _check_scale(name, "a_g", self.a_g))
        object.__setattr__(self, "a_h", _check_scale(name, "a_h", self.a_h))
        object.__setattr__(self, "b_z_init", _check_bias(name, "b_z_init", self.b_z_init, True))
        object.__setattr__(self, "b_i_init", _check_bias(name, "b_i_init", self.b_i_init, True))
        object.__setattr__(self, "b_o_init", _check_bias(name, "b_o_init", self.b_o_init, False))

    @property
    def g(self) -> ops.Activation:
        """Cell input activation ``g = a_g * sigmoid`` (A2)."""
        return ops.Activation("sigmoid", self.a_g)

    @property
    def h(self) -> ops.Activation:
        """Cell state activation ``h = a_h * tanh``, ``h(0) = 0`` (A3)."""
        return ops.Activation("tanh", self.a_h)

    def shapes(self, E: int, H: int) -> dict[str, tuple[int, ...]]:
        """Parameter shapes for input size ``E`` and ``H`` cells."""
        shapes = {"W": (E, H), "b_z": (H,)}
        if self.gates:
            G = len(self.gates)
            shapes.update({"U": (H, G * H), "b": (G * H,)})
        return shapes

    def init(self, key: Array, E: int, H: int, dtype=jnp.float32) -> Params:
        """Uniform(-1/sqrt(H), 1/sqrt(H)) weights; the negative biases of A2, A7, A8."""
        k_w, k_u = jax.random.split(key)
        bound = 1.0 / float(H) ** 0.5
        params = {"W": jax.random.uniform(k_w, (E, H), dtype, -bound, bound),
                  "b_z": jnp.full((H,), self.b_z_init, dtype)}
        if self.gates:
            G = len(self.gates)
            init_bias = {"i": self.b_i_init, "o": self.b_o_init}
            params["U"] = jax.random.uniform(k_u, (H, G * H), dtype, -bound, bound)
            params["b"] = jnp.concatenate([jnp.full((H,), init_bias[gate], dtype) for gate in self.gates])
        return params

    def hidden_size(self, params: Params) -> int:
        return params["W"].shape[1]

    def _cell_input(self, params: Params, rules: RuleSet | None, x_t: Array) -> Array:
        """Pre-activation ``W_z x_t + b_z`` (H,) of the cell input; a linear mapping of the input only."""
        return ops.linear(rules, (x_t,), (params["W"],), params["b_z"])

    def _gate_inputs(self, params: Params, rules: RuleSet | None, y_prev: Array) -> list[Array]:
        """Gate pre-activations ``U_g y_{t-1} + b_g``, one (H,) per gate: recurrent input only."""
        pre = ops.linear(rules, (y_prev,), (params["U"],), params["b"])
        return jnp.split(pre, len(self.gates))


@dataclass(frozen=True)
class NondecreasingCell(_LRPCell):
    """LSTM cell with nondecreasing memory for LRP backward analysis, Eqs. (11.7)-(11.11)::

        z_t = a_g sigma(W_z x_t + b_z)       cell input   (11.7)
        i_t = sigma(U_i y_{t-1} + b_i)       input gate   (11.8)
        c_t = i_t * z_t + c_{t-1}            cell state   (11.9)
        o_t = sigma(U_o y_{t-1} + b_o)       output gate  (11.10)
        y_t = o_t * a_h tanh(c_t)            cell output  (11.11)

    Parameters ``W (E, H)``, ``b_z (H,)``, ``U (H, 2H)`` and ``b (2H,)`` with gates stacked i, o.
    ``W_z x_t + b_z`` and ``U y_{t-1} + b`` are two linear mappings; ``i * z`` and ``o * h(c)`` are
    gated interactions (Table 11.1 decides whether the gates receive relevance); ``c_t`` is an
    accumulation. Carry order ``(y, c)``. Constraints A1-A9 of Sec. 11.4.1 (see ``_LRPCell``).

    Attributes:
        a_g: cell input scale, ``g = a_g sigma`` (A2; the chapter suggests 2, 3 or 4). Default 2.
        a_h: cell state scale, ``h = a_h tanh`` (A3; 1, 2 or 4). Default 1.
        b_z_init, b_i_init, b_o_init: initial biases (A2, A7: < 0; A8: <= 0).
    """

    kind: ClassVar[str] = "nondecreasing"
    gates: ClassVar[tuple[str, ...]] = ("i", "o")

    def step(self, params: Params, rules: RuleSet | None, carry: tuple[Array, Array],
             x_t: Array, tap_c: Array | None = None) -> tuple[Array, Array]:
        """One time step, ``(y_{t-1}, c_{t-1}), x_t -> (y_t, c_t)``; shapes (H,), (H,), (E,).

        ``tap_c`` (H,), a zero probe added to ``c_t`` before its use in ``y_t``, reads out the relevance
        arriving at the cell state (see ``unroll``).
        """
        y_prev, c_prev = carry
        z_z = self._cell_input(params, rules, x_t)
        z_i, z_o = self._gate_inputs(params, rules, y_prev)
        p = ops.gated(rules, z_i, z_z, ops.SIGMOID, self.g)
        c = ops.accumulate(rules, c_prev, p)
        c = c if tap_c is None else c + tap_c
        y = ops.gated(rules, z_o, c, ops.SIGMOID, self.h)
        return y, c


@dataclass(frozen=True)
class MarkovCell(_LRPCell):
    """LSTM cell keeping the Markov property (Fig. 11.4b), Eqs. (11.12)-(11.15)::

        z_t = a_g sigma(W_z x_t + b_z)       cell input   (11.12)
        i_t = sigma(U_i y_{t-1} + b_i)       input gate   (11.13)
        c_t = i_t * z_t + c_{t-1}            cell state   (11.14)
        y_t = a_h tanh(c_t)                  cell output  (11.15)

    No forget and no output gate: a stored contribution can be neither erased nor hidden later
    (Sec. 11.4.2). Parameters ``W (E, H)``, ``b_z (H,)``, ``U (H, H)`` (= U_i) and ``b (H,)`` (= b_i).
    ``i * z`` is a gated interaction, so relevance reaches the input gate, and through it earlier
    steps, only under the product rules that give the gate a share (LRP-prop, -abs, -half); ``y_t``
    is an element-wise activation (relevance passes through). Carry order ``(y, c)``.
    ``b_o_init`` is unused. Constraints A1-A9 of Sec. 11.4.1 (see ``_LRPCell``).

    Attributes:
        a_g: cell input scale, ``g = a_g sigma`` (A2; 2, 3 or 4). Default 2.
        a_h: cell state scale, ``h = a_h tanh`` (A3; 1, 2 or 4). Default 1.
        b_z_init, b_i_init: initial biases (< 0, A2 and A7).
    """

    kind: ClassVar[str] = "markov"
    gates: ClassVar[tuple[str, ...]] = ("i",)

    def step(self, params: Params, rules: RuleSet | None, carry: tuple[Array, Array],
             x_t: Array, tap_c: Array | None = None) -> tuple[Array, Array]:
        """One time step, ``(y_{t-1}, c_{t-1}), x_t -> (y_t, c_t)``; shapes (H,), (H,), (E,).

        ``tap_c`` (H,), a zero probe added to ``c_t`` before its use in ``y_t``, reads out the relevance
        arriving at the cell state (see ``unroll``).
        """
        y_prev, c_prev = carry
        z_z = self._cell_input(params, rules, x_t)
        (z_i,) = self._gate_inputs(params, rules, y_prev)
        p = ops.gated(rules, z_i, z_z, ops.SIGMOID, self.g)
        c = ops.accumulate(rules, c_prev, p)
        c = c if tap_c is None else c + tap_c
        y = ops.activation(rules, self.h, c)
        return y, c


@dataclass(frozen=True)
class GatelessCell(_LRPCell):
    """LSTM cell without gates (Fig. 11.4c), Eqs. (11.16)-(11.18)::

        z_t = a_g sigma(W_z x_t + b_z)       cell input   (11.16)
        c_t = z_t + c_{t-1}                  cell state   (11.17)
        y_t = a_h tanh(c_t)                  cell output  (11.18)

    Parameters ``W (E, H)`` and ``b_z (H,)`` only; ``y_{t-1}`` is not read (the carry still holds it).
    Relevance is redistributed across the sequence by the accumulation alone, identically under every
    product rule. Carry order ``(y, c)``. ``b_i_init`` and ``b_o_init`` are unused.

    Attributes:
        a_g: cell input scale, ``g = a_g sigma`` (A2; 2, 3 or 4). Default 2.
        a_h: cell state scale, ``h = a_h tanh`` (A3; 1, 2 or 4). Default 1.
        b_z_init: initial cell input bias (< 0, A2).
    """

    kind: ClassVar[str] = "gateless"
    gates: ClassVar[tuple[str, ...]] = ()

    def step(self, params: Params, rules: RuleSet | None, carry: tuple[Array, Array],
             x_t: Array, tap_c: Array | None = None) -> tuple[Array, Array]:
        """One time step, ``(y_{t-1}, c_{t-1}), x_t -> (y_t, c_t)``; shapes (H,), (H,), (E,).

        ``tap_c`` (H,), a zero probe added to ``c_t`` before its use in ``y_t``, reads out the relevance
        arriving at the cell state (see ``unroll``).
        """
        _, c_prev = carry
        z = ops.activation(rules, self.g, self._cell_input(params, rules, x_t))
        c = ops.accumulate(rules, c_prev, z)
        c = c if tap_c is None else c + tap_c
        y = ops.activation(rules, self.h, c)
        return y, c


def _gate_columns(params: Params) -> tuple[Array, Array, Array]:
    """``W, U, b`` restricted to the gates i, f, o (columns 0:H and 2H:4H of the stacked i, z, f, o)."""
    H = params["U"].shape[0]
    gates = (slice(0, H), slice(2 * H, 4 * H))
    return tuple(jnp.concatenate([params[k][..., g] for g in gates], -1) for k in ("W", "U", "b"))


def _preactivations_signal_take_all(params: Params, rules: RuleSet, x_t: Array, y_prev: Array):
    """The four pre-activations of the standard cell when the gates receive no relevance.

    Under LRP-all every gate's share is zero (Table 11.1), so only the cell input's linear mapping
    needs a backward pass. The epsilon rule treats each output separately (bias and stabiliser shares
    are sums over outputs), so splitting the mapping by outputs changes no relevance; it saves three
    quarters of the backward matrix products.
    """
    W, U, b = params["W"], params["U"], params["b"]
    H = U.shape[0]
    z = slice(H, 2 * H)
    z_z = ops.linear(rules, (x_t, y_prev), (W[:, z], U[:, z]), b[z])
    W_g, U_g, b_g = _gate_columns(params)
    z_i, z_f, z_o = jnp.split(lax.stop_gradient(x_t @ W_g + y_prev @ U_g + b_g), 3)
    return z_i, z_z, z_f, z_o


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
    projected = cell.project(params, rules, x) if hasattr(cell, "project") else None
    inputs = ((x, projected),) if mask is None else ((x, projected), mask)
    if taps is not None:
        inputs = inputs + (taps["y"], taps["c"])

    def step(carry, inputs_t):
        """``((y, c), ((x_t, projected_t)[, m_t][, tap_y, tap_c])) -> ((y', c'), y')``."""
        (x_t, projected_t), tap_c = inputs_t[0], None if taps is None else inputs_t[-1]
        extra = {} if projected_t is None else {"projected": projected_t}
        y, c = cell.step(params, rules, carry, x_t, tap_c, **extra)
        if taps is not None:
            y = y + inputs_t[-2]
        if mask is not None:
            y = jnp.where(inputs_t[1], y, carry[0])
            c = jnp.where(inputs_t[1], c, carry[1])
        return (y, c), y

    (y_last, _), ys = lax.scan(step, carry0, inputs)
    return y_last, ys
