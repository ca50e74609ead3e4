"""The ``lrpjax`` command's launcher: Ctrl-C at any moment, start-up included, exits with 130 and one line.

The console script imports this small package instead of :mod:`lrpjax.app.cli` directly, because
importing anything inside ``lrpjax`` first runs ``lrpjax/__init__.py``, which imports jax (seconds): a
Ctrl-C there would end in a Python traceback, or, when it lands while a compiled extension initialises,
in an ``ImportError`` that hides it. Here the import runs under a handler that records the signal, so
any failure of an interrupted import is reported as the interruption it is; once the command has
finished, further Ctrl-C presses are ignored while the interpreter shuts down (jax's exit hooks run then).
"""

import signal
import sys

__all__ = ["main"]


def _interrupted() -> int:
    sys.stderr.write("lrpjax: interrupted\n")
    return 130


def main(argv=None) -> int:
    """Runs ``lrpjax`` (:func:`lrpjax.app.cli.main`); returns its exit status (130 when interrupted)."""
    seen = []

    def handler(signum, frame):
        # The first press is recorded, not raised: raised inside an extension's initialisation or a
        # garbage-collector hook it would surface as another error or a printed traceback. The import
        # takes seconds; the press is honoured when it ends. A second press stops it at once.
        seen.append(signum)
        if len(seen) > 1:
            raise KeyboardInterrupt

    previous_hook = sys.unraisablehook
    sys.unraisablehook = _quiet_interrupts(previous_hook)
    try:
        try:
            previous = signal.signal(signal.SIGINT, handler)
        except (ValueError, OSError):   # not the main thread
            previous = None
        try:
            from lrpjax.app.cli import main as run
        except BaseException:
            if seen:
                return _interrupted()
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        if seen:   # the KeyboardInterrupt was swallowed during the import
            return _interrupted()
        return run(argv)
    except KeyboardInterrupt:   # between the import and the command's own handler
        return _interrupted()
    finally:
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except (ValueError, OSError):
            pass


def _quiet_interrupts(previous):
    """An unraisable-exception hook that drops KeyboardInterrupt (raised by Ctrl-C inside a callback
    whose exceptions Python can only print, such as a garbage-collector hook) and passes the rest on."""
    def hook(unraisable):
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            previous(unraisable)
    return hook
