"""Lines of a text file, read lazily, numbered as ``wc -l`` and editors number them.

Lines are separated by ``"\\n"`` only: a CRLF ending loses its ``"\\r"``, a UTF-8 byte order mark at the
start of the file is dropped, and a last line without ``"\\n"`` still counts. Unlike ``str.splitlines``,
form feeds, ``"\\r"`` alone, U+2028 and the other Unicode separators stay inside their line (a tokenizer
splitting on whitespace treats them as spaces), so line n of the output is line n of the file. Each line
is decoded on its own, so a byte that is not UTF-8 spoils only its line and the message names it; a line
longer than `MAX_LINE_BYTES` is reported, not read, so memory stays bounded whatever the input.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

__all__ = ["BOM", "MAX_LINE_BYTES", "Line", "LineReader", "count_lines"]

BOM = b"\xef\xbb\xbf"
MAX_LINE_BYTES = 1 << 20
"""Longest line read (1 MiB); a longer one becomes a `Line` with an error."""
_BLOCK = 1 << 20


class Line(NamedTuple):
    """One line: its 1-based `number`, its `text` (without the line ending; with U+FFFD for undecodable
    bytes when `error` is set) and `error`, None or why the line cannot be used."""

    number: int
    text: str
    error: str | None = None


def _decode(raw: bytes, number: int) -> Line:
    try:
        return Line(number, raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        return Line(number, raw.decode("utf-8", "replace"),
                    f"line {number} is not valid UTF-8 (byte 0x{raw[error.start]:02x} at byte {error.start + 1})")


class LineReader:
    """Iterates over the `Line` s of a file or of stdin, one read at a time (bounded memory).

    Args:
        path: a file, or "-" for stdin.
        max_line_bytes: longest line read; a longer one is skipped and yielded with an error.

    Raises:
        OSError: the file cannot be opened (raised here, before any line is read).
    """

    def __init__(self, path: str | os.PathLike[str], max_line_bytes: int = MAX_LINE_BYTES):
        self.path = os.fspath(path)
        self.max_line_bytes = max_line_bytes
        self._stream: BinaryIO = sys.stdin.buffer if self.path == "-" else open(self.path, "rb")

    def __iter__(self) -> Iterator[Line]:
        number = 0
        while True:
            raw = self._stream.readline(self.max_line_bytes + 1)
            if not raw:
                return
            number += 1
            if len(raw) > self.max_line_bytes and not raw.endswith(b"\n"):
                self._skip_rest_of_line()
                yield Line(number, "", f"line {number} is longer than {self.max_line_bytes} bytes")
                continue
            if number == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]
            raw = raw[:-1] if raw.endswith(b"\n") else raw
            raw = raw[:-1] if raw.endswith(b"\r") else raw
            yield _decode(raw, number)

    def _skip_rest_of_line(self) -> None:
        while True:
            block = self._stream.readline(_BLOCK)
            if not block or block.endswith(b"\n"):
                return

    def close(self) -> None:
        """Closes the file (stdin stays open)."""
        if self._stream is not sys.stdin.buffer:
            self._stream.close()

    def __enter__(self) -> LineReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def count_lines(path: str | os.PathLike[str]) -> int:
    """The number of lines `LineReader` yields for a file: its ``"\\n"`` count, plus one for a last
    line without ``"\\n"`` (one pass in 1 MiB blocks).

    Raises:
        OSError: the file cannot be read.
    """
    count, last = 0, b"\n"
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")
