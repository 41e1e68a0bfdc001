"""GET /names: distinct names from a names model, sampled in the model's batching scheduler (or ranked,
mode=beam, in a thread), under the gate."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from app.charlm.batching import Job
from app.charlm.beam import most_likely_names
from app.charlm.checkpoint import TrainedModel
from app.charlm.sample import MAX_COUNT, MAX_NAME_CHARS, MAX_PAGE_NAMES, NameFilter, NameOptions, is_known, names_job
from app.novelty import novelty

from ..admission import StopCheck
from ..deps import ServicesDep
from ..memory import give_back
from ..schemas import NamesOut
from .common import BUSY, MODEL_NAME, SEED, STRICT_QUERY, TEMPERATURE, TOP_K, load_model, submit_to_engine, user_errors

router = APIRouter(tags=["names"])


@router.get("/names", response_model=NamesOut, responses=BUSY, dependencies=[STRICT_QUERY])
async def get_names(
    request: Request,
    services: ServicesDep,
    count: Annotated[int, Query(ge=1, le=MAX_COUNT, description="how many distinct names")] = 7,
    model: MODEL_NAME = "dinos",
    temperature: TEMPERATURE = 1.0,
    top_k: TOP_K = None,
    seed: SEED = None,
    prefix: Annotated[str, Query(max_length=MAX_NAME_CHARS - 1, description="every name starts so")] = "",
    suffix: Annotated[str, Query(max_length=MAX_NAME_CHARS, description="every name ends so")] = "",
    contains: Annotated[str, Query(max_length=MAX_NAME_CHARS, description="every name contains this")] = "",
    exclude: Annotated[str, Query(max_length=200, description="characters never used")] = "",
    min_length: Annotated[int | None, Query(ge=0, le=MAX_NAME_CHARS,
                                            description="default: the shortest training name")] = None,
    max_length: Annotated[int, Query(ge=1, le=MAX_NAME_CHARS)] = 40,
    novel: Annotated[Literal["false", "true", "strict"], Query(
        description="true: no training names; strict: nor any within Levenshtein distance 1 of one")] = "false",
    page: Annotated[int, Query(ge=1, le=MAX_PAGE_NAMES, description=f"page x count <= {MAX_PAGE_NAMES}; with a "
                               "seed, the pages never repeat a name")] = 1,
    mode: Annotated[Literal["sample", "beam"], Query(
        description="beam: the count most probable names, with log_probs (temperature 1)")] = "sample",
) -> NamesOut:
    def options(loaded: TrainedModel) -> tuple[NameOptions, NameFilter | None]:
        exclude_training, reject = novelty(loaded, novel)
        return NameOptions(count=count, temperature=temperature, top_k=top_k, seed=seed, prefix=prefix,
                           min_length=min_length, max_length=max_length, novel=exclude_training, suffix=suffix,
                           contains=contains, exclude=exclude, page=page, mode=mode), reject

    def ranked(should_stop: StopCheck) -> NamesOut:
        loaded, version = load_model(services, model)  # may read a model from disk: off the event loop too
        opts, reject = options(loaded)
        try:
            with user_errors():
                best = most_likely_names(loaded, opts, should_stop, reject)
        finally:
            give_back()  # the search's memory (memory.py), whatever its outcome
        names = [n for n, _ in best]
        return NamesOut(model=model, version=version, names=names, known=is_known(loaded, names),
                        log_probs=[lp for _, lp in best])

    if mode == "beam":
        out = await services.gate.run(request, ranked, "ask for fewer names or loosen the prefix, suffix, contains "
                                      "or exclude rule; mode sample draws names under the same rules")
    else:  # sampled: the rows share the steps of every concurrent request in the model's scheduler
        async with services.gate.admit(request) as budget:
            def job(loaded: TrainedModel) -> Job[list[str]]:
                opts, reject = options(loaded)
                return names_job(loaded, opts, budget.start(), reject)

            with user_errors():
                loaded, version, future = await submit_to_engine(services, model, job)
                names = await asyncio.wrap_future(future)
        out = NamesOut(model=model, version=version, names=names, known=is_known(loaded, names), log_probs=None)
    services.metrics.names.labels(model).inc(len(out.names))
    return out
