"""Issue 16: two real sidecars on one database: every job runs once, and a killed one's jobs are taken over.

Issue 17: the same on PostgreSQL (``database_url`` runs it on both databases).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from sidecar_support import AUTH, REPO, Sidecar, sidecar_env, wait_done


def test_issue_16_two_sidecars_share_one_database_and_take_over_a_killed_ones_jobs(
    tmp_path: Path, spawn: Callable[..., Sidecar], database_url: str
) -> None:
    root = tmp_path / "models"
    shutil.copytree(REPO / "sample_models" / "approved", root / "m")
    target = str(root / "m")
    log = tmp_path / "verified.log"
    env = sidecar_env(
        tmp_path,
        [root],
        WG_TEST_VERIFIER="fake",
        WG_TEST_DELAY="0.3",
        WG_TEST_LOG=str(log),
        WEIGHTGUARD_WORKERS="2",
        WEIGHTGUARD_QUEUE_SIZE="200",
        WEIGHTGUARD_DATABASE=database_url,
    )
    first, second = spawn(env), spawn(env)  # both start on the same database
    with first.client() as one, second.client() as two:
        ids = [
            (one if i % 2 else two).post("/v1/verifications", json={"target": target}, headers=AUTH).json()["id"]
            for i in range(80)
        ]
        assert all(wait_done(two, job_id, timeout=120)["status"] == "done" for job_id in ids)
        assert len(log.read_text().splitlines()) == 80  # no job ran twice
        orphans = [one.post("/v1/verifications", json={"target": target}, headers=AUTH).json()["id"] for _ in range(8)]
        first.kill()  # mid-job: its running and queued jobs are left behind
        assert all(wait_done(two, job_id, timeout=60)["status"] == "done" for job_id in orphans)
