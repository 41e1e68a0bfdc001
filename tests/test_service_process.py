"""The service as users run it: a real uvicorn process, a real worker process, real crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _common import free_port  # bench/_common.py, on the test path (pyproject: pythonpath)

from .conftest import DINOS, ROOT
from .test_api import NAMES_FILE


class Server:
    """`python -m app serve` on a free loopback port with its own store directory."""

    def __init__(self, store: Path, env: dict[str, str] | None = None, host: str = "127.0.0.1",
                 args: tuple[str, ...] = ()) -> None:
        self.store = store
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {**os.environ, "DINO_STORE_DIR": str(store)}
        environ.pop("DINO_ADMIN_TOKEN", None)
        environ.update(env or {})
        self.log_path = store.parent / f"server-{self.port}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--host", host, "--port", str(self.port),
                                      *args], cwd=ROOT, env=environ, stdout=self.log, stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.url, timeout=30)
        wait_for(lambda: self._ready(), 60, "server ready")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError("server exited: " + self.log_path.read_text())
        try:
            return self.client.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def upload(self, content: str, name: str, **fields: str) -> str:
        r = self.client.post("/train", files={"file": ("names.txt", content.encode(), "text/plain")},
                             data={"name": name, **fields})
        assert r.status_code == 202, r.text
        return str(r.json()["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.client.get(f"/jobs/{job_id}").json())

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)
        self.client.close()
        self.log.close()


def wait_for(check: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def worker_pids(store: Path) -> set[int]:
    """The training workers of the service on `store` only: other services on this machine are not ours."""
    out = subprocess.run(["pgrep", "-f", f"app.api.worker --store {store} "], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "store")
    yield s
    s.stop()


def shipped_models_snapshot() -> dict[str, float]:
    """The repo's shipped models only: a `make run` service may be writing the rest of model_store/."""
    return {str(p): p.stat().st_mtime for d in ("dinos", "shakespeare") for p in (ROOT / "model_store" / d).rglob("*")}


def test_upload_trains_in_another_process_and_hot_swaps(server: Server) -> None:
    shipped_before = shipped_models_snapshot()
    heroines = f"heroines-{uuid.uuid4().hex[:8]}"  # a name no model in the repo's store has
    job_id = server.upload(NAMES_FILE, heroines, epochs="4", hidden="16", seed="1")
    seen = []

    def finished() -> bool:
        job = server.job(job_id)
        seen.append(job)
        return job["status"] in ("succeeded", "failed", "cancelled")

    wait_for(finished, 120, "job to finish")
    job = seen[-1]
    assert job["status"] == "succeeded", job
    assert job["version"] == "1" and job["progress"] == 1.0 and job["epochs_done"] == 4
    assert [h["epoch"] for h in job["history"]] == [1, 2, 3, 4]
    r = server.client.get("/names", params={"model": heroines, "count": 3, "seed": 0})
    assert r.status_code == 200 and r.json()["version"] == "1" and len(r.json()["names"]) == 3
    # A second upload to the same name becomes version 2, active without a restart.
    job2 = server.upload(NAMES_FILE, heroines, epochs="2", hidden="24", seed="2")
    wait_for(lambda: server.job(job2)["status"] == "succeeded", 120, "second job")
    assert server.client.get("/names", params={"model": heroines}).json()["version"] == "2"
    model = server.client.get(f"/models/{heroines}").json()
    assert model["active_version"] == "2" and [v["version"] for v in model["versions"]] == ["1", "2"]
    assert 'dino_jobs{status="succeeded"} 2.0' in server.client.get("/metrics").text
    # Everything went to DINO_STORE_DIR: the job records and both versions, nothing in the repo.
    assert shipped_models_snapshot() == shipped_before and not (ROOT / "model_store" / heroines).exists()
    assert (server.store / heroines / "versions" / "2" / "model.json").is_file()
    assert (server.store / "jobs.sqlite3").is_file()


def test_cancel_running_job_keeps_current_model(server: Server) -> None:
    first = server.upload(NAMES_FILE, "pets", epochs="2", hidden="16")
    wait_for(lambda: server.job(first)["status"] == "succeeded", 120, "first job")
    before = server.client.get("/names", params={"model": "pets", "seed": 5}).json()
    long_job = server.upload(DINOS.read_text(), "pets", epochs="300", hidden="64")
    wait_for(lambda: server.job(long_job)["epochs_done"] >= 1, 120, "progress on the long job")
    job = server.job(long_job)
    assert job["status"] == "running" and 0 < job["progress"] < 1 and job["history"]
    assert server.client.get("/healthz").status_code == 200  # the API answers while the worker trains
    workers = worker_pids(server.store)  # and the worker trains only on CPU time the API leaves
    assert workers and all(os.sched_getscheduler(pid) == os.SCHED_IDLE for pid in workers)
    r = server.client.post(f"/jobs/{long_job}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert server.client.get("/names", params={"model": "pets", "seed": 5}).json() == before


def test_sigkill_mid_training_loses_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = Server(store)
    job = first.upload(NAMES_FILE, "keep", epochs="3", hidden="16")
    wait_for(lambda: first.job(job)["status"] == "succeeded", 120, "first job")
    before = first.client.get("/names", params={"model": "keep", "count": 5, "seed": 9}).json()
    dinos_before = first.client.get("/names", params={"count": 5, "seed": 9}).json()
    running = first.upload(DINOS.read_text(), "keep", epochs="300", hidden="64")
    wait_for(lambda: first.job(running)["epochs_done"] >= 1, 120, "training to be under way")
    workers = worker_pids(store)
    assert workers, "the service's worker process was not found"
    first.stop(signal.SIGKILL)
    wait_for(lambda: not (worker_pids(store) & workers), 30, "the orphaned worker to exit")

    second = Server(store)
    try:
        assert second.client.get("/names", params={"model": "keep", "count": 5, "seed": 9}).json() == before
        assert second.client.get("/names", params={"count": 5, "seed": 9}).json() == dinos_before
        # The orphaned worker gave its job back (with a checkpoint): the new service's worker resumes it.
        wait_for(lambda: b"resuming from its checkpoint" in (store / "logs" / "worker.log").read_bytes(), 60,
                 "the job to resume on the new worker")
        job_after = second.job(running)
        assert job_after["status"] == "running" and job_after["error"] is None and job_after["attempts"] == 1
        assert second.client.post(f"/jobs/{running}/cancel").json()["status"] == "cancelled"
        assert second.client.get("/models/keep").json()["versions"] == [
            v for v in second.client.get("/models/keep").json()["versions"] if v["version"] == "1"]
        hidden = [p for p in (store / "keep").rglob("*") if p.name.startswith(".")]
        assert hidden == []
    finally:
        second.stop()


def test_graceful_shutdown_requeues_running_job(tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = Server(store)
    running = first.upload(DINOS.read_text(), "later", epochs="300", hidden="64")
    wait_for(lambda: first.job(running)["epochs_done"] >= 1, 120, "training to be under way")
    first.stop(signal.SIGTERM)
    assert first.proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after shutdown
    second = Server(store)
    try:
        wait_for(lambda: second.job(running)["status"] == "running", 30, "the job to restart")
        assert second.client.post(f"/jobs/{running}/cancel").json()["status"] == "cancelled"
    finally:
        second.stop()


def test_mixed_case_list_keeps_its_inner_capitals(server: Server) -> None:
    """Through POST /train, as a user uploads it: 860 comic characters, 99.4% with an inner capital."""
    text = (ROOT / "data" / "lists" / "comic-characters-multiword.txt").read_text(encoding="utf-8")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    inner = [any(c.isupper() for c in n[1:]) for n in names]
    listed = sum(inner) / len(names)
    assert listed > 0.9
    job_id = server.upload(text, "comics", epochs="8", hidden="48", layers="1", seed="1")
    wait_for(lambda: server.job(job_id)["status"] in ("succeeded", "failed"), 180, "the comics job")
    assert server.job(job_id)["status"] == "succeeded", server.job(job_id)
    assert server.client.get("/models/comics").json()["versions"][0]["case"] == "keep"
    got = server.client.get("/names", params={"model": "comics", "count": 200, "seed": 0, "min_length": 4}).json()
    share = sum(any(c.isupper() for c in n[1:]) for n in got["names"]) / len(got["names"])
    assert listed / 2 <= share <= listed * 2, (share, got["names"][:10])
