"""Models trained elsewhere, as lrpjax models: PyTorch, Keras 3 and Flax weights in, conventions checked.

::

    from lrpjax import interop
    model, params = interop.from_torch(rnn, head=linear)   # torch nn.LSTM / nn.GRU (+ head)
    model, params = interop.from_keras(keras_model)        # keras.Sequential of LSTM / GRU / Bidirectional / Dense
    cell, cell_params = interop.from_flax_cell(variables["params"]["cell"], "lstm")   # one flax cell
    scores = model.apply(params, x)                        # x (T, E) -> what the framework computes (logits)
    R = lrpjax.lrp(model.apply, lrpjax.core.rules.preset("lrp-all", eps=1e-3))(params, x, target)

Each importer returns a :class:`~lrpjax.models.Sequential` and its parameters (plain numpy arrays of the
framework's dtype), so every method, rule set, ``.full()``, masks and dataset explanation apply. The
frameworks are optional (``pip install "lrpjax[interop]"``) and imported only inside the calls; the
gate orders and bias conventions of each are documented on its importer. Keras is imported with
``KERAS_BACKEND=jax`` unless that variable is already set (set it before anything imports keras).
"""

from lrpjax.interop.flax import from_flax_cell, from_flax_rnn
from lrpjax.interop.keras import from_keras
from lrpjax.interop.torch import from_torch

__all__ = ["from_flax_cell", "from_flax_rnn", "from_keras", "from_torch"]
