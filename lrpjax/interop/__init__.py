"""Models trained elsewhere, as lrpjax models: PyTorch, Keras 3, Flax (linen and NNX) and Equinox weights
in, conventions checked.

::

    from lrpjax import interop
    model, params = interop.from_torch(rnn, head=linear)   # torch nn.LSTM / nn.GRU (+ head)
    model, params = interop.from_keras(keras_model)        # keras.Sequential of LSTM / GRU / Bidirectional / Dense
    model, params = interop.from_keras_functional(keras_model)   # a keras.Model chain with Attention([h, h])
    cell, cell_params = interop.from_flax_cell(variables["params"]["cell"], "lstm")   # one flax cell
    model, params = interop.from_nnx([rnn, linear])               # flax NNX layers, input side first
    model, params = interop.from_equinox([cell, linear])          # equinox cells scanned from zero states
    model, params, table = interop.from_mamba(hf_mamba)           # mambapy / HuggingFace Mamba
    model, params = interop.from_xlstm(xlstm_stack)               # the xlstm package's block stack / LM model
    scores = model.apply(params, x)                        # x (T, E) -> what the framework computes (logits)
    R = lrpjax.lrp(model.apply, lrpjax.core.rules.preset("lrp-all", eps=1e-3))(params, x, target)

Each importer returns a :class:`~lrpjax.models.Sequential` and its parameters (plain numpy arrays of the
framework's dtype), so every method, rule set, ``.full()``, masks and dataset explanation apply. An
importer reproduces exactly what the framework computes or refuses, naming the layer and what is
unsupported: exact classes (a subclass that overrides how it computes is refused), activations by
identity, zero initial states, masks returned (:class:`Imported`'s ``mask``) where the framework masks.
The frameworks are optional (``pip install "lrpjax[interop]"``) and imported only inside the calls; the
gate orders and bias conventions of each are documented on its importer. Keras is imported with
``KERAS_BACKEND=jax`` unless that variable is already set (set it before anything imports keras).
"""

from lrpjax.interop._common import Imported
from lrpjax.interop.equinox import from_equinox
from lrpjax.interop.flax import from_flax_cell, from_flax_rnn
from lrpjax.interop.keras import KerasMask, from_keras
from lrpjax.interop.keras_functional import from_keras_functional
from lrpjax.interop.mamba import from_mamba
from lrpjax.interop.nnx import from_nnx
from lrpjax.interop.torch import from_torch
from lrpjax.interop.xlstm import from_xlstm

__all__ = ["Imported", "KerasMask", "from_equinox", "from_flax_cell", "from_flax_rnn", "from_keras", "from_keras_functional",
           "from_mamba", "from_nnx", "from_torch", "from_xlstm"]
