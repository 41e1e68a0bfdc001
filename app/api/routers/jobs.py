"""GET /jobs, GET /jobs/{id}, POST /jobs/{id}/cancel."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query

from ..deps import ServicesDep, WriterDep
from ..jobs import FINISHED
from ..schemas import JobOut
from .common import STRICT_QUERY

router = APIRouter(prefix="/jobs", tags=["training"], dependencies=[STRICT_QUERY])
JOB_ID = Annotated[str, Path(pattern=r"^[0-9a-f]{1,32}$")]


MAX_PAGE = 100


def _job_or_404(services: ServicesDep, job_id: str) -> dict[str, Any]:
    job = services.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id!r}")
    return job


@router.get("", response_model=list[JobOut])
def list_jobs(services: ServicesDep,
              limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="jobs per page")] = MAX_PAGE,
              offset: Annotated[int, Query(ge=0, le=1_000_000, description="jobs to skip, newest first")] = 0,
              ) -> list[dict[str, Any]]:
    """One page of jobs, newest first: `?limit=10&offset=10` is the second page of ten."""
    return services.jobs.recent(limit, offset)


@router.get("/{job_id}", response_model=JobOut)
def get_job(services: ServicesDep, job_id: JOB_ID) -> dict[str, Any]:
    return _job_or_404(services, job_id)


@router.post("/{job_id}/cancel", response_model=JobOut, dependencies=[WriterDep])
async def cancel_job(services: ServicesDep, job_id: JOB_ID) -> dict[str, Any]:
    """Cancel a queued job at once, or ask the worker to stop a running one (waits up to 5 s)."""
    job = await asyncio.to_thread(_job_or_404, services, job_id)  # SQLite stays off the event loop
    if job["status"] in FINISHED:
        raise HTTPException(409, f"job {job_id} has already finished ({job['status']})")
    latest: dict[str, Any] | None = await asyncio.to_thread(services.jobs.request_cancel, job_id)
    for _ in range(50):
        job = latest or job
        if job["status"] in FINISHED:
            break
        await asyncio.sleep(0.1)
        latest = await asyncio.to_thread(services.jobs.get, job_id)
    return job
