"""`python -m app serve`: the API and its training worker under uvicorn."""

from __future__ import annotations

import logging

import uvicorn
from threadpoolctl import threadpool_limits

from .main import create_app


def serve(host: str, port: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Requests sample small batches from several threads at once: one BLAS thread each is
    # faster than every call fanning out over both cores and fighting for them.
    threadpool_limits(1)
    uvicorn.run(create_app(), host=host, port=port, log_level="warning", timeout_graceful_shutdown=15)
