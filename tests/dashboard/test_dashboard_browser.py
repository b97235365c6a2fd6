"""The dashboard in a real headless Chromium, against the real sidecar on 127.0.0.1.

The sidecar runs in a subprocess (uvicorn) with the dashboard mounted behind its bearer token; jobs are
submitted through the API and the pages are compared with what the API returns. Needs Playwright and a
system Chromium (Debian: ``apt-get install -y chromium``); skipped with the reason when either is absent.
Every run saves a screenshot of each page to ``tests/dashboard/screenshots/`` (git-ignored) for review.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)")

from dashboard_server import running_sidecar  # noqa: E402 - after the skips
from html_fixtures import HOSTILE, rich_report  # noqa: E402

from weightguard.report.model import Report  # noqa: E402
from weightguard.verdict.store import RolloutStore  # noqa: E402

HERE = Path(__file__).resolve().parent
SCREENSHOTS = HERE / "screenshots"
# As root in a container, without a GPU, and on a machine with no route out: nothing phones home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), None)
TOKEN = "dashboard-test-token"
GOOD, BAD = "cd" * 32, "ab" * 32

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium (Debian: apt-get install -y chromium)")


def _reports() -> dict[str, Report]:
    bad = rich_report()
    subject = bad.subject
    assert subject is not None
    good = bad.model_copy(
        update={
            "verdict": "approved",
            "exit_code": 0,
            "reasons": [],
            "findings": [],
            "summary": bad.summary.model_copy(
                update={"findings": 0, "blocking": 0, "suppressed": 0, "by_severity": {}}
            ),
            "integrity": None,
            "probes": None,
            "attestation": bad.attestation.model_copy(update={"verification_result": "PASSED"})
            if bad.attestation
            else None,
            "subject": subject.model_copy(update={"name": "tiny-clean", "root_digest": GOOD}),
        }
    )
    return {"bad": bad, "good": good}


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, dict[str, dict[str, object]]]]:
    tmp = tmp_path_factory.mktemp("dashboard")
    root = tmp / "models"
    for name, report in _reports().items():
        (root / name).mkdir(parents=True)
        (root / name / "report.json").write_text(report.model_dump_json())
    database = f"sqlite:///{tmp / 'wg.db'}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with running_sidecar(root, database, TOKEN) as base:
        api: dict[str, dict[str, object]] = {}
        for name in ("bad", "good"):
            answer = httpx.post(
                f"{base}/v1/verifications", json={"target": str(root / name)}, headers=headers, timeout=5
            )
            assert answer.status_code == 202, answer.text
            job = answer.json()["id"]
            while (status := httpx.get(f"{base}/v1/verifications/{job}", headers=headers, timeout=5).json())[
                "status"
            ] not in ("done", "failed"):
                time.sleep(0.05)
            api[name] = status
        # The approved model moves on one stage, so the board has two columns filled and a history to show.
        store = RolloutStore(database)
        try:
            store.promote(
                GOOD,
                "staging",
                actor="release-bot",
                now=dt.datetime.now(dt.UTC),
                check=lambda _s: [],
                attestation_sha256="33" * 32,
            )
        finally:
            store.close()
        yield base, tmp, api


def test_dashboard_is_behind_the_sidecars_bearer_token(sidecar) -> None:
    base, _, _ = sidecar
    assert httpx.get(f"{base}/dashboard/", timeout=5).status_code == 401
    assert httpx.get(f"{base}/dashboard/", headers={"Authorization": "Bearer wrong"}, timeout=5).status_code in (
        401,
        403,
    )


def _accessibility_problems(page) -> list[str]:
    return page.evaluate(
        """() => {
          const out = [];
          if (!document.documentElement.lang) out.push('html has no lang');
          if (document.querySelectorAll('h1').length !== 1) out.push('not exactly one h1');
          let last = 0;
          for (const h of document.querySelectorAll('h1,h2,h3,h4,h5,h6')) {
            const level = +h.tagName[1];
            if (level > last + 1) out.push('heading skips a level: ' + h.tagName + ' ' + h.textContent.trim().slice(0, 40));
            last = level;
          }
          for (const th of document.querySelectorAll('th')) if (!th.getAttribute('scope')) out.push('th without scope: ' + th.textContent.trim().slice(0, 40));
          for (const svg of document.querySelectorAll('svg')) {
            if (!svg.querySelector(':scope > title') || !svg.querySelector(':scope > desc')) out.push('svg without title/desc');
          }
          for (const img of document.querySelectorAll('img')) if (!img.getAttribute('alt')) out.push('img without alt');
          for (const a of document.querySelectorAll('a')) if (!a.textContent.trim()) out.push('link without text');
          return out;
        }"""
    )


def test_every_page_loads_without_console_errors_and_shows_what_the_api_says(sidecar, tmp_path: Path) -> None:
    base, _, api = sidecar
    bad, good = api["bad"], api["good"]
    bad_report, good_report = Report.model_validate(bad["report"]), Report.model_validate(good["report"])
    pages = {
        "index": "/dashboard/",
        "rollout": "/dashboard/rollout",
        "model-rejected": f"/dashboard/models/{BAD}",
        "model-approved": f"/dashboard/models/sha256:{GOOD}",
        "report": f"/dashboard/verifications/{bad['id']}",
    }
    shots = SCREENSHOTS
    shots.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                extra_http_headers={"Authorization": f"Bearer {TOKEN}"}, viewport={"width": 1200, "height": 900}
            )
            page = context.new_page()
            problems: list[str] = []
            page.on(
                "console",
                lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None,
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            for name, path in pages.items():
                response = page.goto(base + path)
                assert response is not None and response.status == 200, (name, response and response.status)
                assert "script-src" not in (
                    response.headers.get("content-security-policy") or "x"
                )  # default-src 'none' covers scripts
                assert page.locator("script").count() == 0, name
                assert _accessibility_problems(page) == [], name
                page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
                if name == "index":
                    rows = page.locator("#recent tbody tr")
                    shown = {
                        rows.nth(i).get_attribute("data-id"): rows.nth(i)
                        .locator(".verdict-cell")
                        .inner_text()
                        .strip()
                        .lower()
                        for i in range(rows.count())
                    }
                    assert shown == {bad["id"]: bad["verdict"], good["id"]: good["verdict"]}
                elif name == "rollout":
                    assert "tiny-clean" in page.locator("section[data-stage=staging]").inner_text()
                    assert "tiny" in page.locator("section[data-stage=quarantine]").inner_text()
                elif name == "model-rejected":
                    assert page.locator("#latest-verdict .verdict").inner_text() == "REJECTED"
                    headings = page.locator("article.finding h3").all_inner_texts()
                    assert [h.split()[1] for h in headings] == [
                        f.code for f in sorted(bad_report.findings, key=lambda f: not f.blocking)
                    ]
                    assert HOSTILE in page.locator("main").inner_text()  # shown as text, not run
                    assert page.locator("#stage").inner_text().startswith("quarantine")
                elif name == "model-approved":
                    assert page.locator("#latest-verdict .verdict").inner_text() == good_report.verdict.upper()
                    history = page.locator("#history tbody tr").all_inner_texts()
                    assert [row.split("\t")[1] for row in history] == ["register", "promote"]
                    assert "33" * 32 in history[1]
                else:
                    assert page.locator("h1").inner_text() == "weightguard verify: REJECTED"
                    assert page.locator("svg.plot").count() >= 2  # the probe plots, rendered by matplotlib
            assert problems == []
        finally:
            browser.close()


def test_a_person_signs_in_with_the_api_token_in_the_browser_and_out_again(sidecar, tmp_path: Path) -> None:
    base, _, api = sidecar
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.goto(f"{base}/dashboard/rollout")
            assert page.url == f"{base}/dashboard/login"
            assert _accessibility_problems(page) == []
            SCREENSHOTS.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "login.png"), full_page=True)
            page.get_by_label("API token").fill("not-the-token")
            page.get_by_role("button", name="Sign in").click()
            assert page.get_by_role("alert").inner_text() == "That token is not accepted."
            page.get_by_label("API token").fill(TOKEN)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{base}/dashboard/")
            shown = page.locator("#recent tbody tr").evaluate_all("rows => rows.map(r => r.dataset.id)")
            assert sorted(shown) == sorted(str(job["id"]) for job in api.values())
            page.get_by_role("button", name="Sign out").click()
            page.wait_for_url(f"{base}/dashboard/login")
            page.goto(f"{base}/dashboard/")
            assert page.url == f"{base}/dashboard/login"  # the session is gone
            # The failed sign-in answers 401, which Chromium logs as a failed resource load; nothing else.
            assert [p for p in problems if "401" not in p] == []
        finally:
            browser.close()
