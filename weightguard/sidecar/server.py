"""Running the sidecar under uvicorn, hardened against slow and idle clients (issue 16).

uvicorn's HTTP/1.1 protocol starts no timer until a first response is sent,
so a connection that sends half a request head and then nothing holds a
socket (and a file descriptor) forever. 1,200 of them took every descriptor
of a 1,024-descriptor process: ``accept()`` then failed in a loop, no real
request was served, and asyncio logged each failure with a traceback
(153 MB in 40 s). Here:

- every connection must finish its request head within ``header_timeout_s``
  of connecting or of its previous response (a deadline, not an idle timer:
  one byte a second does not extend it); past it, it is closed;
- at most ``max_connections`` are open (default: the descriptor limit less a
  reserve for the database, models and logs); a new connection over that
  closes the *oldest one still waiting for its head*, so real requests keep
  getting in while idle ones are shed, and ``accept()`` never runs out;
- the soft descriptor limit is raised to the hard one at start;
- a request body must arrive within ``body_timeout_s`` (``BodyLimit`` in
  :mod:`weightguard.sidecar.app`), headers are capped at
  ``header_max_bytes`` (h11's ``max_incomplete_event_size``), and idle
  keep-alive connections close after ``keep_alive_s``;
- repeated error records (same logger and message template, e.g. asyncio's
  ``socket.accept() out of system resource`` or uvicorn's ``Invalid HTTP
  request received.``) are written once, then once per ``LOG_EVERY_S`` with
  the number suppressed, so a flood cannot fill the disk (the access log, one
  line per answered request, is left alone).

uvicorn's own ``limit_concurrency`` is not used: it counts idle connections
too and answers the *real* requests 503 once the idle ones fill it.
The protocol class hooks three documented ``asyncio.Protocol`` callbacks of
uvicorn's ``H11Protocol`` (``connection_made``, ``data_received``,
``connection_lost``) and its ``on_response_complete``; no maintained add-on
offers a header deadline for uvicorn.
Not handled here: the application (:func:`weightguard.sidecar.app.create_app`)
or TLS (terminate it in front of the sidecar).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import OrderedDict
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from weightguard.sidecar.settings import SidecarSettings

LOG_EVERY_S = 10.0
# asyncio accepts up to ``backlog`` connections in one go before any protocol sees them, so the
# reserve of descriptors (database, model files, logs) must be larger than the backlog.
_BACKLOG = 128
_FD_RESERVE = 2 * _BACKLOG
_TIMEOUT_ANSWER = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"


class RepeatFilter(logging.Filter):
    """Passes a record the first time, then once per ``every_s`` per (logger, message), noting how many were dropped."""

    def __init__(self, every_s: float = LOG_EVERY_S, clock: Any = time.monotonic) -> None:  # noqa: ANN401 - a callable
        super().__init__()
        self.every_s = every_s
        self.clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether to write ``record`` (annotated with the count suppressed since the last one written)."""
        key = (record.name, str(record.msg)[:200])
        now = self.clock()
        last, dropped = self._seen.get(key, (-self.every_s, 0))
        if now - last < self.every_s:
            self._seen[key] = (last, dropped + 1)
            return False
        if len(self._seen) > 10_000:
            self._seen.clear()  # bounded: a flood of distinct messages starts over
        self._seen[key] = (now, 0)
        if dropped:
            record.msg = f"{record.msg} ({dropped} similar message(s) suppressed in {self.every_s:g} s)"
        return True


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and a connection cap that sheds idle clients."""

    header_timeout_s: ClassVar[float] = 10.0
    max_connections: ClassVar[int] = 1000
    waiting: ClassVar[OrderedDict[GuardedH11Protocol, None]]  # oldest first; one per server (see make_protocol)

    _deadline: asyncio.TimerHandle | None = None
    _armed_cycle: object = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Accept, then make room: over the cap, the oldest connection still waiting for its head goes."""
        super().connection_made(transport)  # type: ignore[arg-type]
        if len(self.connections) > self.max_connections:
            victim = next(iter(self.waiting), None)
            (victim or self)._drop()
            if victim is None:
                return
        self._arm()

    def data_received(self, data: bytes) -> None:
        """Parse as uvicorn does; a new request head (a new cycle) ends the wait."""
        super().data_received(data)
        if self._deadline is not None and self.cycle is not self._armed_cycle:
            self._disarm()

    def on_response_complete(self) -> None:
        """After a response, the next request head has ``header_timeout_s`` again."""
        super().on_response_complete()
        if not self.transport.is_closing() and self._idle():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection."""
        self._disarm()
        super().connection_lost(exc)

    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._armed_cycle = self.cycle
        self._deadline = self.loop.call_later(self.header_timeout_s, self._expire)
        self.waiting[self] = None

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.waiting.pop(self, None)

    def _expire(self) -> None:
        self._deadline = None
        self.waiting.pop(self, None)
        if self._idle() and self.cycle is self._armed_cycle:
            self._drop()

    def _drop(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(_TIMEOUT_ANSWER)
            self.transport.close()


def make_protocol(header_timeout_s: float, max_connections: int) -> type[GuardedH11Protocol]:
    """A protocol class for one server (its own waiting list)."""
    attrs = {"header_timeout_s": header_timeout_s, "max_connections": max_connections, "waiting": OrderedDict()}
    return type("SidecarH11Protocol", (GuardedH11Protocol,), attrs)


def raise_descriptor_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (bounded); return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    wanted = min(wanted, 1 << 20)
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (OSError, ValueError):
            pass  # keep the soft limit; the connection cap is derived from it
    return soft


def connection_cap(settings: SidecarSettings, descriptors: int) -> int:
    """The configured cap, or the descriptor limit less a reserve (at least 16)."""
    if settings.max_connections is not None:
        return settings.max_connections
    return max(16, descriptors - _FD_RESERVE)


def run(app: Any, settings: SidecarSettings, *, log_level: str | None = None) -> None:  # noqa: ANN401 - an ASGI app
    """Serve ``app`` on ``settings.host:port`` until interrupted."""
    cap = connection_cap(settings, raise_descriptor_limit())
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level or settings.log_level,
        proxy_headers=False,
        http=make_protocol(settings.header_timeout_s, cap),
        timeout_keep_alive=max(1, int(settings.keep_alive_s)),
        h11_max_incomplete_event_size=settings.header_max_bytes,
        backlog=_BACKLOG,
    )
    repeat = RepeatFilter()  # after uvicorn.Config, which configures its loggers
    # Error logs only: the access log has one line per answered request, all with one template.
    for name in ("asyncio", "uvicorn.error"):
        logging.getLogger(name).addFilter(repeat)
    uvicorn.Server(config).run()


__all__ = ["GuardedH11Protocol", "RepeatFilter", "connection_cap", "make_protocol", "raise_descriptor_limit", "run"]
