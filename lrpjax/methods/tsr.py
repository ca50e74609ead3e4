"""Temporal Saliency Rescaling (Ismail et al., NeurIPS 2020): a method on top of any other.

Saliency methods applied to recurrent models of multivariate time series tend to mark the right time
steps but the wrong features, or the reverse. TSR separates the two questions (Algorithm 1 of the
paper), with ``R(x)`` the base method's map (T, E):

1. time-relevance score of step t: ``Delta_t = sum |R(x) - R(x with step t removed)|``;
2. feature-relevance score of input i at step t, for the steps with ``Delta_t > alpha`` only:
   ``delta_{t,i} = sum |R(x) - R(x with x_{t,i} removed)|`` (0 at the other steps);
3. ``R_TSR(x)_{t,i} = Delta_t * delta_{t,i}``.

"Removed" sets the inputs to ``baseline`` (0 by default). The cost is T + T * E explanations by the base
method per example, all of them in one ``vmap``. ``alpha`` is ``threshold`` when given, else the mean of
``Delta`` over the valid steps (the paper leaves it a hyper-parameter). The maps are non-negative: TSR
ranks; it does not sign or conserve.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from lrpjax.methods.base import Method, describe

__all__ = ["TSR", "tsr"]


@dataclass(frozen=True)
class TSR(Method):
    """Temporal Saliency Rescaling of a base method (module docstring).

    Attributes:
        apply: the model (the base method's).
        base: the method rescaled, one giving a map per input (T, E) (LRP, gradients, IG, SmoothGrad).
        threshold: alpha; None: the mean time-relevance score over the valid steps.
        baseline: the value a removed input takes.
    """

    base: Any = None
    threshold: float | None = None
    baseline: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.base, Method):
            raise TypeError(f"`base` must be an explanation method (lrpjax.methods.Method); got "
                            f"{type(self.base).__name__}.")
        if self.base.per_position:
            raise ValueError(f"`base` must give a map per input (T, E); {self.base.name!r} gives one value per "
                             "position, which TSR cannot split into features.")
        if self.base.apply is not self.apply:
            raise ValueError("`apply` must be the base method's model (`base.apply`).")
        if self.threshold is not None and (not isinstance(self.threshold, (int, float))
                                           or isinstance(self.threshold, bool)):
            raise TypeError(f"`threshold` must be a float or None; got {type(self.threshold).__name__}.")
        if not isinstance(self.baseline, (int, float)) or isinstance(self.baseline, bool):
            raise TypeError(f"`baseline` must be a float; got {type(self.baseline).__name__}.")

    @property
    def name(self) -> str:
        return f"tsr-{self.base.name}"

    def identity(self) -> dict[str, Any]:
        """The base method's identity in place of its ``repr``."""
        identity = super().identity()
        identity["base"] = self.base.identity()
        identity["apply"] = describe(self.apply)
        return identity

    def relevance(self, params, x, target, mask, index):
        if x.ndim != 2:
            raise ValueError(f"TSR rescales maps of sequences (T, E); got an input of shape {x.shape}.")
        T, E = x.shape
        valid = jnp.ones((T,), bool) if mask is None else mask
        base = jnp.asarray(self.baseline, x.dtype)

        def explain(x_):
            return self.base.relevance(params, x_, target, mask, index)

        R = explain(x)
        steps = jnp.eye(T, dtype=bool)[:, :, None]                       # (T, T, 1): step t removed
        step_maps = jax.vmap(lambda s: explain(jnp.where(s, base, x)))(steps)
        delta_t = jnp.where(valid, jnp.sum(jnp.abs(R[None] - step_maps), axis=(1, 2)), jnp.zeros((), x.dtype))
        n_valid = jnp.sum(valid.astype(x.dtype))
        alpha = jnp.sum(delta_t) / n_valid if self.threshold is None else jnp.asarray(self.threshold, x.dtype)
        cells = jnp.eye(T * E, dtype=bool).reshape(T * E, T, E)         # one input x_{t,i} removed
        cell_maps = jax.vmap(lambda c: explain(jnp.where(c, base, x)))(cells)
        delta_ti = jnp.sum(jnp.abs(R[None] - cell_maps), axis=(1, 2)).reshape(T, E)
        kept = (delta_t > alpha) & valid
        return jnp.where(kept[:, None], delta_t[:, None] * delta_ti, jnp.zeros((), x.dtype))


def tsr(base: Method, threshold: float | None = None, baseline: float = 0.0) -> TSR:
    """Temporal Saliency Rescaling of ``base`` (Ismail et al. 2020): ``tsr(lrpjax.gradient(model.apply))``.

    Raises:
        TypeError: ``base`` not a method, or bad option types.
        ValueError: a position-wise base method (occlusion, CD, random).
    """
    if not isinstance(base, Method):
        raise TypeError(f"`base` must be an explanation method (lrpjax.methods.Method); got {type(base).__name__}.")
    return TSR(base.apply, base, threshold, baseline)
