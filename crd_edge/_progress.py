"""Progress bars for the long commands: n/N, elapsed time and ETA on a terminal, nothing
otherwise (CI logs keep the commands' one line per item). rich draws them."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(total: int | None, description: str, enabled: bool | None = None) -> Iterator[Callable[..., None]]:
    """Yields ``advance(steps=1, note="")``. ``enabled`` defaults to "stderr is a terminal"."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield lambda steps=1, note="": None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    bar = Progress(TextColumn(f"[bold]{description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[note]}"),
                   console=Console(stderr=True), transient=False)
    task = bar.add_task(description, total=total, note="")
    with bar:
        def advance(steps: int = 1, note: str = "") -> None:
            bar.update(task, advance=steps, note=note)
        yield advance


def optional_bar(factory: Callable | None, total: int | None, description: str):
    """``factory(total, description)`` where a caller passed a bar factory (the CLI passes
    :func:`progress_bar`), else a silent bar: library calls draw nothing unless asked."""
    return factory(total, description) if factory else progress_bar(total, description, enabled=False)
