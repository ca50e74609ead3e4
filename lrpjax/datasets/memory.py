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
  shapes the program (:mod:`lrpjax.datasets.driver`); :func:`compilations` reads the counter, and every
  result says how many new compilations it needed.
* **Many targets at once** -- ``targets="all"`` gives the relevance of every class, (C, T, E) per
  sequence: the forward pass is shared (one ``jax.vjp``; the C seeded pullbacks are vmapped). A tuple
  of methods (e.g. :func:`eps_sweep`) runs in the same compiled call, (K, T, E) per sequence; their
  forward passes are identical computations, which XLA merges.
* **Pairs** -- an encoder-decoder (:class:`~lrpjax.models.seq2seq.Seq2Seq`) says through its
  ``dataset_layout()`` hook that its items are pairs ``(source, target)`` of embedded vectors: they are
  bucketed by the target length, packed as the model packs a pair (the source padded to S, then the
  target padded to the bucket length) and cropped back to (T_i, S_i + T_i, ...) per pair
  (:mod:`lrpjax.datasets.layouts`); every other model takes single sequences.
* **Several devices** -- each chunk's batch axis is sharded over a 1-D device mesh named ``"batch"``
  (``jax.sharding.NamedSharding``), parameters are replicated. Under ``jax.distributed`` the mesh spans
  every process's devices; each process passes the same dataset and receives all results.

Inputs that do not fit in memory, results written to disk as they finish, resumable runs and several
processes each explaining its own part on its own devices: :mod:`lrpjax.datasets.stream`, which runs the same
chunk driver (and forms the same chunks, so its results are bit-identical).

Pullback methods (LRP, gradient, Sensitivity, Gradient x Input) run as one ``jax.vjp`` that also
yields the scores, so ``targets="pred"`` costs no extra forward pass. The random baseline draws with the
sequence's index in the dataset, so it equals ``method.batch`` on the whole padded dataset.
"""

from __future__ import annotations

from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np

from lrpjax._types import ArrayLike, Params
from lrpjax.core.rules import preset
from lrpjax.datasets.buckets import assign_buckets, bucket_edges, resolve_edges
from lrpjax.datasets.driver import Chunk, ChunkDriver, Run, clear_cache, compilations, compile_buckets, plan_run
from lrpjax.datasets.layouts import SEQUENCES, layout_of
from lrpjax.methods.inputs import as_floating, floating_dtype
from lrpjax.methods.lrp import LRP, lrp

__all__ = ["DatasetExplanation", "Chunk", "explain_dataset", "iter_chunks", "bucket_edges", "assign_buckets",
           "eps_sweep", "compilations", "clear_cache"]


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
        source_lengths: for the pairs of an encoder-decoder, S_i, (N,) (``lengths`` are then the target
            lengths T_i); None for sequences.
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
    source_lengths: np.ndarray | None = None

    def __repr__(self) -> str:
        """One line: how many sequences, their lengths, the arrays' shapes and the compilations, never
        the arrays themselves."""
        n = len(self.relevance)
        lengths = np.asarray(self.lengths)
        pairs = self.source_lengths is not None
        parts = [f"{n} pairs" if pairs else f"{n} sequences"]
        if pairs and lengths.size:
            sources = np.asarray(self.source_lengths)
            parts.append(f"sources {int(sources.min())}..{int(sources.max())}, targets "
                         f"{int(lengths.min())}..{int(lengths.max())}")
        elif lengths.size:
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


def _check_sequences(sequences, dtype=None, layout=SEQUENCES) -> tuple[list, np.ndarray]:
    """The sequences (or the pairs of an encoder-decoder's ``layout``) as host arrays (shapes and dtypes
    checked; values are checked and cast per chunk by the driver) and their (target) lengths."""
    what = "(T, E) arrays" if layout is SEQUENCES else "pairs (source (S_i, E), target (T_i, E))"
    if isinstance(sequences, (str, bytes)) or not hasattr(sequences, "__len__"):
        raise TypeError(f"`sequences` must be a list of {what}; got {type(sequences).__name__}.")
    if len(sequences) == 0:
        raise ValueError("`sequences` is empty; at least one sequence is needed.")
    arrays = [layout.check(s, f"`sequences[{i}]`") for i, s in enumerate(sequences)]
    E = layout.parts(arrays[0])[0].shape[1]
    for i, a in enumerate(arrays):
        for part in layout.parts(a):
            if part.shape[1] != E:
                shape = "(T, E)" if layout is SEQUENCES else "(n, E) parts"
                raise ValueError(f"`sequences[{i}]` must have shape {shape} with E = {E} (as sequences[0]); got "
                                 f"{part.shape}.")
            as_floating(f"sequences[{i}]", part, dtype)
    return arrays, np.asarray([layout.length(a) for a in arrays], dtype=np.int64)


def _check_targets(targets, N: int) -> tuple[np.ndarray, bool]:
    """-> (targets (N,) int32 with -1 for 'predicted', all_classes); the classes' range is checked
    once the model's output is known (:func:`_check_range`)."""
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
    return array.astype(np.int64), False


def _check_range(targets: np.ndarray, C: int) -> np.ndarray:
    if np.any(targets >= C) or np.any((targets < 0) & (targets != -1)):
        bad = int(targets[(targets >= C) | ((targets < 0) & (targets != -1))][0])
        raise ValueError(f"`targets` must be class indices in [0, {C}); got {bad}.")
    return targets.astype(np.int32)


class _Plan(NamedTuple):
    run: Run
    arrays: list
    lengths: np.ndarray
    targets: np.ndarray
    edges: tuple
    padded: np.ndarray      # each sequence's bucket length


def _plan(method, params, sequences, targets, buckets, chunk_size, devices, tokens, residual) -> _Plan:
    layout = layout_of(method)
    arrays, lengths = _check_sequences(sequences, floating_dtype(params), layout)
    targets, all_classes = _check_targets(targets, len(arrays))
    edges = resolve_edges(buckets, lengths, chunk_size)
    assert edges is not None   # the lengths are known
    first = layout.parts(arrays[0])[0]
    run = plan_run(method, params, first.shape[1], first.dtype, all_classes, edges, chunk_size, devices,
                   tokens, residual)
    if not all_classes:
        targets = _check_range(targets, run.n_classes)
    return _Plan(run, arrays, lengths, targets, edges, assign_buckets(lengths, edges))


def _chunks(plan: _Plan) -> Iterator[Chunk]:
    """The plan's chunks, bucket by bucket (shortest first), each bucket's sequences in input order."""
    compile_buckets(plan.run, np.unique(plan.padded).tolist())
    driver = ChunkDriver(plan.run)
    for L in np.unique(plan.padded):
        for i in np.flatnonzero(plan.padded == L):
            for _, chunk in driver.add(int(i), plan.arrays[i], int(plan.targets[i])):
                yield chunk  # type: ignore[misc]  # every chunk is computed
        for _, chunk in driver.close(int(L)):
            yield chunk  # type: ignore[misc]
    for _, chunk in driver.flush():
        yield chunk  # type: ignore[misc]


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
    yield from _chunks(plan)


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
            float32's range is refused), or to the first's dtype when the parameters have several. For an
            encoder-decoder (:class:`~lrpjax.models.seq2seq.Seq2Seq` over vectors, ``model.vector_model``):
            N pairs ``(source (S_i, E), target (T_i, E))``, 1 <= S_i <= ``source_steps``, T_i >= 1,
            bucketed by T_i; each pair's relevance is (T_i, S_i + T_i, ...) (output step; the source
            positions, then the target positions), what ``method.every_step`` gives on the packed pair
            (:class:`lrpjax.datasets.layouts.Pairs`).
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
    run = plan.run
    layout = run.layout
    N = len(plan.arrays)
    sources = None if layout is SEQUENCES else np.asarray([layout.source_length(a) for a in plan.arrays], np.int64)
    before = compilations()
    relevance: list = [None] * N
    per_step = run.sequence_output
    scores: Any = [None] * N if per_step else None   # an array (N, C), or a list of (T_i, C) per step
    explained: Any = [None] * N if per_step else np.zeros((N,), np.int32)
    residuals: Any = [None] * N if run.program.residual else None   # stacked to (N, ...) at the end
    lead = int(run.program.stacked)
    inner = (2 if run.program.targets == "all" else 1) if per_step else int(run.program.targets == "all")
    for chunk in _chunks(plan):
        if scores is None:
            scores = np.zeros((N,) + chunk.scores.shape[1:], chunk.scores.dtype)
        for row, i in enumerate(chunk.indices):
            T = plan.lengths[i]
            positions = layout.positions(T, None if sources is None else sources[i])   # pairs: S_i + T_i
            if per_step:   # crop the output steps too: ([K,] T_out, [C,] T_in[, E])
                crop = (slice(None),) * lead + (slice(0, T),) + (slice(None),) * (inner - 1) + (positions,)
                scores[i], explained[i] = chunk.scores[row, :T], chunk.targets[row, :T]
            else:
                crop = (slice(None),) * (lead + inner) + (positions,)
            relevance[i] = chunk.relevance[row][crop]
            if residuals is not None and chunk.residuals is not None:   # crop the output steps of per-step outputs
                residuals[i] = chunk.residuals[row][(slice(None),) * lead + (slice(0, T),)] if per_step \
                    else chunk.residuals[row]
        if not per_step:
            scores[chunk.indices] = chunk.scores
            explained[chunk.indices] = chunk.targets
    if residuals is not None and not per_step:
        residuals = np.stack(residuals)
    return DatasetExplanation(relevance, plan.lengths, scores, explained, compilations() - before, plan.edges,
                              residuals, sources)


def eps_sweep(apply, name: str = "lrp-all", eps: Sequence[float] = (0.0, 1e-3, 1e-2, 1e-1),
              share: bool = False) -> tuple[LRP, ...]:
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
    return tuple(lrp(apply, preset(name, e, share)) for e in eps)
