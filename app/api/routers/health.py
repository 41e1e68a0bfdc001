"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import SQLAlchemyError

from app.charlm.errors import ModelNotFound

from ..deps import ServicesDep
from ..schemas import Status

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Status)
async def healthz() -> Status:
    return Status(status="ok")


@router.get("/readyz", response_model=Status, responses={503: {"model": Status}})
async def readyz(services: ServicesDep) -> Response | Status:
    loaded = sorted({name for name, _ in services.registry.loaded()})
    if not services.ready:
        return JSONResponse({"status": "loading", "models": loaded}, status_code=503)
    if services.supervisor is not None and not services.supervisor.alive():
        return JSONResponse({"status": "no training worker", "models": loaded}, status_code=503)
    try:
        await asyncio.to_thread(services.jobs.ping)
    except SQLAlchemyError:
        return JSONResponse({"status": "job database unavailable", "models": loaded}, status_code=503)
    return Status(status="ready", models=loaded)


@router.get("/metrics")
def metrics(services: ServicesDep) -> Response:
    active = {}
    for name in services.store.names():
        try:
            active[name] = services.store.active_version(name)
        except ModelNotFound:
            continue
    return Response(services.metrics.render(services.jobs, active), media_type=CONTENT_TYPE_LATEST)
