"""Models: pure functions ``apply(params, x, rules=None, *, mask=None)`` over parameter dicts.

Every model is a composition of layers (:class:`Sequential` of :class:`Recurrent`, :class:`Dense`,
:class:`Pool`, :class:`Embedding` (token ids in), :class:`AttentionPool`, :class:`SelfAttention`, the xLSTM
blocks :class:`MLSTMBlock`, :class:`SLSTMBlock` (and their :class:`LayerNorm`), or
any value with the members of the protocol :class:`Layer`); ``LSTM`` (``lstm``, ``bilstm``) and ``MLP`` are named compositions.
:class:`Seq2Seq` is an encoder-decoder RNN with attention (:class:`CrossAttention`) over a packed pair.
"""

from lrpjax.models import attention, bilstm, conv, embedding, layers, lstm, mamba, mlp, seq2seq, sequential, xlstm
from lrpjax.models.attention import AttentionPool, CrossAttention, SelfAttention
from lrpjax.models.conv import Conv1D
from lrpjax.models.embedding import Embedding
from lrpjax.models.layers import Decomposable, Dense, Layer, Pool, Recurrent
from lrpjax.models.lstm import LSTM
from lrpjax.models.mamba import MambaBlock, RMSNorm
from lrpjax.models.mlp import MLP
from lrpjax.models.seq2seq import Seq2Seq
from lrpjax.models.sequential import Sequential, network_of
from lrpjax.models.xlstm import LayerNorm, MLSTMBlock, SLSTMBlock

__all__ = ["AttentionPool", "Conv1D", "CrossAttention", "Decomposable", "Dense", "Embedding", "LSTM", "Layer", "MLP", "MambaBlock", "Pool", "Recurrent", "RMSNorm",
           "SelfAttention", "Seq2Seq", "Sequential", "attention", "bilstm", "conv", "embedding", "layers", "lstm", "mamba", "mlp", "network_of", "seq2seq", "sequential",
           "LayerNorm", "MLSTMBlock", "SLSTMBlock", "xlstm"]
