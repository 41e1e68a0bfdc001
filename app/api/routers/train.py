"""POST /train: authorise, read the upload within its limit, validate it completely, queue a job.

The handler parses the form itself (FastAPI's form parameters would receive and spool the whole
body before the write rule runs): the token or loopback rule comes first, then the body is read,
counted as it streams in by the app's BodyLimit (413 as soon as it is passed, chunked or not).
Decoding, validation and the SQLite insert run in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import FormData, UploadFile

from app.charlm.checkpoint import TrainedModel
from app.charlm.data import check_names
from app.charlm.errors import InvalidInput, InvalidModel, ModelNotFound
from app.charlm.textnorm import decode_text
from app.charlm.train import TrainConfig, check_options

from ..deps import CLOSE, Services, ServicesDep, WriterDep
from ..schemas import JobCreated
from .common import STRICT_QUERY, api_terms, refuse_repeated

router = APIRouter(tags=["training"])
MIN_DISTINCT_NAMES = 10
MULTIPART_OVERHEAD = 64 * 1024  # room for the form's other fields and boundaries (in the app's body limit)


class TrainForm(BaseModel):
    """The form fields of POST /train besides `file` (unknown fields are refused)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9_-]{1,40}$", description="model name")
    epochs: int | None = Field(default=None, ge=1, le=500)
    arch: Literal["rnn", "lstm"] = "lstm"
    hidden: int | None = Field(default=None, ge=4, le=512)
    layers: int | None = Field(default=None, ge=1, le=3)
    members: int | None = Field(default=None, ge=1, le=4, description="names: an ensemble of this many networks "
                                "sharing `hidden`, trained side by side and sampled as one")
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    time_budget: float | None = Field(default=None, ge=0.1, description="seconds, at most the server's job cap")
    case: Literal["auto", "keep", "fold"] = Field(default="auto", description="keep or fold letter case")
    init_from: str | None = Field(default=None, pattern=r"^[a-z0-9_-]{1,40}$",
                                  description="a names model of the store (GET /models) to fine-tune from")


_BODY_SCHEMA = {
    "type": "object",
    "required": ["file", "name"],
    "properties": {"file": {"type": "string", "format": "binary", "description": "UTF-8 text, one name per line"},
                   **TrainForm.model_json_schema()["properties"]},
}


async def _read_form(request: Request) -> FormData:
    """The multipart form (one file, a few short fields); the app's body limit bounds what is read."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(415, "send the form as multipart/form-data, with the name list in the field 'file'",
                            headers=CLOSE)
    return await request.form(max_files=1, max_fields=16, max_part_size=1024)


def _parse_fields(form: FormData) -> TrainForm:
    """The form's text fields validated (blank values mean "not given"), or 422 naming the problems."""
    refuse_repeated([k for k, _ in form.multi_items()], "body")
    values = {k: v for k, v in form.multi_items() if k != "file" and isinstance(v, str) and v != ""}
    try:
        return TrainForm.model_validate(values)
    except ValidationError as exc:
        errors = [{**e, "msg": f"unknown field (known: file, {', '.join(TrainForm.model_fields)})"}
                  if e["type"] == "extra_forbidden" else e for e in exc.errors()]
        raise RequestValidationError(errors) from None


def _options(form: TrainForm, services: Services) -> dict[str, Any]:
    """The job's training options; 422 for what the form's own bounds cannot know."""
    cap = services.settings.max_job_seconds
    if form.time_budget is not None and form.time_budget > cap:
        raise HTTPException(422, f"time_budget: must be at most {cap:g} seconds on this server")
    options: dict[str, Any] = {"arch": form.arch, "hidden": form.hidden, "layers": form.layers, "members": form.members,
                               "epochs": form.epochs, "seed": form.seed, "time_budget": form.time_budget}
    if form.case != "auto":  # "auto" is the trainer's default: stored only when asked otherwise
        options["case"] = form.case
    options["init_from"] = form.init_from
    return {k: v for k, v in options.items() if v is not None}


def _base(services: Services, config: TrainConfig) -> TrainedModel | None:
    """The names model `init_from` names (None without it), or 422 saying why the worker could not
    use it. In a thread (it reads the model)."""
    name = config.init_from
    if name is None:
        return None
    try:
        base = services.store.load(name)
    except ModelNotFound:
        raise HTTPException(422, f"init_from: no model named {name!r} in the store; choose a names model "
                                 "listed by GET /models") from None
    except InvalidModel as exc:
        raise HTTPException(422, f"init_from: model {name!r} is damaged and cannot be loaded ({exc}); choose "
                                 "another names model listed by GET /models") from None
    if base.kind != "names":
        raise HTTPException(422, f"init_from: {name!r} is a {base.kind} model; fine-tuning needs a names model "
                                 "(GET /models lists each model's kind), such as 'dinos'")
    return base


def _validate_and_queue(services: Services, form: TrainForm, raw: bytes, options: dict[str, Any]
                        ) -> dict[str, Any] | None:
    """Decode and check the whole upload, then queue the job (None: the queue is full). In a thread."""
    try:
        text = decode_text(raw, "upload")
        check_names(text, min_distinct=MIN_DISTINCT_NAMES, source="upload")
        config = TrainConfig(kind="names", **options)
        check_options(config, _base(services, config))
    except InvalidInput as exc:
        raise HTTPException(422, api_terms(str(exc))) from None
    # Unset options stay unset: the trainer sizes the run to the list (the job reports its epochs).
    return services.jobs.create(form.name, options, text, services.settings.max_queued_jobs)


@router.post("/train", status_code=status.HTTP_202_ACCEPTED, response_model=JobCreated,
             dependencies=[WriterDep, STRICT_QUERY],
             openapi_extra={"requestBody": {"required": True,
                                            "content": {"multipart/form-data": {"schema": _BODY_SCHEMA}}}},
             responses={413: {"description": "upload too large"}, 415: {"description": "not multipart/form-data"},
                        429: {"description": "queue full"}})
async def post_train(request: Request, response: Response, services: ServicesDep) -> JobCreated:
    settings = services.settings
    limit = settings.max_upload_bytes
    form_data = await _read_form(request)
    try:
        form = _parse_fields(form_data)
        upload = form_data.get("file")
        if not isinstance(upload, UploadFile):
            problem = "missing" if upload is None else "must be a file upload, not text"
            raise HTTPException(422, f"file: {problem}; send the name list as the multipart field 'file'")
        if services.store.is_builtin(form.name):
            raise HTTPException(409, f"name: {form.name!r} is a built-in model and cannot be replaced; "
                                "choose another name")
        options = _options(form, services)
        raw = await upload.read(limit + 1)
        if len(raw) > limit:
            raise HTTPException(413)  # the message comes from the app's 413 handler
    finally:
        await form_data.close()
    job = await asyncio.to_thread(_validate_and_queue, services, form, raw, options)
    if job is None:
        raise HTTPException(429, f"the training queue is full ({settings.max_queued_jobs} jobs waiting); try later")
    response.headers["Location"] = f"/jobs/{job['id']}"
    return JobCreated(job_id=job["id"], status="queued")
