"""The service's two request-wide middlewares as plain ASGI classes.

Starlette's `@app.middleware("http")` (BaseHTTPMiddleware) runs the app in a task group of its own
and passes the response through memory streams: as plain ASGI, /healthz costs 0.32-0.40 ms of
event-loop CPU instead of 0.75-0.84 ms (bench/http_load.py on the 2-core EPYC, README).
"""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .logs import printable
from .routers.common import RAW_QUERY_KEYS

log = logging.getLogger("dinosaurus.api")


class BlankMeansDefault:
    """`?top_k=&seed=` (as in the contract's examples) means "not given", not "invalid"; records the
    query's keys (blank ones too) under RAW_QUERY_KEYS for the unknown-parameter check."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"").decode("utf-8", "replace")
            pairs = parse_qsl(query, keep_blank_values=True)
            scope[RAW_QUERY_KEYS] = [k for k, _ in pairs]
            if any(value == "" for _, value in pairs):
                scope["query_string"] = urlencode([(k, v) for k, v in pairs if v != ""]).encode()
        await self.app(scope, receive, send)


class Observe:
    """Counts each HTTP request in the app's metrics (by route template, method and status) and logs
    one line; the time is taken when the response starts (a stream's body is not counted). A request
    that raises counts as 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status, elapsed = 500, 0.0

        async def timed(message: Message) -> None:
            nonlocal status, elapsed
            if message["type"] == "http.response.start":
                status, elapsed = message["status"], time.perf_counter() - start
            await send(message)

        try:
            await self.app(scope, receive, timed)
        finally:
            elapsed = elapsed or time.perf_counter() - start
            label = getattr(scope.get("route"), "path", "unmatched")
            services = getattr(scope["app"].state, "services", None)
            if services is not None:
                services.metrics.observe(label, scope["method"], status, elapsed)
            log.info("%s %s %d %.1fms", printable(scope["method"]), printable(scope["path"]), status, elapsed * 1000)
