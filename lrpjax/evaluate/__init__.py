"""How good an explanation is: perturbation curves (pixel flipping, word deletion) and their AOPC."""

from lrpjax.evaluate.perturbation import Score, aopc, perturbation_curve, perturbation_curves

__all__ = ["Score", "aopc", "perturbation_curve", "perturbation_curves"]
