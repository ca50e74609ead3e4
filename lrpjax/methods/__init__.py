"""Explanation methods, each a value holding the model and every option that changes its results.

One module per family, each a :class:`~lrpjax.methods.base.Method` subclass and its constructor:
:mod:`~lrpjax.methods.lrp`, :mod:`~lrpjax.methods.gradient` (gradient, Sensitivity, Gradient x Input),
:mod:`~lrpjax.methods.integrated_gradients`, :mod:`~lrpjax.methods.smoothgrad`,
:mod:`~lrpjax.methods.occlusion`, :mod:`~lrpjax.methods.random_baseline`,
:mod:`~lrpjax.methods.decomposition` (Contextual Decomposition) and :mod:`~lrpjax.methods.tsr` (Temporal
Saliency Rescaling on top of another method). The protocol they share is in
:mod:`~lrpjax.methods.base`; the per-example program every driver runs in :mod:`~lrpjax.methods.program`.
"""

from lrpjax.methods.base import Method, Pullback
from lrpjax.methods.decomposition import ContextualDecomposition, cd
from lrpjax.methods.gradient import Gradient, GradientXInput, Sensitivity, gradient, gradient_x_input, sensitivity
from lrpjax.methods.inputs import pad, per_token
from lrpjax.methods.integrated_gradients import IntegratedGradients, integrated_gradients
from lrpjax.methods.lrp import LRP, lrp
from lrpjax.methods.occlusion import Occlusion, occlusion
from lrpjax.methods.random_baseline import RandomBaseline, random_baseline
from lrpjax.methods.results import Attribution, Explanation
from lrpjax.methods.smoothgrad import SmoothGrad, smoothgrad
from lrpjax.methods.tsr import TSR, tsr

__all__ = ["LRP", "Attribution", "ContextualDecomposition", "Explanation", "Gradient", "GradientXInput",
           "IntegratedGradients", "Method", "Occlusion", "Pullback", "RandomBaseline", "Sensitivity", "SmoothGrad",
           "TSR", "cd", "gradient", "gradient_x_input", "integrated_gradients", "lrp", "occlusion", "pad", "per_token",
           "random_baseline", "sensitivity", "smoothgrad", "tsr"]
