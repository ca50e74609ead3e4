"""The random baseline: seeded standard-normal relevance, one value per position."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import jax
import jax.numpy as jnp

from lrpjax.methods.base import Method

__all__ = ["RandomBaseline", "random_baseline"]


@dataclass(frozen=True)
class RandomBaseline(Method):
    """Seeded random relevance (T,), standard normal; the draw depends on ``seed`` and the example's
    index in its batch or dataset (``fold_in(PRNGKey(seed), index)``), so every example draws anew.

    Attributes:
        apply: the model (only its input's shape matters).
        seed: random seed (an int).
    """

    seed: int = 0

    per_position: ClassVar[bool] = True

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise TypeError(f"`seed` must be an int; got {type(self.seed).__name__}.")

    @property
    def name(self) -> str:
        return "random"

    def relevance(self, params, x, target, mask, index):
        key = jax.random.fold_in(jax.random.PRNGKey(self.seed), index)
        relevance = jax.random.normal(key, (x.shape[0],), x.dtype)
        return relevance if mask is None else jnp.where(mask, relevance, 0)


def random_baseline(apply: Callable, seed: int = 0) -> RandomBaseline:
    """Seeded random relevance (T,), standard normal; a different draw per example of a batch."""
    return RandomBaseline(apply, seed)
