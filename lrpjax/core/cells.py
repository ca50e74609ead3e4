"""Recurrent cells built only from the elementary computations of ``ops.py``, and their unrolling.

The standard LSTM cell (Eqs. 11.1-11.6), the LRP-friendly LSTM cells (Sec. 11.4: nondecreasing,
Markov and gateless memory) and the GRU (PyTorch / Keras forms). A cell is a frozen (hashable)
dataclass holding static configuration; its parameters are a plain dict of arrays. Cells process one
example: ``x_t`` of shape (E,), a carry of states each (H,) (``(y, c)`` for the LSTM cells, ``(h,)``
for the GRU, named by ``cell.state_names``); batching is ``jax.vmap`` at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jax import lax

from lrpjax.core import ops
from lrpjax._types import Array, Params
from lrpjax.core.rules import RuleSet

__all__ = ["StandardCell", "NondecreasingCell", "MarkovCell", "GatelessCell", "GRUCell", "CELLS", "unroll",
           "unroll_record", "all_valid", "check_cell_params", "zero_layer_taps", "linearise"]


def _gates(stacked: Array) -> tuple[Array, Array, Array, Array]:
    """The blocks ``(i, z, f, o)`` of an array stacked in the standard cell's gate order along its last
    axis (4H): the columns of ``W`` and ``U``, the bias, a pre-activation. The one place that order is
    written; the step, its relevance shortcuts and its Contextual Decomposition all split through it."""
    i, z, f, o = jnp.split(stacked, 4, axis=-1)
    return i, z, f, o


def linearise(rel: Array, rest: Array, bias: Array, full: Array, act) -> Array:
    """Contextual Decomposition's relevant part ``L(rel)`` of ``full = act(rel + irr + bias)``.

    Murdoch et al.'s linearisation, the bias entering first::

        L(rel) = [act(rel + bias) - act(bias) + act(rel + irr + bias) - act(irr + bias)] / 2

    ``L(bias) = act(bias)`` and ``L(irr) = full - act(bias) - L(rel)`` complete it.

    Args:
        rel: the relevant part of the pre-activation.
        rest: everything else, ``irr + bias`` (``full``'s pre-activation minus ``rel``).
        bias: the bias.
        full: the true activation ``act(rel + rest)``.
        act: the element-wise activation.
    """
    return 0.5 * (act(rel + bias) - act(bias) + full - act(rest))


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
    state_names: ClassVar[tuple[str, ...]] = ("y", "c")

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

    def project(self, params: Params, rules: RuleSet | None, x: Array):
        """The input part ``x W`` of every step's linear mapping, for all steps at once (one large
        matrix product outside the scan instead of T small ones).

        Without rules ``x W + b`` (T, 4H). Under a rule set whose linear rule splits across time
        (:func:`lrpjax.core.ops.splits_across_time`: epsilon or z without sharing) ``ops.project``, whose
        backward turns the per-step ``q`` of ``ops.recurrent_linear`` into the inputs' relevance: for
        all four columns blocks (T, 4H), or under LRP-all, where the gates receive nothing, a pair
        (cell input (T, H) with the rule, gates (T, 3H) without relevance). For other linear rules None:
        each step's mapping over ``(x_t, y_{t-1})`` stays whole inside the scan.
        """
        if rules is None:
            return x @ params["W"] + params["b"][None]
        if not ops.splits_across_time(rules):
            return None
        if not rules.gate.gates_receive_relevance:
            W_g, _, _ = _gate_columns(params)
            return ops.project(rules, x, _gates(params["W"])[1]), ops.no_relevance(x @ W_g)
        return ops.project(rules, x, params["W"])

    def step(self, params: Params, rules: RuleSet | None, carry: tuple[Array, Array],
             x_t: Array, taps: dict[str, Array] | None = None,
             projected: Array | None = None) -> tuple[Array, Array]:
        """One time step, ``(y_{t-1}, c_{t-1}), x_t -> (y_t, c_t)``; shapes (H,), (H,), (E,).

        ``taps`` ``{"y", "c"}`` (H,) each: zero probes added to ``c_t`` before its use in ``y_t`` and to
        ``y_t``; their cotangents are the relevance arriving at the states (see ``unroll``).
        ``projected`` is this step's row of :meth:`project`, when the caller computed it.
        """
        return self._step(params, rules, carry, x_t, taps, projected)[0]

    def step_record(self, params: Params, rules: RuleSet | None, carry: tuple[Array, Array],
                    x_t: Array, taps: dict[str, Array] | None = None,
                    projected: Array | None = None) -> tuple[tuple[Array, Array], dict[str, Any]]:
        """:meth:`step` and what it computed on the way, ``(carry', record)``.

        ``record``: ``"z"`` the pre-activations ``(z_i, z_z, z_f, z_o)`` and ``"gates"`` their activations
        ``(i, z, f, o)`` of Eqs. (11.1)-(11.5), (H,) each; ``"tanh_c"`` ``h(c_t)`` of Eq. (11.6).
        Contextual Decomposition reads them (:meth:`decompose`, through :func:`unroll_record`).
        """
        (y, c), (z_i, z_z, z_f, z_o) = self._step(params, rules, carry, x_t, taps, projected)
        gates = (ops.SIGMOID(z_i), ops.TANH(z_z), ops.SIGMOID(z_f), ops.SIGMOID(z_o))
        return (y, c), {"z": (z_i, z_z, z_f, z_o), "gates": gates, "tanh_c": ops.TANH(c)}

    def _step(self, params: Params, rules: RuleSet | None, carry: tuple[Array, Array], x_t: Array,
              taps: dict[str, Array] | None, projected: Array | None):
        """:meth:`step` and its pre-activations, ``((y_t, c_t), (z_i, z_z, z_f, z_o))``."""
        y_prev, c_prev = carry
        z_i, z_z, z_f, z_o = self._preactivations(params, rules, x_t, y_prev, projected)
        p_in = ops.gated(rules, z_i, z_z, ops.SIGMOID, ops.TANH)
        # The forget product is a gated interaction whose signal is the previous cell state.
        p_f = ops.gated(rules, z_f, c_prev, ops.SIGMOID, ops.IDENTITY)
        c = ops.accumulate(rules, p_f, p_in)
        c = c if taps is None else c + taps["c"]
        y = ops.gated(rules, z_o, c, ops.SIGMOID, ops.TANH)
        return (_tapped(y, taps, "y"), c), (z_i, z_z, z_f, z_o)

    def _preactivations(self, params: Params, rules: RuleSet | None, x_t: Array, y_prev: Array,
                        projected) -> tuple[Array, Array, Array, Array]:
        """``(z_i, z_z, z_f, z_o)``, the four pre-activations ``W x_t + U y_{t-1} + b``, (H,) each."""
        if rules is None and projected is not None:
            return _gates(projected + y_prev @ params["U"])
        if rules is not None and projected is not None:
            return self._split_preactivations(params, rules, projected, y_prev)
        if rules is not None and not rules.gate.gates_receive_relevance:
            return _preactivations_signal_take_all(params, rules, x_t, y_prev)
        return _gates(ops.linear(rules, (x_t, y_prev), (params["W"], params["U"]), params["b"]))

    def _split_preactivations(self, params: Params, rules: RuleSet, projected, y_prev: Array):
        """The four pre-activations from a projection of :meth:`project` under a rule set."""
        U, b = params["U"], params["b"]
        if not isinstance(projected, tuple):
            return _gates(ops.recurrent_linear(rules, projected, y_prev, U, b))
        # LRP-all: only the cell input's mapping carries relevance (Table 11.1: the gates get none).
        a_z, a_g = projected
        z_z = ops.recurrent_linear(rules, a_z, y_prev, _gates(U)[1], _gates(b)[1])
        _, U_g, b_g = _gate_columns(params)
        z_i, z_f, z_o = jnp.split(ops.no_relevance(a_g + y_prev @ U_g + b_g), 3)
        return z_i, z_z, z_f, z_o

    # --- Contextual Decomposition (lrpjax.methods.decomposition) ----------------------------------

    @property
    def decomposable(self) -> bool:
        """Whether :meth:`decompose` is this cell's Contextual Decomposition: it is derived for exactly
        Eqs. (11.1)-(11.6), which a subclass may change, so a subclass has none unless it says so."""
        return type(self) is StandardCell

    def decompose(self, params: Params, x_rel: Array, x: Array, records: dict[str, Any], states: tuple[Array, Array],
                  mask: Array, bias_steps: Array, input_steps: Array | None = None) -> tuple[Array, Array]:
        """Contextual Decomposition of one run of the cell: the relevant parts of its states.

        Only the relevant parts ``beta`` are propagated; every split is complete, so the irrelevant
        part of each pre-activation and state is its true value (from the cell's own forward pass,
        :func:`unroll_record`) minus ``beta``.

        Args:
            params: the cell's parameters.
            x_rel: the relevant part of the input, (T, E), in reading order.
            x: the true input, (T, E).
            records: :meth:`step_record`'s records of the forward pass, stacked over steps (T, ...).
            states: the true states ``(y, c)`` after every step, (T, H) each.
            mask: valid steps (T,) bool; a padded step leaves ``beta`` untouched.
            bias_steps: (T,) bool, the steps whose bias-bias product ``L(b_i) L(b_z)`` is relevant.
            input_steps: the relevant steps (T,) bool when ``x`` is the model's input, where the relevant
                part is the whole input; its projection is then the true one there, ``x W``.

        Returns:
            ``(beta_y, beta_c)``, (T, H) each, in reading order.
        """
        W = params["W"]
        zero = jnp.zeros((), x.dtype)
        x_rel_W = x_rel @ W if input_steps is None else jnp.where(input_steps[:, None], x @ W, zero)
        H = self.hidden_size(params)
        zeros = jnp.zeros((H,), x.dtype)

        def step(beta, inputs):
            """``((beta_y, beta_c), inputs_t) -> (beta', beta')``; a padded step keeps ``beta``."""
            valid = inputs[-1]
            new = self.decompose_step(params, beta, *inputs[:-1])
            new = (jnp.where(valid, new[0], beta[0]), jnp.where(valid, new[1], beta[1]))
            return new, new

        _, (beta_y, beta_c) = lax.scan(step, (zeros, zeros), (x_rel_W, records, states[1], bias_steps, mask))
        return beta_y, beta_c

    def decompose_step(self, params: Params, beta: tuple[Array, Array], x_rel_W: Array, record: dict[str, Any],
                       c: Array, bias_t: Array) -> tuple[Array, Array]:
        """One CD step on the relevant parts, ``(beta_y, beta_c) -> (beta_y', beta_c')``, (H,) each.

        ``x_rel_W`` (4H,) is the relevant part of this step's input projection, ``record`` the step's
        :meth:`step_record` (true pre-activations and gates), ``c`` the true cell state after it and
        ``bias_t`` whether its bias-bias product is relevant (:mod:`lrpjax.methods.decomposition`).
        """
        beta_y, beta_c = beta
        rel_i, rel_z, rel_f, _ = _gates(beta_y @ params["U"] + x_rel_W)
        z_i, z_z, z_f, _ = record["z"]
        g_i, g_z, g_f, g_o = record["gates"]
        b_i, b_z, b_f, _ = _gates(params["b"])
        ri = linearise(rel_i, z_i - rel_i, b_i, g_i, ops.SIGMOID)
        rz = linearise(rel_z, z_z - rel_z, b_z, g_z, ops.TANH)
        rf = linearise(rel_f, z_f - rel_f, b_f, g_f, ops.SIGMOID)
        bi, bz, bf = ops.SIGMOID(b_i), ops.TANH(b_z), ops.SIGMOID(b_f)
        # Eq. (11.4) expanded, the relevant terms only; the bias-bias product L(b_i) L(b_z) goes where
        # `bias_t` says.
        new_c = ri * (rz + bz) + bi * rz + jnp.where(bias_t, bi * bz, jnp.zeros_like(bi)) + (rf + bf) * beta_c
        # Eq. (11.6): the whole output gate multiplies the relevant part of h(c) (two-term average).
        new_y = g_o * (0.5 * (jnp.tanh(new_c) + record["tanh_c"] - jnp.tanh(c - new_c)))
        return new_y, new_c


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
    state_names: ClassVar[tuple[str, ...]] = ("y", "c")

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
             x_t: Array, taps: dict[str, Array] | None = None) -> tuple[Array, Array]:
        """One time step, ``(y_{t-1}, c_{t-1}), x_t -> (y_t, c_t)``; shapes (H,), (H,), (E,).

        ``taps`` ``{"y", "c"}`` (H,) each: zero probes added to ``c_t`` before its use in ``y_t`` and to
        ``y_t``; their cotangents are the relevance arriving at the states (see ``unroll``).
        """
        y_prev, c_prev = carry
        z_z = self._cell_input(params, rules, x_t)
        z_i, z_o = self._gate_inputs(params, rules, y_prev)
        p = ops.gated(rules, z_i, z_z, ops.SIGMOID, self.g)
        c = ops.accumulate(rules, c_prev, p)
        c = c if taps is None else c + taps["c"]
        y = ops.gated(rules, z_o, c, ops.SIGMOID, self.h)
        return _tapped(y, taps, "y"), c


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
             x_t: Array, taps: dict[str, Array] | None = None) -> tuple[Array, Array]:
        """One time step, ``(y_{t-1}, c_{t-1}), x_t -> (y_t, c_t)``; shapes (H,), (H,), (E,).

        ``taps`` ``{"y", "c"}`` (H,) each: zero probes added to ``c_t`` before its use in ``y_t`` and to
        ``y_t``; their cotangents are the relevance arriving at the states (see ``unroll``).
        """
        y_prev, c_prev = carry
        z_z = self._cell_input(params, rules, x_t)
        (z_i,) = self._gate_inputs(params, rules, y_prev)
        p = ops.gated(rules, z_i, z_z, ops.SIGMOID, self.g)
        c = ops.accumulate(rules, c_prev, p)
        c = c if taps is None else c + taps["c"]
        y = ops.activation(rules, self.h, c)
        return _tapped(y, taps, "y"), c


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
             x_t: Array, taps: dict[str, Array] | None = None) -> tuple[Array, Array]:
        """One time step, ``(y_{t-1}, c_{t-1}), x_t -> (y_t, c_t)``; shapes (H,), (H,), (E,).

        ``taps`` ``{"y", "c"}`` (H,) each: zero probes added to ``c_t`` before its use in ``y_t`` and to
        ``y_t``; their cotangents are the relevance arriving at the states (see ``unroll``).
        """
        _, c_prev = carry
        z = ops.activation(rules, self.g, self._cell_input(params, rules, x_t))
        c = ops.accumulate(rules, c_prev, z)
        c = c if taps is None else c + taps["c"]
        y = ops.activation(rules, self.h, c)
        return _tapped(y, taps, "y"), c


def _gate_columns(params: Params) -> tuple[Array, Array, Array]:
    """``W, U, b`` of the standard cell restricted to the gates i, f, o (stacked in that order)."""
    def gate_columns(stacked):
        i, _, f, o = _gates(stacked)
        return jnp.concatenate([i, f, o], -1)
    return gate_columns(params["W"]), gate_columns(params["U"]), gate_columns(params["b"])


def _preactivations_signal_take_all(params: Params, rules: RuleSet, x_t: Array, y_prev: Array):
    """The four pre-activations of the standard cell when the gates receive no relevance.

    Under LRP-all every gate's share is zero (Table 11.1), so only the cell input's linear mapping
    needs a backward pass. The epsilon rule treats each output separately (bias and stabiliser shares
    are sums over outputs), so splitting the mapping by outputs changes no relevance; it saves three
    quarters of the backward matrix products.
    """
    z_z = ops.linear(rules, (x_t, y_prev), (_gates(params["W"])[1], _gates(params["U"])[1]), _gates(params["b"])[1])
    W_g, U_g, b_g = _gate_columns(params)
    z_i, z_f, z_o = jnp.split(ops.no_relevance(x_t @ W_g + y_prev @ U_g + b_g), 3)
    return z_i, z_z, z_f, z_o


def _tapped(value: Array, taps: dict[str, Array] | None, name: str) -> Array:
    """``value + taps[name]`` (a zero probe whose cotangent reads the relevance at ``value``)."""
    return value if taps is None else value + taps[name]


# --- the GRU ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GRUCell:
    """The gated recurrent unit (Cho et al. 2014) in the forms of PyTorch and Keras, built from the ops.

    ``reset_after=True`` (PyTorch ``nn.GRU``, Keras ``GRU(reset_after=True)``, the Keras default)::

        r_t = sigma(W_r x_t + U_r h_{t-1} + b_r)                 reset gate
        z_t = sigma(W_z x_t + U_z h_{t-1} + b_z)                 update gate
        n_t = tanh(W_n x_t + b_n + r_t * (U_n h_{t-1} + b_hn))   candidate
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}

    ``reset_after=False`` (Keras ``GRU(reset_after=False)``, the original GRU)::

        n_t = tanh(W_n x_t + U_n (r_t * h_{t-1}) + b_n)

    Weights are stacked in PyTorch's gate order r, z, n: ``W (E, 3H)``, ``U (H, 3H)``, ``b (3H,)`` (for
    r and z the sum of the input and recurrent biases, which only ever appear added; for n the input
    bias ``b_in``), and with ``reset_after=True`` the candidate's recurrent bias ``b_hn (H,)``, which
    sits inside the reset product and cannot be merged. Carry ``(h,)``; the output is ``h``.

    Relevance (each line one elementary computation of ``ops.py``, so the rules of Sec. 11.3 and
    Table 11.1 apply)::

        (a_r, a_z) = W_rz x + U_rz h + b_rz        linear mapping, inputs (x, h): the gates
        u   = U_n h + b_hn                         linear mapping, input h     (reset_after)
        w   = W_n x + b_n                          linear mapping, input x     (reset_after)
        p_r = sigma(a_r) * u                       gated interaction (gate a_r, signal u)
        a_n = w + p_r                              accumulation
        --- or, reset_after=False:  p_r = sigma(a_r) * h,  a_n = W_n x + U_n p_r + b_n (one mapping)
        p_new = (1 - sigma(a_z)) * tanh(a_n)       gated interaction, gate ``1 - sigma`` on a_z
        p_old = sigma(a_z) * h                     gated interaction (gate a_z, signal h)
        h'  = p_new + p_old                        accumulation

    Derivation of the rules: ``h'`` is a sum, so the accumulation rule splits ``R_h'`` between the new
    candidate and the kept state in proportion to ``p_new`` and ``p_old`` (Sec. 11.3.3). Each of the
    three products is a gate times a signal, so Table 11.1 applies: under LRP-all the gates ``r`` and
    ``z`` receive nothing and ``R_p`` goes to ``a_n`` (through tanh, unchanged), to ``u`` and to
    ``h_{t-1}``. The factor ``1 - z`` is a gate of its own: the neuron ``1 - sigma(a)`` on z's
    pre-activation ``a_z`` (no negation appears on the relevance path: a negation would flip the sign
    of the relevance passing through it), so under LRP-prop/-abs its share is computed from ``a_z``
    (``a_z / (a_z + a_n)``, ``|a_z| / (|a_z| + |a_n|)``) exactly as for any gate, and ``a_z`` collects
    the relevance of both products. The candidate pre-activation is the sum of an input mapping and
    the reset product: with ``reset_after`` an accumulation of the two (at eps = 0 this equals one
    mapping over ``(x, p_r)``, the bias ``b_n`` absorbing its share); without, it is literally one
    linear mapping whose inputs are ``x`` and ``r * h``. ``h_{t-1}`` collects relevance from the gate
    mapping, from ``u`` (or ``p_r``) and from ``p_old``.

    Attributes:
        reset_after: the PyTorch / Keras-default form (True) or the original GRU (False).
    """

    reset_after: bool = True

    kind: ClassVar[str] = "gru"
    state_names: ClassVar[tuple[str, ...]] = ("h",)

    def __post_init__(self):
        if not isinstance(self.reset_after, bool):
            raise TypeError(f"`reset_after` of GRUCell must be a bool; got {type(self.reset_after).__name__}.")

    def shapes(self, E: int, H: int) -> dict[str, tuple[int, ...]]:
        """Parameter shapes for input size ``E`` and ``H`` units."""
        shapes = {"W": (E, 3 * H), "U": (H, 3 * H), "b": (3 * H,)}
        if self.reset_after:
            shapes["b_hn"] = (H,)
        return shapes

    def init(self, key: Array, E: int, H: int, dtype=jnp.float32) -> Params:
        """Uniform(-1/sqrt(H), 1/sqrt(H)) weights (PyTorch's initialisation), zero biases."""
        k_w, k_u = jax.random.split(key)
        bound = 1.0 / float(H) ** 0.5
        params = {"W": jax.random.uniform(k_w, (E, 3 * H), dtype, -bound, bound),
                  "U": jax.random.uniform(k_u, (H, 3 * H), dtype, -bound, bound),
                  "b": jnp.zeros((3 * H,), dtype)}
        if self.reset_after:
            params["b_hn"] = jnp.zeros((H,), dtype)
        return params

    def hidden_size(self, params: Params) -> int:
        return params["U"].shape[0]

    def project(self, params: Params, rules: RuleSet | None, x: Array) -> Array | None:
        """Without rules, ``x W + b`` for all steps at once (T, 3H); None under rules."""
        return x @ params["W"] + params["b"][None] if rules is None else None

    def step(self, params: Params, rules: RuleSet | None, carry: tuple[Array], x_t: Array,
             taps: dict[str, Array] | None = None, projected: Array | None = None) -> tuple[Array]:
        """One time step, ``(h_{t-1},), x_t -> (h_t,)``; shapes (H,), (E,).

        ``taps`` ``{"h"}`` (H,): a zero probe added to ``h_t``; ``projected`` this step's row of
        :meth:`project`.
        """
        (h_prev,) = carry
        if rules is None:
            h = self._plain_step(params, h_prev, x_t, projected)
        else:
            h = self._rule_step(params, rules, h_prev, x_t)
        return (_tapped(h, taps, "h"),)

    def _plain_step(self, params: Params, h_prev: Array, x_t: Array, projected: Array | None) -> Array:
        """The GRU equations with plain jnp (true gradients); ``projected`` = ``x_t W + b`` if given."""
        W, U, b = params["W"], params["U"], params["b"]
        H = U.shape[0]
        wx = x_t @ W + b if projected is None else projected
        a_r, a_z, w = wx[:H], wx[H:2 * H], wx[2 * H:]
        uh = h_prev @ U[:, :2 * H]
        r, z = jax.nn.sigmoid(a_r + uh[:H]), jax.nn.sigmoid(a_z + uh[H:])
        if self.reset_after:
            n = jnp.tanh(w + r * (h_prev @ U[:, 2 * H:] + params["b_hn"]))
        else:
            n = jnp.tanh(w + (r * h_prev) @ U[:, 2 * H:])
        return (1 - z) * n + z * h_prev

    def _rule_step(self, params: Params, rules: RuleSet, h_prev: Array, x_t: Array) -> Array:
        """The GRU as elementary computations (class docstring): relevance follows ``rules``."""
        W, U, b = params["W"], params["U"], params["b"]
        H = U.shape[0]
        gates, cand = slice(0, 2 * H), slice(2 * H, 3 * H)
        if not rules.gate.gates_receive_relevance:
            # The gates receive nothing under LRP-all (Table 11.1): their mapping needs no backward.
            pre = ops.no_relevance(x_t @ W[:, gates] + h_prev @ U[:, gates] + b[gates])
        else:
            pre = ops.linear(rules, (x_t, h_prev), (W[:, gates], U[:, gates]), b[gates])
        a_r, a_z = jnp.split(pre, 2)
        if self.reset_after:
            u = ops.linear(rules, (h_prev,), (U[:, cand],), params["b_hn"])
            p_r = ops.gated(rules, a_r, u, ops.SIGMOID, ops.IDENTITY)
            w = ops.linear(rules, (x_t,), (W[:, cand],), b[cand])
            a_n = ops.accumulate(rules, w, p_r)
        else:
            p_r = ops.gated(rules, a_r, h_prev, ops.SIGMOID, ops.IDENTITY)
            a_n = ops.linear(rules, (x_t, p_r), (W[:, cand], U[:, cand]), b[cand])
        p_new = ops.gated(rules, a_z, a_n, ops.ONE_MINUS_SIGMOID, ops.TANH)
        p_old = ops.gated(rules, a_z, h_prev, ops.SIGMOID, ops.IDENTITY)
        return ops.accumulate(rules, p_new, p_old)


# --- parameters, probes, unrolling -----------------------------------------------------------------

def check_cell_params(cell, params: Params, E: int, where: str) -> int:
    """Checks a cell's parameter dict against ``cell.shapes``; returns H.

    Raises:
        TypeError: ``params`` not a dict.
        ValueError: a missing parameter, or a shape other than expected, naming the parameter, the
            expected and the received shape.
    """
    if not isinstance(params, dict):
        raise TypeError(f"`{where}` must be a dict of arrays; got {type(params).__name__}.")
    missing = sorted(set(cell.shapes(E, 1)) - set(params))
    if missing:
        raise ValueError(f"`{where}` is missing parameters {missing} of the {cell.kind} cell "
                         f"(expected {sorted(cell.shapes(E, 1))}).")
    H = cell.hidden_size(params)
    for name, shape in cell.shapes(E, H).items():
        got = tuple(jnp.shape(params[name]))
        if got != shape:
            raise ValueError(f"`{where}[{name!r}]` must have shape {shape} for E={E}, H={H}; got {got}.")
    return H


def zero_layer_taps(T: int, H: int, dtype, state_names: tuple[str, ...] = ("y", "c")) -> dict[str, Array]:
    """Zero probes for one recurrent layer: ``{s + "0": (H,)}`` at the initial state and ``{s: (T, H)}``
    at the state after every step, for each state name ``s`` (``("y", "c")`` LSTM, ``("h",)`` GRU)."""
    taps = {f"{name}0": jnp.zeros((H,), dtype) for name in state_names}
    taps.update({name: jnp.zeros((T, H), dtype) for name in state_names})
    return taps


def all_valid(T: int) -> Array:
    """The mask of a sequence without padding, (T,) all True, as a run-time value.

    ``unroll`` and the layers use it when no mask is given, so that one program serves both cases, with
    bit-identical results. A literal ``jnp.ones`` would be constant-folded, removing the ``where`` of
    every step; XLA then fuses the step differently, which measured slower on CPU (about 1.5x for
    the reference BiLSTM on a batch of sentences) and rounds differently.
    """
    return lax.optimization_barrier(jnp.ones((T,), bool))


def unroll(cell, params: Params, x: Array, rules: RuleSet | None = None, mask: Array | None = None,
           taps: dict[str, Array] | None = None) -> tuple[Array, Array]:
    """Runs ``cell`` over ``x`` with ``lax.scan``; a masked step leaves the state untouched.

    Args:
        cell: a cell of this module (``StandardCell``, an LRP-friendly variant, ``GRUCell``).
        params: the cell's parameters.
        x: input sequence, shape (T, E).
        rules: rule set or None.
        mask: valid steps, shape (T,) bool; None means all valid (:func:`all_valid`).
        taps: optional zero probes (:func:`zero_layer_taps`), ``{s + "0": (H,)}`` added to the initial
            state and ``{s: (T, H)}`` to the state after each step, for each of ``cell.state_names``.
            Their cotangent is the relevance (or gradient) arriving at those states, which is how
            intermediate relevance is read out.

    Returns:
        (final output (H,), outputs of every step (T, H)); the output is the first state (``y`` or ``h``).
    """
    final, (ys, _) = _scan(cell, params, x, rules, mask, taps, record=False)
    return final[0], ys


def unroll_record(cell, params: Params, x: Array, mask: Array | None = None) -> tuple[tuple[Array, ...], Any]:
    """:func:`unroll` without rules that also returns every state and the cell's record of every step.

    Args:
        cell: a cell with ``step_record`` (``StandardCell``).
        params, x, mask: as :func:`unroll`.

    Returns:
        ``(states, records)``: the states after every step, one (T, H) per ``cell.state_names`` (padded
        steps repeat the last valid state), and the records of ``cell.step_record``, stacked (T, ...).
    """
    _, (states, records) = _scan(cell, params, x, None, mask, None, record=True)
    return states, records


def _scan(cell, params: Params, x: Array, rules: RuleSet | None, mask: Array | None,
          taps: dict[str, Array] | None, record: bool):
    """The scan of :func:`unroll` (``record=False``: per-step outputs) and :func:`unroll_record`."""
    H = cell.hidden_size(params)
    names = cell.state_names
    zeros = jnp.zeros((H,), x.dtype)
    carry0 = tuple(zeros if taps is None else zeros + taps[f"{name}0"] for name in names)
    projected = cell.project(params, rules, x) if hasattr(cell, "project") else None
    per_step = {} if taps is None else {name: taps[name] for name in names}
    mask = all_valid(x.shape[0]) if mask is None else mask
    inputs = (x, projected, mask, per_step)

    def step(carry, inputs_t):
        """``(state, (x_t, projected_t, m_t, taps_t)) -> (state', (output', record_t))``; each state (H,)."""
        x_t, projected_t, m_t, taps_t = inputs_t
        extra = {} if projected_t is None else {"projected": projected_t}
        if record:
            new, record_t = cell.step_record(params, rules, carry, x_t, taps_t or None, **extra)
        else:
            new, record_t = cell.step(params, rules, carry, x_t, taps_t or None, **extra), None
        new = tuple(jnp.where(m_t, n, old) for n, old in zip(new, carry))
        return new, (new if record else new[0], record_t)

    return lax.scan(step, carry0, inputs)


CELLS = {cell.kind: cell for cell in (StandardCell, NondecreasingCell, MarkovCell, GatelessCell, GRUCell)}
"""The cell classes by their ``kind``."""
