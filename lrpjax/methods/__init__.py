"""Explanation methods, each a value holding the model and every option that changes its results."""

from lrpjax.methods.base import (Attribution, Explanation, IntegratedGradients, Method, SmoothGrad, gradient,
                                 gradient_x_input, integrated_gradients, lrp, occlusion, pad, per_token,
                                 random_baseline, sensitivity, smoothgrad)
from lrpjax.methods.decomposition import cd

__all__ = ["Attribution", "Explanation", "IntegratedGradients", "Method", "SmoothGrad", "cd", "gradient",
           "gradient_x_input", "integrated_gradients", "lrp", "occlusion", "pad", "per_token", "random_baseline",
           "sensitivity", "smoothgrad"]
