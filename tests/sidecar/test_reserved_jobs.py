"""Issue 17 x 16: a Harbor scan's pull credential lives only in the process that accepted it.

So the queued job is reserved for that process: other sidecars on the database leave it alone
while its owner lives and renews the lease, and take it once the owner is gone or the lease ran
out (it then fails cleanly without the credential, rather than staying queued for ever). The
credential is stored before the job is queued, so a worker that starts it at once has it.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest

from weightguard.sidecar.jobstore import JobStore, make_owner

NOW = dt.datetime(2026, 12, 3, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def store(database_url: str) -> JobStore:
    """A job store on each database (SQLite and PostgreSQL)."""
    return JobStore(database_url)


def _dead_owner() -> str:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    place, _, rest = make_owner().partition(":")
    return f"{place}:{proc.pid}:{rest.partition(':')[2]}"


def test_a_reserved_queued_job_is_left_to_its_live_owner_while_its_lease_runs(store: JobStore) -> None:
    me, other = make_owner(), "elsewhere/1:1:abcd"  # another host: only the lease tells
    job, _ = store.submit("harbor", "t", "default", "{}", now=NOW, reserve=(me, 30.0))
    free, _ = store.submit("verify", "t", "default", "{}", now=NOW)
    assert store.queued(owner=other, now=NOW) == [free.id]
    assert store.queued(owner=me, now=NOW) == [job.id, free.id]
    assert store.queued() == [job.id, free.id]  # unfiltered: everything queued


def test_a_reserved_job_is_taken_once_the_lease_runs_out_and_renewal_extends_it(store: JobStore) -> None:
    me = make_owner()
    job, _ = store.submit("harbor", "t", "default", "{}", now=NOW, reserve=(me, 30.0))
    later = NOW + dt.timedelta(seconds=31)
    assert store.queued(owner="elsewhere/1:1:abcd", now=later) == [job.id]
    store.renew(me, later, 30.0)  # the owner is alive and renews its reserved jobs too
    assert store.queued(owner="elsewhere/1:1:abcd", now=later) == []


def test_a_reserved_job_of_a_dead_process_is_taken_by_another_sidecar_at_once(store: JobStore) -> None:
    job, _ = store.submit("harbor", "t", "default", "{}", now=NOW, reserve=(_dead_owner(), 300.0))
    assert store.recover(3, NOW, make_owner()) == [job.id]
    claimed = store.claim(job.id, NOW, owner=make_owner(), lease_s=30.0)
    assert claimed is not None and claimed.status == "running"
