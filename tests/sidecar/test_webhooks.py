"""The Hugging Face and MLflow webhook receivers of a real sidecar process (fake verifier, see _server.py)."""

from __future__ import annotations

import itertools
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sidecar_support import AUTH, Sidecar, free_port, sidecar_env, wait_done

from weightguard.sidecar.auth import mlflow_signature

HF_SECRET = "hf-secret-value"
MLFLOW_SECRET = "mlflow-secret-value"
SHA = "a" * 40


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hooks")


@pytest.fixture(scope="module")
def hooked(logs: Path, models: Path) -> Iterator[Sidecar]:
    tmp_path = logs
    env = sidecar_env(
        tmp_path,
        [models],
        WG_TEST_VERIFIER="fake",
        WG_TEST_LOG=str(tmp_path / "verified.log"),
        WG_TEST_WRITEBACK_LOG=str(tmp_path / "writeback.log"),
        WEIGHTGUARD_HUGGINGFACE_SECRET=HF_SECRET,
        WEIGHTGUARD_MLFLOW_SECRET=MLFLOW_SECRET,
    )
    port = free_port()
    sidecar = Sidecar({**env, "WEIGHTGUARD_PORT": str(port)}, [], port, tmp_path / "server.log").start()
    yield sidecar
    sidecar.stop()


def hub_payload(scope: str = "repo.content", repo_type: str = "model") -> dict[str, object]:
    # Shape from huggingface/hub-docs docs/hub/webhooks.md (a push to main).
    return {
        "event": {"action": "update", "scope": scope},
        "repo": {
            "type": repo_type,
            "name": "acme/tiny-model",
            "id": "6475c8b9e2b9b2d5b1d0c123",
            "private": False,
            "url": {
                "web": "https://huggingface.co/acme/tiny-model",
                "api": "https://huggingface.co/api/models/acme/tiny-model",
            },
            "headSha": SHA,
            "owner": {"id": "6475c8b9e2b9b2d5b1d0c000"},
        },
        "updatedRefs": [
            {"ref": "refs/heads/main", "oldSha": "b" * 40, "newSha": SHA},
            {"ref": "refs/heads/gone", "oldSha": "c" * 40, "newSha": None},
        ],
        "webhook": {"id": "6475c8b9e2b9b2d5b1d0c999", "version": 3},
    }


def mlflow_post(
    client: httpx.Client,
    entity: str,
    action: str,
    data: dict[str, object],
    *,
    delivery: str | None = None,
    secret: str = MLFLOW_SECRET,
    stamp: int | None = None,
) -> httpx.Response:
    # Built the way mlflow/webhooks/delivery.py sends it: json.dumps of the envelope, signed over id.ts.body.
    body = json.dumps({"entity": entity, "action": action, "timestamp": "2026-01-01T00:00:00+00:00", "data": data})
    delivery = delivery or str(uuid.uuid4())
    ts = str(stamp if stamp is not None else int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": ts,
        "X-MLflow-Signature": mlflow_signature(secret, delivery, ts, body.encode()),
    }
    return client.post("/hooks/mlflow", content=body.encode(), headers=headers)


def test_hub_push_to_a_model_repo_queues_a_verification_pinned_to_the_new_commit(hooked: Sidecar, logs: Path) -> None:
    with hooked.client() as client:
        response = client.post("/hooks/huggingface", json=hub_payload(), headers={"X-Webhook-Secret": HF_SECRET})
        assert response.status_code == 202, response.text
        (job_id,) = response.json()["jobs"]
        body = wait_done(client, job_id)
    assert body["target"] == f"hf://acme/tiny-model@{SHA}" and body["kind"] == "huggingface"
    assert (logs / "verified.log").read_text().splitlines().count(f"hf://acme/tiny-model@{SHA}") == 1


@pytest.mark.parametrize(
    ("scope", "repo_type"), [("repo.config", "model"), ("repo", "model"), ("repo.content", "dataset")]
)
def test_hub_events_other_than_model_content_updates_are_ignored(hooked: Sidecar, scope: str, repo_type: str) -> None:
    with hooked.client() as client:
        response = client.post(
            "/hooks/huggingface", json=hub_payload(scope, repo_type), headers={"X-Webhook-Secret": HF_SECRET}
        )
    assert response.status_code == 200 and response.json()["jobs"] == [] and response.json()["ignored"]


def test_hub_webhook_with_a_wrong_secret_or_a_bad_body_is_refused(hooked: Sidecar) -> None:
    with hooked.client() as client:
        assert (
            client.post("/hooks/huggingface", json=hub_payload(), headers={"X-Webhook-Secret": "nope"}).status_code
            == 401
        )
        assert client.post("/hooks/huggingface", json=hub_payload()).status_code == 401
        bad = client.post("/hooks/huggingface", json={"event": 1}, headers={"X-Webhook-Secret": HF_SECRET})
        garbage = client.post("/hooks/huggingface", content=b"\xff{", headers={"X-Webhook-Secret": HF_SECRET})
    assert bad.status_code == 422 and garbage.status_code == 400


def test_mlflow_new_version_is_verified_and_written_back_once_per_delivery(
    hooked: Sidecar, logs: Path, models: Path
) -> None:
    data = {
        "name": "fraud",
        "version": "3",
        "source": f"file://{models / 'approved'}",
        "run_id": "r1",
        "tags": {},
        "description": "",
    }
    delivery = str(uuid.uuid4())
    with hooked.client() as client:
        first = mlflow_post(client, "model_version", "created", data, delivery=delivery)
        again = mlflow_post(client, "model_version", "created", data, delivery=delivery)
        assert first.status_code == 202, first.text
        (job_id,) = first.json()["jobs"]
        assert again.json() == {"jobs": [job_id], "ignored": None, "duplicate": True}
        assert wait_done(client, job_id)["verdict"] == "approved"
    time.sleep(0.2)
    lines = [json.loads(line) for line in (logs / "writeback.log").read_text().splitlines()]
    assert [w for w in lines if w["name"] == "fraud"] == [{"name": "fraud", "version": "3", "verdict": "approved"}]


@pytest.mark.parametrize(
    ("entity", "action", "data"),
    [
        (
            "model_version_tag",
            "set",
            {"name": "fraud", "version": "3", "key": "weightguard.verdict", "value": "approved"},
        ),
        ("model_version_alias", "created", {"name": "fraud", "alias": "weightguard-approved", "version": "3"}),
    ],
)
def test_mlflow_events_caused_by_our_own_write_back_are_ignored(
    hooked: Sidecar, entity: str, action: str, data: dict[str, object]
) -> None:
    with hooked.client() as client:
        response = mlflow_post(client, entity, action, data)
    assert response.status_code == 200 and response.json()["ignored"] == "caused by weightguard's own write-back"


def test_mlflow_deliveries_with_bad_signatures_or_stale_timestamps_are_refused(hooked: Sidecar, models: Path) -> None:
    data = {"name": "m", "version": "1", "source": str(models / "approved")}
    with hooked.client() as client:
        assert mlflow_post(client, "model_version", "created", data, secret="wrong").status_code == 401
        assert mlflow_post(client, "model_version", "created", data, stamp=int(time.time()) - 3600).status_code == 401
        assert client.post("/hooks/mlflow", json={"entity": "model_version"}).status_code == 401


def test_mlflow_sources_outside_the_roots_are_refused_and_remote_ones_ignored(hooked: Sidecar) -> None:
    with hooked.client() as client:
        outside = mlflow_post(
            client, "model_version", "created", {"name": "m", "version": "1", "source": "file:///etc"}
        )
        remote = mlflow_post(client, "model_version", "created", {"name": "m", "version": "1", "source": "s3://b/m"})
    assert outside.status_code == 403
    assert remote.status_code == 200 and "not a local path" in remote.json()["ignored"]


def test_webhook_receivers_without_a_configured_secret_answer_404(real_server: Sidecar) -> None:
    with real_server.client() as client:
        assert client.post("/hooks/huggingface", json={}, headers=AUTH).status_code == 404
        assert client.post("/hooks/mlflow", json={}, headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    "stamp", ["²".encode("latin-1"), b"9" * 5000, b"-1", b"+5", b"1e9", "١٢".encode(), b"0x10", b""]
)
def test_issue_16_a_malformed_mlflow_timestamp_is_a_4xx_never_a_500(hooked: Sidecar, stamp: bytes) -> None:
    headers = {"X-MLflow-Delivery-Id": "d", "X-MLflow-Timestamp": stamp, "X-MLflow-Signature": "v1,AAAA"}
    with hooked.client() as client:
        response = client.post("/hooks/mlflow", content=b"{}", headers=headers)  # type: ignore[arg-type]
    assert response.status_code == 401, response.text


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/hooks/huggingface", {"X-Webhook-Secret": HF_SECRET}),
        ("/api/v1/scan", AUTH),
        ("/v1/verifications", AUTH),
    ],
)
def test_issue_16_json_nested_past_the_parsers_stack_is_a_4xx(
    hooked: Sidecar, path: str, headers: dict[str, str]
) -> None:
    with hooked.client() as client:
        response = client.post(path, content=b"[" * 200_000, headers={**headers, "Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text


def test_issue_16_a_content_length_of_5000_digits_is_a_4xx(hooked: Sidecar) -> None:
    # Sent by hand: httpx refuses to send such a header.
    request = (
        b"POST /v1/verifications HTTP/1.1\r\nHost: x\r\nAuthorization: "
        + AUTH["Authorization"].encode()
        + b"\r\nContent-Length: "
        + b"9" * 5000
        + b"\r\n\r\n{}"
    )
    with socket.create_connection(("127.0.0.1", hooked.port), timeout=10) as sock:
        sock.sendall(request)
        status = sock.recv(64).split(b" ")[1]
    assert status.startswith(b"4"), status


def test_issue_16_a_replayed_hub_delivery_names_the_same_job(hooked: Sidecar) -> None:
    payload = hub_payload()
    payload["updatedRefs"] = [{"ref": "refs/heads/main", "oldSha": "b" * 40, "newSha": "d" * 40}]
    with hooked.client() as client:
        answers = [
            client.post("/hooks/huggingface", json=payload, headers={"X-Webhook-Secret": HF_SECRET}) for _ in range(3)
        ]
    assert [a.status_code for a in answers] == [202, 200, 200]
    assert len({tuple(a.json()["jobs"]) for a in answers}) == 1
    assert [a.json()["duplicate"] for a in answers] == [False, True, True]


SWEPT_ROUTES = [
    ("POST", "/v1/verifications"),
    ("GET", "/v1/verifications/x"),
    ("GET", "/v1/approvals/" + "a" * 64 + "?stage=canary"),
    ("POST", "/hooks/mlflow"),
    ("POST", "/hooks/huggingface"),
    ("POST", "/api/v1/scan"),
    ("GET", "/api/v1/scan/x/report"),
    ("POST", "/dashboard/login"),
    ("POST", "/dashboard/logout"),
    ("GET", "/dashboard/"),
]
SWEPT_HEADERS = [
    "Authorization",
    "X-MLflow-Timestamp",
    "X-MLflow-Delivery-Id",
    "X-MLflow-Signature",
    "X-Webhook-Secret",
    "Idempotency-Key",
    "Accept",
    "Cookie",
    "Origin",
    "Content-Type",
]
SWEPT_VALUES = [
    "²".encode("latin-1"),
    b"9" * 5000,
    b"\xff\xfe",
    b"",
    b"wg_dashboard=\xb2.x; wg_csrf=\xff",
    b"http://[::1",
]


def test_issue_16_no_malformed_header_on_any_route_gets_a_5xx(hooked: Sidecar) -> None:
    # Sent by hand: httpx refuses most of these values.
    failures = []
    for (method, path), name, value in itertools.product(SWEPT_ROUTES, SWEPT_HEADERS, SWEPT_VALUES):
        body = b'{"target": "/nowhere"}'
        headers = {
            "Host": b"x",
            "Authorization": AUTH["Authorization"].encode(),
            "X-Webhook-Secret": HF_SECRET.encode(),
            "X-MLflow-Delivery-Id": b"d",
            "X-MLflow-Timestamp": str(int(time.time())).encode(),
            "X-MLflow-Signature": b"v1,AAAA",
            "Content-Type": b"application/json",
            name: value,
            "Content-Length": str(len(body)).encode(),
            "Connection": b"close",
        }
        head = f"{method} {path} HTTP/1.1\r\n".encode() + b"".join(
            k.encode() + b": " + v + b"\r\n" for k, v in headers.items()
        )
        with socket.create_connection(("127.0.0.1", hooked.port), timeout=10) as sock:
            sock.sendall(head + b"\r\n" + body)
            status = sock.recv(64).split(b" ")[1]
        if not status.startswith((b"2", b"3", b"4")):
            failures.append((method, path, name, value[:12], status))
    assert failures == []
