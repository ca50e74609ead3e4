"""The one model type: a sequence of layers, applied in order.

``Sequential(layers).apply(params, x, rules=None, *, mask=None, taps=None)`` maps one embedded
sequence ``x`` (T, E) (or one vector (D,) with ``sequence_input=False``) to the last layer's output:
(C,) for classification or regression, (T, C) for a per-step head. Parameters are a plain dict keyed by
the layers' keys; the layers (:mod:`lrpjax.models.layers`) are written only with the elementary
computations, so every rule set, the gradient, masks, ``jit``/``vmap``, ``.full()`` and dataset
explanation work for every composition::

    from lrpjax.core.cells import GRUCell
    from lrpjax.models import Dense, Recurrent, Sequential

    model = Sequential((Recurrent(GRUCell(), 32, bidirectional=True, sequences=True),
                        Recurrent(GRUCell(), 32, bidirectional=True),
                        Dense(16, "relu"), Dense(5)))
    params = model.init(jax.random.PRNGKey(0), input_size=60)
    scores = model.apply(params, x)                 # (5,)
    R = lrpjax.lrp(model.apply, "lrp-all")(params, x, 3)

Unnamed layers are named by the model: ``lstm_0``, ``gru_1``, ``dense_0``, ``pool_0``, ..., a last
dense layer ``out``; :attr:`Sequential.names` lists every name a rule override may use.

Any value with the members of :class:`~lrpjax.models.layers.Layer` is a layer: the model asks each layer
about itself (its output shape, whether it needs a sequence, its summary line, its name) and never
tests its type, so a new kind of layer composes without a change here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrpjax._types import Array, ArrayLike, Params
from lrpjax.models.embedding import check_ids
from lrpjax.models.layers import Layer, Spec, layer_from_config
from lrpjax.core.rules import RuleSet

__all__ = ["Sequential", "check_inputs", "floating_dtype", "network_of"]


def floating_dtype(params: Any) -> np.dtype | None:
    """The one floating dtype of the parameters' leaves, as JAX computes with it (float64 leaves are
    float32 unless ``jax_enable_x64`` is on); None when they have none, or several."""
    dtypes = {getattr(leaf, "dtype", None) or jnp.result_type(leaf) for leaf in jax.tree_util.tree_leaves(params)}
    floating = {jax.dtypes.canonicalize_dtype(d) for d in dtypes if jnp.issubdtype(d, jnp.floating)}
    return floating.pop() if len(floating) == 1 else None


def check_inputs(x: Any, mask: Any, E: int | None = None, dtype: Any = None) -> None:
    """Static checks of an embedded sequence and its mask (free under ``jit``).

    A concrete mask must mark a valid prefix (``[T, T, F, F]``): padding goes at the end, and the
    backward direction of a bidirectional layer reverses that prefix.

    Args:
        x: embedded sequence, (T, E).
        mask: valid steps, (T,) bool, or None.
        E: the model's input size, if known.
        dtype: the parameters' floating dtype, if known: ``x`` of a narrower (or equally wide, other)
            floating dtype is refused, since the recurrent state would take ``x``'s dtype and the step
            the parameters' (the explanation methods of :mod:`lrpjax.methods` cast ``x`` first).

    Raises:
        ValueError: ``x`` not (T, E) with T >= 1, ``mask`` not (T,), or a mask that is not a prefix.
        TypeError: ``x`` not floating point, or narrower than ``dtype``; ``mask`` not boolean.
    """
    shape = jnp.shape(x)
    if len(shape) != 2:
        raise ValueError(f"`x` must be an embedded sequence of shape (T, E); got shape {shape}.")
    if shape[0] == 0:
        raise ValueError("`x` is an empty sequence (T = 0); at least one step is needed.")
    if E is not None and shape[1] != E:
        raise ValueError(f"`x` must have shape (T, E) with E = {E} (the model's input size); got {shape}.")
    _check_dtype(x, dtype)
    if mask is not None:
        if tuple(jnp.shape(mask)) != (shape[0],):
            raise ValueError(f"`mask` must have shape (T,) = ({shape[0]},) to match `x`; got {jnp.shape(mask)}.")
        if jnp.result_type(mask) != jnp.bool_:
            raise TypeError(f"`mask` must be boolean; got dtype {jnp.result_type(mask)}.")
        check_prefix(mask)


def _check_dtype(x: Any, dtype: Any) -> None:
    """``x`` floating point and, given the parameters' ``dtype``, not narrower than it."""
    got = np.dtype(jnp.result_type(x))
    expected = "" if dtype is None else f" ({np.dtype(dtype).name}, the parameters' dtype)"
    if not jnp.issubdtype(got, jnp.floating):
        raise TypeError(f"`x` must be floating point{expected}; got dtype {got}.")
    if dtype is not None and got != dtype and got.itemsize <= np.dtype(dtype).itemsize:
        raise TypeError(f"`x` has dtype {got}, narrower than the parameters' {np.dtype(dtype).name}; cast it "
                        f"(x.astype({np.dtype(dtype).name!r})) -- the explanation methods of lrpjax.methods do.")


def check_prefix(mask: Any, name: str = "mask") -> None:
    """A concrete mask (..., T) must mark a valid prefix in every row; traced masks are not checked.

    Raises:
        ValueError: naming ``name`` and the first row whose valid steps are not a prefix.
    """
    if isinstance(mask, jax.core.Tracer):
        return
    m = np.asarray(mask, dtype=bool).reshape(-1, np.shape(mask)[-1])
    lengths = m.sum(axis=1)
    prefix = np.arange(m.shape[1])[None, :] < lengths[:, None]
    bad = np.flatnonzero((m != prefix).any(axis=1))
    if bad.size:
        row = m[bad[0]].astype(int).tolist()
        where = f" (row {int(bad[0])})" if m.shape[0] > 1 else ""
        raise ValueError(f"`{name}` must mark a valid prefix (True steps first, padding at the end){where}; "
                         f"got {row}.")


@dataclass(frozen=True)
class Sequential:
    """A model: layers applied in order (module docstring).

    Attributes:
        layers: the layer values (:class:`~lrpjax.models.layers.Layer`: ``Recurrent``, ``Dense``, ``Pool``
            or any other), input side first. Unnamed layers get default names (see the module docstring).
        sequence_input: the model reads a sequence (T, E) with an optional mask (True), or one
            vector (D,) (False, e.g. a multilayer perceptron).
    """

    layers: tuple
    sequence_input: bool = True

    def __post_init__(self):
        layers = tuple(self.layers) if isinstance(self.layers, (list, tuple)) else None
        if not layers or not all(isinstance(layer, Layer) for layer in layers):
            raise TypeError("`layers` of Sequential must be a non-empty tuple of layers (Recurrent, Dense, Pool, or "
                            f"any value with the members of lrpjax.models.layers.Layer); got {self.layers!r}.")
        if not isinstance(self.sequence_input, bool):
            raise TypeError(f"`sequence_input` must be a bool; got {type(self.sequence_input).__name__}.")
        object.__setattr__(self, "layers", _named(layers))
        seen: dict[str, int] = {}
        for k, layer in enumerate(self.layers):
            for name in set(layer.rule_names()) | set(layer.keys()):
                if name in seen:
                    raise ValueError(f"layer names must be unique; {name!r} is used by layers {seen[name]} and {k}.")
                seen[name] = k
        for k, layer in enumerate(self.layers):
            if getattr(layer, "reads_ids", False) and (k > 0 or not self.sequence_input):
                raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) reads token ids: it must be the first "
                                 "layer of a model with sequence_input=True.")
        sequence = self.sequence_input
        for layer in self.layers:
            if layer.needs_sequence and not sequence:
                raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) needs a sequence; its input is a "
                                 "vector.")
            sequence = layer.sequence_output(sequence)

    # --- static description ---------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        """Every name a rule override (``rules.composite(by_layer=...)``) may use, input side first."""
        out: list[str] = []
        for layer in self.layers:
            out.extend(n for n in (*layer.rule_names(), *layer.keys()) if n not in out)
        return tuple(out)

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys of ``params``, input side first."""
        return tuple(k for layer in self.layers for k in layer.keys())

    @property
    def sequence_output(self) -> bool:
        """Whether the output is per step, (T, C), rather than (C,)."""
        sequence = self.sequence_input
        for layer in self.layers:
            sequence = layer.sequence_output(sequence)
        return sequence

    @property
    def takes_ids(self) -> bool:
        """Whether the model reads integer token ids (T,): its first layer is an embedding
        (:class:`~lrpjax.models.embedding.Embedding`)."""
        return bool(getattr(self.layers[0], "reads_ids", False))

    @property
    def input_ndim(self) -> int:
        """ndim of one input: 2 for a sequence (T, E), 1 for token ids (T,) or a vector (D,)."""
        return 2 if self.sequence_input and not self.takes_ids else 1

    @property
    def explained_ndim(self) -> int:
        """ndim of what the explanation methods explain for one input: 2 for sequences (T, E) -- the
        embedded vectors of a model that takes ids --, 1 for a vector (D,)."""
        return 2 if self.sequence_input else 1

    @property
    def masked(self) -> bool:
        """Whether ``apply`` takes a padding mask (sequence inputs do)."""
        return self.sequence_input

    @property
    def kind(self) -> str:
        return "sequential"

    def check_rules(self, rules: RuleSet | None) -> None:
        """Every override in ``rules.layers`` must name a layer of this model.

        Raises:
            ValueError: an unknown layer name, listing the model's layers.
        """
        if rules is None:
            return
        unknown = [name for name, _ in rules.layers if name not in self.names]
        if unknown:
            raise ValueError(f"the rule set overrides layer(s) {unknown} that this model does not have; its layers "
                             f"are {list(self.names)}.")

    # --- parameters ------------------------------------------------------------------------------

    def input_size(self, params: Params) -> int:
        """E (or D), the input size read off the first layer's parameters."""
        return self.layers[0].input_size(params)

    def specs(self, params: Params, input_size: int | None = None) -> list[Spec]:
        """Checks every layer's parameters; the spec of each layer's input and, last, of the output.

        Raises:
            TypeError: ``params`` not a dict.
            ValueError: a missing layer, an unexpected key, or a shape that does not fit, named.
        """
        if not isinstance(params, dict):
            raise TypeError(f"`params` must be a dict of layer parameters (keys {list(self.keys)}); "
                            f"got {type(params).__name__}.")
        missing = [key for key in self.keys if key not in params]
        if missing:
            raise ValueError(f"`params` is missing keys {missing}; the model's keys are {list(self.keys)}.")
        unexpected = sorted(set(params) - set(self.keys))
        if unexpected:
            raise ValueError(f"`params` has keys {unexpected} that belong to no layer; the model's keys are "
                             f"{list(self.keys)}.")
        E = self.input_size(params) if input_size is None else input_size
        spec = Spec(("input",), (E,), self.sequence_input)
        specs = [spec]
        for layer in self.layers:
            spec = layer.output_spec(params, spec)
            specs.append(spec)
        return specs

    def output_shape(self, params: Params, T: int | None = None) -> tuple[int, ...]:
        """The shape of one output: (C,), or (T, C) for a per-step output (checks ``params``)."""
        C = self.specs(params)[-1].size
        if not self.sequence_output:
            return (C,)
        if T is None:
            raise ValueError("`T` is needed for the output shape of a model with one output per step.")
        return (T, C)

    def output_size(self, params: Params) -> int:
        """C, the size of the output's last axis (checks ``params``)."""
        return self.specs(params)[-1].size

    def init(self, key: Array, input_size: int, dtype=jnp.float32) -> Params:
        """Random parameters for inputs of size ``input_size`` (every layer needs its ``units``)."""
        params: Params = {}
        spec = Spec(("input",), (input_size,), self.sequence_input)
        for layer, layer_key in zip(self.layers, jax.random.split(key, len(self.layers))):
            params.update(layer.init(layer_key, spec, dtype))
            spec = layer.output_spec(params, spec)
        return params

    # --- the model -------------------------------------------------------------------------------

    def check_inputs(self, x: Any, mask: Any = None, E: int | None = None, dtype: Any = None) -> None:
        """Static checks of one input and its mask (see :func:`check_inputs`).

        Raises:
            ValueError, TypeError: as :func:`check_inputs`; for a vector model, ``x`` not (D,) or a mask;
                for a model that takes token ids, ``x`` not integer ids (T,) in ``[0, V)`` (E is then V).
        """
        if not self.takes_ids and jnp.issubdtype(jnp.result_type(x), jnp.integer):
            raise TypeError(f"`x` has integer dtype {jnp.result_type(x)}, but this model reads "
                            f"{'embedded sequences (T, E)' if self.sequence_input else 'vectors (D,)'}, not token "
                            "ids: put an Embedding layer (lrpjax.models.Embedding) first to take ids, or embed "
                            "them yourself (table[ids]).")
        if self.takes_ids:
            check_ids("x", x, E)
            _check_mask(mask, jnp.shape(x)[0])
            return
        if self.sequence_input:
            check_inputs(x, mask, E, dtype)
            return
        if len(jnp.shape(x)) != 1 or (E is not None and jnp.shape(x)[0] != E):
            raise ValueError(f"`x` must be one input vector of shape (D,) = ({E or 'D'},); got "
                             f"{tuple(jnp.shape(x))} (batch with jax.vmap).")
        _check_dtype(x, dtype)
        if mask is not None:
            raise ValueError("`mask` must be None: this model reads one vector, which has no padded steps.")

    def apply(self, params: Params, x: ArrayLike, rules: RuleSet | None = None, *,
              mask: ArrayLike | None = None, taps: Params | None = None) -> Array:
        """The model's output for one input.

        Args:
            params: ``{key: layer parameters}`` for every key in :attr:`keys`.
            x: embedded sequence (T, E), token ids (T,) for a model that starts with an
                :class:`~lrpjax.models.embedding.Embedding`, or a vector (D,) with ``sequence_input=False``.
            rules: rule set (relevance backward; ``rules.at(layer name)`` per layer) or None (gradients).
            mask: valid steps, shape (T,) bool, a prefix; padded steps leave every state untouched.
            taps: zero probes from :meth:`zero_taps`, to read relevance at every layer's states and inputs.

        Returns:
            The last layer's output: (C,), or (T, C) for a per-step head.

        A direct call (no ``jit``, ``vmap`` or ``grad`` around it) runs a program compiled once per model,
        rule set, shapes and dtypes and reused by every later call, so a loop over inputs of one shape
        compiles once; inside a transformation the layers are traced as usual.
        """
        specs = self.specs(params)
        x = x if hasattr(x, "dtype") else np.asarray(x)
        self.check_inputs(x, mask, specs[0].size, floating_dtype(params))
        if _concrete(params, x, mask, taps):
            return _apply_compiled(self, params, x, rules, mask, taps)
        return self._apply(params, x, rules, mask, taps)

    def _apply(self, params: Params, x: ArrayLike, rules: RuleSet | None, mask: ArrayLike | None,
               taps: Params | None) -> Array:
        """:meth:`apply` without the checks (traceable)."""
        specs = self.specs(params)
        parts = (jnp.asarray(x),)
        mask = None if mask is None else jnp.asarray(mask)
        for layer, spec in zip(self.layers, specs):
            parts = layer.apply(params, parts, spec, mask, rules, taps)
        return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)

    # --- token ids -------------------------------------------------------------------------------

    def embed(self, params: Params, ids: ArrayLike) -> Array:
        """The embedded vectors ``table[ids]`` of a model that takes token ids: (T, E) for ids (T,), (B, T, E)
        for a batch (B, T); what the explanation methods explain.

        Raises:
            TypeError: the model does not take token ids, or ``ids`` are not integers.
            ValueError: an id outside the vocabulary, naming it and the vocabulary size.
        """
        if not self.takes_ids:
            raise TypeError("embed() is for a model that takes token ids (an Embedding first); this model reads "
                            "embedded sequences already.")
        first = self.layers[0]
        V = first.input_size(params)                  # checks the table
        ids = ids if hasattr(ids, "dtype") else np.asarray(ids)
        check_ids("ids", ids, V, ndim=2 if len(jnp.shape(ids)) == 2 else 1)
        return jnp.take(jnp.asarray(params[first.name]["table"]), jnp.asarray(ids), axis=0)

    def vector_model(self, params: Params) -> tuple[Sequential, Params]:
        """``(inner, inner_params)``: the layers after the embedding, reading embedded vectors (T, E), and
        their parameters (without the table) -- the way to explain embedded vectors directly::

            inner, inner_params = model.vector_model(params)
            R = lrpjax.lrp(inner.apply, "lrp-all")(inner_params, model.embed(params, ids), target)

        Raises:
            TypeError: the model does not take token ids (it reads vectors already), or has nothing after
                its embedding.
        """
        if not self.takes_ids:
            raise TypeError("vector_model() is for a model that takes token ids (an Embedding first); this model "
                            "reads embedded sequences already.")
        if len(self.layers) == 1:
            raise TypeError("vector_model(): this model is only an embedding; it has no layers after it.")
        dropped = set(self.layers[0].keys())
        return (Sequential(self.layers[1:], self.sequence_input),
                {k: v for k, v in params.items() if k not in dropped} if isinstance(params, dict) else params)

    def zero_taps(self, params: Params, x: ArrayLike) -> Params:
        """Zero probes for :meth:`apply`: ``{"initial": {key: {...}}, "states": {key or name: ...}}``.

        Under ``Method.full`` their cotangents are the relevance at every recurrent state after each
        step (``states[key]["y"]``, ``["c"]`` for LSTMs, ``["h"]`` for GRUs, (T, H), original positions
        for backward directions too), at every initial state (``initial[key]``), and at the input of
        every dense and pooling layer (``states[name]``, (D,) or (T, D)).
        """
        specs = self.specs(params)
        T = jnp.shape(x)[0] if self.sequence_input else 0
        dtype = jnp.result_type(x)
        if not jnp.issubdtype(dtype, jnp.floating):
            dtype = floating_dtype(params) or jnp.result_type(float)
        initial, states = {}, {}
        for layer, spec in zip(self.layers, specs):
            layer_initial, layer_states = layer.zero_taps(params, spec, T, dtype)
            initial.update(layer_initial)
            states.update(layer_states)
        return {"initial": initial, "states": states}

    # --- description -----------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """A JSON-able description, e.g. for checkpoint metadata (:meth:`from_config` inverts it)."""
        return {"type": "sequential", "sequence_input": self.sequence_input,
                "layers": [layer.config() for layer in self.layers]}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sequential:
        """The model described by ``config`` (from :meth:`config`).

        Raises:
            ValueError: not a sequential model's description.
        """
        if not isinstance(config, dict) or config.get("type") != "sequential" or "layers" not in config:
            raise ValueError(f"`config` must describe a sequential model (type 'sequential', 'layers'); got {config!r}.")
        return cls(tuple(layer_from_config(layer) for layer in config["layers"]),
                   bool(config.get("sequence_input", True)))

    def summary(self, params: Params | None = None) -> str:
        """One line per layer: name, kind and, with ``params``, the output shape and parameter count."""
        specs = None if params is None else self.specs(params)
        lines = []
        for k, layer in enumerate(self.layers):
            text = f"{layer.name:<16} {layer.describe()}"
            if specs is not None and params is not None:
                out = specs[k + 1]
                shape = f"(T, {out.size})" if out.sequence else f"({out.size},)"
                count = sum(int(np.prod(np.shape(leaf))) for key in layer.keys()
                            for leaf in jax.tree_util.tree_leaves(params[key]))
                text += f"  -> {shape}, {count} parameters"
            lines.append(text)
        return "\n".join(lines)


def _concrete(*trees: Any) -> bool:
    """Whether no leaf of ``trees`` is traced (a direct call, not one inside ``jit``, ``vmap`` or ``grad``)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(trees))


@partial(jax.jit, static_argnums=(0, 3))
def _apply_compiled(model: Sequential, params: Params, x: Array, rules: RuleSet | None, mask: Array | None,
                    taps: Params | None) -> Array:
    """:meth:`Sequential.apply` compiled once per model, rule set, shapes and dtypes: a direct call reuses it,
    so an un-jitted ``model.apply(params, x)`` costs about what ``jax.jit(model.apply)`` does."""
    return model._apply(params, x, rules, mask, taps)


def _check_mask(mask: Any, T: int) -> None:
    """A mask of token ids: (T,) boolean, a valid prefix."""
    if mask is None:
        return
    if tuple(jnp.shape(mask)) != (T,):
        raise ValueError(f"`mask` must have shape (T,) = ({T},) to match `x`; got {jnp.shape(mask)}.")
    if jnp.result_type(mask) != jnp.bool_:
        raise TypeError(f"`mask` must be boolean; got dtype {jnp.result_type(mask)}.")
    check_prefix(mask)


def _named(layers: tuple) -> tuple:
    """Gives every unnamed layer a default name: ``<default_name>_<k>``, or ``out`` for a last layer that
    is an output layer by default (``default_output``: a dense layer)."""
    counts: dict[str, int] = {}
    named = []
    for k, layer in enumerate(layers):
        if layer.name is None:
            if k == len(layers) - 1 and layer.default_output:
                name = "out"
            else:
                prefix = layer.default_name
                name = f"{prefix}_{counts.get(prefix, 0)}"
                counts[prefix] = counts.get(prefix, 0) + 1
            layer = dataclasses.replace(layer, name=name)
        named.append(layer)
    return tuple(named)


def network_of(model: Any) -> Sequential | None:
    """The :class:`Sequential` behind a model object (itself, or the ``network`` of a named model such
    as :class:`~lrpjax.models.LSTM` or :class:`~lrpjax.models.MLP`), or None for anything else."""
    if isinstance(model, Sequential):
        return model
    network = getattr(model, "network", None)
    return network if isinstance(network, Sequential) else None
