"""Integrated Gradients (Sundararajan, Taly, Yan 2017): the gradient averaged along the straight path from
a baseline to the input, times the input's difference from the baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lrpjax._types import Array
from lrpjax.methods.base import Method
from lrpjax.methods.results import Attribution
from lrpjax.methods.targets import select, weights

__all__ = ["IntegratedGradients", "integrated_gradients", "gradients_at", "zero_padded"]


def zero_padded(relevance: Array, mask) -> Array:
    """Exact zeros at padded steps of a (T, ...) relevance (mask None: unchanged)."""
    if mask is None:
        return relevance
    keep = jnp.reshape(mask, mask.shape + (1,) * (relevance.ndim - 1))
    return jnp.where(keep, relevance, jnp.zeros((), relevance.dtype))


def gradients_at(apply: Callable, params, points: Array, w: Array, mask) -> Array:
    """``d sum(w * f(p)) / d p`` at every point ``p`` of ``points`` (K, *x.shape), one vmapped pullback."""
    def one(point):
        _, pullback = jax.vjp(lambda x_: apply(params, x_, None, mask=mask), point)
        return pullback(w)[0]

    return jax.vmap(one)(points)


@dataclass(frozen=True)
class IntegratedGradients(Method):
    """Integrated Gradients: ``(x - x0) * mean_k grad f(x0 + a_k (x - x0))``.

    ``f = sum(w * output)`` is the explained quantity (``w`` is fixed at ``x``) and
    ``a_k = (k + 1/2) / steps`` the midpoint rule on [0, 1]; the gradients at all ``steps`` points are
    one vmapped pullback. Completeness, ``sum(R) = f(x) - f(x0)``, holds up to the quadrature error:
    :meth:`~lrpjax.methods.base.Method.full` returns the :class:`~lrpjax.methods.results.Attribution`
    with that gap. Padded steps get 0.

    Attributes:
        apply: the model, ``apply(params, x, rules=None, *, mask=None)``.
        steps: points of the midpoint rule on the straight path, ``>= 1``.
        baseline: the path's start: a float (every feature), a tuple of E floats (one embedding,
            repeated at every step; lists and arrays are converted), or a function ``baseline(x) ->``
            array of ``x``'s shape (static: pass the same function object to reuse compiled code).
    """

    steps: int = 32
    baseline: float | tuple[float, ...] | Callable = 0.0

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.steps, (int, np.integer)) or isinstance(self.steps, bool) or self.steps < 1:
            raise ValueError(f"`steps` of Integrated Gradients must be an int >= 1; got {self.steps!r}.")
        object.__setattr__(self, "steps", int(self.steps))
        baseline = self.baseline
        if callable(baseline):
            return
        if hasattr(baseline, "tolist"):
            baseline = baseline.tolist()
        if isinstance(baseline, (list, tuple)):
            if not baseline or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in baseline):
                raise ValueError("`baseline` of Integrated Gradients as a sequence must hold E >= 1 numbers, "
                                 f"one per input feature; got {self.baseline!r}.")
            baseline = tuple(float(v) for v in baseline)
        elif isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
            baseline = float(baseline)
        else:
            raise TypeError("`baseline` of Integrated Gradients must be a float, a sequence of E floats or a "
                            f"function of the input; got {type(self.baseline).__name__}.")
        if not np.all(np.isfinite(baseline)):
            raise ValueError(f"`baseline` of Integrated Gradients must be finite; got {self.baseline!r}.")
        object.__setattr__(self, "baseline", baseline)

    @property
    def name(self) -> str:
        return "integrated_gradients"

    def baseline_of(self, x: Array) -> Array:
        """The baseline input ``x0``, shaped like ``x``.

        Raises:
            ValueError: a baseline function's result or a baseline tuple that does not fit ``x``.
        """
        if callable(self.baseline):
            baseline = jnp.asarray(self.baseline(x), x.dtype)
            if baseline.shape != x.shape:
                raise ValueError(f"`baseline` function must return an array of the input's shape {x.shape}; "
                                 f"got {baseline.shape}.")
            return baseline
        value = jnp.asarray(self.baseline, x.dtype)
        if value.ndim == 1 and value.shape[0] != x.shape[-1]:
            raise ValueError(f"`baseline` has {value.shape[0]} values; the input has E = {x.shape[-1]} features.")
        return jnp.broadcast_to(value, x.shape)

    def _parts(self, params, x, target, mask):
        """(attributions, scores at x, baseline input); midpoint rule on the path."""
        scores = self.apply(params, x, None, mask=mask)
        w = weights(target, scores)
        baseline = self.baseline_of(x)
        alphas = (jnp.arange(self.steps, dtype=x.dtype) + 0.5) / self.steps
        points = baseline[None] + alphas.reshape((-1,) + (1,) * x.ndim) * (x - baseline)[None]
        mean_gradient = jnp.mean(gradients_at(self.apply, params, points, w, mask), axis=0)
        return zero_padded((x - baseline) * mean_gradient, mask), scores, baseline

    def relevance(self, params, x, target, mask, index):
        return self._parts(params, x, target, mask)[0]

    def prepare_full(self, params, x, mask, index):
        """``(scores, pull_full)``: ``pull_full(target)`` is the :class:`Attribution` with the gap."""
        def pull_full(target) -> Attribution:
            relevance, scores, baseline = self._parts(params, x, target, mask)
            target_score = select(target, scores)
            baseline_score = jnp.sum(weights(target, scores) * self.apply(params, baseline, None, mask=mask))
            gap = jnp.sum(relevance) - (target_score - baseline_score)
            return Attribution(relevance, scores, target_score, baseline_score, gap)

        return self.apply(params, x, None, mask=mask), pull_full


def integrated_gradients(apply: Callable, steps: int = 32, baseline=0.0) -> IntegratedGradients:
    """Integrated Gradients (Sundararajan, Taly, Yan 2017); see :class:`IntegratedGradients`.

    Args:
        apply: the model, ``apply(params, x, rules=None, *, mask=None)``.
        steps: number of points on the path (>= 1).
        baseline: ``x0``: a float for every feature (default 0, the all-zero input that occlusion also
            uses), a sequence of E floats (a reference embedding at every step), or a function
            ``baseline(x) -> x0`` of ``x``'s shape.

    Raises:
        ValueError: ``steps`` < 1, a non-finite or empty baseline.
        TypeError: a baseline of another type.
    """
    return IntegratedGradients(apply, steps, baseline)
