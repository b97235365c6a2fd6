"""The content-addressed results cache, kept in the rollout database's ``unit_results`` table.

A row holds the encoded result of one work unit, keyed by the content's
sha256 (a file) or the model key (a model), the policy's sha256, the
weightguard version and the unit kind: a file analysed under the same policy
and version is never analysed again, whichever model it belongs to. Results
are written as soon as each unit finishes, so an interrupted run resumes
where it stopped. Failed units are never stored (they run again next time).
A model's row has, in ``unit_summaries`` beside it, the part of its report a
catalogue summary shows. The tables are created by the rollout store's
migrations 3 and 5; this module opens the store once so that the migrations
have run, then uses its own connection (SQLite or PostgreSQL, as the URL says).
Not handled here: what a result means (:mod:`.codec`, :mod:`.runner`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from weightguard.catalogue.interface import UnitKind
from weightguard.errors import VerdictError
from weightguard.verdict.database import Database
from weightguard.verdict.store import RolloutStore

# SQLite's default limit on host parameters is 999 on old builds; stay well under it (PostgreSQL's is 65535).
_BATCH = 500


@dataclass(frozen=True, slots=True)
class FileStamp:
    """What the file system says about a file: any change to its bytes changes ``ctime_ns``.

    Only the kernel sets a file's ctime (to its clock, on every write or metadata change), so
    restoring it after an edit needs control of the clock itself.
    """

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int


@dataclass(frozen=True, slots=True)
class CachedResult:
    """One stored unit result.

    ``summary``: for a model unit, the part of its report a catalogue summary shows, as JSON
    (kept in the ``unit_summaries`` table beside the row); None for other units and for rows
    written without one.
    """

    key: str
    size: int
    payload: str
    summary: str | None = None


class ResultsCache:
    """Unit results for one policy digest and one weightguard version."""

    def __init__(self, url: str, *, policy_sha256: str, version: str) -> None:
        """Open the cache in the database at ``url`` (``sqlite:///PATH`` or ``postgresql://...``), creating it if needed.

        Raises:
            VerdictError: the database cannot be opened or migrated.
        """
        RolloutStore(url).close()  # runs the migrations, including the unit_results table
        self.policy_sha256 = policy_sha256
        self.version = version
        # A lost cache row only costs a re-analysis, so commits need not wait for the disk.
        self._conn = Database(url, label="results cache", durable=False)

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def get_many(self, kind: UnitKind, keys: Iterable[str]) -> dict[str, CachedResult]:
        """Return the stored results among ``keys``.

        Raises:
            VerdictError: the database cannot be read.
        """
        query = (
            "SELECT r.sha256, r.size, r.result, s.summary FROM unit_results AS r LEFT JOIN unit_summaries AS s"  # noqa: S608
            " USING (sha256, policy_sha256, version, kind)"
            " WHERE r.policy_sha256 = ? AND r.version = ? AND r.kind = ? AND r.sha256 IN ({marks})"
            # A result that is not text was not written by this module: as if missing (the
            # column is TEXT on PostgreSQL, so only SQLite can hold anything else).
            + (" AND typeof(r.result) = 'text'" if self._conn.dialect == "sqlite" else "")
        )
        found: dict[str, CachedResult] = {}
        for row in self._select_in(query, (self.policy_sha256, self.version, kind.value), keys):
            found[row[0]] = CachedResult(row[0], int(row[1]), row[2], row[3])
        return found

    def put_many(self, kind: UnitKind, results: Sequence[CachedResult]) -> None:
        """Store ``results`` in one transaction (a later result for the same key replaces it).

        Raises:
            VerdictError: the database cannot be written.
        """
        if not results:
            return
        now = dt.datetime.now(dt.UTC).isoformat()
        key = (self.policy_sha256, self.version, kind.value)
        rows = [(r.key, r.size, *key, r.payload, now) for r in results]
        summaries = [(r.key, *key, r.summary) for r in results if r.summary is not None]
        with self._conn.write(lock="cache") as db:
            db.executemany(
                "INSERT INTO unit_results (sha256, size, policy_sha256, version, kind, result, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sha256, policy_sha256, version, kind)"
                " DO UPDATE SET size = excluded.size, result = excluded.result, created_at = excluded.created_at",
                rows,
            )
            db.executemany(
                "INSERT INTO unit_summaries (sha256, policy_sha256, version, kind, summary) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (sha256, policy_sha256, version, kind) DO UPDATE SET summary = excluded.summary",
                summaries,
            )

    def get_digests(self, paths: Iterable[str]) -> dict[str, tuple[FileStamp, dict[str, str]]]:
        """The digests recorded for ``paths``, with the stamp each file had when it was hashed.

        Raises:
            VerdictError: the database cannot be read.
        """
        query = (
            "SELECT path, device, inode, size, mtime_ns, ctime_ns, digests FROM file_digests WHERE path IN ({marks})"
        )
        found: dict[str, tuple[FileStamp, dict[str, str]]] = {}
        for row in self._select_in(query, (), paths):
            try:
                digests = json.loads(row[6])
            except ValueError as exc:
                raise VerdictError(f"cannot read the results cache: {exc}") from exc
            if isinstance(digests, dict):
                found[row[0]] = (FileStamp(*(int(v) for v in row[1:6])), digests)
        return found

    def put_digests(self, rows: Mapping[str, tuple[FileStamp, Mapping[str, str]]]) -> None:
        """Record each path's digests with the stamp it had before it was read.

        Raises:
            VerdictError: the database cannot be written.
        """
        if not rows:
            return
        now = dt.datetime.now(dt.UTC).isoformat()
        values = [
            (path, st.device, st.inode, st.size, st.mtime_ns, st.ctime_ns, json.dumps(dict(d), sort_keys=True), now)
            for path, (st, d) in rows.items()
        ]
        with self._conn.write(lock="cache") as db:
            db.executemany(
                "INSERT INTO file_digests VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET"
                " device = excluded.device, inode = excluded.inode, size = excluded.size,"
                " mtime_ns = excluded.mtime_ns, ctime_ns = excluded.ctime_ns, digests = excluded.digests,"
                " recorded_at = excluded.recorded_at",
                values,
            )

    def _select_in(self, query: str, params: tuple[object, ...], keys: Iterable[str]) -> Iterator[tuple[Any, ...]]:
        """The rows of ``query`` for each distinct key, its ``{marks}`` filled with one '?' per key.

        Keys go in batches of :data:`_BATCH` (SQLite limits the host parameters of a statement).

        Raises:
            VerdictError: the database cannot be read.
        """
        wanted = list(dict.fromkeys(keys))
        for start in range(0, len(wanted), _BATCH):
            batch = wanted[start : start + _BATCH]
            statement = query.format(marks=",".join("?" * len(batch)))  # only '?' marks are interpolated
            yield from self._conn.execute(statement, (*params, *batch))

    def count(self, kind: UnitKind) -> int:
        """How many results of ``kind`` are stored for this policy and version."""
        row = self._conn.execute(
            "SELECT COUNT(*) FROM unit_results WHERE policy_sha256 = ? AND version = ? AND kind = ?",
            (self.policy_sha256, self.version, kind.value),
        ).fetchone()
        return int(row[0])
