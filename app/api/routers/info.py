"""GET /info: what a running server is (version, commit), what it serves and within which limits."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request

from app import __version__
from app.charlm.errors import ModelNotFound
from app.charlm.sample import MAX_COUNT, MAX_NAME_CHARS, MAX_POEM_CHARS, MAX_PROMPT_CHARS
from app.locations import checkout_commit

from ..deps import ServicesDep, tokenless_refusal
from ..schemas import InfoModel, InfoOut, WriteAccess
from .common import STRICT_QUERY

router = APIRouter(tags=["operations"], dependencies=[STRICT_QUERY])


@router.get("/info", response_model=InfoOut)
def info(request: Request, services: ServicesDep) -> InfoOut:
    store, settings = services.store, services.settings
    models = []
    for name in store.names():
        try:
            version = store.active_version(name)
            path = store.model_dir(name, version)
            kind = str(json.loads((path / "model.json").read_text()).get("kind", ""))
        except (ModelNotFound, OSError, ValueError, AttributeError):
            continue  # a model being removed or half-broken is not worth a 500 here
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        models.append(InfoModel(name=name, version=version, kind=kind, size_bytes=size))
    limits = {
        "max_upload_bytes": settings.max_upload_bytes,
        "max_queued_jobs": settings.max_queued_jobs,
        "max_names_per_request": MAX_COUNT,
        "max_name_chars": MAX_NAME_CHARS,
        "max_poem_chars": MAX_POEM_CHARS,
        "max_prompt_chars": MAX_PROMPT_CHARS,
    }
    # What writes need for this client: behind a proxy (forwarding headers) a tokenless server is "off".
    access: WriteAccess = ("token" if settings.admin_token else
                           "loopback" if tokenless_refusal(request, services) is None else "off")
    return InfoOut(version=__version__, commit=settings.commit or checkout_commit(), models=models, limits=limits,
                   write_access=access)
