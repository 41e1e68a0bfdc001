"""Response bodies of the HTTP API (the OpenAPI schema is generated from these)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class NamesOut(BaseModel):
    model: str
    version: str
    names: list[str]


class PoemOut(BaseModel):
    model: str
    version: str
    prompt: str
    poem: str


class JobCreated(BaseModel):
    job_id: str
    status: Literal["queued"]


class JobOut(BaseModel):
    id: str
    model: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: float = Field(ge=0, le=1)
    epochs_done: int
    epochs_total: int | None
    history: list[dict[str, Any]]
    eta_seconds: float | None
    error: str | None
    version: str | None
    options: dict[str, Any]
    cancel_requested: bool
    created_at: float
    started_at: float | None
    finished_at: float | None
    data_sha256: str | None = Field(default=None, description="SHA-256 of the uploaded text (kept after it is dropped)")
    data_bytes: int | None = Field(default=None, description="size of the uploaded text in UTF-8 bytes")


class VersionOut(BaseModel):
    version: str
    active: bool
    hidden: int | None = None
    layers: int | None = None
    case: str = "fold"
    metrics: dict[str, Any] = {}


class ModelOut(BaseModel):
    name: str
    kind: str
    arch: str
    case: str = Field("fold", description="fold: names learnt in lower case, shown in the "
                                                                "list's style; keep: case learnt as given")
    builtin: bool
    active_version: str
    versions: list[VersionOut]


class Status(BaseModel):
    status: str
    models: list[str] = []


class InfoModel(BaseModel):
    name: str
    version: str
    kind: str
    size_bytes: int = Field(description="bytes on disk of the active version's directory")


class InfoOut(BaseModel):
    version: str = Field(description="the package's version")
    commit: str | None = Field(description="git commit the server was built from; null if unknown")
    models: list[InfoModel]
    limits: dict[str, int] = Field(description="request limits this server enforces")
