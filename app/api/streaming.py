"""Text made piece by piece in a sampling thread, read on the event loop as it comes (GET /poem/stream).

The work runs through the sampling gate unchanged (`SamplingGate.run`: admission, work budget,
stop on disconnect), in a task of its own; each piece is handed to the event loop as it is made.
`open_pieces` returns once the first piece exists, so everything that fails before generation
starts (429, unknown model, invalid options) is raised there and answered as JSON, before any
byte of the stream is sent.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator

from fastapi import Request

from .admission import SamplingGate, StopCheck

_running: set[asyncio.Task[None]] = set()  # strong references: the loop keeps only weak ones


class _Done:
    """The queue's last item: the work finished (`error` None) or failed."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Pieces:
    """The pieces of one stream, in order; iterate with `chunks`."""

    def __init__(self, queue: asyncio.Queue[str | _Done], first: str, reader_gone: threading.Event) -> None:
        """`first`: the piece `open_pieces` waited for ("" when the work made none)."""
        self._queue, self._first, self._reader_gone = queue, first, reader_gone

    async def chunks(self) -> AsyncIterator[str]:
        """Each chunk joins the pieces made since the last one (at least one). Raises what the work
        raised (HTTPException for a stopped or over-budget request). Leaving early stops the work."""
        try:
            if self._first:
                yield self._first
            while True:
                items = [await self._queue.get()]
                while not self._queue.empty():
                    items.append(self._queue.get_nowait())
                text = "".join(i for i in items if isinstance(i, str))
                if text:
                    yield text
                done = items[-1]
                if isinstance(done, _Done):
                    if done.error is not None:
                        raise done.error
                    return
        finally:
            self._reader_gone.set()  # the sampler stops at its next step when nobody reads any more


async def open_pieces(gate: SamplingGate, request: Request,
                      make: Callable[[StopCheck], Iterator[str]]) -> Pieces:
    """Start `make(should_stop)` in a sampling thread under `gate`; returns once its first piece is
    made. Raises (HTTPException from the gate or the work) when it ends before making one."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | _Done] = asyncio.Queue()
    reader_gone = threading.Event()

    def work(should_stop: StopCheck) -> None:
        for piece in make(lambda: should_stop() or reader_gone.is_set()):
            loop.call_soon_threadsafe(queue.put_nowait, piece)

    async def produce() -> None:
        try:
            await gate.run(request, work)
            queue.put_nowait(_Done())
        except Exception as exc:  # HTTPException mostly: handed to the reader, who raises it
            queue.put_nowait(_Done(exc))

    task = asyncio.create_task(produce())
    _running.add(task)
    task.add_done_callback(_running.discard)
    first = await queue.get()
    if isinstance(first, _Done):
        if first.error is not None:
            raise first.error
        first = ""  # the work made nothing at all
        queue.put_nowait(_Done())
    return Pieces(queue, first, reader_gone)
