"""Plain progress lines for logs: what a progress bar shows, as one line every ~30 s, when
stderr is not a terminal (a batch job, ``nohup``, ``| tee``, CI).

:class:`PlainProgress` can stand in for the ``rich`` progress bar the training loop drives
(``update(task, advance=..., rate=..., loss=...)``, ``stop()``, ``.task``). The interval is
``MEDSEG_PROGRESS_SECONDS`` (default 30 s).
"""

from __future__ import annotations

import os
import sys
import time


def progress_interval(default: float = 30.0) -> float:
    """Seconds between two plain progress lines (``MEDSEG_PROGRESS_SECONDS``, default 30)."""
    try:
        v = float(os.environ.get("MEDSEG_PROGRESS_SECONDS", default))
    except ValueError:
        return default
    return v if v >= 0 else default


def format_eta(seconds: float) -> str:
    """``"42 s"``, ``"3 min 05 s"``, ``"2 h 07 min"``; ``"?"`` when unknown."""
    if not seconds == seconds or seconds < 0 or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


class PlainProgress:
    """Counts ``done`` of ``total`` units (iterations); every ``interval`` seconds writes
    ``<label>: <done>/<total> <unit>, <rate> <unit>/s, [loss <x>,] ETA <t>`` to ``stream``."""

    task = 0

    def __init__(self, label: str, total: int, done: int = 0, unit: str = "it", stream=None,
                 interval: float | None = None):
        self.label, self.total, self.done, self.unit = label, int(total), int(done), unit
        self.stream = stream if stream is not None else sys.stderr
        self.interval = progress_interval() if interval is None else interval
        self.start_done = self.done
        self.t0 = self.last = time.monotonic()

    def line(self, loss: str | None = None) -> str:
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        rate = (self.done - self.start_done) / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        extra = f", loss {loss}" if loss not in (None, "", "-") else ""
        return (f"{self.label}: {self.done}/{self.total} {self.unit}, {rate:.2f} {self.unit}/s{extra}, "
                f"ETA {format_eta(eta)}")

    def update(self, task=None, advance: int = 1, loss: str | None = None, rate: str | None = None) -> None:
        """The call of a rich ``Progress.update`` (``task`` and ``rate`` are accepted and unused:
        the plain line computes its own rate)."""
        self.done += int(advance)
        now = time.monotonic()
        if now - self.last >= self.interval and self.done < self.total:
            self.last = now
            self.stream.write(self.line(loss) + "\n")
            self.stream.flush()

    def stop(self) -> None:
        pass
