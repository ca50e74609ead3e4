"""Inputs of the explanation methods: casts to the parameters' dtype, finiteness, padding.

Every entry point casts the input to the parameters' floating dtype (when their floating leaves share
one), so that relevance has the parameters' dtype: half precision (float16, bfloat16) is cast up, which
is exact; float64 is cast down to float32 parameters (the default without ``jax_enable_x64``), and a
value that the cast would turn into infinity is an error naming the input and both dtypes, as are NaN
or infinity in the input itself. Integer and boolean inputs are a ``TypeError`` naming the expected
dtype.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lrpjax._types import Array, ArrayLike
from lrpjax.methods.results import is_concrete
from lrpjax.models.sequential import floating_dtype

__all__ = ["as_floating", "cast_input", "check_finite", "floating_dtype", "pad", "per_token"]


def as_floating(name: str, x, dtype):
    """``x`` as an array (nested lists of numbers become one) of a floating dtype.

    Raises:
        TypeError: an integer or boolean array, naming ``name`` and the expected dtype.
    """
    if not hasattr(x, "dtype"):
        x = np.asarray(x, dtype=np.float32 if dtype is None else np.float64)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        expected = "" if dtype is None else f" ({np.dtype(dtype).name}, the parameters' dtype)"
        hint = (" Token ids go into a model whose first layer is an Embedding (lrpjax.models.Embedding); this "
                "one reads embedded vectors." if jnp.issubdtype(x.dtype, jnp.integer) else "")
        raise TypeError(f"`{name}` must be floating point{expected}; got dtype {x.dtype}.{hint}")
    return x


def cast_input(name: str, x, dtype, where: str = "", finite: bool = True):
    """``x`` cast to the parameters' floating ``dtype`` (unchanged when it has it, or ``dtype`` is None).

    A concrete ``x`` is checked before the cast (NaN or inf in the input itself, unless
    ``finite`` is False) and after it (finite values that the cast turned into inf: float64
    beyond float32's range, 1e5 in float16). Casting up (float16 or bfloat16 to float32, float32 to
    float64) is exact.

    Raises:
        ValueError: non-finite values in ``x``, or values that overflow ``dtype``, naming ``name``
            (followed by ``where``, e.g. " (sequence 17)").
    """
    if finite:
        check_finite(name, x, where)
    if dtype is None or x.dtype == dtype:
        return x
    if not is_concrete(x):
        return x.astype(dtype)
    host = np.asarray(x)
    with np.errstate(over="ignore", invalid="ignore"):
        cast = host.astype(dtype)
    overflow = ~np.isfinite(cast) & np.isfinite(host)
    if overflow.any():
        raise ValueError(f"`{name}`{where} has values up to {np.max(np.abs(host[overflow])):.3g} that overflow "
                         f"{np.dtype(dtype).name}, the parameters' dtype (`{name}` is {host.dtype.name}); "
                         "scale the input, or give parameters of a wider dtype.")
    return cast


def check_finite(name: str, value, where: str = "") -> None:
    """Refuses NaN or infinity in a concrete floating array (or pytree of them) ``value``; traced values are
    not checked.

    Raises:
        ValueError: naming ``name``, the leaf's path and ``where`` (e.g. " (sequence 17)").
    """
    if not is_concrete(value):
        return
    for path, leaf in jax.tree_util.tree_leaves_with_path(value):
        array = np.asarray(leaf)
        if np.issubdtype(array.dtype, np.inexact) and not np.all(np.isfinite(array)):
            raise ValueError(f"`{name}{jax.tree_util.keystr(path)}`{where} contains non-finite values (NaN or inf).")


def per_token(relevance: ArrayLike, input_ndim: int = 2) -> Array:
    """Word-level relevance: sums (..., T, E) over E; position-wise (..., T) passes unchanged.

    Args:
        relevance: output of a method.
        input_ndim: ndim of the explained (embedded) input: 2 for one sequence (T, E), 3 for a batch
            (B, T, E), 4 for the (T_out, C, T, E) of ``method.all`` on a per-step model. For a model that
            takes token ids, the embedded vectors' ndim (one more than the ids').

    Raises:
        ValueError: ``relevance`` has neither ``input_ndim`` axes (summed over E) nor ``input_ndim - 1``
            (position-wise, unchanged), so there is no embedding axis to sum over.
    """
    relevance = jnp.asarray(relevance)
    if not isinstance(input_ndim, int) or isinstance(input_ndim, bool) or input_ndim < 1:
        raise ValueError(f"`input_ndim` must be a positive int; got {input_ndim!r}.")
    if relevance.ndim == input_ndim:
        return relevance.sum(-1)
    if relevance.ndim == input_ndim - 1:
        return relevance
    raise ValueError(f"`relevance` has shape {tuple(relevance.shape)} ({relevance.ndim} axes); per_token with "
                     f"input_ndim = {input_ndim} sums relevance of {input_ndim} axes (..., T, E) over E, or passes "
                     f"position-wise relevance of {input_ndim - 1} axes unchanged.")


def pad(sequences: Sequence[ArrayLike], length: int | None = None) -> tuple[Array, Array]:
    """Pads sequences (T_i, E) to a batch ``X`` (B, T, E) with ``mask`` (B, T) bool.

    Raises:
        ValueError: no sequences, an empty sequence, mixed E, or a sequence longer than ``length``.
    """
    if len(sequences) == 0:
        raise ValueError("`sequences` is empty; at least one sequence is needed.")
    arrays = [np.asarray(s) for s in sequences]
    for i, a in enumerate(arrays):
        if a.ndim != 2 or a.shape[0] == 0:
            raise ValueError(f"`sequences[{i}]` must have shape (T, E) with T >= 1; got {a.shape}.")
        if a.shape[1] != arrays[0].shape[1]:
            raise ValueError(f"`sequences[{i}]` has E = {a.shape[1]}; the first has E = {arrays[0].shape[1]}.")
    T = max(a.shape[0] for a in arrays) if length is None else length
    X = np.zeros((len(arrays), T, arrays[0].shape[1]), arrays[0].dtype)
    mask = np.zeros((len(arrays), T), bool)
    for i, a in enumerate(arrays):
        if a.shape[0] > T:
            raise ValueError(f"`sequences[{i}]` has {a.shape[0]} steps, more than `length` = {T}.")
        X[i, :a.shape[0]] = a
        mask[i, :a.shape[0]] = True
    return jnp.asarray(X), jnp.asarray(mask)
