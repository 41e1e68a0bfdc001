"""POST /score: how likely and how typical given names are under a names model (in a thread, under the gate)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request

from app.charlm.score import reference_set, score_names

from ..admission import StopCheck
from ..deps import ServicesDep
from ..schemas import NameScoreOut, ScoreIn, ScoreOut
from .common import BUSY, STRICT_QUERY, load_model, refuse_repeated, user_errors

router = APIRouter(tags=["names"])


async def _unique_keys(request: Request) -> None:
    """422 naming a key the JSON body gives twice (`{"names": [...], "names": [...]}`): as for a query
    or a form, which one was meant is not guessed. A body that is no JSON object is left to the
    body's own validation."""
    objects: list[list[tuple[str, Any]]] = []

    def keep(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        objects.append(pairs)
        return dict(pairs)

    try:
        json.loads(await request.body(), object_pairs_hook=keep)
    except (ValueError, RecursionError):
        return
    if objects:
        refuse_repeated([key for key, _ in objects[-1]], "body")  # the last object closed is the outermost


@router.post("/score", response_model=ScoreOut, responses=BUSY, dependencies=[STRICT_QUERY, Depends(_unique_keys)])
async def post_score(request: Request, services: ServicesDep, body: ScoreIn) -> ScoreOut:
    def work(should_stop: StopCheck) -> ScoreOut:
        loaded, version = load_model(services, body.model)
        with user_errors():
            scores = score_names(loaded, body.names)
        return ScoreOut(model=body.model, version=version, reference=reference_set(loaded),
                        scores=[NameScoreOut(**vars(s)) for s in scores])

    return await services.gate.run(request, work)
