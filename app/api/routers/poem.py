"""GET /poem: continue a prompt with a text model."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.charlm.sample import MAX_POEM_CHARS, MAX_PROMPT_CHARS, PoemOptions, continue_text

from ..admission import StopCheck
from ..deps import ServicesDep
from ..schemas import PoemOut
from .common import BUSY, MODEL_NAME, SEED, STRICT_QUERY, TEMPERATURE, TOP_K, load_model, user_errors

router = APIRouter(tags=["poem"])


@router.get("/poem", response_model=PoemOut, responses=BUSY, dependencies=[STRICT_QUERY])
async def get_poem(
    request: Request,
    services: ServicesDep,
    prompt: Annotated[str, Query(max_length=MAX_PROMPT_CHARS, description="first words of the poem")] = "",
    length: Annotated[int, Query(ge=1, le=MAX_POEM_CHARS, description="characters to add")] = 400,
    lines: Annotated[int | None, Query(ge=1, le=200, description="stop after this many lines")] = None,
    temperature: TEMPERATURE = 1.0,
    top_k: TOP_K = None,
    seed: SEED = None,
    model: MODEL_NAME = "shakespeare",
) -> PoemOut:
    opts = PoemOptions(prompt=prompt, length=length, lines=lines, temperature=temperature, top_k=top_k, seed=seed)

    def work(should_stop: StopCheck) -> tuple[str, str]:
        loaded, version = load_model(services, model)
        with user_errors():
            return prompt + continue_text(loaded, opts, should_stop), version

    poem, version = await services.gate.run(request, work)
    return PoemOut(model=model, version=version, prompt=prompt, poem=poem)
