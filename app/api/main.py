"""The app factory: lifespan (load models, recover jobs, run the worker), routers, errors, metrics."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from app import __version__

from .deps import Services
from .jobs import JobStore
from .metrics import Metrics
from .registry import ModelRegistry
from .routers import health, info, jobs, models, names, page, poem, train
from .settings import Settings
from .worker import WORKER_ENV

log = logging.getLogger("dinosaurus.api")
BUILTIN_MODELS = ("dinos", "shakespeare")


def _start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    """The training worker, in its own process with one BLAS thread."""
    logs = settings.store_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "app.api.worker", "--store", str(settings.store_dir),
           "--builtin", str(settings.builtin_dir), "--parent", str(os.getpid())]
    with open(logs / "worker.log", "ab") as out:
        return subprocess.Popen(cmd, env={**os.environ, **WORKER_ENV}, stdout=out, stderr=subprocess.STDOUT)


def _stop_worker(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    proc.terminate()  # the worker re-queues its running job and exits
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = settings.store
        settings.store_dir.mkdir(parents=True, exist_ok=True)
        removed = store.remove_partial_writes()
        jobs_db = JobStore(settings.jobs_db)
        interrupted = jobs_db.fail_interrupted()
        if removed or interrupted:
            log.warning("recovered: %d partial writes removed, %d interrupted jobs failed", removed, interrupted)
        services = Services(settings, store, ModelRegistry(store), jobs_db, Metrics())
        app.state.services = services
        for name in BUILTIN_MODELS:
            if name in store.names():
                await asyncio.to_thread(services.registry.get, name)
        services.ready = True
        worker = _start_worker(settings) if settings.start_worker else None
        try:
            yield
        finally:
            services.ready = False
            if worker is not None:
                await asyncio.to_thread(_stop_worker, worker)

    app = FastAPIOffline(  # /docs and /redoc with their scripts served by us: they work offline
        favicon_url="/favicon.svg",
        title="Dinosaurus",
        version=__version__,
        description="Character-level language models in NumPy: invent names, complete sonnets, train on your list.",
        lifespan=lifespan,
    )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body", "path"))
            problems.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg")))
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)  # no paths, no traceback

    @app.middleware("http")
    async def blank_means_default(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """`?top_k=&seed=` (as in the contract's examples) means "not given", not "invalid"."""
        query = request.scope.get("query_string", b"").decode("utf-8", "replace")
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(value == "" for _, value in pairs):
            request.scope["query_string"] = urlencode([(k, v) for k, v in pairs if v != ""]).encode()
        return await call_next(request)

    @app.middleware("http")
    async def refuse_huge_uploads(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """413 before the body is read when Content-Length already says it is too large."""
        limit = settings.max_upload_bytes
        if request.method == "POST" and train.declared_too_large(request.headers.get("content-length"), limit):
            return JSONResponse({"detail": f"upload is larger than {limit} bytes"}, status_code=413)
        return await call_next(request)

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            elapsed = time.perf_counter() - start
            route = request.scope.get("route")
            label = getattr(route, "path", "unmatched")
            services: Services | None = getattr(request.app.state, "services", None)
            if services is not None:
                services.metrics.observe(label, request.method, status, elapsed)
            log.info("%s %s %d %.1fms", request.method, request.url.path, status, elapsed * 1000)

    for module in (names, poem, train, jobs, models, health, info, page):
        app.include_router(module.router)
    return app
