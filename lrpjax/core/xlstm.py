"""xLSTM's recurrent cores (Beck et al., NeurIPS 2024) built only from the elementary computations.

* :class:`SLSTMCell` -- the sLSTM cell: scalar memory, exponential input gate, sigmoid (or exponential)
  forget gate, normaliser ``n`` and stabiliser ``m``, a block-diagonal recurrent matrix (one block per
  head); a cell of :mod:`lrpjax.core.cells`' protocol, so ``Recurrent(SLSTMCell(heads), H)`` runs it.
* :func:`mlstm_recurrent` and :func:`mlstm_parallel` -- the mLSTM cell (matrix memory) over a sequence,
  in its recurrent form (with relevance rules) and its parallel, attention-like form (forward and
  gradient), equal to rounding.

Both are written in the stabilised form the reference package ``xlstm`` computes. With a stabiliser
``m_t`` an exponential gate ``exp(ĩ_t)`` is carried as ``exp(ĩ_t - m_t)`` and every state as
``state_t exp(-m_t)``; the normalised output does not change, because ``m_t`` divides numerator and
denominator alike.

How relevance flows (derived from the chapter's elementary computations, Fig. 11.2):

* the gate pre-activations and the cell input are linear mappings: the rule set's ``linear`` rule;
* ``gate * signal`` products are gated interactions (Table 11.1, the rule set's ``gate`` rule) on the
  gate's *raw* pre-activation (``ĩ``, ``f̃``, ``õ``): under signal-take-all the gates get nothing; the
  stabiliser shift ``m_{t-1} - m_t`` is a constant of the product (:func:`stabilized_gated`);
* the state sums ``c_t = f c_{t-1} + i z`` (sLSTM), ``C_t = f C_{t-1} + i v kᵀ`` (mLSTM) and the
  read-out ``sum_d q_d C_dj`` are accumulations: the rule set's ``accumulate`` rule (epsilon);
* the normaliser divisions ``c_t / n_t`` and ``C_t q_t / max(|n_tᵀ q_t|, exp(-m_t))`` treat their
  denominator as a constant (the rule of AttnLRP and MambaLRP for normalisations): the division is a
  one-input linear mapping without bias, whose z-rule passes the relevance unchanged (:func:`scale`);
  ``n``, ``m`` and the denominators receive none;
* in the mLSTM the query and key act as gates of the read-out ``q_d C_dj`` and of the outer product
  ``k_d v_j``: under signal-take-all they receive nothing, under the other product rules their share.

The cells' products follow ``rules.gate``, unless the rule set is an :class:`XLSTMRuleSet`, whose
``cell_gate`` the cells use instead (:func:`cell_rules`): a preset can then treat the gates inside the
cells differently from the gated interactions of the blocks around them
(:func:`lrpjax.models.xlstm.xlstm_lrp`).

Conservation: with ``share=True`` every rule above conserves (the gated interactions give the
stabiliser's share half to each factor, the accumulations spread theirs over the terms, the linear
mappings theirs over the inputs); with ``share=False`` the biases and stabilisers absorb what the
explanation's ``.full()`` reports as the residual. With ``eps = 0`` and ``share=False`` only biases absorb.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, cast

import jax
import jax.numpy as jnp
from jax import lax

from lrpjax._types import Array, Params
from lrpjax.core import ops
from lrpjax.core.cells import CELLS
from lrpjax.core.rules import Gate, RuleSet

__all__ = ["GELU", "FORGET_GATES", "scale", "stabilized_gated", "block_diagonal", "group_norm", "SLSTMCell",
           "mlstm_recurrent", "mlstm_parallel", "MLSTM_EPS", "XLSTMRuleSet", "cell_rules"]

MLSTM_EPS = 1e-6
"""The constant the reference package adds to the mLSTM's normaliser ``max(|n_tᵀ q_t|, exp(-m_t))``."""

FORGET_GATES = ("sigmoid", "exp")
"""The forget gate's activation: ``"sigmoid"`` (the reference package's sLSTM and mLSTM) or ``"exp"``."""


@dataclass(frozen=True)
class _GELU(ops.Activation):
    """The exact (erf) GELU, ``z Phi(z)``: PyTorch's ``gelu``, the feed-forward gate of xLSTM's sLSTM block."""

    name: str = "gelu"

    def __post_init__(self):
        object.__setattr__(self, "scale", 1.0)

    def __call__(self, z: Array) -> Array:
        return jax.nn.gelu(z, approximate=False)


GELU = _GELU()


def _log_gate(forget: str, z: Array) -> Array:
    """``log gate(z)``: ``log sigmoid(z)`` or ``z`` (exponential gate)."""
    return jax.nn.log_sigmoid(z) if forget == "sigmoid" else z


# --- the rule set of the cells ------------------------------------------------------------------------

@dataclass(frozen=True)
class XLSTMRuleSet(RuleSet):
    """A :class:`~lrpjax.core.rules.RuleSet` with a product rule of its own inside the xLSTM cells.

    ``cell_gate`` splits the products inside :class:`SLSTMCell` and :func:`mlstm_recurrent` (the exponential
    input gate, the forget gate, the sLSTM's output gate, the mLSTM's query and key); ``gate`` splits the
    other gated interactions (the blocks' ``SiLU(z) * h`` and feed-forward ``act(g) * u``, any other
    layer's). Everything else is the rule set's. It survives ``replace``, :func:`lrpjax.rules.composite`
    (as the default) and ``at`` without an override; a per-layer override that is a plain ``RuleSet``
    gives that layer's cells its ``gate``.

    Attributes:
        cell_gate: the cells' product rule (:class:`~lrpjax.core.rules.Gate`).

    Raises:
        TypeError: ``cell_gate`` not a Gate (and the ``RuleSet`` fields' checks).
    """

    cell_gate: Gate = Gate()

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.cell_gate, Gate):
            raise TypeError(f"`cell_gate` of XLSTMRuleSet must be a Gate (e.g. Gate('all')); got {self.cell_gate!r} "
                            f"({type(self.cell_gate).__name__}).")


def cell_rules(rules: RuleSet | None) -> RuleSet | None:
    """The rule set the xLSTM cells use: ``rules`` with ``gate`` replaced by ``cell_gate`` for an
    :class:`XLSTMRuleSet`, ``rules`` itself otherwise (None stays None)."""
    if isinstance(rules, XLSTMRuleSet) and rules.cell_gate != rules.gate:
        return rules.replace(gate=rules.cell_gate)
    return rules


# --- a product by a constant: normalisers, learned scales ---------------------------------------------

def scale(rules: RuleSet | None, x: Array, s: Array) -> Array:
    """``x * s`` with ``s`` a constant of the relevance computation (element-wise, equal shapes).

    For a division by a normaliser (``s = 1 / n``, ``s = 1 / sigma`` of a layer norm) or a learned
    per-unit scale. ``x_j s_j`` is a linear mapping of one input without bias, so its z-rule gives
    ``R_x = x s / (x s) R = R``: the relevance passes unchanged, ``s`` receives none (AttnLRP's and
    MambaLRP's rule for normalisations: the denominator is a constant). Without rules the plain product,
    differentiated in both factors.

    Args:
        rules: rule set, or None for the plain product.
        x: the signal, any shape.
        s: the constant, the shape of ``x``.
    """
    if rules is None:
        return x * s
    return _scale(x, s)


@jax.custom_vjp
def _scale(x, s):
    return x * s


def _scale_fwd(x, s):
    return x * s, None


def _scale_bwd(residuals, r):
    # The constant is not explained: its cotangent is zero.
    return r, jnp.zeros_like(r)


_scale.defvjp(_scale_fwd, _scale_bwd)


# --- a gated interaction with a stabilised exponential (or sigmoid) gate ------------------------------

def stabilized_gated(rules: RuleSet | None, gate: str, z_gate: Array, shift: Array, z_signal: Array,
                     signal_fn: ops.Activation = ops.IDENTITY, clamp: bool = False) -> Array:
    """``g * signal_fn(z_signal)`` with the stabilised gate ``g = exp(log gate(z_gate) + shift)``.

    ``gate`` is ``"exp"`` (``log gate(z) = z``, xLSTM's exponential gates) or ``"sigmoid"``
    (``log sigmoid(z)``); ``shift`` is the stabiliser's part (``-m_t`` for the input gate,
    ``m_{t-1} - m_t`` for the forget gate). ``clamp`` takes ``min(g, 1)`` as the reference's sLSTM does
    (a no-op in exact arithmetic, since ``m_t`` bounds both exponents).

    Relevance: the gated interaction of Table 11.1 on the gate's raw pre-activation ``z_gate`` and the
    signal's ``z_signal`` (``rules.gate``): under signal-take-all all of it goes to the signal. The shift
    is a constant of the product (the stabiliser cancels in the normalised output) and receives none.

    Args:
        rules: rule set, or None for the plain function.
        gate: ``"exp"`` or ``"sigmoid"``.
        z_gate: the gate's pre-activation; ``shift`` and ``z_signal`` of the same shape.
        shift: the stabiliser's shift of the log gate.
        z_signal: the signal's pre-activation (or a state, with ``IDENTITY``).
        signal_fn: the signal's activation.
        clamp: take ``min(g, 1)``.
    """
    if rules is None:
        return _gate_value(gate, clamp, z_gate, shift) * signal_fn(z_signal)
    return _stabilized_gated(rules, gate, signal_fn, clamp, z_gate, shift, z_signal)


def _gate_value(gate: str, clamp: bool, z_gate: Array, shift: Array) -> Array:
    g = jnp.exp(_log_gate(gate, z_gate) + shift)
    return jnp.minimum(g, jnp.ones_like(g)) if clamp else g


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _stabilized_gated(rules, gate, signal_fn, clamp, z_gate, shift, z_signal):
    return _gate_value(gate, clamp, z_gate, shift) * signal_fn(z_signal)


def _stabilized_gated_fwd(rules, gate, signal_fn, clamp, z_gate, shift, z_signal):
    out = _gate_value(gate, clamp, z_gate, shift) * signal_fn(z_signal)
    if hasattr(rules.gate, "prepare"):
        return out, rules.gate.prepare(z_gate, z_signal)
    return out, (z_gate, z_signal)


def _stabilized_gated_bwd(rules, gate, signal_fn, clamp, residuals, r):
    if hasattr(rules.gate, "prepare"):
        r_gate, r_signal = rules.gate.redistribute(residuals, r)
    else:
        r_gate, r_signal = rules.gate.split(*residuals, r)
    # The stabiliser's shift is a constant of the product: it receives nothing.
    return r_gate, jnp.zeros_like(r), r_signal


_stabilized_gated.defvjp(_stabilized_gated_fwd, _stabilized_gated_bwd)


# --- block-diagonal (head-wise) matrices --------------------------------------------------------------

def block_diagonal(blocks: Array) -> Array:
    """The dense matrix of head-wise blocks: (NH, I, O) -> (NH I, NH O), zero off the diagonal blocks.

    A head-wise linear mapping ``y_h = x_h @ blocks[h]`` is the linear mapping with this matrix; its
    zero entries contribute nothing, so every linear rule gives the head-wise mapping's relevance.
    """
    NH, I, O = blocks.shape
    eye = jnp.eye(NH, dtype=blocks.dtype)
    return jnp.einsum("hio,hg->higo", blocks, eye).reshape(NH * I, NH * O)


# --- layer and group normalisation -------------------------------------------------------------------

def group_norm(rules: RuleSet | None, x: Array, weight: Array, groups: int = 1, eps: float = 1e-5) -> Array:
    """Layer norm (``groups=1``) or per-head group norm of one vector, without bias::

        y = (x - mean_g(x)) / sqrt(var_g(x) + eps) * weight        (mean, variance over each group)

    PyTorch's ``layer_norm`` / ``group_norm`` with a weight and no bias, as xLSTM's blocks use them.
    Relevance (AttnLRP's and MambaLRP's rule): the standard deviation is a constant, so the
    normalisation is a linear mapping: the centring ``x - mean_g(x)`` is one mapping (matrix ``I - 1/D_g``
    within each group) under ``rules.linear``, and the division and the weight are constants
    (:func:`scale`) that pass the relevance unchanged. Without a bias it conserves (up to the
    stabiliser, which ``share=True`` spreads over the inputs).

    Args:
        rules: rule set, or None for the plain function (differentiated through the variance too).
        x: the vector, (D,).
        weight: the per-unit weight, (D,).
        groups: the number of groups (heads), dividing D.
        eps: added to the variance.
    """
    D = x.shape[-1]
    size = D // groups
    blocks = jnp.broadcast_to(jnp.eye(size, dtype=x.dtype) - 1.0 / size, (groups, size, size))
    centred = ops.linear(rules, (x,), (block_diagonal(blocks),), None)
    var = jnp.mean(jnp.square(centred.reshape(groups, size)), axis=-1)
    inv_std = jnp.repeat(lax.rsqrt(var + eps), size)
    return scale(rules, centred, inv_std * weight)


# --- the sLSTM cell -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SLSTMCell:
    """The sLSTM cell (Beck et al. 2024, Sec. 2.2) in the stabilised form of the ``xlstm`` package::

        (ĩ, f̃, z̃, õ) = W x_t + R y_{t-1} + b          pre-activations, R block-diagonal per head
        m_t = max(log f(f̃) + m_{t-1}, ĩ)   (m_1 = ĩ_1)   stabiliser
        i_t = exp(ĩ - m_t),  f_t = exp(log f(f̃) + m_{t-1} - m_t)   (each clamped at 1, as the package)
        c_t = f_t c_{t-1} + i_t tanh(z̃)                cell state
        n_t = f_t n_{t-1} + i_t                         normaliser
        y_t = sigmoid(õ) c_t / n_t                      hidden state

    with ``log f = log sigmoid`` (``forget="sigmoid"``, the package's) or the identity (``"exp"``).
    Weights, gate order i, f, z, o, each block of H = NH * DH units ordered head-major:
    ``W (E, 4H)``, ``R (NH, DH, 4 DH)`` (``R[h, d, g DH + j]`` takes ``y`` unit ``h DH + d`` to gate g's
    unit ``h DH + j``), ``b (4H,)``. Carry ``(y, c, n, m)``, (H,) each, zero at the start.

    Relevance (module docstring): ``y_t = o (c_t / n_t)`` is a gated interaction whose signal is
    ``c_t / n_t``, a division by the constant ``n_t`` (passes relevance unchanged); ``c_t`` an
    accumulation of the products ``f_t c_{t-1}`` and ``i_t tanh(z̃)`` (gated interactions on ``f̃`` and
    ``ĩ``, their stabiliser shift constant); the pre-activations one linear mapping of ``(x_t, y_{t-1})``.
    Under signal-take-all relevance flows only through ``z̃``'s mapping.

    Attributes:
        heads: NH, the number of heads (H must be a multiple of it).
        forget: ``"sigmoid"`` or ``"exp"``.
    """

    heads: int = 1
    forget: str = "sigmoid"

    kind: ClassVar[str] = "slstm"
    state_names: ClassVar[tuple[str, ...]] = ("y", "c", "n", "m")

    def __post_init__(self):
        if not isinstance(self.heads, int) or isinstance(self.heads, bool) or self.heads < 1:
            raise ValueError(f"`heads` of SLSTMCell must be a positive int; got {self.heads!r}.")
        if self.forget not in FORGET_GATES:
            raise ValueError(f"`forget` of SLSTMCell must be one of {FORGET_GATES}; got {self.forget!r}.")

    def shapes(self, E: int, H: int) -> dict[str, tuple[int, ...]]:
        """Parameter shapes for input size ``E`` and ``H`` units."""
        DH = H // self.heads
        return {"W": (E, 4 * H), "R": (self.heads, DH, 4 * DH), "b": (4 * H,)}

    def hidden_size(self, params: Params) -> int:
        R = params["R"]
        return int(R.shape[0] * R.shape[1])

    def init(self, key: Array, E: int, H: int, dtype=jnp.float32) -> Params:
        """Normal(0, sqrt(2 / (5 E))) input weights (the package's small init), uniform(+-1/sqrt(H))
        recurrent blocks, zero biases but a forget bias in [3, 6] (a long memory at the start).

        Raises:
            ValueError: ``H`` not a multiple of ``heads``.
        """
        if H % self.heads:
            raise ValueError(f"`units` H = {H} must be a multiple of the sLSTM's heads = {self.heads}.")
        DH = H // self.heads
        k_w, k_r = jax.random.split(key)
        bound = 1.0 / float(H) ** 0.5
        b = jnp.zeros((4, H), dtype).at[1].set(jnp.linspace(3.0, 6.0, H, dtype=dtype))
        return {"W": jax.random.normal(k_w, (E, 4 * H), dtype) * (2.0 / (5.0 * E)) ** 0.5,
                "R": jax.random.uniform(k_r, (self.heads, DH, 4 * DH), dtype, -bound, bound),
                "b": b.reshape(-1)}

    def recurrent_matrix(self, params: Params) -> Array:
        """``R`` as one dense (H, 4H) matrix in the gate order i, f, z, o (zero between heads)."""
        R = params["R"]
        NH, DH, _ = R.shape
        per_gate = R.reshape(NH, DH, 4, DH).transpose(2, 0, 1, 3)                # (4, NH, DH, DH)
        return jnp.concatenate([block_diagonal(per_gate[g]) for g in range(4)], axis=1)

    def step(self, params: Params, rules: RuleSet | None, carry: tuple[Array, Array, Array, Array],
             x_t: Array, taps: dict[str, Array] | None = None) -> tuple[Array, Array, Array, Array]:
        """One time step, ``(y, c, n, m), x_t -> (y', c', n', m')``; shapes (H,) each, x_t (E,).

        ``taps`` ``{"y", "c", "n", "m"}`` (H,) each: zero probes added to the new states (``c`` before
        its use in ``y``); their cotangents are the relevance arriving there (none at ``n`` and ``m``).
        """
        rules = cell_rules(rules)
        y_prev, c_prev, n_prev, m_prev = carry
        z = ops.linear(rules, (x_t, y_prev), (params["W"], self.recurrent_matrix(params)), params["b"])
        z_i, z_f, z_z, z_o = jnp.split(z, 4)
        log_f = _log_gate(self.forget, z_f)
        # The first step (n = 0, nothing stored yet) starts the stabiliser at the input gate, as the
        # package does; afterwards n > 0.
        m = jnp.where(n_prev == 0, z_i, jnp.maximum(z_i, log_f + m_prev))
        shift_f = m_prev - m
        p_in = stabilized_gated(rules, "exp", z_i, -m, z_z, ops.TANH, clamp=True)
        p_f = stabilized_gated(rules, self.forget, z_f, shift_f, c_prev, ops.IDENTITY, clamp=True)
        c = ops.accumulate(rules, p_f, p_in)
        c = c if taps is None else c + taps["c"]
        # n and m only scale (``scale``'s constant, the gates' shifts): they receive no relevance.
        n = _gate_value(self.forget, True, z_f, shift_f) * n_prev + _gate_value("exp", True, z_i, -m)
        h = scale(rules, c, 1.0 / n)
        y = ops.gated(rules, z_o, h, ops.SIGMOID, ops.IDENTITY)
        if taps is not None:
            y, n, m = y + taps["y"], n + taps["n"], m + taps["m"]
        return y, c, n, m


cast(Any, CELLS).setdefault(SLSTMCell.kind, SLSTMCell)   # Recurrent layers and checkpoints find it by kind


# --- the mLSTM cell over a sequence ---------------------------------------------------------------------

def _mlstm_step(rules: RuleSet | None, carry, inputs):
    """One head's step, ``((C, n, m), (q, k, v, ĩ, f̃, first, valid)) -> ((C', n', m'), h̃)``.

    ``C`` (DH, DH) indexed (key unit d, value unit j), ``n`` (DH,), ``m`` () ; ``q, k, v`` (DH,), gates ().
    """
    C_prev, n_prev, m_prev = carry
    q, k, v, z_i, z_f, first, valid = inputs
    DH = q.shape[0]
    log_f = jax.nn.log_sigmoid(z_f)
    m = jnp.where(first, z_i, jnp.maximum(log_f + m_prev, z_i))
    k = scale(rules, k, jnp.full_like(k, 1.0 / math.sqrt(DH)))
    square = (DH, DH)
    # C_t = f C_{t-1} + i k vᵀ: the outer product k_d v_j is a gated interaction (the key gates the value).
    kv = ops.gated(rules, jnp.broadcast_to(k[:, None], square), jnp.broadcast_to(v[None, :], square),
                   ops.IDENTITY, ops.IDENTITY)
    p_in = stabilized_gated(rules, "exp", jnp.broadcast_to(z_i, square), jnp.broadcast_to(-m, square), kv)
    p_f = stabilized_gated(rules, "sigmoid", jnp.broadcast_to(z_f, square), jnp.broadcast_to(m_prev - m, square),
                           C_prev)
    C = ops.accumulate(rules, p_f, p_in)
    n = jnp.exp(log_f + m_prev - m) * n_prev + jnp.exp(z_i - m) * k
    # The read-out sum_d q_d C_dj: products (the query gates the memory), then an accumulation over d.
    read = ops.gated(rules, jnp.broadcast_to(q[:, None], square), C, ops.IDENTITY, ops.IDENTITY)
    num = ops.pool(rules, read, jnp.ones((DH,), read.dtype))
    den = jnp.maximum(jnp.abs(q @ n), jnp.exp(-m)) + MLSTM_EPS
    h = scale(rules, num, jnp.broadcast_to(1.0 / den, num.shape))
    new = tuple(jnp.where(valid, a, b) for a, b in zip((C, n, m), carry))
    return new, jnp.where(valid, h, jnp.zeros_like(h))


def _check_mlstm(q, k, v, z_i, z_f, mask):
    shape = jnp.shape(q)
    if len(shape) != 3:
        raise ValueError(f"`q` must have shape (T, NH, DH); got {shape}.")
    for name, a in (("k", k), ("v", v)):
        if jnp.shape(a) != shape:
            raise ValueError(f"`{name}` must have the shape of `q` (T, NH, DH) = {shape}; got {jnp.shape(a)}.")
    for name, a in (("z_i", z_i), ("z_f", z_f)):
        if jnp.shape(a) != shape[:2]:
            raise ValueError(f"`{name}` must have shape (T, NH) = {shape[:2]}; got {jnp.shape(a)}.")
    if mask is not None and jnp.shape(mask) != shape[:1]:
        raise ValueError(f"`mask` must have shape (T,) = ({shape[0]},); got {jnp.shape(mask)}.")


def mlstm_recurrent(rules: RuleSet | None, q: Array, k: Array, v: Array, z_i: Array, z_f: Array,
                    mask: Array | None = None, C0: Array | None = None) -> Array:
    """The mLSTM cell over a sequence in its recurrent, stabilised form, every head at once::

        m_t = max(log sigmoid(f̃_t) + m_{t-1}, ĩ_t)   (m_1 = ĩ_1)
        i_t = exp(ĩ_t - m_t),  f_t = exp(log sigmoid(f̃_t) + m_{t-1} - m_t)
        C_t = f_t C_{t-1} + i_t k_t v_tᵀ / sqrt(DH),   n_t = f_t n_{t-1} + i_t k_t / sqrt(DH)
        h̃_t = C_tᵀ q_t / (max(|n_tᵀ q_t|, exp(-m_t)) + 1e-6)

    the package's ``recurrent_step_stabilized_simple`` with the stabiliser started at the first input
    gate (``m_0 = -inf``), which makes it equal :func:`mlstm_parallel` (the package's ``forward``) to
    rounding. Relevance: module docstring (the key gates ``v`` in ``C``, the query gates ``C`` in the
    read-out, the denominator is a constant).

    Args:
        rules: rule set, or None for the plain function.
        q, k, v: queries, keys, values, (T, NH, DH) each.
        z_i, z_f: input and forget gate pre-activations, (T, NH).
        mask: valid steps (T,) bool (a prefix), or None; padded steps leave the state and output 0.
        C0: the initial memory (NH, DH, DH), or None for zeros: a zero probe there reads the relevance
            arriving at the start (with ``share=True`` the forget product of the empty memory gets a share
            of the accumulation's stabiliser).

    Returns:
        h̃, (T, NH, DH).
    """
    _check_mlstm(q, k, v, z_i, z_f, mask)
    rules = cell_rules(rules)
    T, NH, DH = q.shape
    dtype = q.dtype
    valid = jnp.ones((T,), bool) if mask is None else jnp.asarray(mask)
    first = jnp.arange(T) == 0

    def head(q_h, k_h, v_h, i_h, f_h, C0_h):
        carry0 = (C0_h, jnp.zeros((DH,), dtype), jnp.zeros((), dtype))
        _, h = lax.scan(partial(_mlstm_step, rules), carry0, (q_h, k_h, v_h, i_h, f_h, first, valid))
        return h

    C0 = jnp.zeros((NH, DH, DH), dtype) if C0 is None else C0
    return jax.vmap(head, in_axes=(1, 1, 1, 1, 1, 0), out_axes=1)(q, k, v, z_i, z_f, C0)


def mlstm_parallel(q: Array, k: Array, v: Array, z_i: Array, z_f: Array, mask: Array | None = None) -> Array:
    """The mLSTM cell in its parallel (attention-like) stabilised form, the package's
    ``parallel_stabilized_simple``; the same function as :func:`mlstm_recurrent` to rounding::

        D_ts = exp(sum_{r=s+1..t} log sigmoid(f̃_r) + ĩ_s - m_t) for s <= t, 0 after;  m_t = max_s (...)
        h̃_t = sum_s (q_t · k_s / sqrt(DH)) D_ts v_s / (max(|sum_s q_t · k_s D_ts / sqrt(DH)|, exp(-m_t)) + 1e-6)

    O(T^2) memory, one matrix product per head instead of a scan: for the forward pass and true
    gradients (no rules; relevance is defined on the recurrent form).

    Args: as :func:`mlstm_recurrent`, without ``rules``.

    Returns:
        h̃, (T, NH, DH); padded steps 0.
    """
    _check_mlstm(q, k, v, z_i, z_f, mask)
    T, NH, DH = q.shape
    log_f = jax.nn.log_sigmoid(z_f).T                                      # (NH, T)
    cum = jnp.concatenate([jnp.zeros((NH, 1), q.dtype), jnp.cumsum(log_f, axis=1)], axis=1)  # (NH, T+1)
    causal = jnp.tril(jnp.ones((T, T), bool))
    log_fg = cum[:, 1:, None] - cum[:, None, 1:]                           # (NH, T, T): sum_{r=s+1..t}
    log_D = jnp.where(causal[None], log_fg + z_i.T[:, None, :], -jnp.inf)
    m = jnp.max(log_D, axis=-1, keepdims=True)                             # (NH, T, 1)
    D = jnp.exp(log_D - m)
    qk = jnp.einsum("thd,shd->hts", q, k / math.sqrt(DH))
    C = qk * D
    normaliser = jnp.maximum(jnp.abs(jnp.sum(C, axis=-1, keepdims=True)), jnp.exp(-m))
    h = jnp.einsum("hts,shd->thd", C / (normaliser + MLSTM_EPS), v)
    if mask is not None:
        h = jnp.where(jnp.asarray(mask)[:, None, None], h, jnp.zeros((), h.dtype))
    return h
