"""The engine: rule values (:mod:`~lrpjax.core.rules`), the elementary computations with their relevance
rules as ``jax.custom_vjp`` backward passes (:mod:`~lrpjax.core.ops`) and the recurrent cells built only
from them (:mod:`~lrpjax.core.cells`); attention over steps (:mod:`~lrpjax.core.attention`); the
selective scan of state space models (:mod:`~lrpjax.core.ssm`); xLSTM's sLSTM cell and mLSTM memory
(:mod:`~lrpjax.core.xlstm`). Nothing here knows a model, a method or
a file."""

from lrpjax.core import attention, cells, ops, rules, ssm, xlstm

__all__ = ["attention", "cells", "ops", "rules", "ssm", "xlstm"]
