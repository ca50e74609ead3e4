"""Fenced code blocks of a Markdown file, for the tests that execute the README and the guide pages."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

_OPEN = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)[^\n]*$")


class Block(NamedTuple):
    """One fenced block: its language tag ("" when none), its text, and the line its fence opens on."""

    language: str
    code: str
    line: int


def blocks(path: str | Path) -> list[Block]:
    """Every fenced block of ``path`` at the start of a line, in order.

    Raises:
        ValueError: a fence that is never closed (the file's line is named).
    """
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    found: list[Block] = []
    k = 0
    while k < len(lines):
        opened = _OPEN.match(lines[k])
        if not opened:
            k += 1
            continue
        fence, language = opened.group(1), opened.group(2)
        start = k
        k += 1
        body = []
        while k < len(lines) and not (lines[k].startswith(fence[0] * len(fence)) and not lines[k].strip(fence[0])):
            body.append(lines[k])
            k += 1
        if k == len(lines):
            raise ValueError(f"{path}:{start + 1}: the code fence {fence} is never closed.")
        found.append(Block(language, "\n".join(body) + "\n", start + 1))
        k += 1
    return found
