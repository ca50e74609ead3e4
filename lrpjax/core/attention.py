"""Attention over steps as elementary computations: a softmax over valid steps with its relevance rule,
the context as an accumulation of gated products, and bilinear scores.

An attention layer computes scores ``e_t`` from the steps ``v_t`` (T, D) of a sequence (and a query),
weights ``alpha = softmax(e)`` over the valid steps, and the context ``c_d = sum_t alpha_t v_td``. In
the chapter's terms (Fig. 11.2) the context is an *accumulation* (Sec. 11.3.3) of the products
``p_td = alpha_t v_td``, each a *gated interaction* (Sec. 11.3.2) with the weight as gate and the value
as signal, and the scores are *linear mappings* (with a ``tanh`` for additive scores) or bilinear
products of two inputs. So relevance passes:

* the sum over steps by ``rules.accumulate`` (:func:`lrpjax.core.ops.pool`): ``R_p_td = p_td / c_d R_c_d``;
* each product by ``rules.attention.product`` (:func:`lrpjax.core.ops.gated`, identity activations):
  all to the value under the default ``"gate"`` mode (signal-take-all), or split (Table 11.1's prop,
  abs, half; AttnLRP's uniform rule);
* the softmax by :func:`softmax` (``rules.attention.softmax``): unchanged, or AttnLRP's Taylor rule;
* the scores by the rules of their own computations (``rules.linear``; bilinear products as above).

With ``rules=None`` every function here is the plain computation (true gradients).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from lrpjax._types import Array
from lrpjax.core import ops
from lrpjax.core.rules import RuleSet, safe_divide

__all__ = ["softmax", "product_rules", "attend", "bilinear"]


def product_rules(rules: RuleSet) -> RuleSet:
    """``rules`` with the attention's product rule as its gate rule (for ``ops.gated`` on products)."""
    return rules.replace(gate=rules.attention.product)


def _softmax(e: Array, valid: Array) -> Array:
    """Softmax over the valid steps (axis 0) of ``e`` (T, K); padded steps get weight exactly 0. A row
    without valid steps (a fully padded example of a batch) gets weights 0, never NaN."""
    keep = valid[:, None]
    lowest = jnp.asarray(-jnp.inf, e.dtype)
    top = jnp.max(jnp.where(keep, e, lowest), axis=0, keepdims=True)
    top = jax.lax.stop_gradient(jnp.where(jnp.isfinite(top), top, jnp.zeros_like(top)))
    # The shift cancels in the ratio (a constant of the softmax), so it carries no gradient.
    weights = jnp.where(keep, jnp.exp(jnp.where(keep, e, top) - top), jnp.zeros((), e.dtype))
    return safe_divide(weights, jnp.sum(weights, axis=0, keepdims=True))


def softmax(rules: RuleSet | None, e: Array, valid: Array) -> Array:
    """``alpha_tk = exp(e_tk) / sum_s exp(e_sk)`` over the valid steps s, per head k.

    Relevance follows ``rules.attention.softmax`` (:class:`~lrpjax.core.rules.AttentionRule`): the
    weights' relevance passes unchanged to the scores, or by AttnLRP's softmax rule
    ``R_e_t = e_t (R_alpha_t - alpha_t sum_s R_alpha_s)`` (Achtibat et al. 2024, Prop. 3.1).

    Args:
        rules: rule set, or None for the plain function.
        e: scores, shape (T, K) (K heads).
        valid: valid steps, shape (T,) bool; padded steps get weight 0 and no relevance.

    Returns:
        alpha, shape (T, K).
    """
    if rules is None:
        return _softmax(e, valid)
    return _softmax_rule(rules.attention, e, valid)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _softmax_rule(rule, e, valid):
    return _softmax(e, valid)


def _softmax_rule_fwd(rule, e, valid):
    alpha = _softmax(e, valid)
    return alpha, (e, alpha, valid)


def _softmax_rule_bwd(rule, residuals, r):
    e, alpha, valid = residuals
    # The mask is not explained (a boolean input has a float0 cotangent).
    return rule.softmax(e, alpha, valid, r), _float0(valid)


_softmax_rule.defvjp(_softmax_rule_fwd, _softmax_rule_bwd)


def _float0(x: Array):
    import numpy as np

    return np.zeros(x.shape, dtype=jax.dtypes.float0)


def attend(rules: RuleSet | None, alpha: Array, values: Array, valid: Array) -> Array:
    """The contexts ``c_kd = sum_t alpha_tk v_td`` of K heads, concatenated head by head.

    Written with the elementary computations: the products ``alpha_tk v_td`` are gated interactions
    (``ops.gated`` with identity activations, split by ``rules.attention.product``) and their sum over
    the valid steps an accumulation (``ops.pool``, ``rules.accumulate``).

    Args:
        rules: rule set, or None for the plain function.
        alpha: weights, shape (T, K) (0 at padded steps).
        values: the values, shape (T, D).
        valid: valid steps, shape (T,) bool.

    Returns:
        The contexts, shape (K * D,): head 0's D values first.
    """
    T, K = alpha.shape
    D = values.shape[1]
    gate = jnp.broadcast_to(alpha[:, :, None], (T, K, D))          # fan-out: routing
    signal = jnp.broadcast_to(values[:, None, :], (T, K, D))
    if rules is None:
        products = gate * signal
        return jnp.sum(valid.astype(values.dtype)[:, None] * products.reshape(T, K * D), axis=0)
    products = ops.gated(product_rules(rules), gate, signal, ops.IDENTITY, ops.IDENTITY)
    return ops.pool(rules, products.reshape(T, K * D), valid.astype(values.dtype))


def bilinear(rules: RuleSet | None, query: Array, keys: Array) -> Array:
    """Dot scores of an input-dependent query: ``e_t = sum_d q_d k_td``.

    Both factors depend on the input, so each product ``q_d k_td`` is a gated interaction split by
    ``rules.attention.product`` (AttnLRP's uniform rule under ``"attnlrp"``), and the sum over ``d``
    an accumulation (``rules.accumulate``).

    Args:
        rules: rule set, or None for the plain function.
        query: shape (D,).
        keys: shape (T, D).

    Returns:
        e, shape (T,).
    """
    T, D = keys.shape
    q = jnp.broadcast_to(query[None, :], (T, D))
    if rules is None:
        return jnp.sum(q * keys, axis=1)
    products = ops.gated(product_rules(rules), q, keys, ops.IDENTITY, ops.IDENTITY)
    # A sum over the D products of each step: pooling over the feature axis.
    return ops.pool(rules, products.T, jnp.ones((D,), keys.dtype))
