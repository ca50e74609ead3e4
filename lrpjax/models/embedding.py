"""The embedding layer: integer token ids in, embedded vectors out, so that a model takes token ids.

``Embedding(E)`` placed first in a :class:`~lrpjax.models.Sequential` makes the model read one sequence
of token ids (T,) (a padded batch (B, T) with a mask under :meth:`~lrpjax.methods.base.Method.batch`)
instead of embedded vectors (T, E). Its parameters are ``{name: {"table": (V, E)}}``, one row per token of
the vocabulary; row ``ids[t]`` is the input of the next layer at step t.

The lookup is routing, not a computation with a relevance rule (Sec. 11.5.1): the explanation methods
explain the embedded vectors ``table[ids]`` (T, E) -- relevance, gradients, Integrated Gradients' path
(from zero vectors by default), SmoothGrad's noise and occlusion's zeroed position all live there --
and the relevance of a token is the sum over its embedding dimensions (``method.tokens(params, ids,
target)``). To explain embedded vectors directly (vectors of your own, or rows edited by hand), split
the model with :meth:`~lrpjax.models.Sequential.vector_model`::

    inner, inner_params = model.vector_model(params)     # the layers after the embedding
    vectors = model.embed(params, ids)                   # (T, E) = table[ids]
    R = lrpjax.lrp(inner.apply, "lrp-all")(inner_params, vectors, target)

A model over embedded vectors and its embedding table (what an importer of :mod:`lrpjax.interop` gives
for a framework's embedding) become a model over token ids with :func:`with_embedding`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from lrpjax._types import Array, Params
from lrpjax.core.rules import RuleSet
from lrpjax.models.layers import Spec, _check_name, _check_units, _Named, register_layer

__all__ = ["Embedding", "check_ids", "with_embedding"]


def check_ids(name: str, ids: Any, vocab_size: int | None = None, ndim: int = 1) -> None:
    """Static checks of token ids: an integer array of ``ndim`` dimensions, every id in ``[0, vocab_size)``
    when the ids are concrete (traced ids are not range-checked).

    Raises:
        TypeError: not an integer array, naming ``name``.
        ValueError: the wrong number of dimensions, an empty sequence, or an id out of range (naming
            ``name``, the first bad position and the vocabulary size).
    """
    dtype = np.dtype(jnp.result_type(ids))
    if not jnp.issubdtype(dtype, jnp.integer) or dtype == np.bool_:
        raise TypeError(f"`{name}` must be integer token ids (this model starts with an Embedding layer); got "
                        f"dtype {dtype}. To explain embedded vectors (T, E), use model.vector_model(params).")
    shape = tuple(jnp.shape(ids))
    expected = "(T,)" if ndim == 1 else "(B, T)"
    if len(shape) != ndim or 0 in shape:
        raise ValueError(f"`{name}` must be token ids of shape {expected} with every size >= 1; got shape {shape}.")
    if vocab_size is None or isinstance(ids, jax.core.Tracer):
        return
    host = np.asarray(ids)
    bad = np.argwhere((host < 0) | (host >= vocab_size))
    if bad.size:
        where = tuple(int(i) for i in bad[0])
        raise ValueError(f"`{name}` has token id {int(host[where])} at position {where[0] if ndim == 1 else where}, "
                         f"outside the vocabulary of size V = {vocab_size} (ids must be in [0, {vocab_size})).")


@register_layer
@dataclass(frozen=True)
class Embedding(_Named):
    """A lookup table: token ids (T,) -> embedded vectors (T, E) (module docstring). It must come first
    in a model; the model then takes token ids.

    Parameters: ``params[name] = {"table": (V, E)}``; V (the vocabulary size) is the model's input size
    (``model.init(key, input_size=V)``).

    Attributes:
        units: E, the embedding size (needed by :meth:`init`; checked against the table), or None.
        name: the layer's name (None: chosen by the model, ``"embedding_0"``).
    """

    units: int | None = None
    name: str | None = None

    kind: ClassVar[str] = "embedding"
    default_name: ClassVar[str] = "embedding"
    needs_sequence: ClassVar[bool] = True
    default_output: ClassVar[bool] = False
    reads_ids: ClassVar[bool] = True
    """The layer reads integer token ids (a model asks its first layer whether it takes ids)."""

    def __post_init__(self):
        _check_units("Embedding", self.units)
        _check_name("Embedding", self.name)

    def sequence_output(self, sequence_input: bool) -> bool:
        """A sequence of vectors (T, E)."""
        return True

    def describe(self) -> str:
        """``Embedding(<E>)``."""
        return f"Embedding({self.units if self.units is not None else 'E'})"

    def keys(self) -> tuple[str, ...]:
        return (self.label,)

    def rule_names(self) -> tuple[str, ...]:
        """None: the lookup has no relevance rule."""
        return ()

    def _table(self, params: Params) -> Any:
        layer = params.get(self.label) if isinstance(params, dict) else None
        if not isinstance(layer, dict) or set(layer) != {"table"}:
            raise ValueError(f"`params[{self.label!r}]` must be a dict with exactly the key 'table' (V, E) "
                             f"(layer {self.label!r}, Embedding); got "
                             f"{sorted(layer) if isinstance(layer, dict) else type(layer).__name__}.")
        table = layer["table"]
        if len(jnp.shape(table)) != 2 or 0 in jnp.shape(table):
            raise ValueError(f"`params[{self.label!r}]['table']` must have shape (V, E) with V, E >= 1; got "
                             f"{tuple(jnp.shape(table))}.")
        if not jnp.issubdtype(jnp.result_type(table), jnp.floating):
            raise TypeError(f"`params[{self.label!r}]['table']` must be floating point; got dtype "
                            f"{jnp.result_type(table)}.")
        return table

    def input_size(self, params: Params) -> int:
        """V, the vocabulary size: the number of rows of the table."""
        return int(jnp.shape(self._table(params))[0])

    def output_spec(self, params: Params, spec: Spec) -> Spec:
        """Checks the table against the vocabulary size ``spec.size``; the output's spec (T, E).

        Raises:
            ValueError: a missing or malformed table, E other than ``units``, a table of another V, or an
                input that is not a sequence of ids (the layer must come first).
        """
        table = self._table(params)
        V, E = (int(n) for n in jnp.shape(table))
        if spec.names != ("input",) or not spec.sequence:
            raise ValueError(f"layer {self.label!r} (Embedding) must be the first layer of a model that reads "
                             "sequences; it reads token ids, not the output of another layer.")
        if spec.size != V:
            raise ValueError(f"`params[{self.label!r}]['table']` has V = {V} rows; the model's input size (the "
                             f"vocabulary size) is {spec.size}.")
        if self.units is not None and E != self.units:
            raise ValueError(f"`params[{self.label!r}]['table']` has E = {E} columns; layer {self.label!r} has "
                             f"units = {self.units}.")
        return Spec((self.label,), (E,), True)

    def init(self, key: Array, spec: Spec, dtype=jnp.float32) -> Params:
        """A table of standard normal rows (PyTorch's ``nn.Embedding`` initialisation), V = ``spec.size``."""
        if self.units is None:
            raise ValueError(f"layer {self.label!r} (Embedding) needs `units` (E) to be initialised.")
        return {self.label: {"table": jax.random.normal(key, (spec.size, self.units), dtype)}}

    def apply(self, params: Params, parts: tuple[Array, ...], spec: Spec, mask: Array | None,
              rules: RuleSet | None, taps: Params | None) -> tuple[Array, ...]:
        """``table[ids]`` (T, E); padded steps are exactly 0 (routing: a gather, whose transpose is the rule)."""
        table = params[self.label]["table"]
        vectors = jnp.take(table, parts[0], axis=0)
        if mask is not None:
            vectors = jnp.where(mask[:, None], vectors, jnp.zeros((), vectors.dtype))
        return (vectors,)

    def zero_taps(self, params: Params, spec: Spec, T: int, dtype) -> tuple[Params, Params]:
        """No probes: the relevance at the embedded vectors is the explanation itself."""
        return {}, {}

    def config(self) -> dict[str, Any]:
        return {"type": "embedding", "units": self.units, "name": self.name}

    @classmethod
    def from_config(cls, fields: dict[str, Any]) -> Embedding:
        return cls(**fields)


def with_embedding(model: Any, params: Params, table: Any, name: str = "embedding") -> tuple[Any, Params]:
    """``(ids_model, ids_params)``: ``model`` (reading embedded vectors (T, E)) with an :class:`Embedding`
    of ``table`` (V, E) put first, so that it takes token ids; e.g. from an importer's
    ``(model, params, table)``::

        model, params = with_embedding(*interop.from_torch(rnn, head, embedding))

    Args:
        model: a :class:`~lrpjax.models.Sequential` over sequences (or a named model with one as its
            ``network``).
        params: its parameters.
        table: the embedding table (V, E), E the model's input size.
        name: the embedding layer's name and parameter key.

    Raises:
        TypeError: a model that is not a sequence model of :mod:`lrpjax.models`, or takes ids already.
        ValueError: a table that is not (V, E) with the model's E, or a ``name`` the model uses already.
    """
    from lrpjax.models.sequential import Sequential, network_of

    network = network_of(model)
    if network is None or not network.sequence_input or network.takes_ids:
        already = " that takes token ids already" if network is not None and network.takes_ids else ""
        raise TypeError("`model` must be a sequence model of lrpjax.models over embedded vectors (T, E); got "
                        f"{type(model).__name__}{already}.")
    E = network.input_size(params)
    shape = tuple(np.shape(table))
    if len(shape) != 2 or shape[1] != E or shape[0] == 0:
        raise ValueError(f"`table` must have shape (V, E) with E = {E} (the model's input size); got {shape}.")
    if name in network.names or name in network.keys:
        raise ValueError(f"`name` {name!r} is used by the model already; choose another.")
    ids_model = Sequential((Embedding(E, name=name), *network.layers), sequence_input=True)
    return ids_model, {name: {"table": table}, **params}
