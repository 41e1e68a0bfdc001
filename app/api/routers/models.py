"""GET /models and /models/{name}: what can be sampled, with versions and metrics."""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, HTTPException, Path

from app.charlm.checkpoint import recorded_members
from app.charlm.errors import ModelNotFound
from app.charlm.store import ModelStore

from ..deps import ServicesDep
from ..schemas import ModelOut, VersionOut
from .common import STRICT_QUERY

router = APIRouter(prefix="/models", tags=["models"], dependencies=[STRICT_QUERY])
log = logging.getLogger(__name__)


def describe(store: ModelStore, name: str) -> ModelOut | None:
    """A model's listing from its model.json files, or None if it has no usable version."""
    try:
        active = store.active_version(name)
    except ModelNotFound:
        return None
    versions, kind, arch, case, memorised = [], "", "", "fold", None
    for version in store.versions(name):
        try:
            meta = json.loads((store.model_dir(name, version) / "model.json").read_text())
            if not all(key in meta for key in ("kind", "arch", "hidden", "layers")):  # no model could load from it
                raise ValueError("model.json lacks the network's description")
            version_case = meta.get("case", "fold")  # format 1 models fold case
            rate = meta.get("memorisation_rate")
            versions.append(VersionOut(version=version, active=version == active, hidden=meta.get("hidden"),
                                       layers=meta.get("layers"), members=recorded_members(meta, meta.get("hidden")),
                                       case=version_case, metrics=meta.get("metrics", {}), memorisation_rate=rate))
        except (OSError, ValueError, TypeError, AttributeError, ModelNotFound):  # pydantic's errors are ValueErrors
            log.warning("model %s version %s: unreadable model.json, left out of /models", name, version)
            continue  # one damaged version must not hide every model
        if version == active:
            kind, arch, case, memorised = str(meta.get("kind", "")), str(meta.get("arch", "")), version_case, rate
    return ModelOut(name=name, kind=kind, arch=arch, case=case, builtin=store.is_builtin(name),
                    memorisation_rate=memorised, active_version=active, versions=versions)


@router.get("", response_model=list[ModelOut])
def list_models(services: ServicesDep) -> list[ModelOut]:
    return [m for name in services.store.names() if (m := describe(services.store, name)) is not None]


@router.get("/{name}", response_model=ModelOut)
def get_model(services: ServicesDep, name: str = Path(pattern=r"^[a-z0-9_-]{1,40}$")) -> ModelOut:
    model = describe(services.store, name)
    if model is None:
        raise HTTPException(404, f"no model named {name!r}")
    return model
