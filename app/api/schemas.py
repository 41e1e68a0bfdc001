"""Response bodies of the HTTP API (the OpenAPI schema is generated from these)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.charlm.sample import MAX_NAME_CHARS
from app.charlm.score import MAX_SCORE_NAMES

MEMORISATION = ("share of 1,000 seeded samples at temperature 1 that are training names; null for text models "
                "and models trained before it was recorded")


class NamesOut(BaseModel):
    model: str
    version: str
    names: list[str]
    known: list[bool] = Field(description="aligned with names: true where the name is in the training list")
    log_probs: list[float] | None = Field(None, description="mode=beam: natural-log probability of each name "
                                                            "(end token included, temperature 1), as /score gives")


class ScoreIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field("dinos", pattern=r"^[a-z0-9_-]{1,40}$", description="names model")
    names: list[Annotated[str, Field(max_length=MAX_NAME_CHARS)]] = Field(
        min_length=1, max_length=MAX_SCORE_NAMES, description="names to score, as typed")


class NameScoreOut(BaseModel):
    name: str
    log_prob: float = Field(description="natural log of the name's probability, end token included")
    nll_per_char: float = Field(description="-log_prob / (characters + 1), nats; eval's figure for the name alone")
    percentile: float | None = Field(description="0-100: share of the reference names the model finds less "
                                                 "typical (higher nll_per_char); null without a reference")


class ScoreOut(BaseModel):
    model: str
    version: str
    reference: Literal["validation", "training"] | None = Field(
        description="the names percentiles compare with; null: the model has fewer than 20, or predates references")
    scores: list[NameScoreOut]


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
    attempts: int = Field(default=0, description="times a worker took the job (more than 1: resumed after a "
                          "worker stopped)")


class VersionOut(BaseModel):
    version: str
    active: bool
    hidden: int | None = None
    layers: int | None = None
    members: int = Field(1, description="networks of the ensemble that share the hidden units (1: one network)")
    case: str = "fold"
    metrics: dict[str, Any] = {}
    memorisation_rate: float | None = Field(None, description=MEMORISATION)


class ModelOut(BaseModel):
    name: str
    kind: str
    arch: str
    case: str = Field("fold", description="fold: names learnt in lower case, shown in the "
                                                                "list's style; keep: case learnt as given")
    builtin: bool
    memorisation_rate: float | None = Field(None, description=MEMORISATION + " (active version)")
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


WriteAccess = Literal["token", "loopback", "off"]


class InfoOut(BaseModel):
    version: str = Field(description="the package's version")
    commit: str | None = Field(description="git commit the server was built from; null if unknown")
    models: list[InfoModel]
    limits: dict[str, int] = Field(description="request limits this server enforces")
    write_access: WriteAccess = Field(
        description="what POST /train and cancel need: token (a bearer token, DINO_ADMIN_TOKEN), loopback "
                    "(a client on this machine), off (no writes: listening beyond loopback with no token set)")
