"""Browser sign-in for the dashboard: the API's bearer token, exchanged once for a session cookie.

A browser cannot put ``Authorization: Bearer`` on a link, so the dashboard
also accepts a session cookie, issued by ``POST /dashboard/login`` to whoever
presents one of the API's tokens. The cookie holds the time it was issued
and an HMAC of it keyed by the token presented, never the token itself; the
server decides how long a session lasts (``SESSION_SECONDS`` from the signed
issue time), so a cookie can never claim a later end (issue 16: one minted
for the year 5138 was accepted). A leaked cookie opens only the read-only
dashboard, only until it expires, and rotating the token ends every session
made with it. Cookies are HttpOnly, SameSite=Strict, scoped to the
dashboard's path, and Secure over https.

Sign-in and sign-out refuse cross-site posts (issue 16): the ``Origin`` (or,
without one, the ``Referer``) must name this server's own host, and the form
must carry the anti-forgery token the server put in the ``wg_csrf`` cookie
when it served the form (a double-submit token: another site can neither
read the cookie nor, with SameSite=Strict, make the browser send it).
Failed sign-ins are limited per client address (``LoginThrottle``: 5 a
minute, then 429 with ``Retry-After``, the wait doubling while it goes on),
so a token cannot be guessed at hundreds a second.
Requests with an ``Authorization`` header are judged by the bearer check
alone. A browser without a session is sent to the sign-in page; any other
client gets the API's 401.
The form is parsed with the standard library (a few urlencoded fields), not
python-multipart, to keep the sidecar's dependencies as they are.
Not handled here: the pages (:mod:`weightguard.sidecar_dashboard`) and the
bearer check itself (:mod:`.auth`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import PackageLoader

from weightguard.report.html import make_environment
from weightguard.sidecar.auth import BearerAuth
from weightguard.sidecar_dashboard.dashboard import CSRF_COOKIE, PAGE_HEADERS  # pages' CSP lets forms post to self

COOKIE = "wg_dashboard"
SESSION_SECONDS = 8 * 3600
CLOCK_SKEW_S = 60  # a session issued this far "in the future" still holds (several replicas, one token)
_CONTEXT = b"weightguard dashboard session v2|"
_MAX_FORM_BYTES = 4096


def _mac(token: bytes, issued: int) -> str:
    return hmac.new(token, _CONTEXT + str(issued).encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class DashboardAuth:
    """The dashboard's check: the API's bearer token, or a session cookie made from one."""

    bearer: BearerAuth
    login_path: str = "/dashboard/login"
    clock: Callable[[], float] = time.time

    def session_for(self, token: bytes) -> str | None:
        """A session value for ``token``, or None when it is not one of the API's tokens."""
        if not self.bearer.accepts(token):
            return None
        issued = int(self.clock())
        return f"{issued}.{_mac(token, issued)}"

    def session_holds(self, value: str) -> bool:
        """Whether ``value`` is a session made with one of the current tokens less than ``SESSION_SECONDS`` ago."""
        stamp, _, mac = value.partition(".")
        # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
        if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
            return False
        issued, now = int(stamp), self.clock()
        if not now - SESSION_SECONDS < issued <= now + CLOCK_SKEW_S:
            return False  # the server's lifetime, from the signed issue time: never the cookie's claim
        matched = False
        for token in self.bearer.tokens:
            matched |= hmac.compare_digest(mac.encode(), _mac(token, issued).encode())
        return matched

    def __call__(self, request: Request) -> None:
        """FastAPI dependency: return if authorised; send a browser to sign in; else 401."""
        if self.bearer.disabled or "authorization" in request.headers:
            self.bearer(request)
            return
        if self.session_holds(request.cookies.get(COOKIE, "")):
            return
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            raise HTTPException(status_code=303, detail="sign in first", headers={"Location": self.login_path})
        raise HTTPException(status_code=401, detail="missing bearer token", headers={"WWW-Authenticate": "Bearer"})


@dataclass(slots=True)
class LoginThrottle:
    """Failed sign-ins per client: ``limit`` within ``window_s``, then a wait that doubles (to ``max_wait_s``)."""

    limit: int = 5
    window_s: float = 60.0
    max_wait_s: float = 3600.0
    max_clients: int = 10_000  # the oldest entries go first: memory stays bounded under a spray of addresses
    clock: Callable[[], float] = time.monotonic
    _failures: OrderedDict[str, list[float]] = field(default_factory=OrderedDict)
    _blocked: dict[str, tuple[float, float]] = field(default_factory=dict)  # client: (until, last wait)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self, client: str) -> float:
        """Seconds ``client`` must wait before it may try again (0: it may)."""
        with self._lock:
            until, _ = self._blocked.get(client, (0.0, 0.0))
            return max(0.0, until - self.clock())

    def failed(self, client: str) -> None:
        """Count a failed sign-in; past the limit, block the client (twice as long as last time)."""
        now = self.clock()
        with self._lock:
            recent = [t for t in self._failures.pop(client, []) if now - t < self.window_s]
            recent.append(now)
            self._failures[client] = recent
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
            if len(recent) >= self.limit:
                _, last = self._blocked.get(client, (0.0, 0.0))
                wait = min(self.max_wait_s, last * 2 if last else self.window_s)
                self._blocked[client] = (now + wait, wait)
                self._failures[client] = []
            if len(self._blocked) > self.max_clients:
                self._blocked = {c: b for c, b in self._blocked.items() if b[0] > now}

    def succeeded(self, client: str) -> None:
        """A correct token: forget the client's failures and back-off."""
        with self._lock:
            self._failures.pop(client, None)
            self._blocked.pop(client, None)


def same_origin(request: Request) -> bool:
    """Whether a post comes from this server's own pages: ``Origin`` (else ``Referer``) names our host.

    The host is compared, not the scheme: a TLS-terminating proxy makes the browser's https
    origin arrive over http, and no other site can put our host name in its Origin.
    """
    host = request.headers.get("host", "")
    claimed = request.headers.get("origin") or request.headers.get("referer") or ""
    if not host or not claimed or claimed == "null":
        return False
    try:
        netloc = urlsplit(claimed).netloc
    except ValueError:
        return False
    return hmac.compare_digest(netloc.lower().encode(), host.lower().encode())


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def login_router(
    auth: DashboardAuth, *, prefix: str = "/dashboard", throttle: LoginThrottle | None = None
) -> APIRouter:
    """The sign-in and sign-out routes (open to all: they are how a browser gets in)."""
    env = make_environment([PackageLoader("weightguard.sidecar_dashboard", "templates")])
    router = APIRouter(prefix=prefix, include_in_schema=False)
    limiter = throttle or LoginThrottle()

    def cookie(response: Response, request: Request, name: str, value: str) -> None:
        response.set_cookie(
            name,
            value,
            max_age=SESSION_SECONDS,
            path=prefix,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    def form(request: Request, status: int, message: str = "", headers: dict[str, str] | None = None) -> HTMLResponse:
        token = secrets.token_urlsafe(32)  # a fresh anti-forgery token with every form
        body = env.get_template("dashboard_login.html.j2").render(
            root=f"{prefix}/",
            action=str(request.url_for("dashboard_login").path),
            message=message,
            title="Sign in",
            csrf=token,
        )
        answer = HTMLResponse(body, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})
        cookie(answer, request, CSRF_COOKIE, token)
        return answer

    def forged(request: Request, fields: dict[str, list[str]]) -> bool:
        offered = (fields.get("csrf") or [""])[0]
        expected = request.cookies.get(CSRF_COOKIE, "")
        token_ok = bool(expected) and hmac.compare_digest(offered.encode(), expected.encode())
        return not (same_origin(request) and token_ok)

    async def read_form(request: Request) -> dict[str, list[str]] | None:
        raw = await request.body()
        try:
            return parse_qs(raw[:_MAX_FORM_BYTES].decode("utf-8", "replace"), max_num_fields=4)
        except ValueError:  # more fields than the form has: not our form
            return None

    @router.get("/login", name="dashboard_login_form", response_class=HTMLResponse)
    def login_form(request: Request) -> HTMLResponse:
        return form(request, 200)

    @router.post("/login", name="dashboard_login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        client = _client(request)
        wait = limiter.wait(client)
        if wait > 0:
            retry = {"Retry-After": str(int(wait) + 1)}
            return form(request, 429, f"Too many failed sign-ins; try again in {int(wait) + 1} s.", retry)
        fields = await read_form(request)
        if fields is None:
            return form(request, 400, "That request is not the sign-in form.")
        if forged(request, fields):
            return form(request, 403, "That sign-in did not come from this page; please try again.")
        token = (fields.get("token") or [""])[0].strip().encode()
        session = auth.session_for(token) if token else None
        if session is None:
            limiter.failed(client)
            return form(request, 401, "That token is not accepted.")
        limiter.succeeded(client)
        answer = RedirectResponse(f"{prefix}/", status_code=303, headers=PAGE_HEADERS)
        cookie(answer, request, COOKIE, session)
        cookie(answer, request, CSRF_COOKIE, secrets.token_urlsafe(32))  # the pages' sign-out token
        return answer

    @router.post("/logout", name="dashboard_logout")
    async def logout(request: Request) -> Response:
        fields = await read_form(request)
        if fields is None or forged(request, fields):
            raise HTTPException(status_code=403, detail="sign-out must come from the dashboard's own page")
        answer = RedirectResponse(f"{prefix}/login", status_code=303, headers=PAGE_HEADERS)
        answer.delete_cookie(COOKIE, path=prefix, httponly=True, samesite="strict")
        return answer

    return router


__all__ = ["CLOCK_SKEW_S", "COOKIE", "SESSION_SECONDS", "DashboardAuth", "LoginThrottle", "login_router", "same_origin"]
