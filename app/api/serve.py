"""`python -m app serve [--no-worker]`: the API (and its training worker) under uvicorn, with connection limits."""

from __future__ import annotations

import ipaddress
import logging
import resource
import socket

import uvicorn
from threadpoolctl import threadpool_limits

from . import logs
from .connections import guarded_protocol
from .main import create_app
from .settings import Settings

log = logging.getLogger("dinosaurus.api")
RESERVED_FDS = 128  # descriptors kept for models, SQLite, logs, threads and the worker pipe


def binds_loopback_only(host: str) -> bool:
    """True when every address `host` stands for is a loopback address (the operator's own setting)."""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def connection_cap(wanted: int) -> int:
    """`wanted`, lowered to stay below the process's file descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - RESERVED_FDS))


def serve(settings: Settings, host: str, port: int) -> None:
    """The API on host:port; `settings.start_worker` False makes it a replica without a worker."""
    # Replicas on a shared store each keep their own log (two processes rotating one file lose lines).
    log_name = "service.log" if settings.start_worker else f"service-{socket.gethostname()}-{port}.log"
    logs.configure(settings.store_dir / "logs" / log_name, settings.log_max_bytes, settings.log_backups,
                   console=True)
    loopback = binds_loopback_only(host)
    if not loopback and not settings.admin_token:
        log.warning("listening on %s without DINO_ADMIN_TOKEN: write endpoints (POST /train, cancel) are "
                    "refused; set DINO_ADMIN_TOKEN to enable them", host)
    cap = connection_cap(settings.max_connections)
    if cap < settings.max_connections:
        log.warning("connection cap lowered to %d to stay below the file descriptor limit", cap)
    # Requests sample small batches from several threads at once: one BLAS thread each is
    # faster than every call fanning out over both cores and fighting for them.
    threadpool_limits(1)
    uvicorn.run(
        create_app(settings, loopback_writes=loopback),
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=15,
        proxy_headers=False,  # the write rule needs the socket peer; forwarded headers never rewrite it
        http=guarded_protocol(settings.header_timeout, settings.body_timeout, cap,
                              min(cap, settings.max_connections_per_client)),
    )
