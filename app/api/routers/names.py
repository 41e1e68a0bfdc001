"""GET /names: distinct names from a names model, sampled in one batch (in a thread, under the gate)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.charlm.sample import MAX_COUNT, MAX_NAME_CHARS, NameOptions, sample_names

from ..admission import StopCheck
from ..deps import ServicesDep
from ..schemas import NamesOut
from .common import BUSY, MODEL_NAME, SEED, TEMPERATURE, TOP_K, load_model, user_errors

router = APIRouter(tags=["names"])


@router.get("/names", response_model=NamesOut, responses=BUSY)
async def get_names(
    request: Request,
    services: ServicesDep,
    count: Annotated[int, Query(ge=1, le=MAX_COUNT, description="how many distinct names")] = 7,
    model: MODEL_NAME = "dinos",
    temperature: TEMPERATURE = 1.0,
    top_k: TOP_K = None,
    seed: SEED = None,
    prefix: Annotated[str, Query(max_length=MAX_NAME_CHARS - 1, description="every name starts so")] = "",
    min_length: Annotated[int, Query(ge=0, le=MAX_NAME_CHARS)] = 1,
    max_length: Annotated[int, Query(ge=1, le=MAX_NAME_CHARS)] = 40,
    novel: Annotated[bool, Query(description="only names absent from the training list")] = False,
) -> NamesOut:
    opts = NameOptions(count=count, temperature=temperature, top_k=top_k, seed=seed, prefix=prefix,
                       min_length=min_length, max_length=max_length, novel=novel)

    def work(should_stop: StopCheck) -> tuple[list[str], str]:
        loaded, version = load_model(services, model)  # may read a model from disk: off the event loop too
        with user_errors():
            return sample_names(loaded, opts, should_stop), version

    names, version = await services.gate.run(request, work)
    services.metrics.names.labels(model).inc(len(names))
    return NamesOut(model=model, version=version, names=names)
