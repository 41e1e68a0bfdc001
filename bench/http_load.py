"""HTTP load with wrk: /names?count=7 against /healthz on one server, idle and while a job trains.

`wrk -t1 -c8 -d8s --latency` (apt-get install wrk) against one `python -m app serve` on a free
loopback port, phases side by side in one run: /healthz, /names?count=7, a training job starts,
/names?count=7 and /healthz again while it trains. Prints requests/s, p50/p99 latency and errors
per phase with the server's CPU time per request (event loop, other threads; from /proc), the ratios
the README quotes, and the model's FLOP limit on this machine: the best
rate of the bare network step (one BLAS thread, a block of 128 rows) divided by the row-steps a
/names?count=7 request takes (counted on 200 seeded requests), i.e. the requests/s one core could
give if it did nothing but the matrix products.

`--baseline DIR` also serves another checkout (e.g. `git archive main`) and alternates the idle
phases of both servers twice, for a before/after in the same conditions.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from _common import DINOS, ROOT, machine, serving, timer
from threadpoolctl import threadpool_limits

from app.charlm.batching import BLOCK_SIZES, run_alone
from app.charlm.model import ModelState
from app.charlm.sample import NameOptions, names_job
from app.charlm.store import ModelStore

SECONDS = 8
CONNECTIONS = 8
NAMES = "/names?count=7"
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def thread_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) the process `pid` has used so far: (its main thread, which runs the
    event loop; all its other threads: batching schedulers, worker threads)."""
    main = other = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        if task.name == str(pid):
            main += seconds
        else:
            other += seconds
    return main, other


def wrk(url: str, pid: int) -> dict[str, float]:
    """One wrk run against the server `pid`: requests/s, p50 and p99 in ms, errors (non-2xx answers and
    socket errors), and the server's CPU ms per request on its event loop and its other threads."""
    before = thread_cpu(pid)
    out = subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout

    def latency(pct: str) -> float:
        value, unit = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M).groups()  # type: ignore[union-attr]
        return float(value) * UNITS[unit]

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    errors += sum(int(g) for g in sockets.groups()) if sockets else 0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = rps * SECONDS
    loop, other = (1e3 * (b - a) / requests for a, b in zip(before, thread_cpu(pid), strict=True))
    return {"rps": rps, "p50": latency("50"), "p99": latency("99"), "errors": errors, "loop": loop, "other": other}


def report(label: str, r: dict[str, float]) -> None:
    print(f"{label:<30} {r['rps']:8.1f} req/s   p50 {r['p50']:6.1f} ms   p99 {r['p99']:6.1f} ms   "
          f"errors {r['errors']:.0f}   CPU/request: event loop {r['loop']:.2f} ms, other threads {r['other']:.2f} ms")


def flop_limit() -> tuple[float, float, float]:
    """(row-steps per /names?count=7 request, FLOP per row-step, the step's best FLOP/s here)."""
    model = ModelStore().load("dinos")
    step = model.net.stepper(model.params)
    rows: list[int] = []

    def counting(ids: np.ndarray, state: ModelState) -> tuple[np.ndarray, ModelState]:
        rows.append(len(ids))
        return step(ids, state)

    for seed in range(200):
        run_alone(names_job(model, NameOptions(count=7, seed=seed)), counting)
    per_request = sum(rows) / 200
    # multiply-adds per row-step: the nonzero weights of every matrix but layer 0's input one (a row
    # gather); the zero blocks between ensemble members are never multiplied (members.stepper). x2 for FLOP
    flop = 2 * sum(np.count_nonzero(v) for k, v in model.params.items() if v.ndim == 2 and k != "l0.Wx")
    n = BLOCK_SIZES[-1]
    state = model.net.zero_state(n, model.params["Wy"].dtype)
    ids = np.ones(n, dtype=np.int64)
    best = np.inf
    with threadpool_limits(1):
        for _ in range(30):
            with timer() as t:
                step(ids, state)
            best = min(best, t())
    return per_request, flop, flop * n / best


def compare(baseline: Path) -> None:
    """Idle /healthz and /names?count=7 on the baseline checkout and on this one, alternated twice."""
    for _ in range(2):
        for label, root in (("baseline", baseline), ("this", ROOT)):
            with serving(root=root) as (url, _, pid):
                httpx.get(url + NAMES, timeout=30)
                health, names = wrk(url + "/healthz", pid), wrk(url + NAMES, pid)
            report(f"{label} idle /healthz", health)
            report(f"{label} idle {NAMES}", names)
            print(f"{label}: {NAMES} vs /healthz {names['rps'] / health['rps']:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with (idle phases only)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    print(f"machine: {machine()}; the server samples with 1 BLAS thread")
    if args.baseline is not None:
        compare(args.baseline)
    per_request, flop, rate = flop_limit()
    with serving() as (url, _, pid):
        httpx.get(url + NAMES, timeout=30)  # the scheduler starts on first use
        health = wrk(url + "/healthz", pid)
        report("idle /healthz", health)
        idle = wrk(url + NAMES, pid)
        report(f"idle {NAMES}", idle)
        files = {"file": ("dinos.txt", Path(DINOS).read_bytes(), "text/plain")}
        job = httpx.post(url + "/train", files=files, data={"name": "loadtest", "epochs": "500"}, timeout=30).json()
        while httpx.get(f"{url}/jobs/{job['job_id']}", timeout=30).json()["status"] != "running":
            time.sleep(0.1)
        busy = wrk(url + NAMES, pid)
        report(f"training {NAMES}", busy)
        busy_health = wrk(url + "/healthz", pid)
        report("training /healthz", busy_health)
        state = httpx.get(f"{url}/jobs/{job['job_id']}", timeout=30).json()
        httpx.post(f"{url}/jobs/{job['job_id']}/cancel", timeout=30)
    print(f"job was {state['status']} at epoch {state['epochs_done']} during the training phase")
    print(f"{NAMES} vs /healthz: idle {idle['rps'] / health['rps']:.1%}, while training "
          f"{busy['rps'] / busy_health['rps']:.1%} (goal >= 30%)")
    print(f"p99 of {NAMES}: idle {idle['p99']:.1f} ms, while training {busy['p99']:.1f} ms (goal < 100 ms)")
    print(f"errors: {sum(r['errors'] for r in (health, idle, busy, busy_health)):.0f} (goal 0)")
    print(f"FLOP limit: {per_request:.0f} row-steps x {flop / 1e6:.2f} MFLOP per request, step at "
          f"{rate / 1e9:.1f} GFLOP/s on one core -> {rate / (per_request * flop):.0f} req/s; measured idle "
          f"{idle['rps']:.0f} req/s ({idle['rps'] * per_request * flop / rate:.0%} of the limit)")


if __name__ == "__main__":
    main()
