"""The ``lrpjax`` command's launcher: Ctrl-C at any moment, start-up included, exits with 130 and one line.

The console script imports this small package instead of :mod:`lrpjax.app.cli` directly, because
importing anything inside ``lrpjax`` first runs ``lrpjax/__init__.py``, which imports jax (seconds): a
Ctrl-C there would end in a Python traceback. Here the import itself is guarded, and once the command has
finished further Ctrl-C presses are ignored while the interpreter shuts down (jax's exit hooks run then).
"""

import signal
import sys

__all__ = ["main"]


def main(argv=None) -> int:
    """Runs ``lrpjax`` (:func:`lrpjax.app.cli.main`); returns its exit status (130 when interrupted)."""
    try:
        try:
            from lrpjax.app.cli import main as run
        except KeyboardInterrupt:
            sys.stderr.write("lrpjax: interrupted\n")
            return 130
        return run(argv)
    except KeyboardInterrupt:   # between the import and the command's own handler
        sys.stderr.write("lrpjax: interrupted\n")
        return 130
    finally:
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except (ValueError, OSError):   # not the main thread
            pass
