"""POST /train: validate an uploaded name list completely, then queue a training job."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, HTTPException, Response, UploadFile, status

from app.charlm.data import check_names
from app.charlm.errors import InvalidInput
from app.charlm.textnorm import decode_text
from app.charlm.train import TrainConfig

from ..deps import ServicesDep, WriterDep
from ..schemas import JobCreated

router = APIRouter(tags=["training"])
MIN_DISTINCT_NAMES = 10
MULTIPART_OVERHEAD = 64 * 1024  # room for the form's other fields and boundaries


def declared_too_large(content_length: str | None, limit: int) -> bool:
    """True when a request announces more bytes than an upload of `limit` can need."""
    return bool(content_length and content_length.isdigit() and int(content_length) > limit + MULTIPART_OVERHEAD)


async def _read_limited(upload: UploadFile, limit: int) -> bytes:
    """The upload's bytes, refusing with 413 as soon as it passes `limit`."""
    chunks, size = [], 0
    while chunk := await upload.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"upload is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/train", status_code=status.HTTP_202_ACCEPTED, response_model=JobCreated,
             dependencies=[WriterDep],
             responses={413: {"description": "upload too large"}, 429: {"description": "queue full"}})
async def post_train(
    response: Response,
    services: ServicesDep,
    file: Annotated[UploadFile, File(description="UTF-8 text, one name per line")],
    name: Annotated[str, Form(pattern=r"^[a-z0-9_-]{1,40}$", description="model name")],
    epochs: Annotated[int | None, Form(ge=1, le=500)] = None,
    arch: Annotated[Literal["rnn", "lstm"], Form()] = "lstm",
    hidden: Annotated[int | None, Form(ge=4, le=512)] = None,
    layers: Annotated[int | None, Form(ge=1, le=3)] = None,
    seed: Annotated[int, Form(ge=0, le=2**32 - 1)] = 0,
    time_budget: Annotated[float | None, Form(gt=0, le=3600)] = None,
) -> JobCreated:
    settings = services.settings
    if services.store.is_builtin(name):
        raise HTTPException(409, f"{name!r} is a built-in model and cannot be replaced; choose another name")
    raw = await _read_limited(file, settings.max_upload_bytes)
    options = {"arch": arch, "hidden": hidden, "layers": layers, "epochs": epochs, "seed": seed,
               "time_budget": time_budget}
    options = {k: v for k, v in options.items() if v is not None}
    try:
        text = decode_text(raw, "upload")
        check_names(text, min_distinct=MIN_DISTINCT_NAMES, source="upload")
        resolved = TrainConfig(kind="names", **options).resolved()  # type: ignore[arg-type]
    except InvalidInput as exc:
        raise HTTPException(422, str(exc)) from None
    if time_budget is None:
        options["epochs"] = resolved.epochs  # so the job can report epochs_total
    job = services.jobs.create(name, options, text, settings.max_queued_jobs)
    if job is None:
        raise HTTPException(429, f"the training queue is full ({settings.max_queued_jobs} jobs waiting); try later")
    response.headers["Location"] = f"/jobs/{job['id']}"
    return JobCreated(job_id=job["id"], status="queued")
