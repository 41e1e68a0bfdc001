"""Training jobs in SQLite (WAL): shared by the API process and the worker process.

Every method opens its own short-lived connection, so it is safe from any thread or process;
state changes are single UPDATE statements guarded by the expected current status.

Bounded: an upload's text is kept only while its job may still run (then only its SHA-256 and
size remain), and only the newest `keep_finished` finished jobs are kept.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.charlm.textnorm import sha256_text

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED = ("succeeded", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    options TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    progress REAL NOT NULL DEFAULT 0,
    epochs_done INTEGER NOT NULL DEFAULT 0,
    epochs_total INTEGER,
    history TEXT NOT NULL DEFAULT '[]',
    eta_seconds REAL,
    error TEXT,
    version TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    worker_pid INTEGER,
    data_sha256 TEXT,
    data_bytes INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, created_at);
"""
SCHEMA_VERSION = 1  # PRAGMA user_version; 0 is the first schema (no data_sha256/data_bytes, texts kept forever)

_PUBLIC = ("id", "model", "status", "options", "created_at", "started_at", "finished_at", "progress",
           "epochs_done", "epochs_total", "history", "eta_seconds", "error", "version", "cancel_requested",
           "data_sha256", "data_bytes")
_SELECT_PUBLIC = f"SELECT {', '.join(_PUBLIC)} FROM jobs"
MAX_HISTORY = 200  # loss-history points kept per job: enough for a chart, bounded for any number of epochs
_FINISHED_SQL = "('succeeded', 'failed', 'cancelled')"


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a database written by an earlier schema up to SCHEMA_VERSION (one transaction)."""
    db.execute("BEGIN IMMEDIATE")  # the API and the worker may open the file at the same moment
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version < 1:
        columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
        for column, kind in (("data_sha256", "TEXT"), ("data_bytes", "INTEGER")):
            if column not in columns:
                db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
        for job_id, data in db.execute("SELECT id, data FROM jobs WHERE data_sha256 IS NULL").fetchall():
            db.execute("UPDATE jobs SET data_sha256 = ?, data_bytes = ? WHERE id = ?",
                       (sha256_text(data), len(data.encode("utf-8")), job_id))
        db.execute(f"UPDATE jobs SET data = '' WHERE status IN {_FINISHED_SQL}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    db.execute("COMMIT")


class JobStore:
    def __init__(self, path: Path, keep_finished: int = 200) -> None:
        self.path = path
        self.keep_finished = keep_finished
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            _migrate(db)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            yield db
        finally:
            db.close()

    @staticmethod
    def _public(row: sqlite3.Row) -> dict[str, Any]:
        job = {k: row[k] for k in _PUBLIC}
        job["options"] = json.loads(job["options"])
        job["history"] = json.loads(job["history"])
        job["cancel_requested"] = bool(job["cancel_requested"])
        return job

    def create(self, model: str, options: dict[str, Any], data: str, max_queued: int) -> dict[str, Any] | None:
        """Queue a job, or return None when `max_queued` jobs are already waiting.

        Finished jobs beyond the newest `keep_finished` are deleted in the same transaction.
        """
        job_id = uuid.uuid4().hex[:16]
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            (queued,) = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()
            if queued >= max_queued:
                db.execute("ROLLBACK")
                return None
            db.execute(
                "INSERT INTO jobs (id, model, status, options, data, created_at, epochs_total, data_sha256, "
                "data_bytes) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
                (job_id, model, json.dumps(options), data, time.time(), options.get("epochs"), sha256_text(data),
                 len(data.encode("utf-8"))),
            )
            db.execute(f"DELETE FROM jobs WHERE status IN {_FINISHED_SQL} AND id NOT IN (SELECT id FROM jobs "
                       f"WHERE status IN {_FINISHED_SQL} ORDER BY finished_at DESC LIMIT ?)", (self.keep_finished,))
            db.execute("COMMIT")
        return self.get(job_id)

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._connect() as db:
            row = db.execute(f"{_SELECT_PUBLIC} WHERE id = ?", (job_id,)).fetchone()
        return self._public(row) if row else None

    def recent(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """One page of jobs, newest first (public columns only: never the uploads)."""
        with self._connect() as db:
            rows = db.execute(f"{_SELECT_PUBLIC} ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
                              (limit, offset)).fetchall()
        return [self._public(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._connect() as db:
            rows = db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return {s: 0 for s in STATUSES} | {r[0]: r[1] for r in rows}

    def claim_next(self, worker_pid: int) -> tuple[dict[str, Any], str] | None:
        """Atomically move the oldest queued job to running; returns it with its data."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT id, data FROM jobs WHERE status = 'queued' ORDER BY created_at LIMIT 1").fetchone()
            if row is None:
                db.execute("ROLLBACK")
                return None
            db.execute("UPDATE jobs SET status = 'running', started_at = ?, worker_pid = ? WHERE id = ?",
                       (time.time(), worker_pid, row["id"]))
            db.execute("COMMIT")
        job = self.get(row["id"])
        assert job is not None
        return job, row["data"]

    def report(self, job_id: str, progress: float, epochs_done: int, history: list[dict[str, Any]],
               eta_seconds: float | None, epochs_total: int | None = None) -> None:
        """Store a running job's progress; a history longer than MAX_HISTORY is thinned evenly (last kept)."""
        if len(history) > MAX_HISTORY:
            step = -(-len(history) // (MAX_HISTORY - 1))  # ceiling division: at most MAX_HISTORY - 1 points
            history = history[::step][: MAX_HISTORY - 1] + history[-1:]
        with self._connect() as db:
            db.execute("UPDATE jobs SET progress = ?, epochs_done = ?, history = ?, eta_seconds = ?, "
                       "epochs_total = COALESCE(?, epochs_total) WHERE id = ? AND status = 'running'",
                       (progress, epochs_done, json.dumps(history), eta_seconds, epochs_total, job_id))

    def cancel_requested(self, job_id: str) -> bool:
        with self._connect() as db:
            row = db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row[0])

    def request_cancel(self, job_id: str) -> dict[str, Any] | None:
        """Cancel a queued job at once; flag a running one for its worker to stop."""
        with self._connect() as db:
            db.execute("UPDATE jobs SET status = 'cancelled', finished_at = ?, error = 'cancelled by request', "
                       "data = '' WHERE id = ? AND status = 'queued'", (time.time(), job_id))
            db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'", (job_id,))
        return self.get(job_id)

    def finish(self, job_id: str, status: str, error: str | None = None, version: str | None = None) -> None:
        assert status in FINISHED
        with self._connect() as db:
            db.execute("UPDATE jobs SET status = ?, error = ?, version = ?, finished_at = ?, data = '', "
                       "progress = CASE WHEN ? = 'succeeded' THEN 1.0 ELSE progress END, eta_seconds = NULL "
                       "WHERE id = ? AND status = 'running'",
                       (status, error, version, time.time(), status, job_id))

    def requeue(self, job_id: str) -> None:
        """Put a running job back in the queue (service shutting down): it restarts next time."""
        with self._connect() as db:
            db.execute("UPDATE jobs SET status = 'queued', started_at = NULL, progress = 0, epochs_done = 0, "
                       "history = '[]', eta_seconds = NULL, worker_pid = NULL WHERE id = ? AND status = 'running'",
                       (job_id,))

    def fail_interrupted(self) -> int:
        """Mark jobs left running by a process that died as failed ("interrupted")."""
        with self._connect() as db:
            cur = db.execute("UPDATE jobs SET status = 'failed', error = 'interrupted', finished_at = ?, data = '' "
                             "WHERE status = 'running'", (time.time(),))
            return cur.rowcount

    def fail_worker_jobs(self, worker_pid: int) -> int:
        """Fail the jobs a dead worker process was running ("worker died"); returns how many."""
        with self._connect() as db:
            cur = db.execute("UPDATE jobs SET status = 'failed', error = 'worker died', finished_at = ?, data = '', "
                             "eta_seconds = NULL WHERE status = 'running' AND worker_pid = ?",
                             (time.time(), worker_pid))
            return cur.rowcount
