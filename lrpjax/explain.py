"""Explanation methods: LRP, Gradient, Sensitivity, Gradient x Input, Occlusion, random baseline.

Every method is a :class:`Method`: a small hashable value naming a per-example relevance function,
the model's ``apply`` and the method's options. Calling it explains one sequence; :meth:`Method.batch`
explains a padded batch in one jit-compiled, vmapped call; :meth:`Method.tokens` sums relevance over
the embedding dimension (word-level relevance). Inputs are checked in Python first (shapes always;
values such as finiteness and the target's range when they are concrete, i.e. outside ``jit``).

LRP and the gradient share one mechanism: ``jax.vjp`` of the model seeded at the target class. Under
a rule set the cotangent is relevance and the seed is the target's score (Sec. 11.2.2); with
``rules=None`` it is the gradient and the seed is 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lrpjax._types import Array, ArrayLike, Params
from lrpjax.models.lstm import check_inputs
from lrpjax.rules import RuleSet, preset

__all__ = ["Method", "Explanation", "lrp", "gradient", "sensitivity", "gradient_x_input",
           "occlusion", "random_baseline", "pad", "per_token"]


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

    def __call__(self, params: Params, x: ArrayLike, target: ArrayLike, *,
                 mask: ArrayLike | None = None) -> Array:
        """Relevance for one sequence ``x`` (T, E) and class ``target``: (T, E), or (T,) for
        position-wise methods (occlusion, random, CD)."""
        x, mask = _check_example(self, params, x, target, mask)
        return _single(self, params, x, target, mask)

    def batch(self, params: Params, X: ArrayLike, targets: ArrayLike, *,
              mask: ArrayLike | None = None) -> Array:
        """Relevance for a padded batch ``X`` (B, T, E), ``targets`` (B,), ``mask`` (B, T) bool.

        Returns:
            (B, T, E), or (B, T) for position-wise methods; padded steps get 0.
        """
        X, targets, mask = _check_batch(self, params, X, targets, mask)
        return _batched(self, params, X, targets, mask)

    def tokens(self, params: Params, x: ArrayLike, target: ArrayLike, *,
               mask: ArrayLike | None = None) -> Array:
        """Word-level relevance (T,): the sum over the embedding dimension (Sec. 11.5.1)."""
        return per_token(self(params, x, target, mask=mask), jnp.ndim(x))

    def full(self, params: Params, x: ArrayLike, target: ArrayLike, *,
             mask: ArrayLike | None = None) -> Explanation:
        """LRP with the relevance at every state, the biases and the conservation residual.

        Needs a model of :mod:`lrpjax.models` (``apply`` bound to an object with ``zero_taps``).
        """
        if self.fn is not _lrp_fn:
            raise TypeError(f"full() is defined for LRP methods; {self.name!r} is not one.")
        model = getattr(self.apply, "__self__", None)
        if not hasattr(model, "zero_taps"):
            raise TypeError("full() needs `apply` to be the method of a model with zero_taps(params, x) "
                            "(the models of lrpjax.models).")
        x, mask = _check_example(self, params, x, target, mask)
        return _full(self, params, x, target, mask)


class Explanation(NamedTuple):
    """Everything an LRP pass computes for one example.

    Attributes:
        relevance: relevance of the inputs, (T, E).
        scores: the model's output, (C,).
        target_score: the relevance put at the output (the target's score).
        params: relevance absorbed by each parameter (biases; weights get 0), a pytree like params.
        initial: relevance at the initial states, ``{layer: {"y0", "c0"}}``.
        states: relevance at the state after each step, ``{layer: {"y", "c"}}`` each (T, H).
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

def _seeded_vjp(apply, rules, params, x, target, mask, seed_with_score: bool):
    scores, pullback = jax.vjp(lambda x_: apply(params, x_, rules, mask=mask), x)
    onehot = jax.nn.one_hot(target, scores.shape[-1], dtype=scores.dtype)
    (r_x,) = pullback(onehot * scores if seed_with_score else onehot)
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
        return jax.nn.softmax(scores)[target] if m.option == "p" else scores[target]

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


@partial(jax.jit, static_argnums=(0,))
def _batched(m: Method, params, X, targets, mask):
    index = jnp.arange(X.shape[0])
    mask_axis = None if mask is None else 0   # models without a mask (the MLP) get None
    return jax.vmap(lambda x, t, k, i: m.fn(m, params, x, t, k, i), in_axes=(0, 0, mask_axis, 0))(
        X, targets, mask, index)


@partial(jax.jit, static_argnums=(0,))
def _full(m: Method, params, x, target, mask):
    model = m.apply.__self__
    taps = model.zero_taps(params, x)
    scores, pullback = jax.vjp(lambda p, x_, t: m.apply(p, x_, m.rules, mask=mask, taps=t), params, x, taps)
    seed = jax.nn.one_hot(target, scores.shape[-1], dtype=scores.dtype) * scores
    r_params, r_x, r_taps = pullback(seed)
    absorbed = sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(r_params))
    initial = sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(r_taps["initial"]))
    target_score = scores[target]
    residual = target_score - jnp.sum(r_x) - absorbed - initial
    return Explanation(r_x, scores, target_score, r_params, r_taps["initial"], r_taps["states"], residual)


# --- checks ----------------------------------------------------------------------------------------

def _is_concrete(*values) -> bool:
    return not any(isinstance(v, jax.core.Tracer) for v in jax.tree_util.tree_leaves(values))


def _n_classes(apply, params, x, mask) -> int:
    model = getattr(apply, "__self__", None)
    if hasattr(model, "output_size"):
        return model.output_size(params)
    return jax.eval_shape(lambda p, x_: apply(p, x_, None, mask=mask), params, x).shape[-1]


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


def _check_target(target, n_classes: int, name: str = "target") -> None:
    array = np.asarray(target) if _is_concrete(target) else None
    dtype = jnp.result_type(target)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(f"`{name}` must be an integer class index; got dtype {dtype}.")
    if array is not None and (np.any(array < 0) or np.any(array >= n_classes)):
        bad = array[(array < 0) | (array >= n_classes)].ravel()[0]
        raise ValueError(f"`{name}` must be a class index in [0, {n_classes}); got {int(bad)}.")


def _takes_mask(apply) -> bool:
    """Whether the model takes a padding mask: sequence models do, a model with ``masked = False``
    (the MLP) does not."""
    return getattr(getattr(apply, "__self__", None), "masked", True)


def _check_example(m: Method, params, x, target, mask):
    if not hasattr(x, "dtype"):
        x = np.asarray(x, dtype=np.float32)
    _check_inputs(m.apply, x, mask)
    if jnp.ndim(target) != 0:
        raise ValueError(f"`target` must be a scalar class index; got shape {jnp.shape(target)}.")
    _check_target(target, _n_classes(m.apply, params, x, mask))
    _check_finite("x", x)
    _check_finite("params", params)
    if mask is not None and _is_concrete(mask) and not np.any(np.asarray(mask)):
        raise ValueError("`mask` marks no valid step: the sequence is empty.")
    return x, mask


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
    mask_row = None if mask is None else mask[0]
    if jnp.ndim(targets) == 0:
        targets = jnp.full((B,), targets)
    if tuple(jnp.shape(targets)) != (B,):
        raise ValueError(f"`targets` must have shape (B,) = ({B},); got {jnp.shape(targets)}.")
    _check_inputs(m.apply, X[0], mask_row)
    _check_target(targets, _n_classes(m.apply, params, X[0], mask_row), "targets")
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
    """
    if isinstance(rules, str):
        rules = preset(rules)
    if not isinstance(rules, RuleSet):
        raise TypeError(f"`rules` must be a RuleSet or a preset name; got {type(rules).__name__}.")
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

