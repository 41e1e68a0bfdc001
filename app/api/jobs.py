"""Training jobs in a database (SQLite by default, PostgreSQL for several machines): shared by the
API replicas and every worker.

Any process may queue, read or cancel a job. A worker claims a job by taking its lease: the job
is `running`, owned by that worker until `lease_expires`, which the worker renews every few
seconds (worker.py). A job whose lease expired (its worker died, or lost the database or the
network) is claimed again by any worker, which resumes it from its checkpoint; after
`max_attempts` claims it fails with an error that says so. Every state change made by a worker
names its lease, so a worker that lost its job cannot finish it over its new owner.

Bounded: an upload's text is kept only while its job may still run (then only its SHA-256 and
size remain), and only the newest `keep_finished` finished jobs are kept.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, text

from app.charlm.textnorm import sha256_text

from .database import is_postgres, make_engine, read, sqlite_url, write
from .migrations import FINISHED_SQL, migrate

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED = ("succeeded", "failed", "cancelled")
LEASE_SECONDS = 15.0  # the default: a dead worker's job waits at most this long for another
MAX_ATTEMPTS = 3  # claims of one job (the first run and two resumptions), then it fails

_PUBLIC = ("id", "model", "status", "options", "created_at", "started_at", "finished_at", "progress",
           "epochs_done", "epochs_total", "history", "eta_seconds", "error", "version", "cancel_requested",
           "data_sha256", "data_bytes", "attempts")
_SELECT_PUBLIC = f"SELECT {', '.join(_PUBLIC)} FROM jobs"
MAX_HISTORY = 200  # loss-history points kept per job: enough for a chart, bounded for any number of epochs
_OWNED = "id = :id AND status = 'running' AND lease_owner = :owner"
_EXPIRED = "status = 'running' AND (lease_expires IS NULL OR lease_expires < :now)"


def gave_up(attempts: int) -> str:
    """The error of a job whose worker stopped renewing its lease `attempts` times."""
    return (f"the job's worker stopped responding {attempts} times (its lease expired each time); gave up "
            "after that many attempts: upload the list again to retry")


class JobStore:
    """The job table behind `url` (`sqlite:///FILE` or `postgresql://…`; a Path means a SQLite file)."""

    def __init__(self, url: str | Path, keep_finished: int = 200, lease_seconds: float = LEASE_SECONDS,
                 max_attempts: int = MAX_ATTEMPTS) -> None:
        self.url = sqlite_url(url) if isinstance(url, Path) else url
        self.keep_finished = keep_finished
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.engine: Engine = make_engine(self.url)
        migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @staticmethod
    def _public(row: RowMapping) -> dict[str, Any]:
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
        with write(self.engine, queue_lock=True) as db:
            queued = db.execute(text("SELECT COUNT(*) FROM jobs WHERE status = 'queued'")).scalar_one()
            if queued >= max_queued:
                return None
            db.execute(text(
                "INSERT INTO jobs (id, model, status, options, data, created_at, epochs_total, data_sha256, data_bytes)"
                " VALUES (:id, :model, 'queued', :options, :data, :now, :epochs, :sha, :bytes)"),
                {"id": job_id, "model": model, "options": json.dumps(options), "data": data, "now": time.time(),
                 "epochs": options.get("epochs"), "sha": sha256_text(data), "bytes": len(data.encode("utf-8"))})
            db.execute(text(f"DELETE FROM jobs WHERE status IN {FINISHED_SQL} AND id NOT IN (SELECT id FROM jobs "
                            f"WHERE status IN {FINISHED_SQL} ORDER BY finished_at DESC LIMIT :keep)"),
                       {"keep": self.keep_finished})
        return self.get(job_id)

    def get(self, job_id: str) -> dict[str, Any] | None:
        with read(self.engine) as db:
            row = db.execute(text(f"{_SELECT_PUBLIC} WHERE id = :id"), {"id": job_id}).mappings().first()
        return self._public(row) if row else None

    def recent(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """One page of jobs, newest first (public columns only: never the uploads)."""
        with read(self.engine) as db:
            rows = db.execute(text(f"{_SELECT_PUBLIC} ORDER BY created_at DESC, id LIMIT :limit OFFSET :offset"),
                              {"limit": limit, "offset": offset}).mappings().all()
        return [self._public(r) for r in rows]

    def ping(self) -> None:
        """One trivial query: raises SQLAlchemyError while the database cannot be reached."""
        with read(self.engine) as db:
            db.execute(text("SELECT 1"))

    def counts(self) -> dict[str, int]:
        with read(self.engine) as db:
            rows = db.execute(text("SELECT status, COUNT(*) FROM jobs GROUP BY status")).all()
        return {s: 0 for s in STATUSES} | {r[0]: r[1] for r in rows}

    def claim_next(self, owner: str) -> tuple[dict[str, Any], str] | None:
        """Take the lease of the oldest job that is queued or whose lease expired; returns it with its data.

        An expired job that was cancelled meanwhile ends `cancelled`; one claimed `max_attempts`
        times already ends `failed` (gave_up); either way the next candidate is tried.
        """
        with write(self.engine) as db:
            while True:
                now = time.time()
                lock = " FOR UPDATE SKIP LOCKED" if is_postgres(db) else ""  # SQLite: BEGIN IMMEDIATE did it
                row = db.execute(text(f"SELECT id, data, status, attempts, cancel_requested FROM jobs WHERE "
                                      f"status = 'queued' OR ({_EXPIRED}) ORDER BY created_at LIMIT 1{lock}"),
                                 {"now": now}).mappings().first()
                if row is None:
                    return None
                if row["status"] == "running" and (row["cancel_requested"] or row["attempts"] >= self.max_attempts):
                    status, error = (("cancelled", "cancelled by request") if row["cancel_requested"]
                                     else ("failed", gave_up(row["attempts"])))
                    self._end(db, row["id"], status, error, None, now)
                    continue
                db.execute(text("UPDATE jobs SET status = 'running', started_at = COALESCE(started_at, :now), "
                                "lease_owner = :owner, lease_expires = :expires, attempts = attempts + 1 "
                                "WHERE id = :id"),
                           {"now": now, "owner": owner, "expires": now + self.lease_seconds, "id": row["id"]})
                job_id, data = row["id"], row["data"]
                break
        job = self.get(job_id)
        assert job is not None
        return job, data

    def renew(self, job_id: str, owner: str) -> bool | None:
        """Extend `owner`'s lease on a running job; None when it no longer holds it (expired and
        claimed by another worker, or finished), else whether a cancel was requested."""
        with write(self.engine) as db:
            renewed = db.execute(text(f"UPDATE jobs SET lease_expires = :expires WHERE {_OWNED}"),
                                 {"expires": time.time() + self.lease_seconds, "id": job_id, "owner": owner})
            if renewed.rowcount == 0:
                return None
            return bool(db.execute(text("SELECT cancel_requested FROM jobs WHERE id = :id"),
                                   {"id": job_id}).scalar_one())

    def report(self, job_id: str, progress: float, epochs_done: int, history: list[dict[str, Any]],
               eta_seconds: float | None, epochs_total: int | None = None) -> None:
        """Store a running job's progress; a history longer than MAX_HISTORY is thinned evenly (last kept)."""
        if len(history) > MAX_HISTORY:
            step = -(-len(history) // (MAX_HISTORY - 1))  # ceiling division: at most MAX_HISTORY - 1 points
            history = history[::step][: MAX_HISTORY - 1] + history[-1:]
        with write(self.engine) as db:
            db.execute(text("UPDATE jobs SET progress = :p, epochs_done = :e, history = :h, eta_seconds = :eta, "
                            "epochs_total = COALESCE(:total, epochs_total) WHERE id = :id AND status = 'running'"),
                       {"p": progress, "e": epochs_done, "h": json.dumps(history), "eta": eta_seconds,
                        "total": epochs_total, "id": job_id})

    def cancel_requested(self, job_id: str) -> bool:
        with read(self.engine) as db:
            flag = db.execute(text("SELECT cancel_requested FROM jobs WHERE id = :id"), {"id": job_id}).scalar()
        return bool(flag)

    def request_cancel(self, job_id: str) -> dict[str, Any] | None:
        """Cancel a queued job at once; flag a running one for its worker (whichever) to stop."""
        with write(self.engine) as db:
            db.execute(text("UPDATE jobs SET status = 'cancelled', finished_at = :now, error = 'cancelled by request', "
                            "data = '', lease_owner = NULL WHERE id = :id AND status = 'queued'"),
                       {"now": time.time(), "id": job_id})
            db.execute(text("UPDATE jobs SET cancel_requested = 1 WHERE id = :id AND status = 'running'"),
                       {"id": job_id})
        return self.get(job_id)

    def finish(self, job_id: str, owner: str, status: str, error: str | None = None,
               version: str | None = None) -> bool:
        """End a job `owner` holds; False (and nothing changed) when its lease went to another worker."""
        assert status in FINISHED
        with write(self.engine) as db:
            return self._end(db, job_id, status, error, version, time.time(), owner) > 0

    @staticmethod
    def _end(db: Connection, job_id: str, status: str, error: str | None, version: str | None, now: float,
             owner: str | None = None) -> int:
        guard = _OWNED if owner is not None else "id = :id AND status = 'running'"
        return db.execute(text(
            "UPDATE jobs SET status = :status, error = :error, version = :version, finished_at = :now, data = '', "
            "progress = CASE WHEN :status = 'succeeded' THEN 1.0 ELSE progress END, eta_seconds = NULL, "
            f"lease_owner = NULL, lease_expires = NULL WHERE {guard}"),
            {"status": status, "error": error, "version": version, "now": now, "id": job_id, "owner": owner}).rowcount

    def requeue(self, job_id: str, owner: str) -> None:
        """Give a job back to the queue (its worker is stopping): the next worker resumes it from its
        checkpoint, and this claim does not count as an attempt."""
        with write(self.engine) as db:
            db.execute(text("UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires = NULL, "
                            f"eta_seconds = NULL, attempts = attempts - 1 WHERE {_OWNED}"),
                       {"id": job_id, "owner": owner})

    def release(self, owner: str) -> int:
        """Expire the leases of a worker known to be dead, so another takes its jobs now rather than
        after the lease period; returns how many."""
        with write(self.engine) as db:
            return db.execute(text("UPDATE jobs SET lease_expires = 0 WHERE status = 'running' AND lease_owner = :o"),
                              {"o": owner}).rowcount
