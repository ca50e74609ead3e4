"""Models: pure functions ``apply(params, x, rules=None, *, mask=None)`` over parameter dicts."""

from lrpjax.models import bilstm, lstm
from lrpjax.models.lstm import LSTM

__all__ = ["LSTM", "bilstm", "lstm"]
