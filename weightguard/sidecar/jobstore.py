"""Durable sidecar jobs: the ``jobs`` table of the rollout database (migration 2).

A job row is written and committed before the sidecar answers 202, so an
accepted request survives a crash. State moves only forward:
``queued -> running -> done | failed``; each move is a conditional UPDATE,
so a job's result is stored exactly once even if a timed-out run finishes
late. After a crash, :meth:`JobStore.recover` puts interrupted ``running``
jobs back in the queue (or fails them after too many attempts, so a file
that kills the process cannot loop forever).
Idempotency keys (issue 16) live in the sidecar's own ``job_keys`` table,
created here if missing (the numbered migrations of :mod:`weightguard.verdict.store`
belong to the rollout record): a key names one job, with a fingerprint of
the request that created it, inserted in the same transaction as the job.
Several sidecars may share one database (issue 16): a claim writes the
claiming process (``owner``: host, PID namespace, PID and a random part) and a
lease (``lease_until``, epoch seconds) that its owner renews while it works;
a ``running`` row whose lease ran out, or whose owner is a process on this
host that no longer exists, is taken back into the queue
(:meth:`JobStore.expire_leases`), and a result is stored only by the job's
current owner, so it is stored exactly once. ``owner`` and ``lease_until``
are added to the jobs table here if missing, with the ``sidecar_instances``
heartbeat table (a real write that shows whether the database takes writes).
A queued job whose pull credential only its accepting process holds (a Harbor
scan, issue 17) is *reserved* for that owner under the same lease: the other
sidecars leave it alone until the lease runs out or the owner is gone.
The database is SQLite or PostgreSQL, as the URL says (:mod:`weightguard.verdict.database`);
the lease design is the same on both. On PostgreSQL a claim locks its row with
``FOR UPDATE SKIP LOCKED`` (:meth:`JobStore.claim_next` takes the oldest free job
that way), writers that must not interleave take an advisory lock where SQLite
takes ``BEGIN IMMEDIATE``, and "oldest first, ties in insertion order" orders by
an identity column (``seq``) where SQLite uses its ``rowid``.
Not handled here: running jobs (:mod:`weightguard.sidecar.jobs`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from weightguard.errors import VerdictError
from weightguard.verdict.database import Database, DatabaseError, Pool
from weightguard.verdict.store import RolloutStore

JobStatus = Literal["queued", "running", "done", "failed"]

_COLUMNS = "id, kind, target, policy, request, status, attempts, submitted_at, started_at, finished_at, report, error"


_SIDECAR_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS job_keys (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        job_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (scope, key)
    )""",
    "CREATE TABLE IF NOT EXISTS sidecar_instances (owner TEXT PRIMARY KEY, heartbeat_at TEXT NOT NULL)",
)
_LEASE_COLUMNS = (("owner", "TEXT"), ("lease_until", "REAL"))
# Connections per process: the workers, the keeper and the HTTP threads borrow one per statement
# (or transaction); three replicas then stay far below PostgreSQL's default of 100 connections.
_POOL_SIZE = 8
# claim_next looks at this many queued jobs, oldest first, for one it may run (reserved ones are passed over).
_CLAIM_WINDOW = 64
# PostgreSQL's claim by id: lock the row unless another transaction holds it (then it is being claimed).
_PG_LOCK_ONE = "id = (SELECT id FROM jobs WHERE id = ? AND status = 'queued' FOR UPDATE SKIP LOCKED)"


def make_owner() -> str:
    """This process's owner id: ``host/pid-namespace:pid:random``."""
    try:
        namespace = Path("/proc/self/ns/pid").stat().st_ino
    except OSError:
        namespace = 0
    return f"{socket.gethostname()}/{namespace}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str | None) -> bool:
    """False only when ``owner`` is surely gone: a process of this host and PID namespace that no longer exists."""
    if owner is None:
        return False  # a row claimed without an owner (an older sidecar): its lease is all there is
    place, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if place != make_owner().partition(":")[0] or not pid_text.isdigit():
        return True  # another host: only its lease can tell
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by another user
    return True


# The jobs table could not be read or written: the database layer's error, so that a failure in any
# statement (raised there) is the one error the runner and the HTTP layer catch.
JobStoreError = DatabaseError


class KeyReused(VerdictError):  # noqa: N818 - a decision about the request, like QueueFull
    """An idempotency key already names a job created by a different request."""


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A client's key for one request (``scope`` separates the API from webhooks) and the request's fingerprint."""

    scope: str
    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One row of the jobs table."""

    id: str
    kind: str
    target: str
    policy: str | None
    request: str
    status: JobStatus
    attempts: int
    submitted_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    report: str | None
    error: str | None

    def request_field(self, key: str) -> str:
        """A string field of the stored request JSON ('' when absent)."""
        try:
            value = json.loads(self.request).get(key, "")
        except (ValueError, AttributeError):
            return ""
        return value if isinstance(value, str) else str(value)


def _row(row: tuple[object, ...]) -> JobRecord:
    def when(value: object) -> dt.datetime | None:
        return dt.datetime.fromisoformat(str(value)) if value else None

    submitted = when(row[7])
    assert submitted is not None  # NOT NULL column
    return JobRecord(
        id=str(row[0]),
        kind=str(row[1]),
        target=str(row[2]),
        policy=None if row[3] is None else str(row[3]),
        request=str(row[4]),
        status=str(row[5]),  # type: ignore[arg-type]  # the column only ever holds JobStatus values
        attempts=int(str(row[6])),
        submitted_at=submitted,
        started_at=when(row[8]),
        finished_at=when(row[9]),
        report=None if row[10] is None else str(row[10]),
        error=None if row[11] is None else str(row[11]),
    )


class JobStore:
    """Thread-safe access to the jobs table, SQLite or PostgreSQL, through a small pool of connections."""

    def __init__(self, url: str) -> None:
        """Open the database at ``url``, applying the rollout record's migrations first.

        Raises:
            VerdictError: the database cannot be opened or migrated.
        """
        RolloutStore(url).close()  # runs the migrations, which create the jobs table
        self.url = url
        self._pool = Pool(url, size=_POOL_SIZE, label="jobs database")
        self.dialect = self._pool.dialect
        # Insertion order among jobs submitted in the same microsecond (see migrations: jobs.seq).
        self._order = "submitted_at, rowid" if self.dialect == "sqlite" else "submitted_at, seq"
        with self._write() as db:  # serialised: replicas starting together create these once
            for statement in _SIDECAR_SCHEMA:
                db.execute(statement)
        if self.dialect == "sqlite":  # PostgreSQL's jobs table has them from its migration 2
            self._add_lease_columns()

    def _add_lease_columns(self) -> None:
        present = {str(r[1]) for r in self._rows("PRAGMA table_info(jobs)")}
        for name, kind in _LEASE_COLUMNS:
            if name not in present:
                try:
                    self._change(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")
                except JobStoreError as exc:  # another sidecar added it first
                    if "duplicate column" not in str(exc):
                        raise

    @contextmanager
    def _write(self, *, serialise: bool = True) -> Iterator[Database]:
        with self._pool.connection() as conn, conn.write(serialise=serialise, lock="jobs") as db:
            yield db

    def _rows(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        # Fetched before the connection goes back to the pool, where another thread may take it.
        with self._pool.connection() as db:
            return [tuple(r) for r in db.execute(sql, args).fetchall()]

    def _change(self, sql: str, args: tuple[object, ...] = ()) -> int:
        with self._pool.connection() as db:
            return db.execute(sql, args).rowcount

    def submit(
        self,
        kind: str,
        target: str,
        policy: str | None,
        request: str,
        *,
        job_id: str | None = None,
        now: dt.datetime,
        key: IdempotencyKey | None = None,
        reserve: tuple[str, float] | None = None,
    ) -> tuple[JobRecord, bool]:
        """Insert a queued job (committed on return); a duplicate ``job_id`` or ``key`` returns the existing job.

        With ``reserve`` (owner, lease seconds) the queued job is held for that owner (it alone has
        the job's in-memory pull credential) until the lease, renewed by the owner, runs out.

        Returns:
            The job and whether it was created now (False: a duplicate).

        Raises:
            KeyReused: ``key`` names a job made from a request with another fingerprint.
            JobStoreError: the database failed.
        """
        new_id = job_id or str(uuid.uuid4())
        reused: str | None = None
        with self._write() as db:  # the key and the job are written together, or neither
            if key is not None:
                row = db.execute(
                    "SELECT fingerprint, job_id FROM job_keys WHERE scope = ? AND key = ?", (key.scope, key.key)
                ).fetchone()
                if row is not None:
                    if str(row[0]) != key.fingerprint:
                        raise KeyReused(
                            "this Idempotency-Key was already used for a different request",
                            hint="use a new key for a new request",
                        )
                    reused = str(row[1])
            if reused is None:
                cursor = db.execute(
                    "INSERT INTO jobs (id, kind, target, policy, request, status, attempts, submitted_at,"
                    " owner, lease_until) VALUES (?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (
                        new_id,
                        kind,
                        target,
                        policy,
                        request,
                        now.isoformat(),
                        *((reserve[0], now.timestamp() + reserve[1]) if reserve else (None, None)),
                    ),
                )
                created = cursor.rowcount == 1
                if key is not None:
                    db.execute(
                        "INSERT INTO job_keys (scope, key, fingerprint, job_id, created_at) VALUES (?, ?, ?, ?, ?)",
                        (key.scope, key.key, key.fingerprint, new_id, now.isoformat()),
                    )
        if reused is not None:
            return self._existing(reused), False
        return self._existing(new_id), created

    def _existing(self, job_id: str) -> JobRecord:
        record = self.get(job_id)
        if record is None:
            raise DatabaseError(f"job {job_id} vanished after insertion")
        return record

    def keyed(self, key: IdempotencyKey) -> JobRecord | None:
        """The job ``key`` names, or None.

        Raises:
            KeyReused: it names a job made from a request with another fingerprint.
        """
        rows = self._rows("SELECT fingerprint, job_id FROM job_keys WHERE scope = ? AND key = ?", (key.scope, key.key))
        if not rows:
            return None
        row = rows[0]
        if str(row[0]) != key.fingerprint:
            raise KeyReused(
                "this Idempotency-Key was already used for a different request", hint="use a new key for a new request"
            )
        return self.get(str(row[1]))

    def get(self, job_id: str) -> JobRecord | None:
        """The job ``job_id``, or None."""
        rows = self._rows(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))  # noqa: S608 - constant columns
        return _row(rows[0]) if rows else None

    def claim(
        self, job_id: str, now: dt.datetime, *, owner: str | None = None, lease_s: float | None = None
    ) -> JobRecord | None:
        """Move a queued job to running (one more attempt) under ``owner``'s lease; None if it is not queued any more.

        On PostgreSQL the row is locked with ``FOR UPDATE SKIP LOCKED``: a job another replica is
        claiming at this instant is skipped at once (None) instead of waited for.
        """
        until = now.timestamp() + lease_s if lease_s is not None else None
        which = "id = ?" if self.dialect == "sqlite" else _PG_LOCK_ONE
        changed = self._change(
            "UPDATE jobs SET status = 'running', started_at = ?, attempts = attempts + 1, owner = ?,"  # noqa: S608
            f" lease_until = ? WHERE {which} AND status = 'queued'",  # constant clauses only
            (now.isoformat(), owner, until, job_id),
        )
        return self.get(job_id) if changed == 1 else None

    def claim_next(self, owner: str, now: dt.datetime, lease_s: float) -> JobRecord | None:
        """Claim the oldest queued job ``owner`` may run (ties in insertion order), or None.

        One lease design for both databases: the job becomes ``running`` under ``owner`` until
        ``lease_s`` from ``now``, renewed by :meth:`renew`. PostgreSQL reads the candidates with
        ``SELECT ... FOR UPDATE SKIP LOCKED``, so replicas claiming at once each get a different
        job without waiting on one another; SQLite serialises the claim (``BEGIN IMMEDIATE``).
        A job reserved for another live owner whose lease runs is passed over.
        """
        lock = "" if self.dialect == "sqlite" else " FOR UPDATE SKIP LOCKED"
        with self._write(serialise=False) as db:
            candidates = f"SELECT id, owner, lease_until FROM jobs WHERE status = 'queued' ORDER BY {self._order}"  # noqa: S608
            rows = db.execute(f"{candidates} LIMIT ?{lock}", (_CLAIM_WINDOW,)).fetchall()
            chosen = next((str(r[0]) for r in rows if _free(owner, r[1], r[2], now.timestamp())), None)
            if chosen is None:
                return None
            db.execute(
                "UPDATE jobs SET status = 'running', started_at = ?, attempts = attempts + 1, owner = ?,"
                " lease_until = ? WHERE id = ? AND status = 'queued'",
                (now.isoformat(), owner, now.timestamp() + lease_s, chosen),
            )
        return self.get(chosen)

    def finish(
        self,
        job_id: str,
        status: Literal["done", "failed"],
        *,
        report: str | None,
        error: str | None,
        now: dt.datetime,
        owner: str | None = None,
    ) -> bool:
        """Store a running job's result; False (nothing written) if it already has one or another owner took it."""
        mine = " AND owner = ?" if owner is not None else ""
        changed = self._change(
            f"UPDATE jobs SET status = ?, report = ?, error = ?, finished_at = ?, lease_until = NULL"  # noqa: S608
            f" WHERE id = ? AND status = 'running'{mine}",
            (status, report, error, now.isoformat(), job_id, *((owner,) if owner is not None else ())),
        )
        return changed == 1

    def renew(self, owner: str, now: dt.datetime, lease_s: float) -> int:
        """Extend the leases of ``owner``'s running jobs and write its heartbeat; return the jobs renewed."""
        with self._write(serialise=False) as db:
            cursor = db.execute(
                "UPDATE jobs SET lease_until = ? WHERE owner = ? AND status IN ('running', 'queued')",
                (now.timestamp() + lease_s, owner),
            )
            renewed = cursor.rowcount
            db.execute(
                "INSERT INTO sidecar_instances (owner, heartbeat_at) VALUES (?, ?)"
                " ON CONFLICT (owner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                (owner, now.isoformat()),
            )
        return renewed

    def expire_leases(self, max_attempts: int, now: dt.datetime) -> int:
        """Re-queue running jobs whose lease ran out or whose owner is gone; fail those out of attempts.

        Each row is changed only if its owner and lease are still what was read, so a lease
        renewed meanwhile is left alone. Returns how many rows changed.
        """
        rows = self._rows("SELECT id, owner, lease_until, attempts FROM jobs WHERE status = 'running'")
        stamp = now.timestamp()
        stale = [r for r in rows if r[2] is None or float(r[2]) < stamp or not owner_alive(r[1])]
        if not stale:
            return 0
        gave_up = json.dumps({"message": f"the sidecar stopped during this job {max_attempts} times; not retried"})
        same = "IS" if self.dialect == "sqlite" else "IS NOT DISTINCT FROM"  # NULL-safe equality
        where = f"WHERE id = ? AND status = 'running' AND owner {same} ? AND lease_until {same} ?"
        changed = 0
        with self._write(serialise=False) as db:
            for job_id, owner, lease, attempts in stale:
                if int(attempts) >= max_attempts:
                    cursor = db.execute(
                        f"UPDATE jobs SET status = 'failed', finished_at = ?, error = ?, lease_until = NULL {where}",  # noqa: S608
                        (now.isoformat(), gave_up, job_id, owner, lease),
                    )
                else:
                    cursor = db.execute(
                        f"UPDATE jobs SET status = 'queued', owner = NULL, lease_until = NULL {where}",  # noqa: S608
                        (job_id, owner, lease),
                    )
                changed += cursor.rowcount
        return changed

    def queued(self, limit: int = 10_000, *, owner: str | None = None, now: dt.datetime | None = None) -> list[str]:
        """Queued job ids, oldest first; with ``owner``, less those held for another live owner whose lease runs."""
        rows = self._rows(
            f"SELECT id, owner, lease_until FROM jobs WHERE status = 'queued' ORDER BY {self._order} LIMIT ?",  # noqa: S608
            (limit,),
        )
        stamp = (now or dt.datetime.now(dt.UTC)).timestamp()
        return [str(r[0]) for r in rows if owner is None or _free(owner, r[1], r[2], stamp)]

    def recover(self, max_attempts: int, now: dt.datetime, owner: str | None = None) -> list[str]:
        """Take back jobs dead or expired owners left running; return the queued job ids ``owner`` may run."""
        self.expire_leases(max_attempts, now)
        return self.queued(owner=owner, now=now)

    def ping(self) -> None:
        """Raise :class:`JobStoreError` if the database cannot answer."""
        self._rows("SELECT 1")


def _free(owner: str, held_by: object, lease: object, stamp: float) -> bool:
    """Whether ``owner`` may run a queued job held by ``held_by`` until ``lease`` (epoch seconds)."""
    if held_by is None or held_by == owner:
        return True
    return lease is None or float(str(lease)) < stamp or not owner_alive(str(held_by))


__all__ = [
    "IdempotencyKey",
    "JobRecord",
    "JobStatus",
    "JobStore",
    "JobStoreError",
    "KeyReused",
    "make_owner",
    "owner_alive",
]
