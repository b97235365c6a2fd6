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
have run, then uses its own connection.
Not handled here: what a result means (:mod:`.codec`, :mod:`.runner`).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from weightguard.catalogue.interface import UnitKind
from weightguard.errors import VerdictError
from weightguard.verdict.store import RolloutStore, sqlite_path

# SQLite's default limit on host parameters is 999 on old builds; stay well under it.
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
        """Open the cache in the database at ``url`` (``sqlite:///PATH``), creating it if needed.

        Raises:
            VerdictError: the database cannot be opened or migrated.
        """
        RolloutStore(url).close()  # runs the migrations, including the unit_results table
        self.policy_sha256 = policy_sha256
        self.version = version
        path = sqlite_path(url)
        try:
            self._conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            # A lost cache row only costs a re-analysis, so NORMAL durability is enough here.
            self._conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise VerdictError(f"cannot open the results cache {path}: {exc}") from exc

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def get_many(self, kind: UnitKind, keys: Iterable[str]) -> dict[str, CachedResult]:
        """Return the stored results among ``keys``.

        Raises:
            VerdictError: the database cannot be read.
        """
        query = (
            "SELECT r.sha256, r.size, r.result, s.summary FROM unit_results AS r LEFT JOIN unit_summaries AS s"
            " USING (sha256, policy_sha256, version, kind)"
            " WHERE r.policy_sha256 = ? AND r.version = ? AND r.kind = ? AND r.sha256 IN ({marks})"
            # A result that is not text was not written by this module: as if missing.
            " AND typeof(r.result) = 'text'"
        )
        found: dict[str, CachedResult] = {}
        try:
            for row in self._select_in(query, (self.policy_sha256, self.version, kind.value), keys):
                found[row[0]] = CachedResult(row[0], int(row[1]), row[2], row[3])
        except sqlite3.Error as exc:
            raise VerdictError(f"cannot read the results cache: {exc}") from exc
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
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO unit_results"
                    " (sha256, size, policy_sha256, version, kind, result, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                self._conn.executemany(
                    "INSERT OR REPLACE INTO unit_summaries (sha256, policy_sha256, version, kind, summary)"
                    " VALUES (?, ?, ?, ?, ?)",
                    summaries,
                )
            except BaseException:  # noqa: BLE001 - roll back on anything, then re-raise
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise VerdictError(f"cannot write the results cache: {exc}") from exc

    def get_digests(self, paths: Iterable[str]) -> dict[str, tuple[FileStamp, dict[str, str]]]:
        """The digests recorded for ``paths``, with the stamp each file had when it was hashed.

        Raises:
            VerdictError: the database cannot be read.
        """
        query = (
            "SELECT path, device, inode, size, mtime_ns, ctime_ns, digests FROM file_digests WHERE path IN ({marks})"
        )
        found: dict[str, tuple[FileStamp, dict[str, str]]] = {}
        try:
            for row in self._select_in(query, (), paths):
                digests = json.loads(row[6])
                if isinstance(digests, dict):
                    found[row[0]] = (FileStamp(*(int(v) for v in row[1:6])), digests)
        except (sqlite3.Error, ValueError) as exc:
            raise VerdictError(f"cannot read the results cache: {exc}") from exc
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
        try:
            with self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany("INSERT OR REPLACE INTO file_digests VALUES (?, ?, ?, ?, ?, ?, ?, ?)", values)
        except sqlite3.Error as exc:
            raise VerdictError(f"cannot write the results cache: {exc}") from exc

    def _select_in(self, query: str, params: tuple[object, ...], keys: Iterable[str]) -> Iterator[tuple[Any, ...]]:
        """The rows of ``query`` for each distinct key, its ``{marks}`` filled with one '?' per key.

        Keys go in batches of :data:`_BATCH` (SQLite limits the host parameters of a statement).

        Raises:
            sqlite3.Error: the database cannot be read.
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
