"""POST /score: how likely and how typical given names are under a names model (in a thread, under the gate)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.charlm.score import reference_set, score_names

from ..admission import StopCheck
from ..deps import ServicesDep
from ..schemas import NameScoreOut, ScoreIn, ScoreOut
from .common import BUSY, STRICT_QUERY, load_model, user_errors

router = APIRouter(tags=["names"])


@router.post("/score", response_model=ScoreOut, responses=BUSY, dependencies=[STRICT_QUERY])
async def post_score(request: Request, services: ServicesDep, body: ScoreIn) -> ScoreOut:
    def work(should_stop: StopCheck) -> ScoreOut:
        loaded, version = load_model(services, body.model)
        with user_errors():
            scores = score_names(loaded, body.names)
        return ScoreOut(model=body.model, version=version, reference=reference_set(loaded),
                        scores=[NameScoreOut(**vars(s)) for s in scores])

    return await services.gate.run(request, work)
