"""The training worker's lifecycle in the API process: start it, watch it, replace it when it dies.

A worker that dies (killed, out of memory, crashed) is replaced, and the lease of the job it was
running is expired at once, so the next worker resumes that job from its checkpoint (after
`job_max_attempts` such deaths the job fails); while no worker runs, /readyz answers 503.
Workers that keep dying young are restarted after a doubling delay (at most a minute), so a
crash loop cannot flood the log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from .jobs import JobStore
from .settings import Settings
from .worker import WORKER_ENV, worker_name

log = logging.getLogger("dinosaurus.api")
YOUNG_SECONDS = 60.0  # a worker that dies sooner than this after its start doubles the restart delay
MAX_RESTART_DELAY = 60.0


def start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    """The training worker, in its own process with one BLAS thread and the service's settings (as
    DINO_* variables); it writes its own rotating log."""
    cmd = [sys.executable, "-m", "app.api.worker", "--store", str(settings.store_dir), "--parent", str(os.getpid())]
    # A session of its own: Ctrl+C at the terminal reaches only the service, which stops the
    # worker with SIGTERM (its job is re-queued), never a worker still importing its modules.
    return subprocess.Popen(cmd, env={**os.environ, **settings.as_env(), **WORKER_ENV}, stdout=subprocess.DEVNULL,
                            start_new_session=True)


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    proc.terminate()  # the worker re-queues its running job and exits
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class WorkerSupervisor:
    def __init__(self, start: Callable[[], subprocess.Popen[bytes]], jobs: JobStore) -> None:
        self._start = start
        self.jobs = jobs
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.delay = 0.5  # seconds before the next restart; doubles while workers die young
        self.restart_at = 0.0
        self.stopped = False
        self._lock = threading.Lock()  # a tick in its thread and stop() never overlap

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check(self, now: float) -> None:
        """One watchdog tick (`now` from time.monotonic): notice a death, restart when due."""
        with self._lock:
            if not self.stopped:
                self._check(now)

    def _check(self, now: float) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            pid, code = self.proc.pid, self.proc.returncode
            released = self.jobs.release(worker_name(pid))
            young = now - self.started_at < YOUNG_SECONDS
            self.delay = min(self.delay * 2, MAX_RESTART_DELAY) if young else 1.0
            self.restart_at = now + self.delay
            self.proc = None
            log.error("training worker %d died (exit code %s); %d running job(s) to resume; new worker in %.0f s",
                      pid, code, released, self.delay)
        if self.proc is None and now >= self.restart_at:
            self.proc = self._start()
            self.started_at = now

    async def watch(self, interval: float = 0.5) -> None:
        """Tick forever (cancel to stop); SQLite and fork run in a thread, off the event loop."""
        while True:
            await asyncio.to_thread(self.check, time.monotonic())
            await asyncio.sleep(interval)

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            if self.proc is not None:
                stop_worker(self.proc)
                self.proc = None
