"""Streaming explanation: an iterable of sequences in, results out as they finish, resumable, many processes.

:func:`iter_stream` explains an iterable of sequences of unknown length -- ``(T_i, E)`` arrays, or
``(index, array)`` pairs -- with bounded memory: each sequence goes into the buffer of its length bucket;
a buffer that holds ``chunk_size`` sequences runs as one compiled chunk (the programs of
:mod:`lrpjax.datasets`), and the partly filled buffers run at the end (or every ``window`` sequences). Memory
is bounded by one buffer per bucket, not by the input. The chunks are exactly those that
:func:`lrpjax.datasets.explain_dataset` forms for the same sequences (its buckets hold their sequences in
input order too), so the results are bit-identical to it.

:func:`explain_stream` writes the results to a directory of shards (:mod:`lrpjax.datasets.shards`) as they are
finished, and continues an interrupted run (``resume=True``) where it stopped, ending with the same
bytes as an uninterrupted run: chunks and shards are a deterministic function of the input and the
options, a finished shard is recorded in the process's log only after it is on disk, and a resumed run
reads the input again, skips the chunks of finished shards (checking that their input is unchanged)
and computes the rest. The random baseline draws by each sequence's index, so results never depend on
chunking.

Several processes (``jax.distributed``, or independent processes given ``process_index`` and
``process_count``): each explains its own chunks on its own devices (``jax.local_devices()``; no
collective per chunk) and writes its own shards and log; process 0 writes the merged
``_manifest.json`` after a barrier. With ``partition="chunks"`` every process reads the whole input
and keeps only the sequences of its chunks (chunk k of the stream belongs to process k mod P), so the
merged output equals the single-process output bit for bit; with ``partition="given"`` each process
is given its own part of the input, as ``(index, array)`` pairs with global indices.

The items of an encoder-decoder (:class:`~lrpjax.models.seq2seq.Seq2Seq` over vectors) are pairs
``(source, target)`` of embedded arrays, or ``(index, (source, target))``
(:mod:`lrpjax.datasets.layouts`); their shards say so (:mod:`lrpjax.datasets.shards`).

    from lrpjax.datasets import stream
    summary = stream.explain_stream(method, params, sequences, "out/", targets="pred", tokens=True)
    results = stream.open_results("out/")
    results.get(17).relevance         # by index
    for row in results: ...           # in input order
"""

from __future__ import annotations

import contextlib
import copy
import glob
import json
import os
import warnings
import zlib
from collections import deque
from typing import Any, Callable, Iterable, Iterator, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np

from lrpjax._types import Params
from lrpjax.datasets import shards as _shards
from lrpjax.datasets.buckets import resolve_edges
from lrpjax.datasets.driver import (MAX_INDEX, TRACED, Chunk, ChunkDriver, OpenChunk, Run, compilations, plan_run,
                                    signature)
from lrpjax.datasets.layouts import SEQUENCES, _is_pair, layout_of
from lrpjax.datasets.shards import StreamError, StreamResults, StreamRow, StreamWarning, open_results
from lrpjax.io.files import atomic_write_text
from lrpjax.io.locks import OutputLock
from lrpjax.methods.program import explain_example
from lrpjax.methods.results import MAGNITUDE_BOUND, NumericalWarning

__all__ = ["FLUSH", "Batcher", "ChunkInfo", "StreamSummary", "StreamError", "StreamWarning", "StreamResults", "StreamRow",
           "iter_stream", "explain_stream", "open_results", "DEFAULT_SHARD_BYTES"]

DEFAULT_SHARD_BYTES = 8 << 20


class _Flush:
    def __repr__(self) -> str:
        return "lrpjax.datasets.stream.FLUSH"


FLUSH = _Flush()
"""An item of the input that runs every partly filled chunk now (the results of everything before it
come out before the next item is read)."""


class ChunkInfo(NamedTuple):
    """What a chunk of the stream holds, known before it runs.

    Attributes:
        serial: the chunk's number in the stream, counting every process's chunks.
        length: its bucket length L.
        indices: its sequences' indices, (n,) int64, in input order.
        lengths: their lengths, (n,) (of pairs: the targets' lengths).
        crc: crc32 of its input (indices, lengths and values), to recognise the same input on resume.
        source_lengths: of pairs, the sources' lengths, (n,); None for sequences.
    """

    serial: int
    length: int
    indices: np.ndarray
    lengths: np.ndarray
    crc: int
    source_lengths: np.ndarray | None = None

    @classmethod
    def of(cls, chunk: OpenChunk, layout=SEQUENCES) -> ChunkInfo:
        """The info of a driver's chunk; the crc is of its input as given (only an owned chunk has it)."""
        crc = 0
        for index, x in zip(chunk.indices, chunk.xs):
            crc = layout.crc(index, x, crc)
        sources = None if layout is SEQUENCES else np.asarray(chunk.source_lengths, np.int64)
        return cls(chunk.serial, chunk.L, np.asarray(chunk.indices, np.int64), np.asarray(chunk.lengths, np.int64), crc,
                   sources)


def _unhealthy(run: Run, chunk: Chunk) -> int:
    """How many of a chunk's sequences have relevance that is not finite or (LRP) whose absolute sum
    exceeds :data:`~lrpjax.methods.results.MAGNITUDE_BOUND` times the explained score (per explanation)."""
    n = len(chunk.indices)
    if n == 0:
        return 0
    R = np.abs(np.asarray(chunk.relevance, np.float64).reshape(n, -1))
    bad = ~np.isfinite(R).all(axis=1)
    if all(m.has_residual for m in run.program.methods):
        scores = np.abs(np.asarray(chunk.scores, np.float64).reshape(n, -1))
        targets = np.asarray(chunk.targets)
        if run.program.targets == "index" and targets.ndim == 1:
            reference = scores[np.arange(n), np.clip(targets, 0, scores.shape[1] - 1)]
        else:
            reference = scores.max(axis=1)
        explanations = (len(run.program.methods) if run.program.stacked else 1) * \
            (run.n_classes if run.program.targets == "all" else 1)
        with np.errstate(invalid="ignore", over="ignore"):
            size = R.sum(axis=1) / explanations
            bad |= size > MAGNITUDE_BOUND * np.maximum(reference, 1e-8)
    return int(bad.sum())


def _warn_unhealthy(count: int, total: int) -> None:
    if count:
        warnings.warn(f"lrpjax: {count} of {total} sequence(s) have relevance that is not finite or far beyond the "
                      f"target's score (more than {MAGNITUDE_BOUND:g} times): the rules amplify rounding. Raise eps, "
                      "use share=True, or compute in float64. (StreamSummary.flagged counts them; each shard's log "
                      "line holds its count.)", NumericalWarning, stacklevel=3)


# --- setup: what the first sequence tells ------------------------------------------------------------

class _Setup(NamedTuple):
    run: Run
    targets: Callable[[int], int]
    fields: dict              # shape templates and dtypes of scores, target, relevance
    edges: tuple | None


def _target_rule(targets, C: int) -> tuple[Callable[[int], int], bool, Any]:
    """(class of sequence ``index`` (-1: predicted), all_classes, description for the fingerprint)."""
    if isinstance(targets, str):
        if targets not in ("pred", "all"):
            raise ValueError(f"`targets` as a string must be 'pred' or 'all'; got {targets!r}.")
        return (lambda index: -1), targets == "all", targets
    array = np.asarray(targets)
    if not np.issubdtype(array.dtype, np.integer) or array.ndim > 1:
        raise TypeError("`targets` must be 'pred', 'all', a class index, or class indices indexed by the "
                        f"sequences' indices (N,); got {array.dtype} of shape {array.shape}.")
    if np.any(array < 0) or np.any(array >= C):
        raise ValueError(f"`targets` must be class indices in [0, {C}); got {int(array[(array < 0) | (array >= C)].ravel()[0])}.")
    if array.ndim == 0:
        return (lambda index: int(array)), False, int(array)

    def given(index: int) -> int:
        if index >= len(array):
            raise ValueError(f"`targets` has {len(array)} entries; sequence {index} has none.")
        return int(array[index])
    return given, False, {"n": len(array), "crc32": zlib.crc32(np.ascontiguousarray(array, np.int64).tobytes())}


def _field_templates(run: Run) -> dict:
    """Shape templates of a row's fields: traced at two lengths, the axes that follow the length are "T";
    for pairs, the packed input axis (S + L positions) is "S+T" (S_i + T_i once cropped). Traced once per
    program, parameter signature and input kind."""
    key = ("fields", run.program, signature(run.params), run.E, str(run.dtype), run.layout)
    if key not in TRACED:
        TRACED[key] = _trace_templates(run)
    return copy.deepcopy(TRACED[key])


def _trace_templates(run: Run) -> dict:
    layout = run.layout

    def shapes(L):
        x = jax.ShapeDtypeStruct((layout.width(L), run.E), run.dtype)
        one = jax.ShapeDtypeStruct((), jnp.int32)
        return jax.eval_shape(lambda p, x_, m, t, i: explain_example(run.program, p, x_, m, t, i), run.params, x,
                              jax.ShapeDtypeStruct((layout.width(L),), jnp.bool_), one, one)
    a, b = shapes(2), shapes(3)
    widths = (layout.width(2), layout.width(3))
    fields = {}
    for name, sa, sb in zip(_shards.FIELDS, a, b):
        template = ["T" if (p, q) == (2, 3) else layout.symbol if (p, q) == widths else p
                    for p, q in zip(sa.shape, sb.shape)]
        fields[name] = {"shape": template, "dtype": np.dtype(sa.dtype).name}
    return fields


def _setup(method, params, x0, targets, buckets, chunk_size, devices, tokens,
           residual: bool = False) -> _Setup:
    edges = resolve_edges(buckets)
    all_classes = isinstance(targets, str) and targets == "all"
    first = layout_of(method).parts(x0)[0]   # the first item's (first) array: its E and dtype
    run = plan_run(method, params, first.shape[1], first.dtype, all_classes, edges, chunk_size, devices, tokens,
                   residual, local=True)
    target_of, _, _ = _target_rule(targets, run.n_classes)
    return _Setup(run, target_of, _field_templates(run), edges)


# --- input items -------------------------------------------------------------------------------------

class _Item(NamedTuple):
    index: int  # type: ignore[assignment]  # a field named like tuple.index
    x: Any      # a (T, E) array, or a pair of arrays (source, target) (the run's layout)


def _parse(item, position: int, last: int, first: _Item | None, layout=SEQUENCES) -> _Item:
    """Checks one input item: a (T, E) array (a pair ``(source, target)`` of arrays for an encoder-decoder),
    or an ``(index, array)`` (``(index, (source, target))``) pair with a growing index (its values are
    checked, with its chunk, by the driver)."""
    where = f"`items[{position}]`"
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], (int, np.integer)) \
            and not isinstance(item[0], bool):
        index, x = int(item[0]), item[1]
        if not 0 <= index <= MAX_INDEX:
            raise ValueError(f"{where}: the index must lie in [0, 2**31); got {index}.")
        if index <= last:
            raise ValueError(f"{where}: indices must increase; got {index} after {last}.")
    elif isinstance(item, tuple) and layout is SEQUENCES and not _is_pair(item):
        raise TypeError(f"{where} must be a (T, E) array or an (index, array) pair with an int index; got a "
                        f"tuple of {len(item)}.")
    else:
        index, x = position, item
        if index > MAX_INDEX:
            raise ValueError(f"{where}: at most 2**31 sequences can be numbered; give (index, array) pairs.")
    x = layout.check(x, where)
    parts = layout.parts(x)
    E = None if first is None else layout.parts(first.x)[0].shape[1]
    for part in parts:
        if not np.issubdtype(part.dtype, np.floating):
            raise TypeError(f"{where} must be floating point; got dtype {part.dtype}.")
        if E is not None and part.shape[1] != E:
            shape = "(T, E)" if layout is SEQUENCES else "(n, E) parts"
            raise ValueError(f"{where} must have shape {shape} with E = {E} (as the first); got {part.shape}.")
    if first is None:
        x = layout.join(tuple(p.astype(jax.dtypes.canonicalize_dtype(p.dtype), copy=False) for p in parts))
    return _Item(index, x)


def _items(items: Iterable, layout=SEQUENCES) -> Iterator[_Item | _Flush]:
    if isinstance(items, (str, bytes, np.ndarray)) or not hasattr(items, "__iter__"):
        what = "(T, E) arrays or (index, array) pairs" if layout is SEQUENCES else \
            "pairs (source, target) of arrays or (index, (source, target))"
        raise TypeError(f"`items` must be an iterable of {what}; got {type(items).__name__}.")
    position, last, first = 0, -1, None
    for item in items:
        if item is FLUSH:
            yield FLUSH
            continue
        parsed = _parse(item, position, last, first, layout)
        first = first or parsed
        position, last = position + 1, parsed.index
        yield parsed


# --- the engine --------------------------------------------------------------------------------------

def _driver(setup: _Setup, owns, compute: Callable[[ChunkInfo], bool], finite: bool) -> ChunkDriver:
    """The chunk driver of a stream: chunks named by their :class:`ChunkInfo`, sequences by their index."""
    return ChunkDriver(setup.run, owns, lambda chunk: compute(ChunkInfo.of(chunk, setup.run.layout)),
                       lambda index: ("items", f" (sequence {index})"), finite)


def _add(driver: ChunkDriver, setup: _Setup, item: _Item) -> Iterator[tuple[ChunkInfo, Chunk | None]]:
    for chunk, result in driver.add(item.index, item.x, setup.targets(item.index)):
        yield ChunkInfo.of(chunk, driver.run.layout), result


def _flush(driver: ChunkDriver) -> Iterator[tuple[ChunkInfo, Chunk | None]]:
    for chunk, result in driver.flush():
        yield ChunkInfo.of(chunk, driver.run.layout), result


def _run(setup: _Setup, first: _Item, rest: Iterator, window, owns, compute, finite: bool):
    driver = _driver(setup, owns, compute, finite)
    count = 0
    for item in _chain(first, rest):
        if item is FLUSH:
            yield from _flush(driver)
            continue
        yield from _add(driver, setup, cast(_Item, item))
        count += 1
        if window and count % window == 0:
            yield from _flush(driver)
    yield from _flush(driver)


def _chain(first, rest):
    yield first
    yield from rest


def _start(items, layout=SEQUENCES) -> tuple[_Item | None, Iterator]:
    """The first sequence (FLUSH items before it mean nothing) and the rest of the parsed input."""
    parsed = _items(items, layout)
    for item in parsed:
        if item is not FLUSH:
            return cast(_Item, item), parsed
    return None, parsed


def _check_window(window) -> None:
    if window is not None and (not isinstance(window, (int, np.integer)) or isinstance(window, bool) or window < 1):
        raise ValueError(f"`window` must be None or an int >= 1; got {window!r}.")




def iter_stream(method, params: Params, items: Iterable, targets="pred", *, buckets=None, chunk_size: int = 128,
                devices=None, tokens: bool = False, window: int | None = None,
                check_finite: bool = True, residual: bool = False) -> Iterator[Chunk]:
    """Explains an iterable of sequences, yielding each chunk's results as soon as they are fetched.

    Memory is bounded by one chunk per bucket (and by ``window``), whatever the length of the input.

    Args:
        method: a :class:`~lrpjax.methods.Method`, or a list of Methods of one model (e.g.
            :func:`lrpjax.datasets.eps_sweep`), as for :func:`lrpjax.datasets.explain_dataset`.
        params: the model's parameters.
        items: an iterable of (T_i, E) floating arrays (numbered 0, 1, ...) or of ``(index, array)``
            pairs with increasing int indices (e.g. line numbers, or positions in a larger dataset); the
            dtype of the first is used for all. :data:`FLUSH` items run the partly filled chunks. For an
            encoder-decoder (:class:`~lrpjax.models.seq2seq.Seq2Seq` over vectors): pairs ``(source,
            target)`` of (S_i, E) and (T_i, E) arrays, or ``(index, (source, target))``, bucketed by T_i
            (:class:`lrpjax.datasets.layouts.Pairs`; the shards record the layout and each source length).
        targets: ``"pred"``, ``"all"`` (every class), one class index, or class indices (N,) indexed by
            the sequences' indices.
        buckets: bucket edges (ascending; beyond the last edge its multiples), or None for powers of two
            from 8 (as :func:`lrpjax.datasets.explain_dataset`; a number of buckets needs the lengths in
            advance and is refused).
        chunk_size: sequences per compiled call; a multiple of the number of devices.
        devices: this process's devices to shard each chunk over: None (all of ``jax.local_devices()``),
            a number of them, or a list.
        tokens: sum (T, E) relevance over E on the device (word-level relevance).
        window: None (partly filled chunks run at the end: the chunks of ``explain_dataset``), or run
            them every ``window`` sequences, so every result is out within ``window`` sequences of its
            input and memory is bounded by the window as well.
        check_finite: refuse inputs holding NaN or infinity (False lets them through; their results
            are then not finite). Values that the cast to the parameters' dtype would turn into
            infinity (float64 beyond float32's range) are refused either way.
        residual: also compute the conservation residual of every explanation (``Chunk.residuals``,
            as :func:`lrpjax.datasets.explain_dataset`; :func:`explain_stream` does not store it).

    Yields:
        :class:`lrpjax.datasets.Chunk` values whose ``indices`` are the sequences' indices; their
        relevance is padded to the bucket length (crop row i to its length).

    Raises:
        ValueError, TypeError: as :func:`lrpjax.datasets.explain_dataset`, naming the item.
    """
    _check_window(window)
    first, rest = _start(items, layout_of(method))
    if first is None:
        return
    setup = _setup(method, params, first.x, targets, buckets, chunk_size, devices, tokens, residual)
    flagged = total = 0
    for _, chunk in _run(setup, first, rest, window, None, lambda info: True, check_finite):
        flagged += _unhealthy(setup.run, cast(Chunk, chunk))
        total += len(cast(Chunk, chunk).indices)
        yield cast(Chunk, chunk)   # every chunk is computed
    _warn_unhealthy(flagged, total)


class Batcher:
    """The push form of :func:`iter_stream`, for callers that interleave their own work with the
    explanation (reading lines, writing records in order): :meth:`add` one sequence at a time and
    :meth:`flush` when everything so far must come out; each returns the chunks that finished.

    Args: as :func:`iter_stream` (without ``items`` and ``window``). The model's output kind is read
    from the first sequence added.
    """

    def __init__(self, method, params: Params, targets="pred", *, buckets=None, chunk_size: int = 128,
                 devices=None, tokens: bool = False, check_finite: bool = True, residual: bool = False):
        self._arguments = (method, params, targets, buckets, chunk_size, devices, tokens, residual)
        resolve_edges(buckets)
        self._check_finite = check_finite
        self._setup: _Setup | None = None
        self._driver: ChunkDriver | None = None
        self._first: _Item | None = None
        self._last = -1

    def add(self, index: int, x) -> list[Chunk]:
        """Adds sequence ``index`` (indices increase), x (T, E); returns the chunks it completed.

        Raises:
            ValueError, TypeError: a bad index or array (as :func:`iter_stream`).
        """
        item = _parse((index, x), index, self._last, self._first, layout_of(self._arguments[0]))
        if self._driver is None:
            method, params, targets, buckets, chunk_size, devices, tokens, residual = self._arguments
            self._setup = _setup(method, params, item.x, targets, buckets, chunk_size, devices, tokens, residual)
            self._driver = _driver(self._setup, None, lambda info: True, self._check_finite)
            self._first = item
        self._last = item.index
        assert self._setup is not None
        return [cast(Chunk, chunk) for _, chunk in _add(self._driver, self._setup, item)]  # every chunk is computed

    def flush(self) -> list[Chunk]:
        """Runs every partly filled chunk; returns every chunk not returned yet."""
        return [] if self._driver is None else [cast(Chunk, chunk) for _, chunk in _flush(self._driver)]


# --- writing to disk ---------------------------------------------------------------------------------

class StreamSummary(NamedTuple):
    """What :func:`explain_stream` did in this process.

    Attributes:
        directory: the output directory.
        sequences: sequences of this process's part that are finished (kept from before, or explained now).
        explained: of them, explained by this call (not kept from an interrupted run).
        shards: this process's finished shards; ``kept``: of them, kept from an interrupted run.
        compilations: chunk programs compiled by this call.
        manifest: the path of ``_manifest.json`` if this process wrote it, else None.
        repaired: shards of an interrupted run found damaged or missing on resume and written again.
        flagged: sequences whose relevance is not finite or far beyond the target's score (see
            :func:`lrpjax.methods.results.health`; a :class:`~lrpjax.methods.results.NumericalWarning`
            says so once per call).
    """

    directory: str
    sequences: int
    explained: int
    shards: int
    kept: int
    compilations: int
    manifest: str | None
    repaired: int = 0
    flagged: int = 0


def _params_fingerprint(params) -> dict:
    crc = 0
    shapes = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        array = np.ascontiguousarray(np.asarray(leaf))
        shapes.append(f"{jax.tree_util.keystr(path)}:{array.dtype.name}{list(array.shape)}")
        crc = zlib.crc32(array.tobytes(), zlib.crc32(shapes[-1].encode(), crc))
    return {"crc32": crc, "leaves": shapes}


def _header(setup: _Setup, method, targets, buckets, window, shard_bytes, shard_format, partition,
            process_index, process_count) -> dict:
    run = setup.run
    C = run.n_classes
    config = {"methods": [m.identity() for m in run.program.methods], "stacked": run.program.stacked,
              "targets": _target_rule(targets, C)[2], "tokens": run.program.tokens,
              "buckets": None if setup.edges is None else list(setup.edges), "chunk_size": run.chunk_size,
              "window": None if window is None else int(window), "shard_bytes": int(shard_bytes),
              "E": int(run.E), "dtype": np.dtype(run.dtype).name, "classes": int(C),
              "sequence_output": run.sequence_output, "params": _params_fingerprint(run.params),
              "devices": {"count": len(run.devices), "platform": run.devices[0].platform,
                          "kind": getattr(run.devices[0], "device_kind", "")}}
    layout = run.layout.describe()
    if layout is not None:   # pairs of an encoder-decoder: what the shards' "S+T" axes and source lengths mean
        config["layout"] = layout
    return {"format": _shards.FORMAT, "version": _shards.VERSION, "shard_format": shard_format,
            "partition": partition, "process_index": process_index, "process_count": process_count,
            "config": config, "fields": setup.fields}


def _first_difference(a: Any, b: Any, where: str = "", labels: tuple[str, str] = ("before", "now")) -> str:
    """Where two headers differ, as ``config.methods[0].steps: 32 before, 64 now``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{where}.{key}" if where else key, labels)
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for k, (p, q) in enumerate(zip(a, b)):
            if p != q:
                return _first_difference(p, q, f"{where}[{k}]", labels)
    return f"{where}: {json.dumps(a)[:80]} {labels[0]}, {json.dumps(b)[:80]} {labels[1]}"


class _Log:
    """This process's log: the header, one line per finished shard, the completion line."""

    def __init__(self, directory: str, header: dict, resume: bool):
        self.path = os.path.join(directory, _shards.log_name(header["process_index"], header["process_count"]))
        self.finished: list[dict] = []
        self.damaged: list[str] = []
        self.complete: dict | None = None
        if os.path.exists(self.path):
            if not resume:
                raise StreamError(f"{directory!r} already holds the output of a run ({os.path.basename(self.path)}); "
                                  "pass resume=True to continue it, or write to another directory.")
            self._resume(header)
            self.handle = open(self.path, "a", encoding="utf-8")
        else:
            self.handle = open(self.path, "w", encoding="utf-8")
            self.append(header)

    def _resume(self, header: dict) -> None:
        records, good_end = _shards.read_log(self.path)
        if good_end != os.path.getsize(self.path):
            os.truncate(self.path, good_end)   # a last line cut short: its shard is written again
        if not records:
            with open(self.path, "w", encoding="utf-8") as handle:
                handle.write(_shards.dumps(header))
            return
        if records[0] != header:
            raise StreamError(f"cannot resume {os.path.dirname(self.path)!r}: it was written with other options "
                              f"or another model ({_first_difference(records[0], header)}); give the same "
                              "arguments, or write to another directory.")
        finished = [r for r in records[1:] if "file" in r]
        self.complete = records[-1] if records[-1].get("complete") else None
        directory = os.path.dirname(self.path)
        self.finished, self.damaged = [], []
        for entry in finished:   # every kept shard is checked against its log line (size and checksum)
            problem = _shards.check_shard_file(os.path.join(directory, entry["file"]), entry)
            if problem is None:
                self.finished.append(entry)
            else:
                self.damaged.append(f"{entry['file']}: {problem}")
        if self.damaged:
            # The log is rewritten without them (atomically), so they are computed and logged again; the
            # manifest of a complete run no longer holds until the run completes again.
            self.complete = None
            atomic_write_text(self.path, "".join(_shards.dumps(r) for r in [records[0], *self.finished]))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, "_manifest.json"))
            warnings.warn(f"resuming {directory!r}: {len(self.damaged)} kept shard(s) are damaged or missing and are "
                          f"computed again ({'; '.join(self.damaged[:3])}{'; ...' if len(self.damaged) > 3 else ''}).",
                          StreamWarning, stacklevel=4)

    def append(self, record: dict) -> None:
        self.handle.write(_shards.dumps(record))
        self.handle.flush()
        os.fsync(self.handle.fileno())
        if "file" in record:
            self.finished.append(record)

    def reorder(self, header: dict) -> None:
        """After a repair, the shard lines in shard order again (the log of an uninterrupted run)."""
        self.handle.close()
        entries = sorted(self.finished, key=lambda entry: entry["serial"])
        atomic_write_text(self.path, "".join(_shards.dumps(r) for r in [header, *entries]))
        self.handle = open(self.path, "a", encoding="utf-8")

    def close(self) -> None:
        self.handle.close()


class _Shards:
    """Groups this process's chunks into shards (deterministically, before they run), writes finished
    shards and logs them; on resume, skips the chunks of logged shards and checks their input."""

    def __init__(self, directory: str, header: dict, log: _Log, shard_bytes: int, progress, run: Run):
        self.directory, self.header, self.log, self.run = directory, header, log, run
        self.flagged = 0
        self.fields = header["fields"]
        self.shard_bytes = shard_bytes
        self.progress = progress
        self.serial, self.size = 0, 0        # the shard being planned and its bytes so far
        self.count = 0                       # shards planned
        self.pending: deque = deque()        # planned, unfinished shards: [serial, infos, parts, arrived]
        self.done = {entry["serial"]: entry for entry in log.finished}
        self.sequences = self.explained = self.kept = 0

    def _bytes(self, info: ChunkInfo) -> int:
        return int(sum(np.dtype(spec["dtype"]).itemsize *
                       _shards.row_sizes(spec["shape"], info.lengths, info.source_lengths).sum()
                       for spec in self.fields.values()))

    def compute(self, info: ChunkInfo) -> bool:
        """Plans ``info`` into the current shard; False when that shard is finished already (resume)."""
        if not self.pending or self.pending[-1][0] != self.serial:
            self.pending.append([self.serial, [], [], 0, 0])
        self.pending[-1][1].append(info)
        serial = self.serial
        self.count = serial + 1
        self.size += self._bytes(info)
        if self.size >= self.shard_bytes:   # the shard is closed: the next chunk starts another
            self.serial, self.size = self.serial + 1, 0
        return serial not in self.done

    def arrived(self, info: ChunkInfo, chunk: Chunk | None) -> None:
        shard = self.pending[0]
        if chunk is not None:
            shard[2].append(_shards.Part(info.indices, info.lengths, chunk.scores, chunk.targets, chunk.relevance,
                                         info.source_lengths))
            shard[4] += _unhealthy(self.run, chunk)
        shard[3] += 1
        if self.progress is not None:
            self.progress(len(info.indices))
        if shard[3] == len(shard[1]) and shard[0] != self.serial:
            self._finish(self.pending.popleft())

    def finish(self) -> None:
        """Writes the last shard (the input has ended)."""
        while self.pending:
            self._finish(self.pending.popleft(), at_end=True)

    def _finish(self, shard, at_end: bool = False) -> None:
        serial, infos, parts, _, flagged = shard
        n = sum(len(info.indices) for info in infos)
        crc = zlib.crc32(b"".join(np.uint32(info.crc).tobytes() for info in infos))
        if serial in self.done:
            entry = self.done[serial]
            if at_end and n < entry["rows"]:
                raise StreamError(f"cannot resume {self.directory!r}: this input ends before the sequences of "
                                  f"{entry['file']}; it was written from a longer input.")
            if entry["rows"] != n or entry["input_crc32"] != crc:
                raise StreamError(f"cannot resume {self.directory!r}: the input differs from the run that wrote "
                                  f"{entry['file']} (sequences {entry['index_min']}..{entry['index_max']}); it "
                                  "was written from another input.")
            self.kept += n
            self.flagged += entry.get("flagged", 0)
        else:
            indices = np.concatenate([info.indices for info in infos])
            name = _shards.shard_name(self.header["process_index"], serial, self.header["shard_format"])
            size, checksum = _shards.write_shard(os.path.join(self.directory, name), parts, self.fields,
                                                 self.header["shard_format"], self.header)
            self.log.append({"file": name, "serial": serial, "rows": n, "index_min": int(indices.min()),
                             "index_max": int(indices.max()), "input_crc32": crc, "bytes": size,
                             "crc32": checksum, **({"flagged": flagged} if flagged else {})})
            self.flagged += flagged
            self.explained += n
        self.sequences += n


def _process(process_index, process_count) -> tuple[int, int]:
    count = jax.process_count() if process_count is None else process_count
    index = jax.process_index() if process_index is None else process_index
    for name, value in (("process_index", index), ("process_count", count)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError(f"`{name}` must be an int; got {type(value).__name__}.")
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"`process_index` must lie in [0, process_count) = [0, {count}); got {index}.")
    return int(index), int(count)


def _prepare_directory(directory: str, process_index: int, process_count: int) -> None:
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise StreamError(f"`out` {directory!r} exists and is not a directory.")
    os.makedirs(directory, exist_ok=True)
    count, _ = _shards.scan_directory(directory)
    if count is not None and count != process_count:
        raise StreamError(f"{directory!r} holds the output of a run with {count} process(es); this run has "
                          f"{process_count}. Resume with the same number of processes, or write to another directory.")


def _remove_stale_temporaries(directory: str, process_index: int) -> None:
    """Removes this process's shards that were being written when it was killed (under its lock)."""
    for stale in glob.glob(os.path.join(glob.escape(directory), f".part-{process_index:05d}-*.tmp")):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)


def explain_stream(method, params: Params, items: Iterable, out: str | os.PathLike[str], targets="pred", *,
                   buckets=None, chunk_size: int = 128, devices=None, tokens: bool = False,
                   window: int | None = None, resume: bool = False, format: str = "npz",
                   shard_bytes: int = DEFAULT_SHARD_BYTES, partition: str = "chunks",
                   process_index: int | None = None, process_count: int | None = None,
                   progress: Callable[[int], None] | None = None, check_finite: bool = True,
                   timeout: float = 3600.0) -> StreamSummary:
    """Explains an iterable of sequences into a directory of shards, resumably (see the module docstring).

    Memory is bounded by one chunk per bucket plus one shard (``shard_bytes`` of results). ``method``,
    ``params``, ``items``, ``targets``, ``buckets``, ``chunk_size``, ``devices``, ``tokens``, ``window``
    and ``check_finite`` are those of :func:`iter_stream`.

    Args:
        out: the output directory (created if missing).
        resume: continue the run whose output is in ``out`` (same arguments, same input), or start one
            if there is none; without it, an ``out`` that holds a run is refused (nothing is destroyed).
        format: ``"npz"`` (numpy only) or ``"parquet"`` (needs pyarrow: the ``parquet`` extra).
        shard_bytes: a shard is closed when its results reach this many bytes (at least one chunk each).
        partition: ``"chunks"`` (every process reads the whole input; chunk k is explained by process
            k mod P) or ``"given"`` (each process's ``items`` are its own part, with global indices).
        process_index, process_count: this process's number and the number of processes (default
            ``jax.process_index()``, ``jax.process_count()``: one, without ``jax.distributed``).
        progress: called with the number of sequences finished after each chunk.
        timeout: under ``jax.distributed``, how long (seconds) a process waits for the others at the start
            and at the end before it names the missing process as lost.

    Under ``jax.distributed`` the processes agree before they work and before they finish, through the
    coordination service's key-value store (no device collective): each publishes its run's
    identity (every argument that changes results, the model's digest, its devices) and, with
    ``partition="chunks"``, a digest of its first sequence; at the end the number of sequences it read
    and a digest of all of them. A mismatch is refused by every process, naming the argument and the
    processes, before any completion is logged; a process that fails or does not arrive within
    ``timeout`` is named, with how to restart. Each process holds an exclusive lock on its part of ``out``
    (``.lock-<process>``) while it writes: a second writer is refused, naming the holder.

    Returns:
        A :class:`StreamSummary`.

    Raises:
        StreamError: ``out`` holds another run (other options, model, input or process count), or a
            run while ``resume`` is False; processes that disagree, fail or are lost.
        lrpjax.io.locks.LockError: another live process writes this process's part of ``out``.
        ValueError, TypeError: bad arguments or items, as :func:`iter_stream`.
    """
    _check_window(window)
    _shards.check_shard_format(format)
    if partition not in ("chunks", "given"):
        raise ValueError(f"`partition` must be 'chunks' or 'given'; got {partition!r}.")
    if not isinstance(shard_bytes, (int, np.integer)) or isinstance(shard_bytes, bool) or shard_bytes < 1:
        raise ValueError(f"`shard_bytes` must be an int >= 1; got {shard_bytes!r}.")
    process_index, process_count = _process(process_index, process_count)
    directory = os.fspath(out)
    first, rest = _start(items, layout_of(method))
    if first is None:
        raise ValueError("`items` is empty; at least one sequence is needed.")
    if not isinstance(timeout, (int, float, np.integer, np.floating)) or isinstance(timeout, bool) \
            or not 0 < timeout < float("inf"):
        raise ValueError(f"`timeout` must be a number of seconds > 0; got {timeout!r}.")
    setup = _setup(method, params, first.x, targets, buckets, chunk_size, devices, tokens)
    header = _header(setup, method, targets, buckets, window, shard_bytes, format, partition, process_index,
                     process_count)
    peers = _Peers.of(header, float(timeout))
    if peers is not None:
        peers.agree("start", {"run": _header_key(header),
                              "first": setup.run.layout.crc(first.index, first.x)
                              if partition == "chunks" else None})
    try:
        _prepare_directory(directory, process_index, process_count)
        lock = OutputLock(os.path.join(directory, f".lock-{process_index:05d}"),
                          f"the stream output {directory!r} (process {process_index} of {process_count})")
        with lock:
            _remove_stale_temporaries(directory, process_index)
            log = _Log(directory, header, resume)
            try:
                return _write(setup, header, log, directory, first, rest, window, shard_bytes, partition, progress,
                              check_finite, peers)
            finally:
                log.close()
    except BaseException as error:
        if peers is not None:
            peers.fail(error)
        raise


def _header_key(header: dict) -> dict:
    return {k: v for k, v in header.items() if k != "process_index"}


_CALLS = [0]


class _Peers:
    """The other processes of a ``jax.distributed`` run, reached through the coordination service's
    key-value store: every process publishes a value per stage and reads everyone's."""

    def __init__(self, client, index: int, count: int, timeout: float):
        _CALLS[0] += 1   # the processes call explain_stream in the same order: equal names for one run
        self.client, self.index, self.count, self.timeout = client, index, count, timeout
        self.prefix = f"lrpjax/explain_stream/{_CALLS[0]}"
        self.failed = False

    @classmethod
    def of(cls, header: dict, timeout: float) -> _Peers | None:
        count = header["process_count"]
        if count == 1 or jax.process_count() != count:
            return None
        from jax._src import distributed

        client = distributed.global_state.client
        return None if client is None else cls(client, header["process_index"], count, timeout)

    def _publish(self, stage: str, value: dict) -> None:
        self.client.key_value_set(f"{self.prefix}/{stage}/{self.index}", json.dumps(value, sort_keys=True))

    def _read(self, stage: str, process: int, deadline: float) -> dict:
        import time

        key = f"{self.prefix}/{stage}/{process}"
        while True:
            left = deadline - time.monotonic()
            try:
                return json.loads(self.client.blocking_key_value_get(key, int(max(1.0, min(left, 2.0)) * 1000)))
            except Exception:   # noqa: BLE001 - the client reports a deadline as a runtime error
                if self._lost(process) or time.monotonic() >= deadline:
                    self.failed = True
                    what = "start" if stage == "start" else "finish"
                    raise StreamError(
                        f"process {process} of {self.count} did not {what} within {self.timeout:g} s (`timeout`): "
                        "it was lost (killed, out of memory, its host failed) or is still working. The finished "
                        "shards of every process are kept: once process "
                        f"{process} is known to be gone, restart all {self.count} processes with the same arguments "
                        "and resume=True; each continues where it stopped.") from None

    def _lost(self, process: int) -> bool:
        try:
            return process not in self.client.get_live_nodes(list(range(self.count)))
        except Exception:   # noqa: BLE001 - not every coordination service answers this
            return False

    def agree(self, stage: str, value: dict, what: str = "arguments") -> None:
        """Publishes ``value`` and checks that every process published an equal one.

        Raises:
            StreamError: a process that differs (naming the first difference), failed, or is lost.
        """
        import time

        self._publish(stage, value)
        deadline = time.monotonic() + self.timeout
        values = [value if p == self.index else self._read(stage, p, deadline) for p in range(self.count)]
        for process, other in enumerate(values):
            if "error" in other:
                self.failed = True
                raise StreamError(f"process {process} of {self.count} failed: {other['error']}; fix it, then "
                                  "restart every process with the same arguments and resume=True.")
        for process, other in enumerate(values[1:], start=1):
            if other != values[0]:
                self.failed = True
                raise StreamError(f"the processes disagree: process {process} has other {what} than process 0 "
                                  f"({_first_difference(values[0], other, labels=('in process 0', f'in process {process}'))}); "
                                  "every process must be given the same arguments (and, with partition='chunks', "
                                  "the same input). Nothing was marked complete.")

    def fail(self, error: BaseException) -> None:
        """Tells the other processes that this one stopped (they stop waiting and name it)."""
        if self.failed:
            return
        self.failed = True
        message = " ".join(str(error).split())[:300] or type(error).__name__
        for stage in ("start", "end", "logged"):
            try:
                self._publish(stage, {"error": f"{type(error).__name__}: {message}"})
            except Exception:   # noqa: BLE001 - a key already set: that stage was passed
                pass


def _write(setup, header, log: _Log, directory, first, rest, window, shard_bytes, partition, progress, finite,
           peers: _Peers | None):
    process_index, process_count = header["process_index"], header["process_count"]
    owns = (lambda serial: serial % process_count == process_index) if partition == "chunks" else \
        (lambda serial: True)
    shards = _Shards(directory, header, log, int(shard_bytes), progress, setup.run)
    before = compilations()
    seen = 0
    layout = setup.run.layout
    digest = layout.crc(first.index, first.x)

    def counted(items):
        nonlocal seen, digest
        for item in items:
            if item is not FLUSH:
                seen += 1
                digest = layout.crc(item.index, item.x, digest)
            if log.complete is not None and seen + 1 > log.complete["input"]:
                raise StreamError(f"cannot resume {directory!r}: its run is complete after {log.complete['input']} "
                                  "sequences, and this input holds more; it was written from another input.")
            yield item

    for info, chunk in _run(setup, first, counted(rest), window, owns, shards.compute, finite):
        shards.arrived(info, chunk)
    shards.finish()
    seen += 1   # the first item
    logged = {entry["serial"] for entry in log.finished}
    missing = sorted(logged - set(range(shards.count)))
    if log.damaged and not missing:
        log.reorder(header)
    if missing:
        raise StreamError(f"cannot resume {directory!r}: it holds shards this input does not reach (from shard "
                          f"{missing[0]}); it was written from a longer input.")
    completion = {"complete": True, "sequences": shards.sequences, "shards": shards.count, "input": seen,
                  "input_crc32": digest}
    if peers is not None and partition == "chunks":
        peers.agree("end", {"input": seen, "input_crc32": digest}, what="input")
    elif peers is not None:
        peers.agree("end", {})
    if log.complete is None:
        log.append(completion)
    elif any(log.complete.get(k, v) != v for k, v in completion.items()):
        raise StreamError(f"cannot resume {directory!r}: the finished run read {log.complete.get('input')} "
                          f"sequences; this input has {seen}"
                          f"{' with other values' if log.complete.get('input') == seen else ''}; it was written "
                          "from another input.")
    if peers is not None:
        peers.agree("logged", {})
    manifest = _finalize(directory, header, peers)
    _warn_unhealthy(shards.flagged, shards.sequences)
    return StreamSummary(directory, shards.sequences, shards.explained, shards.count, shards.kept,
                         compilations() - before, manifest, len(log.damaged), shards.flagged)


def _finalize(directory: str, header: dict, peers: _Peers | None) -> str | None:
    """Writes the merged manifest once every process is complete: process 0 once every process has logged
    its completion (under ``jax.distributed``); otherwise whichever process finds every log complete (they
    write equal bytes)."""
    process_count = header["process_count"]
    if peers is not None and header["process_index"] != 0:
        return None
    _, logs = _shards.scan_directory(directory)
    entries: list[dict[str, Any]] = []
    for process in range(process_count):
        if process not in logs:
            return None
        records, _ = _shards.read_log(logs[process])
        if not records or not records[-1].get("complete"):
            return None
        entries.extend({**r, "process": process} for r in records[1:] if "file" in r)
    return _shards.write_manifest(directory, header, entries)
