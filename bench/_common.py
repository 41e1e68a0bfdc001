"""Helpers shared by the bench scripts: data splits and timing. Not part of the product."""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from app.charlm.data import parse_names

ROOT = Path(__file__).resolve().parents[1]
DINOS = ROOT / "data" / "dinos.txt"
SONNETS = ROOT / "data" / "shakespeare.txt"


INT_OPTIONS = ("hidden", "layers", "members", "epochs", "batch_size", "window", "seed", "schedule_epochs")


def config_overrides(settings: list[str]) -> dict[str, Any]:
    """TrainConfig options from `--set key=value` arguments (e.g. `lr=6e-3`, `hidden=512`)."""
    pairs = [s.split("=", 1) for s in settings]
    return {k: int(v) if k in INT_OPTIONS else float(v) for k, v in pairs}


def names_split(seed: int = 123, fraction: float = 0.1) -> tuple[list[str], list[str]]:
    """A random (train, held-out) split of the distinct dinosaur names."""
    names = list(dict.fromkeys(parse_names(DINOS.read_text())))
    order = np.random.default_rng(seed).permutation(len(names))
    n_test = int(round(len(names) * fraction))
    return [names[i] for i in order[n_test:]], [names[i] for i in order[:n_test]]


def sonnets_split(n_train: int = 140) -> tuple[str, str]:
    """The first `n_train` sonnets and the rest, split on blank lines."""
    sonnets = [s for s in re.split(r"\n\s*\n", SONNETS.read_text()) if s.strip()]  # blank lines may hold spaces
    return "\n\n".join(sonnets[:n_train]) + "\n\n", "\n\n".join(sonnets[n_train:]) + "\n"


@contextmanager
def timer() -> Iterator[Callable[[], float]]:
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_update(loss, params, opt) -> None:  # type: ignore[no-untyped-def]
    """One PyTorch optimiser step with the same global-norm clipping (1.0) as ours."""
    import torch

    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


def machine() -> str:
    """CPU model, core count and BLAS library with its thread count, printed with every figure."""
    from threadpoolctl import threadpool_info

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    blas = ", ".join(f"{i['internal_api']} {i.get('version')} ({i['num_threads']} threads)" for i in threadpool_info())
    return f"{cpu}, {os.cpu_count()} cores, {blas}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_answering(url: str, proc: subprocess.Popen[bytes], seconds: float = 60.0) -> None:
    """Wait until `url` answers 200; RuntimeError if `proc` (its server) exits first or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited (code {proc.returncode}) before {url} answered")
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")


@contextmanager
def serving(env: dict[str, str] | None = None, root: Path = ROOT) -> Iterator[tuple[str, int, int]]:
    """`python -m app serve` on a free loopback port with an empty store, ready: yields (url, port, pid).
    `root`: the checkout whose `app` to serve (another one, e.g. the main branch, for a before/after)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as store:
        environ = {**os.environ, "DINO_STORE_DIR": store, **(env or {})}
        server = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port)], cwd=root, env=environ,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_answering(url + "/readyz", server)
            yield url, port, server.pid
        finally:
            server.terminate()
            server.wait(30)



@contextmanager
def nginx_in_front(upstreams: list[str], root: Path) -> Iterator[str]:
    """nginx on a free loopback port with deploy/nginx/dinosaurus.conf.template (the compose file's load
    balancer) in front of `upstreams` ("127.0.0.1:PORT"); yields its URL once it answers /healthz."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    site = string.Template((ROOT / "deploy" / "nginx" / "dinosaurus.conf.template").read_text())
    (root / "site.conf").write_text(site.safe_substitute(
        DINO_UPSTREAM_1=upstreams[0], DINO_UPSTREAM_2=upstreams[-1], DINO_LISTEN=f"127.0.0.1:{port}"))
    temp = " ".join(f"{kind}_temp_path {root}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    user = "user root;" if os.geteuid() == 0 else ""  # workers may then enter `root` (a private temp dir)
    (root / "nginx.conf").write_text(f"{user} daemon off; pid {root}/nginx.pid; error_log {root}/error.log;\n"
                                     f"events {{ worker_connections 512; }}\n"
                                     f"http {{ access_log off; {temp} include {root}/site.conf; }}\n")
    proc = subprocess.Popen([binary, "-p", str(root), "-c", str(root / "nginx.conf")], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_answering(url + "/healthz", proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
