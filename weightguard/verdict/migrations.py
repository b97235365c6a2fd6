"""The schema of the rollout database, as numbered migrations for SQLite and for PostgreSQL.

One schema, two spellings: migration N creates the same tables and columns on both
databases, so a version number means the same thing whichever back end recorded it
(``schema_migrations``). The PostgreSQL spelling differs only where the databases do:
identity columns for ``AUTOINCREMENT``, a PL/pgSQL function behind the append-only
triggers, ``DOUBLE PRECISION`` for ``REAL``. The jobs table on PostgreSQL is created
with the lease columns (``owner``, ``lease_until``, which the job store adds to older
SQLite files itself) and ``seq``, an identity column that keeps "oldest first, ties in
insertion order" where SQLite uses its ``rowid``.
Not handled here: applying them (:class:`weightguard.verdict.store.RolloutStore`).
"""

from __future__ import annotations

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

SQLITE: tuple[str, ...] = (
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


POSTGRESQL: tuple[str, ...] = (
    """
    CREATE TABLE models (
        digest TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        stage TEXT NOT NULL,
        entered_at TEXT NOT NULL,
        first_seen TEXT NOT NULL
    );
    CREATE TABLE events (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
    CREATE FUNCTION weightguard_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'history is append-only'; END $$;
    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        FOR EACH ROW EXECUTE FUNCTION weightguard_append_only();
    CREATE TRIGGER events_no_delete BEFORE DELETE ON events
        FOR EACH ROW EXECUTE FUNCTION weightguard_append_only();
    CREATE TABLE approvals (
        digest TEXT NOT NULL,
        stage TEXT NOT NULL,
        approver TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (digest, stage, approver)
    );
    """,
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
        error TEXT,
        owner TEXT,
        lease_until DOUBLE PRECISION,
        seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE
    );
    CREATE INDEX jobs_status ON jobs(status, submitted_at, seq);
    """,
    """
    CREATE TABLE unit_results (
        sha256 TEXT NOT NULL,
        size BIGINT NOT NULL,
        policy_sha256 TEXT NOT NULL,
        version TEXT NOT NULL,
        kind TEXT NOT NULL,
        result TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (sha256, policy_sha256, version, kind)
    );
    """,
    """
    CREATE TABLE file_digests (
        path TEXT PRIMARY KEY,
        device BIGINT NOT NULL,
        inode BIGINT NOT NULL,
        size BIGINT NOT NULL,
        mtime_ns BIGINT NOT NULL,
        ctime_ns BIGINT NOT NULL,
        digests TEXT NOT NULL,
        recorded_at TEXT NOT NULL
    );
    """,
    _UNIT_SUMMARIES,
    # 6: on SQLite a repair of a development build; nothing to repair on PostgreSQL (IF NOT EXISTS).
    _UNIT_SUMMARIES,
)

__all__ = ["POSTGRESQL", "SQLITE"]
