"""No single client can stall, fill or take over the service: limits through TestClient and unit tests.

The slow-client and process-level cases (half-sent requests, stalled bodies, a killed worker) are in
test_service_limits.py against a real server.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from starlette.requests import Request
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.api import logs
from app.api.admission import CLIENT_GONE, SamplingGate
from app.api.jobs import JobStore
from app.api.main import create_app
from app.api.memory import give_back
from app.api.metrics import Metrics
from app.api.migrations import LATEST
from app.api.serve import binds_loopback_only, connection_cap
from app.api.settings import Settings
from app.api.supervisor import WorkerSupervisor
from app.api.worker import worker_name
from app.charlm.errors import WorkStopped

from .conftest import ROOT
from .test_api import AUTH, NAMES_FILE, make_client, upload

HEAVY_NAMES = {"count": 1000, "min_length": 100, "max_length": 100}  # seconds of sampling (7 s on 2 cores)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- work budget and admission -------------------------------------------------------------------------------

def test_requests_beyond_the_work_budget_get_422(tmp_path: Path) -> None:
    with make_client(tmp_path, request_work_seconds=0.01) as c:
        r = c.get("/names", params=HEAVY_NAMES)
        assert r.status_code == 422 and "0.01 s of sampling" in r.json()["detail"]
        r = c.get("/poem", params={"length": 2000})
        assert r.status_code == 422 and "sampling" in r.json()["detail"]
        r = c.get("/names", params={"mode": "beam", "count": 50, "suffix": "x"})  # beam refuses temperature
        assert r.status_code == 422 and "mode sample" in r.json()["detail"] and "temperature" not in r.json()["detail"]
        assert 'dino_sampling_stopped_total{reason="budget"} 3.0' in c.get("/metrics").text


def _request(receive: object) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/names", "headers": [], "query_string": b""},
                   receive)


async def _never_disconnects() -> dict[str, object]:
    await asyncio.Event().wait()
    return {}


def test_gate_refuses_beyond_capacity_with_retry_after() -> None:
    metrics = Metrics()
    gate = SamplingGate(capacity=1, seconds=60, metrics=metrics)
    release = threading.Event()

    def slow(should_stop: object) -> str:
        release.wait(30)
        return "done"

    async def scenario() -> tuple[str, HTTPException]:
        first = asyncio.create_task(gate.run(_request(_never_disconnects), slow))
        while gate.in_flight == 0:
            await asyncio.sleep(0.01)
        with pytest.raises(HTTPException) as refused:
            await gate.run(_request(_never_disconnects), lambda stop: "never runs")
        release.set()
        return await first, refused.value

    result, refused = asyncio.run(scenario())
    assert result == "done" and gate.in_flight == 0
    assert refused.status_code == 429 and refused.headers == {"Retry-After": "1"}
    assert "busy" in refused.detail
    assert "dino_sampling_refused_total 1.0" in _render(metrics)


def test_gate_refuses_when_as_many_wait_for_a_thread_as_there_are_threads() -> None:
    gate = SamplingGate(capacity=8, seconds=60, metrics=Metrics(), threads=1)
    release = threading.Event()

    def slow(should_stop: object) -> str:
        release.wait(30)
        return "done"

    async def scenario() -> HTTPException:
        running = asyncio.create_task(gate.run(_request(_never_disconnects), slow))
        queued = asyncio.create_task(gate.run(_request(_never_disconnects), slow))
        while gate.limiter.statistics().tasks_waiting == 0:  # one runs, one waits for the only thread
            await asyncio.sleep(0.01)
        with pytest.raises(HTTPException) as refused:
            await gate.run(_request(_never_disconnects), lambda stop: "never runs")
        release.set()
        assert await running == await queued == "done"
        return refused.value

    refused = asyncio.run(scenario())
    assert refused.status_code == 429 and refused.headers == {"Retry-After": "2"} and gate.in_flight == 0
    assert "1 request waits for its 1 sampling thread;" in refused.detail


def test_gate_stops_work_when_the_client_disconnects() -> None:
    metrics = Metrics()
    gate = SamplingGate(capacity=2, seconds=60, metrics=metrics)

    async def disconnect() -> dict[str, object]:
        return {"type": "http.disconnect"}

    def work(should_stop: Callable[[], bool]) -> str:
        while not should_stop():  # the gate's check turns True once the disconnect is seen
            time.sleep(0.01)
        raise WorkStopped("stopped")

    with pytest.raises(HTTPException) as gone:
        asyncio.run(gate.run(_request(disconnect), work))
    assert gone.value.status_code == CLIENT_GONE
    assert 'dino_sampling_stopped_total{reason="disconnect"} 1.0' in _render(metrics)


def _render(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


# --- write access --------------------------------------------------------------------------------------------

def _open_app(tmp_path: Path, **kwargs: object) -> object:
    return create_app(Settings(store_dir=tmp_path / "store", start_worker=False), **kwargs)


@pytest.mark.parametrize(
    "peer, headers, status",
    [
        ("127.0.0.1", {}, 202),
        ("127.8.9.10", {}, 202),
        ("::1", {}, 202),
        ("::ffff:127.0.0.1", {}, 202),
        ("10.1.2.3", {}, 403),
        ("localhost", {}, 403),  # a name is never trusted
        ("127.0.0.1", {"X-Forwarded-For": "127.0.0.1"}, 403),  # relayed by a proxy on this host
        ("127.0.0.1", {"Forwarded": "for=127.0.0.1"}, 403),
        ("127.0.0.1", {"X-Real-IP": "127.0.0.1"}, 403),
        ("127.0.0.1", {"Via": "1.1 proxy"}, 403),
        ("127.0.0.1", {"True-Client-IP": "127.0.0.1"}, 403),
        # A page of another site in the local user's browser: the browser's connection is loopback.
        ("127.0.0.1", {"Origin": "http://evil.example"}, 403),
        ("127.0.0.1", {"Origin": "null"}, 403),
        ("127.0.0.1", {"Sec-Fetch-Site": "cross-site"}, 403),
        ("127.0.0.1", {"Host": "rebind.evil.example:8000"}, 403),  # DNS rebinding
        ("127.0.0.1", {"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"}, 202),  # our page
        ("127.0.0.1", {"Origin": "http://localhost:8000", "Host": "localhost:8000"}, 202),
        ("::1", {"Origin": "http://[::1]:8000", "Host": "[::1]:8000"}, 202),
    ],
)
def test_without_token_only_a_direct_loopback_peer_writes(tmp_path: Path, peer: str, headers: dict[str, str],
                                                          status: int) -> None:
    with TestClient(_open_app(tmp_path), client=(peer, 50000), base_url="http://127.0.0.1:8000") as c:
        r = upload(c, headers=headers)
        assert r.status_code == status, r.text


def test_rewritten_client_address_does_not_grant_writes(tmp_path: Path) -> None:
    """uvicorn's proxy-header middleware trusting everyone rewrites the client to 127.0.0.1: still refused."""
    app = ProxyHeadersMiddleware(_open_app(tmp_path), trusted_hosts="*")
    with TestClient(app, client=("10.1.2.3", 50000)) as c:
        r = upload(c, headers={"X-Forwarded-For": "127.0.0.1"})
        assert r.status_code == 403 and "loopback" in r.json()["detail"]


def test_beyond_loopback_without_token_no_one_writes(tmp_path: Path) -> None:
    with TestClient(_open_app(tmp_path, loopback_writes=False), client=("127.0.0.1", 5)) as c:
        r = upload(c, headers={})
        assert r.status_code == 403 and "DINO_ADMIN_TOKEN" in r.json()["detail"]
    settings = Settings(store_dir=tmp_path / "store", start_worker=False, admin_token="t0k")
    with TestClient(create_app(settings, loopback_writes=False)) as c:
        assert upload(c, headers={"Authorization": "Bearer t0k"}).status_code == 202


def test_bind_addresses_are_compared_as_addresses() -> None:
    assert binds_loopback_only("127.0.0.1") and binds_loopback_only("::1") and binds_loopback_only("localhost")
    assert not binds_loopback_only("0.0.0.0") and not binds_loopback_only("::")


# --- uploads -------------------------------------------------------------------------------------------------

def test_write_rule_runs_before_the_body_is_read(client: TestClient) -> None:
    """A body that is not even multipart: without the token the answer is 401, not a body error."""
    r = client.post("/train", content=b"x" * 10_000, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 401


def test_chunked_upload_over_the_limit_is_413(tmp_path: Path) -> None:
    with make_client(tmp_path, max_upload_bytes=1000) as c:
        boundary = "b0undary"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nbig\r\n--{boundary}\r\n"
                "Content-Disposition: form-data; name=\"file\"; filename=\"n.txt\"\r\n\r\n").encode()

        def chunks() -> object:  # no Content-Length: httpx sends it chunked
            yield head
            for _ in range(100):
                yield b"name\n" * 4000  # 20 kB per chunk, 2 MB in all

        multipart = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        r = c.post("/train", content=chunks(), headers={**AUTH, **multipart})
        assert r.status_code == 413 and "1000 bytes" in r.json()["detail"]
        assert r.headers["connection"] == "close"
        assert c.get("/jobs").json() == []


@pytest.mark.parametrize(
    "fields_, fragment",
    [
        ({"colour": "red"}, "colour: unknown field"),
        ({"time_budget": "0.05"}, "time_budget"),
        ({"time_budget": "4000"}, "time_budget: must be at most 3600 seconds"),
        ({"case": "upper"}, "case"),
        ({"epochs": "1.5"}, "epochs"),
    ],
)
def test_form_problems_are_named_in_api_terms(client: TestClient, fields_: dict[str, str], fragment: str) -> None:
    r = upload(client, **fields_)
    detail = r.json()["detail"]
    assert r.status_code == 422 and fragment in detail, detail
    assert "--" not in detail and "7 days" not in detail and "604800" not in detail


def test_file_must_be_a_multipart_upload(client: TestClient) -> None:
    r = client.post("/train", data={"name": "x", "file": "zzz"}, headers=AUTH)  # urlencoded
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    r = client.post("/train", files={"name": (None, "x"), "file": (None, "zzz")}, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"].startswith("file: must be a file upload")
    r = client.post("/train", files={"name": (None, "x")}, headers=AUTH)
    assert r.status_code == 422 and "file: missing" in r.json()["detail"]
    assert "UploadFile" not in r.text and client.get("/jobs").json() == []


def test_case_field_reaches_the_job_options_when_not_auto(client: TestClient) -> None:
    job_id = upload(client, case="auto").json()["job_id"]
    assert "case" not in client.get(f"/jobs/{job_id}").json()["options"]
    r = upload(client, name="kept", case="keep")
    assert r.status_code == 202
    assert client.get(f"/jobs/{r.json()['job_id']}").json()["options"]["case"] == "keep"


# --- bounded state -------------------------------------------------------------------------------------------

def test_finished_jobs_drop_their_upload_and_only_the_newest_are_kept(tmp_path: Path) -> None:
    with make_client(tmp_path, max_finished_jobs=2) as c:
        ids = []
        for i in range(4):
            job_id = upload(c, name=f"m{i}").json()["job_id"]
            ids.append(job_id)
            if i < 3:
                assert c.post(f"/jobs/{job_id}/cancel", headers=AUTH).json()["status"] == "cancelled"
        # a, b, c cancelled then d queued: creating d kept the two newest finished jobs (b, c).
        assert [j["id"] for j in c.get("/jobs").json()] == [ids[3], ids[2], ids[1]]
        assert c.get(f"/jobs/{ids[0]}").status_code == 404
        job = c.get(f"/jobs/{ids[1]}").json()
        assert job["data_sha256"] == sha256(NAMES_FILE) and job["data_bytes"] == len(NAMES_FILE.encode())
    with sqlite3.connect(tmp_path / "store" / "jobs.sqlite3") as db:
        texts = dict(db.execute("SELECT id, data FROM jobs").fetchall())
    assert texts == {ids[1]: "", ids[2]: "", ids[3]: NAMES_FILE}  # only the queued job keeps its text


def test_jobs_are_listed_in_pages(tmp_path: Path) -> None:
    with make_client(tmp_path, max_queued_jobs=10) as c:
        ids = [upload(c, name=f"p{i}").json()["job_id"] for i in range(3)]
        assert [j["id"] for j in c.get("/jobs", params={"limit": 2}).json()] == [ids[2], ids[1]]
        assert [j["id"] for j in c.get("/jobs", params={"limit": 2, "offset": 2}).json()] == [ids[0]]
        r = c.get("/jobs", params={"limit": 101})
        assert r.status_code == 422 and "limit" in r.json()["detail"]


def test_a_jobs_file_of_the_first_schema_is_migrated(tmp_path: Path) -> None:
    """tests/data/jobs_v0.sqlite3 was written by the first JobStore: one queued job, one cancelled."""
    path = tmp_path / "store" / "jobs.sqlite3"
    path.parent.mkdir()
    shutil.copy(ROOT / "tests" / "data" / "jobs_v0.sqlite3", path)
    JobStore(path)
    JobStore(path)  # a second open (the worker's) changes nothing
    with sqlite3.connect(path) as db:
        versions = [v for (v,) in db.execute("SELECT version FROM schema_migrations ORDER BY version")]
        rows = {r[0]: r[1:] for r in db.execute("SELECT model, status, data, data_sha256, data_bytes FROM jobs")}
    assert versions == list(range(1, LATEST + 1))
    assert rows["heroines"] == ("queued", "Aurora\nBorealis\n", sha256("Aurora\nBorealis\n"), 16)
    assert rows["pets"] == ("cancelled", "", sha256("Rex\nFido\n"), 9)
    with make_client(tmp_path) as c:
        jobs = {j["model"]: j for j in c.get("/jobs").json()}
        assert jobs["pets"]["data_sha256"] == sha256("Rex\nFido\n") and jobs["heroines"]["status"] == "queued"


def test_metric_labels_come_from_bounded_sets(client: TestClient) -> None:
    client.request("BREW", "/names")
    client.get("/no/such/path/12345")
    client.get("/names", params={"model": "nosuchmodel"})
    text = client.get("/metrics").text
    assert 'method="OTHER"' in text and "BREW" not in text
    assert "12345" not in text and 'route="unmatched"' in text
    assert "nosuchmodel" not in text


def test_untrusted_text_is_escaped_in_log_lines(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dinosaurus.api")
    client.get("/names/FAKE%1b[31mERROR")
    lines = [r.getMessage() for r in caplog.records if "FAKE" in r.getMessage()]
    assert lines and all("\x1b" not in line for line in lines)
    assert "/names/FAKE\\x1b[31mERROR" in lines[0]
    assert logs.printable("a\nb\r") == "a\\x0ab\\x0d"
    assert logs.printable("é" * 300).endswith("...[cut]") and logs.printable("é") == "\\xe9"


def test_logs_rotate_at_their_size(tmp_path: Path) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        logs.configure(tmp_path / "service.log", max_bytes=2048, backups=2, console=False)
        for i in range(200):
            logging.getLogger("dinosaurus.test").info("line %d %s", i, "x" * 50)
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["service.log", "service.log.1", "service.log.2"]
    assert all((tmp_path / f).stat().st_size <= 2048 for f in files)


def test_connection_cap_stays_below_the_descriptor_limit() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert connection_cap(10) == 10
    assert connection_cap(10**9) < soft


# --- work per job and the worker -----------------------------------------------------------------------------

def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_supervisor_frees_the_dead_workers_job_and_starts_another(tmp_path: Path) -> None:
    jobs = JobStore(tmp_path / "jobs.sqlite3")  # leases of an hour: only the supervisor can free the job now
    supervisor = WorkerSupervisor(_sleeper, jobs)
    try:
        supervisor.check(now=100.0)
        first = supervisor.proc
        assert first is not None and supervisor.alive()
        job = jobs.create("m", {"epochs": 1}, NAMES_FILE, max_queued=4)
        jobs.lease_seconds = 3600.0
        assert job is not None and jobs.claim_next(worker_name(first.pid)) is not None
        assert jobs.claim_next("another/1") is None  # held by the first worker
        first.kill()
        first.wait()
        supervisor.check(now=101.0)
        claimed = jobs.claim_next("another/1")  # at once, not an hour later
        assert claimed is not None and claimed[0]["id"] == job["id"] and claimed[0]["attempts"] == 2
        assert not supervisor.alive()  # /readyz says not ready until the replacement runs
        supervisor.check(now=101.0 + supervisor.delay)
        assert supervisor.alive() and supervisor.proc is not None and supervisor.proc.pid != first.pid
    finally:
        supervisor.stop()
    assert supervisor.proc is None and first.returncode is not None


def test_readyz_is_503_while_no_worker_runs(client: TestClient) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    services = client.app.state.services
    services.supervisor = WorkerSupervisor(lambda: dead, services.jobs)
    services.supervisor.proc = dead
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["status"] == "no training worker"
    services.supervisor = None
    assert client.get("/readyz").status_code == 200


def test_a_long_loss_history_is_thinned_to_a_bounded_size(tmp_path: Path) -> None:
    jobs = JobStore(tmp_path / "jobs.sqlite3")
    job = jobs.create("m", {"epochs": 1}, NAMES_FILE, max_queued=4)
    assert job is not None and jobs.claim_next("w/1") is not None
    history = [{"epoch": i + 1, "train_loss": 1.0} for i in range(1000)]
    jobs.report(job["id"], 0.5, 1000, history, None)
    kept = [h["epoch"] for h in jobs.get(job["id"])["history"]]
    # 1000 points, every 6th from the first (167 of them: 1, 7, ..., 997) and the last
    assert kept == list(range(1, 1001, 6)) + [1000] and len(kept) <= 200
    jobs.report(job["id"], 0.5, 3, history[:3], None)
    assert [h["epoch"] for h in jobs.get(job["id"])["history"]] == [1, 2, 3]


def test_a_refused_upload_ends_its_connection(tmp_path: Path) -> None:
    with TestClient(_open_app(tmp_path), client=("127.0.0.1", 50000), base_url="http://127.0.0.1:8000") as c:
        malformed = c.post("/train", content=b"--x\r\nnot a part",
                           headers={"Content-Type": "multipart/form-data; boundary=x"})
        builtin = upload(c, name="dinos")
        reads = c.get("/names?count=0")  # a refused read needs no such thing
    assert malformed.status_code == 400 and malformed.headers["connection"] == "close"
    assert builtin.status_code == 409 and builtin.headers["connection"] == "close"
    assert reads.status_code == 422 and "connection" not in reads.headers


def test_memory_freed_by_a_large_request_goes_back_to_the_system() -> None:
    def resident_mb() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    blocks = [np.ones(2000) for _ in range(20_000)]  # 320 MB in 16 KB arrays: glibc's heap, not mmap
    keep = np.ones(2000)  # allocated after them, so the freed ones are not at the heap's top (glibc trims that)
    del blocks
    before = resident_mb()
    if not give_back():
        pytest.skip("this C library has no malloc_trim")
    assert before - resident_mb() > 200  # most of the 320 MB
    assert keep.sum() == 2000
