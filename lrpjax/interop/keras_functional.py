"""Keras 3 functional models with self-attention: a chain of layers with ``Attention`` /
``AdditiveAttention`` over the recurrent states, imported as a :class:`~lrpjax.models.Sequential`.

The pattern users write::

    inputs = keras.Input((None, E))
    h = keras.layers.Bidirectional(keras.layers.LSTM(H, return_sequences=True))(inputs)
    a = keras.layers.Attention(use_scale=True)([h, h])            # self-attention over the states
    z = keras.layers.GlobalAveragePooling1D()(a)
    outputs = keras.layers.Dense(C)(z)
    keras_model = keras.Model(inputs, outputs)

Everything before the first attention layer goes through :func:`lrpjax.interop.keras.from_keras` (its
layers, conventions and refusals); the attention layers become :class:`~lrpjax.models.SelfAttention`;
after them come pooling, dense, activation and dropout layers.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any

import numpy as np

from lrpjax._types import Params
from lrpjax.interop._common import Imported
from lrpjax.models import Dense, Pool, SelfAttention, Sequential

__all__ = ["from_keras_functional", "ATTENTION_LAYERS", "AFTER_ATTENTION"]

ATTENTION_LAYERS = ("Attention", "AdditiveAttention")
"""The Keras attention layers imported (as self-attention: query, value and key one tensor)."""

AFTER_ATTENTION = ("Attention", "AdditiveAttention", "GlobalAveragePooling1D", "GlobalMaxPooling1D", "Dense",
                   "Activation", "Dropout")
"""The Keras layers accepted after the first attention layer."""

_ACTIVATIONS = {"linear": "identity", "relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid"}
_OUTPUT_ACTIVATIONS = ("softmax", "sigmoid")


def _chain(keras_model, config: dict) -> list:
    """The layers of a functional model whose graph is one chain, input side first (no input layer).

    Raises:
        ValueError: several inputs or outputs, a layer used twice, a branch, a layer reading another
            layer than the one before it.
    """
    ends = []
    for key in ("input_layers", "output_layers"):
        end = config[key]
        end = [end] if end and isinstance(end[0], str) else end   # one tensor: [name, node, index]
        if len(end) != 1:
            raise ValueError(f"`keras_model` must have one input and one output; got {len(end)} {key[:-7]}s.")
        ends.append(end[0][0])
    sources: dict[str, str] = {}
    calls: dict[str, dict] = {}
    for entry in config["layers"]:
        nodes = entry.get("inbound_nodes", [])
        if not nodes:
            continue
        if len(nodes) != 1:
            raise ValueError(f"`keras_model`: layer {entry['name']!r} is called {len(nodes)} times; a chain calls "
                             "each layer once.")
        tensors = _tensors(nodes[0]["args"])
        origins = {t["config"]["keras_history"][0] for t in tensors}
        if len(origins) != 1:
            raise ValueError(f"`keras_model`: layer {entry['name']!r} reads {sorted(origins)}; only chains are "
                             "supported (an attention layer reads one tensor as query, value and key).")
        sources[entry["name"]] = origins.pop()
        calls[entry["name"]] = nodes[0].get("kwargs", {})
    readers: dict[str, list] = {}
    for name, source in sources.items():
        readers.setdefault(source, []).append(name)
    by_name = {layer.name: layer for layer in keras_model.layers}
    current, chain = ends[0], []
    while current in readers:
        if len(readers[current]) != 1:
            raise ValueError(f"`keras_model`: the output of {current!r} feeds {readers[current]}; only chains are "
                             "supported.")
        current = readers[current][0]
        chain.append((by_name[current], calls[current]))
    if current != ends[1]:
        raise ValueError("`keras_model`: the chain from the input does not end at the output.")
    return chain


def _tensors(args: Any) -> list:
    """The keras tensors among a node's call arguments (nested lists flattened)."""
    if isinstance(args, dict):
        return [args] if args.get("class_name") == "__keras_tensor__" else []
    if isinstance(args, (list, tuple)):
        return [t for a in args for t in _tensors(a)]
    return []


def _attention(keras, layer, kwargs: dict, D: int, name: str, where: str) -> tuple[SelfAttention, Params]:
    """The SelfAttention layer and parameters that compute what ``layer`` computes on ``[h, h]``."""
    unknown = sorted(k for k, v in kwargs.items() if k not in ("use_causal_mask", "training")
                     and not (k == "return_attention_scores" and not v))
    if unknown:
        raise ValueError(f"`{where}` is called with {unknown}; supported: use_causal_mask.")
    causal = bool(kwargs.get("use_causal_mask", False))
    dtype = np.dtype(layer.dtype_policy.variable_dtype)
    eye = np.eye(D, dtype=dtype)
    if type(layer) is keras.layers.AdditiveAttention:
        v = np.asarray(layer.scale, dtype) if layer.use_scale else np.ones((D,), dtype)
        return (SelfAttention("additive", D, causal, name),
                {"W": eye, "U": eye.copy(), "b": np.zeros((D,), dtype), "v": v.reshape(D, 1)})
    if layer.score_mode == "dot":
        if not layer.use_scale:
            return SelfAttention("dot", None, causal, name), {}
        return SelfAttention("general", None, causal, name), {"W": eye * np.asarray(layer.scale, dtype)}
    scale = np.asarray(layer.scale, dtype) if layer.use_scale else np.ones((), dtype)
    weight = np.asarray(layer.concat_score_weight, dtype)
    return (SelfAttention("additive", D, causal, name),
            {"W": eye * scale, "U": eye * scale, "b": np.zeros((D,), dtype), "v": np.full((D, 1), weight, dtype)})


def from_keras_functional(keras_model: Any) -> Imported:
    """Imports a built Keras 3 functional model: a chain of layers with self-attention over the steps.

    The graph must be one chain from the input to the output. The layers before the first attention
    layer are those of :func:`lrpjax.interop.keras.from_keras` (``LSTM``, ``GRU``, ``Bidirectional``,
    ``Dense``, ``Dropout``; the embedded inputs, not ``Embedding`` or ``Masking``), the last of them
    returning every step. Then:

    * ``Attention(use_scale, score_mode)([h, h])`` (query = value = key; ``use_causal_mask`` supported):
      ``"dot"`` is :class:`~lrpjax.models.SelfAttention` ``"dot"`` (``"general"`` with ``W = scale I``
      when scaled); ``"concat"``, ``w . tanh(s (q + k))`` summed over the features, is ``"additive"`` with
      ``W = U = s I``, ``b = 0``, ``v = w``;
    * ``AdditiveAttention(use_scale)([h, h])``, ``sum_d scale_d tanh(q_d + k_d)``: ``"additive"`` with
      ``W = U = I``, ``b = 0``, ``v = scale`` (ones without scale);
    * ``GlobalAveragePooling1D`` / ``GlobalMaxPooling1D`` (``Pool``), ``Dense`` (linear, relu, tanh,
      sigmoid), ``Activation`` (folded into the dense layer before it), ``Dropout`` (nothing); a final
      softmax or sigmoid is left out (LRP explains logits), with a ``UserWarning``.

    Parameter keys: those of ``from_keras`` for the chain before the attention (a dense layer there is
    ``dense_<k>``), ``attention_<k>`` (none for an unscaled dot attention), ``pool_<k>``, ``dense_<k>``,
    the last dense layer ``out``.

    Args:
        keras_model: a built ``keras.Model`` (functional API).

    Returns:
        an :class:`~lrpjax.interop.Imported`, unpacked as ``(model, params)``.

    Raises:
        TypeError: not a functional ``keras.Model``, or a layer kind that is not supported here.
        ValueError: a graph that is not one chain, no attention layer, an attention call option that is
            not supported, or what ``from_keras`` refuses in the chain before the attention.
    """
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    from lrpjax.interop.keras import from_keras

    if not isinstance(keras_model, keras.Model) or isinstance(keras_model, keras.Sequential) \
            or type(keras_model).__name__ != "Functional":
        raise TypeError(f"`keras_model` must be a functional keras.Model (keras.Model(inputs, outputs)); got "
                        f"{type(keras_model).__name__} (a keras.Sequential goes through interop.from_keras).")
    chain = _chain(keras_model, keras_model.get_config())
    first = next((k for k, (layer, _) in enumerate(chain) if type(layer).__name__ in ATTENTION_LAYERS), None)
    if first is None:
        raise ValueError("`keras_model` holds no Attention or AdditiveAttention layer; import a chain without "
                         "one as a keras.Sequential with interop.from_keras.")
    before = keras.Sequential([keras.Input(keras_model.inputs[0].shape[1:])] + [layer for layer, _ in chain[:first]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # no final activation can be dropped here
        head_model, head_params = from_keras(before)
    layers, params = list(head_model.layers), dict(head_params)
    if layers and layers[-1].name == "out":          # the chain goes on: the dense layer is not the output
        name = f"dense_{sum(isinstance(layer, Dense) for layer in layers) - 1}"
        params[name] = params.pop("out")
        layers[-1] = dataclasses.replace(layers[-1], name=name)
    D = Sequential(tuple(layers)).specs(params)[-1].size
    if not Sequential(tuple(layers)).sequence_output:
        raise ValueError("`keras_model`: the layer before the attention must return every step "
                         "(return_sequences=True).")
    counts = {"attention": 0, "pool": 0, "dense": sum(isinstance(layer, Dense) for layer in layers)}
    dropped = None
    for k, (layer, kwargs) in enumerate(chain[first:], start=first):
        where = f"keras_model layer {layer.name!r}"
        kind = type(layer).__name__
        if kind not in AFTER_ATTENTION or type(layer) is not getattr(keras.layers, kind):
            raise TypeError(f"`{where}` is a {kind}; after an attention layer supported: {', '.join(AFTER_ATTENTION)}.")
        if kind in ATTENTION_LAYERS:
            name = f"attention_{counts['attention']}"
            counts["attention"] += 1
            attention, weights = _attention(keras, layer, kwargs, D, name, where)
            layers.append(attention)
            if weights:
                params[name] = weights
        elif kind in ("GlobalAveragePooling1D", "GlobalMaxPooling1D"):
            layers.append(Pool("mean" if kind == "GlobalAveragePooling1D" else "max", name=f"pool_{counts['pool']}"))
            counts["pool"] += 1
        elif kind == "Dense":
            activation = keras.activations.serialize(layer.activation)
            activation = activation if isinstance(activation, str) else activation.get("config", activation)
            if activation in _OUTPUT_ACTIVATIONS and k == len(chain) - 1:
                dropped, activation = activation, "linear"
            if activation not in _ACTIVATIONS:
                raise ValueError(f"`{where}` has activation {activation!r}; supported: {sorted(_ACTIVATIONS)}.")
            name = f"dense_{counts['dense']}"
            counts["dense"] += 1
            W = np.asarray(layer.kernel)
            params[name] = {"W": W, **({"b": np.asarray(layer.bias)} if layer.use_bias else {})}
            layers.append(Dense(W.shape[1], _ACTIVATIONS[activation], layer.use_bias, name))
            D = W.shape[1]
        elif kind == "Activation":
            activation = keras.activations.serialize(layer.activation)
            last = layers[-1]
            if activation in _OUTPUT_ACTIVATIONS and k == len(chain) - 1:
                dropped = activation
            elif not isinstance(last, Dense) or last.activation != "identity" or activation not in _ACTIVATIONS:
                raise ValueError(f"`{where}` (Activation {activation!r}) must follow a Dense layer without activation "
                                 f"and be one of {sorted(_ACTIVATIONS)}.")
            else:
                layers[-1] = dataclasses.replace(last, activation=_ACTIVATIONS[activation])
    if isinstance(layers[-1], Dense):
        params["out"] = params.pop(layers[-1].name)
        layers[-1] = dataclasses.replace(layers[-1], name="out")
    model = Sequential(tuple(layers))
    model.specs(params)
    if dropped:
        warnings.warn(f"the final {dropped} of `keras_model` is left out: model.apply gives the scores before it "
                      "(logits), which LRP explains.", UserWarning, stacklevel=2)
    return Imported(model, params)
