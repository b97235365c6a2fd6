"""Issue 16: a real sidecar; a target admitted with 202, then swapped for a link to outside the root mid-job."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sidecar_support import AUTH, REPO, Sidecar, sidecar_env, wait_done


@pytest.mark.parametrize("level", ["folder", "parent"])
def test_issue_16_a_target_swapped_for_a_link_during_its_job_is_not_approved_and_nothing_outside_is_read(
    tmp_path: Path, spawn: Callable[..., Sidecar], level: str
) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    target = root / "org" / "model"
    shutil.copytree(REPO / "sample_models" / "approved", target)
    shutil.copytree(REPO / "sample_models" / "approved", outside / "org" / "model")
    (outside / "org" / "model" / "outside-only.json").write_text("{}")
    log = tmp_path / "verified.log"
    # The fake verifier sleeps 1.5 s after the job has pinned its target, then runs the real pipeline.
    env = sidecar_env(tmp_path, [root], WG_TEST_VERIFIER="fake", WG_TEST_DELAY="1.5", WG_TEST_LOG=str(log))
    sidecar = spawn(env)
    with sidecar.client() as client:
        accepted = client.post("/v1/verifications", json={"target": str(target)}, headers=AUTH)
        assert accepted.status_code == 202, accepted.text
        time.sleep(0.5)
        swapped = target if level == "folder" else root / "org"
        swapped.rename(swapped.with_name(swapped.name + ".orig"))
        swapped.symlink_to(outside / "org" / ("model" if level == "folder" else ""), target_is_directory=True)
        job = wait_done(client, accepted.json()["id"])
        again = client.post("/v1/verifications", json={"target": str(target)}, headers=AUTH)
    assert job["status"] == "failed" and job.get("verdict") != "approved" and job.get("report") is None
    assert "changed while it was verified" in str(job["error"]) or "symbolic link" in str(job["error"])
    read = log.read_text().splitlines() if log.exists() else []
    assert all(line.startswith(str(root)) for line in read), read  # what was read lies inside the root
    assert "outside" not in str(job)
    assert again.status_code == 403  # the link itself is refused at admission
