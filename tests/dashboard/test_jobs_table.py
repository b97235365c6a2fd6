"""The jobs-table reader: real JobStore rows in, VerificationEntry out, read-only; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from html_fixtures import DIGEST, WHEN, rich_report

from weightguard.errors import VerdictError
from weightguard.sidecar.jobstore import JobStore
from weightguard.sidecar_dashboard.jobs_table import JobsTableVerifications


def test_jobs_are_read_newest_first_with_their_reports_and_errors(database_url: str) -> None:
    url = database_url
    store = JobStore(url)
    done, _ = store.submit("verify", "/m/a", None, "{}", now=WHEN)
    store.claim(done.id, WHEN)
    store.finish(done.id, "done", report=rich_report().model_dump_json(), error=None, now=WHEN)
    failed, _ = store.submit("verify", "/m/b", None, "{}", now=WHEN + dt.timedelta(seconds=1))
    store.claim(failed.id, WHEN)
    store.finish(failed.id, "failed", report=None, error='{"message": "no such folder"}', now=WHEN)
    queued, _ = store.submit("verify", "/m/c", None, "{}", now=WHEN + dt.timedelta(seconds=2))
    jobs = JobsTableVerifications(url)
    try:
        entries = jobs.recent(10)
        assert [e.id for e in entries] == [queued.id, failed.id, done.id]
        assert [(e.status, e.verdict, e.error) for e in entries] == [
            ("queued", None, None),
            ("failed", None, "no such folder"),
            ("done", "rejected", None),
        ]
        assert entries[2].digest == DIGEST
        assert jobs.get(done.id) == entries[2] and jobs.get("nope") is None
        assert len(jobs.recent(1)) == 1
    finally:
        jobs.close()


def test_a_models_verifications_are_found_by_its_digest_however_old(database_url: str) -> None:
    url = database_url
    store = JobStore(url)
    report = rich_report().model_dump_json()
    other = report.replace(DIGEST, "f" * 64)
    not_a_report = json.dumps({"subject": {"root_digest": DIGEST}})
    bodies = [report, "{not json", None, not_a_report] + [other] * 600
    ids = []
    for i, body in enumerate(bodies):
        job, _ = store.submit("verify", f"/m/{i}", None, "{}", now=WHEN + dt.timedelta(seconds=i))
        store.claim(job.id, WHEN)
        error = None if body else '{"message": "gone"}'
        store.finish(job.id, "done" if body else "failed", report=body, error=error, now=WHEN)
        ids.append(job.id)
    jobs = JobsTableVerifications(url)
    try:
        # The oldest job is the only one of this model, 600 newer ones later; a report that
        # names the digest but does not validate is left out, and malformed JSON is no error.
        assert [e.id for e in jobs.of_digest(DIGEST, 10)] == [ids[0]]
        # A newer row that only mentions the digest does not take the one place of a page.
        assert [e.id for e in jobs.of_digest(DIGEST, 1)] == [ids[0]]
        assert len(jobs.of_digest("f" * 64, 5)) == 5
        assert jobs.of_digest("0" * 64, 5) == []
    finally:
        jobs.close()


def test_a_report_that_no_longer_parses_is_shown_as_an_error(database_url: str) -> None:
    url = database_url
    store = JobStore(url)
    job, _ = store.submit("verify", "/m/a", None, "{}", now=WHEN)
    store.claim(job.id, WHEN)
    store.finish(job.id, "done", report='{"schema_version": "0"}', error=None, now=WHEN)
    jobs = JobsTableVerifications(url)
    try:
        [entry] = jobs.recent(5)
    finally:
        jobs.close()
    assert entry.report is None and entry.error is not None and "schema" in entry.error


def test_the_reader_cannot_write(database_url: str) -> None:
    url = database_url
    JobStore(url)
    jobs = JobsTableVerifications(url)
    try:
        with pytest.raises(VerdictError, match="readonly|read-only"):
            jobs._conn.execute("DELETE FROM jobs")
    finally:
        jobs.close()


def test_a_missing_database_is_a_verdict_error(tmp_path: Path) -> None:
    with pytest.raises(VerdictError):
        JobsTableVerifications(f"sqlite:///{tmp_path / 'absent.db'}")
    with pytest.raises(VerdictError):
        JobsTableVerifications("postgresql://db/wg")
