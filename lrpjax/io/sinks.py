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
    sink.close()
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any

from lrpjax.io.files import atomic_write

__all__ = ["JsonlSink", "ParquetSink", "SinkError", "open_sink", "read_records", "RECORD_FIELDS"]


class SinkError(ValueError):
    """An output that cannot be resumed (not a prefix written by a sink), or a record out of order."""


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

    def __init__(self, path: str | os.PathLike[str] | None, *, resume: bool = False):
        self.path = None if path is None else os.fspath(path)
        self.done, self.last, self.failed = 0, None, 0
        if self.path is None:
            if resume:
                raise SinkError("cannot resume an output written to stdout; write to a file with --output.")
            self._handle: IO[str] = sys.stdout
            return
        if resume and os.path.exists(self.path):
            self._scan_and_trim()
            self._handle = open(self.path, "a", encoding="utf-8", newline="\n")
        else:
            self._handle = open(self.path, "w", encoding="utf-8", newline="\n")

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
                 ("seed", "int64"), ("method_id", "string"))
_RESUME_FIELDS = ("line", "sentence", "method", "eps", "target", "target_name", "prediction", "failed", "seed",
                  "method_id")


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

    def __init__(self, path: str | os.PathLike[str], *, resume: bool = False):
        self.pa, self.pq = _pyarrow()
        self.path = os.fspath(path)
        self.log_path = os.path.join(self.path, "_log.jsonl")
        self.done, self.last, self.failed = 0, None, 0
        self.parts = 0
        self._records: list[dict[str, Any]] = []
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise SinkError(f"cannot write {self.path!r}: it exists and is not a Parquet dataset directory.")
        if os.path.isdir(self.path) and os.listdir(self.path):
            if not os.path.exists(self.log_path):
                raise SinkError(f"cannot write {self.path!r}: it is a directory that holds no lrpjax output "
                                "(no _log.jsonl); choose another name.")
            if not resume:
                raise SinkError(f"{self.path!r} holds the output of an earlier run; pass --resume to continue "
                                "it, or remove it (or choose another name) to start afresh.")
            self._scan()
        os.makedirs(self.path, exist_ok=True)
        self._log = open(self.log_path, "a", encoding="utf-8")

    def _scan(self) -> None:
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
                self.parts += 1
                self.done, self.last = entry["last"]["line"], entry["last"]
                self.failed += entry["failed"]
                good_end += len(raw)
        if good_end != os.path.getsize(self.log_path):
            os.truncate(self.log_path, good_end)

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
        atomic_write(os.path.join(self.path, name), lambda handle: self.pq.write_table(table, handle))
        failed = sum(bool(r.get("failed")) for r in self._records)
        entry = {"file": name, "first": self._records[0]["line"], "rows": len(self._records), "failed": failed,
                 "last": self.last}
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

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _is_parquet(path: str | os.PathLike[str] | None) -> bool:
    return path is not None and os.fspath(path).lower().endswith(".parquet")


def open_sink(path: str | os.PathLike[str] | None, *, resume: bool = False) -> JsonlSink | ParquetSink:
    """The sink for an output path (None or "-": stdout): a :class:`ParquetSink` for a name ending in
    ``.parquet``, else a :class:`JsonlSink`.

    Raises:
        SinkError, OSError: as the sink.
    """
    if path is None or os.fspath(path) == "-":
        return JsonlSink(None, resume=resume)
    if _is_parquet(path):
        return ParquetSink(path, resume=resume)
    return JsonlSink(path, resume=resume)


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a finished output, JSON lines or Parquet (null fields are left out, as the records
    that lacked them had them; only "eps" is null in a record of a method without one)."""
    if not _is_parquet(path):
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle]
    _, pq = _pyarrow()
    records: list[dict[str, Any]] = []
    with open(os.path.join(path, "_log.jsonl"), encoding="utf-8") as handle:
        for line in handle:
            table = pq.read_table(os.path.join(path, json.loads(line)["file"]))
            records.extend({k: v for k, v in row.items() if v is not None or (k == "eps" and row["method"])}
                           for row in table.to_pylist())
    return records
