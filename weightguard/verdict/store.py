"""The rollout record: a SQLite database that several processes can share.

WAL mode and ``BEGIN IMMEDIATE`` serialise writers; every promotion is one
transaction that re-reads the current stage, checks the requirements and
appends to the history, so a crash in the middle leaves the previous state
intact. History rows are append-only (triggers refuse UPDATE and DELETE).
Schema changes are numbered migrations recorded in ``schema_migrations``.
The URL is configurable (``sqlite:///path``); other back ends such as
PostgreSQL are refused with a clear error until they are implemented.
Not handled here: what a promotion requires (:mod:`weightguard.verdict.stage`).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from weightguard.errors import VerdictError
from weightguard.verdict.stage import StageState

_UNIT_SUMMARIES = """
    CREATE TABLE IF NOT EXISTS unit_summaries (
        sha256 TEXT NOT NULL,
        policy_sha256 TEXT NOT NULL,
        version TEXT NOT NULL,
        kind TEXT NOT NULL,
        summary TEXT NOT NULL,
        PRIMARY KEY (sha256, policy_sha256, version, kind)
    );
"""

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE models (
        digest TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        stage TEXT NOT NULL,
        entered_at TEXT NOT NULL,
        first_seen TEXT NOT NULL
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        digest TEXT NOT NULL,
        action TEXT NOT NULL,
        from_stage TEXT,
        to_stage TEXT NOT NULL,
        actor TEXT NOT NULL,
        at TEXT NOT NULL,
        attestation_sha256 TEXT,
        reason TEXT NOT NULL DEFAULT '',
        details TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_digest ON events(digest, id);
    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'history is append-only'); END;
    CREATE TRIGGER events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'history is append-only'); END;
    CREATE TABLE approvals (
        digest TEXT NOT NULL,
        stage TEXT NOT NULL,
        approver TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (digest, stage, approver)
    );
    """,
    # 2: sidecar jobs, persisted before 202 is answered so a restart loses nothing.
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        policy TEXT,
        request TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        submitted_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        report TEXT,
        error TEXT
    );
    CREATE INDEX jobs_status ON jobs(status, submitted_at);
    """,
    # 3: content-addressed results of per-file work units (verify-many): one analysis per
    # (file sha256, policy digest, weightguard version), whatever model the file belongs to.
    """
    CREATE TABLE unit_results (
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        policy_sha256 TEXT NOT NULL,
        version TEXT NOT NULL,
        kind TEXT NOT NULL,
        result TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (sha256, policy_sha256, version, kind)
    );
    """,
    # 4: verify-many --trust-file-metadata: a file's digests with the metadata it had when hashed.
    """
    CREATE TABLE file_digests (
        path TEXT PRIMARY KEY,
        device INTEGER NOT NULL,
        inode INTEGER NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        ctime_ns INTEGER NOT NULL,
        digests TEXT NOT NULL,
        recorded_at TEXT NOT NULL
    );
    """,
    # 5: beside a model unit's result, the part of its report a catalogue summary shows, so that
    # a warm verify-many run validates ~0.5 KB per model instead of the whole report. A table of
    # its own: unit_results keeps its columns, so an older weightguard sharing the database can
    # still write its rows.
    _UNIT_SUMMARIES,
    # 6: the same again, for databases whose migration 5 was a development build's (a column
    # added to unit_results, since replaced by the table above).
    _UNIT_SUMMARIES,
)


class PromotionRefused(VerdictError):  # noqa: N818 - a verdict about the request, like SignatureRejected
    """A promotion's requirements do not hold (exit 1: a verdict, not a failure to run)."""

    exit_code = 1


@dataclass(frozen=True, slots=True)
class Event:
    """One row of a model's history."""

    id: int
    digest: str
    action: str
    from_stage: str | None
    to_stage: str
    actor: str
    at: dt.datetime
    attestation_sha256: str | None
    reason: str
    details: dict[str, str]


def sqlite_path(url: str) -> Path:
    """Return the file of a ``sqlite:///`` URL.

    Raises:
        VerdictError: the URL names another database or is malformed.
    """
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise VerdictError(
            f"unsupported rollout database URL {url!r}", hint="only sqlite:///PATH is implemented at present"
        )
    path = url[len(prefix) :]
    if not path:
        raise VerdictError(f"rollout database URL {url!r} names no file")
    return Path(path).expanduser()


class RolloutStore:
    """The rollout record in one SQLite file."""

    def __init__(self, url: str, *, first_stage: str = "quarantine") -> None:
        """Open (creating and migrating if needed) the database at ``url``."""
        self.path = sqlite_path(url)
        self.first_stage = first_stage
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.Error as exc:
            raise VerdictError(f"cannot open rollout database {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front, so two promoters never interleave.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:  # noqa: BLE001 - roll back on anything, then re-raise
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")

    def _migrate(self) -> None:
        # Read first: a store that is up to date (every open but the first) takes no write lock,
        # so readers such as the dashboard never queue behind a promotion.
        if self._applied() >= set(range(1, len(MIGRATIONS) + 1)):
            return
        with self._write() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT)")
            done = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
            for version, script in enumerate(MIGRATIONS, 1):
                if version in done:
                    continue
                for statement in _statements(script):
                    db.execute(statement)
                db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?)", (version, dt.datetime.now(dt.UTC).isoformat())
                )

    def _applied(self) -> set[int]:
        try:
            return {int(row[0]) for row in self._conn.execute("SELECT version FROM schema_migrations")}
        except sqlite3.OperationalError:  # no such table yet: a new database
            return set()

    @property
    def schema_version(self) -> int:
        """The highest migration applied."""
        row = self._conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def state(self, digest: str) -> StageState | None:
        """Return the current stage of ``digest``, or None if it was never recorded."""
        row = self._conn.execute("SELECT digest, stage, entered_at FROM models WHERE digest = ?", (digest,)).fetchone()
        return None if row is None else StageState(row[0], row[1], dt.datetime.fromisoformat(row[2]))

    def register(self, digest: str, name: str, actor: str, now: dt.datetime) -> StageState:
        """Record ``digest`` in the first stage if it is new; return its state."""
        with self._write() as db:
            row = db.execute("SELECT stage, entered_at FROM models WHERE digest = ?", (digest,)).fetchone()
            if row is not None:
                return StageState(digest, row[0], dt.datetime.fromisoformat(row[1]))
            db.execute(
                "INSERT INTO models VALUES (?, ?, ?, ?, ?)",
                (digest, name, self.first_stage, now.isoformat(), now.isoformat()),
            )
            self._event(db, digest, "register", None, self.first_stage, actor, now, None, "", {})
        return StageState(digest, self.first_stage, now)

    def promote(
        self,
        digest: str,
        target: str,
        *,
        actor: str,
        now: dt.datetime,
        check: Callable[[StageState], list[str]],
        attestation_sha256: str | None = None,
        details: dict[str, str] | None = None,
    ) -> StageState:
        """Move ``digest`` to ``target`` if ``check`` finds no problem, in one transaction.

        Raises:
            VerdictError: the model is unknown or the promotion is refused (with every reason).
        """
        with self._write() as db:
            row = db.execute("SELECT stage, entered_at FROM models WHERE digest = ?", (digest,)).fetchone()
            if row is None:
                raise VerdictError(f"{digest} is not in the rollout record", hint="run `weightguard verify` first")
            state = StageState(digest, row[0], dt.datetime.fromisoformat(row[1]))
            problems = check(state)
            if problems:
                raise PromotionRefused(f"promotion of {digest} to {target} refused: " + "; ".join(problems))
            db.execute(
                "UPDATE models SET stage = ?, entered_at = ? WHERE digest = ?", (target, now.isoformat(), digest)
            )
            self._event(db, digest, "promote", state.stage, target, actor, now, attestation_sha256, "", details or {})
        return StageState(digest, target, now)

    def revoke(self, digest: str, *, reason: str, actor: str, now: dt.datetime) -> StageState:
        """Send ``digest`` back to the first stage (a new finding, a revoked signer)."""
        with self._write() as db:
            row = db.execute("SELECT stage FROM models WHERE digest = ?", (digest,)).fetchone()
            if row is None:
                raise VerdictError(f"{digest} is not in the rollout record")
            db.execute(
                "UPDATE models SET stage = ?, entered_at = ? WHERE digest = ?",
                (self.first_stage, now.isoformat(), digest),
            )
            db.execute("DELETE FROM approvals WHERE digest = ?", (digest,))
            self._event(db, digest, "revoke", row[0], self.first_stage, actor, now, None, reason, {})
        return StageState(digest, self.first_stage, now)

    def approve(self, digest: str, stage: str, approver: str, now: dt.datetime) -> None:
        """Record ``approver``'s approval of promoting ``digest`` into ``stage`` (idempotent)."""
        with self._write() as db:
            if db.execute("SELECT 1 FROM models WHERE digest = ?", (digest,)).fetchone() is None:
                raise VerdictError(f"{digest} is not in the rollout record")
            db.execute(
                "INSERT OR IGNORE INTO approvals VALUES (?, ?, ?, ?)", (digest, stage, approver, now.isoformat())
            )
            row = db.execute("SELECT stage FROM models WHERE digest = ?", (digest,)).fetchone()
            self._event(db, digest, "approve", row[0], row[0], approver, now, None, f"approves {stage}", {})

    def approvers(self, digest: str, stage: str) -> frozenset[str]:
        """Who approved promoting ``digest`` into ``stage``."""
        rows = self._conn.execute("SELECT approver FROM approvals WHERE digest = ? AND stage = ?", (digest, stage))
        return frozenset(r[0] for r in rows)

    def history(self, digest: str) -> list[Event]:
        """Every event of ``digest``, oldest first."""
        rows = self._conn.execute(
            "SELECT id, digest, action, from_stage, to_stage, actor, at, attestation_sha256, reason, details"
            " FROM events WHERE digest = ? ORDER BY id",
            (digest,),
        )
        return [
            Event(r[0], r[1], r[2], r[3], r[4], r[5], dt.datetime.fromisoformat(r[6]), r[7], r[8], json.loads(r[9]))
            for r in rows
        ]

    def board(self) -> list[tuple[str, StageState]]:
        """Every recorded model with its name and state."""
        rows = self._conn.execute("SELECT name, digest, stage, entered_at FROM models ORDER BY name, digest")
        return [(r[0], StageState(r[1], r[2], dt.datetime.fromisoformat(r[3]))) for r in rows]

    @staticmethod
    def _event(
        db: sqlite3.Connection,
        digest: str,
        action: str,
        from_stage: str | None,
        to_stage: str,
        actor: str,
        now: dt.datetime,
        attestation_sha256: str | None,
        reason: str,
        details: dict[str, str],
    ) -> None:
        db.execute(
            "INSERT INTO events (digest, action, from_stage, to_stage, actor, at, attestation_sha256, reason, details)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                digest,
                action,
                from_stage,
                to_stage,
                actor,
                now.isoformat(),
                attestation_sha256,
                reason,
                json.dumps(details),
            ),
        )


def _statements(script: str) -> list[str]:
    # Split a migration into statements, keeping trigger bodies (BEGIN ... END;) whole.
    statements: list[str] = []
    current = ""
    for line in script.strip().splitlines():
        current += line + "\n"
        stripped = current.strip()
        if stripped.endswith(";") and (
            not stripped.upper().startswith("CREATE TRIGGER") or stripped.upper().endswith("END;")
        ):
            statements.append(stripped)
            current = ""
    return statements
