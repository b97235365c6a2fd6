"""Signing in to the dashboard from a browser: the API token buys a session cookie, and nothing more.

The session rules are checked directly; the routes against the real sidecar (uvicorn on 127.0.0.1).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

httpx = pytest.importorskip("httpx")

from dashboard_server import running_sidecar  # noqa: E402 - after the skip

from weightguard.sidecar.auth import BearerAuth  # noqa: E402
from weightguard.sidecar.dashboard_auth import COOKIE, SESSION_SECONDS, DashboardAuth  # noqa: E402

TOKEN = "login-test-token"
BROWSER = {"Accept": "text/html,application/xhtml+xml"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_is_made_only_for_a_valid_token_and_holds_until_it_expires() -> None:
    clock = Clock()
    auth = DashboardAuth(BearerAuth((b"right",)), clock=clock)
    assert auth.session_for(b"wrong") is None
    session = auth.session_for(b"right")
    assert session is not None and "right" not in session
    assert auth.session_holds(session)
    clock.now += SESSION_SECONDS + 1
    assert not auth.session_holds(session)


def test_a_forged_or_rotated_session_does_not_hold() -> None:
    clock = Clock()
    session = DashboardAuth(BearerAuth((b"old",)), clock=clock).session_for(b"old")
    assert session is not None
    rotated = DashboardAuth(BearerAuth((b"new",)), clock=clock)
    assert not rotated.session_holds(session)
    expires, _, mac = session.partition(".")
    same = DashboardAuth(BearerAuth((b"old",)), clock=clock)
    assert not same.session_holds(f"{int(expires) + 3600}.{mac}")  # a later expiry is not signed
    for junk in ("", ".", "abc.def", f"{expires}.", "9" * 40 + "." + mac, "\u00b2.x", "\u0661\u0662.x"):
        assert not same.session_holds(junk)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("login")
    (tmp / "models").mkdir()
    with running_sidecar(tmp / "models", f"sqlite:///{tmp / 'wg.db'}", TOKEN) as url:
        yield url


def test_a_browser_without_a_session_is_sent_to_sign_in_and_an_api_client_gets_401(base: str) -> None:
    browser = httpx.get(f"{base}/dashboard/", headers=BROWSER, timeout=5)
    assert browser.status_code == 303 and browser.headers["location"] == "/dashboard/login"
    assert httpx.get(f"{base}/dashboard/", timeout=5).status_code == 401
    page = httpx.get(f"{base}/dashboard/login", headers=BROWSER, timeout=5)
    assert page.status_code == 200 and 'name="token"' in page.text and 'type="password"' in page.text
    assert "form-action 'self'" in page.headers["content-security-policy"]


def test_signing_in_with_the_api_token_sets_a_strict_httponly_cookie_that_opens_the_dashboard(base: str) -> None:
    wrong = httpx.post(f"{base}/dashboard/login", data={"token": "nope"}, timeout=5)
    assert wrong.status_code == 401 and COOKIE not in wrong.cookies and "not accepted" in wrong.text
    answer = httpx.post(f"{base}/dashboard/login", data={"token": TOKEN}, timeout=5)
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/"
    cookie = answer.headers["set-cookie"]
    assert TOKEN not in cookie
    assert {"httponly", "samesite=strict", "path=/dashboard"} <= {p.strip().lower() for p in cookie.split(";")}
    with httpx.Client(base_url=base, cookies={COOKIE: answer.cookies[COOKIE]}, timeout=5) as client:
        assert client.get("/dashboard/", headers=BROWSER).status_code == 200
        assert client.get("/dashboard/rollout").status_code == 200
        # The session is the dashboard's only: the API still wants the bearer token.
        assert client.get("/metrics").status_code == 401
        assert client.get("/v1/verifications/unknown-job").status_code == 401
        # A request that names a token is judged by that token alone.
        assert client.get("/dashboard/", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_a_malformed_sign_in_is_refused_with_a_page_never_a_crash(base: str) -> None:
    for body in (b"&".join(b"f%d=x" % i for i in range(50)), b"\xff\xfe" * 100, b"token=" + b"a" * 100_000, b""):
        answer = httpx.post(
            f"{base}/dashboard/login",
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=5,
        )
        assert answer.status_code in (400, 401, 413), (body[:20], answer.status_code)
        assert COOKIE not in answer.cookies


def test_signing_out_clears_the_cookie(base: str) -> None:
    answer = httpx.post(f"{base}/dashboard/logout", timeout=5)
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/login"
    assert f'{COOKIE}=""' in answer.headers["set-cookie"] or "max-age=0" in answer.headers["set-cookie"].lower()
