"""Perturbation curves: how fast a model's output falls when the most relevant features are removed.

Pixel flipping / region perturbation (Bach et al. 2015; Samek et al. 2017, IEEE TNNLS 28(11)) and
word deletion (Arras et al. 2016, 2017; Sec. 11.5.1 of the chapter) are one procedure: rank the
features of an example by relevance, remove them ``per_step`` at a time, most relevant first, and
record a score after every step. A good explanation makes the score fall fast; the area over the
perturbation curve (:func:`aopc`) summarises that.

A *feature* is one entry of the leading axis of an example: a pixel of a flat image (D,), a column
of a tabular row, a token of an embedded sequence (T, E) (its relevance summed over E first, e.g.
with ``lrpjax.per_token``), or a region when the image is reshaped to (regions, pixels per region)
and the relevance summed per region. Removal is either

* ``mode="replace"``: the feature is set to a baseline (a value, a per-feature array such as the
  mean image, or one per example such as noise), the example keeps its shape; or
* ``mode="delete"``: the token is dropped and the remaining tokens are packed to the front in their
  order with a shorter mask, as in the SST word-deletion experiment.

Everything is one ``jit``-compiled call, ``vmap``-ed over examples and steps. The score function is a
static argument: pass a module-level function or a :class:`Score` (equal values share compiled code).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from lrpjax._types import Array, ArrayLike, Params

__all__ = ["Score", "perturbation_curves", "perturbation_curve", "aopc"]

_SCORE_KINDS = ("score", "probability", "correct")
_MODES = ("replace", "delete")


@dataclass(frozen=True)
class Score:
    """What a perturbation curve records: ``Score(apply, kind)(params, x, target, mask) -> scalar``.

    Attributes:
        apply: the model, ``apply(params, x, rules=None, *, mask=None) -> (C,)``.
        kind: ``"score"`` (the target's score, before softmax), ``"probability"`` (its softmax
            probability) or ``"correct"`` (1.0 when the argmax is the target, else 0.0: the mean
            over examples is the accuracy).
    """

    apply: Callable
    kind: str = "score"

    def __post_init__(self):
        if self.kind not in _SCORE_KINDS:
            raise ValueError(f"`kind` of Score must be one of {_SCORE_KINDS}; got {self.kind!r}.")

    def __call__(self, params: Params, x: Array, target: Array, mask: Array | None) -> Array:
        scores = self.apply(params, x, None, mask=mask)
        if self.kind == "score":
            return scores[target]
        if self.kind == "probability":
            return jax.nn.softmax(scores)[target]
        return (jnp.argmax(scores) == target).astype(scores.dtype)


def perturbation_curves(score_fn: Callable, params: Params, X: ArrayLike, R: ArrayLike, targets: ArrayLike, *,
                        mask: ArrayLike | None = None, steps: int | None = None, per_step: int = 1,
                        baseline: ArrayLike | float = 0.0, mode: str = "replace",
                        order: str | ArrayLike = "most") -> Array:
    """Perturbation curves of a batch of examples.

    Step ``s`` removes the ``s * per_step`` highest-ranked valid features (fewer when the example has
    fewer); ties keep the feature order.

    Args:
        score_fn: ``score_fn(params, x, target, mask) -> scalar`` for one example, e.g.
            ``Score(model.apply)``; ``mask`` is None in ``"replace"`` mode without a mask.
        params: the model's parameters (passed to ``score_fn``).
        X: examples, shape (B, N, ...): N features each (flat images (B, D); sequences (B, T, E)).
        R: relevance per feature, shape (B, N).
        targets: class per example, shape (B,) int (or a scalar for all).
        mask: valid features (B, N) bool, e.g. the padding mask of sequences; invalid features are
            never removed and are passed on to ``score_fn`` as the mask.
        steps: number of steps L (the curve has L + 1 points); default: until every feature is gone.
        per_step: features removed per step.
        baseline: replacement in ``"replace"`` mode: a float, an array shaped like one example
            (N, ...) or like ``X`` (one per example).
        mode: ``"replace"`` or ``"delete"`` (drop tokens and pack the rest; needs sequences).
        order: ``"most"`` (most relevant first, the usual curve), ``"least"``, or a (B,) bool array
            choosing per example (True: most relevant first).

    Returns:
        curves, shape (B, L + 1): the score before any removal, then after every step.

    Raises:
        ValueError: bad shapes, a bad mode/order/steps/per_step, or non-finite relevance.
        TypeError: ``score_fn`` not callable, or integer ``X``.
    """
    X, R, targets, mask, baseline, most_first, steps = _check(score_fn, X, R, targets, mask, steps, per_step,
                                                             baseline, mode, order)
    return _curves(score_fn, steps, per_step, mode, params, X, R, targets, mask, baseline, most_first)


def perturbation_curve(score_fn: Callable, params: Params, x: ArrayLike, r: ArrayLike, target: ArrayLike,
                       **options: Any) -> Array:
    """One example's perturbation curve (L + 1,): :func:`perturbation_curves` on a batch of one.

    ``x`` (N, ...), ``r`` (N,), ``target`` scalar; ``mask`` (N,) and ``baseline`` shaped like ``x``
    or a float; the other options as for :func:`perturbation_curves`.
    """
    for name in ("mask", "baseline"):
        if name in options and options[name] is not None and jnp.ndim(options[name]) > 0:
            options[name] = jnp.asarray(options[name])[None]
    if "order" in options and not isinstance(options["order"], str):
        options["order"] = jnp.asarray(options["order"]).reshape(1)
    return perturbation_curves(score_fn, params, jnp.asarray(x)[None], jnp.asarray(r)[None],
                               jnp.asarray(target).reshape(1), **options)[0]


def aopc(curves: ArrayLike, steps: int | None = None) -> Array:
    """Area over the perturbation curve per example (Samek et al. 2017, Eq. 12).

    ``AOPC = 1 / (L + 1) * sum_{k=0..L} (f(x^(0)) - f(x^(k)))``; average over examples for the
    published figure. Larger is better for most-relevant-first curves.

    Args:
        curves: (B, L' + 1) from :func:`perturbation_curves`, or one curve (L' + 1,).
        steps: L <= L' (default L'): use the first L + 1 points.

    Returns:
        (B,), or a scalar for one curve.
    """
    curves = jnp.asarray(curves)
    if curves.ndim not in (1, 2) or curves.shape[-1] < 1:
        raise ValueError(f"`curves` must have shape (B, L + 1) or (L + 1,); got {curves.shape}.")
    if steps is not None:
        if not isinstance(steps, int) or not 0 <= steps < curves.shape[-1]:
            raise ValueError(f"`steps` must be an int in [0, {curves.shape[-1] - 1}]; got {steps!r}.")
        curves = curves[..., :steps + 1]
    return jnp.mean(curves[..., :1] - curves, axis=-1)


# --- the compiled procedure --------------------------------------------------------------------------

def _expand(flags: Array, ndim: int) -> Array:
    """(N,) -> (N, 1, ..., 1) with ``ndim`` axes in all, to select features of an example."""
    return flags.reshape(flags.shape + (1,) * (ndim - 1))


def _curve(score_fn, steps, per_step, mode, params, x, r, target, mask, baseline, most_first):
    """One example's curve (L + 1,); ``mask`` None or (N,) bool."""
    N = r.shape[0]
    valid = jnp.ones((N,), bool) if mask is None else mask
    key = jnp.where(most_first, -r, r)
    key = jnp.where(valid, key, jnp.inf)             # invalid features are ranked last, never removed
    ranking = jnp.argsort(key, stable=True)
    rank = jnp.zeros((N,), jnp.int32).at[ranking].set(jnp.arange(N, dtype=jnp.int32))

    def at_step(s):
        removed = (rank < s * per_step) & valid
        if mode == "replace":
            return score_fn(params, jnp.where(_expand(removed, x.ndim), baseline, x), target, mask)
        keep = valid & ~removed
        packed = jnp.argsort(~keep, stable=True)     # kept tokens first, in their order
        new_mask = jnp.arange(N) < jnp.sum(keep.astype(jnp.int32))
        x_packed = jnp.where(_expand(new_mask, x.ndim), x[packed], jnp.zeros_like(x))
        return score_fn(params, x_packed, target, new_mask)

    return jax.vmap(at_step)(jnp.arange(steps + 1, dtype=jnp.int32))


@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _curves(score_fn, steps, per_step, mode, params, X, R, targets, mask, baseline, most_first):
    one = partial(_curve, score_fn, steps, per_step, mode, params)
    mask_axis = None if mask is None else 0
    return jax.vmap(one, in_axes=(0, 0, 0, mask_axis, 0, 0))(X, R, targets, mask, baseline, most_first)


# --- checks ------------------------------------------------------------------------------------------

def _check(score_fn, X, R, targets, mask, steps, per_step, baseline, mode, order):
    if not callable(score_fn):
        raise TypeError(f"`score_fn` must be callable (params, x, target, mask) -> scalar; got "
                        f"{type(score_fn).__name__}.")
    X = jnp.asarray(X)
    if not jnp.issubdtype(X.dtype, jnp.floating):
        raise TypeError(f"`X` must be floating point; got dtype {X.dtype}.")
    if X.ndim < 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"`X` must have shape (B, N, ...) with B, N >= 1; got {X.shape}.")
    B, N = X.shape[:2]
    R = jnp.asarray(R)
    if R.shape != (B, N):
        raise ValueError(f"`R` must have shape (B, N) = ({B}, {N}), one relevance per feature; got {R.shape}.")
    if not isinstance(R, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(R))):
        raise ValueError("`R` contains non-finite values (NaN or inf).")
    R = R.astype(X.dtype)
    targets = jnp.asarray(targets)
    if targets.ndim == 0:
        targets = jnp.full((B,), targets)
    if targets.shape != (B,) or not jnp.issubdtype(targets.dtype, jnp.integer):
        raise ValueError(f"`targets` must be integer class indices of shape (B,) = ({B},); got shape "
                         f"{targets.shape}, dtype {targets.dtype}.")
    if mode not in _MODES:
        raise ValueError(f"`mode` must be one of {_MODES}; got {mode!r}.")
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.shape != (B, N) or mask.dtype != jnp.bool_:
            raise ValueError(f"`mask` must be bool of shape (B, N) = ({B}, {N}); got {mask.dtype} {mask.shape}.")
    elif mode == "delete":
        mask = jnp.ones((B, N), bool)
    if mode == "delete" and X.ndim < 3:
        raise ValueError(f"mode 'delete' drops tokens of sequences (B, T, E); `X` has shape {X.shape}.")
    if not isinstance(per_step, int) or isinstance(per_step, bool) or per_step < 1:
        raise ValueError(f"`per_step` must be an int >= 1; got {per_step!r}.")
    if steps is None:
        steps = -(-N // per_step)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"`steps` must be an int >= 0; got {steps!r}.")
    baseline = jnp.asarray(baseline, X.dtype)
    if baseline.shape not in ((), X.shape[1:], X.shape):
        raise ValueError(f"`baseline` must be a float, shaped like one example {X.shape[1:]} or like `X` "
                         f"{X.shape}; got {baseline.shape}.")
    baseline = jnp.broadcast_to(baseline, X.shape)
    if isinstance(order, str):
        if order not in ("most", "least"):
            raise ValueError(f"`order` must be 'most', 'least' or a (B,) bool array; got {order!r}.")
        most_first = jnp.full((B,), order == "most")
    else:
        most_first = jnp.asarray(order)
        if most_first.shape != (B,) or most_first.dtype != jnp.bool_:
            raise ValueError(f"`order` as an array must be bool of shape (B,) = ({B},); got {most_first.dtype} "
                             f"{most_first.shape}.")
    return X, R, targets, mask, baseline, most_first, steps
