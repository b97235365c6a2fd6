"""A blob's HTTP body as a file-like stream, capped in size, for unpacking while it downloads.

The registry client used to spool each blob to a private file, check its digest,
then read it again to unpack: three passes over every byte (receive and hash,
read, hash again while unpacking). Streaming straight from the response into the
unpacker makes it one: :class:`~weightguard.sources.oci_unpack.HashingReader`
hashes what passes, and the blob's context raises on exit when the digest does not
match, which fails the whole pull, so nothing from a mismatching blob is ever
judged. The unpacker must already resist hostile layers (a manifest's author can
make any digest match), so reading before the digest is known adds no exposure.

With ``prefetch``, a helper thread receives the next chunks while the reading
thread hashes and writes the previous ones (socket reads, hashlib and file writes
all release the GIL), so the registry's sends are not held up by the hashing: the
pull then costs about what a plain download costs. The queue is bounded, so at
most ``prefetch`` chunks (about :data:`CHUNK` bytes each) wait in memory.

The chunks are taken as the transport hands them over (``iter_raw()`` without a
size: httpx's re-chunking to a fixed size joins and slices every piece, which
measured 1.2-1.4 s CPU per GiB against 0.5-0.6 s as received). The registry's
GET transport (:mod:`weightguard.sources.oci_transport`) hands over :data:`CHUNK` pieces;
httpx's own (behind a proxy) 64 KiB ones, which the prefetch thread joins into
pieces of about :data:`CHUNK` bytes before queueing: one hand-over per piece keeps
the threads' switching off the critical path (the queue and the GIL cost more
than the copy). Blobs fetched on the layer pool (:mod:`weightguard.sources.oci_blobs`)
need no prefetch thread: the layers already overlap each other.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

from weightguard.sources.oci_unpack import CHUNK, FetchError

_END = object()


class ResponseStream:
    """``read(n)`` over an iterator of raw body chunks, refusing more than ``cap`` bytes in all."""

    def __init__(
        self,
        chunks: Iterator[bytes],
        cap: int,
        what: str,
        *,
        prefetch: int = 0,
        on_close: Callable[[], None] = lambda: None,
    ) -> None:
        self._chunks = chunks
        self._on_close = on_close
        self._ended = False  # the prefetch thread handed over the end: never wait on the queue again
        self._queue: queue.Queue[object] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if prefetch > 0:
            self._queue = queue.Queue(maxsize=prefetch)
            self._thread = threading.Thread(target=self._pump, name="weightguard-blob-prefetch", daemon=True)
            self._thread.start()
        self._cap = cap
        self._what = what
        self._buffer = b""
        self._offset = 0
        self.received = 0

    def _put(self, item: object) -> bool:
        assert self._queue is not None
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
            except queue.Full:
                continue
            else:
                return True
        return False

    def _pump(self) -> None:
        pending: list[bytes] = []  # received, not yet queued: joined into about CHUNK bytes
        held = 0
        try:
            for chunk in self._chunks:
                pending.append(chunk)
                held += len(chunk)
                if held >= CHUNK:
                    if not self._put(b"".join(pending)):
                        return
                    pending, held = [], 0
        except BaseException as exc:  # noqa: BLE001 - handed over to the reading thread, which raises it
            if not pending or self._put(b"".join(pending)):  # what arrived before the error, first
                self._put(exc)
            return
        if not pending or self._put(b"".join(pending)):
            self._put(_END)

    def _next(self) -> bytes:
        if self._queue is None:
            return next(self._chunks, b"")
        if self._ended:
            return b""
        item = self._queue.get()
        self._ended = item is _END or isinstance(item, BaseException)
        if isinstance(item, BaseException):
            raise item
        return b"" if item is _END else item  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the prefetch thread: no more queueing, the response closed (``on_close``), then wait for it.

        A receive in progress ends when its data or the client's read timeout comes; the thread is a
        daemon, so a stalled registry delays nothing past ``join``'s bound.
        """
        self._stop.set()
        self._on_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _fill(self) -> bool:
        chunk = self._next()
        if not chunk:
            return False
        self.received += len(chunk)
        if self.received > self._cap:
            raise FetchError(f"{self._what} is over {self._cap} bytes")
        self._buffer, self._offset = chunk, 0
        return True

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that is left when ``n`` < 0); ``b""`` at the end.

        Raises:
            FetchError: the body is over the cap.
        """
        size = n if n >= 0 else 1 << 62
        if self._offset == 0 and len(self._buffer) <= size and self._buffer:
            out, self._buffer = self._buffer, b""  # the common case: a whole chunk, no copy
            return out
        parts: list[bytes] = []
        while size > 0:
            if self._offset >= len(self._buffer) and not self._fill():
                break
            piece = self._buffer[self._offset : self._offset + size]
            self._offset += len(piece)
            size -= len(piece)
            parts.append(piece)
        return b"".join(parts)


__all__ = ["CHUNK", "ResponseStream"]
