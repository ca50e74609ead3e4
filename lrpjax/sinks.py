"""Record sinks: where batch explanations go, one record per input line, streamed and resumable.

A sink receives records (dicts with an int ``"line"``, numbered 1, 2, ... in order) one at a time and
makes them durable on `flush`, so an interrupted run leaves a valid prefix of its output, and a later run
can resume after the last record it finds. The interface, shared by every format (the format is chosen
by the output's extension in `open_sink`; today every name gets JSON lines):

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

__all__ = ["JsonlSink", "SinkError", "open_sink"]


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


def open_sink(path: str | os.PathLike[str] | None, *, resume: bool = False) -> JsonlSink:
    """The sink for an output path (None or "-": stdout); the format follows the extension, and every
    extension is JSON lines today.

    Raises:
        SinkError, OSError: as `JsonlSink`.
    """
    if path is None or os.fspath(path) == "-":
        return JsonlSink(None, resume=resume)
    return JsonlSink(path, resume=resume)
