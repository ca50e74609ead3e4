"""What every explanation method is: a :class:`Method` value, and the protocol the drivers call.

A method is a frozen, hashable dataclass holding the model (its ``apply``) and every option that changes
its results (rules, steps, baselines, seeds, modes); equal values share compiled code, and a run's
identity (:meth:`Method.identity`, which resumed streams compare) is derived from the value itself, so a
new option can never be left out of it. Each family is one module of :mod:`lrpjax.methods`: LRP
(:mod:`~lrpjax.methods.lrp`), the gradient, Sensitivity and Gradient x Input
(:mod:`~lrpjax.methods.gradient`), Integrated Gradients, SmoothGrad, occlusion, the random baseline and
Contextual Decomposition.

The protocol (all that the drivers, the trainer's explanation penalty, streams, the command line and
the report know of a method):

* :meth:`Method.relevance` ``(params, x, target, mask, index) -> relevance`` for one example;
* :meth:`Method.prepare` ``(params, x, mask, index) -> (scores, pull)`` with ``pull(target) ->
  relevance``: the forward pass once, then any number of targets (the default calls ``relevance``;
  :class:`Pullback` methods run one ``jax.vjp`` and pull each seed back);
* :meth:`Method.prepare_full`, for methods with a richer result (LRP's :class:`Explanation`, IG's
  :class:`Attribution`), and :attr:`Method.has_residual`;
* :attr:`Method.per_position` (relevance (T,) per position rather than (T, E)) and :attr:`Method.name`.

Calling a method explains one sequence; :meth:`Method.batch` a padded batch in one jit-compiled,
vmapped call; :meth:`Method.all` every output at once; :meth:`Method.every_step` one class at every
output step of a per-step model (an encoder-decoder's target steps); :meth:`Method.tokens` sums relevance
over the embedding dimension (word-level relevance); :meth:`Method.full` returns the richer result. Every one of
them runs the per-example program of :mod:`lrpjax.methods.program`, as the dataset drivers do. Inputs
are checked in Python first (shapes always; values such as finiteness and the target's range when they
are concrete, i.e. outside ``jit``); see :mod:`lrpjax.methods.inputs` for the casts and
:mod:`lrpjax.methods.targets` for what a target may be.

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
with and without the position. Integrated Gradients and SmoothGrad average the gradient of
``sum(w * output)`` (``w`` fixed at the explained input) over points near ``x``.

Differentiating explanations
----------------------------

An explanation is an ordinary JAX function of the parameters and the input: ``jax.grad``, ``jax.jvp``,
``jax.jacfwd``/``jax.jacrev`` and ``jax.hessian`` of any functional of ``method.relevance(params, x,
target, mask, index)`` (or of ``method(...)``, ``method.batch(...)``, ``method.full(...)``) give its true
derivatives, for every method here and :func:`lrpjax.methods.decomposition.cd`. The relevance rules are the backward
passes of the ``custom_vjp`` ops, but their forward passes compute the primal with plain ``jnp``
code and the rules themselves are ``jnp`` code, so an outer derivative differentiates the forward
pass and the rule as written (it never follows a relevance rule); gates under LRP-all pass through
``ops.no_relevance`` (derivative one, relevance zero). Explanation-guided training
(:func:`lrpjax.train.explanation_penalty`) relies on this.

The explanations are smooth functions of ``params`` and ``x`` except where a rule, or the model,
switches branch. There JAX returns the derivative of one branch, never NaN:

* the stabiliser ``z + eps * sign(z)`` (Epsilon, Gamma, the accumulation rule, LRP-prop's product
  rule): at ``z = 0`` the quotient ``r / (z + eps sign(z))`` jumps from ``-r / eps`` to ``+r / eps``; the
  value and the derivative there are those of the ``z >= 0`` side (``sign(0) = +1``), and ``sign``
  itself contributes 0;
* :func:`lrpjax.core.rules.safe_divide` (every rule's division): where a denominator is exactly 0 the
  share is 0 and so is its derivative, with respect to numerator and denominator;
* ``|.|`` (LRP-abs): JAX's derivative of ``abs`` at 0 is +1;
* ``max(., 0)``, ``min(., 0)`` (z+, alpha-beta, zB, the positive weights of Gamma): at a tie JAX
  gives each side half the derivative (0.5); ``relu`` in a model's dense layer: 0 at 0;
* ``argmax`` (max pooling in a model and in CD; ``targets="pred"`` and the predicted class in
  :mod:`lrpjax.datasets`): the selection is piecewise constant; the derivative follows the selected
  element (the first maximal one at a tie) and ignores the jump;
* SmoothGrad with ``noise="relative"``: the noise scale is ``sigma * (max(x) - min(x))`` over the valid
  steps, differentiated like ``max``/``min`` above; the noise draw itself is fixed by the seed;
* occlusion and the random baseline have no branch; the random baseline does not depend on
  ``params`` or ``x`` (derivative 0).

For a random input and random parameters none of these points is hit with probability one; finite
differences agree with ``jax.grad`` and ``jax.jvp`` to about 1e-8 relative in float64
(``tests/methods/test_differentiable.py``). What has no forward mode is the *model* under a rule set,
``apply(params, x, rules)``: its ops are ``custom_vjp`` functions, so ``jax.jvp`` of it raises JAX's
``TypeError: can't apply forward-mode autodiff (jvp) to a custom_vjp function`` (its reverse mode is
the relevance itself); an explanation built from it has all derivatives, ``jax.hessian`` included.
The dataset driver :func:`lrpjax.datasets.explain_dataset` returns NumPy arrays and is not for
differentiation; differentiate ``method.batch`` or ``method.relevance`` under ``jax.vmap`` instead.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import zlib
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from lrpjax._types import Array, ArrayLike, Params
from lrpjax.core.rules import RuleSet
from lrpjax.methods.inputs import as_floating, cast_input, check_finite, floating_dtype, per_token
from lrpjax.methods.program import Program, explain_chunk, explain_example, ids_network, on_vectors
from lrpjax.methods.results import is_concrete, warn_if_unhealthy
from lrpjax.methods.targets import check_target, check_targets, weights
from lrpjax.models.embedding import check_ids
from lrpjax.models.sequential import check_inputs, check_prefix, network_of

__all__ = ["Method", "Pullback", "model_of", "describe"]


def model_of(apply: Callable) -> Any:
    """The model object behind ``apply``: the object whose bound method it is (``bilstm.apply`` is
    ``bilstm.model.apply``), or None for a plain function. The one place that unwraps a bound ``apply``."""
    return getattr(apply, "__self__", None)


def describe(value: Any) -> Any:
    """A stable JSON description of a method's field (no object addresses), for :meth:`Method.identity`:
    a model by its class and its configuration, a function by its qualified name, rule sets and other
    frozen values by their ``repr``, numbers, strings and tuples as they are."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [describe(v) for v in value]
    owner = model_of(value) if callable(value) else None
    if owner is not None:
        network = network_of(owner)
        described = network.config() if network is not None else repr(owner)
        return {"model": f"{type(owner).__module__}.{type(owner).__qualname__}", "config": described,
                "apply": getattr(value, "__name__", "apply")}
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    return repr(value)


@dataclass(frozen=True)
class Method(abc.ABC):
    """An explanation method bound to a model (module docstring): subclasses add their options as fields.

    Attributes:
        apply: the model, ``apply(params, x, rules=None, *, mask=None)``: the ``apply`` of a model of
            :mod:`lrpjax.models` (bound method or module function) or any function of that shape.
    """

    apply: Callable

    per_position: ClassVar[bool] = False
    """Relevance is one value per position (T,) (occlusion, CD, random) rather than per input feature (T, E)."""

    def __post_init__(self):
        if not callable(self.apply):
            raise TypeError(f"`apply` must be the model's apply function; got {type(self.apply).__name__}.")

    # --- the protocol ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """A short label (``"lrp"``, ``"gradient"``, ``"occlusion-f"``, ...)."""
        return type(self).__name__.lower()

    @property
    def model(self) -> Any:
        """The model object behind :attr:`apply` (None for a plain function)."""
        return model_of(self.apply)

    @abc.abstractmethod
    def relevance(self, params: Params, x: Array, target, mask: Array | None, index: Array) -> Array:
        """Relevance of ``x`` for one example (traceable).

        Args:
            params: the model's parameters.
            x: one input, (T, E) (or (D,)).
            target: a flat index into the output, weights of the output's shape, or a function of the
                output (:mod:`lrpjax.methods.targets`).
            mask: valid steps (T,) bool, or None.
            index: the example's number in its batch or dataset (random methods draw by it).

        Returns:
            (T, E), or (T,) for a position-wise method; padded steps are 0.
        """

    def prepare(self, params: Params, x: Array, mask: Array | None, index: Array) -> tuple[Array, Callable]:
        """``(scores, pull)``: the model's output for one example and ``pull(target) -> relevance``, so
        that many targets share one forward pass (traceable)."""
        scores = self.apply(params, x, None, mask=mask)
        return scores, lambda target: self.relevance(params, x, target, mask, index)

    def prepare_full(self, params: Params, x: Array, mask: Array | None, index: Array) -> tuple[Array, Callable]:
        """``(scores, pull_full)`` with ``pull_full(target)`` the richer result of :meth:`full`.

        Raises:
            TypeError: the method has no richer result.
        """
        raise TypeError(f"full() is defined for LRP methods and Integrated Gradients; {self.name!r} is neither.")

    @property
    def has_residual(self) -> bool:
        """Whether :meth:`prepare_full` gives explanations with a conservation ``residual``."""
        return False

    def identity(self) -> dict[str, Any]:
        """Everything that makes two runs' results equal, as stable JSON: the method's class and every
        field (the model by its configuration, rules by their values, every option)."""
        fields = {f.name: describe(getattr(self, f.name)) for f in dataclasses.fields(self)}
        return {"method": f"{type(self).__module__}.{type(self).__qualname__}", **fields}

    def digest(self) -> str:
        """A short fingerprint of :meth:`identity` (8 hex digits of its CRC-32): equal for equal methods,
        different (but for CRC collisions) when any option differs."""
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return f"{zlib.crc32(text.encode()):08x}"

    # --- calls ----------------------------------------------------------------------------------

    def __call__(self, params: Params, x: ArrayLike, target, *, mask: ArrayLike | None = None) -> Array:
        """Relevance for one sequence ``x`` (T, E) (or one vector (D,)) and ``target``
        (:mod:`lrpjax.methods.targets`): (T, E), or (T,) for position-wise methods."""
        x, mask, target = check_example(self, params, x, target, mask)
        program, data = _program_of(self, target)
        return _example(program, params, x, mask, data, 0).relevance

    def batch(self, params: Params, X: ArrayLike, targets, *, mask: ArrayLike | None = None) -> Array:
        """Relevance for a padded batch ``X`` (B, T, E), ``mask`` (B, T) bool.

        ``targets``: class indices (B,) (or one for all), index tuples (B, k) for multi-axis outputs,
        weights (B, *output shape), or one function of the output shared by the batch.

        Returns:
            (B, T, E), or (B, T) for position-wise methods; padded steps get 0.
        """
        X, targets, mask = check_batch(self, params, X, targets, mask)
        program, data = _program_of(self, targets, batch=True)
        index = jnp.arange(jnp.shape(X)[0], dtype=jnp.int32)
        return _chunk(program, params, X, mask, data, index).relevance

    def tokens(self, params: Params, x: ArrayLike, target, *, mask: ArrayLike | None = None) -> Array:
        """Word-level relevance (T,): the sum over the embedding dimension (Sec. 11.5.1); for a model that
        takes token ids, the relevance of each token's embedded vector summed over its dimensions."""
        return per_token(self(params, x, target, mask=mask), jnp.ndim(x) + (ids_model(self) is not None))

    def all(self, params: Params, x: ArrayLike, *, mask: ArrayLike | None = None) -> Array:
        """Relevance of every output at once, in one vmapped call: (*output shape, *relevance shape).

        For a classifier (C, T, E): one explanation per class; for a per-step model (T_out, C, T, E),
        whose word-level sums (``per_token(..., 4)``) form the (T_out, C, T) relevance matrix. Pullback
        methods (LRP, gradients) share one forward pass (the pullbacks are vmapped).
        """
        x, mask, _ = check_example(self, params, x, None, mask)
        return _example(Program((self,), "all"), params, x, mask, jnp.int32(-1), 0).relevance

    def every_step(self, params: Params, x: ArrayLike, classes=-1, *, mask: ArrayLike | None = None) -> Array:
        """Relevance of one class at every output step of a per-step model (output (L, C)), in one vmapped
        call (the forward pass shared): (L, *relevance shape), row t explaining output step t.

        For an encoder-decoder (:class:`~lrpjax.models.seq2seq.Seq2Seq`) whose packed input has S + T
        positions, (T, S + T, E): its sum over E is the (target x (source + target)) relevance matrix.

        Args:
            classes: -1 (each step's predicted class, the default), one class for every step, or one class
                per step (L,) (e.g. the reference next tokens), -1 entries meaning that step's prediction.

        Raises:
            ValueError: a model whose output is not per step, or classes of the wrong shape or range.
        """
        x, mask, _ = check_example(self, params, x, None, mask)
        shape = output_shape(self, params, x, mask)
        if len(shape) != 2:
            raise ValueError(f"every_step() explains a model with one output per step (L, C); this model's output has "
                             f"shape {shape} (use the call, .all or .batch).")
        classes = np.asarray(classes) if not isinstance(classes, jax.Array) else classes
        if not jnp.issubdtype(classes.dtype, jnp.integer) or classes.ndim > 1 or \
                (classes.ndim == 1 and classes.shape != shape[:1]):
            raise ValueError(f"`classes` must be an int or (L,) = ({shape[0]},) ints; got {classes!r}.")
        if is_concrete(classes) and (np.any(np.asarray(classes) < -1) or np.any(np.asarray(classes) >= shape[1])):
            raise ValueError(f"`classes` must be in [-1, C) = [-1, {shape[1]}); got {np.asarray(classes).tolist()}.")
        return _example(Program((self,), "per_step"), params, x, mask, jnp.asarray(classes, jnp.int32), 0).relevance

    def full(self, params: Params, x: ArrayLike, target, *, mask: ArrayLike | None = None) -> Any:
        """The richer result of one explanation: for LRP the relevance at every state, the biases and
        the conservation residual (:class:`Explanation`); for Integrated Gradients the attributions with
        the completeness gap (:class:`Attribution`).

        Raises:
            TypeError: a method without a richer result (or LRP on a model without zero taps).
        """
        x, mask, target = check_example(self, params, x, target, mask)
        result = _full_function(self, target, params, x, mask) if callable(target) else _full(self, params, x, target,
                                                                                                mask)
        warn_if_unhealthy(result)   # flagged numbers warn (NumericalWarning); result.health says why
        return result


@dataclass(frozen=True)
class Pullback(Method):
    """A method whose relevance is a seeded pullback of the model: one ``jax.vjp`` through
    ``apply(params, x, rules)``, the cotangent at the output seeded from the target's weights ``w``
    (:meth:`seed`), then an element-wise :meth:`finish`. LRP and the gradient family."""

    @property
    def pullback_rules(self) -> RuleSet | None:
        """The rule set the model runs under (None: the true gradient)."""
        return None

    def seed(self, w: Array, scores: Array) -> Array:
        """The cotangent at the output for the target's weights ``w``: ``w`` (the gradient)."""
        return w

    def finish(self, relevance: Array, x: Array) -> Array:
        """What is done with the pulled-back cotangent at the input (nothing here)."""
        return relevance

    def prepare(self, params, x, mask, index):
        scores, pullback = jax.vjp(lambda x_: self.apply(params, x_, self.pullback_rules, mask=mask), x)

        def pull(target):
            (cotangent,) = pullback(self.seed(weights(target, scores), scores))
            return self.finish(cotangent, x)

        return scores, pull

    def relevance(self, params, x, target, mask, index):
        return self.prepare(params, x, mask, index)[1](target)


# --- compiled drivers ------------------------------------------------------------------------------

def _program_of(method: Method, target, batch: bool = False) -> tuple[Program, Any]:
    """The program of a call with checked ``target``(s), and the per-example target data it takes."""
    if callable(target):
        return Program((method,), "function", function=target), jnp.int32(-1) if not batch else None
    if jnp.issubdtype(jnp.result_type(target), jnp.integer):
        # a host target stays on the host (no eager device op per call)
        data = jnp.asarray(target, jnp.int32) if isinstance(target, jax.Array) else np.asarray(target, np.int32)
        return Program((method,), "index"), data
    return Program((method,), "weights"), target


@partial(jax.jit, static_argnums=(0,))
def _example(program: Program, params, x, mask, target, index):
    return explain_example(program, params, x, mask, target, jnp.int32(index))


@partial(jax.jit, static_argnums=(0,))
def _chunk(program: Program, params, X, mask, targets, index):
    return explain_chunk(program, params, X, mask, targets, index)


def _full_impl(method: Method, params, x, target, mask):
    method, params, x = on_vectors(method, params, x)
    return method.prepare_full(params, x, mask, jnp.int32(0))[1](target)


_full = jax.jit(_full_impl, static_argnums=(0,))
_full_function = jax.jit(lambda m, target, params, x, mask: _full_impl(m, params, x, target, mask),
                         static_argnums=(0, 1))


# --- checks ----------------------------------------------------------------------------------------

def output_shape(method: Method, params, x, mask) -> tuple[int, ...]:
    """The shape of the model's output for input ``x`` (checks the parameters when the model can)."""
    model = method.model
    network = network_of(model)
    if network is not None:
        return network.output_shape(params, jnp.shape(x)[0] if network.sequence_input else None)
    if hasattr(model, "output_shape"):       # a model of several output axes (Seq2Seq: (T, V) of S + T positions)
        return tuple(model.output_shape(params, jnp.shape(x)[0]))
    if hasattr(model, "output_size"):
        return (model.output_size(params),)
    return tuple(jax.eval_shape(lambda p, x_: method.apply(p, x_, None, mask=mask), params, x).shape)


def _check_mask(method: Method, mask) -> None:
    """A batch's concrete mask (B, T) checked row by row: by the model's own ``check_mask`` when it has one
    (an encoder-decoder's packed pairs: a prefix in each part), else as a valid prefix."""
    getattr(method.model, "check_mask", check_prefix)(mask)


def takes_mask(method: Method) -> bool:
    """Whether the model takes a padding mask: sequence models do, a model with ``masked = False``
    (the MLP) does not."""
    return getattr(method.model, "masked", True)


def _check_inputs(method: Method, x, mask) -> None:
    """The model's own input checks when it has them (``model.check_inputs``), else sequence checks."""
    model = method.model
    (model.check_inputs if hasattr(model, "check_inputs") else check_inputs)(x, mask)


def ids_model(method: Method) -> Any:
    """The model object that embeds token ids for the method (:func:`~lrpjax.methods.program.ids_network`:
    a :class:`~lrpjax.models.Sequential` with an embedding first, an encoder-decoder), else None."""
    return ids_network(method.model)


def check_param_leaves(params) -> None:
    """Parameters must be arrays: a leaf that is a Python number inside a list or tuple means a weight
    given as nested lists (they would be taken apart into scalars).

    Raises:
        TypeError: naming the first such leaf's path.
    """
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if isinstance(leaf, (int, float, complex)) and not isinstance(leaf, bool) and path and \
                isinstance(path[-1], jax.tree_util.SequenceKey):   # a number as an element of a list
            where = jax.tree_util.keystr(path[:next(k for k, key in enumerate(path)
                                                    if isinstance(key, jax.tree_util.SequenceKey))])
            raise TypeError(f"`params`: the parameter at {where or 'the root'} is a nested list of numbers; "
                            "parameters must be arrays (convert them, e.g. "
                            "jax.tree_util.tree_map(np.asarray, params, is_leaf=lambda v: isinstance(v, list))).")


def check_example(method: Method, params, x, target, mask):
    """Checks one example and casts it to the parameters' dtype (token ids of a model that takes them
    are checked against its vocabulary and kept); ``target=None`` skips the target (for
    :meth:`Method.all`). Returns ``(x, mask, target)``, the target as :func:`check_target` gives it."""
    check_param_leaves(params)
    dtype = floating_dtype(params)
    network = ids_model(method)
    if network is not None:
        x = x if hasattr(x, "dtype") else np.asarray(x)
        network.check_inputs(x, mask, network.input_size(params))
    else:
        x = as_floating("x", x, dtype)
        _check_inputs(method, x, mask)
        x = cast_input("x", x, dtype)
    shape = output_shape(method, params, x, mask)
    target = None if target is None else check_target(target, shape)
    check_finite("params", params)
    if mask is not None and is_concrete(mask) and not np.any(np.asarray(mask)):
        raise ValueError("`mask` marks no valid step: the sequence is empty.")
    return x, mask, target


def check_batch(method: Method, params, X, targets, mask):
    """Checks a padded batch and casts it to the parameters' dtype. Returns ``(X, targets, mask)``; a
    sequence model without a mask gets an all-true one."""
    dtype = floating_dtype(params)
    network = ids_model(method)
    if network is not None:
        X = X if hasattr(X, "dtype") else np.asarray(X)
        check_ids("X", X, network.input_size(params), ndim=2)
    else:
        X = as_floating("X", X, dtype)
    shape = jnp.shape(X)
    if network is not None:
        B, T = shape
        if mask is None:
            mask = np.ones((B, T), bool)
        if tuple(jnp.shape(mask)) != (B, T):
            raise ValueError(f"`mask` must have shape (B, T) = ({B}, {T}) to match the token ids `X`; got "
                             f"{jnp.shape(mask)}.")
        _check_mask(method, mask)
    elif not takes_mask(method):
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
        _check_mask(method, mask)
    mask_row = None if mask is None else mask[0]
    _check_inputs(method, X[0], mask_row)
    if network is None:
        X = cast_input("X", X, dtype)
    targets = check_targets(targets, B, output_shape(method, params, X[0], mask_row))
    check_finite("params", params)
    if mask is not None and is_concrete(mask):
        empty = np.flatnonzero(~np.asarray(mask).any(axis=1))
        if empty.size:
            raise ValueError(f"`mask` row {int(empty[0])} marks no valid step: an empty sequence.")
    return X, targets, mask
