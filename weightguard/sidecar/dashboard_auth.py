"""Browser sign-in for the dashboard: the API's bearer token, exchanged once for a session cookie.

A browser cannot put ``Authorization: Bearer`` on a link, so the dashboard
also accepts a session cookie, issued by ``POST /dashboard/login`` to whoever
presents one of the API's tokens. The cookie holds an expiry time and an
HMAC of it keyed by the token presented, never the token itself: a leaked
cookie opens only the read-only dashboard, only until it expires, and
rotating the token ends every session made with it. The cookie is HttpOnly,
SameSite=Strict, scoped to the dashboard's path, and Secure over https.
Requests with an ``Authorization`` header are judged by the bearer check
alone. A browser without a session is sent to the sign-in page; any other
client gets the API's 401.
The form is parsed with the standard library (one urlencoded field), not
python-multipart, to keep the sidecar's dependencies as they are.
Not handled here: the pages (:mod:`weightguard.sidecar_dashboard`) and the
bearer check itself (:mod:`.auth`).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import PackageLoader

from weightguard.report.html import make_environment
from weightguard.sidecar.auth import BearerAuth
from weightguard.sidecar_dashboard.dashboard import PAGE_HEADERS  # the pages' CSP lets forms post to self

COOKIE = "wg_dashboard"
SESSION_SECONDS = 8 * 3600
_CONTEXT = b"weightguard dashboard session v1|"
_MAX_FORM_BYTES = 4096


def _mac(token: bytes, expires: int) -> str:
    return hmac.new(token, _CONTEXT + str(expires).encode(), hashlib.sha256).hexdigest()


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
        expires = int(self.clock()) + SESSION_SECONDS
        return f"{expires}.{_mac(token, expires)}"

    def session_holds(self, value: str) -> bool:
        """Whether ``value`` is an unexpired session made with one of the current tokens."""
        stamp, _, mac = value.partition(".")
        # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
        if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12 or int(stamp) <= self.clock():
            return False
        matched = False
        for token in self.bearer.tokens:
            matched |= hmac.compare_digest(mac.encode(), _mac(token, int(stamp)).encode())
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


def login_router(auth: DashboardAuth, *, prefix: str = "/dashboard") -> APIRouter:
    """The sign-in and sign-out routes (open to all: they are how a browser gets in)."""
    env = make_environment([PackageLoader("weightguard.sidecar_dashboard", "templates")])
    router = APIRouter(prefix=prefix, include_in_schema=False)

    def form(request: Request, status: int, message: str = "") -> HTMLResponse:
        body = env.get_template("dashboard_login.html.j2").render(
            root=f"{prefix}/", action=str(request.url_for("dashboard_login").path), message=message, title="Sign in"
        )
        return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)

    @router.get("/login", name="dashboard_login_form", response_class=HTMLResponse)
    def login_form(request: Request) -> HTMLResponse:
        return form(request, 200)

    @router.post("/login", name="dashboard_login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        raw = await request.body()
        try:
            fields = parse_qs(raw[:_MAX_FORM_BYTES].decode("utf-8", "replace"), max_num_fields=4)
        except ValueError:  # more fields than the form has: not our form
            return form(request, 400, "That request is not the sign-in form.")
        token = (fields.get("token") or [""])[0].strip().encode()
        session = auth.session_for(token) if token else None
        if session is None:
            return form(request, 401, "That token is not accepted.")
        answer = RedirectResponse(f"{prefix}/", status_code=303, headers=PAGE_HEADERS)
        answer.set_cookie(
            COOKIE,
            session,
            max_age=SESSION_SECONDS,
            path=prefix,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return answer

    @router.post("/logout", name="dashboard_logout")
    def logout() -> Response:
        answer = RedirectResponse(f"{prefix}/login", status_code=303, headers=PAGE_HEADERS)
        answer.delete_cookie(COOKIE, path=prefix, httponly=True, samesite="strict")
        return answer

    return router


__all__ = ["COOKIE", "SESSION_SECONDS", "DashboardAuth", "login_router"]
