"""Abuse scenario: /healthz (and /jobs) latency while heavy and slow clients run against a real server.

Phases, each bounded in time and in the number of clients; traffic goes only to 127.0.0.1:
  idle      - nothing else runs;
  heavy     - HEAVY_CLIENTS loops of the most expensive /names and /poem requests;
  slow      - SLOW_CLIENTS half-sent requests, stalled bodies and trickled headers;
  upload    - an unauthorised chunked upload of up to 64 MiB: how much is read before the 401.
Prints p50 / p99 / max latency of a /healthz probe every 50 ms per phase, the heavy requests'
status counts, how many slow connections the server closed, and the machine.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import numpy as np
from _common import machine, serving

PHASE_SECONDS = 8.0
HEAVY_CLIENTS = 16
SLOW_CLIENTS = 300
TOKEN = "abuse-bench"
LIMITS = {"DINO_HEADER_TIMEOUT": "4", "DINO_BODY_TIMEOUT": "4"}  # shorter than the defaults, to fit a phase
HEAVY_PATHS = ("/names?count=1000&min_length=100&max_length=100", "/poem?length=2000")


async def probe(url: str, path: str, seconds: float) -> np.ndarray:
    """Latencies (s) of `path` asked every 50 ms on one kept-alive connection; a failure counts as 10 s."""
    latencies = []
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=10) as c:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                ok = (await c.get(path)).status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - start if ok else 10.0)
            await asyncio.sleep(0.05)
    return np.array(latencies)


def report(label: str, lat: np.ndarray, extra: str = "") -> None:
    print(f"{label:<22} p50 {np.percentile(lat, 50) * 1000:7.1f} ms   p99 {np.percentile(lat, 99) * 1000:7.1f} ms   "
          f"max {lat.max() * 1000:7.1f} ms   n={len(lat)}  {extra}")


async def heavy_clients(url: str, seconds: float) -> Counter[int]:
    statuses: Counter[int] = Counter()
    deadline = time.perf_counter() + seconds

    async def loop(i: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            while time.perf_counter() < deadline:
                try:
                    statuses[(await c.get(HEAVY_PATHS[i % 2])).status_code] += 1
                except httpx.HTTPError:
                    statuses[0] += 1

    await asyncio.gather(*(loop(i) for i in range(HEAVY_CLIENTS)))
    return statuses


async def slow_clients(port: int, seconds: float) -> tuple[int, int]:
    """(connections opened, connections the server closed) for half-sent, stalled and trickled requests."""
    closed = 0

    async def one(i: int) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        kind = i % 3
        if kind == 0:  # headers never finished
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        elif kind == 1:  # a body announced and never sent
            writer.write(f"POST /train HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: "
                         "multipart/form-data; boundary=b\r\nContent-Length: 1000000\r\n\r\n--b\r\n".encode())
        try:
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                if kind == 2:  # headers trickled one byte a second
                    writer.write(b"X")
                try:
                    if await asyncio.wait_for(reader.read(1024), 1.0) == b"":
                        return True
                except TimeoutError:
                    continue
            return False
        except (ConnectionError, OSError):
            return True
        finally:
            writer.close()

    results = await asyncio.gather(*(one(i) for i in range(SLOW_CLIENTS)))
    closed = sum(results)
    return len(results), closed


def unauthorised_upload(url: str) -> tuple[int, int]:
    """(status, bytes the client managed to send) for a 64 MiB chunked upload without the token."""
    sent = 0

    def body():  # type: ignore[no-untyped-def]
        nonlocal sent
        for _ in range(1024):
            sent += 65536
            yield b"x" * 65536

    try:
        r = httpx.post(url + "/train", content=body(), timeout=30,
                       headers={"Content-Type": "multipart/form-data; boundary=b"})
        return r.status_code, sent
    except httpx.HTTPError:
        return 0, sent


async def main() -> None:
    print(machine())
    print("server limits: defaults, except " + ", ".join(f"{k}={v}" for k, v in LIMITS.items()))
    with serving({"DINO_ADMIN_TOKEN": TOKEN, **LIMITS}) as (url, port, _):
        report("idle /healthz", await probe(url, "/healthz", PHASE_SECONDS))

        heavy = asyncio.create_task(heavy_clients(url, PHASE_SECONDS))
        health, jobs = await asyncio.gather(probe(url, "/healthz", PHASE_SECONDS), probe(url, "/jobs", PHASE_SECONDS))
        statuses = await heavy
        report("heavy: /healthz", health)
        report("heavy: /jobs (sync)", jobs, "heavy statuses " + ", ".join(
            f"{s}: {n}" for s, n in sorted(statuses.items())))

        slow = asyncio.create_task(slow_clients(port, PHASE_SECONDS))
        health = await probe(url, "/healthz", PHASE_SECONDS)
        opened, closed = await slow
        report("slow: /healthz", health, f"slow connections {opened}, closed by the server {closed}")

        status, sent = await asyncio.to_thread(unauthorised_upload, url)
        print(f"unauthorised chunked upload: status {status} after the client sent {sent / 2**20:.1f} MiB "
              "(of 64 MiB offered)")


if __name__ == "__main__":
    asyncio.run(main())
