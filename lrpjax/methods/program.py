"""The one per-example program every driver runs: a method's scores and relevance for one sequence.

:func:`explain_example` is what a single call, :meth:`~lrpjax.methods.base.Method.batch`,
:meth:`~lrpjax.methods.base.Method.all`, the dataset and stream drivers (:mod:`lrpjax.datasets`), the
SST application and the experiments run: under ``jax.vmap`` for a chunk of padded sequences
(:func:`explain_chunk`), on its own for one. It talks to a method through its protocol only
(:meth:`~lrpjax.methods.base.Method.prepare`, ``prepare_full``, ``per_position``): it never asks which
method it runs.

How the targets of a call are given is static (:class:`Program`, ``targets``):

* ``"index"``: one flat index into the output per example; ``-1`` means the predicted output (the
  argmax of the flattened output);
* ``"weights"``: one array of the output's shape per example (``sum(w * output)``);
* ``"function"``: one function of the output, shared by every example (``Program.function``);
* ``"all"``: every output at once (one pullback per output, the forward pass shared);
* ``"per_step"``: for a per-step output (L, C), one class per example explained at every step (``-1``:
  each step's predicted class), L targets at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from lrpjax._types import Array, Params
from lrpjax.models.sequential import network_of

__all__ = ["TARGET_KINDS", "Program", "Outputs", "explain_example", "explain_chunk", "on_vectors", "ids_network"]

TARGET_KINDS = ("index", "weights", "function", "all", "per_step")


@dataclass(frozen=True)
class Program:
    """Static description of a program (hashable: a compiled program is cached by it).

    Attributes:
        methods: the methods run on every example (their forward passes are identical computations,
            which XLA merges).
        targets: how targets are given, one of :data:`TARGET_KINDS` (module docstring).
        function: the target function, with ``targets="function"``.
        stacked: a leading K axis for the methods, even for K = 1 (they were given as a list).
        tokens: sum (T, E) relevance over E (word-level relevance).
        residual: also the conservation residual of every explanation (methods with ``has_residual``).
    """

    methods: tuple
    targets: str = "index"
    function: Callable | None = None
    stacked: bool = False
    tokens: bool = False
    residual: bool = False

    def __post_init__(self):
        if self.targets not in TARGET_KINDS:
            raise ValueError(f"`targets` of a Program must be one of {TARGET_KINDS}; got {self.targets!r}.")
        if (self.targets == "function") != (self.function is not None):
            raise ValueError("a Program takes a target `function` exactly when `targets` is 'function'.")


class Outputs(NamedTuple):
    """What :func:`explain_example` returns for one example.

    Attributes:
        scores: the model's output, (C,) or (L, C).
        targets: the explained output: a class index () for a vector output (a flat index for other
            shapes), one class per step (L,) with ``"per_step"``, -1 where no single output is explained
            (``"all"``, weights, functions).
        relevance: ([K,] [*explained,] L[, E]): K methods when stacked; the explained outputs' axes with
            ``"all"`` (the output's shape) and ``"per_step"`` (L); then the input's positions, and E
            unless the method is position-wise or ``tokens`` is set. Padded steps are exactly 0.
        residual: with ``Program.residual``, ([K,] [*explained]) conservation residuals; else None.
    """

    scores: Array
    targets: Array
    relevance: Array
    residual: Array | None


def _flat_targets(program: Program, scores: Array, target) -> tuple[Any, Array]:
    """(what each pull takes -- one target, or (K,) flat indices to vmap over --, the explained targets)."""
    kind = program.targets
    if kind == "index":
        flat = jnp.where(target < 0, jnp.argmax(scores.reshape(-1)).astype(jnp.int32), target.astype(jnp.int32))
        return flat, flat
    if kind == "all":
        return jnp.arange(scores.size, dtype=jnp.int32), jnp.full(scores.shape[:-1], -1, jnp.int32)
    if kind == "per_step":
        L, C = scores.shape
        classes = jnp.where(target < 0, jnp.argmax(scores, axis=-1).astype(jnp.int32), target.astype(jnp.int32))
        return jnp.arange(L, dtype=jnp.int32) * C + classes, classes
    return (program.function if kind == "function" else target), jnp.asarray(-1, jnp.int32)


def _finish(program: Program, method, mask: Array | None, relevance: Array, lead: int, steps_first: bool) -> Array:
    """Word-level sums (``tokens``) and exact zeros at padded steps: of the input (the axis after the
    ``lead`` explained-output axes) and, when the first axis is the output's steps (``steps_first``),
    of the explained output steps."""
    full = not method.per_position
    if program.tokens and full:
        relevance, full = relevance.sum(-1), False
    if mask is None:
        return relevance
    zero = jnp.zeros((), relevance.dtype)
    keep = mask[:, None] if full else mask
    relevance = jnp.where(jnp.reshape(keep, (1,) * lead + keep.shape), relevance, zero)
    if steps_first:
        # The output's steps are the input's, unless the model says which they are (an encoder-decoder's
        # output steps are its target positions: ``output_mask``).
        output_mask = getattr(method.model, "output_mask", None)
        steps = mask if output_mask is None else output_mask(mask)
        relevance = jnp.where(jnp.reshape(steps, steps.shape + (1,) * (relevance.ndim - 1)), relevance, zero)
    return relevance


def ids_network(model: Any) -> Any:
    """The object that embeds token ids for the methods, or None: the :class:`~lrpjax.models.Sequential`
    behind ``model`` when it starts with an embedding, or ``model`` itself when it takes ids
    (``takes_ids``) and offers ``embed``, ``vector_model``, ``input_size`` and ``check_inputs`` (an
    encoder-decoder, :class:`~lrpjax.models.seq2seq.Seq2Seq`)."""
    network = network_of(model)
    if network is None and hasattr(model, "vector_model") and hasattr(model, "embed"):
        network = model
    return network if network is not None and network.takes_ids else None


def on_vectors(method, params: Params, x: Array) -> tuple[Any, Params, Array]:
    """``(method, params, x)`` as the method explains them: for a model that takes token ids (an
    :class:`~lrpjax.models.Embedding` first), the same method on the layers after the embedding, their
    parameters and the embedded vectors ``table[ids]`` (T, E) -- the lookup has no relevance rule, so what
    is explained, differentiated, integrated along a path from zero vectors (Integrated Gradients),
    perturbed (SmoothGrad) or occluded (set to zero) are the vectors; anything else unchanged."""
    network = ids_network(getattr(method.apply, "__self__", None))
    if network is None or jnp.issubdtype(jnp.result_type(x), jnp.floating):
        return method, params, x
    inner, inner_params = network.vector_model(params)
    return dataclasses.replace(method, apply=inner.apply), inner_params, network.embed(params, x)


def _explain_method(program: Program, method, params: Params, x: Array, mask: Array | None, target, index):
    method, params, x = on_vectors(method, params, x)
    if program.residual:
        scores, pull_full = method.prepare_full(params, x, mask, index)

        def pull(t):
            explanation = pull_full(t)
            return explanation.relevance, explanation.residual
    else:
        scores, pull_relevance = method.prepare(params, x, mask, index)

        def pull(t):
            return pull_relevance(t), None

    pulled, explained = _flat_targets(program, scores, target)
    if program.targets in ("all", "per_step"):
        relevance, residual = jax.vmap(pull)(pulled)
        shape = scores.shape if program.targets == "all" else scores.shape[:1]
        relevance = relevance.reshape(shape + relevance.shape[1:])
        residual = None if residual is None else residual.reshape(shape)
        lead, steps_first = len(shape), scores.ndim == 2
    else:
        relevance, residual = pull(pulled)
        lead, steps_first = 0, False
    return scores, explained, _finish(program, method, mask, relevance, lead, steps_first), residual


def explain_example(program: Program, params: Params, x: Array, mask: Array | None, target, index) -> Outputs:
    """Scores and relevance of every method of ``program`` for one example (traceable; see the module
    docstring for ``target``).

    Args:
        program: the static description.
        params: the model's parameters.
        x: one input, (L, E) (or (D,) for a vector model).
        mask: valid steps (L,) bool, or None.
        target: this example's target: an int32 flat index (-1: predicted) for ``"index"``, a class
            (-1: predicted) for ``"per_step"``, weights of the output's shape for ``"weights"``;
            ignored by ``"all"`` and ``"function"``.
        index: the example's number in its dataset (random draws depend on it), int32.

    Returns:
        :class:`Outputs`.

    Raises:
        ValueError: stacked methods giving relevance of different shapes.
    """
    results = [_explain_method(program, m, params, x, mask, target, index) for m in program.methods]
    scores, explained = results[0][0], results[0][1]
    relevances = [r[2] for r in results]
    shapes = {r.shape for r in relevances}
    if len(shapes) > 1:
        raise ValueError(f"`method`: the listed methods give relevance of different shapes {sorted(shapes)}; "
                         "list methods of one kind, or pass tokens=True.")
    residuals = [r[3] for r in results]
    if program.stacked:
        relevance = jnp.stack(relevances)
        residual = None if residuals[0] is None else jnp.stack(residuals)
    else:
        relevance, residual = relevances[0], residuals[0]
    return Outputs(scores, explained.astype(jnp.int32), relevance, residual)


def explain_chunk(program: Program, params: Params, X: Array, mask: Array | None, targets, index: Array) -> Outputs:
    """:func:`explain_example` vmapped over a chunk: X (B, L, E), mask (B, L) or None, targets (B,) (or
    (B, *output shape) weights; unused by ``"all"`` and ``"function"``), index (B,)."""
    mask_axis = None if mask is None else 0
    target_axis = None if program.targets in ("all", "function") else 0
    return jax.vmap(lambda x, k, t, i: explain_example(program, params, x, k, t, i),
                    in_axes=(0, mask_axis, target_axis, 0))(X, mask, targets, index)
