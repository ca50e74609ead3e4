"""Occlusion (Sec. 11.5.1): how much the explained quantity drops when one position is set to zero."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import jax
import jax.numpy as jnp

from lrpjax.methods.base import Method
from lrpjax.methods.targets import select

__all__ = ["Occlusion", "occlusion", "MODES"]

MODES = ("f", "p")


@dataclass(frozen=True)
class Occlusion(Method):
    """One relevance per position (T,), all positions in one vmapped call.

    ``R_t = f(x)[target] - f(x with x_t = 0)[target]`` (``mode="f"``, f-diff on scores) or the same on
    softmax probabilities over the last axis (``mode="p"``, P-diff); for weights or a function of the
    output, the same difference of ``sum(w * output)``. Padded steps get 0.

    Attributes:
        apply: the model.
        mode: ``"f"`` (score difference) or ``"p"`` (probability difference).
    """

    mode: str = "f"

    per_position: ClassVar[bool] = True

    def __post_init__(self):
        super().__post_init__()
        if self.mode not in MODES:
            raise ValueError(f"`mode` of occlusion must be 'f' (score difference) or 'p' (probability "
                             f"difference); got {self.mode!r}.")

    @property
    def name(self) -> str:
        return f"occlusion-{self.mode}"

    def relevance(self, params, x, target, mask, index):
        def output(x_):
            scores = self.apply(params, x_, None, mask=mask)
            return select(target, jax.nn.softmax(scores, axis=-1) if self.mode == "p" else scores)

        occluded = jax.vmap(lambda t: output(x.at[t].set(0)))(jnp.arange(x.shape[0]))
        relevance = output(x) - occluded
        return relevance if mask is None else jnp.where(mask, relevance, 0)


def occlusion(apply: Callable, mode: str = "f") -> Occlusion:
    """Occlusion with ``mode`` ``"f"`` (f-diff) or ``"p"`` (P-diff); see :class:`Occlusion`.

    Raises:
        ValueError: an unknown mode.
    """
    return Occlusion(apply, mode)
