"""Atomic file writes: a write that fails or is interrupted never destroys the previous file.

The new content goes to a temporary file in the same directory (so that the final rename stays on one
file system), is flushed and ``fsync``-ed, and replaces the target with ``os.replace`` (atomic on POSIX
and Windows). On any failure -- a full disk, an exception of the writer, Ctrl-C -- the temporary file
is removed and the previous file, if any, is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from typing import BinaryIO

__all__ = ["atomic_path", "atomic_write", "atomic_write_text"]


def _new_file_mode(path: str) -> int:
    """The permission bits the file would get from a plain ``open(path, "w")``: those of the file it
    replaces, else 0o666 less the umask (``mkstemp`` itself creates 0o600)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_directory(directory: str) -> None:
    # Makes the rename itself durable; not every platform or file system can open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Writes ``path`` through ``write(handle)`` on a temporary binary file, then renames it into place.

    Args:
        path: the file to create or replace.
        write: called once with the open temporary file (binary, seekable); writes the whole content.

    Raises:
        OSError: the temporary file cannot be created or written (e.g. ENOSPC: the message names ``path``),
            or the rename fails; the previous file at ``path`` is intact and no temporary file is left behind.
        Exception: any exception of ``write``, after the same clean-up.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, _new_file_mode(path))
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        _name_the_path(error, path)
        raise
    _fsync_directory(directory)


def _name_the_path(error: BaseException, path: str) -> None:
    """An OSError without a file name (a full disk: ENOSPC on write or fsync) raised again naming ``path``."""
    if isinstance(error, OSError) and error.filename is None and error.errno is not None:
        raise OSError(error.errno, f"{error.strerror or error}: writing {path!r} (the previous file, if any, is "
                                   "intact)", path) from error


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """`atomic_write` of a UTF-8 text."""
    data = text.encode("utf-8")
    atomic_write(path, lambda handle: handle.write(data))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]):
    """For writers that take a file name (e.g. a figure's ``savefig``): yields a temporary path beside
    `path` with the same extension; on success it replaces `path`, on failure it is removed.

        with atomic_path("bars.png") as temporary:
            figure.savefig(temporary)
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                                     suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        yield temporary
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(temporary, _new_file_mode(path))
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        _name_the_path(error, path)
        raise
    _fsync_directory(directory)
