"""The engine: rule values (:mod:`~lrpjax.core.rules`), the elementary computations with their relevance
rules as ``jax.custom_vjp`` backward passes (:mod:`~lrpjax.core.ops`) and the recurrent cells built only
from them (:mod:`~lrpjax.core.cells`). Nothing here knows a model, a method or a file."""

from lrpjax.core import cells, ops, rules

__all__ = ["cells", "ops", "rules"]
