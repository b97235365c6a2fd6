"""The rollout record: SQLite or PostgreSQL, append-only history, atomic promotions, safe under concurrency.

Tests taking ``database_url`` (or the ``store`` fixture) run on both databases.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import multiprocessing
import sqlite3
import time
from pathlib import Path

import pytest

from weightguard.errors import VerdictError
from weightguard.verdict.database import Database
from weightguard.verdict.store import MIGRATIONS, RolloutStore

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def store(database_url: str) -> RolloutStore:
    return RolloutStore(database_url)


def test_a_new_model_enters_quarantine_once(store: RolloutStore) -> None:
    assert store.register("d1", "m", "ci", NOW).stage == "quarantine"
    assert store.register("d1", "m", "ci", NOW + dt.timedelta(hours=1)).entered_at == NOW
    assert [e.action for e in store.history("d1")] == ["register"]


def test_promotion_records_an_event_and_the_new_stage(store: RolloutStore) -> None:
    store.register("d1", "m", "ci", NOW)
    store.promote("d1", "staging", actor="ci", now=NOW, check=lambda s: [], attestation_sha256="aa")
    assert store.state("d1").stage == "staging"
    last = store.history("d1")[-1]
    assert (last.action, last.from_stage, last.to_stage, last.attestation_sha256) == ("promote", "quarantine", "staging", "aa")


def test_a_refused_promotion_changes_nothing(store: RolloutStore) -> None:
    store.register("d1", "m", "ci", NOW)
    with pytest.raises(VerdictError, match="no attestation"):
        store.promote("d1", "staging", actor="ci", now=NOW, check=lambda s: ["no attestation"])
    assert store.state("d1").stage == "quarantine"
    assert len(store.history("d1")) == 1


def test_a_crash_inside_a_promotion_leaves_the_previous_state(store: RolloutStore) -> None:
    store.register("d1", "m", "ci", NOW)

    def crash(_state):
        raise KeyboardInterrupt  # the process dies between reading and writing

    with pytest.raises(KeyboardInterrupt):
        store.promote("d1", "staging", actor="ci", now=NOW, check=crash)
    assert store.state("d1").stage == "quarantine"
    assert store.promote("d1", "staging", actor="ci", now=NOW, check=lambda s: []).stage == "staging"


def test_history_is_append_only(store: RolloutStore, database_url: str) -> None:
    store.register("d1", "m", "ci", NOW)
    raw = Database(database_url)  # another client, outside the store's API
    with pytest.raises(VerdictError, match="append-only"):
        raw.execute("DELETE FROM events")
    with pytest.raises(VerdictError, match="append-only"):
        raw.execute("UPDATE events SET actor = 'mallory'")
    raw.close()


def test_revoke_sends_the_model_back_to_quarantine_and_clears_approvals(store: RolloutStore) -> None:
    store.register("d1", "m", "ci", NOW)
    store.promote("d1", "staging", actor="ci", now=NOW, check=lambda s: [])
    store.approve("d1", "canary", "alice", NOW)
    store.revoke("d1", reason="signer key revoked", actor="sec", now=NOW)
    assert store.state("d1").stage == "quarantine"
    assert store.approvers("d1", "canary") == frozenset()
    assert store.history("d1")[-1].reason == "signer key revoked"


def test_migrations_are_recorded_and_reopening_is_idempotent(database_url: str) -> None:
    url = database_url
    first = RolloutStore(url)
    first.register("d1", "m", "ci", NOW)
    first.close()
    again = RolloutStore(url)
    assert again.schema_version == len(MIGRATIONS)
    assert again.state("d1") is not None


def test_opening_an_up_to_date_store_takes_no_write_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    RolloutStore(url).close()
    writer = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a promotion in progress elsewhere holds the write lock
    try:
        started = time.monotonic()
        reader = RolloutStore(url)  # would wait (up to its 30 s timeout) if it asked for the lock
        assert time.monotonic() - started < 5
        assert reader.schema_version == len(MIGRATIONS)
        reader.close()
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_store_missing_later_migrations_gets_them_on_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    RolloutStore(url).close()
    with sqlite3.connect(tmp_path / "r.db") as raw:  # as a database written by an older weightguard
        raw.execute("DROP TABLE unit_summaries")
        raw.execute("DELETE FROM schema_migrations WHERE version = ?", (len(MIGRATIONS),))
    again = RolloutStore(url)
    assert again.schema_version == len(MIGRATIONS)
    again.close()
    with sqlite3.connect(tmp_path / "r.db") as raw:
        assert raw.execute("SELECT COUNT(*) FROM unit_summaries").fetchone() == (0,)


def test_a_database_from_the_development_build_of_migration_5_gets_the_summaries_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    RolloutStore(url).close()
    with sqlite3.connect(tmp_path / "r.db") as raw:  # that build added a column instead of the table
        raw.execute("DROP TABLE unit_summaries")
        raw.execute("ALTER TABLE unit_results ADD COLUMN summary TEXT")
        raw.execute("DELETE FROM schema_migrations WHERE version > 5")
    RolloutStore(url).close()
    with sqlite3.connect(tmp_path / "r.db") as raw:
        assert raw.execute("SELECT COUNT(*) FROM unit_summaries").fetchone() == (0,)


def test_other_databases_are_refused_clearly() -> None:
    with pytest.raises(VerdictError, match="unsupported database URL"):
        RolloutStore("mysql://db/weightguard")


def _promote_many(url: str, worker: int, count: int) -> None:
    store = RolloutStore(url)
    for i in range(count):
        digest = f"d{i}"
        store.register(digest, "m", f"w{worker}", NOW)
        with contextlib.suppress(VerdictError):  # the other process got there first: exactly one promotion wins
            store.promote(
                digest, "staging", actor=f"w{worker}", now=NOW,
                check=lambda s: [] if s.stage == "quarantine" else [f"already in {s.stage}"],
            )


def test_two_processes_promoting_at_once_never_corrupt_the_record(database_url: str) -> None:
    url = database_url
    RolloutStore(url).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_promote_many, args=(url, w, 40)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = RolloutStore(url)
    if store._conn.dialect == "sqlite":
        assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for i in range(40):
        events = store.history(f"d{i}")
        assert [e.action for e in events] == ["register", "promote"], events
        assert store.state(f"d{i}").stage == "staging"
