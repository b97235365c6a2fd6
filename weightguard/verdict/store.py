"""The rollout record: a SQLite or PostgreSQL database that several processes can share.

On SQLite, WAL mode and ``BEGIN IMMEDIATE`` serialise writers; on PostgreSQL a
transaction-scoped advisory lock does the same (:meth:`.database.Database.write`).
Every promotion is one transaction that re-reads the current stage, checks the
requirements and appends to the history, so a crash in the middle leaves the
previous state intact. History rows are append-only (triggers refuse UPDATE and
DELETE). Schema changes are numbered migrations (:mod:`.migrations`, one
numbering for both databases) recorded in ``schema_migrations``. The URL picks
the database: ``sqlite:///PATH`` or ``postgresql://USER@HOST:PORT/DB``.
Not handled here: what a promotion requires (:mod:`weightguard.verdict.stage`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from weightguard.errors import VerdictError
from weightguard.verdict import migrations
from weightguard.verdict.database import Database
from weightguard.verdict.stage import StageState

# The SQLite spelling; both tuples have the same length (see :mod:`.migrations`).
MIGRATIONS: tuple[str, ...] = migrations.SQLITE


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


class RolloutStore:
    """The rollout record in one SQLite file or one PostgreSQL database."""

    def __init__(self, url: str, *, first_stage: str = "quarantine") -> None:
        """Open (creating and migrating if needed) the database at ``url``.

        Raises:
            VerdictError: the database cannot be opened or migrated.
        """
        self.first_stage = first_stage
        self._conn = Database(url, label="rollout database")
        try:
            self._migrate()
        except VerdictError:
            self._conn.close()
            raise

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[Database]:
        # One writer at a time (BEGIN IMMEDIATE, or PostgreSQL's advisory lock): promoters never interleave.
        with self._conn.write() as db:
            yield db

    def _migrate(self) -> None:
        # Read first: a store that is up to date (every open but the first) takes no write lock,
        # so readers such as the dashboard never queue behind a promotion.
        scripts = migrations.SQLITE if self._conn.dialect == "sqlite" else migrations.POSTGRESQL
        if self._applied() >= set(range(1, len(scripts) + 1)):
            return
        with self._write() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT)")
            done = {int(row[0]) for row in db.execute("SELECT version FROM schema_migrations")}
            for version, script in enumerate(scripts, 1):
                if version in done:
                    continue
                if db.dialect == "sqlite":
                    for statement in _statements(script):
                        db.execute(statement)
                else:
                    db.script(script)  # DDL is transactional on PostgreSQL: all of it or none
                db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?)", (version, dt.datetime.now(dt.UTC).isoformat())
                )

    def _applied(self) -> set[int]:
        if not self._conn.table_exists("schema_migrations"):
            return set()  # a new database
        return {int(row[0]) for row in self._conn.execute("SELECT version FROM schema_migrations")}

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
                "INSERT INTO approvals VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (digest, stage, approver, now.isoformat()),
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
        db: Database,
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
