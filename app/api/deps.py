"""FastAPI dependencies: the shared service objects and the write-access rule (contract §3)."""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from app.charlm.store import ModelStore

from .admission import SamplingGate
from .jobs import JobStore
from .metrics import Metrics
from .registry import ModelRegistry
from .settings import Settings
from .supervisor import WorkerSupervisor

# A request that passed through a proxy is not a loopback client, whatever its socket peer.
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip", "x-forwarded-host", "x-client-ip",
                      "true-client-ip", "x-original-forwarded-for", "via")
LOOPBACK_NAMES = ("localhost",)  # a Host header naming this machine (checked only to stop DNS rebinding)
CLOSE = {"Connection": "close"}  # a refused writer's body is not worth receiving: end the connection


@dataclass
class Services:
    """Everything a request handler may need, created once per app in the lifespan."""

    settings: Settings
    store: ModelStore
    registry: ModelRegistry
    jobs: JobStore
    metrics: Metrics
    gate: SamplingGate
    supervisor: WorkerSupervisor | None = None
    loopback_writes: bool = True  # False when listening beyond loopback without a token: no writes at all
    ready: bool = False


async def get_services(request: Request) -> Services:
    """Async, though it never waits: FastAPI runs a plain function dependency in a worker thread,
    one thread hop (and GIL hand-off) per request."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def is_loopback(host: str) -> bool:
    """True for a loopback IP address (IPv4, IPv6 or IPv4-mapped IPv6); names are never trusted."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def socket_peer(request: Request) -> str:
    """The address of the TCP peer: the ASGI server must not rewrite it from forwarded headers
    (`serve` runs uvicorn with proxy headers off)."""
    client = request.scope.get("client")
    return str(client[0]) if client else ""


def require_writer(request: Request, services: ServicesDep) -> None:
    """With a token configured, demand it; without one, accept only direct loopback clients.

    Runs before any request body is read (write endpoints read their bodies themselves).
    """
    token = services.settings.admin_token
    if token:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer", **CLOSE})
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(403, "invalid bearer token", headers=CLOSE)
        return
    refusal = tokenless_refusal(request, services)
    if refusal is not None:
        raise HTTPException(403, refusal, headers=CLOSE)


def tokenless_refusal(request: Request, services: Services) -> str | None:
    """Why this request may not write without a token (None: it may): writes without a token are
    for direct loopback clients only, never through a proxy, and never for another site's page."""
    if not services.loopback_writes:
        return ("write endpoints are disabled: the service listens beyond loopback and DINO_ADMIN_TOKEN "
                "is not set; set it and send it as a bearer token")
    forwarded = any(h in request.headers for h in FORWARDING_HEADERS)
    if forwarded or not is_loopback(socket_peer(request)):
        return ("write endpoints accept only direct loopback clients unless DINO_ADMIN_TOKEN is set; set it "
                "and send it as a bearer token")
    if not (loopback_host(request.headers.get("host", "")) and same_machine_page(request)):
        # A page from another site (or a DNS-rebinding one) in the local user's browser: without a
        # token, the browser's own loopback connection must not lend it write access.
        return ("write endpoints without DINO_ADMIN_TOKEN accept requests only from this machine's own "
                "pages and tools (Host and Origin must be loopback)")
    return None


def loopback_host(host_header: str) -> bool:
    """True when a Host (or Origin) authority names this machine: localhost or a loopback address."""
    host = host_header.rsplit("@", 1)[-1]
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.lower().rstrip(".") in LOOPBACK_NAMES or is_loopback(host)


def same_machine_page(request: Request) -> bool:
    """False for a browser request made by a page of another site (Origin or Sec-Fetch-Site say so)."""
    if request.headers.get("sec-fetch-site", "none") in ("cross-site", "same-site"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # curl, scripts and same-origin navigations send none
    return origin != "null" and loopback_host(origin.split("://", 1)[-1])


WriterDep = Depends(require_writer)
