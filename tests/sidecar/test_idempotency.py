"""Issue 16: a retried POST (its 202 lost) must not create a second job (replayed Hub deliveries: test_webhooks)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sidecar_support import AUTH, Sidecar, wait_done

from weightguard.sidecar.jobstore import IdempotencyKey, JobStore, KeyReused


def test_the_same_idempotency_key_and_body_give_the_same_job(real_server: Sidecar, models: Path) -> None:
    body = {"target": str(models / "approved")}
    headers = {**AUTH, "Idempotency-Key": "retry-of-a-lost-202"}
    with real_server.client() as client:
        first = client.post("/v1/verifications", json=body, headers=headers)
        again = client.post("/v1/verifications", json=body, headers=headers)
        later = client.post("/v1/verifications", json=body, headers=headers)
        wait_done(client, first.json()["id"])
        after_done = client.post("/v1/verifications", json=body, headers=headers)
    assert first.status_code == 202, first.text
    assert {r.status_code for r in (again, later, after_done)} <= {200, 202}
    assert {r.json()["id"] for r in (first, again, later, after_done)} == {first.json()["id"]}
    assert after_done.headers["location"] == first.headers["location"]


def test_the_same_key_with_another_body_is_refused(real_server: Sidecar, models: Path) -> None:
    headers = {**AUTH, "Idempotency-Key": "one-key-two-bodies"}
    with real_server.client() as client:
        first = client.post("/v1/verifications", json={"target": str(models / "approved")}, headers=headers)
        other = client.post("/v1/verifications", json={"target": str(models / "blocked")}, headers=headers)
        policy = client.post(
            "/v1/verifications", json={"target": str(models / "approved"), "policy": "default"}, headers=headers
        )
    assert first.status_code == 202
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["detail"]
    assert policy.status_code == 422


def test_requests_without_a_key_stay_independent(real_server: Sidecar, models: Path) -> None:
    body = {"target": str(models / "approved")}
    with real_server.client() as client:
        ids = {client.post("/v1/verifications", json=body, headers=AUTH).json()["id"] for _ in range(2)}
    assert len(ids) == 2


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\xe9", "tab\there"])
def test_a_malformed_idempotency_key_is_400(real_server: Sidecar, models: Path, key: str) -> None:
    with real_server.client() as client:
        response = client.post(
            "/v1/verifications",
            json={"target": str(models / "approved")},
            headers={**AUTH, "Idempotency-Key": key.encode("latin-1")},  # type: ignore[dict-item]
        )
    assert response.status_code == 400, response.text


def test_the_key_and_its_job_are_stored_together(database_url: str) -> None:
    import datetime as dt

    store = JobStore(database_url)
    now = dt.datetime.now(dt.UTC)
    key = IdempotencyKey("v1/verifications", "k", "f1")
    job, created = store.submit("verify", "/m", None, "{}", now=now, key=key)
    again, created_again = store.submit("verify", "/m", None, "{}", now=now, key=key)
    assert created and not created_again and again.id == job.id
    assert store.keyed(key) == job
    with pytest.raises(KeyReused):
        store.submit("verify", "/n", None, "{}", now=now, key=IdempotencyKey("v1/verifications", "k", "f2"))
    assert store.keyed(IdempotencyKey("hooks", "k", "f1")) is None  # scopes are separate
