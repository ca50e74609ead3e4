"""lrpjax: Layer-wise Relevance Propagation for LSTMs as a functional rule engine in JAX.

    import lrpjax
    from lrpjax.models import bilstm

    explain = lrpjax.lrp(bilstm.apply, lrpjax.rules.preset("lrp-all", eps=1e-3))
    R = explain(params, x, target)          # (T, E) relevance, starting from the target's score
"""

from lrpjax import cells, evaluate, models, ops, rules
from lrpjax.cd import cd as contextual_decomposition
from lrpjax.evaluate import Score, aopc, perturbation_curves
from lrpjax.explain import (Explanation, Method, gradient, gradient_x_input, lrp, occlusion, pad, per_token,
                            random_baseline, sensitivity)

__version__ = "0.1.0"

__all__ = [
    "Explanation",
    "Method",
    "Score",
    "aopc",
    "cells",
    "contextual_decomposition",
    "evaluate",
    "gradient",
    "gradient_x_input",
    "lrp",
    "models",
    "occlusion",
    "ops",
    "pad",
    "per_token",
    "perturbation_curves",
    "random_baseline",
    "rules",
    "sensitivity",
]
