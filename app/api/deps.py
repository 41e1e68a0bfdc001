"""FastAPI dependencies: the shared service objects and the write-access rule (contract §3)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from app.charlm.store import ModelStore

from .jobs import JobStore
from .metrics import Metrics
from .registry import ModelRegistry
from .settings import Settings

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@dataclass
class Services:
    """Everything a request handler may need, created once per app in the lifespan."""

    settings: Settings
    store: ModelStore
    registry: ModelRegistry
    jobs: JobStore
    metrics: Metrics
    ready: bool = False


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def require_writer(request: Request, services: ServicesDep) -> None:
    """With a token configured, demand it; without one, accept only loopback clients."""
    token = services.settings.admin_token
    if token:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(403, "invalid bearer token")
        return
    host = request.client.host if request.client else ""
    if host not in LOOPBACK:
        raise HTTPException(403, "write endpoints accept only loopback clients unless DINO_ADMIN_TOKEN is set")


WriterDep = Depends(require_writer)
