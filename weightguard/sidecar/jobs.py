"""The job runner: a bounded queue in front of a fixed pool of worker threads.

``submit`` persists the job (see :mod:`weightguard.sidecar.jobstore`) and
only then hands it to the workers; when ``queue_size`` jobs are already
waiting it refuses with :class:`QueueFull`, which the HTTP layer answers with
429 and ``Retry-After``. Memory stays flat under load because at most
``workers`` verifications run and at most ``queue_size`` ids wait.
A job that runs past ``timeout_s`` is failed at its deadline (the client gets
an answer); its thread keeps its worker slot until it really ends, so a slow
file never multiplies threads, and its late result is discarded by the
store's conditional update. On start every job a killed process left behind
is re-queued and run.

Several sidecars may share a database (issue 16). Each claims a job under its
own owner id and a lease of ``lease_s`` seconds, renewed every ``lease_s / 3``
by a keeper thread; the keeper also, every ``poll_s``, takes back jobs whose
owner's lease ran out (or whose owner process is gone), queues every job
waiting in the database that this process does not hold (accepted by another
instance, or dropped when a write failed), and retries results it could not
store. A worker whose job another instance claimed first takes the oldest free
job instead (:meth:`JobStore.claim_next`, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL).
A database error is remembered as ``storage_error`` (``/readyz`` answers
503) until a heartbeat write succeeds again; jobs are never dropped for it.
Not handled here: what a job does (the executor passed in) or HTTP.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from weightguard.errors import WeightguardError
from weightguard.report.model import Report
from weightguard.sidecar.jobstore import IdempotencyKey, JobRecord, JobStore, JobStoreError, make_owner

_log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


class QueueFull(WeightguardError):  # noqa: N818 - a state, like queue.Full
    """The bounded queue has no room; retry later."""


@dataclass(frozen=True, slots=True)
class JobResult:
    """What a finished job stores: its report, and a note on side effects that failed (write-back)."""

    report: Report
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    """Told to ``on_finish`` once per job, when its result is stored."""

    job: JobRecord
    outcome: str  # the verdict, or "failed"
    seconds: float


Execute = Callable[[JobRecord], JobResult]


def error_json(message: str, hint: str | None = None, kind: str | None = None) -> str:
    """The stored form of a job error; ``kind`` names the error's class (the Harbor adapter maps pull failures)."""
    return json.dumps({"message": message, "hint": hint} | ({"kind": kind} if kind else {}))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class JobRunner:
    """Runs persisted jobs on ``workers`` threads with at most ``queue_size`` waiting."""

    def __init__(
        self,
        store: JobStore,
        execute: Execute,
        *,
        workers: int,
        queue_size: int,
        timeout_s: float,
        on_finish: Callable[[Finished], None] | None = None,
        lease_s: float = 30.0,
        poll_s: float = 2.0,
    ) -> None:
        """Prepare the runner; nothing runs until :meth:`start`."""
        self.store = store
        self.owner = make_owner()
        self._lease_s = lease_s
        self._poll_s = poll_s
        self._known: set[str] = set()  # ids pending or running here
        self._unsaved: list[tuple[JobRecord, float, str, str | None, str | None]] = []
        self.storage_error: str | None = None
        self._execute = execute
        self._workers = workers
        self._queue_size = queue_size
        self._timeout_s = timeout_s
        self._on_finish = on_finish or (lambda _f: None)
        self._pending: deque[str] = deque()
        self._cond = threading.Condition()
        self._running = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.ready = False

    def start(self) -> None:
        """Re-queue what a previous process left behind, then start the workers."""
        recovered = self.store.recover(MAX_ATTEMPTS, _now(), self.owner)
        if recovered:
            _log.info("re-queued %d job(s) left by a previous run", len(recovered))
        with self._cond:
            self._enqueue(recovered)  # already accepted, so they may exceed queue_size
        for index in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"weightguard-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        keeper = threading.Thread(target=self._keep, name="weightguard-job-keeper", daemon=True)
        keeper.start()
        self._threads.append(keeper)
        self.ready = True

    def _enqueue(self, job_ids: list[str]) -> None:
        fresh = [j for j in job_ids if j not in self._known]
        self._known.update(fresh)
        self._pending.extend(fresh)
        if fresh:
            self._cond.notify_all()

    def _keep(self) -> None:
        """Renew leases, take back expired ones, pick up waiting jobs, retry unsaved results."""
        renewed_at = 0.0
        while not self._stop.wait(self._poll_s):
            try:
                if time.monotonic() - renewed_at >= self._lease_s / 3:
                    self.store.renew(self.owner, _now(), self._lease_s)
                    renewed_at = time.monotonic()
                    self.storage_error = None  # a real write went through
                if self.store.expire_leases(MAX_ATTEMPTS, _now()):
                    _log.info("took back job(s) whose owner stopped renewing its lease")
                waiting = self.store.queued(owner=self.owner, now=_now())
                with self._cond:
                    self._enqueue(waiting)
                self._save_unsaved()
            except WeightguardError as exc:
                self._storage_failed(exc)
            except Exception:  # noqa: BLE001 - the keeper must outlive anything one tick does
                _log.exception("the job keeper failed; retrying")

    def _storage_failed(self, exc: WeightguardError) -> None:
        if self.storage_error is None:
            _log.error("jobs database: %s", exc.message)
        self.storage_error = exc.message

    def _save_unsaved(self) -> None:
        while self._unsaved:
            record, started, outcome, report, error = self._unsaved[0]
            self._finish(record, started, outcome, report, error, retry=False)
            self._unsaved.pop(0)

    def stop(self, wait_s: float = 5.0) -> None:
        """Stop taking jobs; unfinished ones stay in the database for the next start."""
        self.ready = False
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + wait_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def depth(self) -> int:
        """Jobs waiting for a worker."""
        return len(self._pending)

    def running(self) -> int:
        """Jobs being worked on now."""
        return self._running

    def submit(
        self,
        kind: str,
        target: str,
        policy: str | None,
        request: str,
        job_id: str | None = None,
        key: IdempotencyKey | None = None,
        *,
        reserve: bool = False,
    ) -> JobRecord:
        """Persist and enqueue a job; with ``job_id`` or ``key`` a duplicate returns the existing job.

        With ``reserve`` the job is held for this process (see :meth:`JobStore.submit`).

        Raises:
            QueueFull: ``queue_size`` jobs are already waiting.
            KeyReused: ``key`` was used for a different request.
            JobStoreError: the job could not be persisted.
        """
        with self._cond:
            existing = self.store.get(job_id) if job_id is not None else None
            existing = existing or (self.store.keyed(key) if key is not None else None)
            if existing is not None:
                return existing  # a retry: answered even when the queue is full
            if len(self._pending) >= self._queue_size:
                raise QueueFull(f"{len(self._pending)} job(s) already waiting", hint="retry after a few seconds")
            try:
                held = (self.owner, self._lease_s) if reserve else None
                record, created = self.store.submit(
                    kind, target, policy, request, job_id=job_id, now=_now(), key=key, reserve=held
                )
            except JobStoreError as exc:
                self._storage_failed(exc)
                raise
            if created:
                self._enqueue([record.id])
        return record

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stop.is_set():
                    self._cond.wait(0.5)
                if self._stop.is_set():
                    return
                job_id = self._pending.popleft()
                self._running += 1
            try:
                self._run(job_id)
            except JobStoreError as exc:
                self._storage_failed(exc)  # the job stays queued in the database; the keeper re-queues it
            except Exception:  # noqa: BLE001 - a worker must survive anything one job does
                _log.exception("job %s: the runner failed", job_id)
            finally:
                with self._cond:
                    self._running -= 1
                    self._known.discard(job_id)

    def _run(self, job_id: str) -> None:
        record = self.store.claim(job_id, _now(), owner=self.owner, lease_s=self._lease_s)
        if record is None:
            # Finished or claimed elsewhere (never run or report a job twice). Another replica won
            # this one, so take the oldest job still free instead of idling until the next poll.
            record = self.store.claim_next(self.owner, _now(), self._lease_s)
        if record is None:
            return
        started = time.monotonic()
        timer = threading.Timer(self._timeout_s, self._expire, args=(record, started))
        timer.daemon = True
        timer.start()
        try:
            result = self._execute(record)
        except WeightguardError as exc:
            self._finish(record, started, "failed", None, error_json(exc.message, exc.hint, type(exc).__name__))
        except Exception as exc:  # noqa: BLE001 - foreign errors become a failed job, never a dead worker
            _log.exception("job %s: unexpected error", job_id)
            self._finish(record, started, "failed", None, error_json(f"internal error: {type(exc).__name__}"))
        else:
            note = None if result.note is None else error_json(result.note)
            self._finish(record, started, result.report.verdict, result.report.model_dump_json(), note)
        finally:
            timer.cancel()

    def _expire(self, record: JobRecord, started: float) -> None:
        message = f"the job ran past the {self._timeout_s:g} s limit"
        self._finish(record, started, "failed", None, error_json(message, "raise WEIGHTGUARD_JOB_TIMEOUT_S"))

    def _finish(
        self,
        record: JobRecord,
        started: float,
        outcome: str,
        report: str | None,
        error: str | None,
        *,
        retry: bool = True,
    ) -> None:
        status: Literal["done", "failed"] = "failed" if report is None else "done"
        try:
            stored = self.store.finish(record.id, status, report=report, error=error, now=_now(), owner=self.owner)
        except JobStoreError as exc:
            if not retry:
                raise
            # Our lease is renewed while we hold the result, so nobody runs the job again meanwhile.
            self._storage_failed(exc)
            self._unsaved.append((record, started, outcome, report, error))
            return
        if stored:
            self._on_finish(Finished(record, outcome, time.monotonic() - started))


__all__ = ["Execute", "Finished", "JobResult", "JobRunner", "QueueFull", "error_json"]
