"""Progress events: the library says how far a long job is; whoever listens decides how to show it.

Long jobs (hashing multi-GB files, converting shards, running probes,
verify-many's phases) call :func:`emit` with a :class:`ProgressEvent`: a task
name, how much is done out of how much, and in what unit. The listener is a
:class:`ProgressSink` installed for a block of code with :func:`reporting`;
without one, :func:`emit` does nothing, so library callers (the sidecar, the
API, the tests) pay one context-variable read per event and see no output.
The CLI installs a sink that draws a ``rich`` progress bar on a terminal's
stderr (:mod:`weightguard.cli.progress`); nothing here imports ``rich`` or
writes anywhere, so the core stays free of I/O.

Why a context variable rather than a ``progress=`` argument on every call:
hashing alone is reached from nine call sites in seven modules (pipeline,
integrity stage, signing, conversion, verify-many's preparation, ``hash``);
threading a parameter through each of them would change every signature for
a concern none of them has. A context variable is scoped like ``decimal``'s
context: set by the outermost caller for exactly the block it wraps, and
invisible to other threads and asyncio tasks unless they are started from
inside it. Worker threads of one job (hashing's pool) receive the sink
explicitly from the thread that called (:func:`current`).

A sink may be called from several threads at once and must be quick: events
come once per hashed chunk (8 MiB) or finished item, not per byte.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal, Protocol

Unit = Literal["bytes", "items"]


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """How far one task is.

    Attributes:
        task: What is being done (``hashing``, ``converting``, ``probing``, ``analysing``...).
        done: Units finished so far; a new run of the same task starts again at 0.
        total: Units in all, or ``None`` when unknown.
        unit: ``bytes`` or ``items`` (files, probes, models).
        item: What is being worked on now (a file's path, a probe's name), or ``""``.
    """

    task: str
    done: int
    total: int | None
    unit: Unit = "items"
    item: str = ""

    @property
    def finished(self) -> bool:
        """Whether everything is done (never, when the total is unknown)."""
        return self.total is not None and self.done >= self.total


class ProgressSink(Protocol):
    """Receives progress events; may be called from several threads at once."""

    def __call__(self, event: ProgressEvent, /) -> None:
        """Take note of ``event`` (quickly: the work waits for it)."""


_SINK: ContextVar[ProgressSink | None] = ContextVar("weightguard_progress_sink", default=None)


@contextmanager
def reporting(sink: ProgressSink | None) -> Iterator[None]:
    """Send the progress of everything run inside the block to ``sink`` (``None``: to nobody)."""
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)


def current() -> ProgressSink | None:
    """The sink installed for the running code, if any (hand it to worker threads explicitly)."""
    return _SINK.get()


def emit(task: str, done: int, total: int | None, unit: Unit = "items", item: str = "") -> None:
    """Tell the installed sink how far ``task`` is; nothing when none is installed."""
    sink = _SINK.get()
    if sink is not None:
        sink(ProgressEvent(task, done, total, unit, item))


class Counter:
    """A running total for work done by several threads; each :meth:`add` reports the new total.

    ``sink`` is captured by the caller's thread (:func:`current`), since the worker threads
    that call :meth:`add` do not see the caller's context.
    """

    def __init__(self, sink: ProgressSink | None, task: str, total: int, unit: Unit = "bytes") -> None:
        self._sink, self._task, self._total, self._unit = sink, task, total, unit
        self._done = 0
        self._lock = threading.Lock()
        if sink is not None:
            sink(ProgressEvent(task, 0, total, unit))

    def add(self, amount: int, item: str = "") -> None:
        """Count ``amount`` more units as done (``item``: what was just worked on)."""
        if self._sink is None or amount <= 0:
            return
        with self._lock:  # the event is sent under the lock, so a sink never sees the total go back
            self._done += amount
            self._sink(ProgressEvent(self._task, self._done, self._total, self._unit, item))
