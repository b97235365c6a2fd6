"""Issue 16: several sidecars on one database: leased jobs, take-over of dead owners, exactly-once results.

Also: a database that fails writes (a full disk) loses no job and makes the runner unready until it recovers.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from test_jobs import report, wait

from weightguard.sidecar.jobs import JobResult, JobRunner
from weightguard.sidecar.jobstore import JobRecord, JobStore, JobStoreError, make_owner, owner_alive


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def counting(runs: Counter[str], lock: threading.Lock, delay: float = 0.01):  # noqa: ANN201
    def execute(job: JobRecord) -> JobResult:
        with lock:
            runs[job.id] += 1
        time.sleep(delay)
        return JobResult(report())

    return execute


def test_two_runners_on_one_database_run_each_of_80_jobs_exactly_once(database_url: str) -> None:
    url = database_url
    runs: Counter[str] = Counter()
    lock = threading.Lock()
    runners = [
        JobRunner(JobStore(url), counting(runs, lock), workers=2, queue_size=100, timeout_s=30, poll_s=0.05)
        for _ in range(2)
    ]
    for runner in runners:
        runner.start()
    try:
        ids = [runners[i % 2].submit("verify", f"/m{i}", None, "{}").id for i in range(80)]
        finished = [wait(runners[0].store, job_id, timeout=60) for job_id in ids]
    finally:
        for runner in runners:
            runner.stop()
    assert all(job.status == "done" for job in finished)
    assert sorted(runs) == sorted(ids) and set(runs.values()) == {1}


def test_a_job_whose_owner_stopped_renewing_is_taken_over_and_a_dead_owner_at_once(database_url: str) -> None:
    store = JobStore(database_url)
    remote, _ = store.submit("verify", "/remote", None, "{}", now=_now())
    local, _ = store.submit("verify", "/local", None, "{}", now=_now())
    store.claim(remote.id, _now(), owner="other-host/1:1:abcd", lease_s=1.0)  # another host: its lease decides
    store.claim(local.id, _now(), owner=f"{make_owner().partition(':')[0]}:{dead_pid()}:dead", lease_s=3600)
    runs: Counter[str] = Counter()
    runner = JobRunner(store, counting(runs, threading.Lock()), workers=1, queue_size=4, timeout_s=30, poll_s=0.05)
    runner.start()
    try:
        assert wait(store, local.id, timeout=1.0).status == "done"  # a dead process on this host: no wait
        assert (store.get(remote.id) or remote).status == "running"  # its lease still holds
        assert wait(store, remote.id, timeout=5.0).status == "done"
    finally:
        runner.stop()
    assert runs == Counter({remote.id: 1, local.id: 1})


def test_only_the_current_owner_stores_a_result(database_url: str) -> None:
    store = JobStore(database_url)
    job, _ = store.submit("verify", "/m", None, "{}", now=_now())
    store.claim(job.id, _now(), owner="a", lease_s=30)
    assert not store.finish(job.id, "done", report="{}", error=None, now=_now(), owner="b")
    assert store.finish(job.id, "done", report="{}", error=None, now=_now(), owner="a")
    assert not store.finish(job.id, "failed", report=None, error="late", now=_now(), owner="a")


def test_owner_liveness_is_judged_only_for_this_hosts_processes() -> None:
    me = make_owner()
    assert owner_alive(me)
    assert not owner_alive(f"{me.partition(':')[0]}:{dead_pid()}:x")
    assert owner_alive("another-host/1:1:x") and not owner_alive(None)


class FlakyStore(JobStore):
    """A jobs database whose writes fail while ``full`` is set, as on a full disk."""

    full = False

    def claim(self, *args: object, **kwargs: object) -> JobRecord | None:  # type: ignore[override]
        if self.full:
            raise JobStoreError("jobs database error: database or disk is full")
        return super().claim(*args, **kwargs)  # type: ignore[arg-type]

    def renew(self, *args: object, **kwargs: object) -> int:  # type: ignore[override]
        if self.full:
            raise JobStoreError("cannot renew job leases: database or disk is full")
        return super().renew(*args, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("count", [41])
def test_issue_16_jobs_accepted_while_the_disk_was_full_run_once_it_is_freed(database_url: str, count: int) -> None:
    store = FlakyStore(database_url)
    runs: Counter[str] = Counter()
    runner = JobRunner(
        store, counting(runs, threading.Lock(), 0), workers=2, queue_size=100, timeout_s=30, lease_s=3, poll_s=0.05
    )
    runner.start()
    try:
        store.full = True
        ids = [runner.submit("verify", f"/m{i}", None, "{}").id for i in range(count)]
        time.sleep(1.0)
        assert runner.storage_error is not None  # /readyz answers 503
        assert all((store.get(i) or JobRecord).status == "queued" for i in ids)  # type: ignore[union-attr]
        store.full = False
        finished = [wait(store, job_id) for job_id in ids]
        time.sleep(1.1)  # the next heartbeat write clears the error
        assert runner.storage_error is None
    finally:
        runner.stop()
    assert all(job.status == "done" for job in finished) and set(runs.values()) == {1}


def test_issue_16_readyz_is_503_while_the_database_refuses_writes(tmp_path: Path, database_url: str) -> None:
    from fastapi.testclient import TestClient  # noqa: PLC0415

    from weightguard.sidecar import create_app  # noqa: PLC0415
    from weightguard.sidecar.settings import SidecarSettings  # noqa: PLC0415

    settings = SidecarSettings(api_token="t", database=database_url, model_roots=[tmp_path])
    app = create_app(settings, verifier=lambda _target, _policy: report())
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        app.state.context.runner.storage_error = "database or disk is full"
        assert client.get("/readyz").status_code == 503
