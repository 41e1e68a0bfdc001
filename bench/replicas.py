"""API replicas: /names?count=7 throughput with 1 and with 2 `serve --no-worker` replicas behind
nginx (the compose file's load balancer config), measured side by side with wrk on 127.0.0.1.

The two set-ups alternate (1, 2, 1, 2, ...) so that a busy neighbour on the machine weighs on both;
the medians are compared. Each replica's CPU time (utime + stime from /proc) gives requests per
CPU-second, the per-core figure: how much one more core, given to one more replica, can add.
Needs wrk and nginx (Debian: apt-get install wrk nginx-light).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, free_port, machine, nginx_in_front, wait_answering

SECONDS = 8
CONNECTIONS = 8  # the service's own cap is 8 sampling requests at once per replica (more: 429)
ROUNDS = 3
PATH = "/names?count=7"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (/proc/PID/stat fields 14 and 15, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_replica(store: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "DINO_STORE_DIR": store}
    proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--no-worker", "--port", str(port)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_answering(f"http://127.0.0.1:{port}/readyz", proc)
    return proc, port


def wrk(url: str) -> tuple[float, int]:
    """(requests per second, responses that were not 2xx or failed) of one wrk run."""
    out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", url + PATH], capture_output=True,
                         text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return rps, bad + (sum(int(n) for n in errors.groups()) if errors else 0)


def main() -> None:
    print(f"machine: {machine()}; load average before: {os.getloadavg()[0]:.2f}")
    print(f"wrk: {CONNECTIONS} connections, {SECONDS} s per run, {ROUNDS} rounds, GET {PATH}, via nginx")
    results: dict[int, list[tuple[float, float, int]]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as store, tempfile.TemporaryDirectory() as nginx_root:
        replicas = [start_replica(store) for _ in range(2)]
        try:
            for _ in range(ROUNDS):
                for count in (1, 2):
                    used = replicas[:count]
                    root = Path(nginx_root) / f"r{count}"
                    root.mkdir(exist_ok=True)
                    with nginx_in_front([f"127.0.0.1:{port}" for _, port in used], root) as url:
                        before = sum(cpu_seconds(p.pid) for p, _ in used)
                        rps, bad = wrk(url)
                        cpu = sum(cpu_seconds(p.pid) for p, _ in used) - before
                    results[count].append((rps, rps * SECONDS / max(cpu, 1e-9), bad))
                    print(f"  {count} replica(s): {rps:7.1f} req/s, {results[count][-1][1]:6.1f} req per replica "
                          f"CPU-second, {bad} failed", flush=True)
        finally:
            for proc, _ in replicas:
                proc.terminate()
                proc.wait(30)
    med = {c: sorted(r[0] for r in rs)[len(rs) // 2] for c, rs in results.items()}
    per_cpu = sorted(r[1] for rs in results.values() for r in rs)
    print(f"median: 1 replica {med[1]:.1f} req/s, 2 replicas {med[2]:.1f} req/s, ratio 2/1 = {med[2] / med[1]:.2f}")
    print(f"per core: {per_cpu[len(per_cpu) // 2]:.1f} requests per replica CPU-second (median of all runs); "
          f"failed responses: {sum(r[2] for rs in results.values() for r in rs)}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
