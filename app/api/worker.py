"""The training worker: a separate, low-priority process that runs queued jobs one at a time.

It is started by the service (`python -m app.api.worker`), runs with one BLAS thread and a
raised nice value so the API stays responsive, and exits when its parent goes away. On SIGTERM
(service shutdown) a running job is stopped and put back in the queue; its resumable checkpoint
(`<store>/.jobs/<job id>/resume.npz`, also written every 30 s) lets it continue next time.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from app.charlm import resume as resume_file
from app.charlm.errors import CharLMError, TrainingCancelled
from app.charlm.store import ModelStore
from app.charlm.train import Progress, TrainConfig, resume, train

from . import logs
from .jobs import JobStore

log = logging.getLogger("dinosaurus.worker")
WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class Worker:
    def __init__(self, store: ModelStore, jobs: JobStore, parent_pid: int, poll_seconds: float = 0.2,
                 max_job_seconds: float = 3600.0) -> None:
        self.store, self.jobs = store, jobs
        self.parent_pid = parent_pid
        self.poll_seconds = poll_seconds
        self.max_job_seconds = max_job_seconds
        self.stopping = False

    def parent_alive(self) -> bool:
        return os.getppid() == self.parent_pid

    def run_forever(self) -> None:
        while not self.stopping and self.parent_alive():
            claimed = self.jobs.claim_next(os.getpid())
            if claimed is None:
                time.sleep(self.poll_seconds)
                continue
            self.run_job(*claimed)

    def job_dir(self, job_id: str) -> Path:
        """Where a job keeps its resumable checkpoint while it runs."""
        return self.store.root / ".jobs" / job_id

    def run_job(self, job: dict[str, Any], data: str) -> None:
        job_id = job["id"]
        job_dir = self.job_dir(job_id)
        history: list[dict[str, Any]] = []
        checked_at, cancelled = 0.0, False

        def should_stop() -> bool:
            nonlocal checked_at, cancelled
            now = time.monotonic()
            if now - checked_at > 0.25:  # the database is asked at most 4 times a second
                checked_at, cancelled = now, self.jobs.cancel_requested(job_id)
            return cancelled or self.stopping or not self.parent_alive()

        def on_progress(p: Progress) -> None:
            if p.event == "epoch":
                history.append(_history_entry({"epoch": p.epoch, "train_loss": p.train_loss, "val_loss": p.val_loss,
                                               "best_val_loss": p.best_val_loss, "seconds": p.seconds}))
            self.jobs.report(job_id, p.fraction, p.epoch, history, p.eta_seconds,
                             epochs_total=p.epochs if p.steps else None)  # None: the time budget decides

        log.info("job %s: training model %r", job_id, job["model"])
        keep = False
        try:
            snap = resume_file.read(job_dir) if resume_file.exists(job_dir) else None
            if snap is not None and snap.data == data:
                log.info("job %s: resuming from its checkpoint", job_id)
                history.extend(_history_entry(h) for h in snap.meta["history"])  # the loss chart goes on
                model = resume(job_dir, on_progress=on_progress, should_stop=should_stop,
                               deadline=self.max_job_seconds)
            else:
                config = TrainConfig(kind="names", **job["options"])
                base = self.store.load(config.init_from) if config.init_from else None
                # The server's cap is a deadline, not a time budget: the job keeps the schedule
                # (and the size-aware number of epochs) its options give it.
                model = train(data, config, on_progress=on_progress, should_stop=should_stop,
                              checkpoint_dir=job_dir, base=base, deadline=self.max_job_seconds)
            model.meta["command"] = f"POST /train (job {job_id})"
            version = self.store.add_version(job["model"], model)
        except TrainingCancelled:
            keep = self.stopping and self.parent_alive()  # re-queued: it resumes next time
            if not self.parent_alive():
                log.warning("job %s: service died; leaving the job for the next start", job_id)
            elif self.stopping:
                self.jobs.requeue(job_id)
                log.info("job %s: service shutting down; job re-queued, to resume from its checkpoint", job_id)
            else:
                self.jobs.finish(job_id, "cancelled", error="cancelled by request")
                log.info("job %s: cancelled", job_id)
            return
        except CharLMError as exc:
            self.jobs.finish(job_id, "failed", error=str(exc))
            return
        except Exception:
            log.exception("job %s: unexpected error", job_id)
            self.jobs.finish(job_id, "failed", error="internal error while training")
            return
        finally:
            if not keep:  # only a job that will run again needs its checkpoint
                shutil.rmtree(job_dir, ignore_errors=True)
        self.jobs.finish(job_id, "succeeded", version=version)
        log.info("job %s: model %r version %s is active", job_id, job["model"], version)


def _history_entry(epoch: dict[str, Any]) -> dict[str, Any]:
    """One epoch of a job's loss history, as the API shows it."""
    return {"epoch": epoch["epoch"], "train_loss": _rounded(epoch["train_loss"]),
            "val_loss": _rounded(epoch["val_loss"]), "best_val_loss": _rounded(epoch.get("best_val_loss")),
            "seconds": round(epoch["seconds"], 1)}


def _rounded(loss: float | None) -> float | None:
    return None if loss is None else round(loss, 4)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Dinosaurus training worker (started by the service)")
    parser.add_argument("--store", required=True, type=Path)
    parser.add_argument("--builtin", required=True, type=Path)
    parser.add_argument("--parent", required=True, type=int)
    parser.add_argument("--max-job-seconds", type=float, default=3600.0, help="training time per job at most")
    parser.add_argument("--log-max-bytes", type=int, default=10 * 1024 * 1024)
    parser.add_argument("--log-backups", type=int, default=3)
    args = parser.parse_args(argv)
    logs.configure(args.store / "logs" / "worker.log", args.log_max_bytes, args.log_backups, console=False)
    try:
        os.nice(10)
    except OSError:
        pass
    worker = Worker(ModelStore(args.store, args.builtin), JobStore(args.store / "jobs.sqlite3"), args.parent,
                    max_job_seconds=args.max_job_seconds)

    def on_term(signum: int, frame: object) -> None:
        worker.stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the service stops us
    worker.run_forever()
    sys.exit(0)


if __name__ == "__main__":
    main()
