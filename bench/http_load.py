"""HTTP load: 8 concurrent clients against a real server, idle and while a job trains.

Prints requests/s of /healthz and /names?count=7 on an idle server, then /names throughput
and p99 latency while the worker trains on the dinosaur names; every phase counts failures.
Traffic goes only to 127.0.0.1; each phase is bounded in time.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import numpy as np
from _common import DINOS, serving

CLIENTS = 8
SECONDS = 8.0


async def hammer(url: str, path: str, seconds: float = SECONDS) -> tuple[float, np.ndarray, int]:
    """(requests per second, latencies in seconds, failures) for CLIENTS concurrent loops."""
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal failures
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                r = await client.get(path)
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - start)
            failures += not ok

    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(CLIENTS)))
    return len(latencies) / (time.perf_counter() - start), np.array(latencies), failures


def report(label: str, rps: float, lat: np.ndarray, failures: int) -> None:
    print(f"{label:<28} {rps:8.0f} req/s   p50 {np.percentile(lat, 50) * 1000:6.1f} ms   "
          f"p99 {np.percentile(lat, 99) * 1000:6.1f} ms   failures {failures}")


async def main() -> None:
    with serving() as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            health = await hammer(url, "/healthz")
            report("idle /healthz", *health)
            idle = await hammer(url, "/names?count=7")
            report("idle /names?count=7", *idle)
            files = {"file": ("dinos.txt", Path(DINOS).read_bytes(), "text/plain")}
            job = (await c.post("/train", files=files, data={"name": "loadtest", "epochs": "500"})).json()
            while (await c.get(f"/jobs/{job['job_id']}")).json()["status"] != "running":
                await asyncio.sleep(0.1)
            busy = await hammer(url, "/names?count=7")
            report("training /names?count=7", *busy)
            state = (await c.get(f"/jobs/{job['job_id']}")).json()
            await c.post(f"/jobs/{job['job_id']}/cancel")
        print(f"job was {state['status']} at epoch {state['epochs_done']} during the busy phase")
        print(f"/names idle vs /healthz: {idle[0] / health[0]:.0%} (goal >= 50%)")
        print(f"/names training vs idle: {busy[0] / idle[0]:.0%} (goal >= 50%), "
              f"p99 {np.percentile(busy[1], 99) * 1000:.1f} ms (goal < 100 ms)")
        print(f"failed requests: {health[2] + idle[2] + busy[2]} (goal 0)")


if __name__ == "__main__":
    asyncio.run(main())
