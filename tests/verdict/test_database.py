"""The database layer: URLs pick SQLite or PostgreSQL, and both get the same schema from one migration numbering."""

from __future__ import annotations

from pathlib import Path

import pytest

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
