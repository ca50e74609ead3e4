"""One writer per output: an exclusive lock file beside (or inside) what is written.

A lock is a small JSON file naming its holder -- process id, host, start time, and the process's start
tick on Linux (so that a recycled process id is not mistaken for the holder) -- created atomically
(written to a temporary file, then hard-linked to the lock's name, which fails if the name exists), so
that a lock file is never seen half written. A second writer finds it and is refused with a message that
names the holder. A lock whose holder is gone (same host, and no live process with that id and start
tick) is stale: it is taken over, since a killed run cannot release its lock. A lock held on another
host cannot be checked from here; the message says which file to remove once that run is known to be
gone.

    with OutputLock("out/.lock-00000", "the stream output 'out/'"):
        ...   # write
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import tempfile
import time
from typing import Any

__all__ = ["LockError", "OutputLock", "lock_path_for", "read_holder"]


class LockError(RuntimeError):
    """Another live process writes the same output (its lock names it)."""


def lock_path_for(path: str | os.PathLike[str]) -> str:
    """The lock file of an output file or dataset directory: a hidden name beside it,
    ``dir/.name.lock`` (readers of Parquet datasets and globs of ``part-*`` skip it)."""
    path = os.path.abspath(os.fspath(path))
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.lock")


def _start_tick(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    try:   # the command name (field 2) may hold spaces and parentheses: split after its last ')'
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


def _alive(pid: int, tick: int | None) -> bool:
    """Whether process ``pid`` exists on this host (and, if known, started at ``tick``)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # exists, owned by another user
        pass
    except OSError:
        return True
    if tick is not None:
        now = _start_tick(pid)
        if now is not None and now != tick:
            return False   # the id was given to another process since
    return True


def read_holder(path: str) -> dict[str, Any] | None:
    """The holder recorded in a lock file, or None if it cannot be read as one."""
    try:
        with open(path, encoding="utf-8") as handle:
            holder = json.load(handle)
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None


def _describe(holder: dict[str, Any]) -> str:
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)) if isinstance(started, (int, float)) \
        else "an unknown time"
    return f"process {holder['pid']} on host {holder.get('host')!r}, started {when}"


class OutputLock:
    """An exclusive lock on an output, held from :meth:`acquire` (or ``with``) to :meth:`release`.

    Args:
        path: the lock file (e.g. :func:`lock_path_for` of an output file).
        what: the output in words, for messages (``"--output 'relevance.jsonl'"``).

    Raises:
        LockError: on acquiring, when a live process holds the lock (the message names it: pid, host,
            start time, and the lock file).
    """

    def __init__(self, path: str | os.PathLike[str], what: str):
        self.path = os.fspath(path)
        self.what = what
        self.held = False
        self.stale: dict[str, Any] | None = None   # the holder of a stale lock taken over, if any

    def _record(self) -> bytes:
        pid = os.getpid()
        holder = {"pid": pid, "host": socket.gethostname(), "started": time.time(), "tick": _start_tick(pid),
                  "command": " ".join(sys.argv)[:200]}
        return (json.dumps(holder, sort_keys=True) + "\n").encode("utf-8")

    def _create(self) -> bool:
        """Creates the lock file with our record, atomically; False if it exists."""
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".lock-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(self._record())
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temporary, self.path)
            except FileExistsError:
                return False
            except OSError:   # a file system without hard links: exclusive creation instead
                try:
                    target = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    return False
                with os.fdopen(target, "wb") as handle:
                    handle.write(self._record())
            return True
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temporary)

    def acquire(self) -> OutputLock:
        """Takes the lock (taking over a stale one); returns self.

        Raises:
            LockError: a live process holds it.
        """
        for _ in range(20):
            if self._create():
                self.held = True
                return self
            holder = read_holder(self.path)
            if holder is None:
                # Unreadable: being replaced right now, or damaged. Damaged and old: stale.
                try:
                    age = time.time() - os.stat(self.path).st_mtime
                except FileNotFoundError:
                    continue
                if age < 5:
                    time.sleep(0.05)
                    continue
                holder = {"pid": -1, "host": socket.gethostname()}
            if holder.get("host") != socket.gethostname():
                raise LockError(f"{self.what} is being written by {_describe(holder)} (lock file {self.path!r}); "
                                "one writer per output: wait for that run to end, or, if it is known to be gone, "
                                "remove the lock file and resume.")
            if _alive(holder["pid"], holder.get("tick")):
                if holder["pid"] == os.getpid():
                    raise LockError(f"{self.what} is already being written by this process (lock file "
                                    f"{self.path!r}); one writer per output.")
                raise LockError(f"{self.what} is being written by {_describe(holder)} (lock file {self.path!r}); "
                                "one writer per output: wait for it to end, stop it, or write elsewhere.")
            self._take_over(holder)
        raise LockError(f"cannot lock {self.what}: the lock file {self.path!r} keeps changing hands.")

    def _take_over(self, holder: dict[str, Any]) -> None:
        """Removes a stale lock (renamed aside first, so that of two processes taking it over, one wins)."""
        aside = f"{self.path}.stale-{os.getpid()}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        moved = read_holder(aside)
        if moved is not None and moved.get("pid") != holder.get("pid"):
            # Another process took the stale lock over and locked in between: give its lock back.
            with contextlib.suppress(OSError):
                os.link(aside, self.path)
        with contextlib.suppress(OSError):
            os.unlink(aside)
        self.stale = holder

    def release(self) -> None:
        """Releases the lock (removes the lock file if it is still ours)."""
        if not self.held:
            return
        self.held = False
        holder = read_holder(self.path)
        if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()
