"""lrpjax: Layer-wise Relevance Propagation for recurrent models as a functional rule engine in JAX.

    import lrpjax
    from lrpjax.models import bilstm

    explain = lrpjax.lrp(bilstm.apply, lrpjax.rules.preset("lrp-all", eps=1e-3))
    R = explain(params, x, target)          # (T, E) relevance, starting from the target's score

The package, from the engine up (docs/guide/architecture.md):

* ``core`` -- rules, the elementary computations with their relevance rules, recurrent cells;
* ``models`` -- layers and their composition (``Sequential``), the named models;
* ``methods`` -- explanation methods as values (LRP, gradients, IG, SmoothGrad, occlusion, CD, ...);
* ``datasets`` -- length buckets and the one chunk program: datasets in memory, streams, shards;
* ``evaluate``, ``train`` -- how good explanations are; the optax trainer;
* ``interop`` -- models from PyTorch, Keras and Flax; ``data`` -- dataset loaders;
* ``viz``, ``io`` -- figures and reports; checkpoints, files, cache, progress;
* ``app`` -- the SST application and the ``lrpjax`` command line (the library never imports it).
"""

from lrpjax import _compat, evaluate, models
from lrpjax.core import cells, ops, rules
from lrpjax.evaluate import Score, aopc, perturbation_curves
from lrpjax.methods import (Explanation, Method, gradient, gradient_x_input, integrated_gradients, lrp, occlusion,
                            pad, per_token, random_baseline, sensitivity, smoothgrad)
from lrpjax.methods.decomposition import cd as contextual_decomposition

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
    "integrated_gradients",
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
    "smoothgrad",
]

_compat.install()


def __getattr__(name: str):
    """``lrpjax.scale``, ``lrpjax.sst``, ...: the modules of the flat layout, at their new place."""
    return _compat.attribute(name)
