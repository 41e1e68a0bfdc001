"""The training worker: a low-priority process that runs jobs one at a time, under a lease.

Started by `python -m app serve` (the local worker) or on its own by `python -m app worker`, on
any machine that reaches the job database and the model store; any number may run. A worker
claims a job's lease and renews it from a thread every third of the lease period while it
trains; the same thread polls the job's cancel flag, so a cancel works whichever worker runs it.
The trainer writes a resumable checkpoint (`<store>/.jobs/<job id>/resume.npz`) every 30 s, so a
job whose worker dies is resumed by another with at most one lease period plus one checkpoint
interval of work lost (15 s + 30 s by default).

On SIGTERM, or when the service that started it goes away, a worker stops its job, keeps the
checkpoint and gives the job back to the queue. A worker that finds its lease gone (it stalled
past the lease, another worker took the job) stops without touching the job.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from app.charlm import resume as resume_file
from app.charlm.errors import CharLMError, TrainingCancelled
from app.charlm.store import ModelStore
from app.charlm.train import CHECKPOINT_EVERY, Progress, TrainConfig, resume, train

from . import logs
from .database import reason, shown_url
from .jobs import FINISHED, JobStore
from .settings import Settings

log = logging.getLogger("dinosaurus.worker")
WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
CANCEL_POLL_SECONDS = 0.25  # how often a running job's cancel flag is read (and the lease renewed when due)
SWEEP_SECONDS = 60.0  # how often an idle worker looks for checkpoints of jobs that ended elsewhere
OUTAGE_LOG_SECONDS = 30.0  # while the database is away, one warning per this many seconds, not per retry


class Outage:
    """Logs a repeating database error at most once per OUTAGE_LOG_SECONDS (a retry loop would
    otherwise write several lines a second for as long as the database is away)."""

    def __init__(self) -> None:
        self.logged = -OUTAGE_LOG_SECONDS

    def warn(self, message: str, *args: object) -> None:
        if time.monotonic() - self.logged >= OUTAGE_LOG_SECONDS:
            self.logged = time.monotonic()
            log.warning(message, *args)


def worker_name(pid: int | None = None) -> str:
    """This worker's name as a lease owner: host and process id (containers have their own hostnames)."""
    return f"{socket.gethostname()}/{os.getpid() if pid is None else pid}"


class Lease(threading.Thread):
    """Keeps one job's lease while it runs: renews it every third of the lease period, reads its
    cancel flag every CANCEL_POLL_SECONDS. A database error is logged and retried: the lease simply
    runs out if the database stays away, and the next renewal then finds it lost."""

    def __init__(self, jobs: JobStore, job_id: str, owner: str) -> None:
        super().__init__(name=f"lease-{job_id}", daemon=True)
        self.jobs, self.job_id, self.owner = jobs, job_id, owner
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self._done = threading.Event()
        self.outage = Outage()

    def run(self) -> None:
        renew_every = self.jobs.lease_seconds / 3
        renewed = time.monotonic()
        while not self._done.wait(CANCEL_POLL_SECONDS):
            try:
                if time.monotonic() - renewed >= renew_every:
                    state = self.jobs.renew(self.job_id, self.owner)
                    renewed = time.monotonic()
                    if state is None:
                        self.lost.set()
                        return
                    cancel = state
                else:
                    cancel = self.jobs.cancel_requested(self.job_id)
            except SQLAlchemyError as exc:  # the database is away for a moment: try again next tick
                self.outage.warn("job %s: lease not renewed (%s); retrying", self.job_id, type(exc).__name__)
                continue
            if cancel:
                self.cancelled.set()

    def stop(self) -> None:
        self._done.set()
        if self.is_alive():
            self.join()


class Worker:
    def __init__(self, store: ModelStore, jobs: JobStore, parent_pid: int | None = None, poll_seconds: float = 0.5,
                 max_job_seconds: float = 3600.0, checkpoint_seconds: float = CHECKPOINT_EVERY) -> None:
        self.store, self.jobs = store, jobs
        self.checkpoint_seconds = checkpoint_seconds
        self.parent_pid = parent_pid  # the service that started this worker; None: a standalone worker
        self.poll_seconds = poll_seconds
        self.max_job_seconds = max_job_seconds
        self.owner = worker_name()
        self.stopping = False

    def parent_alive(self) -> bool:
        return self.parent_pid is None or os.getppid() == self.parent_pid

    def run_forever(self) -> None:
        swept, outage = 0.0, Outage()
        while not self.stopping and self.parent_alive():
            try:
                claimed = self.jobs.claim_next(self.owner)
                if claimed is None and time.monotonic() - swept > SWEEP_SECONDS:
                    self.sweep_checkpoints()
                    swept = time.monotonic()
            except SQLAlchemyError as exc:  # the database is unreachable: wait and try again
                outage.warn("cannot claim a job (%s: %s); retrying", type(exc).__name__, reason(exc))
                claimed = None
            if claimed is None:
                time.sleep(self.poll_seconds)
                continue
            self.run_job(*claimed)

    def sweep_checkpoints(self) -> int:
        """Remove the checkpoints of jobs that will never run again (ended while no worker ran
        them: cancelled, or failed after too many attempts; or deleted); returns how many."""
        root = self.store.root / ".jobs"
        removed = 0
        for job_dir in root.iterdir() if root.is_dir() else ():
            job = self.jobs.get(job_dir.name)
            if job is None or job["status"] in FINISHED:
                shutil.rmtree(job_dir, ignore_errors=True)
                removed += 1
        return removed

    def job_dir(self, job_id: str) -> Path:
        """Where a job keeps its resumable checkpoint while it runs (in the shared store)."""
        return self.store.root / ".jobs" / job_id

    def run_job(self, job: dict[str, Any], data: str) -> None:
        lease = Lease(self.jobs, job["id"], self.owner)
        lease.start()
        try:
            self._train(job, data, lease)
        finally:
            lease.stop()

    def _train(self, job: dict[str, Any], data: str, lease: Lease) -> None:
        job_id = job["id"]
        job_dir = self.job_dir(job_id)
        history: list[dict[str, Any]] = []

        def should_stop() -> bool:
            return lease.cancelled.is_set() or lease.lost.is_set() or self.stopping or not self.parent_alive()

        def on_progress(p: Progress) -> None:
            if p.event == "epoch":
                history.append(_history_entry({"epoch": p.epoch, "train_loss": p.train_loss,
                                               "val_loss": p.val_loss, "best_val_loss": p.best_val_loss,
                                               "seconds": p.seconds}))
            try:
                self.jobs.report(job_id, p.fraction, p.epoch, history, p.eta_seconds,
                                 epochs_total=p.epochs if p.steps else None)  # None: the time budget decides
            except SQLAlchemyError as exc:  # the database is away for a moment: training goes on (the lease decides)
                log.warning("job %s: progress not stored (%s)", job_id, type(exc).__name__)

        log.info("job %s: training model %r (attempt %d)", job_id, job["model"], job["attempts"])
        keep = False
        try:
            snap = resume_file.read(job_dir) if resume_file.exists(job_dir) else None
            if snap is not None and snap.data == data:
                log.info("job %s: resuming from its checkpoint", job_id)
                history.extend(_history_entry(h) for h in snap.meta["history"])  # the loss chart goes on
                model = resume(job_dir, on_progress=on_progress, should_stop=should_stop,
                               checkpoint_every=self.checkpoint_seconds, deadline=self.max_job_seconds)
            else:
                config = TrainConfig(kind="names", **job["options"])
                base = self.store.load(config.init_from) if config.init_from else None
                # The server's cap is a deadline, not a time budget: the job keeps the schedule
                # (and the size-aware number of epochs) its options give it.
                model = train(data, config, on_progress=on_progress, should_stop=should_stop,
                              checkpoint_dir=job_dir, checkpoint_every=self.checkpoint_seconds, base=base,
                              deadline=self.max_job_seconds)
            if self.jobs.renew(job_id, self.owner) is None:  # last check before the version is published
                raise TrainingCancelled("lease lost")
            model.meta["command"] = f"POST /train (job {job_id})"
            version = self.store.add_version(job["model"], model)
        except TrainingCancelled:
            keep = not lease.cancelled.is_set()  # the job runs again (here or elsewhere): keep its checkpoint
            if lease.lost.is_set() or (keep and self.jobs.renew(job_id, self.owner) is None):
                log.warning("job %s: lease lost (this worker stalled past it); another worker has the job", job_id)
            elif keep:
                self.jobs.requeue(job_id, self.owner)
                log.info("job %s: worker stopping; job re-queued, to resume from its checkpoint", job_id)
            else:
                self.jobs.finish(job_id, self.owner, "cancelled", error="cancelled by request")
                log.info("job %s: cancelled", job_id)
            return
        except CharLMError as exc:
            self.jobs.finish(job_id, self.owner, "failed", error=str(exc))
            return
        except Exception:
            log.exception("job %s: unexpected error", job_id)
            self.jobs.finish(job_id, self.owner, "failed", error="internal error while training")
            return
        finally:
            if not keep:  # only a job that will run again needs its checkpoint
                shutil.rmtree(job_dir, ignore_errors=True)
        self.jobs.finish(job_id, self.owner, "succeeded", version=version)
        log.info("job %s: model %r version %s is active", job_id, job["model"], version)


def _history_entry(epoch: dict[str, Any]) -> dict[str, Any]:
    """One epoch of a job's loss history, as the API shows it."""
    return {"epoch": epoch["epoch"], "train_loss": _rounded(epoch["train_loss"]),
            "val_loss": _rounded(epoch["val_loss"]), "best_val_loss": _rounded(epoch.get("best_val_loss")),
            "seconds": round(epoch["seconds"], 1)}


def _rounded(loss: float | None) -> float | None:
    return None if loss is None else round(loss, 4)


def _yield_to_the_service() -> None:
    """Train only on CPU time the service leaves: Linux's SCHED_IDLE policy (sched(7)), which CFS
    weights at 3 against 1,024 for a normal thread (nice 10 still gets 110), else nice 10."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux, or not permitted
        try:
            os.nice(10)
        except OSError:
            pass


def run(settings: Settings, parent_pid: int | None = None) -> None:
    """Run a worker until SIGTERM (or, for a service's own worker, until that service is gone).

    The service's own worker logs to `<store>/logs/worker.log`; a standalone one to stderr only
    (its supervisor, systemd or the container engine, keeps it): many of them share the store.
    """
    if parent_pid is not None:
        logs.configure(settings.store_dir / "logs" / "worker.log", settings.log_max_bytes, settings.log_backups,
                       console=False)
    else:
        logging.basicConfig(level=logging.INFO, format=logs.LOG_FORMAT, force=True)
    _yield_to_the_service()
    jobs = settings.open_jobs()
    worker = Worker(settings.store, jobs, parent_pid, max_job_seconds=settings.max_job_seconds,
                    checkpoint_seconds=settings.job_checkpoint_seconds)

    def on_term(signum: int, frame: object) -> None:
        worker.stopping = True

    signal.signal(signal.SIGTERM, on_term)
    if parent_pid is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the service stops us
    else:
        signal.signal(signal.SIGINT, on_term)
    log.info("worker %s: taking jobs from %s", worker.owner, shown_url(jobs.url))
    worker.run_forever()
    jobs.close()


def main(argv: list[str] | None = None) -> None:
    """The service's own worker (`python -m app.api.worker --store DIR --parent PID`, settings from DINO_*)."""
    parser = argparse.ArgumentParser(description="Dinosaurus training worker (started by the service)")
    parser.add_argument("--store", required=True, type=Path)
    parser.add_argument("--parent", required=True, type=int)
    args = parser.parse_args(argv)
    run(Settings(store_dir=args.store), parent_pid=args.parent)
    sys.exit(0)


if __name__ == "__main__":
    main()
