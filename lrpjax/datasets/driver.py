"""The one chunk driver: sequences in, length buckets, fixed-size chunks run by one compiled program each,
finished chunks out. :func:`lrpjax.datasets.explain_dataset`, :func:`~lrpjax.datasets.iter_chunks`,
the streams of :mod:`lrpjax.datasets.stream`, the SST application and the experiments all run on it.

* **Programs** -- a chunk's program is :func:`lrpjax.methods.program.explain_chunk` jit-compiled for one
  (bucket length L, chunk size B) and kept in a cache keyed by everything that shapes it (the
  :class:`~lrpjax.methods.program.Program`, L, B, input and parameter shapes and dtypes, devices);
  :func:`compilations` counts the compilations of the process.
* **Several devices** -- each chunk's batch axis is sharded over a 1-D device mesh named ``"batch"``,
  parameters are replicated. Under ``jax.distributed`` the mesh spans every process's devices.
* **Host work per chunk** -- a sequence of another dtype is cast to the parameters' when it is added
  (a value the cast would turn into infinity is refused there, naming it); a chunk is packed into one
  padded array (dummy rows beyond the last sequence hold one valid zero step), checked for finiteness
  as a whole, and launched before the previous chunk's results are fetched, so the host packs the next chunk
  while the devices work; results stay packed (:class:`Chunk`) and callers crop views of them.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from collections import deque
from functools import partial
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lrpjax._types import Params
from lrpjax.datasets.buckets import bucket_rule
from lrpjax.datasets.layouts import SEQUENCES, layout_of
from lrpjax.methods.base import Method, check_param_leaves
from lrpjax.methods.inputs import cast_input, check_finite, floating_dtype
from lrpjax.methods.program import Program, explain_chunk

__all__ = ["Chunk", "Run", "ChunkDriver", "OpenChunk", "plan_run", "pack", "compilations", "clear_cache", "compile_buckets",
           "check_methods", "check_devices", "put", "fetch", "signature"]

MAX_INDEX = 2**31 - 1
"""Chunk programs number sequences with int32."""


class Chunk(NamedTuple):
    """One chunk of results, packed: row r is the sequence ``indices[r]``.

    Attributes:
        indices: positions of the chunk's sequences in the dataset or stream, (B_valid,).
        relevance: their relevance, padded: (B_valid, [K,] [C,] L[, E]) with L the bucket length
            (per-step outputs: (B_valid, [K,] L, [C,] L[, E])); crop row r to its length. Pairs of an
            encoder-decoder (:class:`~lrpjax.datasets.layouts.Pairs`): (B_valid, [K,] L, [C,] S + L[, E]),
            the input axis packed (source padded to S, then the target padded to L); crop row r to the
            output steps ``:T_r`` and the input positions ``layout.positions(T_r, S_r)``.
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


# --- checks of a run's arguments ----------------------------------------------------------------------

def check_methods(method) -> tuple[tuple[Method, ...], bool]:
    """(the methods, whether they were given as a list: a leading K axis).

    Raises:
        TypeError: not a Method nor a non-empty list of Methods.
        ValueError: a list of methods of different models.
    """
    stacked = isinstance(method, (list, tuple))
    methods = tuple(method) if stacked else (method,)
    if not methods or not all(isinstance(m, Method) for m in methods):
        raise TypeError("`method` must be an lrpjax Method or a non-empty list of Methods; "
                        f"got {type(method).__name__}.")
    if any(m.apply is not methods[0].apply and m.apply != methods[0].apply for m in methods):
        raise ValueError("`method`: all methods of a list must explain the same model (equal `apply`).")
    return methods, stacked


def check_residual(residual, methods: tuple) -> bool:
    """Whether the programs compute residuals: asked for, and every method has one.

    Raises:
        TypeError: ``residual`` not a bool.
        ValueError: a list mixing methods with and without a residual.
    """
    if not isinstance(residual, bool):
        raise TypeError(f"`residual` must be a bool; got {type(residual).__name__}.")
    has = [m.has_residual for m in methods]
    if residual and any(has) and not all(has):
        names = [m.name for m, h in zip(methods, has) if not h]
        raise ValueError(f"`residual=True`: the methods {names} have no conservation residual (only LRP on a "
                         "model of lrpjax.models has one); list them separately.")
    return residual and all(has)


def check_devices(devices, chunk_size: int, local: bool = False) -> tuple:
    """The devices to shard chunks over: every device JAX sees, or with ``local`` this process's own.

    Raises:
        ValueError: a bad number of devices, none, or a chunk size that is not a multiple of their number.
    """
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


def signature(params) -> tuple:
    """The parameters' tree structure, shapes and dtypes (what a compiled program depends on, and a key of
    the traced shapes)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    return treedef, tuple((np.shape(a), str(jnp.result_type(a))) for a in leaves)


_KINDS: dict = {}
TRACED: dict = {}
"""Shapes traced once per program and input kind by the drivers (e.g. a stream's field templates); cleared
with the compiled programs (:func:`clear_cache`)."""


def _output_kind(method: Method, params, E: int, dtype, layout=SEQUENCES) -> tuple[int, bool]:
    """(C, whether the model outputs one score vector per step) for an item of a few steps (a row of
    ``layout.width(3)`` positions: 3 steps, or a pair with a 3-step target); traced once per model,
    parameter signature and input.

    Raises:
        ValueError: an output other than (C,) or (T, C).
    """
    T = 3
    key = (method.apply, signature(params), E, str(dtype), layout)
    if key not in _KINDS:
        _KINDS[key] = jax.eval_shape(lambda p, x_: method.apply(p, x_, None), params,
                                     jax.ShapeDtypeStruct((layout.width(T), E), dtype)).shape
    scores = jax.ShapeDtypeStruct(_KINDS[key], dtype)
    sequence_output = len(scores.shape) == 2
    if len(scores.shape) not in (1, 2) or (sequence_output and scores.shape[0] != T):
        raise ValueError(f"`method`: the model's output for a sequence of {T} steps has shape {tuple(scores.shape)}; "
                         "datasets need (C,) or one score vector per step (T, C).")
    return scores.shape[-1], sequence_output


# --- a run: everything fixed before the first chunk ------------------------------------------------------

class Run(NamedTuple):
    """Everything fixed before the first chunk of a run.

    Attributes:
        program: the per-example program (methods, how targets are given, tokens, residual).
        params: the model's parameters.
        chunk_size: B, sequences per compiled call.
        devices: the devices each chunk is sharded over.
        E: the input's feature size.
        dtype: the dtype every sequence is cast to (the parameters').
        bucket: the padded length of a T-step sequence.
        n_classes: C.
        sequence_output: the model outputs (T, C).
        full: relevance keeps the feature axis E (no ``tokens``, no position-wise method).
        layout: what an item is and how it is packed (:mod:`lrpjax.datasets.layouts`): single sequences,
            or the pairs of an encoder-decoder (bucketed by the target length).
    """

    program: Program
    params: Params
    chunk_size: int
    devices: tuple
    E: int
    dtype: np.dtype
    bucket: Callable[[int], int]
    n_classes: int
    sequence_output: bool
    full: bool
    layout: Any = SEQUENCES


def plan_run(method, params: Params, E: int, x_dtype, all_classes: bool, edges: tuple[int, ...] | None,
             chunk_size: int, devices, tokens: bool, residual: bool, local: bool = False) -> Run:
    """Checks a run's arguments and fixes its program.

    Args:
        method: a Method or a list of Methods of one model.
        params: the model's parameters (checked finite).
        E: the input's feature size.
        x_dtype: the first sequence's dtype (used when the parameters have no single floating dtype).
        all_classes: explain every output (``targets="all"``), else one class per sequence or step.
        edges: bucket edges, or None for powers of two from 8.
        chunk_size, devices: see :func:`check_devices` (``local``: this process's devices only).
        tokens: word-level sums on the device.
        residual: conservation residuals (see :func:`check_residual`).

    Raises:
        TypeError, ValueError: as the checks say, naming the argument.
    """
    methods, stacked = check_methods(method)
    check_param_leaves(params)
    with_residual = check_residual(residual, methods)
    devices = check_devices(devices, chunk_size, local=local)
    check_finite("params", params)
    if not isinstance(tokens, bool):
        raise TypeError(f"`tokens` must be a bool; got {type(tokens).__name__}.")
    layout = layout_of(methods)
    dtype = floating_dtype(params)
    dtype = np.dtype(jax.dtypes.canonicalize_dtype(x_dtype)) if dtype is None else np.dtype(dtype)
    C, sequence_output = _output_kind(methods[0], params, E, dtype, layout)
    kind = "all" if all_classes else ("per_step" if sequence_output else "index")
    program = Program(methods, kind, stacked=stacked, tokens=tokens, residual=with_residual)
    full = not tokens and not any(m.per_position for m in methods)
    return Run(program, params, int(chunk_size), devices, E, dtype, bucket_rule(edges), C, sequence_output, full,
               layout)


# --- compiled programs --------------------------------------------------------------------------------

class _Compiled(NamedTuple):
    call: Callable[..., Any]
    batch: NamedSharding
    replicated: NamedSharding


_CACHE: dict = {}
_COUNT = [0]
_LOCK = threading.Lock()


def compilations() -> int:
    """How many chunk programs this process has compiled so far (every run of every driver)."""
    return _COUNT[0]


def clear_cache() -> None:
    """Forgets the compiled chunk programs and the traced output shapes (the counter keeps counting)."""
    _CACHE.clear()
    _KINDS.clear()
    TRACED.clear()


def _abstract(tree, sharding):
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a),
                                                                   sharding=sharding), tree)


def _compiled(run: Run, L: int) -> _Compiled:
    """The compiled program of a (bucket length L, chunk size B), from the cache or compiled now."""
    B = run.chunk_size
    key = (run.program, run.layout, L, B, run.E, str(run.dtype), signature(run.params),
           tuple(d.id for d in run.devices))
    if key not in _CACHE:
        mesh = Mesh(np.asarray(run.devices), ("batch",))
        batch = NamedSharding(mesh, PartitionSpec("batch"))
        replicated = NamedSharding(mesh, PartitionSpec())
        fn = jax.jit(partial(explain_chunk, run.program), in_shardings=(replicated, batch, batch, batch, batch),
                     out_shardings=batch)
        width = run.layout.width(L)
        args = (_abstract(run.params, replicated), jax.ShapeDtypeStruct((B, width, run.E), run.dtype, sharding=batch),
                jax.ShapeDtypeStruct((B, width), jnp.bool_, sharding=batch),
                jax.ShapeDtypeStruct((B,), jnp.int32, sharding=batch),
                jax.ShapeDtypeStruct((B,), jnp.int32, sharding=batch))
        compiled = fn.lower(*args).compile()
        with _LOCK:
            _COUNT[0] += 1
            _CACHE[key] = _Compiled(compiled, batch, replicated)
    return _CACHE[key]


def compile_buckets(run: Run, lengths: Sequence[int]) -> None:
    """Compiles the programs of these bucket lengths at once, on as many threads as there are CPU cores
    (XLA compiles outside the GIL), so that compilation costs less wall time."""
    lengths = sorted(set(lengths))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = min(len(lengths), cores)
    if threads < 2:
        return
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda L: _compiled(run, L), lengths))


def put(host, sharding):
    """Places host arrays (an array or a pytree of them) on the devices of ``sharding`` (every process
    holds the whole arrays)."""
    if jax.process_count() == 1 or sharding.is_fully_addressable:
        # The chunk's host arrays are fresh and never written again: the devices may use them in place
        # (on the CPU this saves a copy of every chunk).
        return jax.device_put(host, sharding, may_alias=True)
    return jax.tree_util.tree_map(
        lambda a: jax.make_array_from_callback(np.shape(a), sharding, lambda index: np.asarray(a)[index]), host)


def fetch(array) -> np.ndarray:
    """A global array as one host array, on every process."""
    if array.is_fully_addressable:
        return np.asarray(array)
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(array, tiled=True))


# --- the driver ---------------------------------------------------------------------------------------

class OpenChunk:
    """A bucket's chunk being filled: the sequences (as given: arrays, or pairs of arrays), their indices,
    lengths (a pair's: its target's; ``source_lengths`` its source's) and targets."""

    def __init__(self, serial: int, L: int, owned: bool):
        self.serial, self.L, self.owned = serial, L, owned
        self.indices: list[int] = []
        self.lengths: list[int] = []
        self.source_lengths: list[int | None] = []
        self.targets: list[int] = []
        self.xs: list[Any] = []

    def add(self, index: int, x: Any, target: int, layout=SEQUENCES) -> None:
        self.indices.append(index)
        self.lengths.append(layout.length(x))
        self.source_lengths.append(layout.source_length(x))
        if self.owned:
            self.xs.append(x)
            self.targets.append(target)


def pack(xs: Sequence[Any], L: int, B: int, targets: Sequence[int], indices: Sequence[int], layout=SEQUENCES):
    """Host arrays of one chunk of ``len(xs) <= B`` items (sequences (T_i, E), or what ``layout`` takes):
    X (B, W, E) in the items' common dtype with W = ``layout.width(L)`` (L for sequences), mask (B, W),
    targets (B,) and index (B,) int32. Dummy rows (beyond ``len(xs)``) hold one valid zero step (of each
    part of a pair), so that no row is empty; their results are dropped."""
    rows = len(xs)
    parts = [p for x in xs for p in layout.parts(x)]
    X = np.zeros((B, layout.width(L), parts[0].shape[1]), np.result_type(*parts))
    mask = np.zeros((B, layout.width(L)), bool)
    layout.dummy(mask[rows:])
    for r, x in enumerate(xs):
        layout.place(x, X[r], mask[r])
    chunk_targets = np.zeros((B,), np.int32)
    chunk_targets[:rows] = targets
    index = np.zeros((B,), np.int32)
    index[:rows] = indices
    return X, mask, chunk_targets, index


def _check_finite(X: np.ndarray, rows: int, indices: Sequence[int], where: Callable[[int], tuple[str, str]]) -> None:
    """Refuses non-finite values in the packed chunk X (B, L, E): one check of the whole chunk, then the
    first offending sequence named (``where(index)``: its name and a suffix)."""
    if not np.isfinite(X).all():
        row = int(np.flatnonzero(~np.isfinite(X[:rows]).reshape(rows, -1).all(axis=1))[0])
        name, suffix = where(indices[row])
        raise ValueError(f"`{name}`{suffix} contains non-finite values (NaN or inf).")


class ChunkDriver:
    """Buckets sequences as they are added, launches every full chunk (each before the previous one is
    fetched) and gives back finished chunks in launch order.

    Args:
        run: the run (:func:`plan_run`).
        owns: ``owns(serial) -> bool``, whether this process explains the chunk numbered ``serial`` (in
            opening order; default all); a chunk it does not own is counted but never packed.
        compute: ``compute(chunk) -> bool`` for an owned chunk about to launch: False skips it (a
            resumed stream's finished chunk); default all.
        where: how errors name sequence ``index``: ``(name, suffix)``, default ``("sequences[index]", "")``.
        finite: refuse non-finite values in the input.
    """

    def __init__(self, run: Run, owns: Callable[[int], bool] | None = None,
                 compute: Callable[[OpenChunk], bool] | None = None,
                 where: Callable[[int], tuple[str, str]] | None = None,
                 finite: bool = True):
        self.run = run
        self.owns = owns or (lambda serial: True)
        self.compute = compute or (lambda chunk: True)
        self.where = where or (lambda index: (f"sequences[{index}]", ""))
        self.finite = finite
        self.open: dict[int, OpenChunk] = {}
        self.serial = 0
        self.launched: deque = deque()
        self.placed: dict[Any, Params] = {}  # replicated sharding -> parameters placed with it

    def add(self, index: int, x: Any, target: int = -1) -> Iterator[tuple[OpenChunk, Chunk | None]]:
        """Adds sequence ``index`` (x (T, E), or an item of the run's layout, checked by it: a pair of an
        encoder-decoder; target class or -1 for the predicted one); yields the chunks that finished (each
        with its results, or None for a chunk skipped by ``compute``)."""
        layout = self.run.layout
        L = self.run.bucket(layout.length(x))
        chunk = self.open.get(L)
        owned = self.owns(self.serial) if chunk is None else chunk.owned
        parts = layout.parts(x)
        if owned and any(p.dtype != self.run.dtype for p in parts):
            # A cast is refused when the sequence is added (naming it; the driver keeps working): values
            # the cast would turn into infinity. Finiteness is checked per chunk (_check_finite).
            name, suffix = self.where(index)
            x = layout.join(tuple(cast_input(name, p, self.run.dtype, suffix, finite=False) for p in parts))
        if chunk is None:
            chunk = self.open[L] = OpenChunk(self.serial, L, owned)
            self.serial += 1
        chunk.add(index, x, target, layout)
        if len(chunk.indices) == self.run.chunk_size:
            del self.open[L]
            yield from self._submit(chunk)

    def close(self, L: int) -> Iterator[tuple[OpenChunk, Chunk | None]]:
        """Launches the partly filled chunk of bucket ``L`` now (if there is one), without waiting for the
        chunks still running; yields the chunks that finished."""
        chunk = self.open.pop(L, None)
        if chunk is not None:
            yield from self._submit(chunk)

    def flush(self) -> Iterator[tuple[OpenChunk, Chunk | None]]:
        """Runs every partly filled chunk (in the order they were opened) and fetches every result."""
        for chunk in sorted(self.open.values(), key=lambda c: c.serial):
            yield from self._submit(chunk)
        self.open.clear()
        while self.launched:
            yield self._collect(self.launched.popleft())

    def _submit(self, chunk: OpenChunk):
        if not chunk.owned:
            return
        handle = self._launch(chunk) if self.compute(chunk) else None
        self.launched.append((chunk, handle))
        while self.launched and (len(self.launched) > 1 or self.launched[0][1] is None):
            yield self._collect(self.launched.popleft())

    def _pack(self, chunk: OpenChunk):
        packed = pack(chunk.xs, chunk.L, self.run.chunk_size, chunk.targets, chunk.indices, self.run.layout)
        if self.finite:
            _check_finite(packed[0], len(chunk.xs), chunk.indices, self.where)
        return packed

    def _launch(self, chunk: OpenChunk):
        compiled = _compiled(self.run, chunk.L)
        if compiled.replicated not in self.placed:
            self.placed[compiled.replicated] = jax.tree_util.tree_map(
                lambda a: put(np.asarray(a), compiled.replicated), self.run.params)
        placed = put(self._pack(chunk), compiled.batch)   # one transfer call for the chunk's four arrays
        return compiled.call(self.placed[compiled.replicated], *placed)

    @staticmethod
    def _collect(entry) -> tuple[OpenChunk, Chunk | None]:
        chunk, outputs = entry
        if outputs is None:
            return chunk, None
        n = len(chunk.indices)
        residual = None if outputs.residual is None else fetch(outputs.residual)[:n]
        return chunk, Chunk(np.asarray(chunk.indices, np.int64), fetch(outputs.relevance)[:n],
                            fetch(outputs.scores)[:n], fetch(outputs.targets)[:n], residual)
