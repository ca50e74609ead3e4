"""What the importers share: weight arrays in, gate blocks reordered, dense weights split by input part.

Every importer turns a framework's weights into plain numpy arrays (the dtype kept: float32 stays
float32, float64 stays float64) and assembles a :class:`~lrpjax.models.Sequential` of
:class:`~lrpjax.models.Recurrent` and :class:`~lrpjax.models.Dense` layers. Nothing here imports a
framework.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np

from lrpjax._types import Params

__all__ = ["FLOATS", "as_weight", "check_dtypes", "gate_blocks", "dense_params", "Parts", "check_class", "Imported", "with_table"]

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
"""The weight dtypes an importer accepts."""


def as_weight(value: Any, where: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A weight as a numpy array of its own float dtype, checked.

    Args:
        value: an array the framework gave (already a numpy array or convertible to one).
        where: how the error names it, e.g. ``"rnn.weight_ih_l0"``.
        shape: the expected shape, or None.

    Raises:
        TypeError: a dtype other than float32 or float64.
        ValueError: another shape, or non-finite values.
    """
    array = np.array(value, copy=True)
    if array.dtype not in FLOATS:
        raise TypeError(f"`{where}` must be float32 or float64; got dtype {array.dtype} (convert the module, e.g. "
                        f".float() or .double()).")
    if shape is not None and array.shape != tuple(shape):
        raise ValueError(f"`{where}` must have shape {tuple(shape)}; got {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{where}` contains non-finite values (NaN or inf).")
    return array


def check_dtypes(params: Params, what: str) -> np.dtype:
    """All weights of an imported model share one dtype; float64 needs ``jax_enable_x64``.

    Args:
        params: the imported parameters (nested dicts of numpy arrays).
        what: the imported object, for the message (``"rnn and head"``).

    Returns:
        The common dtype.

    Raises:
        TypeError: mixed dtypes (the framework would refuse them too), or float64 weights while JAX
            runs in 32 bits (they would be silently rounded to float32).
    """
    dtypes = {np.dtype(leaf.dtype) for leaf in jax.tree_util.tree_leaves(params)}
    if len(dtypes) != 1:
        raise TypeError(f"the weights of {what} must all have one dtype; got {sorted(str(d) for d in dtypes)}.")
    dtype = dtypes.pop()
    if dtype == np.float64 and jax.dtypes.canonicalize_dtype(np.float64) != np.float64:
        raise TypeError(f"the weights of {what} are float64 but JAX runs in 32 bits, which would round them to "
                        "float32; enable 64 bits first (jax.config.update('jax_enable_x64', True)) or convert the "
                        "model to float32.")
    return dtype


def gate_blocks(array: np.ndarray, order: Sequence[int], axis: int = -1) -> np.ndarray:
    """Reorders the gate blocks stacked along ``axis`` (G blocks of equal size): block ``order[k]``
    becomes block k. E.g. PyTorch's LSTM rows i, f, g, o to lrpjax's i, z, f, o: ``order=(0, 2, 1, 3)``."""
    blocks = np.split(array, len(order), axis=axis)
    return np.concatenate([blocks[k] for k in order], axis=axis)


class Parts:
    """The input parts of the next layer: their names and sizes (a bidirectional layer gives two)."""

    def __init__(self, names: Sequence[str], sizes: Sequence[int]):
        self.names, self.sizes = tuple(names), tuple(sizes)

    @property
    def size(self) -> int:
        return sum(self.sizes)


def dense_params(W: np.ndarray, b: np.ndarray | None, parts: Parts, where: str) -> Params:
    """A dense layer's parameters from one weight ``W`` (D, M) over the concatenated input parts.

    With one input part the weight is ``"W"``; with several (the directions of a bidirectional layer)
    its rows are split into one ``"W_<part name>"`` (D_k, M) per part, in order (``Dense.weight_keys``),
    so the parts stay separate inputs of one linear mapping with one shared denominator.

    Raises:
        ValueError: ``W`` not (D, M) with D the parts' total size, or ``b`` not (M,).
    """
    if W.ndim != 2 or W.shape[0] != parts.size:
        raise ValueError(f"`{where}` must map the {parts.size} features of its input "
                         f"({' + '.join(map(str, parts.sizes))} from {list(parts.names)}); got a weight of "
                         f"shape {W.shape} as (inputs, outputs).")
    if b is not None and b.shape != (W.shape[1],):
        raise ValueError(f"`{where}` bias must have shape ({W.shape[1]},); got {b.shape}.")
    if len(parts.names) == 1:
        layer = {"W": W}
    else:
        bounds = np.cumsum(parts.sizes)[:-1]
        layer = {f"W_{name}": np.ascontiguousarray(w) for name, w in zip(parts.names, np.split(W, bounds, axis=0))}
    if b is not None:
        layer["b"] = b
    return layer


def check_class(obj: Any, classes: Sequence[type], methods: Sequence[str], where: str,
                expected: str | None = None) -> type:
    """The framework class among ``classes`` that ``obj`` is, refusing subclasses that compute otherwise.

    An importer reads a layer's weights and reproduces what the framework's class computes. A subclass
    that defines one of the computing ``methods`` itself (``forward`` of a torch module, ``call`` of a
    Keras layer, ...) may compute something else, so it is refused; a subclass that only adds other
    members (a name, a helper) computes what its framework class does and is accepted.

    Args:
        obj: the framework's layer or module.
        classes: the accepted framework classes (the exact classes, not their bases).
        methods: the names of the methods that compute the layer's output.
        where: how the error names ``obj``, e.g. ``"head[0]"``.
        expected: how the error names the accepted classes (default: their full names).

    Returns:
        The accepted class that ``obj`` is an instance of.

    Raises:
        TypeError: ``obj`` is none of ``classes``, or a subclass defining one of ``methods`` itself (the
            message names the class and the methods).
    """
    for cls in classes:
        if isinstance(obj, cls):
            own = type(obj)
            overridden = sorted({name for klass in own.__mro__[:own.__mro__.index(cls)]
                                 for name in methods if name in vars(klass)})
            if overridden:
                raise TypeError(f"`{where}` is a {own.__name__}, a subclass of {cls.__module__}.{cls.__name__} that "
                                f"defines {', '.join(overridden)} itself: it may compute something else than "
                                f"{cls.__name__}, which is what the import reproduces; use {cls.__name__} itself "
                                "(or a subclass that does not override how it computes).")
            return cls
    names = expected or "one of " + ", ".join(f"{c.__module__}.{c.__name__}" for c in classes)
    raise TypeError(f"`{where}` must be {names}; got {type(obj).__name__}.")


class Imported(tuple):
    """What an importer returns: ``(model, params)`` when unpacked, with those values and more as attributes.

    With a framework embedding the model takes token ids: its first layer is an
    :class:`~lrpjax.models.embedding.Embedding` holding the table under ``params["embedding"]``, and
    ``model.vector_model(params)`` gives the model over embedded vectors (T, E) to explain those directly.

    Attributes:
        model: the :class:`~lrpjax.models.Sequential`.
        params: its parameters (numpy arrays).
        table: the embedding table (V, E) (also in ``params["embedding"]["table"]``), or None.
        mask: None when the framework model computes every step of its input; else a function from a
            padded input (ids (T,) / (B, T) with an embedding, embedded vectors (T, E) / (B, T, E)
            without one) to the mask (T,) / (B, T) of valid steps that ``model.apply`` and every method
            must be given to compute what the framework computes.
    """

    model: Any
    params: Params
    table: np.ndarray | None
    mask: Any

    def __new__(cls, model: Any, params: Params, table: np.ndarray | None = None, mask: Any = None) -> Imported:
        self = super().__new__(cls, (model, params))
        self.model, self.params, self.table, self.mask = model, params, table, mask
        return self

    def __getnewargs__(self):
        return (self.model, self.params, self.table, self.mask)


def with_table(model: Any, params: Params, table: np.ndarray | None, mask: Any = None) -> Imported:
    """The import's result: with an embedding ``table``, the model over token ids (its embedding first)."""
    if table is None:
        return Imported(model, params, None, mask)
    from lrpjax.models.embedding import with_embedding

    ids_model, ids_params = with_embedding(model, params, table, name="embedding")
    return Imported(ids_model, ids_params, table, mask)
