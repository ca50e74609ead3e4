"""Explanation methods: LRP, Gradient, Sensitivity, Gradient x Input, Occlusion, random baseline.

Every method is a :class:`Method`: a small hashable value naming a per-example relevance function,
the model's ``apply`` and the method's options. Calling it explains one sequence; :meth:`Method.batch`
explains a padded batch in one jit-compiled, vmapped call; :meth:`Method.tokens` sums relevance over
the embedding dimension (word-level relevance). Inputs are checked in Python first (shapes always;
values such as finiteness and the target's range when they are concrete, i.e. outside ``jit``).

LRP and the gradient share one mechanism: ``jax.vjp`` of the model seeded at the target class. Under
a rule set the cotangent is relevance and the seed is the target's score (Sec. 11.2.2); with
``rules=None`` it is the gradient and the seed is 1.

What is explained (``target``) is a linear combination ``sum(w * output)`` of the model's outputs:

* a class index ``c`` (w one-hot at c), for a model with output (C,);
* a tuple of indices, e.g. ``(t, c)``: the output of step t, class c, of a per-step model (T, C);
* an array ``w`` of the output's shape (a seed vector: any linear combination of outputs);
* a function of the output, ``target(output) -> scalar``, e.g. ``lambda s: s[-1, 0]`` or
  ``lambda s: s[:, 2].sum()``; its gradient at the output is ``w`` (exact for linear functions, the
  linearisation otherwise). A function is static under ``jit``: pass the same function object to
  reuse compiled code.

The gradient is seeded with ``w``, LRP with ``w * output`` (for a one-hot ``w`` the target's score),
occlusion compares ``sum(w * output)`` (of scores, or of softmax probabilities over the last axis)
with and without the position.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lrpjax._types import Array, ArrayLike, Params
from lrpjax.models.sequential import check_inputs, check_prefix, network_of
from lrpjax.rules import RuleSet, preset

__all__ = ["Method", "Explanation", "lrp", "gradient", "sensitivity", "gradient_x_input",
           "occlusion", "random_baseline", "pad", "per_token", "target_weights"]


@dataclass(frozen=True)
class Method:
    """An explanation method bound to a model.

    Attributes:
        name: a short label (``"lrp-all"``, ``"gradient"``, ...).
        fn: ``fn(method, params, x, target, mask, index) -> relevance`` for one example; a
            module-level function, so that equal methods share compiled code.
        apply: the model, ``apply(params, x, rules=None, *, mask=None)``.
        rules: the rule set (LRP only).
        option: a method option (occlusion ``"f"`` or ``"p"``).
        seed: random seed (random baseline).
    """

    name: str
    fn: Callable
    apply: Callable
    rules: RuleSet | None = None
    option: str = ""
    seed: int = 0

    def __call__(self, params: Params, x: ArrayLike, target, *, mask: ArrayLike | None = None) -> Array:
        """Relevance for one sequence ``x`` (T, E) (or one vector (D,)) and ``target`` (module
        docstring): (T, E), or (T,) for position-wise methods (occlusion, random, CD)."""
        x, mask, target = _check_example(self, params, x, target, mask)
        if callable(target):
            return _single_function(self, target, params, x, mask)
        return _single(self, params, x, target, mask)

    def batch(self, params: Params, X: ArrayLike, targets, *, mask: ArrayLike | None = None) -> Array:
        """Relevance for a padded batch ``X`` (B, T, E), ``mask`` (B, T) bool.

        ``targets``: class indices (B,) (or one for all), index tuples (B, k) for multi-axis outputs,
        weights (B, *output shape), or one function of the output shared by the batch.

        Returns:
            (B, T, E), or (B, T) for position-wise methods; padded steps get 0.
        """
        X, targets, mask = _check_batch(self, params, X, targets, mask)
        if callable(targets):
            return _batched_function(self, targets, params, X, mask)
        return _batched(self, params, X, targets, mask)

    def tokens(self, params: Params, x: ArrayLike, target, *, mask: ArrayLike | None = None) -> Array:
        """Word-level relevance (T,): the sum over the embedding dimension (Sec. 11.5.1)."""
        return per_token(self(params, x, target, mask=mask), jnp.ndim(x))

    def all(self, params: Params, x: ArrayLike, *, mask: ArrayLike | None = None) -> Array:
        """Relevance of every output at once, in one vmapped call: (*output shape, *relevance shape).

        For a classifier (C, T, E): one explanation per class; for a per-step model (T_out, C, T, E),
        whose word-level sums (``per_token(..., 4)``) form the (T_out, C, T) relevance matrix. Gradient
        and LRP share one forward pass (the pullbacks are vmapped).
        """
        x, mask, _ = _check_example(self, params, x, None, mask)
        return _all(self, params, x, mask)

    def full(self, params: Params, x: ArrayLike, target, *, mask: ArrayLike | None = None) -> Explanation:
        """LRP with the relevance at every state, the biases and the conservation residual.

        Needs a model of :mod:`lrpjax.models` (``apply`` bound to an object with ``zero_taps``).
        """
        if self.fn is not _lrp_fn:
            raise TypeError(f"full() is defined for LRP methods; {self.name!r} is not one.")
        model = getattr(self.apply, "__self__", None)
        if not hasattr(model, "zero_taps"):
            raise TypeError("full() needs `apply` to be the method of a model with zero_taps(params, x) "
                            "(the models of lrpjax.models).")
        x, mask, target = _check_example(self, params, x, target, mask)
        if callable(target):
            return _full_function(self, target, params, x, mask)
        return _full(self, params, x, target, mask)


class Explanation(NamedTuple):
    """Everything an LRP pass computes for one example.

    Attributes:
        relevance: relevance of the inputs, (T, E).
        scores: the model's output, (C,) or (T, C).
        target_score: the relevance put at the output: the target's score (``sum(w * output)``).
        params: relevance absorbed by each parameter (biases; weights get 0), a pytree like params.
        initial: relevance at the initial states, ``{layer: {"y0", "c0"}}`` (``{"h0"}`` for a GRU).
        states: relevance at the state after each step, ``{layer: {"y", "c"}}`` each (T, H)
            (``{"h"}`` for a GRU), and at the input of every dense and pooling layer, ``{name: (D,)}``
            or (T, D).
        residual: ``target_score - sum(relevance) - sum(params) - sum(initial)``: what stabilisers
            absorbed (0 up to rounding with ``share=True``, or with ``eps = 0`` and LRP-all/-half).
    """

    relevance: Array
    scores: Array
    target_score: Array
    params: Params
    initial: Params
    states: Params
    residual: Array


# --- per-example relevance functions ---------------------------------------------------------------
#
# ``target`` below is a flat integer index into the output, a weights array of the output's shape, or
# a function of the output (static): ``_weights`` turns each into the weights ``w`` of sum(w * output).

def _weights(target, output: Array) -> Array:
    """The weights ``w`` (output's shape) of the explained quantity ``sum(w * output)``."""
    if callable(target):
        return jax.grad(lambda o: jnp.asarray(target(o), o.dtype))(output)
    target = jnp.asarray(target)
    if jnp.issubdtype(target.dtype, jnp.integer):
        return jax.nn.one_hot(target, output.size, dtype=output.dtype).reshape(output.shape)
    return target.astype(output.dtype)


def _select(target, values: Array) -> Array:
    """``sum(w * values)``; for an index, the indexed value itself (exact, no sum of zeros)."""
    if not callable(target) and jnp.issubdtype(jnp.result_type(target), jnp.integer):
        return values.reshape(-1)[target]
    return jnp.sum(_weights(target, values) * values)


def _seeded_vjp(apply, rules, params, x, target, mask, seed_with_score: bool):
    scores, pullback = jax.vjp(lambda x_: apply(params, x_, rules, mask=mask), x)
    w = _weights(target, scores)
    (r_x,) = pullback(w * scores if seed_with_score else w)
    return r_x


def _lrp_fn(m: Method, params, x, target, mask, index):
    return _seeded_vjp(m.apply, m.rules, params, x, target, mask, True)


def _gradient_fn(m: Method, params, x, target, mask, index):
    return _seeded_vjp(m.apply, None, params, x, target, mask, False)


def _sensitivity_fn(m: Method, params, x, target, mask, index):
    return _gradient_fn(m, params, x, target, mask, index) ** 2


def _gradient_x_input_fn(m: Method, params, x, target, mask, index):
    return _gradient_fn(m, params, x, target, mask, index) * x


def _occlusion_fn(m: Method, params, x, target, mask, index):
    def output(x_):
        scores = m.apply(params, x_, None, mask=mask)
        return _select(target, jax.nn.softmax(scores, axis=-1) if m.option == "p" else scores)

    occluded = jax.vmap(lambda t: output(x.at[t].set(0)))(jnp.arange(x.shape[0]))
    relevance = output(x) - occluded
    return relevance if mask is None else jnp.where(mask, relevance, 0)


def _random_fn(m: Method, params, x, target, mask, index):
    key = jax.random.fold_in(jax.random.PRNGKey(m.seed), index)
    relevance = jax.random.normal(key, (x.shape[0],), x.dtype)
    return relevance if mask is None else jnp.where(mask, relevance, 0)


# --- compiled drivers ------------------------------------------------------------------------------

@partial(jax.jit, static_argnums=(0,))
def _single(m: Method, params, x, target, mask):
    return m.fn(m, params, x, target, mask, 0)


@partial(jax.jit, static_argnums=(0, 1))
def _single_function(m: Method, target: Callable, params, x, mask):
    return m.fn(m, params, x, target, mask, 0)


@partial(jax.jit, static_argnums=(0,))
def _batched(m: Method, params, X, targets, mask):
    index = jnp.arange(X.shape[0])
    mask_axis = None if mask is None else 0   # models without a mask (the MLP) get None
    return jax.vmap(lambda x, t, k, i: m.fn(m, params, x, t, k, i), in_axes=(0, 0, mask_axis, 0))(
        X, targets, mask, index)


@partial(jax.jit, static_argnums=(0, 1))
def _batched_function(m: Method, target: Callable, params, X, mask):
    index = jnp.arange(X.shape[0])
    mask_axis = None if mask is None else 0
    return jax.vmap(lambda x, k, i: m.fn(m, params, x, target, k, i), in_axes=(0, mask_axis, 0))(X, mask, index)


@partial(jax.jit, static_argnums=(0,))
def _all(m: Method, params, x, mask):
    scores = jax.eval_shape(lambda: m.apply(params, x, None, mask=mask))
    size = int(np.prod(scores.shape))
    if m.fn in (_lrp_fn, _gradient_fn, _sensitivity_fn, _gradient_x_input_fn):
        rules = m.rules if m.fn is _lrp_fn else None
        out, pullback = jax.vjp(lambda x_: m.apply(params, x_, rules, mask=mask), x)
        eye = jnp.eye(size, dtype=out.dtype).reshape((size,) + out.shape)
        seeds = eye * out[None] if m.fn is _lrp_fn else eye
        relevance = jax.vmap(lambda seed: pullback(seed)[0])(seeds)
        if m.fn is _sensitivity_fn:
            relevance = relevance ** 2
        elif m.fn is _gradient_x_input_fn:
            relevance = relevance * x[None]
    else:
        relevance = jax.vmap(lambda t: m.fn(m, params, x, t, mask, 0))(jnp.arange(size))
    return relevance.reshape(scores.shape + relevance.shape[1:])


def _full_impl(m: Method, params, x, target, mask):
    model = m.apply.__self__
    taps = model.zero_taps(params, x)
    scores, pullback = jax.vjp(lambda p, x_, t: m.apply(p, x_, m.rules, mask=mask, taps=t), params, x, taps)
    w = _weights(target, scores)
    r_params, r_x, r_taps = pullback(w * scores)
    absorbed = sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(r_params))
    initial = sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(r_taps["initial"]))
    target_score = _select(target, scores)
    residual = target_score - jnp.sum(r_x) - absorbed - initial
    return Explanation(r_x, scores, target_score, r_params, r_taps["initial"], r_taps["states"], residual)


_full = jax.jit(_full_impl, static_argnums=(0,))
_full_function = jax.jit(lambda m, target, params, x, mask: _full_impl(m, params, x, target, mask),
                         static_argnums=(0, 1))


# --- checks ----------------------------------------------------------------------------------------

def _is_concrete(*values) -> bool:
    return not any(isinstance(v, jax.core.Tracer) for v in jax.tree_util.tree_leaves(values))


def _output_shape(apply, params, x, mask) -> tuple[int, ...]:
    """The shape of the model's output for input ``x`` (checks the parameters when the model can)."""
    model = getattr(apply, "__self__", None)
    network = network_of(model)
    if network is not None:
        return network.output_shape(params, jnp.shape(x)[0] if network.sequence_input else None)
    if hasattr(model, "output_size"):
        return (model.output_size(params),)
    return tuple(jax.eval_shape(lambda p, x_: apply(p, x_, None, mask=mask), params, x).shape)


def _check_inputs(apply, x, mask) -> None:
    """The model's own input checks when it has them (``model.check_inputs``), else sequence checks."""
    model = getattr(apply, "__self__", None)
    (model.check_inputs if hasattr(model, "check_inputs") else check_inputs)(x, mask)


def _check_finite(name: str, value) -> None:
    if not _is_concrete(value):
        return
    for path, leaf in jax.tree_util.tree_leaves_with_path(value):
        array = np.asarray(leaf)
        if np.issubdtype(array.dtype, np.inexact) and not np.all(np.isfinite(array)):
            where = jax.tree_util.keystr(path)
            raise ValueError(f"`{name}{where}` contains non-finite values (NaN or inf).")


def _check_target(target, shape: tuple[int, ...], name: str = "target"):
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
        if _is_concrete(target) and not 0 <= int(target) < shape[0]:
            raise ValueError(f"`{name}` must be a class index in [0, {shape[0]}); got {int(target)}.")
        return target
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"`{name}` as an array must hold float weights of the output's shape {shape}; got dtype "
                        f"{dtype} (give one class index as a scalar).")
    if tuple(jnp.shape(target)) != shape:
        raise ValueError(f"`{name}` weights must have the output's shape {shape}; got {tuple(jnp.shape(target))}.")
    _check_finite(name, target)
    return target


def _check_targets(targets, B: int, shape: tuple[int, ...]):
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
            if _is_concrete(array):
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
        if _is_concrete(array):
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
    _check_finite("targets", array)
    return array


def _takes_mask(apply) -> bool:
    """Whether the model takes a padding mask: sequence models do, a model with ``masked = False``
    (the MLP) does not."""
    return getattr(getattr(apply, "__self__", None), "masked", True)


def _check_example(m: Method, params, x, target, mask):
    """Checks one example; ``target=None`` skips the target (for :meth:`Method.all`)."""
    if not hasattr(x, "dtype"):
        x = np.asarray(x, dtype=np.float32)
    _check_inputs(m.apply, x, mask)
    shape = _output_shape(m.apply, params, x, mask)
    target = None if target is None else _check_target(target, shape)
    _check_finite("x", x)
    _check_finite("params", params)
    if mask is not None and _is_concrete(mask) and not np.any(np.asarray(mask)):
        raise ValueError("`mask` marks no valid step: the sequence is empty.")
    return x, mask, target


def _check_batch(m: Method, params, X, targets, mask):
    if not hasattr(X, "dtype"):
        X = np.asarray(X, dtype=np.float32)
    shape = jnp.shape(X)
    if not _takes_mask(m.apply):
        if len(shape) < 2 or shape[0] == 0:
            raise ValueError(f"`X` must be a batch of shape (B, ...) with B >= 1; got {shape}.")
        if mask is not None:
            raise ValueError("`mask` must be None: this model takes no padding mask.")
        B = shape[0]
    else:
        if len(shape) != 3 or shape[0] == 0 or shape[1] == 0:
            raise ValueError(f"`X` must be a padded batch of shape (B, T, E) with B, T >= 1; got {shape}.")
        B, T = shape[:2]
        if mask is None:
            mask = np.ones((B, T), bool)
        if tuple(jnp.shape(mask)) != (B, T):
            raise ValueError(f"`mask` must have shape (B, T) = ({B}, {T}); got {jnp.shape(mask)}.")
        check_prefix(mask)
    mask_row = None if mask is None else mask[0]
    _check_inputs(m.apply, X[0], mask_row)
    targets = _check_targets(targets, B, _output_shape(m.apply, params, X[0], mask_row))
    _check_finite("X", X)
    _check_finite("params", params)
    if mask is not None and _is_concrete(mask):
        empty = np.flatnonzero(~np.asarray(mask).any(axis=1))
        if empty.size:
            raise ValueError(f"`mask` row {int(empty[0])} marks no valid step: an empty sequence.")
    return X, targets, mask


# --- public constructors ---------------------------------------------------------------------------

def lrp(apply: Callable, rules: RuleSet | str = "lrp-all") -> Method:
    """Layer-wise Relevance Propagation through ``apply`` with a rule set.

    ``lrp(apply, rules)(params, x, target)`` returns the relevance of ``x`` (T, E); relevance starts
    as the target's score (other classes 0) and flows back by the rules of each elementary computation.

    Args:
        apply: a model, ``apply(params, x, rules=None, *, mask=None)``.
        rules: a :class:`RuleSet` or a preset name (``"lrp-all"``, ...; eps 0).

    Raises:
        TypeError: ``rules`` not a rule set or a preset name.
        ValueError: an unknown preset, or an override (``rules.composite(by_layer=...)``) naming a
            layer the model (a model of :mod:`lrpjax.models`) does not have; the message lists its layers.
    """
    if isinstance(rules, str):
        rules = preset(rules)
    if not isinstance(rules, RuleSet):
        raise TypeError(f"`rules` must be a RuleSet or a preset name; got {type(rules).__name__}.")
    network = network_of(getattr(apply, "__self__", None))
    if network is not None:
        network.check_rules(rules)
    return Method("lrp", _lrp_fn, apply, rules)


def gradient(apply: Callable) -> Method:
    """``d score[target] / d x`` (T, E) through the plain model (``rules=None``)."""
    return Method("gradient", _gradient_fn, apply)


def sensitivity(apply: Callable) -> Method:
    """Sensitivity Analysis: the squared gradient (T, E); per token its squared L2 norm."""
    return Method("sensitivity", _sensitivity_fn, apply)


def gradient_x_input(apply: Callable) -> Method:
    """Gradient x Input: ``x * d score[target] / d x`` (T, E)."""
    return Method("gradient_x_input", _gradient_x_input_fn, apply)


def occlusion(apply: Callable, mode: str = "f") -> Method:
    """Occlusion (Sec. 11.5.1): one relevance per position (T,), all positions in one vmapped call.

    ``R_t = f(x)[target] - f(x with x_t = 0)[target]`` (``mode="f"``, f-diff on scores) or the same on
    softmax probabilities (``mode="p"``, P-diff).
    """
    if mode not in ("f", "p"):
        raise ValueError(f"`mode` of occlusion must be 'f' (score difference) or 'p' (probability "
                         f"difference); got {mode!r}.")
    return Method(f"occlusion-{mode}", _occlusion_fn, apply, option=mode)


def random_baseline(apply: Callable, seed: int = 0) -> Method:
    """Seeded random relevance (T,), standard normal; a different draw per example of a batch."""
    if not isinstance(seed, int):
        raise TypeError(f"`seed` must be an int; got {type(seed).__name__}.")
    return Method("random", _random_fn, apply, seed=seed)


# --- helpers ---------------------------------------------------------------------------------------

def target_weights(target, output: ArrayLike) -> Array:
    """The weights ``w`` (output's shape) of the quantity ``sum(w * output)`` that ``target`` explains.

    Args:
        target: a flat index (an int), weights of the output's shape, or a function of the output.
        output: the model's output, e.g. (C,) or (T, C).
    """
    return _weights(target, jnp.asarray(output))


def per_token(relevance: ArrayLike, input_ndim: int = 2) -> Array:
    """Word-level relevance: sums (..., T, E) over E; position-wise (..., T) passes unchanged.

    Args:
        relevance: output of a method.
        input_ndim: ndim of the explained input (2 for one sequence, 3 for a batch).
    """
    relevance = jnp.asarray(relevance)
    return relevance.sum(-1) if relevance.ndim == input_ndim else relevance


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

