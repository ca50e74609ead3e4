"""The selective scan of a state space model as an elementary computation with its relevance rule.

The recurrence of a selective state space model (Mamba, Gu & Dao 2023) is, element-wise over the state::

    h_t = a_t * h_{t-1} + u_t,      h_{-1} = 0,      t = 0 .. T-1

with ``a_t = exp(Delta_t A)`` and ``u_t = Delta_t B_t x_t``. Given the coefficients it is a chain of
accumulations (Sec. 11.3.3): ``h_t`` is the sum of the two terms ``a_t h_{t-1}`` and ``u_t`` (at t = 0 of
``u_0`` alone), and ``a_t h_{t-1}`` is a product whose factor ``a_t`` acts as a gate -- it decides how
much of the state is kept, it is not information itself -- so under signal-take-all (Table 11.1) it
receives no relevance and ``h_{t-1}`` all of the term's. With the accumulation rule's shares
``s1_t, s2_t`` of the two terms (``rules.accumulate``: ``t_k / (h_t + eps sign(h_t))``, plus an equal
part of what the stabiliser absorbs when ``share=True``) the relevance ``rho_t`` of ``h_t`` -- what
arrives at it directly, ``R_t``, plus what flows back from ``h_{t+1}`` -- is itself a linear recurrence,
run backwards in time::

    rho_t = R_t + s1_{t+1} * rho_{t+1},      R(u_t) = s2_t * rho_t,      R(a_t) = 0

so relevance, like the forward pass, takes a sequential scan (``lax.scan``) or a parallel associative
scan (``lax.associative_scan``, O(log T) depth), with the same results to rounding.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from lrpjax._types import Array
from lrpjax.core.rules import RuleSet

__all__ = ["linear_recurrence", "SCANS"]

SCANS = ("sequential", "parallel")


def linear_recurrence(rules: RuleSet | None, a: Array, u: Array, scan: str = "sequential") -> Array:
    """``h_t = a_t * h_{t-1} + u_t`` from ``h_{-1} = 0``; relevance by ``rules.accumulate`` (module docstring).

    Args:
        rules: rule set, or None for the plain recurrence (true gradients, also with respect to ``a``).
        a: the coefficients, shape (T, ...) (a gate: it receives no relevance).
        u: the inputs, shape (T, ...), as ``a``.
        scan: ``"sequential"`` (``lax.scan``) or ``"parallel"`` (``lax.associative_scan``).

    Returns:
        h, shape (T, ...).

    Raises:
        ValueError: an unknown ``scan`` or shapes that differ.
    """
    if scan not in SCANS:
        raise ValueError(f"`scan` must be one of {SCANS}; got {scan!r}.")
    if jnp.shape(a) != jnp.shape(u):
        raise ValueError(f"`a` and `u` must have the same shape (T, ...); got {jnp.shape(a)} and {jnp.shape(u)}.")
    if rules is None:
        return _recurrence(a, u, scan)
    return _linear_recurrence(rules, scan, a, u)


def _recurrence(a: Array, u: Array, scan: str) -> Array:
    """The forward recurrence, sequential or parallel."""
    if scan == "parallel":
        def combine(first, second):
            # (a1, u1) then (a2, u2): h -> a2 (a1 h + u1) + u2.
            return first[0] * second[0], second[0] * first[1] + second[1]

        return lax.associative_scan(combine, (a, u))[1]

    def step(h, a_u):
        """``(h_{t-1}, (a_t, u_t)) -> (h_t, h_t)``."""
        h = a_u[0] * h + a_u[1]
        return h, h

    return lax.scan(step, jnp.zeros_like(u[0]), (a, u))[1]


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _linear_recurrence(rules, scan, a, u):
    return _recurrence(a, u, scan)


def _linear_recurrence_fwd(rules, scan, a, u):
    h = _recurrence(a, u, scan)
    h_prev = jnp.concatenate([jnp.zeros_like(h[:1]), h[:-1]])
    s1, s2 = _shares(rules.accumulate, a * h_prev, u, h)
    # At t = 0 the state is u_0 alone: an accumulation of one term (nothing goes to the zero start).
    first = _shares_one(rules.accumulate, u[:1], h[:1])
    s1 = jnp.concatenate([jnp.zeros_like(s1[:1]), s1[1:]])
    s2 = jnp.concatenate([first, s2[1:]])
    return h, (s1, s2)


def _linear_recurrence_bwd(rules, scan, residuals, r):
    s1, s2 = residuals
    # rho_t = R_t + s1_{t+1} rho_{t+1}: the forward recurrence on the reversed sequence.
    coefficient = jnp.concatenate([s1[1:], jnp.zeros_like(s1[:1])])
    rho = _recurrence(coefficient[::-1], r[::-1], scan)[::-1]
    # The coefficients a_t are gates (signal-take-all): they receive nothing.
    return jnp.zeros_like(s1), s2 * rho


_linear_recurrence.defvjp(_linear_recurrence_fwd, _linear_recurrence_bwd)


def _shares(rule, first: Array, second: Array, total: Array) -> tuple[Array, Array]:
    """The accumulation rule's shares of two terms (rules linear in the relevance, as Epsilon)."""
    if hasattr(rule, "accumulate_shares"):
        s1, s2 = rule.accumulate_shares((first, second), total)
        return s1, s2
    s1, s2 = rule.accumulate((first, second), total, jnp.ones_like(total))
    return s1, s2


def _shares_one(rule, term: Array, total: Array) -> Array:
    """The accumulation rule's share of a single term."""
    if hasattr(rule, "accumulate_shares"):
        return rule.accumulate_shares((term,), total)[0]
    return rule.accumulate((term,), total, jnp.ones_like(total))[0]
