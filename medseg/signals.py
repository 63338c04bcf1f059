"""SIGTERM handled like Ctrl-C: a ``kill PID``, ``timeout``, Slurm's ``scancel`` or a container
stop lets medseg finish cleanly (``last.pt`` saved, the current case finished or dropped,
the manifest consistent, children stopped) and exit with 143 (128 + SIGTERM).

:class:`Terminated` is a ``KeyboardInterrupt``, so every ``except KeyboardInterrupt`` cleanup
path (the training loop's checkpoint, the Ray pool's cancel) runs for it too.
:func:`handle_sigterm` installs the handler for the duration of a CLI command (main thread only;
the previous handler comes back afterwards).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_state = {"terminated": False}


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM arrives (exit code 143)."""

    exit_code = 143


def terminating() -> bool:
    """Whether SIGTERM arrived during the current command."""
    return _state["terminated"]


def _on_sigterm(signum, frame) -> None:
    first = not _state["terminated"]
    _state["terminated"] = True
    if first:
        # torch's DataLoader installs a SIGCHLD handler that raises RuntimeError when a worker dies;
        # a SIGTERM sent to the whole process group kills the workers too, and that error must not
        # cut short the checkpoint written on the way out.
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    raise Terminated()


@contextlib.contextmanager
def handle_sigterm() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while the block runs (no-op outside the main thread)."""
    _state["terminated"] = False
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old_term = signal.getsignal(signal.SIGTERM)
    old_chld = signal.getsignal(signal.SIGCHLD)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old_term if old_term is not None else signal.SIG_DFL)
        if _state["terminated"]:
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(signal.SIGCHLD, old_chld if old_chld is not None else signal.SIG_DFL)


def stop_loader_workers(loader) -> None:
    """Shut down the worker processes of a torch DataLoader with ``persistent_workers`` now,
    instead of whenever the loader is garbage-collected (an exception's traceback keeps it alive)."""
    it = getattr(loader, "_iterator", None)
    shutdown = getattr(it, "_shutdown_workers", None)
    if shutdown is not None:
        with contextlib.suppress(Exception):
            shutdown()
        loader._iterator = None
