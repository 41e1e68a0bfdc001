"""GET /jobs, GET /jobs/{id}, POST /jobs/{id}/cancel."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query

from ..deps import ServicesDep, WriterDep
from ..jobs import FINISHED
from ..schemas import JobOut

router = APIRouter(prefix="/jobs", tags=["training"])
JOB_ID = Annotated[str, Path(pattern=r"^[0-9a-f]{1,32}$")]


def _job_or_404(services: ServicesDep, job_id: str) -> dict[str, Any]:
    job = services.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id!r}")
    return job


@router.get("", response_model=list[JobOut])
def list_jobs(services: ServicesDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    return services.jobs.recent(limit)


@router.get("/{job_id}", response_model=JobOut)
def get_job(services: ServicesDep, job_id: JOB_ID) -> dict[str, Any]:
    return _job_or_404(services, job_id)


@router.post("/{job_id}/cancel", response_model=JobOut, dependencies=[WriterDep])
async def cancel_job(services: ServicesDep, job_id: JOB_ID) -> dict[str, Any]:
    """Cancel a queued job at once, or ask the worker to stop a running one (waits up to 5 s)."""
    job = _job_or_404(services, job_id)
    if job["status"] in FINISHED:
        raise HTTPException(409, f"job {job_id} has already finished ({job['status']})")
    job = services.jobs.request_cancel(job_id) or job
    for _ in range(50):
        if job["status"] in FINISHED:
            break
        await asyncio.sleep(0.1)
        job = services.jobs.get(job_id) or job
    return job
