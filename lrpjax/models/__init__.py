"""Models: pure functions ``apply(params, x, rules=None, *, mask=None)`` over parameter dicts.

Every model is a composition of layers (:class:`Sequential` of :class:`Recurrent`, :class:`Dense`,
:class:`Pool`, or any value with the members of the protocol :class:`Layer`); ``LSTM`` (``lstm``,
``bilstm``) and ``MLP`` are named compositions.
"""

from lrpjax.models import bilstm, layers, lstm, mlp, sequential
from lrpjax.models.layers import Decomposable, Dense, Layer, Pool, Recurrent
from lrpjax.models.lstm import LSTM
from lrpjax.models.mlp import MLP
from lrpjax.models.sequential import Sequential, network_of

__all__ = ["Decomposable", "Dense", "LSTM", "Layer", "MLP", "Pool", "Recurrent", "Sequential", "bilstm", "layers",
           "lstm", "mlp", "network_of", "sequential"]
