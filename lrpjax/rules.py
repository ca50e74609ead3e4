"""Relevance rules as small frozen values, rule sets, and the chapter's presets.

A rule is an immutable, hashable dataclass of Python floats, bools and strings: it is static under
``jax.jit`` (a rule with other hyper-parameters compiles anew). Each rule has one method doing the
redistribution for the elementary computation it serves (``ops.py``):

* linear mappings ``z = sum_k x_k @ W_k + b``: :class:`Epsilon` (``eps = 0`` is the z-rule);
* gated interactions ``p = gate(z_g) * signal(z_s)``: :class:`Gate` (Table 11.1);
* accumulations ``c = sum_k t_k``: :class:`Epsilon`.

A :class:`RuleSet` names the rule for each kind of computation; :func:`preset` returns the four
configurations of the chapter.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import jax.numpy as jnp

from lrpjax._types import Array

__all__ = [
    "Epsilon",
    "Gate",
    "RuleSet",
    "PRESETS",
    "preset",
    "stabilize",
    "safe_divide",
]


def stabilize(z: Array, eps: float) -> Array:
    """``z + eps * sign(z)`` with ``sign(0) = +1``: pushes a denominator away from zero (Sec. 11.3.1)."""
    return z + eps * jnp.where(z >= 0, 1, -1).astype(z.dtype)


def safe_divide(num: Array, den: Array) -> Array:
    """``num / den`` where ``den != 0`` and 0 elsewhere: a zero denominator gives a zero share, never NaN."""
    zero = den == 0
    return jnp.where(zero, jnp.zeros_like(num), num / jnp.where(zero, jnp.ones_like(den), den))


def _check_eps(name: str, eps: float) -> None:
    if not isinstance(eps, (int, float)) or isinstance(eps, bool):
        raise TypeError(f"`eps` of {name} must be a Python float; got {type(eps).__name__}.")
    if not eps >= 0 or eps == float("inf"):
        raise ValueError(f"`eps` of {name} must be a finite number >= 0; got {eps!r}.")


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
        eps: stabiliser, ``>= 0``.
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
        den = stabilize(c, self.eps)
        q = safe_divide(r, den)
        r_terms = tuple(t * q for t in terms)
        if self.share:
            absorbed = r - sum(r_terms)
            r_terms = tuple(rt + absorbed / len(terms) for rt in r_terms)
        return r_terms


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
        eps: stabiliser of ``prop`` and ``abs``, ``>= 0`` (unused by ``all`` and ``half``).
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

    def split(self, z_g: Array, z_s: Array, r: Array) -> tuple[Array, Array]:
        """Redistributes ``r`` of the product onto ``(z_g, z_s)``; all shapes equal."""
        if self.mode == "all":
            # The gate controls the flow of information but is not information itself (Sec. 11.3.2).
            return jnp.zeros_like(r), r
        if self.mode == "half":
            return 0.5 * r, 0.5 * r
        if self.mode == "prop":
            num_g, num_s = z_g, z_s
            den = stabilize(z_g + z_s, self.eps)
        else:
            num_g, num_s = jnp.abs(z_g), jnp.abs(z_s)
            den = num_g + num_s + self.eps
        q = safe_divide(r, den)
        r_g, r_s = num_g * q, num_s * q
        if self.share:
            half_absorbed = 0.5 * (r - r_g - r_s)
            r_g, r_s = r_g + half_absorbed, r_s + half_absorbed
        return r_g, r_s


@dataclass(frozen=True)
class RuleSet:
    """Which rule each kind of elementary computation uses.

    Attributes:
        linear: rule for linear mappings (gate pre-activations, output layers).
        gate: rule for gated interactions (Table 11.1).
        accumulate: rule for accumulations (the cell state sum, Eq. 11.4).
        layers: optional overrides ``((layer_name, RuleSet), ...)`` for named layers of a model,
            e.g. ``(("out", RuleSet(linear=Epsilon(0.0))),)``; see :meth:`at`.
    """

    linear: Epsilon = Epsilon()
    gate: Gate = Gate()
    accumulate: Epsilon = Epsilon()
    layers: tuple = ()

    def __post_init__(self):
        for name, rules in self.layers:
            if not isinstance(name, str) or not isinstance(rules, RuleSet):
                raise TypeError("`layers` of RuleSet must be pairs (layer name: str, RuleSet); "
                                f"got ({type(name).__name__}, {type(rules).__name__}).")

    def at(self, layer: str) -> RuleSet:
        """The rule set for the model layer called ``layer`` (an override, or this set itself)."""
        for name, rules in self.layers:
            if name == layer:
                return rules
        return self

    def replace(self, **changes) -> RuleSet:
        """A copy with some fields changed, e.g. ``rules.replace(gate=Gate("half"))``."""
        return dataclasses.replace(self, **changes)


PRESETS = ("lrp-all", "lrp-prop", "lrp-abs", "lrp-half")


def preset(name: str, eps: float = 0.0, share: bool = False) -> RuleSet:
    """One of the chapter's rule configurations (Sec. 11.5.1, Table 11.1).

    All use LRP-epsilon for linear mappings and accumulations; they differ in the product rule.

    Args:
        name: ``"lrp-all"`` (signal-take-all, the reference's behaviour), ``"lrp-prop"``,
            ``"lrp-abs"`` or ``"lrp-half"``.
        eps: stabiliser for every rule (``0`` gives the z-rule).
        share: spread bias and stabiliser shares over the inputs (exact conservation).

    Raises:
        ValueError: for an unknown name (the message lists the valid ones) or a bad ``eps``.
    """
    if name not in PRESETS:
        raise ValueError(f"Unknown rule preset {name!r}; valid presets are {', '.join(PRESETS)}.")
    mode = name.removeprefix("lrp-")
    linear = Epsilon(eps, share)
    return RuleSet(linear=linear, gate=Gate(mode, eps, share), accumulate=linear)
