"""Signing in to the dashboard from a browser: the API token buys a session cookie, and nothing more.

The session rules are checked directly; the routes against the real sidecar (uvicorn on 127.0.0.1).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

httpx = pytest.importorskip("httpx")

from dashboard_server import running_sidecar  # noqa: E402 - after the skip

from weightguard.sidecar.auth import BearerAuth  # noqa: E402
from weightguard.sidecar.dashboard_auth import COOKIE, SESSION_SECONDS, DashboardAuth, LoginThrottle  # noqa: E402

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
    issued, _, mac = session.partition(".")
    same = DashboardAuth(BearerAuth((b"old",)), clock=clock)
    assert not same.session_holds(f"{int(issued) + 3600}.{mac}")  # a later issue time is not signed
    for junk in ("", ".", "abc.def", f"{issued}.", "9" * 40 + "." + mac, "\u00b2.x", "\u0661\u0662.x"):
        assert not same.session_holds(junk)


def test_issue_16_a_session_claiming_a_far_future_time_does_not_hold_even_when_signed() -> None:
    # The year 5138, signed with the right token (as one could if the clock was ever wrong):
    # the server's lifetime from the issue time decides, not the cookie.
    clock = Clock()
    auth = DashboardAuth(BearerAuth((b"right",)), clock=clock)
    clock.now = 99_999_999_999.0
    future = auth.session_for(b"right")
    clock.now = 1_800_000_000.0
    assert future is not None and not auth.session_holds(future)


def test_issue_16_failed_sign_ins_are_limited_per_client_with_a_doubling_wait() -> None:
    clock = Clock()
    throttle = LoginThrottle(limit=5, window_s=60, clock=clock)
    for _ in range(4):
        throttle.failed("a")
    assert throttle.wait("a") == 0
    throttle.failed("a")
    assert throttle.wait("a") == 60 and throttle.wait("b") == 0  # other clients are not held up
    clock.now += 61
    for _ in range(5):
        throttle.failed("a")
    assert throttle.wait("a") == 120  # a second burst waits twice as long
    throttle.succeeded("a")
    assert throttle.wait("a") == 0


def sign_in(client: httpx.Client, token: str, *, origin: str | None = None) -> httpx.Response:
    """Sign in as a browser does: fetch the form (its anti-forgery cookie and field), post it from our origin."""
    page = client.get("/dashboard/login", headers=BROWSER)
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match is not None, page.text
    own = str(client.base_url).rstrip("/")
    headers = {"Origin": own if origin is None else origin} if origin != "" else {}
    return client.post("/dashboard/login", data={"token": token, "csrf": match.group(1)}, headers=headers)


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
    with httpx.Client(base_url=base, timeout=5) as browser:
        wrong = sign_in(browser, "nope")
    assert wrong.status_code == 401 and COOKIE not in wrong.cookies and "not accepted" in wrong.text
    with httpx.Client(base_url=base, timeout=5) as browser:
        answer = sign_in(browser, TOKEN)
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(COOKIE))
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
        assert answer.status_code in (400, 401, 403, 413), (body[:20], answer.status_code)
        assert COOKIE not in answer.cookies


def test_signing_out_clears_the_cookie(base: str) -> None:
    with httpx.Client(base_url=base, timeout=5) as browser:
        assert sign_in(browser, TOKEN).status_code == 303
        page = browser.get("/dashboard/", headers=BROWSER)
        match = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert match is not None
        answer = browser.post("/dashboard/logout", data={"csrf": match.group(1)}, headers={"Origin": base})
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/login"
    assert f'{COOKIE}=""' in answer.headers["set-cookie"] or "max-age=0" in answer.headers["set-cookie"].lower()


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "null", "http://127.0.0.1.evil.example", "", "http://localhost:1"]
)
def test_issue_16_a_cross_site_sign_in_or_out_is_refused(base: str, origin: str) -> None:
    with httpx.Client(base_url=base, timeout=5) as browser:
        answer = sign_in(browser, TOKEN, origin=origin)
        assert answer.status_code == 403 and COOKIE not in answer.cookies
        out = browser.post("/dashboard/logout", data={"csrf": "x"}, headers={"Origin": origin} if origin else {})
        assert out.status_code == 403 and "set-cookie" not in out.headers


def test_issue_16_a_sign_in_without_the_forms_token_is_refused_even_from_our_origin(base: str) -> None:
    with httpx.Client(base_url=base, timeout=5) as browser:
        browser.get("/dashboard/login", headers=BROWSER)
        answer = browser.post("/dashboard/login", data={"token": TOKEN, "csrf": "guessed"}, headers={"Origin": base})
        referer = sign_in(browser, TOKEN, origin="")  # no Origin header at all...
    assert answer.status_code == 403 and COOKIE not in answer.cookies
    assert referer.status_code == 403  # ...and no Referer either: refused


def test_issue_16_guessing_the_token_is_limited_to_5_a_minute(tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("throttle")
    (tmp / "models").mkdir()
    with (
        running_sidecar(tmp / "models", f"sqlite:///{tmp / 'wg.db'}", TOKEN) as url,
        httpx.Client(base_url=url, timeout=5) as browser,
    ):
        answers = [sign_in(browser, f"guess-{i}").status_code for i in range(8)]
        right = sign_in(browser, TOKEN)  # even the right token waits: the guesser cannot learn it now
    assert answers[:5] == [401] * 5 and answers[5:] == [429] * 3
    assert right.status_code == 429 and int(right.headers["retry-after"]) > 0
