"""Explaining whole datasets: length buckets, fixed-size chunks, many targets at once, several devices.

:func:`explain_dataset` explains a list of variable-length sequences (T_i, E) with any
:class:`~lrpjax.methods.Method` (LRP presets, gradient, Sensitivity, Gradient x Input, occlusion,
Contextual Decomposition, random baseline):

* **Buckets** -- each sequence is padded (with a mask) to the smallest bucket edge >= its length, so
  only one program per edge is compiled, whatever the lengths in the dataset. Edges are given
  explicitly, or chosen for the data (:func:`bucket_edges`).
* **Chunks** -- each bucket is processed in chunks of exactly ``chunk_size`` sequences (the last one
  padded with dummy rows), so every call of a bucket's program has the same shapes and memory is
  bounded by the chunk, not by the dataset. :func:`iter_chunks` streams the results chunk by chunk.
* **Compilations are counted** -- compiled programs are kept in a cache keyed by everything that
  shapes the program (methods, target mode, bucket length, chunk size, input and parameter shapes and
  dtypes, devices); :func:`compilations` reads the counter, and every result says how many new
  compilations it needed.
* **Many targets at once** -- ``targets="all"`` gives the relevance of every class, (C, T, E) per
  sequence: the forward pass is shared (one ``jax.vjp``; the C seeded pullbacks are vmapped). A tuple
  of methods (e.g. :func:`eps_sweep`) runs in the same compiled call, (K, T, E) per sequence; their
  forward passes are identical computations, which XLA merges.
* **Several devices** -- each chunk's batch axis is sharded over a 1-D device mesh named ``"batch"``
  (``jax.sharding.NamedSharding``), parameters are replicated. Under ``jax.distributed`` the mesh spans
  every process's devices; each process passes the same dataset and receives all results.

Inputs that do not fit in memory, results written to disk as they finish, resumable runs and several
processes each explaining its own part on its own devices: :mod:`lrpjax.datasets.stream`, which runs the same
chunk programs (and forms the same chunks, so its results are bit-identical).

Gradient-type methods (LRP, gradient, Sensitivity, Gradient x Input) run as one ``jax.vjp`` that also
yields the scores, so ``targets="pred"`` costs no extra forward pass. The random baseline draws with the
sequence's index in the dataset, so it equals ``method.batch`` on the whole padded dataset.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterator, NamedTuple, Sequence, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lrpjax.methods import base as _explain
from lrpjax._types import Array, ArrayLike, Params
from lrpjax.methods.base import Method
from lrpjax.core.rules import preset

__all__ = ["DatasetExplanation", "Chunk", "explain_dataset", "iter_chunks", "bucket_edges", "assign_buckets",
           "eps_sweep", "compilations", "clear_cache"]

# Methods whose relevance is a seeded pullback of the model: seed with the score (LRP, Sec. 11.2.2) or
# with 1 (gradient), then an optional element-wise post-processing.
_SEEDED = {
    _explain._lrp_fn: ("lrp", None),
    _explain._gradient_fn: ("gradient", None),
    _explain._sensitivity_fn: ("gradient", "square"),
    _explain._gradient_x_input_fn: ("gradient", "times_input"),
}


class DatasetExplanation(NamedTuple):
    """Relevance for every sequence of a dataset, in input order.

    For a model with one output per step (T, C) (a tagger, a forecaster) every target mode is per step:
    ``"pred"`` explains each step's predicted class, a class index that class at every step, ``"all"``
    every class of every step.

    Attributes:
        relevance: one array per sequence, (T_i, E) or (T_i,) for position-wise methods (occlusion,
            CD, random); (C, T_i, ...) with ``targets="all"``; (K, ...) in front for a list of K methods.
            Per-step outputs: (T_i, T_i, ...) (output step, input step), (T_i, C, T_i, ...) with
            ``targets="all"``.
        lengths: T_i, (N,).
        scores: the model's output for each sequence, (N, C); per-step outputs: a list of (T_i, C).
        targets: the explained class of each sequence, (N,); -1 everywhere with ``targets="all"``;
            per-step outputs: a list of (T_i,), the class explained at each step.
        compilations: programs compiled by this call (0 when every bucket was compiled before).
        edges: the bucket edges used (padded lengths), ascending.
        residuals: with ``residual=True``, the conservation residual of each sequence's explanation,
            ``target score - sum(relevance) - sum(bias relevance) - sum(initial-state relevance)``,
            equal to ``method.full(params, x_i, target_i).residual`` (up to the rounding of the sums;
            padding changes nothing): (N,), (N, C) with ``targets="all"``, (N, K, ...) for a list of K
            methods; per-step outputs: a list of (T_i,) ((T_i, C) with ``"all"``; (K, ...) in front).
            None when not requested, or when no method has a residual (only LRP on a model of
            :mod:`lrpjax.models` has one; see :attr:`lrpjax.methods.Explanation.residual`).
    """

    relevance: list
    lengths: np.ndarray
    scores: np.ndarray | list
    targets: np.ndarray | list
    compilations: int
    edges: tuple
    residuals: np.ndarray | list | None = None

    def __repr__(self) -> str:
        """One line: how many sequences, their lengths, the arrays' shapes and the compilations, never
        the arrays themselves."""
        n = len(self.relevance)
        lengths = np.asarray(self.lengths)
        parts = [f"{n} sequences"]
        if lengths.size:
            parts.append(f"lengths {int(lengths.min())}..{int(lengths.max())}")
        if n:
            first = self.relevance[0]
            parts.append(f"relevance[0] {tuple(np.shape(first))} {getattr(first, 'dtype', '')}".rstrip())
        for name in ("scores", "targets"):
            value = getattr(self, name)
            if isinstance(value, list):
                parts.append(f"{name}: {len(value)} arrays (per step)")
            else:
                parts.append(f"{name} {tuple(np.shape(value))} {getattr(value, 'dtype', '')}".rstrip())
        targets = np.asarray(self.targets) if not isinstance(self.targets, list) else None
        if targets is not None and targets.size and np.all(targets == -1):
            parts.append("every class explained")
        elif targets is not None and targets.size:
            classes, counts = np.unique(targets, return_counts=True)
            if classes.size <= 10:
                parts.append("explained classes {" + ", ".join(f"{c}: {k}" for c, k in zip(classes, counts)) + "}")
        edges = tuple(self.edges)
        parts.append(f"edges {edges}" if len(edges) <= 8 else f"{len(edges)} edges {edges[0]}..{edges[-1]}")
        parts.append(f"compilations {self.compilations}")
        return "DatasetExplanation(" + ", ".join(parts) + ")"


class Chunk(NamedTuple):
    """One chunk of results from :func:`iter_chunks`.

    Attributes:
        indices: positions of the chunk's sequences in the dataset, (B_valid,).
        relevance: their relevance, padded: (B_valid, [K,] [C,] L[, E]) with L the bucket length
            (per-step outputs: (B_valid, [K,] L, [C,] L[, E])).
        scores: (B_valid, C) (per-step outputs: (B_valid, L, C)).
        targets: explained classes, (B_valid,) (-1 with ``targets="all"``; per-step: (B_valid, L)).
        residuals: with ``residual=True``, the conservation residuals, (B_valid, [K,] [C]) (per-step:
            (B_valid, [K,] L[, C])); else None.
    """

    indices: np.ndarray
    relevance: np.ndarray
    scores: np.ndarray
    targets: np.ndarray
    residuals: np.ndarray | None = None


# --- buckets --------------------------------------------------------------------------------------

def _powers_of_two(max_length: int, smallest: int = 8) -> tuple[int, ...]:
    edges = [smallest]
    while edges[-1] < max_length:
        edges.append(2 * edges[-1])
    return tuple(edges)


def bucket_edges(lengths: Sequence[int] | np.ndarray, n_buckets: int, chunk_size: int = 1) -> tuple[int, ...]:
    """The ``n_buckets`` edges that minimise the padded work for these lengths.

    The work of a bucket with edge L holding n sequences is ``ceil(n / chunk_size) * chunk_size * L``
    (every chunk is padded to the chunk size and to L); a dynamic programme over the distinct lengths
    finds the exact optimum. The last edge is the longest length.

    Args:
        lengths: sequence lengths, (N,), each >= 1.
        n_buckets: the number of edges wanted (fewer when there are fewer distinct lengths).
        chunk_size: the chunk size the buckets will be processed with.

    Raises:
        ValueError: no lengths, a length < 1, or ``n_buckets`` / ``chunk_size`` < 1.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.ndim != 1 or lengths.size == 0 or np.any(lengths < 1):
        raise ValueError("`lengths` must be a non-empty list of lengths >= 1.")
    if n_buckets < 1 or chunk_size < 1:
        raise ValueError(f"`n_buckets` and `chunk_size` must be >= 1; got {n_buckets}, {chunk_size}.")
    values, counts = np.unique(lengths, return_counts=True)
    cum = np.concatenate([[0], np.cumsum(counts)])
    n, K = len(values), min(n_buckets, len(values))

    def cost(i, j):  # one bucket holding distinct lengths i..j-1, edge values[j-1]
        members = cum[j] - cum[i]
        return -(-members // chunk_size) * chunk_size * values[j - 1]

    best = np.full((K + 1, n + 1), np.inf)
    choice = np.zeros((K + 1, n + 1), dtype=np.int64)
    best[0, 0] = 0
    for k in range(1, K + 1):
        for j in range(1, n + 1):
            for i in range(k - 1, j):
                c = best[k - 1, i] + cost(i, j)
                if c < best[k, j]:
                    best[k, j], choice[k, j] = c, i
    k = int(np.argmin(best[1:, n])) + 1
    edges, j = [], n
    while k > 0:
        edges.append(int(values[j - 1]))
        j, k = choice[k, j], k - 1
    return tuple(sorted(edges))


def _resolve_edges(buckets, lengths: np.ndarray, chunk_size: int) -> tuple[int, ...]:
    if buckets is None:
        return _powers_of_two(int(lengths.max()))
    if isinstance(buckets, (int, np.integer)) and not isinstance(buckets, bool):
        if buckets < 1:
            raise ValueError(f"`buckets` as a number of buckets must be >= 1; got {buckets}.")
        return bucket_edges(lengths, int(buckets), chunk_size)
    try:
        edges = tuple(int(e) for e in buckets)
    except TypeError:
        raise TypeError("`buckets` must be None, a number of buckets or a sequence of edges; "
                        f"got {type(buckets).__name__}.") from None
    if not edges or edges[0] < 1 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"`buckets` edges must be increasing lengths >= 1; got {edges}.")
    return edges


def assign_buckets(lengths: Sequence[int] | np.ndarray, edges: Sequence[int] | np.ndarray) -> np.ndarray:
    """Padded length of each sequence: the smallest edge >= T; beyond the last edge, the next multiple of it.

    Args:
        lengths: (N,) lengths >= 1.
        edges: ascending bucket edges.

    Returns:
        (N,) padded lengths.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    edges = np.asarray(edges, dtype=np.int64)
    position = np.searchsorted(edges, lengths, side="left")
    inside = position < len(edges)
    beyond = -(-lengths // edges[-1]) * edges[-1]
    return np.where(inside, edges[np.minimum(position, len(edges) - 1)], beyond)


# --- compiled chunk programs ----------------------------------------------------------------------

@dataclass(frozen=True)
class _Spec:
    """Static description of a chunk program (hashable: part of the cache key)."""

    methods: tuple
    stacked: bool       # methods were given as a list: a leading K axis even for K = 1
    all_classes: bool
    tokens: bool
    n_classes: int
    sequence_output: bool = False   # the model outputs (L, C), one score vector per step
    residual: bool = False          # also the conservation residual of every (LRP) explanation


def _resolve_target(target: Array, scores: Array) -> Array:
    """A negative target means the predicted class."""
    return jnp.where(target < 0, jnp.argmax(scores).astype(target.dtype), target)


def _step_targets(spec: _Spec, scores: Array, target: Array) -> Array:
    """Flat indices into a per-step output (L, C): every (step, class) with ``targets="all"``, else one per
    step: the step's predicted class (target < 0) or the given class."""
    L, C = scores.shape
    if spec.all_classes:
        return jnp.arange(L * C, dtype=jnp.int32)
    classes = jnp.where(target < 0, jnp.argmax(scores, axis=-1).astype(jnp.int32), target.astype(jnp.int32))
    return jnp.arange(L, dtype=jnp.int32) * C + classes


def _per_step(spec: _Spec, scores: Array, relevance: Array) -> Array:
    """(L * C, ...) relevance of every (step, class) as (L, C, ...); one per step (L, ...) unchanged."""
    return relevance.reshape(scores.shape + relevance.shape[1:]) if spec.all_classes else relevance


def _seeded_relevance(m: Method, spec: _Spec, params, x, mask, target):
    """Scores, explained class and relevance of a gradient-type method from one ``jax.vjp``."""
    kind, post = _SEEDED[m.fn]
    rules = m.rules if kind == "lrp" else None
    scores, pullback = jax.vjp(lambda x_: m.apply(params, x_, rules, mask=mask), x)
    # LRP starts from the target's score (Sec. 11.2.2), the gradient from 1.
    weight = scores if kind == "lrp" else jnp.ones_like(scores)
    if spec.sequence_output:
        flat = _step_targets(spec, scores, target)
        seeds = jax.nn.one_hot(flat, scores.size, dtype=scores.dtype).reshape((-1,) + scores.shape) * weight[None]
        relevance = _per_step(spec, scores, jax.vmap(lambda s: pullback(s)[0])(seeds))
        target = flat % spec.n_classes if not spec.all_classes else target
    elif spec.all_classes:
        seeds = jnp.eye(spec.n_classes, dtype=scores.dtype) * weight[None, :]
        relevance = jax.vmap(lambda s: pullback(s)[0])(seeds)
    else:
        target = _resolve_target(target, scores)
        relevance = pullback(jax.nn.one_hot(target, spec.n_classes, dtype=scores.dtype) * weight)[0]
    if post == "square":
        relevance = relevance ** 2
    elif post == "times_input":
        relevance = relevance * jnp.reshape(x, (1,) * (relevance.ndim - x.ndim) + x.shape)
    return scores, target, relevance


def _lrp_residual(m: Method, spec: _Spec, params, x, mask, target):
    """Scores, explained class, relevance and conservation residual of LRP, from one ``jax.vjp`` through
    the model with zero taps, as :meth:`lrpjax.methods.Method.full` (the residual is its formula)."""
    taps = m.apply.__self__.zero_taps(params, x)  # type: ignore[attr-defined]  # a bound method of the model
    scores, pullback = jax.vjp(lambda p, x_, t: m.apply(p, x_, m.rules, mask=mask, taps=t), params, x, taps)

    def pull(seed):
        r_params, r_x, r_taps = pullback(seed)
        absorbed = sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(r_params))
        initial = sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(r_taps["initial"]))
        valid = jnp.where(mask[:, None], r_x, jnp.zeros((), r_x.dtype))
        return r_x, jnp.sum(seed) - jnp.sum(valid) - absorbed - initial   # sum(seed): the target's score

    if spec.sequence_output:
        flat = _step_targets(spec, scores, target)
        seeds = jax.nn.one_hot(flat, scores.size, dtype=scores.dtype).reshape((-1,) + scores.shape) * scores[None]
        relevance, residual = jax.vmap(pull)(seeds)
        relevance, residual = _per_step(spec, scores, relevance), _per_step(spec, scores, residual)
        target = flat % spec.n_classes if not spec.all_classes else target
    elif spec.all_classes:
        relevance, residual = jax.vmap(pull)(jnp.eye(spec.n_classes, dtype=scores.dtype) * scores[None, :])
    else:
        target = _resolve_target(target, scores)
        relevance, residual = pull(jax.nn.one_hot(target, spec.n_classes, dtype=scores.dtype) * scores)
    return scores, target, relevance, residual


def _has_residual(m: Method) -> bool:
    """Whether a method's explanations have a conservation residual: LRP on a model with zero taps."""
    return m.fn is _explain._lrp_fn and hasattr(getattr(m.apply, "__self__", None), "zero_taps")


def _generic_relevance(m: Method, spec: _Spec, params, x, mask, target, index):
    """Scores, explained class and relevance of any method through its per-example ``fn``."""
    scores = m.apply(params, x, None, mask=mask)
    if spec.sequence_output:
        flat = _step_targets(spec, scores, target)
        relevance = _per_step(spec, scores, jax.vmap(lambda t: m.fn(m, params, x, t, mask, index))(flat))
        target = flat % spec.n_classes if not spec.all_classes else target
    elif spec.all_classes:
        # The model's forward pass does not depend on the class, so vmap leaves it unbatched.
        relevance = jax.vmap(lambda c: m.fn(m, params, x, c, mask, index))(jnp.arange(spec.n_classes))
    else:
        target = _resolve_target(target, scores)
        relevance = m.fn(m, params, x, target, mask, index)
    return scores, target, relevance


def _explain_one(spec: _Spec, params, x, mask, target, index):
    """``(x (L, E), mask (L,), target, index) -> (scores, targets, relevance[, residuals])``.

    Vector outputs: scores (C,), target (), relevance ([K,] [C,] L[, E]). Per-step outputs: scores (L, C),
    targets (L,) (the class explained at each step), relevance ([K,] L, [C,] L[, E]). With
    ``spec.residual`` the conservation residuals follow: ([K,] [C]), per-step ([K,] L[, C]).
    """
    results, residuals = [], []
    for m in spec.methods:
        if spec.residual:
            *result, residual = _lrp_residual(m, spec, params, x, mask, target)
            results.append(tuple(result))
            residuals.append(residual)
        elif m.fn in _SEEDED:
            results.append(_seeded_relevance(m, spec, params, x, mask, target))
        else:
            results.append(_generic_relevance(m, spec, params, x, mask, target, index))
    relevances = [_finish(spec, x, mask, r, m.fn in _SEEDED or _per_target_ndim(spec, r) == 2)
                  for m, (_, _, r) in zip(spec.methods, results)]
    scores, target, _ = results[0]
    shapes = {r.shape for r in relevances}
    if len(shapes) > 1:
        raise ValueError(f"`method`: the listed methods give relevance of different shapes {sorted(shapes)}; "
                         "list methods of one kind, or pass tokens=True.")
    relevance = jnp.stack(relevances) if spec.stacked else relevances[0]
    if spec.all_classes:
        target = jnp.full(scores.shape[:-1], -1, jnp.int32)
    if spec.residual:
        return scores, target.astype(jnp.int32), relevance, jnp.stack(residuals) if spec.stacked else residuals[0]
    return scores, target.astype(jnp.int32), relevance


def _per_target_ndim(spec: _Spec, r: Array) -> int:
    """ndim of one target's relevance: (L, E) = 2, or (L,) = 1 for position-wise methods."""
    lead = int(spec.all_classes) + int(spec.sequence_output)
    return r.ndim - lead


def _finish(spec: _Spec, x: Array, mask: Array, r: Array, full: bool) -> Array:
    """Word-level sums if asked (``tokens``), and exact zeros at padded steps (of the input and, for
    per-step outputs, of the output)."""
    if spec.tokens and full:
        r, full = r.sum(-1), False
    keep = mask[:, None] if full else mask
    keep = jnp.reshape(keep, (1,) * (r.ndim - keep.ndim) + keep.shape)
    r = jnp.where(keep, r, jnp.zeros((), r.dtype))
    if spec.sequence_output:   # output steps on the first axis
        step = jnp.reshape(mask, mask.shape + (1,) * (r.ndim - 1))
        r = jnp.where(step, r, jnp.zeros((), r.dtype))
    return r


def _chunk_fn(spec: _Spec, params, X, mask, targets, index):
    """The program of one chunk: vmap of :func:`_explain_one` over (B,) sequences."""
    return jax.vmap(lambda x, k, t, i: _explain_one(spec, params, x, k, t, i))(X, mask, targets, index)


class _Program(NamedTuple):
    compiled: Callable[..., Any]
    batch: NamedSharding
    replicated: NamedSharding
    full: bool          # relevance per row is (..., L, E) rather than (..., L)


_CACHE: dict = {}
_COUNT = [0]
_LOCK = threading.Lock()


def compilations() -> int:
    """How many chunk programs this process has compiled so far (all calls of :func:`explain_dataset`)."""
    return _COUNT[0]


def clear_cache() -> None:
    """Forgets the compiled chunk programs (the counter keeps counting)."""
    _CACHE.clear()


def _abstract(tree, sharding):
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a),
                                                                   sharding=sharding), tree)


def _program(spec: _Spec, params, L: int, B: int, E: int, dtype, devices: tuple) -> _Program:
    """The compiled program of a (bucket length L, chunk size B), from the cache or compiled now."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    signature = (treedef, tuple((np.shape(a), str(jnp.result_type(a))) for a in leaves))
    key = (spec, L, B, E, str(dtype), signature, tuple(d.id for d in devices))
    if key not in _CACHE:
        mesh = Mesh(np.asarray(devices), ("batch",))
        batch = NamedSharding(mesh, PartitionSpec("batch"))
        replicated = NamedSharding(mesh, PartitionSpec())
        fn = jax.jit(partial(_chunk_fn, spec), in_shardings=(replicated, batch, batch, batch, batch),
                     out_shardings=batch)
        args = (_abstract(params, replicated), jax.ShapeDtypeStruct((B, L, E), dtype, sharding=batch),
                jax.ShapeDtypeStruct((B, L), jnp.bool_, sharding=batch),
                jax.ShapeDtypeStruct((B,), jnp.int32, sharding=batch),
                jax.ShapeDtypeStruct((B,), jnp.int32, sharding=batch))
        lowered = fn.lower(*args)
        relevance_shape = lowered.out_info[2].shape
        lead = int(spec.stacked) + int(spec.all_classes) + int(spec.sequence_output)
        compiled = lowered.compile()
        with _LOCK:
            _COUNT[0] += 1
            _CACHE[key] = _Program(compiled, batch, replicated, len(relevance_shape) == lead + 3)
    return _CACHE[key]


def _compile_all(plan: _Plan) -> None:
    """Compiles the programs of every bucket of a plan at once, on as many threads as there are CPU
    cores (XLA compiles outside the GIL), so that compilation costs less wall time."""
    E, dtype = plan.arrays[0].shape[1], plan.arrays[0].dtype
    lengths = sorted({L for L, _ in plan.chunks})
    threads = min(len(lengths), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if threads < 2:
        return
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda L: _program(plan.spec, plan.params, L, plan.chunk_size, E, dtype, plan.devices),
                      lengths))


# --- host side: checks, placement, chunking -------------------------------------------------------

def _put(host, sharding):
    """Places a host array on the devices of ``sharding`` (every process holds the whole array)."""
    if jax.process_count() == 1 or sharding.is_fully_addressable:
        return jax.device_put(host, sharding)
    return jax.make_array_from_callback(np.shape(host), sharding, lambda index: np.asarray(host)[index])


def _fetch(array) -> np.ndarray:
    """A global array as one host array, on every process."""
    if array.is_fully_addressable:
        return np.asarray(array)
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def _check_methods(method) -> tuple:
    methods = (method,) if isinstance(method, Method) else tuple(method) if isinstance(method, (list, tuple)) else None
    if not methods or not all(isinstance(m, Method) for m in methods):
        raise TypeError("`method` must be an lrpjax Method or a non-empty list of Methods; "
                        f"got {type(method).__name__}.")
    if any(m.apply is not methods[0].apply and m.apply != methods[0].apply for m in methods):
        raise ValueError("`method`: all methods of a list must explain the same model (equal `apply`).")
    return methods


def _check_sequences(sequences, dtype=None) -> tuple[list, np.ndarray]:
    """The sequences as host arrays of one floating dtype -- the parameters' ``dtype``, else the first
    sequence's -- checked for finiteness before the cast and for overflow by it; and their lengths."""
    if isinstance(sequences, (str, bytes)) or not hasattr(sequences, "__len__"):
        raise TypeError(f"`sequences` must be a list of (T, E) arrays; got {type(sequences).__name__}.")
    if len(sequences) == 0:
        raise ValueError("`sequences` is empty; at least one sequence is needed.")
    arrays = [np.asarray(s) for s in sequences]
    first = arrays[0]
    for i, a in enumerate(arrays):
        if a.ndim != 2 or a.shape[0] == 0:
            raise ValueError(f"`sequences[{i}]` must have shape (T, E) with T >= 1; got {a.shape}.")
        if a.shape[1] != first.shape[1]:
            raise ValueError(f"`sequences[{i}]` must have shape (T, E) with E = {first.shape[1]} (as "
                             f"sequences[0]); got {a.shape}.")
        _explain._as_floating(f"sequences[{i}]", a, dtype)
    target = jax.dtypes.canonicalize_dtype(first.dtype) if dtype is None else dtype
    arrays = [_explain._cast_input(f"sequences[{i}]", a, target) for i, a in enumerate(arrays)]
    return arrays, np.asarray([a.shape[0] for a in arrays], dtype=np.int64)


def _output_kind(methods: tuple, params, x0) -> tuple[int, bool]:
    """(C, sequence_output) of the model's output for a first sequence ``x0`` (T, E): (C,) or (T, C).

    Raises:
        ValueError: any other output shape.
    """
    scores = jax.eval_shape(lambda p, x_: methods[0].apply(p, x_, None), params,
                            jax.ShapeDtypeStruct(x0.shape, x0.dtype))
    sequence_output = len(scores.shape) == 2
    if len(scores.shape) not in (1, 2) or (sequence_output and scores.shape[0] != x0.shape[0]):
        raise ValueError(f"`method`: the model's output for a sequence of {x0.shape[0]} steps has shape "
                         f"{tuple(scores.shape)}; explain_dataset needs (C,) or one score vector per step (T, C).")
    return scores.shape[-1], sequence_output


def _check_tokens(tokens) -> None:
    if not isinstance(tokens, bool):
        raise TypeError(f"`tokens` must be a bool; got {type(tokens).__name__}.")


def _check_targets(targets, N: int, C: int) -> tuple[np.ndarray, bool]:
    """-> (targets (N,) int32 with -1 for 'predicted', all_classes)."""
    if isinstance(targets, str):
        if targets not in ("pred", "all"):
            raise ValueError(f"`targets` as a string must be 'pred' or 'all'; got {targets!r}.")
        return np.full((N,), -1, np.int32), targets == "all"
    array = np.asarray(targets)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"`targets` must be 'pred', 'all', a class index or (N,) class indices; got dtype {array.dtype}.")
    if array.ndim == 0:
        array = np.full((N,), int(array))
    if array.shape != (N,):
        raise ValueError(f"`targets` must have shape (N,) = ({N},), one class per sequence; got {array.shape}.")
    if np.any(array < 0) or np.any(array >= C):
        bad = int(array[(array < 0) | (array >= C)][0])
        raise ValueError(f"`targets` must be class indices in [0, {C}); got {bad}.")
    return array.astype(np.int32), False


def _check_devices(devices, chunk_size: int, local: bool = False) -> tuple:
    """The devices to shard chunks over: every device JAX sees, or with ``local`` this process's own."""
    available = jax.local_devices() if local else jax.devices()
    if devices is None:
        devices = tuple(available)
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            where = "this process's devices" if local else "devices JAX sees"
            raise ValueError(f"`devices` must be between 1 and {len(available)} ({where}); got {devices}.")
        devices = tuple(available[:devices])
    else:
        devices = tuple(devices)
        if not devices:
            raise ValueError("`devices` is empty.")
    if not isinstance(chunk_size, (int, np.integer)) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"`chunk_size` must be an int >= 1; got {chunk_size!r}.")
    if chunk_size % len(devices):
        raise ValueError(f"`chunk_size` must be a multiple of the number of devices ({len(devices)}) so that "
                         f"each device gets an equal share; got {chunk_size}.")
    return devices


def _fill_chunk(arrays, lengths, rows: np.ndarray, L: int, B: int, targets: np.ndarray):
    """Host arrays of the chunk holding the dataset's sequences ``rows``: X (B, L, E), mask (B, L),
    targets (B,), index (B,) (see :func:`_fill_rows`)."""
    return _fill_rows([arrays[i] for i in rows], L, B, targets[rows], rows, arrays[0].dtype)


def _fill_rows(xs: Sequence[np.ndarray], L: int, B: int, targets, index, dtype):
    """Host arrays of one chunk of ``len(xs) <= B`` sequences: X (B, L, E), mask (B, L), targets (B,),
    index (B,) (each sequence's number in the dataset or stream, which the random baseline draws by).

    Dummy rows (beyond ``len(xs)``) hold one valid zero step, so no row is empty; they are dropped.
    """
    E = xs[0].shape[1]
    X = np.zeros((B, L, E), dtype)
    mask = np.zeros((B, L), bool)
    mask[len(xs):, 0] = True
    for r, x in enumerate(xs):
        X[r, :x.shape[0]] = x
        mask[r, :x.shape[0]] = True
    chunk_targets = np.zeros((B,), np.int32)
    chunk_targets[:len(xs)] = targets
    chunk_index = np.zeros((B,), np.int32)
    chunk_index[:len(xs)] = index
    return X, mask, chunk_targets, chunk_index


class _Plan(NamedTuple):
    spec: _Spec
    arrays: list
    lengths: np.ndarray
    targets: np.ndarray
    edges: tuple
    chunks: list            # (bucket length L, rows (<= B,)) in processing order
    chunk_size: int
    devices: tuple
    params: Params


def _check_residual(residual, methods: tuple) -> bool:
    """Whether the chunk programs compute residuals: asked for, and every method has one.

    Raises:
        TypeError: ``residual`` not a bool.
        ValueError: a list mixing methods with and without a residual.
    """
    if not isinstance(residual, bool):
        raise TypeError(f"`residual` must be a bool; got {type(residual).__name__}.")
    has = [_has_residual(m) for m in methods]
    if residual and any(has) and not all(has):
        names = [m.name for m, h in zip(methods, has) if not h]
        raise ValueError(f"`residual=True`: the methods {names} have no conservation residual (only LRP on a "
                         "model of lrpjax.models has one); list them separately.")
    return residual and all(has)


def _plan(method, params, sequences, targets, buckets, chunk_size, devices, tokens, residual=False) -> _Plan:
    methods = _check_methods(method)
    with_residual = _check_residual(residual, methods)
    devices = _check_devices(devices, chunk_size)
    arrays, lengths = _check_sequences(sequences, _explain.floating_dtype(params))
    _explain._check_finite("params", params)
    C, sequence_output = _output_kind(methods, params, arrays[0])
    targets, all_classes = _check_targets(targets, len(arrays), C)
    _check_tokens(tokens)
    edges = _resolve_edges(buckets, lengths, chunk_size)
    padded = assign_buckets(lengths, edges)
    chunks: list[tuple[int, np.ndarray]] = []
    for L in np.unique(padded):
        rows = np.flatnonzero(padded == L)
        chunks.extend((int(L), rows[s:s + chunk_size]) for s in range(0, len(rows), chunk_size))
    spec = _Spec(methods, not isinstance(method, Method), all_classes, tokens, C, sequence_output, with_residual)
    return _Plan(spec, arrays, lengths, targets, edges, chunks, int(chunk_size), devices, params)


def _run(plan: _Plan) -> Iterator[tuple[Chunk, _Program]]:
    """Runs the chunks of a plan, dispatching each before fetching the previous one (at most two chunks
    are alive at a time, so memory is bounded by the chunk size)."""
    _compile_all(plan)
    E, dtype = plan.arrays[0].shape[1], plan.arrays[0].dtype
    placed_params = None
    pending: tuple[np.ndarray, Any, _Program] | None = None
    for L, rows in plan.chunks:
        program = _program(plan.spec, plan.params, L, plan.chunk_size, E, dtype, plan.devices)
        if placed_params is None:
            placed_params = jax.tree_util.tree_map(lambda a: _put(np.asarray(a), program.replicated),
                                                   plan.params)
        host = _fill_chunk(plan.arrays, plan.lengths, rows, L, plan.chunk_size, plan.targets)
        launched = (rows, program.compiled(placed_params, *(_put(a, program.batch) for a in host)), program)
        if pending is not None:
            yield _collect(*pending)
        pending = launched
    assert pending is not None  # a plan has at least one chunk
    yield _collect(*pending)


def _collect(rows, outputs, program) -> tuple[Chunk, _Program]:
    scores, targets, relevance, *residuals = outputs
    n = len(rows)
    residual = _fetch(residuals[0])[:n] if residuals else None
    return Chunk(rows, _fetch(relevance)[:n], _fetch(scores)[:n], _fetch(targets)[:n], residual), program


# --- public entry points --------------------------------------------------------------------------



def iter_chunks(method, params: Params, sequences: Sequence[ArrayLike], targets="pred", *,
                buckets=None, chunk_size: int = 128, devices=None, tokens: bool = False,
                residual: bool = False) -> Iterator[Chunk]:
    """Explains a dataset chunk by chunk, yielding each chunk's results as soon as they are ready.

    Memory stays bounded by the chunk size whatever the dataset size (nothing is accumulated);
    :func:`explain_dataset` collects the chunks into per-sequence arrays. The arguments, their checks
    and the errors they raise are those of :func:`explain_dataset`.

    Yields:
        :class:`Chunk` values, bucket by bucket (shortest first); each sequence appears once.
    """
    plan = _plan(method, params, sequences, targets, buckets, chunk_size, devices, tokens, residual)
    for chunk, _ in _run(plan):
        yield chunk


def explain_dataset(method, params: Params, sequences: Sequence[ArrayLike], targets="pred", *,
                    buckets=None, chunk_size: int = 128, devices=None, tokens: bool = False,
                    residual: bool = False) -> DatasetExplanation:
    """Explains N variable-length sequences in length buckets and fixed-size chunks.

    Results equal explaining each sequence on its own (padding is masked); they come back in input
    order, one (T_i, ...) array per sequence. Programs are compiled once per (bucket length, chunk
    size, ...) and cached across calls: the result's ``compilations`` counts the new ones.

    Args:
        method: a :class:`~lrpjax.methods.Method`, or a list of K Methods of the same model run in one
            compiled call (e.g. :func:`eps_sweep`); their results are stacked on a leading K axis (also
            for K = 1). Stacking needs equal shapes: (T, E) methods and position-wise ones (occlusion,
            CD, random) mix only with ``tokens=True``.
        params: the model's parameters.
        sequences: N embedded sequences, each (T_i, E), floating point; cast to the parameters'
            floating dtype (half precision up, float64 down to float32 parameters: a value beyond
            float32's range is refused), or to the first's dtype when the parameters have several.
        targets: ``"pred"`` (each sequence's predicted class), ``"all"`` (every class: (C, T_i, ...)),
            one class index for all, or (N,) class indices.
        buckets: bucket edges (padded lengths, ascending; longer sequences are padded to the next
            multiple of the last edge), a number of buckets (edges chosen by :func:`bucket_edges` for
            these lengths), or None for powers of two from 8.
        chunk_size: sequences per compiled call, B; a multiple of the number of devices.
        devices: the devices to shard each chunk over: None (all that JAX sees, every process's under
            ``jax.distributed``), a number of them, or a list of devices.
        tokens: sum (T, E) relevance over E on the device (word-level relevance, (T_i,) per sequence).
        residual: also compute each explanation's conservation residual in the chunk programs (LRP
            on a model of :mod:`lrpjax.models`; other methods have none: None).

    Raises:
        ValueError: an empty dataset or sequence, sequences of different E, non-finite values or values
            that overflow the parameters' dtype, targets of the wrong length or out of range, bad
            buckets, a chunk size that is not a positive multiple of the device count, ``residual``
            for a list mixing LRP with other methods.
        TypeError: a method that is not a Method, non-float sequences, non-integer targets.

    Returns:
        A :class:`DatasetExplanation`.
    """
    plan = _plan(method, params, sequences, targets, buckets, chunk_size, devices, tokens, residual)
    N = len(plan.arrays)
    before = compilations()
    relevance: list = [None] * N
    scores: Any = None  # an array (N, C), or a list of (T_i, C) for per-step outputs
    explained: list | np.ndarray = np.zeros((N,), np.int32)
    per_step = plan.spec.sequence_output
    if per_step:
        scores, explained = [None] * N, [None] * N
    residuals: Any = [None] * N if plan.spec.residual else None  # a list, stacked to (N, ...) at the end
    for chunk, program in _run(plan):
        if scores is None:
            scores = np.zeros((N,) + chunk.scores.shape[1:], chunk.scores.dtype)
        lead = int(plan.spec.stacked)
        inner = chunk.relevance.ndim - 1 - lead - (2 if program.full else 1)   # axes before the input steps
        for row, i in enumerate(chunk.indices):
            T = plan.lengths[i]
            if per_step:   # crop the output steps too: ([K,] T_out, [C,] T_in[, E])
                crop = (slice(None),) * lead + (slice(0, T),) + (slice(None),) * (inner - 1) + (slice(0, T),)
                scores[i], explained[i] = chunk.scores[row, :T], chunk.targets[row, :T]
            else:
                crop = (slice(None),) * (lead + inner) + (slice(0, T),)
            relevance[i] = np.ascontiguousarray(chunk.relevance[row][crop])
            if residuals is not None:   # ([K,] [L,] [C]): crop the output steps of per-step outputs
                step = ((slice(None),) * lead + (slice(0, T),)) if per_step else ()
                residuals[i] = np.array(cast(np.ndarray, chunk.residuals)[row][step])
        if not per_step:
            scores[chunk.indices] = chunk.scores
            explained[chunk.indices] = chunk.targets
    if residuals is not None and not per_step:
        residuals = np.stack(residuals)
    return DatasetExplanation(relevance, plan.lengths, scores, explained, compilations() - before, plan.edges,
                              residuals)


def eps_sweep(apply, name: str = "lrp-all", eps: Sequence[float] = (0.0, 1e-3, 1e-2, 1e-1),
              share: bool = False) -> tuple[Method, ...]:
    """LRP with one preset at several stabilisers, to pass as a list to :func:`explain_dataset`.

    All of them run in one compiled call (the forward pass is shared); each rule set is a static
    value, so the sweep's values are fixed when it compiles.

    Args:
        apply: the model.
        name: a preset name (``"lrp-all"``, ``"lrp-prop"``, ``"lrp-abs"``, ``"lrp-half"``).
        eps: the stabilisers, K >= 1 values >= 0.
        share: spread bias and stabiliser shares over the inputs.

    Raises:
        ValueError: no eps values, a bad eps or an unknown preset.
    """
    eps = tuple(eps)
    if not eps:
        raise ValueError("`eps` is empty; give at least one stabiliser.")
    return tuple(_explain.lrp(apply, preset(name, e, share)) for e in eps)
