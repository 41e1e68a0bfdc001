"""GET /poem and GET /poem/stream: continue a prompt with a text model, whole or as Server-Sent Events.

The stream uses FastAPI's own SSE support (`fastapi.sse`, FastAPI 0.135 and later): each `data:`
event is one JSON string, the pieces made since the last event, so newlines and spaces survive;
`event: end` closes it. Errors found before the first piece is made (unknown parameters, invalid
options, unknown model, 429) are ordinary JSON responses; a request stopped later by the work
budget ends with `event: error` whose data is the JSON-encoded reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from app.charlm.sample import (
    LINE_CHARS,
    MAX_POEM_CHARS,
    MAX_POEM_LINES,
    MAX_PROMPT_CHARS,
    PoemOptions,
    continue_text,
    stream_text,
)

from ..admission import StopCheck
from ..deps import Services, ServicesDep
from ..schemas import PoemOut
from ..streaming import Pieces, open_pieces
from .common import BUSY, MODEL_NAME, SEED, STRICT_QUERY, TEMPERATURE, TOP_K, load_model, user_errors

router = APIRouter(tags=["poem"])


@dataclass(frozen=True)
class PoemQuery:
    """The query of both endpoints: the model's name and the sampling options."""

    model: str
    opts: PoemOptions


def poem_query(
    prompt: Annotated[str, Query(max_length=MAX_PROMPT_CHARS, description="first words of the poem")] = "",
    length: Annotated[int, Query(ge=1, le=MAX_POEM_CHARS, description="characters to add")] = 400,
    lines: Annotated[int | None, Query(ge=1, le=MAX_POEM_LINES, description=(
        f"stop after this many complete lines, instead of length (and at most {LINE_CHARS} characters per line "
        "asked, in all)"))] = None,
    temperature: TEMPERATURE = 1.0,
    top_k: TOP_K = None,
    seed: SEED = None,
    model: MODEL_NAME = "shakespeare",
) -> PoemQuery:
    return PoemQuery(model, PoemOptions(prompt=prompt, length=length, lines=lines, temperature=temperature,
                                        top_k=top_k, seed=seed))


PoemQueryDep = Annotated[PoemQuery, Depends(poem_query)]


@router.get("/poem", response_model=PoemOut, responses=BUSY, dependencies=[STRICT_QUERY])
async def get_poem(request: Request, services: ServicesDep, query: PoemQueryDep) -> PoemOut:
    def work(should_stop: StopCheck) -> tuple[str, str]:
        loaded, version = load_model(services, query.model)  # may read a model from disk: off the event loop too
        with user_errors():
            return continue_text(loaded, query.opts, should_stop), version

    poem, version = await services.gate.run(request, work)
    prompt = query.opts.prompt
    return PoemOut(model=query.model, version=version, prompt=prompt, poem=prompt + poem)


async def _open_stream(request: Request, services: ServicesDep, query: PoemQueryDep) -> Pieces:
    """The poem's generation started under the gate, once its first piece exists (else the error)."""
    return await open_pieces(services.gate, request, lambda should_stop: _pieces(services, query, should_stop))


def _pieces(services: Services, query: PoemQuery, should_stop: StopCheck) -> Iterator[str]:
    """The continuation's characters, in the sampling thread (the model is loaded there too)."""
    loaded, _version = load_model(services, query.model)
    with user_errors():
        yield from stream_text(loaded, query.opts, should_stop)


@router.get("/poem/stream", response_class=EventSourceResponse, dependencies=[STRICT_QUERY],
            responses={**BUSY, 200: {"description": "`data:` events, each a JSON string: consecutive pieces of the "
                                                    "continuation (without the prompt); then `event: end`"}})
async def stream_poem(pieces: Annotated[Pieces, Depends(_open_stream)]) -> AsyncIterable[ServerSentEvent]:
    """The continuation of `/poem` for the same query, sent as it is generated (Server-Sent Events)."""
    try:
        async for chunk in pieces.chunks():
            yield ServerSentEvent(data=chunk)
    except HTTPException as exc:
        yield ServerSentEvent(event="error", data=exc.detail)
        return
    yield ServerSentEvent(event="end", data="")
