"""Durability and load of real sidecar processes: SIGKILL mid-job, restart, and 200 requests from 20 clients."""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sidecar_support import AUTH, REPO, Sidecar, free_port, sidecar_env, wait_done


def test_kill_9_in_the_middle_of_a_job_then_restart_finishes_every_job_exactly_once(
    spawn: Callable[..., Sidecar], tmp_path: Path
) -> None:
    root = tmp_path / "models"
    targets = []
    for index in range(3):
        shutil.copytree(REPO / "sample_models" / "approved", root / f"m{index}")
        targets.append(str(root / f"m{index}"))
    log = tmp_path / "verified.log"
    # One worker and a 2 s fake verifier: job 0 is running, jobs 1-2 are queued when the kill lands.
    env = sidecar_env(
        tmp_path, [root], WG_TEST_VERIFIER="fake", WG_TEST_DELAY="2", WG_TEST_LOG=str(log), WEIGHTGUARD_WORKERS="1"
    )
    port = free_port()
    first = spawn(env, port=port)
    with first.client() as client:
        ids = [client.post("/v1/verifications", json={"target": t}, headers=AUTH).json()["id"] for t in targets]
        deadline = time.monotonic() + 10
        while client.get(f"/v1/verifications/{ids[0]}", headers=AUTH).json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    first.kill()
    assert not log.exists()  # nothing completed before the kill

    second = spawn({**env, "WG_TEST_DELAY": "0.2"}, port=free_port())
    with second.client() as client:
        results = [wait_done(client, job_id) for job_id in ids]
    assert [r["status"] for r in results] == ["done"] * 3
    assert [r["verdict"] for r in results] == ["approved"] * 3
    assert results[0]["attempts"] == 2 and results[1]["attempts"] == 1
    time.sleep(0.3)
    assert sorted(log.read_text().splitlines()) == sorted(targets)  # each verification completed once


def test_200_requests_from_20_concurrent_clients_are_all_answered_correctly(real_server: Sidecar, models: Path) -> None:
    expected = {str(models / "approved"): "approved", str(models / "blocked"): "rejected"}
    targets = list(expected) * 100

    def one(target: str) -> tuple[float, str, str]:
        started = time.perf_counter()
        with httpx.Client(base_url=real_server.url, timeout=60.0) as client:
            response = client.post("/v1/verifications", json={"target": target}, headers=AUTH)
            assert response.status_code == 202, response.text
            body = wait_done(client, response.json()["id"], timeout=120)
        return time.perf_counter() - started, target, str(body["verdict"])

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, targets))
    assert len(results) == 200
    assert all(verdict == expected[target] for _, target, verdict in results)
    latencies = sorted(r[0] for r in results)
    p50 = statistics.median(latencies)
    p99 = latencies[int(0.99 * len(latencies)) - 1]
    print(
        f"\nsidecar load: 200 verifications, 20 clients: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms (submit to report)"
    )


def test_a_full_queue_answers_429_with_retry_after_and_loses_no_accepted_job(
    spawn: Callable[..., Sidecar], tmp_path: Path, models: Path
) -> None:
    env = sidecar_env(
        tmp_path,
        [models],
        WG_TEST_VERIFIER="fake",
        WG_TEST_DELAY="0.5",
        WEIGHTGUARD_WORKERS="1",
        WEIGHTGUARD_QUEUE_SIZE="2",
    )
    sidecar = spawn(env)
    with sidecar.client() as client:
        answers = [
            client.post("/v1/verifications", json={"target": str(models / "approved")}, headers=AUTH) for _ in range(6)
        ]
        accepted = [a.json()["id"] for a in answers if a.status_code == 202]
        refused = [a for a in answers if a.status_code == 429]
        assert refused and all(a.headers["retry-after"].isdigit() for a in refused)
        assert 2 <= len(accepted) <= 3
        assert all(wait_done(client, job_id)["verdict"] == "approved" for job_id in accepted)
        assert "weightguard_queue_rejections_total" in client.get("/metrics", headers=AUTH).text
