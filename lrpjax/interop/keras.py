"""A Keras 3 ``keras.Sequential`` of LSTM / GRU / Bidirectional / Dense layers as an lrpjax model.

Keras is imported inside :func:`from_keras` only, with ``KERAS_BACKEND=jax`` unless the variable is set
already (it must be set before anything imports keras; the weights are read the same under any backend).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any

import numpy as np

from lrpjax._types import Params
from lrpjax.core.cells import GRUCell, StandardCell
from lrpjax.interop._common import Parts, as_weight, check_dtypes, dense_params, gate_blocks
from lrpjax.models import Dense, Pool, Recurrent, Sequential

__all__ = ["from_keras", "KERAS_LAYERS"]

# Keras stacks the LSTM kernel's columns i, f, c, o; lrpjax's StandardCell i, z (= c), f, o.
_LSTM_ORDER = (0, 2, 1, 3)
# Keras stacks the GRU kernel's columns z, r, h; lrpjax's GRUCell r, z, n (= h).
_GRU_ORDER = (1, 0, 2)

KERAS_LAYERS = ("Embedding (first)", "LSTM", "GRU", "Bidirectional", "Dense", "Activation", "Softmax (last)",
                "Dropout", "GlobalAveragePooling1D", "GlobalMaxPooling1D")
"""The layers a model may hold."""

_DENSE_ACTIVATIONS = {"linear": "identity", "relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid"}
_OUTPUT_ACTIVATIONS = ("softmax", "sigmoid")


def from_keras(keras_model: Any) -> tuple[Sequential, Params] | tuple[Sequential, Params, np.ndarray]:
    """Imports a built Keras 3 ``keras.Sequential``: its layers, weights and conventions.

    The model computes, for one embedded sequence ``x`` (T, E), ``keras_model(x[None])[0]`` before a
    final softmax or sigmoid: that output activation (of the last ``Dense``, or a last ``Activation`` /
    ``Softmax`` layer) is left out, so the scores are logits, the quantity LRP explains; a
    ``UserWarning`` says so. Layers:

    * ``LSTM`` / ``GRU``: ``Recurrent``; ``return_sequences=True`` feeds the next layer every step,
      ``False`` gives the final state. ``activation`` must be ``"tanh"`` and ``recurrent_activation``
      ``"sigmoid"`` (lrpjax's cells use these); ``stateful`` and ``go_backwards`` (outside
      ``Bidirectional``) are refused; ``dropout`` / ``recurrent_dropout`` are ignored (inference).
    * ``Bidirectional(LSTM | GRU, merge_mode="concat")``: one bidirectional ``Recurrent`` (other merge
      modes are refused); its output ``[forward, backward]`` feeds the next layer.
    * ``Dense``: a dense layer (per step on a sequence), activation ``linear``, ``relu``, ``tanh`` or
      ``sigmoid``; after a bidirectional layer its kernel (2H, M) is split into ``W_<forward key>`` and
      ``W_<backward key>``. ``Activation`` layers fold into the dense layer before them.
    * ``GlobalAveragePooling1D`` / ``GlobalMaxPooling1D``: ``Pool("mean")`` / ``Pool("max")``.
    * ``Dropout``: nothing (inference).
    * ``Embedding`` (first layer only): its table is returned; the model reads embedded inputs
      ``table[ids]``. With ``mask_zero=True`` Keras skips the steps whose id is 0: pass
      ``mask=ids != 0`` (padding at the end) to ``apply`` and to the methods for the same result.

    Conventions: Keras stacks the LSTM kernel (E, 4H), recurrent kernel (H, 4H) and bias (4H,) as
    i, f, c, o; lrpjax as i, z (= c), f, o: the column blocks are reordered (``unit_forget_bias`` only
    affects initialisation). The GRU stacks z, r, h; lrpjax r, z, n. With ``reset_after=True`` (the
    Keras default) the bias is (2, 3H), the input bias and the recurrent bias: ``b`` holds their sum
    for r and z and the input bias for n, ``b_hn`` the recurrent bias of n, which sits inside the
    reset product ``hh = tanh(x W_h + b_h + r * (h U_h + b_hn))``; with ``reset_after=False`` the bias is
    one (3H,) and ``hh = tanh(x W_h + (r * h) U_h + b_h)`` (``GRUCell(reset_after=False)``).
    ``use_bias=False`` gives zero biases. No peepholes (Keras 3 has none). Parameter keys:
    ``"lstm_<k>"`` / ``"gru_<k>"`` (k counts recurrent layers), ``"<key>_forward"`` and
    ``"<key>_backward"`` for a bidirectional layer, ``"dense_<k>"``, the last dense layer ``"out"``,
    pooling ``"pool_<k>"``. dtype: that of the weights (float64 needs ``jax_enable_x64``).

    Args:
        keras_model: a built ``keras.Sequential`` (called once, or given an ``Input``).

    Returns:
        ``(model, params)``, or ``(model, params, table)`` when the first layer is an ``Embedding``,
        ``table`` its weights (V, E) as a numpy array.

    Raises:
        TypeError: not a ``keras.Sequential``, or a layer kind that is not supported (the message lists
            those that are).
        ValueError: an unbuilt model, an unsupported option (activation, merge mode, stateful,
            go_backwards, a softmax before the last layer), an Embedding after the first layer, or no
            recurrent layer.
    """
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    if not isinstance(keras_model, keras.Sequential):
        raise TypeError(f"`keras_model` must be a keras.Sequential; got {type(keras_model).__name__}.")
    if not keras_model.built:
        raise ValueError("`keras_model` is not built: give it a keras.Input or call it once on a batch, so that its "
                         "weights exist.")
    layers = [layer for layer in keras_model.layers if not isinstance(layer, keras.layers.InputLayer)]
    table, layers = _embedding(keras, layers)
    layers, dropped = _output_activation(keras, layers)
    builder = _Builder(keras, table.shape[1] if table is not None else _input_size(keras_model))
    for item in layers:
        layer = item[0] if isinstance(item, tuple) else item
        builder.add(item, f"keras_model.layers[{keras_model.layers.index(layer)}] ({layer.name})")
    builder.name_output()
    if not any(isinstance(layer, Recurrent) for layer in builder.layers):
        raise ValueError("`keras_model` holds no LSTM, GRU or Bidirectional layer.")
    check_dtypes({**builder.params, **({} if table is None else {"embedding": table})}, "keras_model")
    model = Sequential(tuple(builder.layers))
    model.specs(builder.params)
    if dropped:
        warnings.warn(f"the final {dropped} of `keras_model` is left out: model.apply gives the scores before it "
                      f"(logits), which LRP explains; apply {dropped} to them for the Keras output.",
                      UserWarning, stacklevel=2)
    return (model, builder.params) if table is None else (model, builder.params, table)


def _numpy(keras, variable) -> np.ndarray:
    """A Keras variable's value as a numpy array (through its backend tensor: converting the variable
    itself warns under NumPy 2)."""
    return np.asarray(keras.ops.convert_to_numpy(variable.value))


def _input_size(keras_model) -> int:
    shape = keras_model.inputs[0].shape if getattr(keras_model, "inputs", None) else None
    if shape is None or len(shape) != 3 or shape[-1] is None:
        raise ValueError(f"`keras_model` must read embedded sequences (B, T, E) with a known E; got input shape "
                         f"{None if shape is None else tuple(shape)}.")
    return int(shape[-1])


def _embedding(keras, layers: list) -> tuple[np.ndarray | None, list]:
    """The first layer's embedding table, if it is an Embedding; Embeddings elsewhere are refused."""
    for k, layer in enumerate(layers):
        if isinstance(layer, keras.layers.Embedding) and k > 0:
            raise ValueError(f"`keras_model` has an Embedding ({layer.name}) after its first layer; only a first "
                             "Embedding is supported.")
    if not layers or not isinstance(layers[0], keras.layers.Embedding):
        return None, layers
    table = as_weight(_numpy(keras, layers[0].embeddings), f"{layers[0].name}.embeddings")
    return table, layers[1:]


def _activation_name(keras, fn) -> str:
    name = keras.activations.serialize(fn) if fn is not None else "linear"
    return name if isinstance(name, str) else str(getattr(fn, "__name__", name))


def _output_activation(keras, layers: list) -> tuple[list, str | None]:
    """Drops a final softmax/sigmoid (last Dense's activation, or a last Activation/Softmax layer)."""
    computing = [k for k, layer in enumerate(layers) if not isinstance(layer, keras.layers.Dropout)]
    if not computing:
        return layers, None
    k = computing[-1]
    last = layers[k]
    if isinstance(last, keras.layers.Softmax):
        return layers[:k] + layers[k + 1:], "softmax"
    if isinstance(last, (keras.layers.Dense, keras.layers.Activation)):
        name = _activation_name(keras, last.activation)
        if name in _OUTPUT_ACTIVATIONS:
            if isinstance(last, keras.layers.Activation):
                return layers[:k] + layers[k + 1:], name
            return layers[:k] + [(last, "linear")] + layers[k + 1:], name
    return layers, None


class _Builder:
    """Turns Keras layers, input side first, into lrpjax layers and parameters."""

    def __init__(self, keras, E: int):
        self.keras = keras
        self.layers: list = []
        self.params: Params = {}
        self.parts = Parts(("input",), (E,))
        self.counts = {"recurrent": 0, "dense": 0, "pool": 0}

    def add(self, layer, where: str) -> None:
        """Adds one Keras layer (or ``(Dense, activation)`` with its activation replaced)."""
        keras = self.keras
        layer, activation = layer if isinstance(layer, tuple) else (layer, None)
        if isinstance(layer, keras.layers.Bidirectional):
            self._recurrent(layer, where, bidirectional=True)
        elif isinstance(layer, (keras.layers.LSTM, keras.layers.GRU)):
            self._recurrent(layer, where, bidirectional=False)
        elif isinstance(layer, keras.layers.Dense):
            self._dense(layer, where, activation or _activation_name(keras, layer.activation))
        elif isinstance(layer, keras.layers.Activation):
            self._fold_activation(_activation_name(keras, layer.activation), where)
        elif isinstance(layer, (keras.layers.GlobalAveragePooling1D, keras.layers.GlobalMaxPooling1D)):
            self._pool(layer, where)
        elif isinstance(layer, keras.layers.Dropout):
            return
        elif isinstance(layer, keras.layers.Softmax):
            raise ValueError(f"`{where}`: a softmax is supported only as the last layer (it is left out).")
        else:
            raise TypeError(f"`{where}` is a {type(layer).__name__}; supported layers: {', '.join(KERAS_LAYERS)}.")

    def _recurrent(self, layer, where: str, bidirectional: bool) -> None:
        keras = self.keras
        if bidirectional:
            if layer.merge_mode != "concat":
                raise ValueError(f"`{where}` has merge_mode = {layer.merge_mode!r}; only 'concat' is supported (the "
                                 "directions stay separate inputs of the next layer).")
            directions: tuple[Any, ...] = (layer.forward_layer, layer.backward_layer)
            for d in directions:
                if not isinstance(d, (keras.layers.LSTM, keras.layers.GRU)):
                    raise TypeError(f"`{where}` wraps a {type(d).__name__}; Bidirectional of LSTM or GRU only.")
            if type(directions[0]) is not type(directions[1]) or not directions[1].go_backwards \
                    or directions[0].go_backwards:
                raise ValueError(f"`{where}` must run one {type(directions[0]).__name__} forward and one backward "
                                 "(go_backwards on the backward layer only).")
        else:
            directions = (layer,)
            if layer.go_backwards:
                raise ValueError(f"`{where}` has go_backwards=True outside Bidirectional, not supported (its "
                                 "outputs come in reversed time order); wrap it in Bidirectional instead.")
        cells = [self._cell(d, f"{where}{'.' + n if bidirectional else ''}")
                 for d, n in zip(directions, ("forward_layer", "backward_layer"))]
        if len({c[0] for c in cells}) != 1 or len({c[1]["U"].shape for c in cells}) != 1:
            raise ValueError(f"`{where}`: both directions must be the same kind of layer with the same units.")
        cell, H = cells[0][0], cells[0][1]["U"].shape[0]
        name = f"{'lstm' if cell.kind == 'standard' else 'gru'}_{self.counts['recurrent']}"
        self.counts["recurrent"] += 1
        sequences = bool(directions[0].return_sequences)
        lrp_layer = Recurrent(cell, H, bidirectional=bidirectional, sequences=sequences, name=name)
        for key, (_, cell_params) in zip(lrp_layer.keys(), cells):
            self.params[key] = cell_params
        self.layers.append(lrp_layer)
        self.parts = Parts(lrp_layer.keys(), (H,) * len(lrp_layer.keys()))

    def _cell(self, layer, where: str):
        """``(lrpjax cell, its parameters)`` of one Keras LSTM / GRU layer (conventions: module docstring)."""
        keras = self.keras
        for field, expected in (("activation", "tanh"), ("recurrent_activation", "sigmoid")):
            got = _activation_name(keras, getattr(layer, field))
            if got != expected:
                raise ValueError(f"`{where}` has {field} = {got!r}; lrpjax's cells need {field}={expected!r}.")
        for field in ("stateful", "return_state"):
            if getattr(layer, field, False):
                raise ValueError(f"`{where}` has {field}=True, not supported.")
        E, cell = self.parts.size, layer.cell
        H = int(cell.units)
        lstm = isinstance(layer, keras.layers.LSTM)
        G = 4 if lstm else 3
        kernel = as_weight(_numpy(keras, cell.kernel), f"{where}.kernel", (E, G * H))
        recurrent = as_weight(_numpy(keras, cell.recurrent_kernel), f"{where}.recurrent_kernel",
                              (H, G * H))
        reset_after = not lstm and bool(cell.reset_after)
        bias_shape = (2, G * H) if reset_after else (G * H,)
        bias = (as_weight(_numpy(keras, cell.bias), f"{where}.bias", bias_shape) if cell.use_bias
                else np.zeros(bias_shape, kernel.dtype))
        if lstm:
            return StandardCell(), {"W": gate_blocks(kernel, _LSTM_ORDER), "U": gate_blocks(recurrent, _LSTM_ORDER),
                                    "b": gate_blocks(bias, _LSTM_ORDER)}
        params = {"W": gate_blocks(kernel, _GRU_ORDER), "U": gate_blocks(recurrent, _GRU_ORDER)}
        if reset_after:
            summed, b_in = gate_blocks(bias[0] + bias[1], _GRU_ORDER), gate_blocks(bias[0], _GRU_ORDER)
            params["b"] = np.concatenate([summed[:2 * H], b_in[2 * H:]])
            params["b_hn"] = gate_blocks(bias[1], _GRU_ORDER)[2 * H:].copy()
        else:
            params["b"] = gate_blocks(bias, _GRU_ORDER)
        return GRUCell(reset_after=reset_after), params

    def _dense(self, layer, where: str, activation: str) -> None:
        keras = self.keras
        if activation not in _DENSE_ACTIVATIONS:
            raise ValueError(f"`{where}` has activation {activation!r}; supported: {sorted(_DENSE_ACTIVATIONS)} "
                             f"(and {' or '.join(_OUTPUT_ACTIVATIONS)} on the last layer, left out).")
        kernel = as_weight(_numpy(keras, layer.kernel), f"{where}.kernel")
        bias = as_weight(_numpy(keras, layer.bias), f"{where}.bias") if layer.use_bias else None
        name = f"dense_{self.counts['dense']}"
        self.counts["dense"] += 1
        self.params[name] = dense_params(kernel, bias, self.parts, f"{where}.kernel")
        self.layers.append(Dense(kernel.shape[1], _DENSE_ACTIVATIONS[activation], bias=bias is not None, name=name))
        self.parts = Parts((name,), (kernel.shape[1],))

    def _fold_activation(self, activation: str, where: str) -> None:
        last = self.layers[-1] if self.layers else None
        if not isinstance(last, Dense) or last.activation != "identity" or self.parts.names != (last.name,):
            raise ValueError(f"`{where}` (Activation) must follow a Dense layer without activation (it becomes its "
                             "activation).")
        if activation not in _DENSE_ACTIVATIONS:
            raise ValueError(f"`{where}` has activation {activation!r}; supported: {sorted(_DENSE_ACTIVATIONS)}.")
        self.layers[-1] = dataclasses.replace(last, activation=_DENSE_ACTIVATIONS[activation])

    def name_output(self) -> None:
        """Names a last dense layer ``"out"``, as :class:`~lrpjax.models.Sequential` does."""
        last = self.layers[-1] if self.layers else None
        if isinstance(last, Dense):
            self.params["out"] = self.params.pop(last.label)
            self.layers[-1] = dataclasses.replace(last, name="out")

    def _pool(self, layer, where: str) -> None:
        if getattr(layer, "data_format", "channels_last") != "channels_last" or getattr(layer, "keepdims", False):
            raise ValueError(f"`{where}` must pool over time with data_format='channels_last' and keepdims=False.")
        mode = "mean" if isinstance(layer, self.keras.layers.GlobalAveragePooling1D) else "max"
        name = f"pool_{self.counts['pool']}"
        self.counts["pool"] += 1
        self.layers.append(Pool(mode, name=name))
