"""The app factory: lifespan (load models, open the job database, run the worker), routers, errors, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from threadpoolctl import threadpool_limits

from app import __version__

from .admission import CLIENT_GONE, SamplingGate
from .bodylimit import BodyLimit
from .database import reason
from .deps import CLOSE, Services
from .logs import printable
from .metrics import Metrics
from .middleware import BlankMeansDefault, Observe
from .registry import ModelRegistry
from .routers import health, info, jobs, models, names, page, poem, score, train
from .settings import Settings
from .supervisor import WorkerSupervisor, start_worker

log = logging.getLogger("dinosaurus.api")
BUILTIN_MODELS = ("dinos", "shakespeare")
# A model write takes seconds; a temporary file older than this was left by a writer that died.
# Younger ones may belong to a worker or replica writing into the same (shared) store right now.
PARTIAL_WRITE_AGE = 600.0
FASTAPI_UNREADABLE_BODY = "There was an error parsing the body"  # fastapi/routing.py, for any other decode error


def create_app(settings: Settings | None = None, *, loopback_writes: bool = True) -> FastAPI:
    """The service; `loopback_writes=False` (listening beyond loopback) refuses writes unless a token is set."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = settings.store
        settings.store_dir.mkdir(parents=True, exist_ok=True)
        removed = store.remove_partial_writes(older_than=PARTIAL_WRITE_AGE)
        # Jobs are never touched here: one left running by a dead process is resumed by a worker
        # once its lease expires (jobs.py), whichever replica or machine that worker is on.
        jobs_db = await asyncio.to_thread(settings.open_jobs)
        if removed:
            log.warning("recovered: %d partial writes removed", removed)
        metrics = Metrics()
        gate = SamplingGate(settings.max_sampling_requests, settings.request_work_seconds, metrics,
                            threads=os.cpu_count() or 1)
        services = Services(settings, store, ModelRegistry(store), jobs_db, metrics, gate,
                            loopback_writes=loopback_writes or bool(settings.admin_token))
        app.state.services = services
        for name in BUILTIN_MODELS:
            if name in store.names():
                model, _ = await asyncio.to_thread(services.registry.get, name)
                if model.kind == "names":  # its batching scheduler too, before the first request
                    await asyncio.to_thread(services.registry.engine, name)
        # Sampling steps small batches on the scheduler threads while the event loop serves: one BLAS
        # thread per call is faster than every call fanning out over both cores and fighting for them.
        blas = threadpool_limits(1)
        services.ready = True
        watchdog = None
        if settings.start_worker:
            services.supervisor = WorkerSupervisor(lambda: start_worker(settings), jobs_db)
            watchdog = asyncio.create_task(services.supervisor.watch())
        try:
            yield
        finally:
            services.ready = False
            if watchdog is not None and services.supervisor is not None:
                watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watchdog
                await asyncio.to_thread(services.supervisor.stop)
            jobs_db.close()
            await asyncio.to_thread(services.registry.close)
            blas.restore_original_limits()

    app = FastAPIOffline(  # /docs and /redoc with their scripts served by us: they work offline
        favicon_url="/favicon.svg",
        title="Dinosaurus",
        version=__version__,
        description="Character-level language models in NumPy: invent names, complete sonnets, train on your list.",
        lifespan=lifespan,
    )
    # Added first, so it is the innermost middleware: the route's reads (inside the exception
    # handlers) are the ones that raise its 413, not the http middlewares' own receive tasks.
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes + train.MULTIPART_OVERHEAD)

    @app.exception_handler(413)
    async def too_large(request: Request, exc: Exception) -> JSONResponse:
        """The body limit and the upload check both end here: one message, and stop the sender."""
        return JSONResponse({"detail": f"upload is larger than {settings.max_upload_bytes} bytes"},
                            status_code=413, headers=CLOSE)

    @app.exception_handler(StarletteHTTPException)
    async def refused(request: Request, exc: StarletteHTTPException) -> Response:
        """FastAPI's own answer, but a refused upload also ends its connection: whatever is left of
        its body (a malformed multipart, a refused name) is not worth receiving."""
        if exc.status_code == 400 and exc.detail == FASTAPI_UNREADABLE_BODY:  # not UTF-8, nested too deep, …
            exc = StarletteHTTPException(422, "the request body cannot be read as JSON (is it UTF-8, and nested "
                                              "less than 1,000 levels?); send a JSON object with the fields /docs "
                                              "lists for this endpoint")
        response = await http_exception_handler(request, exc)
        if request.method == "POST" and 400 <= exc.status_code < 500:
            response.headers.update(CLOSE)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": "; ".join(_problem(err) for err in exc.errors())}, status_code=422)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        """The client went away mid-body (or its body timed out): nothing to answer, nothing to trace."""
        return Response(status_code=CLIENT_GONE)

    @app.exception_handler(SQLAlchemyError)
    async def database_away(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        """The job database could not answer (PostgreSQL restarting, a network blip): a 503 that a load
        balancer retries elsewhere and a client retries later, and one log line, not a traceback."""
        log.warning("job database unavailable on %s %s: %s: %s", printable(request.method),
                    printable(request.url.path), type(exc).__name__, printable(reason(exc)))
        return JSONResponse({"detail": "the job database is unavailable; retry in a few seconds"},
                            status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", printable(request.method), printable(request.url.path))
        return JSONResponse({"detail": "internal error"}, status_code=500)  # no paths, no traceback

    app.add_middleware(BlankMeansDefault)
    app.add_middleware(Observe)  # outermost: it also sees the errors the handlers above answer

    for module in (names, score, poem, train, jobs, models, health, info, page):
        app.include_router(module.router)
    return app


def _problem(err: dict[str, Any]) -> str:
    """One validation error in plain words: the field and pydantic's message, or what is wrong with
    a JSON body as a whole (not JSON, missing, not an object) and how to send it."""
    loc = tuple(err.get("loc", ()))
    if err.get("type") == "json_invalid":
        cause = err.get("ctx", {}).get("error", "cannot be read")
        return (f"the request body is not valid JSON ({cause} at character {loc[-1]}); send a JSON object "
                "with the fields /docs lists for this endpoint")
    if loc == ("body",):
        return ("the request body must be a JSON object with the fields /docs lists for this endpoint, sent as "
                "Content-Type: application/json")
    where = ".".join(str(p) for p in loc if p not in ("query", "body", "path"))
    return f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg"))
