"""GET /names: distinct names from a names model, sampled in one batch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from app.charlm.sample import MAX_COUNT, MAX_NAME_CHARS, NameOptions, sample_names

from ..deps import ServicesDep
from ..schemas import NamesOut
from .common import MODEL_NAME, SEED, TEMPERATURE, TOP_K, load_model, user_errors

router = APIRouter(tags=["names"])
INLINE_MAX_COUNT = 32  # a few milliseconds of sampling: cheaper inline than a thread hop (measured)


@router.get("/names", response_model=NamesOut)
async def get_names(
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
    loaded, version = load_model(services, model)
    opts = NameOptions(count=count, temperature=temperature, top_k=top_k, seed=seed, prefix=prefix,
                       min_length=min_length, max_length=max_length, novel=novel)
    with user_errors():
        if count <= INLINE_MAX_COUNT:
            names = sample_names(loaded, opts)
        else:  # large requests go to a worker thread so the event loop stays free
            names = await run_in_threadpool(sample_names, loaded, opts)
    services.metrics.names.labels(model).inc(len(names))
    return NamesOut(model=model, version=version, names=names)
