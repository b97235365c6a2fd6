"""The generic API of a real `weightguard serve` process, over HTTP (real pipeline, shipped sample models)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import pytest
from sidecar_support import AUTH, REPO, Sidecar, wait_done

from weightguard.report.model import Report
from weightguard.verdict.store import RolloutStore


def _no_traceback(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text


def test_approved_sample_model_is_verified_and_reported_with_the_cli_report_model(
    real_server: Sidecar, models: Path
) -> None:
    with real_server.client() as client:
        response = client.post("/v1/verifications", json={"target": str(models / "approved")}, headers=AUTH)
        assert response.status_code == 202
        job_id = response.json()["id"]
        assert response.headers["location"] == f"/v1/verifications/{job_id}"
        body = wait_done(client, job_id)
    assert body["status"] == "done" and body["verdict"] == "approved" and body["attempts"] == 1
    report = Report.model_validate(body["report"])
    assert report.exit_code == 0 and report.subject is not None and report.subject.root_digest


def test_blocked_sample_model_is_rejected_with_its_blocking_finding(real_server: Sidecar, models: Path) -> None:
    with real_server.client() as client:
        job_id = client.post("/v1/verifications", json={"target": str(models / "blocked")}, headers=AUTH).json()["id"]
        body = wait_done(client, job_id)
    report = Report.model_validate(body["report"])
    assert report.verdict == "rejected" and report.exit_code == 1
    assert any(f.blocking and f.code.startswith("WG-PKL") for f in report.findings)


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "missing bearer token"),
        ({"Authorization": "Bearer wrong"}, "invalid bearer token"),
        ({"Authorization": "Basic dTpw"}, "missing bearer token"),
    ],
)
def test_requests_without_the_right_bearer_token_get_401(
    real_server: Sidecar, headers: dict[str, str], detail: str
) -> None:
    with real_server.client() as client:
        for method, path in [
            ("POST", "/v1/verifications"),
            ("GET", "/v1/verifications/x"),
            ("GET", "/metrics"),
            ("GET", "/api/v1/metadata"),
            ("GET", "/v1/approvals/" + "a" * 64 + "?stage=canary"),
        ]:
            response = client.request(
                method, path, json={"target": "/x"} if method == "POST" else None, headers=headers
            )
            assert response.status_code == 401, (path, response.text)
            assert response.json()["detail"] == detail
            assert response.headers["www-authenticate"].startswith("Bearer")


def test_health_endpoints_need_no_token(real_server: Sidecar) -> None:
    with real_server.client() as client:
        assert client.get("/healthz").json()["status"] == "ok"
        assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize("target", ["/etc/passwd", "/", f"{REPO}/sample_models/approved"])
def test_local_targets_outside_the_model_roots_are_refused_with_403(real_server: Sidecar, target: str) -> None:
    with real_server.client() as client:
        response = client.post("/v1/verifications", json={"target": target}, headers=AUTH)
    assert response.status_code == 403 and "outside" in response.json()["detail"]


def test_dot_dot_and_symlinks_cannot_escape_the_model_roots(real_server: Sidecar, models: Path) -> None:
    link = models / "escape"
    if not link.exists():
        link.symlink_to(REPO / "sample_models")
    with real_server.client() as client:
        for target in (f"{models}/../../etc", f"{link}/approved"):
            response = client.post("/v1/verifications", json={"target": target}, headers=AUTH)
            assert response.status_code == 403, target


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"target": "relative/path"}, 422),
        ({"target": "s3://bucket/model"}, 422),
        ({"target": "hf://../etc"}, 422),
        ({"target": ""}, 422),
        ({"target": "/x", "policy": "nope"}, 422),
        ({"target": "/x", "extra": 1}, 422),
        ({}, 422),
    ],
)
def test_malformed_requests_get_a_clear_4xx_and_never_a_500(
    real_server: Sidecar, body: dict[str, object], status: int
) -> None:
    with real_server.client() as client:
        response = client.post("/v1/verifications", json=body, headers=AUTH)
    _no_traceback(response)
    assert response.status_code == status and response.json()["detail"]


def test_missing_model_inside_a_root_is_an_unknown_target(real_server: Sidecar, models: Path) -> None:
    with real_server.client() as client:
        response = client.post("/v1/verifications", json={"target": str(models / "missing")}, headers=AUTH)
    assert response.status_code == 422 and "does not exist" in response.json()["detail"]


def test_bodies_over_the_size_limit_get_413_declared_or_streamed(real_server: Sidecar) -> None:
    big = b'{"target": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    with real_server.client() as client:
        declared = client.post("/v1/verifications", content=big, headers={**AUTH, "content-type": "application/json"})
        streamed = client.post(
            "/v1/verifications",
            content=iter([big[:1000], big[1000:]]),
            headers={**AUTH, "content-type": "application/json"},
        )
    assert declared.status_code == 413 and streamed.status_code == 413
    assert "over" in declared.json()["detail"]


def test_invalid_json_gets_422_without_echoing_the_input(real_server: Sidecar) -> None:
    with real_server.client() as client:
        response = client.post(
            "/v1/verifications", content=b"{not json SECRET", headers={**AUTH, "content-type": "application/json"}
        )
    _no_traceback(response)
    assert response.status_code == 422 and "SECRET" not in response.text


def test_unknown_job_is_404(real_server: Sidecar) -> None:
    with real_server.client() as client:
        assert client.get("/v1/verifications/does-not-exist", headers=AUTH).status_code == 404
        assert client.get("/v1/verifications/" + "x" * 500, headers=AUTH).status_code == 404


def test_approval_reads_the_rollout_record_in_an_argo_friendly_shape(real_server: Sidecar, models: Path) -> None:
    with real_server.client() as client:
        job_id = client.post("/v1/verifications", json={"target": str(models / "approved")}, headers=AUTH).json()["id"]
        digest = wait_done(client, job_id)["report"]["subject"]["root_digest"]  # type: ignore[index]
        quarantined = client.get(f"/v1/approvals/sha256:{digest}", params={"stage": "staging"}, headers=AUTH).json()
        assert quarantined == {
            "digest": digest,
            "stage": "staging",
            "approved": False,
            "current_stage": "quarantine",
            "attestation": None,
            "reason": quarantined["reason"],
        }
        store = RolloutStore(real_server.env["WEIGHTGUARD_DATABASE"])
        now = dt.datetime.now(dt.UTC)
        for stage in ("staging", "canary"):
            store.promote(digest, stage, actor="test", now=now, check=lambda _s: [], attestation_sha256="ab" * 32)
        store.close()
        canary = client.get(f"/v1/approvals/{digest}", params={"stage": "canary"}, headers=AUTH).json()
        staging = client.get(f"/v1/approvals/{digest}", params={"stage": "staging"}, headers=AUTH).json()
        production = client.get(f"/v1/approvals/{digest}", params={"stage": "production"}, headers=AUTH).json()
        unknown_stage = client.get(f"/v1/approvals/{digest}", params={"stage": "nope"}, headers=AUTH)
        bad_digest = client.get("/v1/approvals/xyz", params={"stage": "canary"}, headers=AUTH)
    assert canary["approved"] is True and canary["current_stage"] == "canary" and canary["attestation"] == "ab" * 32
    assert staging["approved"] is True and production["approved"] is False
    assert unknown_stage.status_code == 422 and bad_digest.status_code == 422


def test_metrics_count_verifications_by_verdict_and_expose_queue_depth(real_server: Sidecar, models: Path) -> None:
    with real_server.client() as client:
        job_id = client.post("/v1/verifications", json={"target": str(models / "blocked")}, headers=AUTH).json()["id"]
        wait_done(client, job_id)
        text = client.get("/metrics", headers=AUTH).text
    assert 'weightguard_verifications_total{kind="verify",outcome="rejected"}' in text
    assert "weightguard_queue_depth" in text and "weightguard_verification_duration_seconds_bucket" in text


def test_openapi_documents_the_api_behind_the_token(real_server: Sidecar) -> None:
    with real_server.client() as client:
        assert client.get("/openapi.json").status_code == 401
        assert client.get("/docs").status_code == 404
        paths = client.get("/openapi.json", headers=AUTH).json()["paths"]
    assert {"/v1/verifications", "/v1/verifications/{job_id}", "/v1/approvals/{digest}", "/api/v1/scan"} <= set(paths)
