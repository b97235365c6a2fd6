"""Issue 17: claiming jobs from one queue shared by replicas, on SQLite and PostgreSQL.

``JobStore.claim_next`` takes the oldest queued job a process may run (ties in insertion
order), under the same lease as a claim by id; on PostgreSQL it reads with ``FOR UPDATE
SKIP LOCKED``, so processes claiming at once never get the same job and never wait on
one another. The concurrency test runs real processes, each with its own connections.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
from collections import Counter

from weightguard.sidecar.jobstore import JobStore, make_owner

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


def test_the_oldest_job_is_claimed_first_and_ties_go_in_insertion_order(database_url: str) -> None:
    store = JobStore(database_url)
    later, _ = store.submit("verify", "/later", None, "{}", now=NOW + dt.timedelta(seconds=1))
    # Same timestamp, ids in reverse alphabetical order: only the insertion order can break the tie.
    tied = [store.submit("verify", f"/t{i}", None, "{}", now=NOW, job_id=f"job-{9 - i}")[0] for i in range(5)]
    assert store.queued() == [j.id for j in tied] + [later.id]
    claimed = [store.claim_next("me", NOW, 30.0) for _ in range(7)]
    assert [c.id if c else None for c in claimed] == [j.id for j in tied] + [later.id, None]
    first = claimed[0]
    assert first is not None and first.status == "running" and first.attempts == 1


def test_a_claim_holds_a_lease_that_expires_and_is_taken_back(database_url: str) -> None:
    store = JobStore(database_url)
    job, _ = store.submit("verify", "/m", None, "{}", now=NOW)
    assert store.claim_next("elsewhere/1:1:a", NOW, 10.0) is not None  # another host: only its lease counts
    assert store.claim_next("me", NOW, 10.0) is None  # running under a live lease
    assert store.expire_leases(3, NOW + dt.timedelta(seconds=5)) == 0
    assert store.expire_leases(3, NOW + dt.timedelta(seconds=11)) == 1
    again = store.claim_next("me", NOW + dt.timedelta(seconds=11), 10.0)
    assert again is not None and again.id == job.id and again.attempts == 2
    assert not store.finish(job.id, "done", report="{}", error=None, now=NOW, owner="elsewhere/1:1:a")
    assert store.finish(job.id, "done", report="{}", error=None, now=NOW, owner="me")


def test_a_job_reserved_for_another_live_owner_is_passed_over(database_url: str) -> None:
    store = JobStore(database_url)
    held, _ = store.submit("harbor", "t", None, "{}", now=NOW, reserve=("elsewhere/1:1:a", 30.0))
    free, _ = store.submit("verify", "t", None, "{}", now=NOW + dt.timedelta(seconds=1))
    claimed = store.claim_next(make_owner(), NOW, 30.0)
    assert claimed is not None and claimed.id == free.id
    assert store.claim_next(make_owner(), NOW, 30.0) is None
    mine = store.claim_next("elsewhere/1:1:a", NOW, 30.0)  # its owner takes it
    assert mine is not None and mine.id == held.id


def _claim_all(url: str, worker: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    store = JobStore(url)
    owner = f"{make_owner()}-{worker}"
    got: list[str] = []
    while (job := store.claim_next(owner, dt.datetime.now(dt.UTC), 300.0)) is not None:
        got.append(job.id)
        assert store.finish(job.id, "done", report="{}", error=None, now=dt.datetime.now(dt.UTC), owner=owner)
    out.put(got)


def test_several_processes_claiming_from_one_queue_claim_every_job_exactly_once(database_url: str) -> None:
    store = JobStore(database_url)
    ids = [store.submit("verify", f"/m{i}", None, "{}", now=NOW)[0].id for i in range(300)]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(database_url, w, out)) for w in range(4)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    claims = Counter(job_id for got in results for job_id in got)
    assert sorted(claims) == sorted(ids) and set(claims.values()) == {1}
    assert all((store.get(i) or store.get(ids[0])).status == "done" for i in ids)  # type: ignore[union-attr]
    assert all((store.get(i) or store.get(ids[0])).attempts == 1 for i in ids)  # type: ignore[union-attr]
