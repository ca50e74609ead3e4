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
from lrpjax.interop._common import (Imported, Parts, as_weight, check_class, check_dtypes, dense_params,
                                    gate_blocks, with_table)
from lrpjax.models import Dense, Pool, Recurrent, Sequential

__all__ = ["from_keras", "conv1d_from_keras", "KERAS_LAYERS"]

# Keras stacks the LSTM kernel's columns i, f, c, o; lrpjax's StandardCell i, z (= c), f, o.
_LSTM_ORDER = (0, 2, 1, 3)
# Keras stacks the GRU kernel's columns z, r, h; lrpjax's GRUCell r, z, n (= h).
_GRU_ORDER = (1, 0, 2)

KERAS_LAYERS = ("Embedding (first)", "Masking (first)", "Conv1D", "DepthwiseConv1D", "LSTM", "GRU", "Bidirectional",
                "Dense", "Activation",
                "Softmax (last)", "Dropout", "GlobalAveragePooling1D", "GlobalMaxPooling1D")
"""The layers a model may hold."""

_DENSE_ACTIVATIONS = {"linear": "identity", "relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid"}
_OUTPUT_ACTIVATIONS = ("softmax", "sigmoid")

# The methods through which a Keras layer (or its cell) computes: a subclass defining one is refused.
_COMPUTING = ("call", "__call__", "inner_loop", "compute_mask", "get_initial_state", "step")


def from_keras(keras_model: Any) -> Imported:
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
    * ``Embedding`` (first layer only): the model takes token ids, its first layer an lrpjax
      :class:`~lrpjax.models.embedding.Embedding` holding the table (``params["embedding"]["table"]``,
      also ``imported.table``); ``model.vector_model(params)`` explains embedded vectors directly.
    * Masks: with ``Embedding(mask_zero=True)`` Keras skips the steps whose id is 0, after a first
      ``Masking(mask_value=v)`` the steps whose vector is all ``v``. The import returns the function
      that computes this mask, ``imported.mask`` (ids (T,) / (B, T), or the embedded input for
      ``Masking``), and warns: pass ``mask=imported.mask(ids)`` to ``apply`` and to the methods for
      Keras's result. lrpjax's masks mark a valid prefix, so the function refuses a masked step before
      a valid one (pad at the end). A layer that ignores the mask is reproduced as Keras computes it or
      refused: ``GlobalAveragePooling1D`` averages the valid steps (as lrpjax's masked mean);
      ``GlobalMaxPooling1D`` ignores the mask and reads every step, which lrpjax reproduces where the
      padded steps repeat a valid one (a unidirectional layer carries its last valid output over the
      padding, and a per-step ``Dense`` keeps that), and refuses after a ``Bidirectional`` layer (it
      writes zeros at padded steps, which Keras's max then sees). Outputs at padded steps of a
      per-step model are 0 in lrpjax (Keras marks them invalid with its mask).

    Exactly what Keras computes, or refused: every layer must be of its Keras class (a subclass that
    defines ``call`` or another computing method itself may compute anything), activations are
    recognised by identity (``keras.activations.tanh`` ..., not by a name a custom function may carry),
    compute and variable dtype agree (no mixed precision). Initial states are zero, as Keras's in a
    ``keras.Sequential``.

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
        an :class:`~lrpjax.interop.Imported`, unpacked as ``(model, params)`` (over token ids when the
        first layer is an ``Embedding``); its ``mask`` is the masking function (above) or None, its
        ``table`` the embedding's weights (V, E) or None.

    Raises:
        TypeError: not a ``keras.Sequential``, a layer kind that is not supported (the message lists
            those that are), a subclass that defines how it computes.
        ValueError: an unbuilt model, an unsupported option (activation, merge mode, stateful,
            go_backwards, a softmax before the last layer, mixed precision), an Embedding or Masking after
            the first layer, a ``GlobalMaxPooling1D`` that would read padding written as zeros, or no
            recurrent layer.
    """
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    check_class(keras_model, (keras.Sequential,), _COMPUTING, "keras_model", "a keras.Sequential")
    if not keras_model.built:
        raise ValueError("`keras_model` is not built: give it a keras.Input or call it once on a batch, so that its "
                         "weights exist.")
    layers = [layer for layer in keras_model.layers if not isinstance(layer, keras.layers.InputLayer)]
    table, mask, layers = _embedding(keras, layers)
    layers, dropped = _output_activation(keras, layers)
    builder = _Builder(keras, table.shape[1] if table is not None else _input_size(keras_model), mask is not None)
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
    if mask is not None:
        warnings.warn(f"`keras_model` masks its input ({mask.source}): Keras skips the masked steps, so pass "
                      "mask=imported.mask(inputs) to model.apply and to every method for Keras's result "
                      "(imported = interop.from_keras(...)).", UserWarning, stacklevel=2)
    return with_table(model, builder.params, table, mask)


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


class KerasMask:
    """The mask a Keras model computes from its input: which steps its recurrent layers read.

    Called on a padded input it returns the bool mask of the valid steps, (T,) or (B, T), to pass as
    ``mask=`` to ``model.apply`` and to the methods.

    Attributes:
        source: ``"Embedding(mask_zero=True)"`` (ids equal to 0 are masked; the input is the ids) or
            ``"Masking(mask_value=v)"`` (steps whose vector is all ``v`` are masked; the input is the
            embedded sequence (T, E) or (B, T, E)).
        mask_value: ``v`` for ``Masking``; None for an embedding's mask.
    """

    def __init__(self, source: str, mask_value: float | None = None):
        self.source, self.mask_value = source, mask_value

    def __repr__(self) -> str:
        return f"KerasMask({self.source})"

    def __call__(self, inputs: Any) -> np.ndarray:
        """The mask of valid steps of ``inputs``.

        Raises:
            ValueError: an input of the wrong rank, or a masked step before a valid one (lrpjax's masks
                mark a valid prefix: pad at the end).
        """
        x = np.asarray(inputs)
        if self.mask_value is None:
            if x.ndim not in (1, 2) or not np.issubdtype(x.dtype, np.integer):
                raise ValueError(f"`inputs` of {self.source}'s mask must be integer ids (T,) or (B, T); got "
                                 f"{x.dtype} of shape {x.shape}.")
            mask = x != 0
        else:
            if x.ndim not in (2, 3):
                raise ValueError(f"`inputs` of {self.source}'s mask must be embedded sequences (T, E) or (B, T, E); "
                                 f"got shape {x.shape}.")
            mask = np.any(x != self.mask_value, axis=-1)
        flat = mask.reshape(-1, mask.shape[-1])
        late = np.any(flat[:, 1:] & ~flat[:, :-1], axis=1)
        if np.any(late):
            row = int(np.argmax(late))
            raise ValueError(f"`inputs` row {row}: {self.source} masks a step before a valid one (mask "
                             f"{flat[row].astype(int).tolist()}); lrpjax's masks mark a valid prefix, so padding "
                             "must come at the end (and no valid token may be masked).")
        return mask


def _embedding(keras, layers: list) -> tuple[np.ndarray | None, KerasMask | None, list]:
    """The first layer's embedding table, if it is an Embedding, and the mask a first Embedding or Masking
    computes; Embeddings and Masking elsewhere are refused."""
    for k, layer in enumerate(layers):
        if isinstance(layer, (keras.layers.Embedding, keras.layers.Masking)) and k > 0:
            raise ValueError(f"`keras_model` has a {type(layer).__name__} ({layer.name}) after its first layer; "
                             f"only a first {type(layer).__name__} is supported.")
    if not layers or not isinstance(layers[0], (keras.layers.Embedding, keras.layers.Masking)):
        return None, None, layers
    first = layers[0]
    where = f"keras_model.layers[0] ({first.name})"
    if isinstance(first, keras.layers.Masking):
        check_class(first, (keras.layers.Masking,), _COMPUTING, where)
        value = float(first.mask_value)
        return None, KerasMask(f"Masking(mask_value={value:g})", value), layers[1:]
    check_class(first, (keras.layers.Embedding,), _COMPUTING, where)
    table = as_weight(_numpy(keras, first.embeddings), f"{first.name}.embeddings")
    mask = KerasMask("Embedding(mask_zero=True)") if first.mask_zero else None
    return table, mask, layers[1:]


def _activation_name(keras, fn) -> str:
    """The name of a Keras activation recognised by identity (a custom function is named by its repr,
    which no supported activation matches, whatever its ``__name__``)."""
    if fn is None:
        return "linear"
    try:
        name = keras.activations.serialize(fn)
        found = keras.activations.get(name) if isinstance(name, str) else None
    except (TypeError, ValueError):
        name, found = None, None
    if isinstance(name, str) and found is fn:
        return name
    return f"custom function {getattr(fn, '__qualname__', fn)!r} (not a keras.activations function)"


def _output_activation(keras, layers: list) -> tuple[list, str | None]:
    """Drops a final softmax/sigmoid (last Dense's activation, or a last Activation/Softmax layer)."""
    computing = [k for k, layer in enumerate(layers) if not isinstance(layer, keras.layers.Dropout)]
    if not computing:
        return layers, None
    k = computing[-1]
    last = layers[k]
    if isinstance(last, keras.layers.Softmax):
        check_class(last, (keras.layers.Softmax,), _COMPUTING, f"keras_model.layers ({last.name})")
        if last.axis not in (-1, [-1], (-1,)):
            raise ValueError(f"the last layer ({last.name}) is a Softmax over axis {last.axis}; only the feature "
                             "axis (-1) is supported.")
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

    def __init__(self, keras, E: int, masked: bool):
        self.keras = keras
        self.layers: list = []
        self.params: Params = {}
        self.parts = Parts(("input",), (E,))
        self.counts = {"recurrent": 0, "dense": 0, "pool": 0}
        self.masked = masked
        # What Keras holds at the padded steps of the current sequence: "input" (the padding itself),
        # "repeat" (a unidirectional layer carries its last valid output over), "zeros" (Bidirectional).
        self.padding = "input"

    def add(self, layer, where: str) -> None:
        """Adds one Keras layer (or ``(Dense, activation)`` with its activation replaced)."""
        keras = self.keras
        layer, activation = layer if isinstance(layer, tuple) else (layer, None)
        if type(layer) in (keras.layers.Conv1D, keras.layers.DepthwiseConv1D):
            return _add_conv(self, layer, where)
        supported = (keras.layers.Bidirectional, keras.layers.LSTM, keras.layers.GRU, keras.layers.Dense,
                     keras.layers.Activation, keras.layers.GlobalAveragePooling1D, keras.layers.GlobalMaxPooling1D,
                     keras.layers.Dropout, keras.layers.Softmax)
        if isinstance(layer, supported):
            check_class(layer, supported, _COMPUTING, where)
            if layer.dtype_policy.compute_dtype != layer.dtype_policy.variable_dtype:
                raise ValueError(f"`{where}` computes in {layer.dtype_policy.compute_dtype} with "
                                 f"{layer.dtype_policy.variable_dtype} weights (mixed precision, policy "
                                 f"{layer.dtype_policy.name!r}); import a model with one dtype (e.g. rebuild it "
                                 "under keras.config.set_dtype_policy('float32') and copy the weights).")
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
            for d, n in zip(directions, ("forward_layer", "backward_layer")):
                if not isinstance(d, (keras.layers.LSTM, keras.layers.GRU)):
                    raise TypeError(f"`{where}` wraps a {type(d).__name__}; Bidirectional of LSTM or GRU only.")
                check_class(d, (keras.layers.LSTM, keras.layers.GRU), _COMPUTING, f"{where}.{n}")
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
        self.padding = "zeros" if bidirectional else "repeat"
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
        check_class(cell, (keras.layers.LSTMCell if lstm else keras.layers.GRUCell,), _COMPUTING, f"{where}.cell")
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
        if mode == "max" and self.masked and self.padding != "repeat":
            after = ("a Bidirectional layer, which writes zeros at the padded steps" if self.padding == "zeros"
                     else "the padded input itself")
            raise ValueError(f"`{where}` (GlobalMaxPooling1D) ignores the model's mask and takes the maximum over "
                             f"every step, here after {after}: Keras's result depends on the padding, which "
                             "lrpjax's masked max (over the valid steps) does not reproduce. Use "
                             "GlobalAveragePooling1D (it follows the mask), a unidirectional layer before the "
                             "pooling, or no mask_zero/Masking with unpadded inputs.")
        name = f"pool_{self.counts['pool']}"
        self.counts["pool"] += 1
        self.layers.append(Pool(mode, name=name))


def conv1d_from_keras(layer: Any, name: str = "conv") -> tuple[Any, Params]:
    """Imports a Keras 3 ``Conv1D`` or ``DepthwiseConv1D`` as a :class:`~lrpjax.models.Conv1D` and its parameters.

    :func:`from_keras` calls it for the convolutions of a ``keras.Sequential`` (a CNN-LSTM:
    ``Conv1D -> LSTM -> Dense``). The layer computes what Keras computes for one sequence (T, D):
    ``padding="causal"`` or ``"same"`` (Keras pads ``dilation (K - 1)`` steps, the extra one of an even
    window on the right, as lrpjax's same padding), stride 1, ``data_format="channels_last"``;
    ``Conv1D`` with ``groups=1`` is a full convolution (kernel (K, D, F) is ``W``), with ``groups = D = F``
    a depthwise one, as is ``DepthwiseConv1D`` with ``depth_multiplier=1`` (kernel (K, D, 1)); the
    activation is ``linear``, ``relu``, ``tanh``, ``sigmoid`` or ``silu``.

    Args:
        layer: a built ``keras.layers.Conv1D`` or ``keras.layers.DepthwiseConv1D``.
        name: the layer's name (its parameter key).

    Returns:
        ``(layer, params)``, ``params = {name: {"W": ..., "b": ...}}``.

    Raises:
        TypeError: another layer.
        ValueError: ``padding="valid"`` (it shortens the sequence), a stride other than 1, channels first,
            other groups or depth multipliers, an unsupported activation.
    """
    import keras

    from lrpjax.models.conv import CONV_ACTIVATIONS, Conv1D

    if type(layer) not in (keras.layers.Conv1D, keras.layers.DepthwiseConv1D):
        raise TypeError(f"`layer` must be a keras.layers.Conv1D or DepthwiseConv1D; got {type(layer).__name__}.")
    where = layer.name
    if layer.padding not in ("causal", "same"):
        raise ValueError(f"`{where}` has padding {layer.padding!r}: lrpjax's Conv1D keeps the sequence's length "
                         "(padding 'causal' or 'same'); 'valid' shortens it.")
    if tuple(layer.strides) != (1,) or layer.data_format != "channels_last":
        raise ValueError(f"`{where}` must have strides 1 and data_format 'channels_last'; got {layer.strides}, "
                         f"{layer.data_format!r}.")
    activation = _activation_name(keras, layer.activation)
    activation = "identity" if activation == "linear" else activation
    if activation not in CONV_ACTIVATIONS:
        raise ValueError(f"`{where}` has activation {activation!r}; supported: linear, "
                         f"{', '.join(a for a in CONV_ACTIVATIONS if a != 'identity')}.")
    kernel = as_weight(_numpy(keras, layer.kernel), f"{where}.kernel")
    K = kernel.shape[0]
    if isinstance(layer, keras.layers.DepthwiseConv1D):
        if layer.depth_multiplier != 1:
            raise ValueError(f"`{where}` has depth_multiplier {layer.depth_multiplier}; imported is 1.")
        W, depthwise = np.ascontiguousarray(kernel[:, :, 0]), True
    elif layer.groups == 1:
        W, depthwise = kernel, False
    elif kernel.shape[1] == 1 and kernel.shape[2] == layer.groups:
        W, depthwise = np.ascontiguousarray(kernel[:, 0, :]), True
    else:
        raise ValueError(f"`{where}` has groups = {layer.groups}; imported are 1 and groups = channels = filters.")
    layer_params: Params = {"W": W}
    if layer.use_bias:
        layer_params["b"] = as_weight(_numpy(keras, layer.bias), f"{where}.bias")
    out = Conv1D(None if depthwise else int(W.shape[2]), K, layer.padding, depthwise=depthwise,
                 bias=layer.use_bias, dilation=int(layer.dilation_rate[0]), activation=activation, name=name)
    return out, {name: layer_params}


def _add_conv(builder: Any, layer: Any, where: str) -> None:
    """A Keras convolution into the builder of :func:`from_keras`: refused under a mask (Keras convolves the
    padded steps as values, lrpjax's masked convolution reads them as zeros)."""
    if builder.masked:
        raise ValueError(f"`{where}` ({type(layer).__name__}) follows a mask (mask_zero or Masking): Keras convolves "
                         "the padded steps as if they were values, which lrpjax's masked convolution (padding "
                         "read as zeros) does not reproduce; import the model without the mask.")
    name = f"conv_{builder.counts.get('conv', 0)}"
    builder.counts["conv"] = builder.counts.get("conv", 0) + 1
    conv, params = conv1d_from_keras(layer, name)
    if sum(builder.parts.sizes) != conv.input_size(params):
        raise ValueError(f"`{where}` reads {conv.input_size(params)} channels; the layer before it outputs "
                         f"{sum(builder.parts.sizes)}.")
    builder.layers.append(conv)
    builder.params.update(params)
    builder.parts = Parts((name,), (conv.output_spec(params, _spec(builder.parts)).size,))


def _spec(parts: Any) -> Any:
    from lrpjax.models.layers import Spec

    return Spec(tuple(parts.names), tuple(parts.sizes), True)
