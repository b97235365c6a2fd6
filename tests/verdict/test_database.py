"""The database layer: URLs pick SQLite or PostgreSQL, and both get the same schema from one migration numbering."""

from __future__ import annotations

from pathlib import Path

import pytest
from postgres_support import PostgresServer

from weightguard.errors import VerdictError
from weightguard.verdict import migrations
from weightguard.verdict.database import Database, parse_url
from weightguard.verdict.store import RolloutStore


def test_a_url_names_its_database() -> None:
    assert parse_url("sqlite:///tmp/x.db").dialect == "sqlite"
    for url in ("postgresql://u@h:5432/db", "postgres://u@h/db", "postgresql+psycopg://u@h/db"):
        parsed = parse_url(url)
        assert parsed.dialect == "postgresql" and parsed.target.startswith("postgresql://u@h")
    with pytest.raises(VerdictError, match="unsupported database URL"):
        parse_url("mysql://h/db")
    with pytest.raises(VerdictError, match="names no file"):
        parse_url("sqlite:///")


def test_both_databases_have_one_migration_numbering() -> None:
    assert len(migrations.SQLITE) == len(migrations.POSTGRESQL)


def _columns(url: str) -> dict[str, set[str]]:
    db = Database(url)
    try:
        if db.dialect == "sqlite":
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            found = {t: {str(c[1]) for c in db.execute(f"PRAGMA table_info({t})")} for t in tables}
        else:
            found = {}
            for table, column in db.execute(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
            ):
                found.setdefault(str(table), set()).add(str(column))
    finally:
        db.close()
    return {t: c for t, c in found.items() if not t.startswith("sqlite_")}


def test_sqlite_and_postgresql_get_the_same_tables_and_columns(tmp_path: Path, postgres_url: str) -> None:
    from weightguard.sidecar.jobstore import JobStore  # noqa: PLC0415 - the job store adds its own tables

    sqlite_url = f"sqlite:///{tmp_path / 'wg.db'}"
    for url in (sqlite_url, postgres_url):
        RolloutStore(url).close()
        JobStore(url)
    on_sqlite, on_postgres = _columns(sqlite_url), _columns(postgres_url)
    # The one difference: PostgreSQL orders ties by an identity column where SQLite has its rowid.
    assert on_postgres["jobs"] - on_sqlite["jobs"] == {"seq"}
    on_postgres["jobs"].discard("seq")
    assert on_sqlite == on_postgres


def test_a_postgresql_url_without_a_server_is_a_clear_error() -> None:
    with pytest.raises(VerdictError, match="cannot connect to the rollout database"):
        RolloutStore("postgresql://weightguard@127.0.0.1:1/none?connect_timeout=2")


def _backends(admin_url: str, url: str) -> int:
    import psycopg  # noqa: PLC0415

    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (url.rsplit("/", 1)[1],)
        ).fetchone()
    return int(row[0]) if row else 0


def test_many_threads_share_a_few_connections_of_the_job_store(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    from weightguard.sidecar.jobstore import _POOL_SIZE, JobStore  # noqa: PLC0415

    store = JobStore(postgres_url)
    with ThreadPoolExecutor(40) as pool:  # as many as a sidecar's HTTP threads
        assert all(found is None for found in pool.map(lambda i: store.get(f"job-{i}"), range(400)))
    # Three replicas of 8 stay far below PostgreSQL's default max_connections of 100.
    assert _backends(postgres_server.url(), postgres_url) <= _POOL_SIZE


def test_a_connection_the_server_dropped_is_replaced(postgres_server: PostgresServer, postgres_url: str) -> None:
    import psycopg  # noqa: PLC0415

    from weightguard.verdict.database import DatabaseError, Pool  # noqa: PLC0415

    pool = Pool(postgres_url, size=1, label="test database")
    with pool.connection() as db:
        assert db.execute("SELECT 1").fetchone() == (1,)
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:  # as a server restart would
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (postgres_url.rsplit("/", 1)[1],),
        )
    with pytest.raises(DatabaseError), pool.connection() as db:
        db.execute("SELECT 1")  # the pooled connection is dead: a clear error, and it is dropped
    with pool.connection() as db:
        assert db.execute("SELECT 1").fetchone() == (1,)
