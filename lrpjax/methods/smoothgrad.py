"""SmoothGrad (Smilkov et al. 2017): a gradient map averaged over noisy copies of the input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lrpjax._types import Array
from lrpjax.methods.base import Method
from lrpjax.methods.integrated_gradients import gradients_at, zero_padded
from lrpjax.methods.targets import weights

__all__ = ["SmoothGrad", "smoothgrad", "NOISE", "MAPS"]

NOISE = ("relative", "absolute")
MAPS = ("gradient", "sensitivity", "gradient_x_input")


@dataclass(frozen=True)
class SmoothGrad(Method):
    """The mean of a gradient map over noisy copies of the input.

    ``R = (1/S) sum_s M(x + e_s)``, ``e_s ~ N(0, s^2)`` element-wise, ``M`` the gradient of ``sum(w *
    output)`` (or its square, or ``x' * gradient``). Seeded like the random baseline: the draw depends
    on ``seed``, the example's index (its position in a batch or dataset) and the step, not on the
    padding; padded steps get neither noise nor relevance. With ``sigma = 0`` it is the map itself (the
    gradient, up to rounding of the mean). All samples are one vmapped pullback.

    Attributes:
        apply: the model, ``apply(params, x, rules=None, *, mask=None)``.
        sigma: noise standard deviation, ``>= 0``: relative to the input's range (``noise="relative"``)
            or absolute.
        samples: noisy copies averaged, ``>= 1``.
        seed: random seed (an int).
        noise: ``"relative"``: the standard deviation is ``sigma * (max(x) - min(x))`` over the valid
            steps of the explained example (Smilkov et al.'s noise level); ``"absolute"``: ``sigma``.
        map: what is averaged at each noisy point ``x'``: ``"gradient"`` (SmoothGrad), ``"sensitivity"``
            (the squared gradient) or ``"gradient_x_input"`` (``x' * gradient``).
    """

    sigma: float = 0.15
    samples: int = 32
    seed: int = 0
    noise: str = "relative"
    map: str = "gradient"

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.sigma, (int, float)) or isinstance(self.sigma, bool):
            raise TypeError(f"`sigma` of SmoothGrad must be a Python float; got {type(self.sigma).__name__}.")
        if not 0 <= self.sigma < float("inf"):
            raise ValueError(f"`sigma` of SmoothGrad must be a finite number >= 0; got {self.sigma!r}.")
        object.__setattr__(self, "sigma", float(self.sigma))
        if not isinstance(self.samples, (int, np.integer)) or isinstance(self.samples, bool) or self.samples < 1:
            raise ValueError(f"`samples` of SmoothGrad must be an int >= 1; got {self.samples!r}.")
        object.__setattr__(self, "samples", int(self.samples))
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise TypeError(f"`seed` must be an int; got {type(self.seed).__name__}.")
        if self.noise not in NOISE:
            raise ValueError(f"`noise` of SmoothGrad must be one of {NOISE}; got {self.noise!r}.")
        if self.map not in MAPS:
            raise ValueError(f"`map` of SmoothGrad must be one of {MAPS}; got {self.map!r}.")

    @property
    def name(self) -> str:
        return "smoothgrad"

    def noise_at(self, x: Array, mask, index) -> Array:
        """Noise (S, *x.shape): a draw per step from ``fold_in(fold_in(PRNGKey(seed), index), t)``, so a
        step's noise depends on the seed, the example and the position only (not on the padded length);
        padded steps get none."""
        key = jax.random.fold_in(jax.random.PRNGKey(self.seed), index)
        if x.ndim == 1:
            noise = jax.random.normal(key, (self.samples,) + x.shape, x.dtype)
        else:
            per_step = jax.vmap(lambda t: jax.random.normal(jax.random.fold_in(key, t), (self.samples,) + x.shape[1:],
                                                            x.dtype))(jnp.arange(x.shape[0]))
            noise = jnp.swapaxes(per_step, 0, 1)
        scale = jnp.asarray(self.sigma, x.dtype)
        if self.noise == "relative":
            valid = jnp.ones(x.shape, bool) if mask is None else jnp.broadcast_to(
                jnp.reshape(mask, mask.shape + (1,) * (x.ndim - 1)), x.shape)
            span = jnp.max(jnp.where(valid, x, -jnp.inf)) - jnp.min(jnp.where(valid, x, jnp.inf))
            scale = scale * span
        return jax.vmap(lambda n: zero_padded(n, mask))(scale * noise)

    def relevance(self, params, x, target, mask, index):
        w = weights(target, self.apply(params, x, None, mask=mask))
        points = x[None] + self.noise_at(x, mask, index)
        gradients = gradients_at(self.apply, params, points, w, mask)
        if self.map == "sensitivity":
            gradients = gradients ** 2
        elif self.map == "gradient_x_input":
            gradients = gradients * points
        return zero_padded(jnp.mean(gradients, axis=0), mask)


def smoothgrad(apply: Callable, sigma: float = 0.15, samples: int = 32, seed: int = 0, *,
               noise: str = "relative", map: str = "gradient") -> SmoothGrad:
    """SmoothGrad (Smilkov et al. 2017); see :class:`SmoothGrad`.

    Args:
        apply: the model, ``apply(params, x, rules=None, *, mask=None)``.
        sigma: noise level (default 0.15 of the input's range, within Smilkov et al.'s 10-20 %).
        samples: number of noisy copies.
        seed: random seed (an int).
        noise: ``"relative"`` (sigma times the example's value range) or ``"absolute"``.
        map: ``"gradient"``, ``"sensitivity"`` or ``"gradient_x_input"``.

    Raises:
        ValueError: a negative or non-finite ``sigma``, ``samples`` < 1, an unknown ``noise`` or ``map``.
        TypeError: ``seed`` not an int, ``sigma`` not a number.
    """
    return SmoothGrad(apply, sigma, samples, seed, noise, map)
