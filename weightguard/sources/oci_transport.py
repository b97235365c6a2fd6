"""An httpx transport that receives GET answers with the standard library's ``http.client`` (issue 17, pull cost).

Why: httpx (through httpcore and h11) hands a body over in 64 KiB pieces, each
copied three or four times on its way and wrapped in parser events. Measured on
the 2-core shared machine, receiving 1 GiB costs 0.5-0.6 s of CPU that way
(1.2-1.4 s when ``iter_raw`` re-chunks it to 1 MiB), against 0.2 s with
``http.client`` reading 1 MiB at a time from the socket's buffer (now :data:`CHUNK`, see there); with hashing
and writing, a pull cost 1.9-2.0 s against 1.2 s. A model pull is nearly all
blob bytes, so that difference is most of what a pull costs beyond a plain
download (``curl``).

Only the wire is replaced, and only for GET: authentication, retries, redirects
(the ``Authorization`` header is dropped when one leaves the origin), timeouts
and TLS verification stay the client's (httpx, above this transport), and the TLS
context is the one httpx makes for the same ``verify`` (``httpx.create_ssl_context``).
Other methods (uploads, HEAD) go to httpx's own transport unchanged. The registry
client uses this transport only when no proxy is configured in the environment
(httpx ignores environment proxies when a transport is given). Connections are
kept alive and reused (a few idle ones per origin, shared by the threads that
fetch layers); one that the server closed while idle is replaced once.
Not handled here: anything about what the answers mean (:mod:`weightguard.sources.oci_registry`).
"""

from __future__ import annotations

import http.client
import ssl
import threading
from collections.abc import Iterator

import httpx

from weightguard.sources.oci_unpack import CHUNK

# Idle connections kept per origin: one per layer worker, and the prefetching.
_IDLE_PER_ORIGIN = 8
_Origin = tuple[str, str, int]


class _Body(httpx.SyncByteStream):
    """The body of one answer, read in pieces of :data:`CHUNK` bytes; the connection goes back when it ends."""

    def __init__(self, transport: StdlibGetTransport, origin: _Origin, conn: http.client.HTTPConnection) -> None:
        self._transport, self._origin, self._conn = transport, origin, conn
        self._response: http.client.HTTPResponse | None = None
        self._whole = False

    def start(self, response: http.client.HTTPResponse) -> None:
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        response = self._response
        assert response is not None
        try:
            while data := response.read(CHUNK):
                yield data
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"the answer stalled: {exc}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise httpx.RemoteProtocolError(f"the answer broke off: {exc!r}") from exc
        if response.length:  # http.client ends quietly when a Content-Length body is cut short
            raise httpx.RemoteProtocolError(f"the answer broke off {response.length} bytes before its end")
        self._whole = True

    def close(self) -> None:
        response = self._response
        reusable = self._whole and response is not None and not response.will_close
        if response is not None:
            response.close()
        self._transport.release(self._origin, self._conn, reusable=reusable)


class StdlibGetTransport(httpx.BaseTransport):
    """GET through ``http.client`` with kept-alive connections; every other method through httpx (see the module docstring)."""

    def __init__(self, verify: ssl.SSLContext | bool = True) -> None:
        """Verify TLS as ``httpx.Client(verify=verify)`` would."""
        self._verify = verify
        self._context: ssl.SSLContext | None = verify if isinstance(verify, ssl.SSLContext) else None
        self._others: httpx.HTTPTransport | None = None  # made when first needed: it loads the CA store
        self._idle: dict[_Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def _connect(self, origin: _Origin, timeout: float | None) -> http.client.HTTPConnection:
        scheme, host, port = origin
        if scheme == "http":
            return http.client.HTTPConnection(host, port, timeout=timeout)
        with self._lock:
            if self._context is None:
                self._context = httpx.create_ssl_context(verify=self._verify)
            context = self._context
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=context)

    def release(self, origin: _Origin, conn: http.client.HTTPConnection, *, reusable: bool) -> None:
        """Keep ``conn`` for the next GET to ``origin`` when its answer was read whole, else close it."""
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if reusable and len(idle) < _IDLE_PER_ORIGIN:
                idle.append(conn)
                return
        conn.close()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; a GET's answer streams from an ``http.client`` connection."""
        if request.method != "GET" or request.url.scheme not in ("http", "https"):
            with self._lock:
                if self._others is None:
                    self._others = httpx.HTTPTransport(verify=self._verify)
                others = self._others
            return others.handle_request(request)
        origin = (
            request.url.scheme,
            request.url.host,
            request.url.port or (443 if request.url.scheme == "https" else 80),
        )
        timeouts = request.extensions.get("timeout", {})
        timeout = timeouts.get("read") or timeouts.get("connect")
        target = request.url.raw_path.decode("ascii")
        with self._lock:
            idle = self._idle.get(origin, [])
            conn = idle.pop() if idle else None
        reused = conn is not None
        while True:
            if conn is None:
                conn = self._open(origin, timeout)
            try:
                response = self._send(conn, target, request)
                break
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if reused:  # a kept-alive connection the server closed while idle: once more, on a new one
                    conn, reused = None, False
                    continue
                # As httpcore says it: a stall is a timeout, anything else a broken exchange (both retried above).
                if isinstance(exc, TimeoutError):
                    raise httpx.ReadTimeout(f"no answer from {request.url.host}: {exc}") from exc
                raise httpx.RemoteProtocolError(f"{request.url.host} broke off the exchange: {exc!r}") from exc
        body = _Body(self, origin, conn)
        body.start(response)
        return httpx.Response(
            response.status, headers=response.getheaders(), stream=body, extensions={"http_version": b"HTTP/1.1"}
        )

    def _open(self, origin: _Origin, timeout: float | None) -> http.client.HTTPConnection:
        conn = self._connect(origin, timeout)
        try:
            conn.connect()  # TCP and, for https, the TLS handshake with its verification
        except TimeoutError as exc:
            conn.close()
            raise httpx.ConnectTimeout(f"cannot reach {origin[1]}: {exc}") from exc
        except OSError as exc:  # refused, unreachable, or TLS verification failed (ssl.SSLError)
            conn.close()
            raise httpx.ConnectError(f"cannot reach {origin[1]}: {exc}") from exc
        return conn

    @staticmethod
    def _send(conn: http.client.HTTPConnection, target: str, request: httpx.Request) -> http.client.HTTPResponse:
        conn.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
        for name, value in request.headers.raw:  # httpx's own: Host, Accept-Encoding: identity, Authorization…
            conn.putheader(name.decode("latin-1"), value.decode("latin-1"))
        conn.endheaders()
        return conn.getresponse()

    def close(self) -> None:
        """Close every kept connection and the transport for other methods."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()
        if self._others is not None:
            self._others.close()


__all__ = ["StdlibGetTransport"]
