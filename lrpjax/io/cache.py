"""A persistent compilation cache: compiled programs kept on disk between processes.

Explaining one sentence from the command line spends most of its time compiling the explanation
program. :func:`enable_compilation_cache` points JAX's persistent compilation cache at a directory of
the user's, so that the second and later runs load the compiled program instead (the ``lrpjax``
command does this by itself). The cache only holds compiled programs, keyed by everything that
shapes them (program, shapes, jax/XLA versions, device): deleting it at any time is safe, it fills
again. A directory that cannot be used (not writable, not a directory) gives a warning and no cache;
an unreadable entry in it (a corrupt or truncated file) gives a warning and is compiled anew.

    import lrpjax.io.cache
    lrpjax.io.cache.enable_compilation_cache()          # $LRPJAX_CACHE_DIR or ~/.cache/lrpjax/jax

Where: ``$LRPJAX_CACHE_DIR`` if set (an empty value turns the cache off), else
``$XDG_CACHE_HOME/lrpjax/jax``, else ``~/.cache/lrpjax/jax``.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

__all__ = ["default_cache_dir", "enable_compilation_cache"]

ENV = "LRPJAX_CACHE_DIR"


def default_cache_dir() -> Path | None:
    """The cache directory: ``$LRPJAX_CACHE_DIR``, ``$XDG_CACHE_HOME/lrpjax/jax`` or
    ``~/.cache/lrpjax/jax``; None when ``$LRPJAX_CACHE_DIR`` is set to the empty string (no cache)."""
    if ENV in os.environ:
        return Path(os.environ[ENV]).expanduser() if os.environ[ENV] else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lrpjax" / "jax"


def _usable(directory: Path) -> str | None:
    """None if ``directory`` can hold the cache (created if needed), else the reason it cannot."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-"):
            pass
    except OSError as error:
        return error.strerror or str(error)
    return None


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Keeps compiled programs in ``path`` between processes (JAX's persistent compilation cache).

    Every compilation is cached, however short (the explanation programs compile in one or two
    seconds). Call it before the first compilation; it applies to the whole process.

    Args:
        path: the directory; None for :func:`default_cache_dir`.

    Returns:
        The directory in use, or None when there is none (turned off, or unusable: a warning says why,
        and programs are compiled as without a cache).
    """
    directory = default_cache_dir() if path is None else Path(path).expanduser()
    if directory is None:
        return None
    reason = _usable(directory)
    if reason is not None:
        warnings.warn(f"lrpjax: compilation cache {str(directory)!r} is not usable ({reason}); "
                      "compiling without it.", RuntimeWarning, stacklevel=2)
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    # A damaged entry is reported and compiled anew, never fatal.
    jax.config.update("jax_raise_persistent_cache_errors", False)
    return directory
