"""Admission control and a work budget for sampling requests (GET /names, GET /poem).

Sampling never runs on the event loop: names go to their model's batching scheduler (`admit`,
app/charlm/batching.py), other work to `threads` worker threads (`run`; one per core: more would
only fight the event loop for the GIL). At most `capacity` requests are admitted at a time,
running or waiting; more get 429 with Retry-After, so light endpoints keep answering. Each
request may sample for `seconds` at most once its sampling starts (then 422) and stops as soon
as its client disconnects: the sampler polls `should_stop` once per generation step.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio
from fastapi import HTTPException, Request

from app.charlm.errors import WorkStopped

from .metrics import Metrics

T = TypeVar("T")
StopCheck = Callable[[], bool]
CLIENT_GONE = 499  # nginx's "client closed request": nobody reads it, but metrics and logs show it


class Budget:
    """An admitted request's stop rule: its client went away, or its sampling time is spent."""

    def __init__(self, gone: threading.Event, seconds: float) -> None:
        self.gone = gone
        self.seconds = seconds

    def start(self) -> StopCheck:
        """The request's `should_stop`, its `seconds` counted from now (when its sampling starts)."""
        deadline = time.monotonic() + self.seconds
        return lambda: self.gone.is_set() or time.monotonic() >= deadline


SAMPLING_ADVICE = ("ask for fewer or shorter results or an earlier page (pages are drawn from the first on), "
                   "relax the length limits or raise the temperature or top_k")


class SamplingGate:
    def __init__(self, capacity: int, seconds: float, metrics: Metrics, threads: int = 2) -> None:
        self.capacity = capacity
        self.seconds = seconds
        self.metrics = metrics
        self.limiter = anyio.CapacityLimiter(min(threads, capacity))  # its own threads: sync endpoints keep theirs
        self.in_flight = 0  # changed only on the event loop, so no lock

    async def run(self, request: Request, work: Callable[[StopCheck], T], advice: str = SAMPLING_ADVICE) -> T:
        """`work(should_stop)` in a thread under this gate's admission rule and work budget (`advice`:
        what to change when the budget runs out). 429 when as many requests already wait for a thread as
        there are threads: a queue that long would hold every admission slot for its whole budget."""
        waiting = self.limiter.statistics()
        if waiting.borrowed_tokens >= waiting.total_tokens and waiting.tasks_waiting >= waiting.total_tokens:
            self.metrics.refused.inc()
            n, k = waiting.tasks_waiting, int(waiting.total_tokens)
            raise HTTPException(429, f"the server is busy: {n} request{'s' * (n != 1)} wait{'s' * (n == 1)} for "
                                     f"its {k} sampling thread{'s' * (k != 1)}; retry in a few seconds",
                                headers={"Retry-After": "2"})
        async with self.admit(request, advice) as budget:
            return await anyio.to_thread.run_sync(lambda: work(budget.start()), limiter=self.limiter)

    @asynccontextmanager
    async def admit(self, request: Request, advice: str = SAMPLING_ADVICE) -> AsyncIterator[Budget]:
        """Admit a request (else 429) for work that stops on the yielded budget (its WorkStopped
        becomes 499 when the client left, else 422)."""
        if self.in_flight >= self.capacity:
            self.metrics.refused.inc()
            raise HTTPException(429, f"the server is busy: {self.capacity} sampling requests are running; "
                                "retry in a second", headers={"Retry-After": "1"})
        self.in_flight += 1
        gone = threading.Event()
        watcher = asyncio.create_task(_set_when_disconnected(request, gone))
        try:
            yield Budget(gone, self.seconds)
        except WorkStopped:
            if gone.is_set():
                self.metrics.stopped.labels("disconnect").inc()
                raise HTTPException(CLIENT_GONE, "the client closed the request") from None
            self.metrics.stopped.labels("budget").inc()
            raise HTTPException(422, f"this request needs more than {self.seconds:g} s of sampling; {advice}") \
                from None
        finally:
            gone.set()  # if this request was cancelled (shutdown), its work stops at the next step
            watcher.cancel()
            self.in_flight -= 1


async def _set_when_disconnected(request: Request, gone: threading.Event) -> None:
    """Wait for the ASGI disconnect message (sampling requests have no body to read first)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return
