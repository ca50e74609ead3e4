"""Layers: the values a model is composed of, each written only with the elementary computations.

A layer is a frozen (hashable) dataclass of static configuration; its parameters live in the model's
parameter dict under the layer's keys. What flows from one layer to the next is a tuple of *parts*,
arrays whose concatenation is the layer's output: one part for most layers, one per direction for a
bidirectional recurrent layer. Keeping the directions apart lets the next linear mapping read them
as several inputs with one shared denominator (``ops.linear``), which is how the reference BiLSTM's
output layer is written (``Why_Left``, ``Why_Right``); a recurrent layer reads the concatenation.
A part is (T, D_k) for a sequence (all steps) or (D_k,) for a vector.

Layers of this module:

* :class:`Recurrent` -- a recurrent layer: any cell of :mod:`lrpjax.core.cells`, uni- or bidirectional,
  all steps or the final state(s);
* :class:`Dense` -- ``act(sum_k x_k W_k + b)``, with or without bias, on a vector or at every step;
* :class:`Pool` -- mean, sum or max over the valid steps of a sequence, or its last valid step.

What every layer provides is the protocol :class:`Layer`: its parameter keys, rule names, output
shape, initialisation, application and zero probes, and the answers to the questions its callers ask
(is the output a sequence, does it need one, how does it describe itself, is it the model's default
output layer). :class:`Decomposable` is the optional part: a layer's own Contextual Decomposition
(:mod:`lrpjax.methods.decomposition`). A new layer is a class with these members; the model
(:class:`~lrpjax.models.Sequential`) and CD ask it, never test its type.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from lrpjax.core import ops
from lrpjax._types import Array, Params
from lrpjax.core.cells import (CELLS, StandardCell, all_valid, check_cell_params, linearise, unroll, unroll_record,
                                zero_layer_taps)
from lrpjax.core.rules import RuleSet

__all__ = ["Spec", "Layer", "Decomposable", "Recurrent", "Dense", "Pool", "LAYERS", "reverse_valid",
           "layer_from_config", "concat"]


class Spec(NamedTuple):
    """The static shape of the value between two layers.

    Attributes:
        names: the parts' names (the producing layer's keys; ``("input",)`` for the model input).
        sizes: the parts' feature sizes D_k.
        sequence: True when the parts are sequences (T, D_k), False for vectors (D_k,).
    """

    names: tuple[str, ...]
    sizes: tuple[int, ...]
    sequence: bool

    @property
    def size(self) -> int:
        """D, the size of the concatenated parts."""
        return sum(self.sizes)


@runtime_checkable
class Layer(Protocol):
    """What every layer of a model provides (as flax's ``RNNCellBase`` states what every cell does).

    A layer is a frozen (hashable) dataclass of static configuration with a ``name`` field (a model names
    an unnamed layer with ``dataclasses.replace``); its parameters live in the model's parameter dict
    under :meth:`keys`. Between layers flows a tuple of parts (module docstring), whose
    static shape is a :class:`Spec`. Callers ask the layer, never its type:
    :meth:`sequence_output` and :attr:`needs_sequence` (the model's shape checks),
    :meth:`describe` (its summary line), :attr:`default_name` and :attr:`default_output` (naming an
    unnamed layer), :meth:`config` (checkpoints). The optional Contextual Decomposition is
    :class:`Decomposable`.
    """

    @property
    def name(self) -> str | None:
        """The layer's name; None until a model names it."""
        ...

    @property
    def default_name(self) -> str:
        """The prefix of the name a model gives it when unnamed (``"lstm"`` -> ``"lstm_0"``)."""
        ...

    @property
    def default_output(self) -> bool:
        """Whether, unnamed and last in a model, the layer is named ``"out"`` (the output layer)."""
        ...

    @property
    def needs_sequence(self) -> bool:
        """Whether the layer reads only sequences (T, D_k), not vectors."""
        ...

    def sequence_output(self, sequence_input: bool) -> bool:
        """Whether the output is a sequence, given whether the input is."""
        ...

    def keys(self) -> tuple[str, ...]:
        """Its keys in the model's parameter dict (none for a layer without parameters)."""
        ...

    def rule_names(self) -> tuple[str, ...]:
        """The names rule overrides (``rules.composite(by_layer=...)``) may use for it."""
        ...

    def input_size(self, params: Params) -> int:
        """The input size read off its parameters (a model reads its own input size from its first layer).

        Raises:
            ValueError: parameters that do not state it.
        """
        ...

    def output_spec(self, params: Params, spec: Spec) -> Spec:
        """Checks its parameters against the input ``spec``; the output's spec.

        Raises:
            ValueError: naming the parameter or the input that does not fit.
        """
        ...

    def init(self, key: Array, spec: Spec, dtype: Any = ...) -> Params:
        """Random parameters ``{key: ...}`` for an input of ``spec``."""
        ...

    def apply(self, params: Params, parts: tuple[Array, ...], spec: Spec, mask: Array | None,
              rules: RuleSet | None, taps: Params | None) -> tuple[Array, ...]:
        """The output parts for the input parts of ``spec`` (mask (T,) of valid steps, or None), written
        with the elementary computations, so ``rules`` (``rules.at(name)``) decide the relevance."""
        ...

    def zero_taps(self, params: Params, spec: Spec, T: int, dtype: Any) -> tuple[Params, Params]:
        """``(initial, states)``: zero probes whose cotangents read the relevance at its states or input."""
        ...

    def describe(self) -> str:
        """One line stating the layer's kind and configuration, e.g. ``"Dense(tanh, bias)"``."""
        ...

    def config(self) -> dict[str, Any]:
        """A JSON-able description (:func:`layer_from_config` inverts it for the layers of :data:`LAYERS`)."""
        ...


@runtime_checkable
class Decomposable(Protocol):
    """A layer with a Contextual Decomposition (Murdoch et al. 2018; :mod:`lrpjax.methods.decomposition`).

    Every part of a layer's input and output is split into a relevant part ``beta`` and the rest; the
    layer maps the relevant parts and the true values of its input to those of its output.
    """

    def check_decomposable(self) -> None:
        """Raises TypeError, naming the layer, when this configuration has no decomposition (e.g. a
        recurrent layer whose cell has none); does nothing otherwise."""
        ...

    def decompose(self, params: Params, spec: Spec, beta: tuple[Array, ...], total: tuple[Array, ...],
                  mask: Array, relevant: Array, bias_product: str, reads_input: bool,
                  record: dict[str, dict[str, Array]]) -> tuple[tuple[Array, ...], tuple[Array, ...]]:
        """The relevant parts and the true values of the output parts.

        Args:
            params: the model's parameters.
            spec: the input's spec.
            beta: the relevant parts of the input parts; ``total`` their true values.
            mask: valid steps, (T,) bool.
            relevant: the relevant positions of the model's input (valid ones), (T,) bool.
            bias_product: where a relevant step's bias-bias product goes (``BIAS_PRODUCTS``).
            reads_input: whether the input is the model's input (its relevant part is then the input at
                the relevant positions).
            record: ``{"beta_y": {}, "gamma_y": {}, "beta_c": {}, "gamma_c": {}}``; a recurrent layer
                adds its states' parts under its keys.
        """
        ...


def reverse_valid(mask: Array) -> Array:
    """Indices that reverse the valid prefix of a sequence and keep the padding in place, (T,)."""
    T = mask.shape[0]
    t = jnp.arange(T)
    length = jnp.sum(mask.astype(jnp.int32))
    return jnp.where(t < length, length - 1 - t, t)


def _check_name(layer: str, name: Any) -> None:
    if name is not None and (not isinstance(name, str) or not name or "/" in name):
        raise ValueError(f"`name` of {layer} must be a non-empty string without '/'; got {name!r}.")


def _check_units(layer: str, units: Any) -> None:
    if units is not None and (not isinstance(units, int) or isinstance(units, bool) or units < 1):
        raise ValueError(f"`units` of {layer} must be a positive int or None; got {units!r}.")


def _zero_padding(value: Array, mask: Array | None) -> Array:
    """Sets padded steps of a sequence (T, D) to exactly 0 (routing: they receive nothing back)."""
    if mask is None:
        return value
    return jnp.where(mask[:, None], value, jnp.zeros((), value.dtype))


def concat(parts: tuple[Array, ...]) -> Array:
    """A layer's output from its parts: their concatenation along the feature axis (one part: itself)."""
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)


def _add_tap(parts: tuple[Array, ...], tap: Array) -> tuple[Array, ...]:
    """Adds a zero probe over the concatenated parts, each part its own slice of it."""
    out, offset = [], 0
    for part in parts:
        width = part.shape[-1]
        out.append(part + tap[..., offset:offset + width])
        offset += width
    return tuple(out)


class _Named:
    """What every layer shares: its name, which the model sets when the layer has none."""

    name: str | None

    @property
    def label(self) -> str:
        """The layer's name.

        Raises:
            ValueError: an unnamed layer outside a model (``Sequential`` names its layers).
        """
        if self.name is None:
            raise ValueError(f"this {type(self).__name__} layer has no name: give it name=... or use it inside a "
                             "Sequential, which names its layers.")
        return self.name

    def own_entry(self, params: Params, key: str, what: str) -> Any:
        """``params[label][key]``, the layer's own parameter ``key``.

        Raises:
            ValueError: ``params[label]`` is not a dict holding ``key`` ("... must be a dict with <what>.").
        """
        layer = params.get(self.label) if isinstance(params, dict) else None
        if not isinstance(layer, dict) or key not in layer:
            raise ValueError(f"`params[{self.label!r}]` must be a dict with {what}.")
        return layer[key]


# --- recurrent layer ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Recurrent(_Named):
    """A recurrent layer: one cell run over the sequence, optionally in both directions.

    The forward direction reads ``x_0 .. x_{L-1}``; the backward direction reads the valid prefix
    reversed, ``x_{L-1} .. x_0`` (padding stays at the end), so a padded sequence gives the same
    result as the unpadded one. Initial states are zero (Sec. 11.4.1, A9).

    Output, one part per direction (forward first):

    * ``sequences=False``: the final output of each direction, (H,) each: the forward state after the
      last valid step and the backward state after it read ``x_0`` (PyTorch's ``h_n`` of the layer,
      the reference BiLSTM's [left final, right final]);
    * ``sequences=True``: every step's output, (T, H) each, the backward one at the original positions
      (row t is its state after reading ``x_t``); padded steps are 0. The next recurrent layer reads
      ``[forward_t, backward_t]`` concatenated, as in PyTorch and Keras.

    Parameters: the cell's dict (see the cell) under each direction's key, :meth:`keys`.

    Attributes:
        cell: a cell of :mod:`lrpjax.core.cells` (``StandardCell``, ``GRUCell``, an LRP-friendly cell).
        units: H per direction (needed by :meth:`init`; checked against the parameters), or None.
        bidirectional: add the backward direction.
        sequences: output all steps instead of the final state(s).
        name: the layer's name (None: chosen by the model, e.g. ``"lstm_0"``).
        directions: the keys of the two directions of a bidirectional layer; default
            ``(name + "_forward", name + "_backward")``. The reference BiLSTM uses ``("left", "right")``.
    """

    cell: Any = StandardCell()
    units: int | None = None
    bidirectional: bool = False
    sequences: bool = False
    name: str | None = None
    directions: tuple[str, str] | None = None

    kind: ClassVar[str] = "recurrent"
    needs_sequence: ClassVar[bool] = True
    default_output: ClassVar[bool] = False

    def __post_init__(self):
        if type(self.cell) not in CELLS.values() and not hasattr(self.cell, "step"):
            raise TypeError(f"`cell` of Recurrent must be a cell of lrpjax.core.cells; got {type(self.cell).__name__}.")
        _check_units("Recurrent", self.units)
        for field in ("bidirectional", "sequences"):
            if not isinstance(getattr(self, field), bool):
                raise TypeError(f"`{field}` of Recurrent must be a bool; got {type(getattr(self, field)).__name__}.")
        _check_name("Recurrent", self.name)
        if self.directions is not None:
            directions = tuple(self.directions)
            if not self.bidirectional:
                raise ValueError("`directions` of Recurrent names the two directions of a bidirectional layer; "
                                 "set bidirectional=True or leave directions None.")
            if len(directions) != 2 or directions[0] == directions[1]:
                raise ValueError(f"`directions` of Recurrent must be two different names; got {self.directions!r}.")
            for d in directions:
                _check_name("Recurrent (directions)", d)
            object.__setattr__(self, "directions", directions)

    @property
    def default_name(self) -> str:
        return "gru" if self.cell.kind == "gru" else "lstm"

    def sequence_output(self, sequence_input: bool) -> bool:
        """All steps (``sequences``) or the final state(s)."""
        return self.sequences

    def describe(self) -> str:
        """``Recurrent(<cell kind>[, bidirectional][, sequences])``."""
        return (f"Recurrent({self.cell.kind}{', bidirectional' if self.bidirectional else ''}"
                f"{', sequences' if self.sequences else ''})")

    def keys(self) -> tuple[str, ...]:
        """The parameter keys: the layer's name, or one key per direction."""
        if not self.bidirectional:
            return (self.label,)
        if self.directions is not None:
            return tuple(self.directions)
        return (f"{self.label}_forward", f"{self.label}_backward")

    def rule_names(self) -> tuple[str, ...]:
        """Names that rule overrides may use: the layer and, when bidirectional, each direction."""
        return (self.label,) + (self.keys() if self.bidirectional else ())

    def input_size(self, params: Params) -> int:
        """E read off the parameters (the input weights of the first direction)."""
        return int(jnp.shape(_lookup(params, self.keys()[0], "W"))[0])

    def output_spec(self, params: Params, spec: Spec) -> Spec:
        """Checks the parameters against the input ``spec``; the output's spec.

        Raises:
            ValueError: a vector input, a missing key, a shape that does not fit, directions of
                different sizes, or H other than ``units``.
        """
        if not spec.sequence:
            raise ValueError(f"layer {self.label!r} (Recurrent) needs a sequence input; the layer before it "
                             "outputs a vector (put recurrent layers before pooling and final-state outputs).")
        H: int | None = None
        for key in self.keys():
            if not isinstance(params, dict) or key not in params:
                raise ValueError(f"`params` must have key {key!r} (layer {self.label!r}); "
                                 f"got keys {sorted(params) if isinstance(params, dict) else type(params).__name__}.")
            H_key = check_cell_params(self.cell, params[key], spec.size, f"params[{key!r}]")
            if H is not None and H_key != H:
                raise ValueError(f"Both directions of layer {self.label!r} must have the same H; got {H} and {H_key}.")
            H = H_key
        assert H is not None   # a layer has at least one direction
        if self.units is not None and H != self.units:
            raise ValueError(f"`params[{self.keys()[0]!r}]` has H = {H} units; layer {self.label!r} has units = {self.units}.")
        return Spec(self.keys(), (H,) * len(self.keys()), self.sequences)

    def init(self, key: Array, spec: Spec, dtype=jnp.float32) -> Params:
        """Random parameters for every direction (the cell's ``init``)."""
        if self.units is None:
            raise ValueError(f"layer {self.label!r} (Recurrent) needs `units` to be initialised.")
        keys = jax.random.split(key, len(self.keys()))
        return {k: self.cell.init(rk, spec.size, self.units, dtype) for k, rk in zip(self.keys(), keys)}

    def reading_orders(self, mask: Array) -> tuple[Array | None, ...]:
        """The order each direction (in :meth:`keys` order) reads the steps in: None for the forward
        direction, :func:`reverse_valid` of ``mask`` (T,) for the backward one (an involution)."""
        return (None, reverse_valid(mask)) if self.bidirectional else (None,)

    def apply(self, params: Params, parts: tuple[Array, ...], spec: Spec, mask: Array | None,
              rules: RuleSet | None, taps: Params | None) -> tuple[Array, ...]:
        """Runs the directions over the concatenated input parts (T, E); see the class docstring."""
        x = concat(parts)
        # No mask is an all-valid one: one program for both, with identical results (cells.all_valid).
        mask = all_valid(x.shape[0]) if mask is None else mask
        keys, orders = self.keys(), self.reading_orders(mask)
        dir_taps = [None if taps is None else _direction_taps(taps, key, order) for key, order in zip(keys, orders)]
        # One scan per direction: running both in one scan (the step vmapped over directions) measured
        # slower on CPU (batched small matrix products).
        outputs = []
        for key, order, t_d in zip(keys, orders, dir_taps):
            key_rules = None if rules is None else rules.at(key, self.label)
            final, ys = unroll(self.cell, params[key], _read(x, order), key_rules, mask, t_d)
            outputs.append(_zero_padding(_read(ys, order), mask) if self.sequences else final)
        return tuple(outputs)

    def zero_taps(self, params: Params, spec: Spec, T: int, dtype) -> tuple[Params, Params]:
        """``({key: {s0: (H,)}}, {key: {s: (T, H)}})`` for each direction and state name ``s``."""
        H = self.output_spec(params, spec).sizes[0]
        initial, states = {}, {}
        for key in self.keys():
            taps = zero_layer_taps(T, H, dtype, self.cell.state_names)
            initial[key] = {k: v for k, v in taps.items() if k.endswith("0")}
            states[key] = {k: v for k, v in taps.items() if not k.endswith("0")}
        return initial, states

    def config(self) -> dict[str, Any]:
        """A JSON-able description (:func:`layer_from_config` inverts it)."""
        cell = {"kind": self.cell.kind, **dataclasses.asdict(self.cell)}
        return {"type": "recurrent", "cell": cell, "units": self.units, "bidirectional": self.bidirectional,
                "sequences": self.sequences, "name": self.name,
                "directions": None if self.directions is None else list(self.directions)}

    @classmethod
    def from_config(cls, fields: dict[str, Any]) -> Recurrent:
        """The layer of :meth:`config`'s fields (without ``"type"``).

        Raises:
            ValueError: an unknown cell kind.
        """
        fields = dict(fields)
        cell = dict(fields["cell"])
        kind = cell.pop("kind", None)
        if kind not in CELLS:
            raise ValueError(f"unknown cell kind {kind!r}; known: {sorted(CELLS)}.")
        fields["cell"] = CELLS[kind](**cell)
        if fields.get("directions") is not None:
            fields["directions"] = tuple(fields["directions"])
        return cls(**fields)

    # --- Contextual Decomposition (Decomposable) -------------------------------------------------

    def check_decomposable(self) -> None:
        """Raises TypeError when the cell has no decomposition (only ``StandardCell`` has one)."""
        if not getattr(self.cell, "decomposable", False):
            raise TypeError(f"Contextual Decomposition cannot decompose layer {self.name!r} (Recurrent): its cell "
                            f"{type(self.cell).__name__} (kind {self.cell.kind!r}) has no decomposition; it is "
                            "defined for the standard LSTM cell (StandardCell).")

    def decompose(self, params: Params, spec: Spec, beta: tuple[Array, ...], total: tuple[Array, ...],
                  mask: Array, relevant: Array, bias_product: str, reads_input: bool,
                  record: dict[str, dict[str, Array]]) -> tuple[tuple[Array, ...], tuple[Array, ...]]:
        """CD of every direction (:class:`Decomposable`): the true states from the cell's own forward
        pass (``unroll_record``), the relevant ones from its ``decompose``, each direction in its own
        reading order (:meth:`reading_orders`, as :meth:`apply`). Adds ``beta_<s>``/``gamma_<s>`` of every
        state ``s`` (T, H) at original positions (padded steps repeat the last valid state) to ``record``."""
        x_beta, x_total = concat(beta), concat(total)
        out_beta, out_total = [], []
        for key, order in zip(self.keys(), self.reading_orders(mask)):
            x, read_relevant = _read(x_total, order), _read(relevant, order)
            states, records = unroll_record(self.cell, params[key], x, mask)
            bias_steps = _bias_steps(read_relevant, bias_product)
            betas = self.cell.decompose(params[key], _read(x_beta, order), x, records, states, mask, bias_steps,
                                        read_relevant if reads_input else None)
            # The last step in reading order holds the final state (padded steps repeat it), either direction.
            if self.sequences:
                out_beta.append(_zero_padding(_read(betas[0], order), mask))
                out_total.append(_zero_padding(_read(states[0], order), mask))
            else:
                out_beta.append(betas[0][-1])
                out_total.append(states[0][-1])
            for name, b, t in zip(self.cell.state_names, betas, states):
                record[f"beta_{name}"][key] = _read(b, order)
                record[f"gamma_{name}"][key] = _read(t - b, order)
        return tuple(out_beta), tuple(out_total)


def _direction_taps(taps: Params, key: str, order: Array | None) -> dict[str, Array]:
    """One direction's probes for ``unroll``: the initial ones, and the per-step ones in its reading order."""
    merged = {**taps["initial"][key], **taps["states"][key]}
    return {k: v if k.endswith("0") else _read(v, order) for k, v in merged.items()}


def _read(a: Array, order: Array | None) -> Array:
    """``a`` (T, ...) in a direction's reading order (None: as it is); the same call undoes it."""
    return a if order is None else a[order]


def _bias_steps(relevant: Array, bias_product: str) -> Array:
    """(T,) bool: the steps, in reading order, whose bias-bias product is relevant
    (:mod:`lrpjax.methods.decomposition`): never (``"gamma"``), at every relevant step (``"inside"``),
    or at a relevant step whose next step read is relevant too (``"authors"``)."""
    if bias_product == "gamma":
        return jnp.zeros_like(relevant)
    if bias_product == "inside":
        return relevant
    read_next = jnp.concatenate([relevant[1:], jnp.zeros((1,), bool)])
    return relevant & read_next


def _lookup(params: Params, key: str, leaf: str):
    if not isinstance(params, dict) or key not in params:
        raise ValueError(f"`params` must have key {key!r}; got "
                         f"{sorted(params) if isinstance(params, dict) else type(params).__name__}.")
    if not isinstance(params[key], dict) or leaf not in params[key]:
        raise ValueError(f"`params[{key!r}]` must be a dict with {leaf!r}.")
    return params[key][leaf]


# --- dense layer -------------------------------------------------------------------------------------

_DENSE_ACTIVATIONS = {"identity": ops.IDENTITY, "relu": ops.RELU, "tanh": ops.TANH, "sigmoid": ops.SIGMOID}


@dataclass(frozen=True)
class Dense(_Named):
    """A dense layer ``a = act(sum_k x_k W_k + b)``: one linear mapping, then an element-wise activation.

    The input parts ``x_k`` (e.g. the two directions of a bidirectional layer) are the several inputs
    of one linear mapping with one shared denominator (``ops.linear``); relevance follows the rule set's
    ``linear`` rule (by layer name with ``rules.composite``) and passes the activation unchanged. On a
    sequence input the layer acts at every step (a per-step head for tagging or forecasting);
    padded steps output 0.

    Parameters ``params[name]``: ``"W"`` (D, M) for a single input part, else one ``"W_<part name>"``
    (D_k, M) per part (``W_left``, ``W_right`` after the reference BiLSTM); ``"b"`` (M,) when ``bias``.

    Attributes:
        units: M (needed by :meth:`init`; checked against the parameters), or None.
        activation: ``"identity"``, ``"relu"``, ``"tanh"`` or ``"sigmoid"``.
        bias: whether the mapping has a bias.
        name: the layer's name (None: chosen by the model, ``"dense_k"``, the last dense layer ``"out"``).
    """

    units: int | None = None
    activation: str = "identity"
    bias: bool = True
    name: str | None = None

    kind: ClassVar[str] = "dense"
    needs_sequence: ClassVar[bool] = False
    default_output: ClassVar[bool] = True

    def __post_init__(self):
        _check_units("Dense", self.units)
        if self.activation not in _DENSE_ACTIVATIONS:
            raise ValueError(f"`activation` of Dense must be one of {tuple(_DENSE_ACTIVATIONS)}; "
                             f"got {self.activation!r}.")
        if not isinstance(self.bias, bool):
            raise TypeError(f"`bias` of Dense must be a bool; got {type(self.bias).__name__}.")
        _check_name("Dense", self.name)

    default_name: ClassVar[str] = "dense"

    def sequence_output(self, sequence_input: bool) -> bool:
        """Per step on a sequence, a vector on a vector."""
        return sequence_input

    def describe(self) -> str:
        """``Dense(<activation>[, bias])``."""
        return f"Dense({self.activation}{', bias' if self.bias else ''})"

    def keys(self) -> tuple[str, ...]:
        return (self.label,)

    def rule_names(self) -> tuple[str, ...]:
        return (self.label,)

    def weight_keys(self, spec: Spec) -> tuple[str, ...]:
        """``("W",)`` for one input part, else ``("W_<part>", ...)`` in the parts' order."""
        return ("W",) if len(spec.names) == 1 else tuple(f"W_{name}" for name in spec.names)

    def input_size(self, params: Params) -> int:
        layer = params.get(self.label) if isinstance(params, dict) else None
        weights = [k for k in layer if k == "W" or k.startswith("W_")] if isinstance(layer, dict) else []
        if not isinstance(layer, dict) or not weights:
            raise ValueError(f"`params[{self.label!r}]` must be a dict with the weights 'W' (D, M).")
        return sum(int(jnp.shape(layer[k])[0]) for k in weights)

    def output_spec(self, params: Params, spec: Spec) -> Spec:
        """Checks ``params[name]`` against the input ``spec``; the output's spec.

        Raises:
            ValueError: a missing layer or weight, a shape that does not fit, a bias where the layer has
                none (it would be ignored) or a missing one, M other than ``units``.
        """
        where = f"params[{self.label!r}]"
        if not isinstance(params, dict) or self.label not in params:
            raise ValueError(f"`params` must have key {self.label!r} (layer {self.label!r}); got "
                             f"{sorted(params) if isinstance(params, dict) else type(params).__name__}.")
        layer = params[self.label]
        if not isinstance(layer, dict):
            raise TypeError(f"`{where}` must be a dict of arrays; got {type(layer).__name__}.")
        expected = set(self.weight_keys(spec)) | ({"b"} if self.bias else set())
        if set(layer) != expected:
            missing, extra = sorted(expected - set(layer)), sorted(set(layer) - expected)
            raise ValueError(f"`{where}` must have exactly the keys {sorted(expected)} (input parts "
                             f"{list(spec.names)}, bias={self.bias}); missing {missing}, unexpected {extra}.")
        M: int | None = None
        for key, size in zip(self.weight_keys(spec), spec.sizes):
            shape = tuple(jnp.shape(layer[key]))
            if len(shape) != 2 or shape[0] != size or (M is not None and shape[1] != M):
                raise ValueError(f"`{where}[{key!r}]` must have shape (D, M) = ({size}, {M or 'M'}); got {shape}.")
            M = shape[1]
        if self.units is not None and M != self.units:
            first = self.weight_keys(spec)[0]
            raise ValueError(f"`{where}[{first!r}]` has M = {M} outputs; layer {self.label!r} has units = {self.units}.")
        if self.bias and tuple(jnp.shape(layer["b"])) != (M,):
            raise ValueError(f"`{where}['b']` must have shape (M,) = ({M},); got {tuple(jnp.shape(layer['b']))}.")
        assert M is not None   # at least one input part
        return Spec((self.label,), (M,), spec.sequence)

    def init(self, key: Array, spec: Spec, dtype=jnp.float32) -> Params:
        """Glorot-uniform weights (bound sqrt(6 / (D + M))), zero bias."""
        if self.units is None:
            raise ValueError(f"layer {self.label!r} (Dense) needs `units` to be initialised.")
        bound = (6.0 / (spec.size + self.units)) ** 0.5
        keys = jax.random.split(key, len(spec.sizes))
        layer = {w: jax.random.uniform(k, (size, self.units), dtype, -bound, bound)
                 for w, k, size in zip(self.weight_keys(spec), keys, spec.sizes)}
        if self.bias:
            layer["b"] = jnp.zeros((self.units,), dtype)
        return {self.label: layer}

    def apply(self, params: Params, parts: tuple[Array, ...], spec: Spec, mask: Array | None,
              rules: RuleSet | None, taps: Params | None) -> tuple[Array, ...]:
        """``act(sum_k parts[k] W_k + b)``, per step for sequences; one output part."""
        layer = params[self.label]
        weights = tuple(layer[k] for k in self.weight_keys(spec))
        b = layer["b"] if self.bias else None
        if taps is not None:
            parts = _add_tap(parts, taps["states"][self.label])
        layer_rules = None if rules is None else rules.at(self.label)

        def dense(*xs):
            z = ops.linear(layer_rules, xs, weights, b)
            act = _DENSE_ACTIVATIONS[self.activation]
            return z if act is ops.IDENTITY else ops.activation(layer_rules, act, z)

        if not spec.sequence:
            return (dense(*parts),)
        return (_zero_padding(jax.vmap(dense)(*parts), mask),)

    def zero_taps(self, params: Params, spec: Spec, T: int, dtype) -> tuple[Params, Params]:
        """``({}, {name: zeros})``: a probe on the layer's input, (D,) or (T, D)."""
        shape = (T, spec.size) if spec.sequence else (spec.size,)
        return {}, {self.label: jnp.zeros(shape, dtype)}

    def config(self) -> dict[str, Any]:
        return {"type": "dense", "units": self.units, "activation": self.activation, "bias": self.bias,
                "name": self.name}

    @classmethod
    def from_config(cls, fields: dict[str, Any]) -> Dense:
        return cls(**fields)

    def check_decomposable(self) -> None:
        """Every dense layer decomposes."""

    def decompose(self, params: Params, spec: Spec, beta: tuple[Array, ...], total: tuple[Array, ...],
                  mask: Array, relevant: Array, bias_product: str, reads_input: bool,
                  record: dict[str, dict[str, Array]]) -> tuple[tuple[Array, ...], tuple[Array, ...]]:
        """CD of ``act(sum_k x_k W_k + b)`` (:class:`Decomposable`): the linear part splits exactly, the
        bias is irrelevant, and a nonlinear activation is linearised like the LSTM's gates, the bias
        first (:func:`lrpjax.core.cells.linearise`)."""
        layer = params[self.label]
        weights = [layer[k] for k in self.weight_keys(spec)]
        z_beta = sum(r @ W for r, W in zip(beta, weights))
        z_total = sum(t @ W for t, W in zip(total, weights))
        b = jnp.broadcast_to(layer["b"], z_total.shape) if self.bias else jnp.zeros_like(z_total)
        if self.activation == "identity":
            out_beta, out_total = z_beta, z_total + b
        else:
            act = _DENSE_ACTIVATIONS[self.activation]
            out_total = act(z_total + b)
            out_beta = linearise(z_beta, (z_total - z_beta) + b, b, out_total, act)
        if spec.sequence:
            out_beta, out_total = _zero_padding(out_beta, mask), _zero_padding(out_total, mask)
        return (out_beta,), (out_total,)


# --- pooling -----------------------------------------------------------------------------------------

_POOL_MODES = ("mean", "sum", "max", "last")


@dataclass(frozen=True)
class Pool(_Named):
    """Pooling over the valid steps of a sequence: each part (T, D_k) becomes a vector (D_k,).

    * ``"sum"``: ``z = sum_t x_t``; ``"mean"``: ``z = sum_t x_t / L`` over the L valid steps. Both are
      accumulations over time (``ops.pool``): relevance by the rule set's ``accumulate`` rule,
      ``R_t = (w_t x_t) / (z + eps sign(z)) R_z``.
    * ``"max"``: ``z_d = max_t x_td`` over the valid steps; all of ``R_d`` goes to the first step
      attaining the maximum (winner takes all; the max is routing, its transpose is the rule).
    * ``"last"``: ``z = x_L``, the last valid step (the read-out of a sequence-output layer such as an
      xLSTM or Mamba block at the end of the sequence, as a ``Recurrent`` layer returns its final
      state); a selection, so all of ``R_z`` goes to step L and the other steps get none (routing,
      like max, with the step fixed by the mask instead of the values).

    Attributes:
        mode: ``"mean"``, ``"sum"``, ``"max"`` or ``"last"``.
        name: the layer's name (None: chosen by the model, ``"pool_k"``).
    """

    mode: str = "mean"
    name: str | None = None

    kind: ClassVar[str] = "pool"
    default_name: ClassVar[str] = "pool"
    needs_sequence: ClassVar[bool] = True
    default_output: ClassVar[bool] = False

    def __post_init__(self):
        if self.mode not in _POOL_MODES:
            raise ValueError(f"`mode` of Pool must be one of {_POOL_MODES}; got {self.mode!r}.")
        _check_name("Pool", self.name)

    def sequence_output(self, sequence_input: bool) -> bool:
        """A vector: the steps are pooled."""
        return False

    def describe(self) -> str:
        """``Pool(<mode>)``."""
        return f"Pool({self.mode})"

    def keys(self) -> tuple[str, ...]:
        return ()

    def input_size(self, params: Params) -> int:
        """Raises: a pooling layer has no parameters to read an input size off."""
        raise ValueError(f"layer {self.label!r} (Pool) has no parameters to read the input size off; a model "
                         "cannot start with it.")

    def rule_names(self) -> tuple[str, ...]:
        return (self.label,)

    def output_spec(self, params: Params, spec: Spec) -> Spec:
        """The input's parts as vectors.

        Raises:
            ValueError: a vector input (nothing to pool).
        """
        if not spec.sequence:
            raise ValueError(f"layer {self.label!r} (Pool) needs a sequence input; the layer before it outputs "
                             "a vector.")
        return Spec(spec.names, spec.sizes, False)

    def init(self, key: Array, spec: Spec, dtype=jnp.float32) -> Params:
        return {}

    def apply(self, params: Params, parts: tuple[Array, ...], spec: Spec, mask: Array | None,
              rules: RuleSet | None, taps: Params | None) -> tuple[Array, ...]:
        """Pools every part over the valid steps."""
        if taps is not None:
            parts = _add_tap(parts, taps["states"][self.label])
        T = parts[0].shape[0]
        valid = jnp.ones((T,), bool) if mask is None else mask
        layer_rules = None if rules is None else rules.at(self.label)
        if self.mode == "max":
            return tuple(_max_pool(part, valid) for part in parts)
        if self.mode == "last":
            last = _last_index(valid)
            return tuple(part[last] for part in parts)
        weights = self._weights(valid, parts[0].dtype)
        return tuple(ops.pool(layer_rules, part, weights) for part in parts)

    def _weights(self, valid: Array, dtype) -> Array:
        """The step weights (T,) of sum (the mask) and mean pooling (the mask / L)."""
        weights = valid.astype(dtype)
        return weights / jnp.sum(weights) if self.mode == "mean" else weights

    def zero_taps(self, params: Params, spec: Spec, T: int, dtype) -> tuple[Params, Params]:
        """``({}, {name: zeros (T, D)})``: a probe on the pooled sequence."""
        return {}, {self.label: jnp.zeros((T, spec.size), dtype)}

    def config(self) -> dict[str, Any]:
        return {"type": "pool", "mode": self.mode, "name": self.name}

    @classmethod
    def from_config(cls, fields: dict[str, Any]) -> Pool:
        return cls(**fields)

    def check_decomposable(self) -> None:
        """Every pooling layer decomposes."""

    def decompose(self, params: Params, spec: Spec, beta: tuple[Array, ...], total: tuple[Array, ...],
                  mask: Array, relevant: Array, bias_product: str, reads_input: bool,
                  record: dict[str, dict[str, Array]]) -> tuple[tuple[Array, ...], tuple[Array, ...]]:
        """CD of pooling (:class:`Decomposable`): sum and mean are linear; max takes both parts at the step
        that is maximal in the true value, last both parts at the last valid step."""
        if self.mode == "last":
            last = _last_index(mask)
            return tuple(r[last] for r in beta), tuple(t[last] for t in total)
        if self.mode == "max":
            index = [_max_index(t, mask) for t in total]
            return (tuple(_gather(r, k) for r, k in zip(beta, index)),
                    tuple(_gather(t, k) for t, k in zip(total, index)))
        w = self._weights(mask, total[0].dtype)
        return tuple(w @ r for r in beta), tuple(w @ t for t in total)


def _last_index(valid: Array) -> Array:
    """The index of the last valid step of ``valid`` (T,) bool (the last True; T - 1 when none is)."""
    T = valid.shape[0]
    return T - 1 - jnp.argmax(valid[::-1])


def _max_index(x: Array, valid: Array) -> Array:
    """The first valid step maximal in each feature of ``x`` (T, D): (D,) indices."""
    lowest = jnp.asarray(-jnp.inf, x.dtype)
    return jnp.argmax(jnp.where(valid[:, None], x, lowest), axis=0)


def _gather(x: Array, index: Array) -> Array:
    """``x[index_d, d]`` for every feature d: (T, D), (D,) -> (D,)."""
    return jnp.take_along_axis(x, index[None, :], axis=0)[0]


def _max_pool(x: Array, valid: Array) -> Array:
    """``max_t x_td`` over valid steps, as a gather of the first maximal step (T, D) -> (D,)."""
    return _gather(x, _max_index(x, valid))


LAYERS = {layer.kind: layer for layer in (Recurrent, Dense, Pool)}
"""The layer classes by ``kind`` (:func:`register_layer` adds one)."""


def register_layer(cls):
    """Make the layer class ``cls`` known to :func:`layer_from_config` (and so to checkpoints) by its ``kind``.

    Usable as a class decorator; the modules of :mod:`lrpjax.models` register their layers when imported.

    Raises:
        ValueError: ``cls`` has no ``kind``/``from_config``, or another class holds its ``kind`` already.
    """
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str) or not callable(getattr(cls, "from_config", None)):
        raise ValueError(f"cls must be a layer class with a str 'kind' and a 'from_config'; got {cls!r}.")
    if LAYERS.get(kind, cls) is not cls:
        raise ValueError(f"cls: the layer kind {kind!r} is registered already, by {LAYERS[kind]!r}.")
    LAYERS[kind] = cls
    return cls


def layer_from_config(config: dict[str, Any]):
    """The layer described by ``config`` (a layer's :meth:`config`).

    Raises:
        ValueError: an unknown layer type or cell kind.
    """
    if not isinstance(config, dict) or config.get("type") not in LAYERS:
        raise ValueError(f"a layer config must be a dict with 'type' in {sorted(LAYERS)}; got {config!r}.")
    return LAYERS[config["type"]].from_config({k: v for k, v in config.items() if k != "type"})
