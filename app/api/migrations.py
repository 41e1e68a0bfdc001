"""Versioned schema migrations for the job database, applied at start by every process.

A small numbered runner rather than Alembic: the schema is one table, the migrations are a few
statements, and they must run inside the service at start (no separate tool to install or run).
`schema_migrations` lists the versions applied. All pending migrations run in one transaction
under the database's write lock (SQLite) or an advisory lock (PostgreSQL), so two processes
starting together apply each exactly once.

A SQLite job database from an earlier release has no `schema_migrations`: its `PRAGMA
user_version` (0 or 1, the old in-file schema version) says which migrations it already has.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Connection, Engine, text

from app.charlm.textnorm import sha256_text

from .database import is_postgres, write

FINISHED_SQL = "('succeeded', 'failed', 'cancelled')"


def _v1_jobs(conn: Connection) -> None:
    """The job table as release 1 had it (text uploads dropped once finished, only their hash kept)."""
    conn.execute(text("""
        CREATE TABLE IF NOT EXISTS jobs (
            id TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            status TEXT NOT NULL,
            options TEXT NOT NULL,
            data TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            started_at DOUBLE PRECISION,
            finished_at DOUBLE PRECISION,
            progress DOUBLE PRECISION NOT NULL DEFAULT 0,
            epochs_done INTEGER NOT NULL DEFAULT 0,
            epochs_total INTEGER,
            history TEXT NOT NULL DEFAULT '[]',
            eta_seconds DOUBLE PRECISION,
            error TEXT,
            version TEXT,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            worker_pid INTEGER,
            data_sha256 TEXT,
            data_bytes INTEGER
        )"""))
    conn.execute(text("CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, created_at)"))
    if is_postgres(conn):
        return
    # A SQLite file of schema 0 (the first release): no hash columns, texts kept forever.
    columns = {row[1] for row in conn.execute(text("PRAGMA table_info(jobs)"))}
    for column, kind in (("data_sha256", "TEXT"), ("data_bytes", "INTEGER")):
        if column not in columns:
            conn.execute(text(f"ALTER TABLE jobs ADD COLUMN {column} {kind}"))
    for job_id, data in conn.execute(text("SELECT id, data FROM jobs WHERE data_sha256 IS NULL")).all():
        conn.execute(text("UPDATE jobs SET data_sha256 = :h, data_bytes = :n WHERE id = :id"),
                     {"h": sha256_text(data), "n": len(data.encode("utf-8")), "id": job_id})
    conn.execute(text(f"UPDATE jobs SET data = '' WHERE status IN {FINISHED_SQL}"))


def _v2_leases(conn: Connection) -> None:
    """Leases: the worker holding a running job and until when; attempts bound the retries.

    A job an earlier release left `running` has no lease: it counts as expired, so a worker resumes it.
    """
    for column in ("lease_owner TEXT", "lease_expires DOUBLE PRECISION", "attempts INTEGER NOT NULL DEFAULT 0"):
        conn.execute(text(f"ALTER TABLE jobs ADD COLUMN {column}"))
    conn.execute(text("UPDATE jobs SET attempts = 1 WHERE status = 'running'"))
    conn.execute(text("CREATE INDEX IF NOT EXISTS jobs_lease ON jobs (status, lease_expires)"))


MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [(1, _v1_jobs), (2, _v2_leases)]
LATEST = MIGRATIONS[-1][0]


def _applied(conn: Connection) -> set[int]:
    conn.execute(text("CREATE TABLE IF NOT EXISTS schema_migrations "
                      "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"))
    applied = {int(v) for (v,) in conn.execute(text("SELECT version FROM schema_migrations"))}
    if not applied and not is_postgres(conn):
        (legacy,) = conn.execute(text("PRAGMA user_version")).one()
        applied = set(range(1, int(legacy) + 1))  # user_version 1 = migration 1 done by release 1
    return applied


def migrate(engine: Engine) -> list[int]:
    """Apply the pending migrations (one transaction); returns the versions applied now."""
    with write(engine, queue_lock=True) as conn:
        applied = _applied(conn)
        done = []
        for version, step in MIGRATIONS:
            if version not in applied:
                step(conn)
                done.append(version)
        for version in sorted(applied | set(done)):
            conn.execute(text("INSERT INTO schema_migrations (version, applied_at) VALUES (:v, :t) "
                              "ON CONFLICT (version) DO NOTHING"), {"v": version, "t": time.time()})
    return done
