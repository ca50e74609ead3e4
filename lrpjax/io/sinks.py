"""Record sinks: where batch explanations go, one record per input line, streamed and resumable.

A sink receives records (dicts with an int ``"line"``, numbered 1, 2, ... in order) one at a time and
makes them durable on `flush`, so an interrupted run leaves a valid prefix of its output, and a later run
can resume after the last record it finds. The interface, shared by every format (the format is chosen
by the output's extension in `open_sink`: ``.parquet`` gets a Parquet dataset, every other name JSON
lines):

    sink = open_sink("relevance.jsonl", resume=True)
    sink.done        # records already in the output (0 for a fresh one); the next record is line done + 1
    sink.last        # the last of them (to check that the input is the same), or None
    sink.failed      # how many of them are failures (records with "failed": true)
    sink.write(record)
    sink.flush()     # everything written so far is on disk
    sink.close()     # flushes; then sink.commit() puts a replacing output (overwrite=True) in place

An output that exists is never destroyed by a run that was not asked to continue or replace it: without
``resume`` or ``overwrite`` it is refused; with ``overwrite`` the new output is written beside it under a
temporary name and replaces it only on :meth:`commit` (an interrupted run leaves the old output as it
was). A run's identity (``identity``: every option that changes the records, as a dict) is written once,
beside the output (``.NAME.run.json``; ``_run.json`` inside a Parquet dataset), and a resumed run with
another identity is refused, naming the first option that differs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import zlib
from typing import IO, Any, Iterator

from lrpjax.io.files import atomic_write, atomic_write_text

__all__ = ["JsonlSink", "ParquetSink", "SinkError", "open_sink", "read_records", "iter_records", "run_path",
           "check_identity", "RECORD_FIELDS"]


class SinkError(ValueError):
    """An output that cannot be resumed (not a prefix written by a sink), or a record out of order."""


def run_path(path: str | os.PathLike[str]) -> str:
    """Where an output's run identity is kept: ``_run.json`` inside a Parquet dataset, else
    ``.NAME.run.json`` beside the file."""
    path = os.fspath(path)
    if _is_parquet(path):
        return os.path.join(path, "_run.json")
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.run.json")


def _write_identity(path: str, identity: dict[str, Any] | None) -> None:
    if identity is not None:
        atomic_write_text(run_path(path), json.dumps(identity, sort_keys=True, indent=1) + "\n")


def check_identity(path: str, identity: dict[str, Any] | None) -> None:
    """Compares the identity kept with an output (if any) with this run's.

    Raises:
        SinkError: they differ (naming the first option that does), or the kept one is damaged.
    """
    if identity is None or not os.path.exists(run_path(path)):
        return
    try:
        with open(run_path(path), encoding="utf-8") as handle:
            kept = json.load(handle)
    except (OSError, ValueError) as error:
        raise SinkError(f"cannot resume {path!r}: its run identity {run_path(path)!r} cannot be read ({error}); "
                        "start afresh with --overwrite.") from None
    for key in [*identity, *sorted(set(kept) - set(identity))]:   # in the order of the options
        if kept.get(key) != identity.get(key):
            raise SinkError(f"cannot resume {path!r}: it was written with {key} {_shown_value(kept.get(key))}, and "
                            f"this run has {key} {_shown_value(identity.get(key))}; give the same options to "
                            "resume, or start afresh (--overwrite, or another output)")


def _shown_value(value: Any) -> str:
    if value is None:
        return "(none)"
    return value[:80] if isinstance(value, str) else json.dumps(value)[:80]


def _exists(path: str) -> bool:
    """Whether ``path`` holds an output worth keeping (a non-empty file or directory)."""
    if os.path.isdir(path):
        return bool(os.listdir(path))
    return os.path.exists(path) and os.path.getsize(path) > 0


def _replacement(path: str) -> str:
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.new-{os.getpid()}")


def _refuse_existing(path: str) -> SinkError:
    return SinkError(f"{path!r} holds the output of an earlier run; pass --resume to continue it, --overwrite to "
                     "replace it once this run is complete (it stays as it is until then), or choose another name.")


# Characters that str.splitlines and other line readers take for line breaks but json.dumps leaves raw
# with ensure_ascii=False (it escapes only those below U+0020): escaped, so that one record stays one line
# for every reader. They can only occur inside JSON strings, where the escape means the same character.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _dumps(record: dict[str, Any]) -> str:
    # allow_nan=False: NaN and Infinity are not JSON; a non-finite number is a programming error here
    # (callers turn non-finite results into error records first).
    return json.dumps(record, ensure_ascii=False, allow_nan=False).translate(_LINE_BREAKS) + "\n"


class JsonlSink:
    """JSON lines: one record per line, UTF-8, ``"\\n"``-terminated, written in line order.

    Args:
        path: the output file, or None for stdout (which cannot be resumed).
        resume: keep the records already in `path` and append after them. The file must hold records
            numbered 1..k in order; a last line cut short by an interruption (no ``"\\n"``, or not JSON)
            is dropped, since that record is written again. A missing file starts afresh.

    Raises:
        SinkError: `resume` on stdout, or an existing output that is not such a prefix (naming the line).
        OSError: the file cannot be opened.
    """

    last: dict[str, Any] | None

    def __init__(self, path: str | os.PathLike[str] | None, *, resume: bool = False, overwrite: bool = False,
                 identity: dict[str, Any] | None = None):
        self.path = None if path is None else os.fspath(path)
        self.done, self.last, self.failed = 0, None, 0
        self.target: str | None = None   # the output a replacement (overwrite) goes to on commit
        self.identity = identity
        if self.path is None:
            if resume:
                raise SinkError("cannot resume an output written to stdout; write to a file with --output.")
            self._handle: IO[str] = sys.stdout
            return
        if resume and os.path.exists(self.path):
            check_identity(self.path, identity)
            self._scan_and_trim()
            self._handle = open(self.path, "a", encoding="utf-8", newline="\n")
            return
        if _exists(self.path) and not resume:
            if not overwrite:
                raise _refuse_existing(self.path)
            self.target, self.path = self.path, _replacement(self.path)
        self._handle = open(self.path, "w", encoding="utf-8", newline="\n")
        if self.target is None:
            _write_identity(self.path, identity)

    def _scan_and_trim(self) -> None:
        """Reads the existing records (one at a time: bounded memory) and cuts off a partial last line."""
        assert self.path is not None  # only a file is resumed
        good_end = 0
        with open(self.path, "rb") as handle:
            for raw in handle:
                record = self._parse(raw)
                if record is None:  # a last line cut short; anything after it would be an error
                    if handle.read(1):
                        raise SinkError(f"cannot resume {self.path!r}: line {self.done + 1} is not a complete "
                                        "JSON record, and more lines follow it.")
                    break
                self.done += 1
                self.last = record
                self.failed += bool(record.get("failed"))
                good_end += len(raw)
        if good_end != os.path.getsize(self.path):
            os.truncate(self.path, good_end)

    def _parse(self, raw: bytes) -> dict[str, Any] | None:
        """The record on one line of the file, None if the line is incomplete (no newline or not JSON)."""
        if not raw.endswith(b"\n"):
            return None
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
        line = record.get("line") if isinstance(record, dict) else None
        if not isinstance(line, int) or line != self.done + 1:
            raise SinkError(f"cannot resume {self.path!r}: its line {self.done + 1} is not the record of input "
                            f"line {self.done + 1} (found {str(raw[:80], 'utf-8', 'replace')!r}); it was not "
                            "written by this command, or with other options.")
        return record

    def write(self, record: dict[str, Any]) -> None:
        """Appends one record; its "line" must be ``done + 1``.

        Raises:
            SinkError: a record out of order.
            ValueError: a value JSON cannot hold (NaN, infinity).
        """
        if record.get("line") != self.done + 1:
            raise SinkError(f"records must arrive in line order: expected line {self.done + 1}, "
                            f"got {record.get('line')!r}.")
        self._handle.write(_dumps(record))
        self.done += 1
        self.last = record
        self.failed += bool(record.get("failed"))

    def flush(self) -> None:
        """Makes every record written so far durable (flush, and fsync for a file)."""
        self._handle.flush()
        if self.path is not None:
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        """Flushes and closes (stdout stays open)."""
        if self._handle.closed:
            return
        self.flush()
        if self.path is not None:
            self._handle.close()

    @property
    def where(self) -> str | None:
        """The output as the user named it (None: stdout)."""
        return self.target or self.path

    def commit(self) -> None:
        """Closes; a replacement (``overwrite``) then takes the place of the earlier output."""
        self.close()
        if self.target is not None and self.path is not None:
            _write_identity(self.target, self.identity)
            os.replace(self.path, self.target)
            self.path, self.target = self.target, None

    def discard(self) -> None:
        """Closes; a replacement (``overwrite``) is removed, the earlier output stays as it was."""
        self.close()
        if self.target is not None and self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# The fields of a batch record (lrpjax.app.model.SentenceExplanation.to_json, with "line", and "error" and
# "failed" for lines that could not be explained), in the order of the Parquet columns.
RECORD_FIELDS = (("line", "int64"), ("sentence", "string"), ("tokens", "strings"), ("unknown", "strings"),
                 ("prediction", "int32"), ("prediction_name", "string"), ("probabilities", "floats"),
                 ("scores", "floats"), ("target", "int32"), ("target_name", "string"), ("method", "string"),
                 ("eps", "float64"), ("relevance", "floats"), ("error", "string"), ("failed", "bool"),
                 ("seed", "int64"), ("method_id", "string"), ("run", "string"), ("flagged", "string"))
_RESUME_FIELDS = ("line", "sentence", "method", "eps", "target", "target_name", "prediction", "failed", "seed",
                  "method_id", "run")


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise SinkError("a .parquet output needs pyarrow: pip install 'lrpjax[parquet]' (or write JSON lines "
                        "to a .jsonl file)") from None
    return pa, pq


class ParquetSink:
    """A Parquet dataset: a directory (named like a file, ``relevance.parquet``) of part files, one per
    `flush`, with one row per record (columns :data:`RECORD_FIELDS`; a field a record lacks is null), and
    ``_log.jsonl``, the finished parts in order. pandas, pyarrow, DuckDB and Spark read the directory as one
    table (they skip names starting with ``_``); rows are in line order, part after part.

    Each part is written atomically before its log line is appended and fsync-ed, so an interruption
    leaves whole parts only, and `resume` continues after the last logged one (a part on disk but not in
    the log is written again). Memory holds the records of one part.

    Args:
        path: the dataset's directory.
        resume: keep the parts already logged in `path`; a missing directory starts afresh.

    Raises:
        SinkError: `path` holds an output and `resume` is not set (nothing is destroyed), is not such a
            dataset, or pyarrow is missing.
        OSError: the directory cannot be created.
    """

    last: dict[str, Any] | None

    def __init__(self, path: str | os.PathLike[str], *, resume: bool = False, overwrite: bool = False,
                 identity: dict[str, Any] | None = None):
        self.pa, self.pq = _pyarrow()
        self.path = os.fspath(path)
        self.target: str | None = None
        self.identity = identity
        self.done, self.last, self.failed = 0, None, 0
        self.parts = 0
        self._records: list[dict[str, Any]] = []
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise SinkError(f"cannot write {self.path!r}: it exists and is not a Parquet dataset directory.")
        fresh = True
        if os.path.isdir(self.path) and os.listdir(self.path):
            if not os.path.exists(os.path.join(self.path, "_log.jsonl")):
                raise SinkError(f"cannot write {self.path!r}: it is a directory that holds no lrpjax output "
                                "(no _log.jsonl); choose another name.")
            if resume:
                check_identity(self.path, identity)
                self.log_path = os.path.join(self.path, "_log.jsonl")
                self._scan()
                fresh = False
            elif not overwrite:
                raise _refuse_existing(self.path)
            else:
                self.target, self.path = self.path, _replacement(self.path)
                shutil.rmtree(self.path, ignore_errors=True)
        self.log_path = os.path.join(self.path, "_log.jsonl")
        os.makedirs(self.path, exist_ok=True)
        if fresh:
            _write_identity(self.path, identity)
        self._log = open(self.log_path, "a", encoding="utf-8")

    def _scan(self) -> None:
        """Reads the log, checks every logged part on disk (it must exist with its logged rows) and cuts off a
        partial last line."""
        good_end = 0
        with open(self.log_path, "rb") as handle:
            for raw in handle:
                try:
                    entry = json.loads(raw) if raw.endswith(b"\n") else None
                except (UnicodeDecodeError, json.JSONDecodeError):
                    entry = None
                if not isinstance(entry, dict):
                    if handle.read(1):
                        raise SinkError(f"cannot resume {self.path!r}: line {self.parts + 1} of its _log.jsonl is "
                                        "not a complete JSON record, and more lines follow it.")
                    break
                if entry.get("first") != self.done + 1 or entry.get("file") != self._part_name(self.parts):
                    raise SinkError(f"cannot resume {self.path!r}: its _log.jsonl line {self.parts + 1} does not "
                                    f"continue line {self.done} with part {self._part_name(self.parts)}; it was not "
                                    "written by this command.")
                self._check_part(entry)
                self.parts += 1
                self.done, self.last = entry["last"]["line"], entry["last"]
                self.failed += entry["failed"]
                good_end += len(raw)
        if good_end != os.path.getsize(self.log_path):
            os.truncate(self.log_path, good_end)

    def _check_part(self, entry: dict[str, Any]) -> None:
        """A logged part must be on disk, whole (its size and checksum as logged) and hold its rows."""
        path = os.path.join(self.path, entry["file"])
        try:
            size, crc = _file_crc32(path)
        except OSError as error:
            raise SinkError(f"cannot resume {self.path!r}: its part {entry['file']} (lines {entry['first']}-"
                            f"{entry['first'] + entry['rows'] - 1}) is missing or unreadable ({error.strerror or error}); "
                            "the dataset is damaged: start afresh with --overwrite.") from None
        if ("bytes" in entry and size != entry["bytes"]) or ("crc32" in entry and crc != entry["crc32"]):
            raise SinkError(f"cannot resume {self.path!r}: its part {entry['file']} (lines {entry['first']}-"
                            f"{entry['first'] + entry['rows'] - 1}) does not match its size and checksum in "
                            "_log.jsonl; the dataset is damaged: start afresh with --overwrite.")

    @staticmethod
    def _part_name(k: int) -> str:
        return f"part-{k:06d}.parquet"

    def write(self, record: dict[str, Any]) -> None:
        """Adds one record; its "line" must be ``done + 1``.

        Raises:
            SinkError: a record out of order, or with a field Parquet output does not have.
        """
        if record.get("line") != self.done + 1:
            raise SinkError(f"records must arrive in line order: expected line {self.done + 1}, "
                            f"got {record.get('line')!r}.")
        unknown = set(record) - {name for name, _ in RECORD_FIELDS}
        if unknown:
            raise SinkError(f"a record holds fields the Parquet output has no column for: {sorted(unknown)}.")
        self._records.append(record)
        self.done += 1
        self.last = {key: record[key] for key in _RESUME_FIELDS if key in record}
        self.failed += bool(record.get("failed"))

    def _table(self):
        pa = self.pa
        types = {"int64": pa.int64(), "int32": pa.int32(), "string": pa.string(), "strings": pa.list_(pa.string()),
                 "floats": pa.list_(pa.float64()), "float64": pa.float64(), "bool": pa.bool_()}
        columns = {name: pa.array([r.get(name) for r in self._records], types[kind]) for name, kind in RECORD_FIELDS}
        return pa.table(columns)

    def flush(self) -> None:
        """Writes the records since the last flush as one part and logs it (nothing when there are none)."""
        if not self._records:
            return
        table = self._table()
        name = self._part_name(self.parts)
        buffer = self.pa.BufferOutputStream()
        self.pq.write_table(table, buffer)
        data = buffer.getvalue().to_pybytes()
        atomic_write(os.path.join(self.path, name), lambda handle: handle.write(data))
        failed = sum(bool(r.get("failed")) for r in self._records)
        entry = {"file": name, "first": self._records[0]["line"], "rows": len(self._records), "failed": failed,
                 "last": self.last, "bytes": len(data), "crc32": zlib.crc32(data)}
        self._log.write(json.dumps(entry, ensure_ascii=False, allow_nan=False) + "\n")
        self._log.flush()
        os.fsync(self._log.fileno())
        self.parts += 1
        self._records = []

    def close(self) -> None:
        """Flushes and closes."""
        if self._log.closed:
            return
        self.flush()
        self._log.close()

    @property
    def where(self) -> str:
        """The output as the user named it."""
        return self.target or self.path

    def commit(self) -> None:
        """Closes; a replacement (``overwrite``) then takes the place of the earlier dataset."""
        self.close()
        if self.target is not None:
            old = f"{_replacement(self.target)}.old"
            os.replace(self.target, old)
            os.replace(self.path, self.target)
            shutil.rmtree(old, ignore_errors=True)
            self.path, self.target = self.target, None
            self.log_path = os.path.join(self.path, "_log.jsonl")

    def discard(self) -> None:
        """Closes; a replacement (``overwrite``) is removed, the earlier dataset stays as it was."""
        self.close()
        if self.target is not None:
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _is_parquet(path: str | os.PathLike[str] | None) -> bool:
    return path is not None and os.fspath(path).lower().endswith(".parquet")


def open_sink(path: str | os.PathLike[str] | None, *, resume: bool = False, overwrite: bool = False,
              identity: dict[str, Any] | None = None) -> JsonlSink | ParquetSink:
    """The sink for an output path (None or "-": stdout): a :class:`ParquetSink` for a name ending in
    ``.parquet``, else a :class:`JsonlSink`.

    Args:
        path: the output.
        resume: continue the output (checking ``identity`` against the one kept with it).
        overwrite: replace an existing output, on :meth:`~JsonlSink.commit` only.
        identity: the run's identity (JSON values by option name), kept with the output.

    Raises:
        SinkError, OSError: as the sink.
    """
    if path is None or os.fspath(path) == "-":
        return JsonlSink(None, resume=resume)
    if _is_parquet(path):
        return ParquetSink(path, resume=resume, overwrite=overwrite, identity=identity)
    return JsonlSink(path, resume=resume, overwrite=overwrite, identity=identity)


def _file_crc32(path: str) -> tuple[int, int]:
    crc, size = 0, 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            crc = zlib.crc32(block, crc)
            size += len(block)
    return size, crc


def iter_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The records of an output one at a time, JSON lines or Parquet (one part in memory at a time); null
    fields are left out, as the records that lacked them had them (only "eps" is null in a record of a
    method without one). A JSON-lines file's cut-off last line is not a record.

    Raises:
        SinkError: a Parquet part that does not match its size and checksum in the log.
    """
    path = os.fspath(path)
    if not _is_parquet(path):
        with open(path, "rb") as handle:
            for raw in handle:
                if not raw.endswith(b"\n"):
                    return
                yield json.loads(raw.decode("utf-8"))
        return
    pa, pq = _pyarrow()
    with open(os.path.join(path, "_log.jsonl"), encoding="utf-8") as handle:
        for line in handle:
            entry = json.loads(line)
            part = os.path.join(path, entry["file"])
            with open(part, "rb") as stream:
                data = stream.read()
            if ("bytes" in entry and len(data) != entry["bytes"]) or \
                    ("crc32" in entry and zlib.crc32(data) != entry["crc32"]):
                raise SinkError(f"{part!r} does not match its size and checksum in _log.jsonl; it is damaged.")
            table = pq.read_table(pa.BufferReader(data))
            for row in table.to_pylist():
                yield {k: v for k, v in row.items() if v is not None or (k == "eps" and row["method"])}


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a finished output, JSON lines or Parquet (:func:`iter_records`)."""
    return list(iter_records(path))
