"""A size limit on every request body, counted as it streams in (chunked or not).

Nothing is read here: the count happens as the app reads, so write endpoints still check the
token before the first body byte. Past the limit (or when Content-Length already says so), the
app's next read raises HTTPException(413), which the app's handler turns into its JSON answer.
FastAPI's own `max_body_size` (0.164+) answers a declared-too-large request in plain text,
replacing the app's JSON, so the service keeps this small middleware instead.
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        too_large = declared.isdigit() and int(declared) > self.limit
        received = 0

        async def counted() -> Message:
            nonlocal received
            if too_large:
                raise HTTPException(413)
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413)
            return message

        await self.app(scope, counted, send)
