"""One database connection for the rollout record, the job queue and the results cache: SQLite or PostgreSQL.

A database URL picks the back end: ``sqlite:///PATH`` (the embedded default, one
file several processes share on one host) or ``postgresql://USER@HOST:PORT/DB``
(also ``postgres://`` and ``postgresql+psycopg://``; several sidecar replicas on
several hosts). Callers write one SQL text with ``?`` placeholders in the subset
both databases understand (``ON CONFLICT ... DO NOTHING/UPDATE``, ``IS NOT
DISTINCT FROM``) and branch on :attr:`Database.dialect` only where they differ
(``rowid`` against an identity column, ``FOR UPDATE SKIP LOCKED``).

Why psycopg 3 and not SQLAlchemy Core: the three stores already hold small,
explicit SQL whose locking is the point (``BEGIN IMMEDIATE``, conditional
UPDATEs, ``FOR UPDATE SKIP LOCKED``, advisory locks); SQLAlchemy would add a
large dependency and an expression layer that passes those clauses through
anyway, while psycopg 3 is one well-kept driver (binary wheels, typed, server
side parameters) behind the optional ``postgres`` extra. SQLite needs nothing
beyond the standard library, so the default install is unchanged.

Transactions: :meth:`Database.write` serialises writers on both databases, as
SQLite's ``BEGIN IMMEDIATE`` does, by taking one transaction-scoped advisory
lock on PostgreSQL; :meth:`Database.write` with ``serialise=False`` is a plain
transaction for work that locks rows itself (claiming jobs with ``SKIP LOCKED``).
Every driver error is raised as :class:`DatabaseError` (the job store's
``JobStoreError`` is the same class), with the database named in its message.
:class:`Pool` lends a few connections to many threads (a sidecar's HTTP threads
would otherwise each hold a PostgreSQL connection, and three replicas would pass
the server's default limit of 100), and drops a connection that broke.
Not handled here: the schema (:mod:`.migrations`) or what the tables mean.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from weightguard.errors import VerdictError

if TYPE_CHECKING:
    import psycopg

Dialect = Literal["sqlite", "postgresql"]

# pg_advisory_xact_lock keys for "one writer at a time" (SQLite's BEGIN IMMEDIATE), one per store so
# that a results-cache batch never holds up a job submission; any constants work as long as every
# weightguard process uses the same ones (ASCII "wgwrite" and a digit).
WriterLock = Literal["rollout", "jobs", "cache"]
_WRITER_LOCKS: dict[str, int] = {"rollout": 0x7767777269746531, "jobs": 0x7767777269746532, "cache": 0x7767777269746533}
_PG_PREFIXES = ("postgresql://", "postgres://", "postgresql+psycopg://")


class DatabaseError(VerdictError):
    """The database could not be reached, read or written."""


@dataclass(frozen=True, slots=True)
class DatabaseURL:
    """A parsed database URL: the dialect and what to connect to (a file path, or a libpq URL)."""

    dialect: Dialect
    target: str

    @property
    def path(self) -> Path:
        """The SQLite file (only for the sqlite dialect)."""
        assert self.dialect == "sqlite"
        return Path(self.target)


def parse_url(url: str) -> DatabaseURL:
    """Parse ``sqlite:///PATH`` or ``postgresql://...``.

    Raises:
        VerdictError: the URL names another database or is malformed.
    """
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path:
            raise VerdictError(f"database URL {url!r} names no file")
        return DatabaseURL("sqlite", str(Path(path).expanduser()))
    for prefix in _PG_PREFIXES:
        if url.startswith(prefix):
            # libpq understands postgresql:// only; the SQLAlchemy-style driver suffix is dropped.
            return DatabaseURL("postgresql", "postgresql://" + url[len(prefix) :])
    raise VerdictError(
        f"unsupported database URL {url!r}", hint="use sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE"
    )


class Rows(Protocol):
    """What a statement returns: the part of the DB-API cursor both drivers share."""

    @property
    def rowcount(self) -> int:
        """Rows changed by an UPDATE/INSERT/DELETE."""
        ...

    def fetchone(self) -> Any:  # noqa: ANN401 - a driver row (a tuple)
        """The next row, or None."""
        ...

    def fetchall(self) -> list[Any]:
        """Every remaining row."""
        ...

    def __iter__(self) -> Iterator[Any]:
        """The rows, one by one."""
        ...


def _pg_sql(sql: str) -> str:
    # psycopg's placeholders are %s, so a literal % must be doubled; none of our SQL quotes a '?'.
    return sql.replace("%", "%%").replace("?", "%s")


class Database:
    """One connection (not shared between threads) in autocommit mode, with explicit transactions."""

    def __init__(
        self,
        url: str,
        *,
        label: str = "database",
        durable: bool = True,
        read_only: bool = False,
    ) -> None:
        """Connect to ``url``.

        Args:
            url: ``sqlite:///PATH`` or ``postgresql://...``.
            label: names the database in error messages.
            durable: False where a lost commit costs only a re-computation (the results cache).
            read_only: open for reading only (the dashboard).

        Raises:
            DatabaseError: the database cannot be reached or the driver is missing.
        """
        self.url = parse_url(url)
        self.dialect: Dialect = self.url.dialect
        self._label = label
        self._sqlite: sqlite3.Connection | None = None
        self._pg: psycopg.Connection[Any] | None = None
        if self.dialect == "sqlite":
            self._open_sqlite(durable=durable, read_only=read_only)
        else:
            self._open_postgres(durable=durable, read_only=read_only)

    def _open_sqlite(self, *, durable: bool, read_only: bool) -> None:
        path = self.url.path
        try:
            if read_only:
                self._sqlite = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            # A pool hands a connection to one thread at a time, so it may move between threads.
            self._sqlite = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._sqlite.execute("PRAGMA journal_mode=WAL")
            # FULL: a 202 must mean the row is on disk; NORMAL where a lost row costs a re-analysis.
            self._sqlite.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._sqlite.execute("PRAGMA foreign_keys=ON")
        except (sqlite3.Error, OSError) as exc:
            raise DatabaseError(f"cannot open the {self._label} {path}: {exc}") from exc

    def _open_postgres(self, *, durable: bool, read_only: bool) -> None:
        try:
            import psycopg  # noqa: PLC0415 - the optional 'postgres' extra
        except ImportError as exc:
            raise DatabaseError(
                "a postgresql:// database needs the psycopg driver", hint="pip install 'weightguard[postgres]'"
            ) from exc
        try:
            self._pg = psycopg.connect(self.url.target, autocommit=True, connect_timeout=10)
            if not durable:
                self._pg.execute("SET synchronous_commit = off")
            if read_only:
                self._pg.execute("SET default_transaction_read_only = on")
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot connect to the {self._label} (PostgreSQL): {exc}") from exc

    @property
    def _driver_error(self) -> tuple[type[Exception], ...]:
        if self._pg is None:
            return (sqlite3.Error,)
        import psycopg  # noqa: PLC0415 - imported by _open_postgres already

        return (psycopg.Error,)

    @property
    def usable(self) -> bool:
        """False once the connection broke (the server restarted, the network dropped it)."""
        return self._pg is None or not (self._pg.closed or self._pg.broken)

    def close(self) -> None:
        """Close the connection."""
        if self._sqlite is not None:
            self._sqlite.close()
        if self._pg is not None:
            self._pg.close()

    def execute(self, sql: str, args: Sequence[object] = ()) -> Rows:
        """Run one statement (``?`` placeholders) and return its rows.

        Raises:
            DatabaseError: the database refused it.
        """
        try:
            if self._pg is not None:
                return self._pg.execute(_pg_sql(sql), tuple(args))
            assert self._sqlite is not None
            return self._sqlite.execute(sql, tuple(args))
        except self._driver_error as exc:
            raise DatabaseError(f"{self._label} error: {exc}") from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        """Run one statement once per row of parameters.

        Raises:
            DatabaseError: the database refused it.
        """
        try:
            if self._pg is not None:
                with self._pg.cursor() as cursor:
                    cursor.executemany(_pg_sql(sql), [tuple(r) for r in rows])
                return
            assert self._sqlite is not None
            self._sqlite.executemany(sql, [tuple(r) for r in rows])
        except self._driver_error as exc:
            raise DatabaseError(f"{self._label} error: {exc}") from exc

    def script(self, sql: str) -> None:
        """Run several statements without parameters (a migration on PostgreSQL).

        Raises:
            DatabaseError: the database refused it.
        """
        try:
            if self._pg is not None:
                self._pg.execute(sql.encode())  # bytes: taken as is, with no placeholders
                return
            assert self._sqlite is not None
            self._sqlite.execute(sql)
        except self._driver_error as exc:
            raise DatabaseError(f"{self._label} error: {exc}") from exc

    @contextmanager
    def write(self, *, serialise: bool = True, lock: WriterLock = "rollout") -> Iterator[Database]:
        """A transaction: committed when the block ends, rolled back if it raises.

        With ``serialise`` (the default) no other writer that also serialises runs meanwhile:
        SQLite's ``BEGIN IMMEDIATE`` (the whole file), on PostgreSQL the transaction-scoped
        advisory lock named ``lock`` (one per store). Without it PostgreSQL runs a plain READ
        COMMITTED transaction, for work that locks its own rows.

        Raises:
            DatabaseError: the database failed; nothing was committed.
        """
        if self._pg is not None:
            import psycopg  # noqa: PLC0415 - imported by _open_postgres already

            try:
                with self._pg.transaction():
                    if serialise:
                        self._pg.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITER_LOCKS[lock],))
                    yield self
            except psycopg.Error as exc:
                raise DatabaseError(f"{self._label} error: {exc}") from exc
            return
        assert self._sqlite is not None
        try:
            self._sqlite.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise DatabaseError(f"{self._label} error: {exc}") from exc
        try:
            yield self
        except BaseException:  # noqa: BLE001 - roll back on anything, then re-raise
            if self._sqlite.in_transaction:
                self._sqlite.execute("ROLLBACK")
            raise
        try:
            self._sqlite.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._sqlite.in_transaction:
                self._sqlite.execute("ROLLBACK")
            raise DatabaseError(f"{self._label} error: {exc}") from exc

    def table_exists(self, table: str) -> bool:
        """Whether ``table`` exists (a new database has none)."""
        if self.dialect == "sqlite":
            sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        else:
            sql = "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?"
        return self.execute(sql, (table,)).fetchone() is not None


class Pool:
    """At most ``size`` connections to one database, lent to one thread at a time (LIFO: warm ones first)."""

    def __init__(self, url: str, *, size: int, label: str, wait_s: float = 30.0) -> None:
        """Prepare the pool; connections are opened when first needed.

        Raises:
            DatabaseError: the URL is malformed.
        """
        self.dialect = parse_url(url).dialect
        self._url, self._label, self._wait_s = url, label, wait_s
        self._idle: queue.LifoQueue[Database] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    @contextmanager
    def connection(self) -> Iterator[Database]:
        """Borrow a connection for the block (never nest two borrows in one thread).

        Raises:
            DatabaseError: none came free in time, or a new one cannot be opened.
        """
        if not self._slots.acquire(timeout=self._wait_s):
            raise DatabaseError(f"no {self._label} connection came free in {self._wait_s:g} s")
        db: Database | None = None
        try:
            try:
                db = self._idle.get_nowait()
            except queue.Empty:
                db = Database(self._url, label=self._label)
            yield db
        finally:
            if db is not None:
                if db.usable:
                    self._idle.put(db)
                else:
                    db.close()
            self._slots.release()


__all__ = [
    "Database",
    "DatabaseError",
    "DatabaseURL",
    "Dialect",
    "Pool",
    "Rows",
    "WriterLock",
    "parse_url",
]
