"""A tiny dependency-free progress bar for long loops (training, batch explanation).

The bar writes to a stream (stderr by default) only when that stream is a terminal or when forced, so logs,
pipes and test output stay clean. It redraws one line with a carriage return, at most every `min_interval`
seconds, and ends the line when closed.

    with ProgressBar(total=1000, desc="train") as bar:
        for step in range(1000):
            ...
            bar.update(1, loss=0.25)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

__all__ = ["ProgressBar", "track"]

_Item = TypeVar("_Item")


def _is_tty(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (OSError, ValueError):  # a closed or detached stream is not a terminal
        return False


def _format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0.0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class ProgressBar:
    """A one-line progress bar: ``desc  42% |#####     | 420/1000 [00:03<00:04, 140.2 it/s] loss=0.1``.

    Args:
        total: number of expected updates, or None when unknown (then only the count and rate are shown).
        desc: a short label printed before the bar.
        force: True always draws, False never draws, None (default) draws only when `stream` is a terminal.
        stream: where to write; defaults to ``sys.stderr`` at construction time.
        width: number of characters of the bar itself.
        min_interval: minimum seconds between two redraws (the final draw on `close` always happens).

    Raises:
        ValueError: if `total` is negative, `width` is not positive or `min_interval` is negative.
    """

    def __init__(
        self,
        total: int | None = None,
        desc: str = "",
        *,
        force: bool | None = None,
        stream: IO[str] | None = None,
        width: int = 30,
        min_interval: float = 0.1,
    ) -> None:
        if total is not None and total < 0:
            raise ValueError(f"`total` must be >= 0 or None; got {total}.")
        if width < 1:
            raise ValueError(f"`width` must be >= 1; got {width}.")
        if min_interval < 0:
            raise ValueError(f"`min_interval` must be >= 0; got {min_interval}.")
        self.total = total
        self.desc = desc
        self.stream = sys.stderr if stream is None else stream
        self.enabled = _is_tty(self.stream) if force is None else bool(force)
        self.width = width
        self.min_interval = min_interval
        self.count = 0
        self.postfix: dict[str, Any] = {}
        self._start = time.monotonic()
        self._last_draw = -float("inf")
        self._last_len = 0
        self._closed = False

    def update(self, n: int = 1, **postfix: Any) -> None:
        """Advances the count by `n` and replaces the shown key=value pairs with `postfix` (if any)."""
        self.count += n
        if postfix:
            self.postfix = dict(postfix)
        now = time.monotonic()
        if now - self._last_draw >= self.min_interval:
            self._draw(now)

    def set_postfix(self, **postfix: Any) -> None:
        """Replaces the key=value pairs shown after the bar without advancing the count."""
        self.postfix = dict(postfix)

    def render(self, now: float | None = None) -> str:
        """Returns the current line (without carriage return), whether or not the bar is enabled."""
        elapsed = (time.monotonic() if now is None else now) - self._start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        parts = [self.desc] if self.desc else []
        if self.total:
            frac = min(self.count / self.total, 1.0)
            filled = int(round(frac * self.width))
            remaining = (self.total - self.count) / rate if rate > 0 else 0.0
            parts.append(f"{100 * frac:3.0f}% |{'#' * filled}{' ' * (self.width - filled)}|")
            parts.append(f"{self.count}/{self.total}")
            parts.append(f"[{_format_seconds(elapsed)}<{_format_seconds(remaining)}, {rate:.1f} it/s]")
        else:
            parts.append(f"{self.count} [{_format_seconds(elapsed)}, {rate:.1f} it/s]")
        parts.extend(f"{key}={_format_value(value)}" for key, value in self.postfix.items())
        return " ".join(parts)

    def _draw(self, now: float) -> None:
        self._last_draw = now
        if not self.enabled or self._closed:
            return
        line = self.render(now)
        # Pad with spaces so a shorter line fully overwrites the previous one.
        self.stream.write("\r" + line + " " * max(self._last_len - len(line), 0))
        self.stream.flush()
        self._last_len = len(line)

    def close(self) -> None:
        """Draws the final state and ends the line; further updates are counted but not drawn."""
        if self._closed:
            return
        self._draw(time.monotonic())
        self._closed = True
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def track(
    iterable: Iterable[_Item],
    total: int | None = None,
    desc: str = "",
    *,
    force: bool | None = None,
    stream: IO[str] | None = None,
) -> Iterator[_Item]:
    """Yields the items of `iterable` while drawing a `ProgressBar` (see there for `force` and `stream`).

    Args:
        iterable: the items to loop over.
        total: number of items; taken from ``len(iterable)`` when None and the iterable has a length.
        desc: a short label printed before the bar.
        force: True always draws, False never draws, None draws only on a terminal.
        stream: where to write; defaults to ``sys.stderr``.

    Yields:
        The items of `iterable`, unchanged.
    """
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with ProgressBar(total, desc, force=force, stream=stream) as bar:
        for item in iterable:
            yield item
            bar.update(1)
