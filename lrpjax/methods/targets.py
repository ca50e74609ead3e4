"""What is explained: a target is a linear combination ``sum(w * output)`` of the model's outputs.

A target is given as

* a class index ``c`` (w one-hot at c), for a model with output (C,);
* a tuple of indices, e.g. ``(t, c)``: the output of step t, class c, of a per-step model (T, C);
* an array ``w`` of the output's shape (a seed vector: any linear combination of outputs);
* a function of the output, ``target(output) -> scalar``, e.g. ``lambda s: s[-1, 0]``; its gradient at
  the output is ``w`` (exact for linear functions, the linearisation otherwise). A function is static
  under ``jit``: pass the same function object to reuse compiled code.

:func:`check_target` turns each form into a flat integer index, a weights array or the function;
:func:`weights` and :func:`select` evaluate it against an output.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lrpjax._types import Array
from lrpjax.methods.inputs import check_finite
from lrpjax.methods.results import is_concrete

__all__ = ["weights", "select", "check_target", "check_targets"]


def weights(target, output: Array) -> Array:
    """The weights ``w`` (output's shape) of the explained quantity ``sum(w * output)``."""
    if callable(target):
        return jax.grad(lambda o: jnp.asarray(target(o), o.dtype))(output)
    target = jnp.asarray(target)
    if jnp.issubdtype(target.dtype, jnp.integer):
        return jax.nn.one_hot(target, output.size, dtype=output.dtype).reshape(output.shape)
    return target.astype(output.dtype)


def select(target, values: Array) -> Array:
    """``sum(w * values)``; for an index, the indexed value itself (exact, no sum of zeros)."""
    if not callable(target) and jnp.issubdtype(jnp.result_type(target), jnp.integer):
        return values.reshape(-1)[target]
    return jnp.sum(weights(target, values) * values)


def check_target(target, shape: tuple[int, ...], name: str = "target"):
    """Checks one example's target against the output ``shape``; returns it as a flat index (int32), a
    weights array of ``shape``, or the function itself.

    Raises:
        TypeError: a target of another type (a string, a float scalar, ...).
        ValueError: an index out of range, a tuple of the wrong length, weights of the wrong shape.
    """
    if callable(target):
        return target
    if isinstance(target, (str, bytes)) or target is None:
        raise TypeError(f"`{name}` must be a class index, a tuple of indices, an array of weights of the "
                        f"output's shape {shape} or a function of the output; got {target!r}.")
    if isinstance(target, tuple):
        if len(target) != len(shape) or not all(isinstance(t, (int, np.integer)) and not isinstance(t, bool)
                                                 for t in target):
            raise ValueError(f"`{name}` as a tuple must hold {len(shape)} integer indices into the output of "
                             f"shape {shape}; got {target!r}.")
        if not all(0 <= t < n for t, n in zip(target, shape)):
            raise ValueError(f"`{name}` {target!r} lies outside the output of shape {shape}.")
        return np.int32(np.ravel_multi_index(target, shape))
    dtype = jnp.result_type(target)
    if jnp.ndim(target) == 0:
        if not jnp.issubdtype(dtype, jnp.integer):
            raise TypeError(f"`{name}` must be an integer class index; got dtype {dtype}.")
        if len(shape) != 1:
            raise ValueError(f"`{name}`: the model's output has shape {shape} (one output per step); give a tuple "
                             f"of indices such as (t, c), weights of that shape, or a function of the output.")
        if is_concrete(target) and not 0 <= int(target) < shape[0]:
            raise ValueError(f"`{name}` must be a class index in [0, {shape[0]}); got {int(target)}.")
        return target
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"`{name}` as an array must hold float weights of the output's shape {shape}; got dtype "
                        f"{dtype} (give one class index as a scalar).")
    if tuple(jnp.shape(target)) != shape:
        raise ValueError(f"`{name}` weights must have the output's shape {shape}; got {tuple(jnp.shape(target))}.")
    check_finite(name, target)
    return target


def check_targets(targets, B: int, shape: tuple[int, ...]):
    """Batch targets: (B,) indices (or one), (B, k) index tuples, (B, *shape) weights, or a function."""
    if callable(targets):
        return targets
    if isinstance(targets, (str, bytes)) or targets is None:
        raise TypeError(f"`targets` must be class indices (B,), index tuples (B, {len(shape)}), weights "
                        f"(B, *{shape}) or a function of the output; got {targets!r}.")
    array = targets if hasattr(targets, "dtype") else np.asarray(targets)
    dtype = jnp.result_type(array)
    if jnp.issubdtype(dtype, jnp.integer):
        if jnp.ndim(array) == 0:
            array = jnp.full((B,), array)
        if len(shape) > 1 and tuple(jnp.shape(array)) == (B, len(shape)):
            if is_concrete(array):
                a = np.asarray(array)
                bad = ~np.all((a >= 0) & (a < np.asarray(shape)), axis=1)
                if bad.any():
                    raise ValueError(f"`targets` row {int(np.flatnonzero(bad)[0])} {a[bad][0].tolist()} lies "
                                     f"outside the output of shape {shape}.")
            strides = np.asarray([int(np.prod(shape[k + 1:])) for k in range(len(shape))], np.int32)
            return jnp.asarray(array, jnp.int32) @ jnp.asarray(strides)
        if len(shape) > 1:
            raise ValueError(f"`targets`: the model's output has shape {shape}; give index tuples of shape "
                             f"(B, {len(shape)}) = ({B}, {len(shape)}), weights or a function.")
        if tuple(jnp.shape(array)) != (B,):
            raise ValueError(f"`targets` must have shape (B,) = ({B},); got {jnp.shape(array)}.")
        if is_concrete(array):
            a = np.asarray(array)
            if np.any(a < 0) or np.any(a >= shape[0]):
                bad = a[(a < 0) | (a >= shape[0])].ravel()[0]
                raise ValueError(f"`targets` must be a class index in [0, {shape[0]}); got {int(bad)}.")
        return array
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"`targets` must be integer class indices or float weights; got dtype {dtype}.")
    if tuple(jnp.shape(array)) != (B, *shape):
        raise ValueError(f"`targets` weights must have shape (B, *output shape) = {(B, *shape)}; got "
                         f"{tuple(jnp.shape(array))}.")
    check_finite("targets", array)
    return array
