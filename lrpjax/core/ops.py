"""The elementary computations of an LSTM (Fig. 11.2), each paired with its relevance rule.

Under a rule set the cotangent carried by ``jax.vjp`` is *relevance*: every op below is a
``jax.custom_vjp`` whose backward pass is the LRP rule named by the rule set, so an explanation is an
ordinary ``jax.vjp`` of the model seeded with the output relevance. With ``rules=None`` each op is the
plain function and the model differentiates to true gradients.

Routing (slice, concatenate, reverse, stack, fan-out) needs no rule: its ordinary transpose already
routes relevance correctly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from lrpjax._types import Array
from lrpjax.core.rules import RuleSet, safe_divide, stabilize

__all__ = ["Activation", "SIGMOID", "ONE_MINUS_SIGMOID", "TANH", "IDENTITY", "RELU", "SILU", "linear", "gated",
           "accumulate", "pool", "no_relevance", "activation", "project", "recurrent_linear",
           "splits_across_time"]


@dataclass(frozen=True)
class Activation:
    """An element-wise activation ``scale * fn(z)``; hashable, so it can be a static argument.

    Attributes:
        name: ``"sigmoid"``, ``"one_minus_sigmoid"`` (``1 - sigmoid(z) = sigmoid(-z)``, the GRU's
            ``1 - z`` gate on z's own pre-activation), ``"tanh"``, ``"identity"``, ``"relu"`` or ``"silu"``
            (``z * sigmoid(z)``, Mamba's activation and gate).
        scale: the chapter's activation scales ``a_g``, ``a_h`` (Sec. 11.4.1, A2 and A3).
    """

    name: str
    scale: float = 1.0

    def __post_init__(self):
        if self.name not in _ACTIVATIONS:
            raise ValueError(f"`name` of Activation must be one of {tuple(_ACTIVATIONS)}; got {self.name!r}.")
        if not self.scale > 0:
            raise ValueError(f"`scale` of Activation must be > 0; got {self.scale!r}.")
        object.__setattr__(self, "scale", float(self.scale))

    def __call__(self, z: Array) -> Array:
        out = _ACTIVATIONS[self.name](z)
        return out if self.scale == 1.0 else self.scale * out


_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "sigmoid": jax.nn.sigmoid, "one_minus_sigmoid": lambda z: jax.nn.sigmoid(-z), "tanh": jnp.tanh,
    "identity": lambda z: z, "relu": jax.nn.relu, "silu": jax.nn.silu}

SIGMOID = Activation("sigmoid")
ONE_MINUS_SIGMOID = Activation("one_minus_sigmoid")
TANH = Activation("tanh")
IDENTITY = Activation("identity")
RELU = Activation("relu")
SILU = Activation("silu")


# --- linear mapping -------------------------------------------------------------------------------

def linear(rules: RuleSet | None, xs: Sequence[Array], Ws: Sequence[Array], b: Array | None = None) -> Array:
    """``z = sum_k xs[k] @ Ws[k] + b``: one linear mapping whose inputs share one denominator.

    Several inputs model the gate pre-activation ``W x_t + U y_{t-1} + b`` (Eq. 11.1-11.6) or the
    two directions of a bidirectional output layer. Relevance follows ``rules.linear``.

    Args:
        rules: rule set, or None for the plain function.
        xs: inputs, shapes (D_k,).
        Ws: weights, shapes (D_k, M).
        b: bias (M,), or None for a mapping without bias.

    Returns:
        z, shape (M,).
    """
    if rules is None:
        return _linear_forward(tuple(xs), tuple(Ws), b)
    return _linear(rules, tuple(xs), tuple(Ws), b)


def _linear_forward(xs, Ws, b):
    z = sum(x @ W for x, W in zip(xs, Ws))
    return z if b is None else z + b


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _linear(rules, xs, Ws, b):
    return _linear_forward(xs, Ws, b)


def _linear_fwd(rules, xs, Ws, b):
    z = _linear_forward(xs, Ws, b)
    return z, (xs, Ws, b, z)


def _linear_bwd(rules, residuals, r):
    xs, Ws, b, z = residuals
    r_xs, r_b = rules.linear.linear(xs, Ws, b, z, r)
    # Weights are not explained: their cotangent is zero. The bias cotangent is the relevance the
    # bias neuron absorbed (zero when shared onto the inputs), so conservation can be audited.
    return r_xs, tuple(jnp.zeros_like(W) for W in Ws), r_b


_linear.defvjp(_linear_fwd, _linear_bwd)


# --- a linear mapping split across the scan: input part for all steps, recurrent part per step ------
#
# The gate pre-activation ``z_t = x_t W + y_{t-1} U + b`` is one linear mapping with inputs
# (x_t, y_{t-1}) and one denominator (Eqs. 11.1-11.6). Its input part does not depend on the recurrence,
# so ``project`` computes ``A = X W`` for all steps in one matrix product outside the scan, and
# ``recurrent_linear`` adds ``y_{t-1} U + b`` inside. Under a rule set the pair implements the epsilon
# rule of the whole mapping: ``recurrent_linear`` computes ``q_t = R_t / (z_t + eps sign(z_t))``, gives
# ``y_{t-1}`` its relevance ``y_{t-1} * (U q_t)`` and the bias ``b * q_t``, and passes ``q_t`` -- not a
# relevance -- as the cotangent of ``a_t``; ``project`` turns the stacked ``Q`` into the inputs'
# relevance ``X * (Q W^T)`` with one matrix product for all steps.

def splits_across_time(rules: RuleSet | None) -> bool:
    """Whether ``rules.linear`` can be computed by :func:`project` + :func:`recurrent_linear`: the
    epsilon and z rules without sharing (their relevance per input is ``x_j w_j q``)."""
    from lrpjax.core.rules import Epsilon, Z

    linear = None if rules is None else rules.linear
    return isinstance(linear, (Epsilon, Z)) and type(linear) in (Epsilon, Z) and not linear.share


def project(rules: RuleSet | None, x: Array, W: Array) -> Array:
    """``A = x @ W`` for all steps, (T, E) @ (E, M) -> (T, M): the input part of a recurrent mapping.

    Under a rule set the cotangent arriving at ``A`` is ``Q`` (T, M) from :func:`recurrent_linear`,
    and the backward returns the relevance of ``x``, ``x * (Q W^T)`` (T, E).
    """
    if rules is None:
        return x @ W
    return _project(rules, x, W)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _project(rules, x, W):
    return x @ W


def _project_fwd(rules, x, W):
    return x @ W, (x, W)


def _project_bwd(rules, residuals, q):
    x, W = residuals
    # Weights are not explained (zero cotangent), as in ``linear``.
    return x * (q @ W.T), jnp.zeros_like(W)


_project.defvjp(_project_fwd, _project_bwd)


def recurrent_linear(rules: RuleSet | None, a: Array, y: Array, U: Array, b: Array) -> Array:
    """``z = a + y @ U + b`` with ``a = x_t W`` from :func:`project`: one step of the split mapping.

    Args:
        rules: rule set whose ``linear`` rule is the epsilon or z rule without sharing
            (:func:`splits_across_time`), or None for the plain sum.
        a: this step's input projection, shape (M,).
        y: the previous output, shape (H,).
        U: recurrent weights, shape (H, M).
        b: bias, shape (M,).

    Returns:
        z, shape (M,).
    """
    if rules is None:
        return a + y @ U + b
    return _recurrent_linear(rules, a, y, U, b)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _recurrent_linear(rules, a, y, U, b):
    return a + y @ U + b


def _recurrent_linear_fwd(rules, a, y, U, b):
    z = a + y @ U + b
    # 1 / (z + eps sign(z)), 0 where that is 0: computed now, the backward's q is one product.
    den = stabilize(z, getattr(rules.linear, "eps", 0.0))
    return z, (y, U, b, safe_divide(jnp.ones_like(den), den))


def _recurrent_linear_bwd(rules, residuals, r):
    y, U, b, inverse = residuals
    q = r * inverse
    # ``q`` goes to the input projection (``project`` makes it relevance); the bias absorbs ``b q``.
    return q, y * (q @ U.T), jnp.zeros_like(U), b * q


_recurrent_linear.defvjp(_recurrent_linear_fwd, _recurrent_linear_bwd)


# --- gated interaction ----------------------------------------------------------------------------

def gated(rules: RuleSet | None, z_gate: Array, z_signal: Array, gate_fn: Activation = SIGMOID,
          signal_fn: Activation = TANH) -> Array:
    """``p = gate_fn(z_gate) * signal_fn(z_signal)`` on pre-activations; rules of Table 11.1.

    Args:
        rules: rule set (``rules.gate`` splits the relevance), or None for the plain function.
        z_gate: gate pre-activation, shape (H,).
        z_signal: signal pre-activation (or a cell state with ``IDENTITY``), shape (H,).
        gate_fn, signal_fn: element-wise activations (sigmoid, tanh, identity, scaled versions).

    Returns:
        p, shape (H,).
    """
    if rules is None:
        return gate_fn(z_gate) * signal_fn(z_signal)
    return _gated(rules, gate_fn, signal_fn, z_gate, z_signal)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _gated(rules, gate_fn, signal_fn, z_gate, z_signal):
    return gate_fn(z_gate) * signal_fn(z_signal)


def _gated_fwd(rules, gate_fn, signal_fn, z_gate, z_signal):
    out = gate_fn(z_gate) * signal_fn(z_signal)
    if hasattr(rules.gate, "prepare"):   # the shares, computed now: the backward is a product
        return out, rules.gate.prepare(z_gate, z_signal)
    return out, (z_gate, z_signal)


def _gated_bwd(rules, gate_fn, signal_fn, residuals, r):
    # The activations sit between pre-activations and product: they pass relevance unchanged.
    if hasattr(rules.gate, "prepare"):
        return rules.gate.redistribute(residuals, r)
    return rules.gate.split(*residuals, r)


_gated.defvjp(_gated_fwd, _gated_bwd)


# --- accumulation ---------------------------------------------------------------------------------

def accumulate(rules: RuleSet | None, *terms: Array) -> Array:
    """``c = t_1 + ... + t_n`` (the cell state sum, Eq. 11.4); relevance by ``rules.accumulate``.

    Args:
        rules: rule set, or None for the plain sum.
        *terms: summands, equal shapes (H,).

    Returns:
        c, shape (H,).
    """
    if rules is None:
        return sum(terms[1:], terms[0])
    return _accumulate(rules, terms)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _accumulate(rules, terms):
    return sum(terms[1:], terms[0])


def _accumulate_fwd(rules, terms):
    c = sum(terms[1:], terms[0])
    if hasattr(rules.accumulate, "accumulate_shares"):   # each term's share, computed now
        return c, rules.accumulate.accumulate_shares(terms, c)
    return c, (terms, c)


def _accumulate_bwd(rules, residuals, r):
    if hasattr(rules.accumulate, "accumulate_shares"):
        return (tuple(share * r for share in residuals),)
    terms, c = residuals
    return (rules.accumulate.accumulate(terms, c, r),)


_accumulate.defvjp(_accumulate_fwd, _accumulate_bwd)


# --- pooling over steps ---------------------------------------------------------------------------

def pool(rules: RuleSet | None, x: Array, weights: Array) -> Array:
    """``z = sum_t weights[t] * x[t]``: sum or mean pooling over the steps of a sequence.

    An accumulation over time whose terms are ``weights[t] * x[t]`` (Sec. 11.3.3); relevance by
    ``rules.accumulate`` (:meth:`lrpjax.core.rules.Epsilon.pool`): ``R_td = w_t x_td / (z_d + eps sign(z_d)) R_d``.
    A step with weight 0 (padding) is not a term and receives nothing.

    Args:
        rules: rule set, or None for the plain weighted sum.
        x: sequence, shape (T, D).
        weights: constant step weights (T,): the mask for sum pooling, mask / L for mean pooling.

    Returns:
        z, shape (D,).
    """
    if rules is None:
        return jnp.sum(weights[:, None] * x, axis=0)
    return _pool(rules, x, weights)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _pool(rules, x, weights):
    return jnp.sum(weights[:, None] * x, axis=0)


def _pool_fwd(rules, x, weights):
    terms = weights[:, None] * x
    z = jnp.sum(terms, axis=0)
    return z, (terms, weights, z)


def _pool_bwd(rules, residuals, r):
    terms, weights, z = residuals
    # The weights are constants of the pooling (not explained): their cotangent is zero.
    return rules.accumulate.pool(terms, weights != 0, z, r), jnp.zeros_like(weights)


_pool.defvjp(_pool_fwd, _pool_bwd)


# --- a value that carries no relevance --------------------------------------------------------------

def no_relevance(z: Array) -> Array:
    """``z`` itself, passing no relevance back: its cotangent under ``jax.vjp`` is zero.

    For values whose share is zero by the rule in force (the gates under LRP-all, Table 11.1), so that
    the mapping producing them needs no backward pass. Unlike ``lax.stop_gradient`` the derivative
    of ``z`` as a forward value stays the identity, so an explanation that reads ``z`` (through the
    gate values in the product rules' residuals) still differentiates truly.
    """
    return _no_relevance(z)


@jax.custom_vjp
def _no_relevance(z):
    return z


def _no_relevance_fwd(z):
    return z, None


def _no_relevance_bwd(residuals, r):
    return (jnp.zeros_like(r),)


_no_relevance.defvjp(_no_relevance_fwd, _no_relevance_bwd)


# --- element-wise activation ----------------------------------------------------------------------

def activation(rules: RuleSet | None, fn: Activation, z: Array) -> Array:
    """``fn(z)`` element-wise; under a rule set relevance passes through unchanged.

    Args:
        rules: rule set, or None for the plain function (true gradient).
        fn: the activation.
        z: pre-activation, any shape.
    """
    if rules is None:
        return fn(z)
    return _activation(fn, z)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _activation(fn, z):
    return fn(z)


def _activation_fwd(fn, z):
    return fn(z), None


def _activation_bwd(fn, residuals, r):
    return (r,)


_activation.defvjp(_activation_fwd, _activation_bwd)
