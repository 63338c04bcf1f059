"""One progress-bar style for every command: rich, on stderr, with ETA; silent when not a TTY
unless forced (so logs and ``--json`` output stay clean)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextlib.contextmanager
def progress_bar(description: str, total: int, enabled: bool | None = None) -> Iterator:
    """Yield ``advance(label: str = "")``; the bar shows done/total, elapsed and ETA."""
    console = Console(file=sys.stderr)
    if enabled is None:
        enabled = console.is_terminal
    if not enabled:
        yield lambda label="": None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[label]}"),
    )
    with Progress(*columns, console=console, transient=False) as prog:
        task = prog.add_task(description, total=total, label="")
        yield lambda label="": prog.update(task, advance=1, label=label)
