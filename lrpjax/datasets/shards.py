"""The on-disk form of a streamed explanation: shards, per-process logs, a manifest, and the reader.

A run of :func:`lrpjax.datasets.stream.explain_stream` writes one directory::

    out/
      _log-00000-of-00001.jsonl      what process 0 of 1 has finished: a header line (the run's
                                     configuration and the fields' shapes), one line per finished shard,
                                     a last line {"complete": true, ...} when the process is done
      part-00000-000000.npz          shard 0 of process 0: one row per sequence
      part-00000-000001.npz          ...
      _manifest.json                 written once every process is complete: the merged view (every
                                     shard with its rows and index range, the configuration, the fields)

Every shard is written atomically (temporary file, fsync, rename) *before* its log line is appended and
fsync-ed, so the log never names a shard that is not whole; the log line carries the shard's size and the
CRC-32 of its bytes (``"crc32"``, for both formats), which the reader checks before decoding and a resumed
run checks for every kept shard (a shard deleted, truncated or altered since is written again); a shard on disk but not in the log (the run
was killed in between) is written again, with the same bytes, when the run resumes. Names starting with
``_`` or ``.`` are the ones Parquet readers (pyarrow, pandas, Spark, DuckDB) skip, so a directory of
Parquet shards is itself a dataset those tools read.

A shard holds, for its n sequences (chunk after chunk; within a chunk in input order):

* ``index`` (n,) int64: the sequence's number in the input (its position, or the index it came with);
* ``length`` (n,) int64: T_i;
* ``scores``, ``target``, ``relevance``: each field has a shape template in the header, e.g.
  relevance ``["T", 60]`` for (T_i, E), ``[3, 5, "T"]`` for 3 methods x 5 classes of word-level
  relevance, ``["T", 5, "T"]`` for a per-step model (output step, class, input step); scores ``[5]``
  or ``["T", 5]``; target ``[]`` or ``["T"]``. A field without "T" is stored dense, (n, *shape); a field
  with "T" is stored flat, every row's values (C order) one after the other, row i taking
  ``prod(shape with T = T_i)`` values (the offsets follow from ``length``).

**Pairs** (an encoder-decoder's items, :class:`lrpjax.datasets.layouts.Pairs`): the header's
``config.layout`` is ``{"kind": "pair", "source_steps": S}``, ``length`` holds the target lengths T_i and
a column ``source_length`` (n,) int64 the source lengths S_i; the input axis of ``relevance`` is ``"S+T"``
in the templates, S_i + T_i values per row (the source positions, then the target positions), e.g.
``["T", "S+T", 8]`` for (T_i, S_i + T_i, E) or ``["T", 5, "S+T"]`` with every class. A run of pairs and
a run of sequences never read as each other: the header and the templates differ, and a resume compares
the header.

Formats: ``.npz`` (numpy only; uncompressed zip of ``.npy`` members written with fixed timestamps, so an
interrupted and resumed run leaves byte-identical files) or ``.parquet`` (needs pyarrow, the ``parquet``
extra): columns ``index``, ``length`` (int64), ``target`` (int32, or a list for per-step models),
``scores`` and ``relevance`` (lists of floats, the flat values of each row); the header is also in the
Parquet schema's metadata under ``lrpjax``.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
import zlib
from collections import OrderedDict
from typing import Any, Iterator, NamedTuple

import numpy as np

from lrpjax.io.files import atomic_write, atomic_write_text

__all__ = ["FORMAT", "VERSION", "FIELDS", "Part", "StreamError", "StreamWarning", "StreamRow", "StreamResults", "open_results",
           "log_name", "shard_name", "read_log", "dumps", "scan_directory", "check_shard_format", "write_shard",
           "read_shard", "write_manifest", "file_crc32", "check_shard_file", "row_size", "row_sizes"]

FORMAT = "lrpjax-stream"
VERSION = 1
FIELDS = ("scores", "target", "relevance")
SHARD_FORMATS = ("npz", "parquet")
_LOG = re.compile(r"_log-(\d{5})-of-(\d{5})\.jsonl\Z")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class StreamError(ValueError):
    """An output directory that cannot be read, continued or written as asked."""


class StreamWarning(UserWarning):
    """Something a resumed run found and repaired (damaged or missing shards computed again)."""


def log_name(process: int, count: int) -> str:
    """The file name of process ``process``'s log among ``count`` processes, e.g. ``_log-00000-of-00002.jsonl``."""
    return f"_log-{process:05d}-of-{count:05d}.jsonl"


def shard_name(process: int, serial: int, shard_format: str) -> str:
    """The file name of a process's shard number ``serial``, e.g. ``part-00001-000007.npz``."""
    return f"part-{process:05d}-{serial:06d}.{shard_format}"


def _dim(d, T, S):
    """A template axis's size: "T" is T, "S+T" (a pair's input positions) S + T, an int itself."""
    return T if d == "T" else S + T if d == "S+T" else d


def row_size(shape: list, T: int, S: int | None = None) -> int:
    """Values of one row of a field with shape template ``shape`` for a sequence of T steps (a pair: a
    target of T steps and a source of S)."""
    return int(np.prod([_dim(d, T, S) for d in shape], dtype=np.int64))


def row_sizes(shape: list, lengths: np.ndarray, source_lengths: np.ndarray | None = None) -> np.ndarray:
    """:func:`row_size` of every row, (n,) int64."""
    lengths = np.asarray(lengths, np.int64)
    sizes = np.ones(lengths.shape, np.int64)
    for d in shape:
        sizes = sizes * _dim(d, lengths, None if source_lengths is None else np.asarray(source_lengths, np.int64))
    return sizes


def _ragged(shape: list) -> bool:
    return "T" in shape or "S+T" in shape


def _pairs(fields: dict) -> bool:
    """Whether the fields are those of pairs (an "S+T" axis: the shards hold ``source_length``)."""
    return any("S+T" in spec["shape"] for spec in fields.values())


# --- logs ------------------------------------------------------------------------------------------

def read_log(path: str) -> tuple[list[dict], int]:
    """The records of a log and the byte length of its whole lines.

    A last line cut short by an interruption (no newline, or not JSON) is not a record; anything after
    such a line is an error.

    Raises:
        StreamError: a broken line followed by more lines, or a log that does not start with a header.
    """
    records: list[dict]
    records, good_end = [], 0
    with open(path, "rb") as handle:
        for raw in handle:
            record = _parse_line(raw)
            if record is None:
                if handle.read(1):
                    raise StreamError(f"{path!r}: line {len(records) + 1} is not a complete JSON record, and "
                                      "more lines follow it; the log is damaged.")
                break
            records.append(record)
            good_end += len(raw)
    if records and records[0].get("format") != FORMAT:
        raise StreamError(f"{path!r} is not the log of an lrpjax stream (its first line is no {FORMAT} header).")
    return records, good_end


def _parse_line(raw: bytes) -> dict | None:
    if not raw.endswith(b"\n"):
        return None
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def dumps(record: dict) -> str:
    """One log line (strict JSON, sorted keys, so equal records are equal bytes)."""
    return json.dumps(record, sort_keys=True, allow_nan=False) + "\n"


# --- shards ----------------------------------------------------------------------------------------

class Part(NamedTuple):
    """Results of one chunk, as the chunk program gives them: every field padded to the bucket length.

    Attributes:
        indices, lengths: (n,) int64.
        scores, target, relevance: (n, *padded shape); a field's "T" axes have the bucket length L, a
            pair's "S+T" axis S + L positions (the source padded to S, then the target padded to L).
        source_lengths: of pairs, (n,) int64; None for sequences.
    """

    indices: np.ndarray
    lengths: np.ndarray
    scores: np.ndarray
    target: np.ndarray
    relevance: np.ndarray
    source_lengths: np.ndarray | None = None


def _valid(shape: list, padded: tuple, lengths: np.ndarray, source_lengths: np.ndarray | None = None,
           source_steps: int | None = None) -> np.ndarray:
    """Where a padded field (n, *padded) holds real values: every "T" axis below each row's length; a
    pair's "S+T" axis at its source positions (below S_i) and its target positions (S to S + T_i)."""
    mask = np.ones(padded, bool)
    for axis, d in enumerate(shape, start=1):
        if d in ("T", "S+T"):
            position = np.arange(padded[axis])[None, :]
            if d == "T":
                steps = position < lengths[:, None]
            else:
                assert source_lengths is not None and source_steps is not None
                steps = (position < source_lengths[:, None]) | \
                    ((position >= source_steps) & (position < source_steps + lengths[:, None]))
            view = [len(lengths)] + [1] * (len(padded) - 1)
            view[axis] = padded[axis]
            mask = mask & steps.reshape(view)
    return mask


def _columns(parts: list[Part], fields: dict, source_steps: int | None = None) -> dict[str, np.ndarray]:
    """Shard columns: the parts' rows one after the other; ragged fields cropped and flattened (pairs: a
    ``source_length`` column, and the "S+T" axes cropped to each pair's positions in its padded row, whose
    source part has ``source_steps`` positions)."""
    lengths = [np.asarray(p.lengths, np.int64) for p in parts]
    columns = {"index": np.concatenate([np.asarray(p.indices, np.int64) for p in parts]),
               "length": np.concatenate(lengths)}
    sources: list = [None] * len(parts)
    if _pairs(fields):
        sources = [np.asarray(p.source_lengths, np.int64) for p in parts]
        columns["source_length"] = np.concatenate(sources)
    for name in FIELDS:
        spec = fields[name]
        dtype = np.dtype(spec["dtype"])
        arrays = [np.asarray(getattr(p, name), dtype) for p in parts]
        if _ragged(spec["shape"]):
            columns[name] = np.concatenate([a[_valid(spec["shape"], a.shape, n, s, source_steps)]
                                            for a, n, s in zip(arrays, lengths, sources)])
        else:
            columns[name] = np.concatenate(arrays)
    return columns


def write_shard(path: str, parts: list[Part], fields: dict, shard_format: str, header: dict) -> tuple[int, int]:
    """Writes one shard atomically; returns its size in bytes and the CRC-32 of its bytes.

    Args:
        path: the shard's file.
        parts: the chunks' results, padded (:class:`Part`).
        fields: the header's field templates.
        shard_format: ``"npz"`` or ``"parquet"``.
        header: the run's header (kept in a Parquet shard's metadata).
    """
    layout = header.get("config", {}).get("layout")
    columns = _columns(parts, fields, None if layout is None else layout["source_steps"])
    buffer = io.BytesIO()   # one shard in memory (its size is bounded by shard_bytes): its checksum
    if shard_format == "npz":
        _write_npz(buffer, columns)
    else:
        _write_parquet(buffer, columns, fields, header)
    data = buffer.getvalue()
    atomic_write(path, lambda handle: handle.write(data))
    return len(data), zlib.crc32(data)


def file_crc32(path: str) -> tuple[int, int]:
    """(size, CRC-32) of a file's bytes, read in blocks.

    Raises:
        OSError: the file cannot be read.
    """
    crc, size = 0, 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            crc = zlib.crc32(block, crc)
            size += len(block)
    return size, crc


def check_shard_file(path: str, entry: dict) -> str | None:
    """What is wrong with a shard on disk against its log entry (missing, another size, another checksum),
    or None when it is whole."""
    try:
        size, crc = file_crc32(path)
    except FileNotFoundError:
        return "it is missing"
    except OSError as error:
        return f"it cannot be read ({error.strerror or error})"
    if "bytes" in entry and size != entry["bytes"]:
        return f"it holds {size} bytes; its log says {entry['bytes']}"
    if "crc32" in entry and crc != entry["crc32"]:
        return f"its checksum is {crc:08x}; its log says {entry['crc32']:08x}"
    return None


def _write_npz(handle, columns: dict[str, np.ndarray]) -> None:
    """An uncompressed ``.npz`` with fixed member timestamps (equal content gives equal bytes)."""
    with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in columns.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise StreamError("Parquet shards need pyarrow: pip install 'lrpjax[parquet]' (or use the npz "
                          "format, which needs nothing more)") from None
    return pa, pq


def check_shard_format(shard_format: str) -> str:
    """Checks a format name (and, for Parquet, that pyarrow is there).

    Raises:
        ValueError: an unknown format. StreamError: Parquet without pyarrow.
    """
    if shard_format not in SHARD_FORMATS:
        raise ValueError(f"`format` must be one of {', '.join(SHARD_FORMATS)}; got {shard_format!r}.")
    if shard_format == "parquet":
        _pyarrow()
    return shard_format


def _list_column(pa, flat: np.ndarray, sizes: np.ndarray):
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(flat))


def _write_parquet(handle, columns: dict, fields: dict, header: dict) -> None:
    pa, pq = _pyarrow()
    arrays = {"index": pa.array(columns["index"]), "length": pa.array(columns["length"])}
    if "source_length" in columns:
        arrays["source_length"] = pa.array(columns["source_length"])
    lengths, sources = columns["length"], columns.get("source_length")
    for name in FIELDS:
        shape = fields[name]["shape"]
        if not shape:
            arrays[name] = pa.array(columns[name])
            continue
        arrays[name] = _list_column(pa, columns[name].ravel(), row_sizes(shape, lengths, sources))
    table = pa.table(arrays).replace_schema_metadata({"lrpjax": json.dumps(header, sort_keys=True)})
    pq.write_table(table, handle, compression="zstd")


class _Shard(NamedTuple):
    index: np.ndarray  # type: ignore[assignment]  # a field named like tuple.index
    length: np.ndarray
    columns: dict        # field -> dense (n, *shape) or flat values
    offsets: dict        # field -> (n + 1,) offsets for flat fields
    source_length: np.ndarray | None = None   # pairs: (n,)


def read_shard(path: str, fields: dict, shard_format: str, entry: dict | None = None) -> _Shard:
    """Reads a shard back (all of it).

    Args:
        path, fields, shard_format: the shard, the header's field templates, its format.
        entry: its log entry: with ``"bytes"`` and ``"crc32"``, the file is checked against them first.

    Raises:
        StreamError: a missing or damaged file, or one whose columns do not match the fields.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise StreamError(f"cannot read the shard {path!r}: {error.strerror or error}; resume the run to write it "
                          "again.") from None
    if entry is not None:
        if "bytes" in entry and len(data) != entry["bytes"]:
            raise StreamError(f"cannot read the shard {path!r}: it holds {len(data)} bytes, its log says "
                              f"{entry['bytes']}; it is damaged: resume the run (resume=True) to write it again.")
        if "crc32" in entry and zlib.crc32(data) != entry["crc32"]:
            raise StreamError(f"cannot read the shard {path!r}: its bytes do not match the checksum in its log; it "
                              "is damaged: resume the run (resume=True) to write it again.")
    pairs = _pairs(fields)
    try:
        if shard_format == "npz":
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                names = ("index", "length", *(("source_length",) if pairs else ()), *FIELDS)
                columns = {name: archive[name] for name in names}
        else:
            columns = _read_parquet(io.BytesIO(data), fields, path)
    except StreamError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
        raise StreamError(f"cannot read the shard {path!r}: {error}") from None
    index, length = columns.pop("index"), columns.pop("length")
    source_length = columns.pop("source_length", None)
    offsets = {}
    for name in FIELDS:
        shape = fields[name]["shape"]
        if _ragged(shape):
            offsets[name] = np.concatenate([[0], np.cumsum(row_sizes(shape, length, source_length))])
            if offsets[name][-1] != columns[name].size:
                raise StreamError(f"the shard {path!r} holds {columns[name].size} values of {name!r}; its lengths "
                                  f"call for {offsets[name][-1]}; it is damaged.")
    return _Shard(index, length, columns, offsets, source_length)


def _read_parquet(source, fields: dict, path: str) -> dict:
    pa, pq = _pyarrow()
    try:
        table = pq.read_table(source)
    except pa.ArrowException as error:
        raise StreamError(f"cannot read the shard {path!r}: {error}") from None
    columns = {"index": table.column("index").to_numpy(), "length": table.column("length").to_numpy()}
    if _pairs(fields):
        columns["source_length"] = table.column("source_length").to_numpy()
    for name in FIELDS:
        column = table.column(name).combine_chunks()
        shape = fields[name]["shape"]
        if not shape:
            columns[name] = column.to_numpy()
            continue
        values = column.values.to_numpy(zero_copy_only=False)
        columns[name] = values if _ragged(shape) else values.reshape((len(table), *shape))
    return columns


def _row_field(shard: _Shard, name: str, row: int, fields: dict) -> np.ndarray:
    shape = fields[name]["shape"]
    column = shard.columns[name]
    if not _ragged(shape):
        return column[row]
    start, stop = shard.offsets[name][row], shard.offsets[name][row + 1]
    T = int(shard.length[row])
    S = None if shard.source_length is None else int(shard.source_length[row])
    return column[start:stop].reshape([_dim(d, T, S) for d in shape])


# --- the manifest ----------------------------------------------------------------------------------

def write_manifest(directory: str, header: dict, entries: list[dict]) -> str:
    """Writes ``_manifest.json`` (atomically): the merged view of a complete run."""
    keys = ("file", "process", "rows", "index_min", "index_max", "bytes", "crc32")
    shards = sorted(({k: e[k] for k in keys if k in e} for e in entries), key=lambda e: (e["process"], e["file"]))
    common = {k: v for k, v in header.items() if k != "process_index"}
    manifest = {**common, "complete": True, "sequences": sum(e["rows"] for e in shards), "shards": shards}
    path = os.path.join(directory, "_manifest.json")
    atomic_write_text(path, json.dumps(manifest, sort_keys=True, indent=1) + "\n")
    return path


# --- the reader ------------------------------------------------------------------------------------

class StreamRow(NamedTuple):
    """The results of one sequence.

    Attributes:
        index: its number in the input.
        length: T (a pair's target length).
        scores: the model's output, (C,) (per-step models: (T, C)).
        target: the explained class, () (-1 with ``targets="all"``; per-step: (T,)).
        relevance: shaped by the run's template, e.g. (T, E), (T,), (K, C, T[, E]); a pair's
            (T, S_i + T[, E]), the source positions first.
        source_length: a pair's source length S_i; None for sequences.
    """

    index: int  # type: ignore[assignment]  # a field named like tuple.index
    length: int
    scores: np.ndarray
    target: np.ndarray
    relevance: np.ndarray
    source_length: int | None = None


def _header_key(header: dict) -> dict:
    return {k: v for k, v in header.items() if k != "process_index"}


def scan_directory(directory: str) -> tuple[int | None, dict]:
    """The logs of a directory: (process count, {process: path}).

    Raises:
        StreamError: logs of runs with different process counts.
    """
    found: dict[int, dict[int, str]] = {}
    for name in sorted(os.listdir(directory)):
        match = _LOG.match(name)
        if match:
            found.setdefault(int(match.group(2)), {})[int(match.group(1))] = os.path.join(directory, name)
    if len(found) > 1:
        raise StreamError(f"{directory!r} holds the logs of runs with {' and '.join(map(str, sorted(found)))} "
                          "processes; it mixes several runs.")
    if not found:
        return None, {}
    (count, logs), = found.items()
    return count, logs


class StreamResults:
    """The results in a stream's output directory, by index and in input order.

    Reads the per-process logs (what is finished, even of an interrupted run) and the shards they name,
    a few shards at a time (an LRU cache of ``cache`` decoded shards), so memory stays bounded by the
    shard size, whatever the number of sequences; the index of every sequence (16 bytes each) is built
    on first use.

    Attributes:
        directory: the output directory.
        complete: whether every process finished (the run needs no resuming).
        process_count: processes that wrote it.
        config: the run's configuration (methods, targets, buckets, chunk size, ...).
        fields: shape templates and dtypes of ``scores``, ``target``, ``relevance``.
        shards: the finished shards, ``{"file", "process", "rows", "index_min", "index_max", "bytes"}``.
    """

    def __init__(self, directory: str | os.PathLike[str], cache: int = 4):
        self.directory = os.fspath(directory)
        if not os.path.isdir(self.directory):
            raise StreamError(f"{self.directory!r} is not a directory of stream results.")
        count, logs = scan_directory(self.directory)
        if count is None:
            raise StreamError(f"{self.directory!r} holds no lrpjax stream output (no _log-*-of-*.jsonl).")
        self.process_count = count
        shards: list[dict[str, Any]]
        header, shards, complete, completions = None, [], len(logs) == count, []
        for process, path in sorted(logs.items()):
            records, _ = read_log(path)
            if records and records[-1].get("complete"):
                completions.append(records)
            if not records:
                complete = False
                continue
            if header is None:
                header = records[0]
            elif _header_key(records[0]) != _header_key(header):
                raise StreamError(f"{path!r} was written with another configuration than the other logs of "
                                  f"{self.directory!r}.")
            shards.extend({**r, "process": process} for r in records[1:] if "file" in r)
            complete = complete and bool(records[-1].get("complete"))
        if header is None:
            raise StreamError(f"{self.directory!r}: no log holds a header yet; nothing was written.")
        inputs: set[Any] = {records[-1].get("input") for records in completions}
        if header["partition"] == "chunks" and len(inputs) > 1:
            raise StreamError(f"{self.directory!r}: its processes read inputs of different lengths "
                              f"({', '.join(map(str, sorted(inputs)))} sequences); each must read the whole input.")
        digests = {records[-1]["input_crc32"] for records in completions if "input_crc32" in records[-1]}
        if header["partition"] == "chunks" and len(digests) > 1:
            raise StreamError(f"{self.directory!r}: its processes read inputs with other values (their digests "
                              "differ); each must read the same whole input.")
        self.header = header
        self.config = header["config"]
        self.fields = header["fields"]
        self.format = header["shard_format"]
        self.complete = complete
        self.shards = shards
        self._cache: OrderedDict[int, _Shard] = OrderedDict()
        self._cache_size = max(1, int(cache))
        self._lookup: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return sum(s["rows"] for s in self.shards)

    def __repr__(self) -> str:
        state = "complete" if self.complete else "incomplete"
        return f"StreamResults({self.directory!r}: {len(self)} sequences in {len(self.shards)} shards, {state})"

    def _shard(self, k: int) -> _Shard:
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        shard = read_shard(os.path.join(self.directory, self.shards[k]["file"]), self.fields, self.format,
                           self.shards[k])
        if len(shard.index) != self.shards[k]["rows"]:
            raise StreamError(f"the shard {self.shards[k]['file']!r} holds {len(shard.index)} rows; its log says "
                              f"{self.shards[k]['rows']}; it is damaged.")
        self._cache[k] = shard
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return shard

    def _index(self):
        """(indices sorted, shard of each, row of each)."""
        if self._lookup is None:
            parts = [self._index_of(k) for k in range(len(self.shards))]
            index = np.concatenate(parts) if parts else np.zeros((0,), np.int64)
            shard = np.concatenate([np.full(len(p), k, np.int32) for k, p in enumerate(parts)]) if parts else \
                np.zeros((0,), np.int32)
            row = np.concatenate([np.arange(len(p), dtype=np.int32) for p in parts]) if parts else \
                np.zeros((0,), np.int32)
            order = np.argsort(index, kind="stable")
            index, shard, row = index[order], shard[order], row[order]
            repeated = np.flatnonzero(np.diff(index) == 0)
            if repeated.size:
                raise StreamError(f"{self.directory!r}: sequence index {int(index[repeated[0]])} appears in two "
                                  "shards; the processes' inputs overlap.")
            self._lookup = (index, shard, row)
        return self._lookup

    def _index_of(self, k: int) -> np.ndarray:
        path = os.path.join(self.directory, self.shards[k]["file"])
        if self.format == "npz" and "crc32" not in self.shards[k]:
            try:
                with np.load(path, allow_pickle=False) as data:
                    return np.asarray(data["index"], np.int64)
            except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
                raise StreamError(f"cannot read the shard {path!r}: {error}") from None
        return self._shard(k).index

    @property
    def indices(self) -> np.ndarray:
        """The indices of the finished sequences, ascending, (N,)."""
        return self._index()[0]

    def __contains__(self, index: int) -> bool:
        indices = self.indices
        position = np.searchsorted(indices, index)
        return bool(position < len(indices) and indices[position] == index)

    def get(self, index: int) -> StreamRow:
        """The results of the sequence numbered ``index``.

        Raises:
            KeyError: no such sequence among the finished ones.
        """
        indices, shard, row = self._index()
        position = int(np.searchsorted(indices, index))
        if position >= len(indices) or indices[position] != index:
            raise KeyError(f"sequence {index} is not in the results of {self.directory!r} (not in the input, or "
                           "not explained yet)")
        return self._row(int(shard[position]), int(row[position]))

    __getitem__ = get

    def _row(self, k: int, r: int) -> StreamRow:
        data = self._shard(k)
        scores, target, relevance = (_row_field(data, name, r, self.fields) for name in FIELDS)
        source = None if data.source_length is None else int(data.source_length[r])
        return StreamRow(int(data.index[r]), int(data.length[r]), scores, target, relevance, source)

    def __iter__(self) -> Iterator[StreamRow]:
        """Every finished sequence in input (index) order."""
        indices, shard, row = self._index()
        for k, r in zip(shard.tolist(), row.tolist()):
            yield self._row(k, r)

    def load(self):
        """Everything, in input order, as a :class:`lrpjax.datasets.DatasetExplanation` (for results that fit
        in memory; ``compilations`` is 0, ``edges`` the run's bucket edges or ())."""
        from lrpjax.datasets.memory import DatasetExplanation

        rows = list(self)
        per_step = _ragged(self.fields["scores"]["shape"])
        lengths = np.asarray([r.length for r in rows], np.int64)
        scores: list | np.ndarray
        targets: list | np.ndarray
        if per_step:
            scores, targets = [r.scores for r in rows], [r.target for r in rows]
        else:
            shape = self.fields["scores"]["shape"]
            scores = np.stack([r.scores for r in rows]) if rows else np.zeros((0, *shape))
            targets = np.asarray([r.target for r in rows], np.int32)
        edges = tuple(self.config.get("buckets") or ())
        sources = np.asarray([r.source_length for r in rows], np.int64) if _pairs(self.fields) else None
        return DatasetExplanation([r.relevance for r in rows], lengths, scores, targets, 0, edges, None, sources)


def open_results(directory: str | os.PathLike[str], cache: int = 4) -> StreamResults:
    """Opens a stream's output directory for reading (see :class:`StreamResults`).

    Raises:
        StreamError: not such a directory, logs of different runs, a damaged log.
    """
    return StreamResults(directory, cache)
