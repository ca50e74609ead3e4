"""Relevance rules as small frozen values, rule sets, and the chapter's presets.

A rule is an immutable, hashable dataclass of Python floats, bools and strings: it is static under
``jax.jit`` (a rule with other hyper-parameters compiles anew). Each rule has one method doing the
redistribution for the elementary computation it serves (``ops.py``):

* linear mappings ``z = sum_k x_k @ W_k + b``: :class:`Epsilon` (``eps = 0`` is the z-rule), and the
  dense-layer rules of the LRP literature :class:`Z`, :class:`ZPlus`, :class:`AlphaBeta`,
  :class:`Gamma`, :class:`Flat`, :class:`WSquare`, :class:`ZB`;
* gated interactions ``p = gate(z_g) * signal(z_s)``: :class:`Gate` (Table 11.1);
* accumulations ``c = sum_k t_k``: :class:`Epsilon`.

A :class:`RuleSet` names the rule for each kind of computation; :func:`preset` returns the four
configurations of the chapter; :func:`composite` assigns rules per layer (e.g. zB on the input
layer, epsilon above).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence, cast

import jax.numpy as jnp

from lrpjax._types import Array

__all__ = [
    "Epsilon",
    "Z",
    "ZPlus",
    "AlphaBeta",
    "Gamma",
    "Flat",
    "WSquare",
    "ZB",
    "LINEAR_RULES",
    "Gate",
    "AttentionRule",
    "ATTENTION_MODES",
    "RuleSet",
    "PRESETS",
    "preset",
    "composite",
    "stabilize",
    "safe_divide",
    "MAX_EPS",
]


def stabilize(z: Array, eps: float) -> Array:
    """``z + eps * sign(z)`` with ``sign(0) = +1``: pushes a denominator away from zero (Sec. 11.3.1)."""
    return z + eps * jnp.where(z >= 0, 1, -1).astype(z.dtype)


def safe_divide(num: Array, den: Array) -> Array:
    """``num / den`` where ``den != 0`` and 0 elsewhere: a zero denominator gives a zero share, never NaN."""
    zero = den == 0
    return jnp.where(zero, jnp.zeros_like(num), num / jnp.where(zero, jnp.ones_like(den), den))


MAX_EPS = 1e30
"""Largest stabiliser a rule accepts. Whether ``z + eps * sign(z)`` overflows depends on the dtype the rule
meets at explain time (float32 ends near 3.4e38), which a rule cannot know when it is built; 1e30 leaves
float32 eight orders of magnitude and is far beyond any useful stabiliser."""


def _check_eps(name: str, eps: float) -> None:
    if not isinstance(eps, (int, float)) or isinstance(eps, bool):
        raise TypeError(f"`eps` of {name} must be a Python float; got {type(eps).__name__}.")
    if not eps >= 0 or eps == float("inf"):
        raise ValueError(f"`eps` of {name} must be a finite number >= 0; got {eps!r}.")
    if eps > MAX_EPS:
        raise ValueError(f"`eps` of {name} must be at most {MAX_EPS:g} (a larger stabiliser overflows float32 "
                         f"in z + eps * sign(z)); got {eps!r}.")


@dataclass(frozen=True)
class Epsilon:
    """LRP-epsilon for linear mappings and accumulations (Sec. 11.3.1; Bach et al. 2015).

    For ``z_s = sum_j a_j w_js + b_s``::

        R_j = sum_s a_j w_js / (z_s + eps * sign(z_s)) * R_s

    ``eps = 0`` is the z-rule. The bias ``b_s`` (a constant input neuron) and the stabiliser absorb
    the rest of ``R_s``. With ``share=True`` both shares are spread equally over all ``D`` input units
    instead (the reference implementation's ``bias_factor = 1``), so relevance is conserved::

        R_j += sum_s (b_s + eps * sign(z_s)) / D / (z_s + eps * sign(z_s)) * R_s

    For an accumulation ``c = t_1 + ... + t_n`` the same rule with unit weights and no bias gives
    ``R_k = t_k / (c + eps * sign(c)) * R_c`` (Sec. 11.3.3), the stabiliser share being split over
    the ``n`` terms when ``share=True``.

    Attributes:
        eps: stabiliser, finite, ``0 <= eps <= MAX_EPS`` (1e30).
        share: spread bias and stabiliser shares over the inputs (conserves relevance).
    """

    eps: float = 0.0
    share: bool = False

    def __post_init__(self):
        _check_eps("Epsilon", self.eps)
        object.__setattr__(self, "eps", float(self.eps))
        if not isinstance(self.share, bool):
            raise TypeError(f"`share` of Epsilon must be a bool; got {type(self.share).__name__}.")

    def linear(self, xs: Sequence[Array], Ws: Sequence[Array], b: Array | None, z: Array,
               r: Array) -> tuple[tuple[Array, ...], Array | None]:
        """Redistributes ``r`` (M,) of ``z = sum_k xs[k] @ Ws[k] + b`` onto ``xs`` and ``b``.

        Returns:
            (relevance of each input, shapes (D_k,)), relevance absorbed by the bias (M,) or None.
        """
        q = safe_divide(r, stabilize(z, self.eps))
        r_xs = tuple(x * (W @ q) for x, W in zip(xs, Ws))
        if b is None:
            r_b = None
            spread = self.eps * jnp.where(z >= 0, 1, -1).astype(z.dtype)
        else:
            r_b = b * q
            spread = b + self.eps * jnp.where(z >= 0, 1, -1).astype(z.dtype)
        if self.share:
            n_inputs = sum(x.shape[-1] for x in xs)
            per_unit = jnp.sum(spread * q) / n_inputs
            r_xs = tuple(rx + per_unit for rx in r_xs)
            r_b = None if b is None else jnp.zeros_like(b)
        return r_xs, r_b

    def accumulate(self, terms: Sequence[Array], c: Array, r: Array) -> tuple[Array, ...]:
        """Redistributes ``r`` (H,) of ``c = sum(terms)`` onto the terms (Sec. 11.3.3)."""
        return tuple(share * r for share in self.accumulate_shares(terms, c))

    def accumulate_shares(self, terms: Sequence[Array], c: Array) -> tuple[Array, ...]:
        """The share of each term, ``t_k / (c + eps sign(c))`` (plus an equal part of what the stabiliser
        absorbs with ``share=True``), so that ``R_k = share_k * R_c``. Computed in the forward pass, the
        backward of an accumulation is one product per term."""
        den = stabilize(c, self.eps)
        shares = tuple(safe_divide(t, den) for t in terms)
        if self.share:
            rest = (1 - sum(shares)) / len(terms)
            shares = tuple(s + rest for s in shares)
        return shares

    def pool(self, terms: Array, valid: Array, c: Array, r: Array) -> Array:
        """Redistributes ``r`` (D,) of ``c = sum_t terms[t]`` onto the terms (T, D) of a pooling.

        The accumulation rule over time steps; with ``share=True`` each unit's absorbed part is
        spread over the ``valid`` (T,) steps only, so padding never receives relevance.
        """
        q = safe_divide(r, stabilize(c, self.eps))
        r_terms = terms * q[None, :]
        if self.share:
            absorbed = r - jnp.sum(r_terms, axis=0)
            n_valid = jnp.maximum(jnp.sum(valid.astype(r.dtype)), jnp.ones((), r.dtype))
            r_terms = r_terms + jnp.where(valid[:, None], absorbed[None, :] / n_valid, jnp.zeros((), r.dtype))
        return r_terms


# --- dense-layer rules for linear mappings -------------------------------------------------------
#
# Every rule below redistributes the relevance r (M,) of ``z = sum_k xs[k] @ Ws[k] + b`` in proportion
# to per-connection contributions ``c_jk`` (one (D_k, M) matrix per input; the inputs share one
# denominator, as in the gate pre-activations of an LSTM):
#
#     R_j = sum_k c_jk / (sum_j' c_j'k + c_bk) * R_k          R_b,k = c_bk / (...) * R_k
#
# A zero denominator gives a zero share (never NaN): that relevance is lost, and the rule's docstring
# says when it can happen.


def _check_bool(name: str, field: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"`{field}` of {name} must be a bool; got {type(value).__name__}.")


def _check_number(name: str, field: str, value, minimum: float | None = None) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"`{field}` of {name} must be a Python float; got {type(value).__name__}.")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"`{field}` of {name} must be finite; got {value!r}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{field}` of {name} must be >= {minimum}; got {value!r}.")
    return value


def _proportional(contribs: Sequence[Array], bias_term: Array | None, b: Array | None, r: Array,
                  eps: float = 0.0, share: bool = False) -> tuple[tuple[Array, ...], Array | None]:
    """Shares ``r`` (M,) by the contributions ``contribs[k]`` (D_k, M) and ``bias_term`` (M,) or None.

    The denominator is stabilised by ``eps * sign`` when ``eps > 0``. The bias share is returned for
    ``b`` (zeros if the rule ignores the bias: ``bias_term`` None); with ``share=True`` bias and
    stabiliser shares are spread equally over all inputs instead.
    """
    den = cast(Array, sum(c.sum(axis=0) for c in contribs))  # contribs is never empty
    if bias_term is not None:
        den = den + bias_term
    den = stabilize(den, eps) if eps > 0 else den
    q = safe_divide(r, den)
    r_xs = tuple(c @ q for c in contribs)
    r_b = None if b is None else (jnp.zeros_like(b) if bias_term is None else bias_term * q)
    if share:
        absorbed = den - sum(c.sum(axis=0) for c in contribs)  # bias term and stabiliser
        per_unit = jnp.sum(absorbed * q) / sum(c.shape[0] for c in contribs)
        r_xs = tuple(rx + per_unit for rx in r_xs)
        r_b = None if b is None else jnp.zeros_like(b)
    return r_xs, r_b


@dataclass(frozen=True)
class Z:
    """The z-rule, the LRP toolbox's ``"simple"`` rule (Bach et al. 2015; Lapuschkin et al. 2016)::

        R_j = sum_k x_j w_jk / z_k * R_k,      z_k = sum_j x_j w_jk + b_k

    It is :class:`Epsilon` with ``eps = 0``, under its own name. The bias absorbs ``b_k / z_k * R_k``;
    ``share=True`` spreads that over the ``D`` inputs (``R_j += sum_k b_k / D / z_k * R_k``).
    Conservation: ``sum_j R_j + sum_k R_b,k = sum_k R_k`` for every output with ``z_k != 0`` (a zero
    ``z_k`` loses its relevance); with ``share=True`` the inputs alone carry it.

    Attributes:
        share: spread the bias share over the inputs (conserves relevance).
    """

    share: bool = False

    def __post_init__(self):
        _check_bool("Z", "share", self.share)

    def linear(self, xs: Sequence[Array], Ws: Sequence[Array], b: Array | None, z: Array,
               r: Array) -> tuple[tuple[Array, ...], Array | None]:
        """Redistributes ``r`` (M,) onto ``xs`` (D_k,) and ``b`` (M,); see :meth:`Epsilon.linear`."""
        return Epsilon(0.0, self.share).linear(xs, Ws, b, z, r)


@dataclass(frozen=True)
class ZPlus:
    """The z+ rule of deep Taylor decomposition (Montavon et al. 2017, Pattern Recognit. 65:211)::

        R_j = sum_k (x_j w_jk)^+ / sum_j' (x_j' w_j'k)^+ * R_k

    For inputs ``x >= 0`` (ReLU activations) ``(x_j w_jk)^+ = x_j w_jk^+``, the rule as published;
    for inputs of any sign it keeps the positive contributions (LRP-alpha1-beta0 without bias). The
    bias is ignored (deep Taylor decomposition assumes ``b <= 0``) and absorbs nothing.
    Conservation: exact for every output with at least one positive contribution; an output without
    any loses its relevance.
    """

    def linear(self, xs: Sequence[Array], Ws: Sequence[Array], b: Array | None, z: Array,
               r: Array) -> tuple[tuple[Array, ...], Array | None]:
        """Redistributes ``r`` (M,) onto ``xs`` (D_k,); the bias gets zeros (M,) or None."""
        contribs = tuple(jnp.maximum(x[:, None] * W, 0) for x, W in zip(xs, Ws))
        return _proportional(contribs, None, b, r)


@dataclass(frozen=True)
class AlphaBeta:
    """LRP-alpha-beta (Bach et al. 2015, PLoS ONE 10(7):e0130140; the toolbox's ``"alphabeta"``)::

        R_j = sum_k (alpha * z_jk^+ / z_k^+  -  beta * z_jk^- / z_k^-) * R_k
        z_jk = x_j w_jk,   z_k^+ = sum_j z_jk^+ + b_k^+,   z_k^- = sum_j z_jk^- + b_k^-

    with ``alpha - beta = 1``. The bias absorbs ``(alpha b_k^+ / z_k^+ - beta b_k^- / z_k^-) R_k``;
    ``share=True`` spreads that over the inputs. Conservation: exact (with the bias share) for
    outputs with contributions of both signs; an output whose contributions are all of one sign
    passes on ``alpha R_k`` (all positive) or ``-beta R_k`` (all negative): the rule then does not
    conserve, by design of its equation, and ``share`` does not change that.

    Attributes:
        alpha: weight of the positive contributions, ``>= 1``.
        beta: weight of the negative contributions, ``>= 0``, ``alpha - beta = 1``.
        share: spread the bias share over the inputs.
    """

    alpha: float = 1.0
    beta: float = 0.0
    share: bool = False

    def __post_init__(self):
        alpha = _check_number("AlphaBeta", "alpha", self.alpha, 1.0)
        beta = _check_number("AlphaBeta", "beta", self.beta, 0.0)
        if abs(alpha - beta - 1.0) > 1e-12 * max(1.0, alpha):
            raise ValueError(f"AlphaBeta needs `alpha` - `beta` = 1 (relevance conservation); got alpha = "
                             f"{alpha!r}, beta = {beta!r}, alpha - beta = {alpha - beta!r}.")
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "beta", beta)
        _check_bool("AlphaBeta", "share", self.share)

    def linear(self, xs: Sequence[Array], Ws: Sequence[Array], b: Array | None, z: Array,
               r: Array) -> tuple[tuple[Array, ...], Array | None]:
        """Redistributes ``r`` (M,) onto ``xs`` (D_k,) and ``b`` (M,); see the class docstring."""
        contribs = tuple(x[:, None] * W for x, W in zip(xs, Ws))
        pos = tuple(jnp.maximum(c, 0) for c in contribs)
        neg = tuple(jnp.minimum(c, 0) for c in contribs)
        b_pos = None if b is None else jnp.maximum(b, 0)
        b_neg = None if b is None else jnp.minimum(b, 0)
        r_pos, rb_pos = _proportional(pos, b_pos, b, self.alpha * r, share=self.share)
        if self.beta == 0.0:
            return r_pos, rb_pos
        r_neg, rb_neg = _proportional(neg, b_neg, b, -self.beta * r, share=self.share)
        r_xs = tuple(rp + rn for rp, rn in zip(r_pos, r_neg))
        return r_xs, None if b is None else rb_pos + rb_neg  # type: ignore[operator]  # both set when b is


@dataclass(frozen=True)
class Gamma:
    """LRP-gamma (Montavon et al. 2019, "Layer-wise relevance propagation: an overview", LNCS 11700)::

        R_j = sum_k x_j (w_jk + gamma w_jk^+) / (z_k^gamma + eps * sign(z_k^gamma)) * R_k
        z_k^gamma = sum_j x_j (w_jk + gamma w_jk^+) + b_k + gamma b_k^+

    Meant for ReLU layers (``x >= 0``): ``gamma`` favours positive contributions (``gamma = 0`` is
    LRP-epsilon, ``gamma -> inf`` approaches z+). The bias absorbs ``(b_k + gamma b_k^+) / (...) R_k``
    and the stabiliser the rest; ``share=True`` spreads both over the inputs. Conservation: as
    :class:`Epsilon`: exact with ``eps = 0`` and the bias share (or ``share=True``) for outputs with a
    non-zero denominator.

    Attributes:
        gamma: weight of the positive part, ``>= 0``.
        eps: stabiliser, finite, ``0 <= eps <= MAX_EPS`` (1e30).
        share: spread bias and stabiliser shares over the inputs (conserves relevance).
    """

    gamma: float = 0.25
    eps: float = 0.0
    share: bool = False

    def __post_init__(self):
        object.__setattr__(self, "gamma", _check_number("Gamma", "gamma", self.gamma, 0.0))
        _check_eps("Gamma", self.eps)
        object.__setattr__(self, "eps", float(self.eps))
        _check_bool("Gamma", "share", self.share)

    def linear(self, xs: Sequence[Array], Ws: Sequence[Array], b: Array | None, z: Array,
               r: Array) -> tuple[tuple[Array, ...], Array | None]:
        """Redistributes ``r`` (M,) onto ``xs`` (D_k,) and ``b`` (M,); see the class docstring."""
        g = self.gamma
        contribs = tuple(x[:, None] * (W + g * jnp.maximum(W, 0)) for x, W in zip(xs, Ws))
        bias_term = None if b is None else b + g * jnp.maximum(b, 0)
        return _proportional(contribs, bias_term, b, r, self.eps, self.share)


@dataclass(frozen=True)
class Flat:
    """The flat rule, the toolbox's ``"flat"`` (Lapuschkin et al. 2016, JMLR 17(114); 2019)::

        R_j = sum_k 1 / D * R_k

    Every input of the mapping (all ``D`` of them, over all inputs ``xs``) gets an equal share,
    whatever its value and weight; meant for the input layer, where it spreads the relevance of
    each first-layer neuron uniformly. The bias is ignored. Conservation: always exact.
    """

    def linear(self, xs: Sequence[Array], Ws: Sequence[Array], b: Array | None, z: Array,
               r: Array) -> tuple[tuple[Array, ...], Array | None]:
        """Redistributes ``r`` (M,) onto ``xs`` (D_k,); the bias gets zeros (M,) or None."""
        n_inputs = sum(x.shape[0] for x in xs)
        per_unit = jnp.sum(r) / n_inputs
        r_xs = tuple(jnp.full(x.shape, per_unit, r.dtype) for x in xs)
        return r_xs, None if b is None else jnp.zeros_like(b)


@dataclass(frozen=True)
class WSquare:
    """The w² rule of deep Taylor decomposition (Montavon et al. 2017; the toolbox's ``"ww"``)::

        R_j = sum_k w_jk^2 / sum_j' w_j'k^2 * R_k

    For unbounded real-valued inputs (the input layer); it ignores the input values and the bias.
    Conservation: exact, except for an output whose weights are all zero (its relevance is lost).
    """

    def linear(self, xs: Sequence[Array], Ws: Sequence[Array], b: Array | None, z: Array,
               r: Array) -> tuple[tuple[Array, ...], Array | None]:
        """Redistributes ``r`` (M,) onto ``xs`` (D_k,); the bias gets zeros (M,) or None."""
        contribs = tuple(W * W for W in Ws)
        return _proportional(contribs, None, b, r)


def _bounds(name: str, value) -> float | tuple[float, ...]:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        if len(value) == 0:
            raise ValueError(f"`{name}` of ZB must be a float or a non-empty tuple of floats; got ().")
        return tuple(_check_number("ZB", name, v) for v in value)
    return _check_number("ZB", name, value)


@dataclass(frozen=True)
class ZB:
    """The z^B rule for inputs in a box ``low <= x <= high`` (Montavon et al. 2017, Pattern Recognit.)::

        R_j = sum_k (x_j w_jk - l_j w_jk^+ - h_j w_jk^-) / sum_j' (x_j' w_j'k - l_j' w_j'k^+ - h_j' w_j'k^-) * R_k

    For bounded inputs such as pixels (the input layer). Every numerator is ``>= 0`` when ``x`` lies
    in the box. The bias is ignored. Conservation: exact for every output with a non-zero
    denominator (inputs at the bounds that would make every term zero lose that output's relevance).

    Attributes:
        low, high: the bounds, each a float (every feature) or a tuple of floats, one per input unit
            over all inputs ``xs`` in order (tuples, not arrays, so the rule stays hashable; lists
            and numpy arrays are converted). ``low < high`` element-wise.
    """

    low: float | tuple[float, ...] = 0.0
    high: float | tuple[float, ...] = 1.0

    def __post_init__(self):
        low, high = _bounds("low", self.low), _bounds("high", self.high)
        lows = low if isinstance(low, tuple) else None
        highs = high if isinstance(high, tuple) else None
        if lows is not None and highs is not None and len(lows) != len(highs):
            raise ValueError(f"`low` and `high` of ZB must have the same length; got {len(lows)} and {len(highs)}.")
        n = len(lows or highs or (0.0,))
        lows = lows or (cast(float, low),) * n  # a float when not a tuple
        highs = highs or (cast(float, high),) * n
        bad = [j for j in range(n) if not lows[j] < highs[j]]
        if bad:
            raise ValueError(f"ZB needs `low` < `high`; at index {bad[0]} low = {lows[bad[0]]!r}, "
                             f"high = {highs[bad[0]]!r}.")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def _bound_vectors(self, xs: Sequence[Array]) -> tuple[list[Array], list[Array]]:
        sizes = [x.shape[0] for x in xs]
        vectors = []
        for name, bound in (("low", self.low), ("high", self.high)):
            dtype = xs[0].dtype
            if isinstance(bound, tuple):
                if len(bound) != sum(sizes):
                    raise ValueError(f"`{name}` of ZB has {len(bound)} bounds; the mapping has D = {sum(sizes)} "
                                     f"inputs (sizes {sizes}).")
                full = jnp.asarray(bound, dtype)
                offsets = [sum(sizes[:k]) for k in range(len(sizes))]
                vectors.append([full[o:o + n] for o, n in zip(offsets, sizes)])
            else:
                vectors.append([jnp.full((n,), bound, dtype) for n in sizes])
        return vectors[0], vectors[1]

    def linear(self, xs: Sequence[Array], Ws: Sequence[Array], b: Array | None, z: Array,
               r: Array) -> tuple[tuple[Array, ...], Array | None]:
        """Redistributes ``r`` (M,) onto ``xs`` (D_k,); the bias gets zeros (M,) or None.

        Raises:
            ValueError: tuple bounds whose length differs from the number of inputs D.
        """
        lows, highs = self._bound_vectors(xs)
        contribs = tuple(x[:, None] * W - lo[:, None] * jnp.maximum(W, 0) - hi[:, None] * jnp.minimum(W, 0)
                         for x, W, lo, hi in zip(xs, Ws, lows, highs))
        return _proportional(contribs, None, b, r)


LINEAR_RULES = (Epsilon, Z, ZPlus, AlphaBeta, Gamma, Flat, WSquare, ZB)
"""The rule classes for linear mappings (any of them goes in ``RuleSet(linear=...)``)."""

LinearRule = Epsilon | Z | ZPlus | AlphaBeta | Gamma | Flat | WSquare | ZB


_GATE_MODES = ("all", "prop", "abs", "half")


@dataclass(frozen=True)
class Gate:
    """Product rules for gated interactions ``p = gate(z_g) * signal(z_s)`` (Table 11.1).

    On the pre-activations ``z_g`` (gate) and ``z_s`` (signal)::

        all  (signal-take-all, Arras et al. 2017): R_g = 0,                        R_s = R_p
        prop (proportional):  R_g = z_g / (z_g + z_s + eps*sign(z_g + z_s)) R_p,   R_s likewise with z_s
        abs  (absolute):      R_g = |z_g| / (|z_g| + |z_s| + eps) R_p,            R_s likewise with |z_s|
        half (equal):         R_g = R_s = R_p / 2

    Only ``all`` derives from a deep Taylor decomposition (Sec. 11.3.2). The stabilisers of ``prop``
    and ``abs`` absorb relevance; ``share=True`` gives the absorbed part half to each input.

    Attributes:
        mode: one of ``"all"``, ``"prop"``, ``"abs"``, ``"half"``.
        eps: stabiliser of ``prop`` and ``abs``, ``0 <= eps <= MAX_EPS`` (unused by ``all`` and ``half``).
        share: spread the stabiliser's share over gate and signal (conserves relevance).
    """

    mode: str = "all"
    eps: float = 0.0
    share: bool = False

    def __post_init__(self):
        if self.mode not in _GATE_MODES:
            raise ValueError(f"`mode` of Gate must be one of {_GATE_MODES}; got {self.mode!r}.")
        _check_eps("Gate", self.eps)
        object.__setattr__(self, "eps", float(self.eps))
        if not isinstance(self.share, bool):
            raise TypeError(f"`share` of Gate must be a bool; got {type(self.share).__name__}.")

    @property
    def gates_receive_relevance(self) -> bool:
        """Whether the gate of a product receives any relevance: False under signal-take-all (Table 11.1,
        LRP-all: ``R_g = 0``), so a cell may skip the relevance backward of its gates' pre-activations."""
        return self.mode != "all"

    def split(self, z_g: Array, z_s: Array, r: Array) -> tuple[Array, Array]:
        """Redistributes ``r`` of the product onto ``(z_g, z_s)``; all shapes equal."""
        return self.redistribute(self.prepare(z_g, z_s), r)

    def prepare(self, z_g: Array, z_s: Array) -> tuple:
        """What the redistribution needs, computed in the forward pass: the shares ``(s_g, s_s)`` of
        LRP-prop and -abs, ``R_g = s_g R_p``, ``R_s = s_s R_p``; nothing for ``all`` and ``half``,
        whose shares are constants."""
        if self.mode in ("all", "half"):
            return ()
        if self.mode == "prop":
            num_g, num_s = z_g, z_s
            den = stabilize(z_g + z_s, self.eps)
        else:
            num_g, num_s = jnp.abs(z_g), jnp.abs(z_s)
            den = num_g + num_s + self.eps
        s_g, s_s = safe_divide(num_g, den), safe_divide(num_s, den)
        if self.share:
            half_absorbed = 0.5 * (1 - s_g - s_s)
            s_g, s_s = s_g + half_absorbed, s_s + half_absorbed
        return s_g, s_s

    def redistribute(self, prepared: tuple, r: Array) -> tuple[Array, Array]:
        """``(R_g, R_s)`` from :meth:`prepare`'s result and the product's relevance ``r``."""
        if self.mode == "all":
            # The gate controls the flow of information but is not information itself (Sec. 11.3.2).
            return jnp.zeros_like(r), r
        if self.mode == "half":
            return 0.5 * r, 0.5 * r
        s_g, s_s = prepared
        return s_g * r, s_s * r


ATTENTION_MODES = ("gate", "prop", "abs", "half", "attnlrp")


@dataclass(frozen=True)
class AttentionRule:
    """How relevance passes an attention over steps, ``c = sum_t alpha_t v_t``, ``alpha = softmax(e)``.

    The context is an accumulation (Sec. 11.3.3) of the products ``p_td = alpha_t v_td``; each product is
    a gated interaction (Sec. 11.3.2) whose gate is the attention weight and whose signal is the value,
    and the weights come from the scores ``e_t`` through a softmax (:mod:`lrpjax.core.attention`). The
    mode says how a product's relevance ``R_p`` is split and how the weights' share reaches the scores:

    * ``"gate"`` (default; Table 11.1's signal-take-all, CP-LRP of Ali et al., ICML 2022): ``R_alpha = 0``,
      ``R_v = R_p``: the weights are treated like gates, relevance goes through the values only;
    * ``"prop"``, ``"abs"``, ``"half"``: Table 11.1's splits of ``p = alpha_t v_td`` on its two factors
      (``R_alpha = alpha / (alpha + v + eps sign) R_p`` for ``prop``, ...); the weights' relevance passes
      the softmax unchanged to the scores, as an activation passes relevance;
    * ``"attnlrp"`` (Achtibat et al., "AttnLRP: attention-aware layer-wise relevance propagation for
      transformers", ICML 2024): the uniform rule for products (``R_alpha = R_v = R_p / 2``, their
      Prop. 3.3) and their softmax rule (Prop. 3.1), the Taylor decomposition of the softmax at ``e``::

          R_e_t = e_t (R_alpha_t - alpha_t sum_s R_alpha_s)

      whose remainder (the bias of the expansion) is absorbed; ``share=True`` spreads it equally over the
      valid steps.

    Bilinear scores of two input-dependent factors (``e_st = sum_d q_sd k_td``) split their products
    by the same product rule. With ``share=True`` (and a sharing rule set) relevance is conserved in
    every mode.

    Attributes:
        mode: one of :data:`ATTENTION_MODES`.
        eps: stabiliser of ``prop`` and ``abs`` (as :class:`Gate`), ``0 <= eps <= MAX_EPS``.
        share: spread what stabilisers and the softmax's Taylor remainder absorb over the inputs.
    """

    mode: str = "gate"
    eps: float = 0.0
    share: bool = False

    def __post_init__(self):
        if self.mode not in ATTENTION_MODES:
            raise ValueError(f"`mode` of AttentionRule must be one of {ATTENTION_MODES}; got {self.mode!r}.")
        _check_eps("AttentionRule", self.eps)
        object.__setattr__(self, "eps", float(self.eps))
        _check_bool("AttentionRule", "share", self.share)

    @property
    def scores_receive_relevance(self) -> bool:
        """Whether any relevance reaches the scores (not under ``"gate"``)."""
        return self.mode != "gate"

    @property
    def product(self) -> Gate:
        """The rule splitting a product ``alpha_t v_td`` (and a bilinear score's ``q_sd k_td``)."""
        mode = {"gate": "all", "attnlrp": "half"}.get(self.mode, self.mode)
        return Gate(mode, self.eps, self.share)

    def softmax(self, e: Array, alpha: Array, valid: Array, r: Array) -> Array:
        """Redistributes the weights' relevance ``r`` onto the scores ``e``; ``e``, ``alpha``, ``r``: (T, K)
        (K heads, normalised over T), ``valid``: (T,) bool. Padded steps receive 0."""
        zero = jnp.zeros((), r.dtype)
        keep = valid[:, None]
        r = jnp.where(keep, r, zero)
        if self.mode != "attnlrp":
            return r   # the softmax passes relevance as an activation does
        total = jnp.sum(r, axis=0, keepdims=True)
        r_e = jnp.where(keep, e * (r - alpha * total), zero)
        if self.share:
            count = jnp.maximum(jnp.sum(valid.astype(r.dtype)), jnp.ones((), r.dtype))
            rest = (total - jnp.sum(r_e, axis=0, keepdims=True)) / count
            r_e = r_e + jnp.where(keep, rest, zero)
        return r_e


def _check_rule_field(field: str, value, classes: tuple[type, ...], methods: tuple[str, ...]) -> None:
    """A RuleSet field holds an instance of `classes`, or a user rule with the same methods, hashable."""
    accepted = ", ".join(c.__name__ for c in classes)
    if isinstance(value, type):
        raise TypeError(f"`{field}` of RuleSet must be a rule instance ({accepted}); got the class "
                        f"{value.__name__} itself: write {value.__name__}(...).")
    if not isinstance(value, classes) and not all(hasattr(value, m) for m in methods):
        needs = " and ".join(f"`{m}`" for m in methods)
        raise TypeError(f"`{field}` of RuleSet must be one of {accepted} (or a rule object with {needs}); "
                        f"got {value!r} ({type(value).__name__}).")
    try:
        hash(value)
    except TypeError:
        raise TypeError(f"`{field}` of RuleSet must be hashable (a frozen dataclass) to be static under jit; "
                        f"got an unhashable {type(value).__name__}.") from None



@dataclass(frozen=True)
class RuleSet:
    """Which rule each kind of elementary computation uses.

    Attributes:
        linear: rule for linear mappings (gate pre-activations, dense and output layers): any of
            :data:`LINEAR_RULES` (an object with the method ``linear(xs, Ws, b, z, r)``).
        gate: rule for gated interactions (Table 11.1).
        accumulate: rule for accumulations (the cell state sum, Eq. 11.4).
        layers: optional overrides ``((layer_name, RuleSet), ...)`` for named layers of a model,
            e.g. ``(("out", RuleSet(linear=Epsilon(0.0))),)``; see :meth:`at`.
        attention: rule for attention over steps (:class:`AttentionRule`; weights as gates by default).

    Raises:
        TypeError: when built with a field of the wrong kind -- ``RuleSet(linear="epsilon")``, a `Gate`
            where a linear rule belongs, an `Epsilon` where a `Gate` belongs, a rule class instead of an
            instance, an unhashable rule or a malformed ``layers`` -- naming the field and the accepted
            types (instead of an AttributeError at explain time).
    """

    linear: LinearRule = Epsilon()
    gate: Gate = Gate()
    accumulate: Epsilon = Epsilon()
    layers: tuple = ()
    attention: AttentionRule = AttentionRule()

    def __post_init__(self):
        _check_rule_field("linear", self.linear, LINEAR_RULES, ("linear",))
        _check_rule_field("gate", self.gate, (Gate,), ("split", "mode"))
        _check_rule_field("accumulate", self.accumulate, (Epsilon,), ("accumulate",))
        _check_rule_field("attention", self.attention, (AttentionRule,), ("softmax", "product"))
        if not isinstance(self.layers, tuple):
            raise TypeError(f"`layers` of RuleSet must be a tuple of (layer name, RuleSet) pairs; "
                            f"got {type(self.layers).__name__}.")
        for entry in self.layers:
            if not isinstance(entry, tuple) or len(entry) != 2:
                raise TypeError(f"`layers` of RuleSet must hold (layer name, RuleSet) pairs; got {entry!r}.")
            name, rules = entry
            if not isinstance(name, str) or not isinstance(rules, RuleSet):
                raise TypeError("`layers` of RuleSet must be pairs (layer name: str, RuleSet); "
                                f"got ({type(name).__name__}, {type(rules).__name__}).")

    def at(self, *names: str) -> RuleSet:
        """The rule set for a model layer: the override of the first of ``names`` that has one (most
        specific first, e.g. ``at("left", "bilstm")`` for one direction of a bidirectional layer), or
        this set itself."""
        for layer in names:
            for name, rules in self.layers:
                if name == layer:
                    return rules
        return self

    def replace(self, **changes) -> RuleSet:
        """A copy with some fields changed, e.g. ``rules.replace(gate=Gate("half"))``."""
        return dataclasses.replace(self, **changes)


PRESETS = ("lrp-all", "lrp-prop", "lrp-abs", "lrp-half")


def preset(name: str, eps: float = 0.0, share: bool = False, attention: str = "gate") -> RuleSet:
    """One of the chapter's rule configurations (Sec. 11.5.1, Table 11.1).

    All use LRP-epsilon for linear mappings and accumulations; they differ in the product rule.

    Args:
        name: ``"lrp-all"`` (signal-take-all, the reference's behaviour), ``"lrp-prop"``,
            ``"lrp-abs"`` or ``"lrp-half"``.
        eps: stabiliser for every rule (``0`` gives the z-rule; at most ``MAX_EPS``, 1e30).
        share: spread bias and stabiliser shares over the inputs (exact conservation).
        attention: the mode of :class:`AttentionRule` for attention layers (:data:`ATTENTION_MODES`;
            ``"gate"``: the weights as gates), with the same ``eps`` and ``share``.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones), a bad ``eps`` or an
            unknown attention mode.
    """
    if name not in PRESETS:
        raise ValueError(f"Unknown rule preset {name!r}; valid presets are {', '.join(PRESETS)}.")
    mode = name.removeprefix("lrp-")
    linear = Epsilon(eps, share)
    return RuleSet(linear=linear, gate=Gate(mode, eps, share), accumulate=linear,
                   attention=AttentionRule(attention, eps, share))


def _as_rule_set(default: RuleSet, value, where: str) -> RuleSet:
    if isinstance(value, RuleSet):
        return value.replace(layers=())
    if isinstance(value, LINEAR_RULES):
        return default.replace(linear=value, layers=())
    raise TypeError(f"{where} must be a RuleSet or a linear rule ({', '.join(c.__name__ for c in LINEAR_RULES)}); "
                    f"got {type(value).__name__}.")


def composite(default: RuleSet, first=None, by_layer: dict | None = None, *,
              first_layer: str = "dense_0") -> RuleSet:
    """A rule set with per-layer overrides: a composite of rules (Montavon et al. 2019, Sec. 10.3).

    Layers are looked up by name with :meth:`RuleSet.at`: ``"dense_0"``, ``"dense_1"``, ..., ``"out"``
    for :class:`lrpjax.models.mlp.MLP`; ``"lstm"`` (or ``"left"``, ``"right"``) and ``"out"`` for the
    LSTM models. For example zB on the input layer and epsilon above::

        composite(RuleSet(linear=Epsilon(0.1)), first=ZB(0.0, 1.0))

    or, for a BiLSTM, LRP-all in the recurrence and the z-rule at the output layer::

        composite(preset("lrp-all", eps=1e-3), by_layer={"out": Z()})

    Args:
        default: the rule set of every layer without an override (its own overrides are replaced).
        first: rule for the first layer ``first_layer``: a linear rule (it replaces
            ``default.linear`` there) or a whole :class:`RuleSet`; None for no override.
        by_layer: ``{layer name: linear rule or RuleSet}``; an entry for ``first_layer`` wins over
            ``first``.
        first_layer: the name of the first layer (``MLP(...).layers[0]`` for a model with a prefix).

    Returns:
        ``default`` with ``layers`` set to the overrides (a hashable value).

    Raises:
        TypeError: ``default`` not a RuleSet, an override not a rule, or a layer name not a string.
    """
    if not isinstance(default, RuleSet):
        raise TypeError(f"`default` must be a RuleSet; got {type(default).__name__}.")
    if by_layer is not None and not isinstance(by_layer, dict):
        raise TypeError(f"`by_layer` must be a dict {{layer name: rule}}; got {type(by_layer).__name__}.")
    if not isinstance(first_layer, str):
        raise TypeError(f"`first_layer` must be a layer name (str); got {type(first_layer).__name__}.")
    overrides = {} if first is None else {first_layer: _as_rule_set(default, first, "`first`")}
    for name, value in (by_layer or {}).items():
        if not isinstance(name, str):
            raise TypeError(f"keys of `by_layer` must be layer names (str); got {name!r}.")
        overrides[name] = _as_rule_set(default, value, f"`by_layer[{name!r}]`")
    return default.replace(layers=tuple(overrides.items()))
