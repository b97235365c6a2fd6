"""JobStore and JobRunner with a fake executor: persistence, bounds, timeouts, recovery, exactly-once results."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from weightguard.errors import SourceError
from weightguard.policy.load import load_builtin
from weightguard.report.model import PolicyRef, Report, Summary, ToolInfo
from weightguard.sidecar.jobs import JobResult, JobRunner, QueueFull
from weightguard.sidecar.jobstore import JobRecord, JobStore

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def report(verdict: str = "approved") -> Report:
    loaded = load_builtin("default")
    return Report(
        tool=ToolInfo(version="0"),
        command="verify",
        generated_at=NOW,
        targets=["t"],
        policy=PolicyRef(name=loaded.name, origin=loaded.origin, sha256=loaded.sha256),
        verdict=verdict,  # type: ignore[arg-type]
        exit_code=0 if verdict == "approved" else 1,
        summary=Summary(files=0, findings=0, blocking=0, errors=0, skipped=0, suppressed=0),
    )


@pytest.fixture
def store(database_url: str) -> JobStore:
    """A job store on each database (SQLite and PostgreSQL)."""
    return JobStore(database_url)


def wait(store: JobStore, job_id: str, timeout: float = 10.0) -> JobRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get(job_id)
        assert job is not None
        if job.status in ("done", "failed"):
            return job
        time.sleep(0.01)
    raise AssertionError("job did not finish")


def test_submitted_job_is_on_disk_before_submit_returns(store: JobStore) -> None:
    runner = JobRunner(store, lambda job: JobResult(report()), workers=1, queue_size=4, timeout_s=5)
    job = runner.submit("verify", "/m", "default", "{}")  # not started: nothing runs yet
    other = JobStore(store.url)  # another connection sees the committed row
    stored = other.get(job.id)
    assert stored is not None and stored.status == "queued"


def test_full_queue_refuses_without_persisting(store: JobStore) -> None:
    runner = JobRunner(store, lambda job: JobResult(report()), workers=1, queue_size=2, timeout_s=5)
    runner.submit("verify", "/a", None, "{}")
    runner.submit("verify", "/b", None, "{}")
    with pytest.raises(QueueFull):
        runner.submit("verify", "/c", None, "{}")
    assert runner.depth() == 2


def test_results_and_errors_are_stored_once(store: JobStore) -> None:
    def execute(job: JobRecord) -> JobResult:
        if job.target == "/bad":
            raise SourceError("cannot read", hint="check the path")
        return JobResult(report("rejected"))

    finished: list[str] = []
    runner = JobRunner(
        store, execute, workers=2, queue_size=8, timeout_s=5, on_finish=lambda f: finished.append(f.outcome)
    )
    runner.start()
    good, bad = runner.submit("verify", "/good", None, "{}"), runner.submit("verify", "/bad", None, "{}")
    done, failed = wait(store, good.id), wait(store, bad.id)
    runner.stop()
    assert done.status == "done" and Report.model_validate_json(done.report or "").verdict == "rejected"
    assert failed.status == "failed" and '"check the path"' in (failed.error or "")
    assert sorted(finished) == ["failed", "rejected"]
    assert not store.finish(good.id, "failed", report=None, error="late", now=NOW)  # a second result is refused


def test_a_job_past_its_timeout_fails_and_its_late_result_is_discarded(store: JobStore) -> None:
    release = threading.Event()

    def execute(job: JobRecord) -> JobResult:
        release.wait(5)
        return JobResult(report())

    runner = JobRunner(store, execute, workers=1, queue_size=2, timeout_s=0.2)
    runner.start()
    job = runner.submit("verify", "/slow", None, "{}")
    timed_out = wait(store, job.id)
    release.set()
    time.sleep(0.1)
    runner.stop()
    final = store.get(job.id)
    assert timed_out.status == "failed" and "limit" in (timed_out.error or "")
    assert final is not None and final.status == "failed" and final.report is None


def test_recovery_requeues_interrupted_jobs_and_gives_up_after_three_attempts(store: JobStore) -> None:
    a, _ = store.submit("verify", "/a", None, "{}", now=NOW)
    b, _ = store.submit("verify", "/b", None, "{}", now=NOW + dt.timedelta(seconds=1))
    c, _ = store.submit("verify", "/c", None, "{}", now=NOW + dt.timedelta(seconds=2))
    store.claim(a.id, NOW)  # running when the process "died"
    for _ in range(3):
        store.recover(3, NOW)
        store.claim(c.id, NOW)  # c kills the process every time
    queued = store.recover(3, NOW)
    assert queued == [a.id, b.id]
    dead = store.get(c.id)
    assert dead is not None and dead.status == "failed" and dead.attempts == 3


def test_duplicate_job_id_returns_the_existing_job(store: JobStore) -> None:
    runner = JobRunner(store, lambda job: JobResult(report()), workers=1, queue_size=4, timeout_s=5)
    first = runner.submit("mlflow", "/m", None, "{}", job_id="fixed")
    second = runner.submit("mlflow", "/m", None, "{}", job_id="fixed")
    assert first.id == second.id == "fixed" and runner.depth() == 1
