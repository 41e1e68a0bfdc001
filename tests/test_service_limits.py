"""Limits against a real `python -m app serve` on loopback: slow and greedy clients, a killed worker.

Every loop is bounded; a limit that fails to act shows up as a socket timeout or a failed wait.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import DINOS
from .test_api import NAMES_FILE
from .test_service_process import Server, wait_for, worker_pids

TOKEN = "limits-token"
LIMITS = {
    "DINO_ADMIN_TOKEN": TOKEN,
    "DINO_HEADER_TIMEOUT": "2",
    "DINO_BODY_TIMEOUT": "2",
    "DINO_MAX_CONNECTIONS": "6",
    "DINO_MAX_UPLOAD_BYTES": "100000",
    "DINO_MAX_SAMPLING_REQUESTS": "2",
    "DINO_REQUEST_WORK_SECONDS": "3",
    "DINO_MAX_JOB_SECONDS": "1",
}
HEAVY = "/names?count=1000&min_length=100&max_length=100"  # about 7 s of sampling on 2 idle cores
WAIT = 15.0  # seconds a socket waits for the server before the test fails


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("limits") / "store", env=LIMITS)
    server.client.headers["Authorization"] = f"Bearer {TOKEN}"
    yield server
    server.stop()


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)


def closed_by_server(sock: socket.socket) -> bool:
    """Read until the server closes (True) or answers (False); a silent server fails with a timeout."""
    try:
        data = sock.recv(65536)
    except ConnectionResetError:
        return True
    return data == b""


def response_status(sock: socket.socket) -> int:
    head = sock.recv(65536).split(b"\r\n", 1)[0]
    return int(head.split()[1])


def test_half_sent_headers_are_cut_off(limited: Server) -> None:
    with connect(limited) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the blank line never comes
        assert closed_by_server(sock)


def test_trickled_headers_do_not_extend_the_deadline(limited: Server) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200 + b"\r\n\r\n"
    closed = False
    with connect(limited) as sock:
        for i in range(len(request)):  # one byte every 0.1 s: 21 s for all, the deadline is 2 s
            try:
                sock.sendall(request[i : i + 1])
            except OSError:
                closed = True
                break
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:
                closed = closed_by_server(sock)
                break
    assert closed


def test_stalled_body_is_cut_off_without_a_traceback(limited: Server) -> None:
    with connect(limited) as sock:
        sock.sendall(f"POST /train HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                     "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 5000\r\n\r\n--b\r\n".encode())
        assert closed_by_server(sock)
    assert limited.client.get("/healthz").status_code == 200
    assert b"Traceback" not in limited.log_path.read_bytes()


def test_connections_beyond_the_cap_are_closed(limited: Server) -> None:
    idle = [connect(limited) for _ in range(6)]  # the cap; each waits for headers that never come
    try:
        with connect(limited) as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert closed_by_server(extra)
        assert all(closed_by_server(sock) for sock in idle)  # the header deadline frees them
    finally:
        for sock in idle:
            sock.close()
    assert limited.client.get("/healthz").status_code == 200


def test_upload_is_refused_before_its_body_is_read(limited: Server) -> None:
    head = ("POST /train HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n{auth}\r\n")
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="n.txt"\r\n\r\n'
    first = b"%x\r\n%s\r\n" % (len(part), part)
    chunk = b"%x\r\n%s\r\n" % (20000, b"name\n" * 4000)
    with connect(limited) as sock:  # no token: 401 while the body has barely started
        sock.sendall(head.format(auth="").encode() + first + chunk)
        assert response_status(sock) == 401
    with connect(limited) as sock:  # 9 chunks of 20 kB pass the 100 kB limit (plus 64 kB for the form)
        sock.sendall(head.format(auth=f"Authorization: Bearer {TOKEN}\r\n").encode() + first + chunk * 9)
        assert response_status(sock) == 413  # the terminating chunk was never sent
    assert limited.client.get("/jobs").json() == []


def test_heavy_requests_are_bounded_and_light_ones_keep_answering(limited: Server) -> None:
    statuses: list[int] = []
    retry_after: list[str | None] = []

    def heavy() -> None:
        with httpx.Client(base_url=limited.url, timeout=60) as c:
            r = c.get(HEAVY)
            statuses.append(r.status_code)
            retry_after.append(r.headers.get("retry-after"))

    threads = [threading.Thread(target=heavy) for _ in range(5)]
    for t in threads:
        t.start()
    healthz = limited.client.get("/healthz").status_code
    jobs = limited.client.get("/jobs").status_code
    still_running = any(t.is_alive() for t in threads)
    for t in threads:
        t.join(60)
    assert healthz == 200 and jobs == 200 and still_running  # answered while sampling went on
    assert sorted(statuses).count(429) >= 3  # two slots: at least three of five refused at once
    assert all(ra == "1" for s, ra in zip(statuses, retry_after, strict=True) if s == 429)
    assert all(s in (200, 422, 429) for s in statuses)  # 422: over the 3 s budget on a busy machine


def test_a_client_that_goes_away_stops_its_sampling(limited: Server) -> None:
    def stopped(reason: str) -> bool:
        return f'dino_sampling_stopped_total{{reason="{reason}"}} 1.0' in limited.client.get("/metrics").text

    assert not stopped("disconnect")
    with connect(limited) as sock:
        sock.sendall(f"GET {HEAVY} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        select.select([sock], [], [], 0.5)  # let it start
    wait_for(lambda: stopped("disconnect"), 30, "the sampling to stop on disconnect")


def test_every_job_is_capped_by_the_server(limited: Server) -> None:
    job_id = limited.upload(DINOS.read_text(), "capped", epochs="500", hidden="64")
    wait_for(lambda: limited.job(job_id)["status"] in ("succeeded", "failed"), 120, "the capped job to end")
    job = limited.job(job_id)
    assert job["status"] == "succeeded" and job["options"]["epochs"] == 500 and job["epochs_done"] < 500


def test_a_killed_worker_is_replaced_and_its_job_resumed_then_bounded(tmp_path: Path) -> None:
    server = Server(tmp_path / "store", env={"DINO_JOB_MAX_ATTEMPTS": "2"})
    try:
        running = server.upload(DINOS.read_text(), "long", epochs="300", hidden="64")
        wait_for(lambda: server.job(running)["status"] == "running", 60, "training to start")
        (old,) = worker_pids(server.store)
        os.kill(old, signal.SIGKILL)
        # The replacement takes the job at once (the supervisor expired the dead worker's lease).
        new = wait_for(lambda: worker_pids(server.store) - {old}, 30, "a new worker")
        wait_for(lambda: server.job(running)["attempts"] == 2, 30, "the job's second attempt")
        assert server.job(running)["status"] == "running" and server.job(running)["error"] is None
        wait_for(lambda: server.client.get("/readyz").status_code == 200, 30, "ready again")
        (second,) = new
        os.kill(second, signal.SIGKILL)  # two attempts allowed: the job fails, saying why
        wait_for(lambda: server.job(running)["status"] == "failed", 30, "the job to give up")
        assert "2 times" in server.job(running)["error"]
        wait_for(lambda: worker_pids(server.store) - {old, second}, 30, "a third worker")
        after = server.upload(NAMES_FILE, "after", epochs="2", hidden="16")
        wait_for(lambda: server.job(after)["status"] == "succeeded", 120, "a job on the new worker")
    finally:
        server.stop()


def test_beyond_loopback_without_token_writes_are_refused_and_said(tmp_path: Path) -> None:
    server = Server(tmp_path / "store", host="0.0.0.0")
    try:
        r = server.client.post("/train", files={"file": ("n.txt", NAMES_FILE.encode())}, data={"name": "x"})
        assert r.status_code == 403 and "DINO_ADMIN_TOKEN" in r.json()["detail"]
        assert b"write endpoints (POST /train, cancel) are refused" in server.log_path.read_bytes()
    finally:
        server.stop()


def test_one_client_cannot_hold_every_connection(tmp_path: Path) -> None:
    server = Server(tmp_path / "store", env={"DINO_HEADER_TIMEOUT": "5", "DINO_MAX_CONNECTIONS": "50",
                                             "DINO_MAX_CONNECTIONS_PER_CLIENT": "3"})
    idle = [connect(server) for _ in range(3)]  # one client's share, waiting for headers that never come
    try:
        with connect(server) as fourth:  # the same client address once more: closed at once
            fourth.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert closed_by_server(fourth)
        # Another client (another loopback source address) is still served meanwhile.
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT,
                                      source_address=("127.0.0.2", 0)) as other:
            other.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert response_status(other) == 200
    finally:
        for sock in idle:
            sock.close()
        server.stop()
