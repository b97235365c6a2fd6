"""The dashboard routes over in-memory fakes of its two Protocols (no browser: see test_dashboard_browser)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest
from fastapi import FastAPI, Header, HTTPException
from fastapi.params import Depends
from fastapi.testclient import TestClient
from html_fixtures import DIGEST, HOSTILE, WHEN, rich_report

from weightguard.errors import VerdictError
from weightguard.report.html import CSP
from weightguard.sidecar_dashboard import RecentVerifications, RolloutRecord, VerificationEntry, dashboard_router
from weightguard.verdict.stage import StageState
from weightguard.verdict.store import Event

html5lib = pytest.importorskip("html5lib")


class FakeRollout:
    def __init__(self, models: dict[str, tuple[str, StageState]], events: dict[str, list[Event]]) -> None:
        self.models, self.events, self.closed = models, events, 0

    def board(self) -> Sequence[tuple[str, StageState]]:
        return list(self.models.values())

    def history(self, digest: str) -> Sequence[Event]:
        return self.events.get(digest, [])

    def state(self, digest: str) -> StageState | None:
        return self.models[digest][1] if digest in self.models else None

    def close(self) -> None:
        self.closed += 1


class FakeVerifications:
    def __init__(self, entries: list[VerificationEntry]) -> None:
        self.entries, self.closed = entries, 0

    def recent(self, limit: int) -> Sequence[VerificationEntry]:
        return self.entries[:limit]

    def get(self, verification_id: str) -> VerificationEntry | None:
        return next((e for e in self.entries if e.id == verification_id), None)

    def of_digest(self, digest: str, limit: int) -> Sequence[VerificationEntry]:
        return [e for e in self.entries if e.digest == digest][:limit]

    def close(self) -> None:
        self.closed += 1


class Broken(FakeVerifications):
    def recent(self, limit: int) -> Sequence[VerificationEntry]:
        raise VerdictError("database is locked")


def _token(authorization: str = Header(default="")) -> None:
    if authorization != "Bearer t":
        raise HTTPException(status_code=401, detail="missing or wrong token")


@pytest.fixture
def fakes() -> tuple[FakeRollout, FakeVerifications]:
    hostile_name = f"evil {HOSTILE}"
    rollout = FakeRollout(
        {DIGEST: (hostile_name, StageState(DIGEST, f"lab{HOSTILE}", WHEN))},
        {DIGEST: [Event(1, DIGEST, "register", None, "quarantine", "sidecar", WHEN, None, HOSTILE, {})]},
    )
    jobs = FakeVerifications(
        [
            VerificationEntry("job-1", f"/models/{HOSTILE}", "done", WHEN, WHEN, rich_report()),
            VerificationEntry("job-2", "/models/queued", "queued", WHEN + dt.timedelta(seconds=1)),
            VerificationEntry("job-3", "/models/broken", "failed", WHEN, WHEN, None, f"could not read {HOSTILE}"),
        ]
    )
    return rollout, jobs


def _client(rollout: RolloutRecord, jobs: RecentVerifications, dependencies: Sequence[Depends] = ()) -> TestClient:
    app = FastAPI()
    app.include_router(dashboard_router(lambda: rollout, lambda: jobs, dependencies=dependencies))
    return TestClient(app)


def _valid(body: str) -> None:
    html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(body)


def test_every_page_is_valid_html_with_a_strict_csp_and_no_script(fakes) -> None:
    client = _client(*fakes)
    for path in ("/dashboard/", "/dashboard/rollout", f"/dashboard/models/{DIGEST}", "/dashboard/verifications/job-1"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        # The report's policy, but the sign-out button may post to the sidecar itself.
        assert answer.headers["content-security-policy"] == CSP.replace("form-action 'none'", "form-action 'self'")
        assert answer.headers["x-content-type-options"] == "nosniff"
        _valid(answer.text)
        assert "<script>" not in answer.text and "&lt;script&gt;" in answer.text, path


def test_each_request_closes_what_it_opened(fakes) -> None:
    rollout, jobs = fakes
    client = _client(rollout, jobs)
    client.get(f"/dashboard/models/{DIGEST}")
    client.get("/dashboard/")
    assert (rollout.closed, jobs.closed) == (1, 2)


def test_index_lists_verdicts_and_statuses_with_links_to_model_pages(fakes) -> None:
    body = _client(*fakes).get("/dashboard/").text
    assert ">REJECTED<" in body and ">queued<" in body and ">failed<" in body
    assert f'href="/dashboard/models/{DIGEST}"' in body
    assert "could not read &lt;script&gt;" in body


def test_rollout_board_shows_policy_stages_in_order_and_unknown_stages_last(fakes) -> None:
    body = _client(*fakes).get("/dashboard/rollout").text
    stages = [
        "quarantine",
        "staging",
        "canary",
        "production",
        f"lab{HOSTILE}".replace("<", "&lt;").replace(">", "&gt;"),
    ]
    positions = [body.index(f'data-stage="{s}"'.replace("'", "&#39;")) for s in stages]
    assert positions == sorted(positions)


def test_model_page_shows_stage_history_attestation_and_the_latest_findings(fakes) -> None:
    body = _client(*fakes).get(f"/dashboard/models/sha256:{DIGEST}").text
    assert "WG-PKL-001" in body and "WG-INT-001" in body
    assert "out/tiny.sigstore.json" in body and "FAILED" in body
    assert "register" in body and "opcode-path" in body


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/dashboard/models/not-a-digest", 404),
        (f"/dashboard/models/{'0' * 64}", 404),
        ("/dashboard/verifications/nope", 404),
        (f"/dashboard/verifications/{'x' * 65}", 404),
    ],
)
def test_unknown_things_are_404_pages_not_errors(fakes, path: str, status: int) -> None:
    answer = _client(*fakes).get(path)
    assert answer.status_code == status
    _valid(answer.text)


def test_a_pending_verification_shows_its_status(fakes) -> None:
    body = _client(*fakes).get("/dashboard/verifications/job-2").text
    assert "No report yet" in body and "queued" in body


def test_an_unreadable_database_is_a_503_page(fakes) -> None:
    rollout, _ = fakes
    answer = _client(rollout, Broken([])).get("/dashboard/")
    assert answer.status_code == 503 and "database is locked" in answer.text


def test_the_dashboard_is_read_only_and_honours_the_auth_dependency(fakes) -> None:
    client = _client(*fakes, dependencies=[Depends(_token)])
    assert client.get("/dashboard/").status_code == 401
    assert client.get("/dashboard/", headers={"Authorization": "Bearer t"}).status_code == 200
    for method in ("post", "put", "delete"):
        assert getattr(client, method)("/dashboard/", headers={"Authorization": "Bearer t"}).status_code == 405
