"""The gradient family: the true gradient of the target's quantity, its square (Sensitivity Analysis)
and its product with the input (Gradient x Input), each a pullback of the plain model (``rules=None``)
seeded with the target's weights ``w``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from lrpjax.methods.base import Pullback

__all__ = ["Gradient", "Sensitivity", "GradientXInput", "gradient", "sensitivity", "gradient_x_input"]


@dataclass(frozen=True)
class Gradient(Pullback):
    """``d sum(w * output) / d x`` (T, E) through the plain model."""

    @property
    def name(self) -> str:
        return "gradient"


@dataclass(frozen=True)
class Sensitivity(Pullback):
    """Sensitivity Analysis: the squared gradient (T, E); per token its squared L2 norm."""

    @property
    def name(self) -> str:
        return "sensitivity"

    def finish(self, relevance, x):
        return relevance ** 2


@dataclass(frozen=True)
class GradientXInput(Pullback):
    """Gradient x Input: ``x * d sum(w * output) / d x`` (T, E)."""

    @property
    def name(self) -> str:
        return "gradient_x_input"

    def finish(self, relevance, x):
        return relevance * x


def gradient(apply: Callable) -> Gradient:
    """``d score[target] / d x`` (T, E) through the plain model (``rules=None``)."""
    return Gradient(apply)


def sensitivity(apply: Callable) -> Sensitivity:
    """Sensitivity Analysis: the squared gradient (T, E); per token its squared L2 norm."""
    return Sensitivity(apply)


def gradient_x_input(apply: Callable) -> GradientXInput:
    """Gradient x Input: ``x * d score[target] / d x`` (T, E)."""
    return GradientXInput(apply)
