"""Connection limits uvicorn lacks: a deadline for headers, a deadline for the body, a connection cap.

uvicorn (0.54) has no timeout while a request is being received: `timeout_keep_alive` covers only
the idle time between requests and restarts on every byte, so a client that trickles a request
holds its connection (and a file descriptor) forever; it also accepts connections without bound
(`limit_concurrency` answers 503 but keeps the socket). This protocol, passed to uvicorn as its
`http` class, adds the three limits:

- headers must arrive within `header_timeout` seconds of the connection opening (or of the
  previous response ending, on a kept-alive connection), else the connection is closed;
- a body must arrive within `body_timeout` seconds of its headers, else the connection is closed
  (the app then sees a disconnect);
- beyond `max_connections` open connections, or `max_per_client` from one client address, a new
  connection is closed at once (so one client cannot hold every slot; many clients at once need
  a proxy with its own limits, and behind a proxy on this host every client shares one address).

The deadlines are absolute (not reset by each byte), so trickling does not extend them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("dinosaurus.api")
NOTICE_SECONDS = 10.0  # closed connections are summed up in one log line at most this often


class _Notices:
    """Counts of closed connections, logged as one line at most every NOTICE_SECONDS."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.logged_at = 0.0

    def add(self, reason: str) -> None:
        self.counts[reason] += 1
        now = time.monotonic()
        if now - self.logged_at >= NOTICE_SECONDS:
            summary = ", ".join(f"{n} {reason}" for reason, n in sorted(self.counts.items()))
            log.warning("closed connections since the last notice: %s", summary)
            self.counts.clear()
            self.logged_at = now


def guarded_protocol(header_timeout: float, body_timeout: float, max_connections: int,
                     max_per_client: int | None = None) -> type[H11Protocol]:
    """uvicorn's h11 protocol class with the limits above (one class per server)."""
    notices = _Notices()
    per_client: Counter[str] = Counter()
    client_cap = max_per_client or max_connections

    class GuardedH11Protocol(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._deadline: asyncio.TimerHandle | None = None
            self._refused = False
            self._client = ""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            peer = transport.get_extra_info("peername")
            self._client = str(peer[0]) if peer else ""
            if len(self.connections) >= max_connections or per_client[self._client] >= client_cap:
                self._refused = True
                notices.add("over the connection cap" if len(self.connections) >= max_connections
                            else "over the per-client cap")
                transport.abort()
                return
            per_client[self._client] += 1
            super().connection_made(transport)
            self._arm(header_timeout)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if not self._refused:
                per_client[self._client] -= 1
                if per_client[self._client] <= 0:
                    del per_client[self._client]
                super().connection_lost(exc)

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a request's headers are complete
                if self.conn.their_state is h11.SEND_BODY:
                    self._arm(body_timeout)
                else:
                    self._disarm()

        def on_response_complete(self) -> None:
            self._arm(header_timeout)  # before the parent starts a pipelined request (which disarms)
            super().on_response_complete()

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            state = self.conn.their_state
            if self.transport.is_closing() or state not in (h11.IDLE, h11.SEND_BODY):
                return  # the request is in; the app may take its time to answer
            notices.add("header timeouts" if state is h11.IDLE else "body timeouts")
            self.transport.close()

    return GuardedH11Protocol
