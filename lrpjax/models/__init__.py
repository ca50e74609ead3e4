"""Models: pure functions ``apply(params, x, rules=None, *, mask=None)`` over parameter dicts."""

from lrpjax.models import bilstm, lstm, mlp
from lrpjax.models.lstm import LSTM
from lrpjax.models.mlp import MLP

__all__ = ["LSTM", "MLP", "bilstm", "lstm", "mlp"]
