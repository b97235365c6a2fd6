"""Recent verifications read from the sidecar's ``jobs`` table (rollout database migration 2).

Read-only: the connection is opened with SQLite's ``mode=ro`` (on PostgreSQL,
with ``default_transaction_read_only``), so the dashboard can never change a job. A stored report that does not parse is
shown as an error on its row, not raised. Not handled here: submitting or
running jobs (:mod:`weightguard.sidecar.jobstore`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

from pydantic import ValidationError

from weightguard.report.model import Report
from weightguard.sidecar_dashboard.interface import VerificationEntry
from weightguard.verdict.database import Database

_COLUMNS = "id, target, status, submitted_at, finished_at, report, error"


def _when(value: object) -> dt.datetime | None:
    return dt.datetime.fromisoformat(str(value)) if value else None


def _error_text(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        message = json.loads(raw).get("message")
    except (ValueError, AttributeError):
        return raw
    return str(message) if message else raw


def _entry(row: tuple[object, ...]) -> VerificationEntry:
    report = None
    error = _error_text(None if row[6] is None else str(row[6]))
    if row[5] is not None:
        try:
            report = Report.model_validate_json(str(row[5]))
        except ValidationError:
            error = "the stored report does not match this version's report schema"
    submitted = _when(row[3]) or dt.datetime.min.replace(tzinfo=dt.UTC)
    return VerificationEntry(str(row[0]), str(row[1]), str(row[2]), submitted, _when(row[4]), report, error)


class JobsTableVerifications:
    """:class:`RecentVerifications` over the jobs table of a rollout database (SQLite or PostgreSQL)."""

    def __init__(self, url: str) -> None:
        """Open ``url`` read-only.

        Raises:
            VerdictError: the URL is not a database URL or the database cannot be opened.
        """
        self._conn = Database(url, label="jobs database", read_only=True)

    def _rows(self, sql: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
        return [tuple(r) for r in self._conn.execute(sql, args).fetchall()]

    def recent(self, limit: int) -> Sequence[VerificationEntry]:
        """At most ``limit`` jobs, newest first."""
        rows = self._rows(f"SELECT {_COLUMNS} FROM jobs ORDER BY submitted_at DESC, id LIMIT ?", (limit,))  # noqa: S608 - constant columns
        return [_entry(r) for r in rows]

    def of_digest(self, digest: str, limit: int) -> Sequence[VerificationEntry]:
        """At most ``limit`` jobs whose report names the root digest ``digest``, newest first.

        The database picks the rows (SQLite's ``json_extract``; on PostgreSQL, reports that
        contain the digest at all), so only their reports are decoded, however long the table;
        a row whose report no longer validates is left out, as it names no digest. The limit
        is applied after that check, so rows left out (or, on PostgreSQL, reports that merely
        mention the digest) never take a page's places.
        """
        if self._conn.dialect == "sqlite":
            where = "CASE WHEN json_valid(report) THEN json_extract(report, '$.subject.root_digest') END = ?"
        else:  # PostgreSQL 15 has no IS JSON test, and a cast of a bad report would fail the query
            where = "strpos(report, ?) > 0"
        rows = self._rows(f"SELECT {_COLUMNS} FROM jobs WHERE {where} ORDER BY submitted_at DESC, id", (digest,))  # noqa: S608 - constant columns
        return [e for e in map(_entry, rows) if e.digest == digest][:limit]

    def get(self, verification_id: str) -> VerificationEntry | None:
        """One job, or None."""
        rows = self._rows(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (verification_id,))  # noqa: S608 - constant columns
        return _entry(rows[0]) if rows else None

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


__all__ = ["JobsTableVerifications"]
