"""The terminal's progress display: the library's progress events drawn as rich bars on stderr.

The library only emits :class:`~weightguard.progress.ProgressEvent` s
(:mod:`weightguard.progress`); this module is the one listener that draws
them, one bar per task (hashing in bytes, conversion in source bytes, probes
and verify-many's phases in items). It is on only when stderr is a terminal
and ``--quiet`` was not given, and it never writes to stdout, which carries
reports. The bars are transient: they vanish when the job ends, so the report
that follows (text reports go to stderr too) starts on a clean screen; status
lines printed through :meth:`Display.say` stay above them. ``rich`` is
imported only when the display is on.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from weightguard.progress import ProgressEvent, reporting

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

QUIET_OPTION = typer.Option(False, "--quiet", "-q", help="No progress display on stderr.")


def wanted(quiet: bool) -> bool:
    """Whether to draw progress: stderr is a terminal and ``--quiet`` was not given."""
    return not quiet and sys.stderr.isatty()


class Display:
    """Draws progress events and status lines; does nothing when off."""

    def __init__(self, bar: Progress | None) -> None:
        self._bar = bar
        self._tasks: dict[tuple[str, str], TaskID] = {}
        self._lock = threading.Lock()

    def __call__(self, event: ProgressEvent, /) -> None:
        """Move the task's bar; a task that starts again at 0 (a second hashing pass) starts a fresh bar."""
        if self._bar is None:
            return
        key = (event.task, event.unit)
        with self._lock:
            task = self._tasks.get(key)
            if task is None:
                task = self._tasks[key] = self._bar.add_task(event.task, total=event.total, amount="", item="")
            elif event.done == 0:
                self._bar.reset(task, total=event.total)
        self._bar.update(task, completed=event.done, total=event.total, amount=_amount(event), item=_tail(event.item))

    def say(self, message: str) -> None:
        """A status line above the bars (verify's stages)."""
        if self._bar is not None:
            self._bar.console.print(f"[dim]… {message}[/dim]", highlight=False)

    def phase(self, phase: str, done: int, total: int) -> None:
        """verify-many's runner callback (models hashed, files analysed, models judged)."""
        self(ProgressEvent(phase, done, total, "items"))


@contextmanager
def progress_display(enabled: bool) -> Iterator[Display]:
    """A display for the block, installed as the library's progress sink; a silent one when not ``enabled``."""
    if not enabled:
        with reporting(None):
            yield Display(None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Column

    # The task's name and amount never shrink; a long file name gives way first.
    columns = (
        TextColumn("{task.description}", table_column=Column(min_width=10, no_wrap=True)),
        BarColumn(bar_width=30),
        TextColumn("{task.fields[amount]}", table_column=Column(no_wrap=True)),
        TimeElapsedColumn(),
        TextColumn("[dim]{task.fields[item]}", markup=True, table_column=Column(no_wrap=True, overflow="ellipsis")),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        display = Display(bar)
        with reporting(display):
            yield display


def _tail(item: str, keep: int = 32) -> str:
    """The end of a long path (the file's name is what tells files apart)."""
    return item if len(item) <= keep else "…" + item[-(keep - 1) :]


def _amount(event: ProgressEvent) -> str:
    """``1.20/4.00 GB`` for bytes (the total's unit for both), ``3/10`` for items, ``3`` when the total is unknown."""
    if event.unit != "bytes":
        return f"{event.done}/{event.total}" if event.total is not None else str(event.done)
    scale = max(event.total or 0, event.done)
    size, name = next(((10**p, n) for p, n in ((9, "GB"), (6, "MB"), (3, "kB")) if scale >= 10**p), (1, "B"))
    if size == 1:
        return f"{event.done}/{event.total} B" if event.total is not None else f"{event.done} B"
    total = f"/{event.total / size:.2f}" if event.total is not None else ""
    return f"{event.done / size:.2f}{total} {name}"
