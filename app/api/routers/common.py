"""Query parameters and error mapping shared by the sampling routers."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Annotated, TypeVar

import anyio
from fastapi import Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError

from app.charlm.batching import Job, Scheduler, SchedulerClosed
from app.charlm.checkpoint import TrainedModel
from app.charlm.errors import InvalidInput, InvalidModel, ModelNotFound

from ..deps import Services

T = TypeVar("T")
log = logging.getLogger(__name__)

MODEL_NAME = Annotated[str, Query(pattern=r"^[a-z0-9_-]{1,40}$", description="model name")]
TEMPERATURE = Annotated[float, Query(gt=0, le=10, allow_inf_nan=False, description="sampling temperature")]
TOP_K = Annotated[int | None, Query(ge=1, le=1000, description="sample only from the k likeliest")]
SEED = Annotated[int | None, Query(ge=0, le=2**32 - 1, description="same seed, same answer")]
BUSY: dict[int | str, dict[str, object]] = {
    429: {"description": "too many sampling requests at once (see Retry-After)"},
    422: {"description": "invalid options, or more sampling than one request may do"},
}


RAW_QUERY_KEYS = "dino.query_keys"  # scope key: the query's keys before blank values were dropped


async def _known_query(request: Request) -> None:
    """422 naming every query parameter the route does not declare (a typo must not be ignored).
    Async, though it never waits: FastAPI would run a plain function in a thread, once per request."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known: set[str] = set()
    todo = [dependant]
    while todo:  # the route's own query and that of its dependencies, at any depth
        dep = todo.pop()
        known |= {p.alias for p in dep.query_params}
        todo.extend(dep.dependencies)
    keys = request.scope.get(RAW_QUERY_KEYS, list(request.query_params.keys()))
    unknown = [k for k in dict.fromkeys(keys) if k not in known]
    if unknown:
        message = (f"unknown query parameter (known: {', '.join(sorted(known))})" if known
                   else "unknown query parameter (this endpoint takes none)")
        raise RequestValidationError([{"type": "extra_forbidden", "loc": ("query", k), "msg": message,
                                       "input": request.query_params.get(k)} for k in unknown])
    refuse_repeated(keys, "query")


def refuse_repeated(keys: list[str], where: str) -> None:
    """422 naming every key given more than once (a query's or a form's): which value was meant is
    not guessed (with a plain dict the last would silently win)."""
    repeated = [k for k in dict.fromkeys(keys) if keys.count(k) > 1]
    if repeated:
        raise RequestValidationError([{"type": "repeated", "loc": (where, k), "msg": f"given {keys.count(k)} times; "
                                       "give it once", "input": None} for k in repeated])


STRICT_QUERY = Depends(_known_query)


def load_model(services: Services, name: str) -> tuple[TrainedModel, str]:
    """The active version of a model, or 404 naming it."""
    with _model_errors(name):
        return services.registry.get(name)


async def load_engine(services: Services, name: str) -> tuple[TrainedModel, str, Scheduler]:
    """The active version of a model with its batching scheduler, or 404 naming it; from the event
    loop at once when both are ready, else in a thread."""
    with _model_errors(name):
        hit = services.registry.cached_engine(name)
        return hit if hit is not None else await anyio.to_thread.run_sync(services.registry.engine, name)


async def submit_to_engine(services: Services, name: str,
                           make_job: Callable[[TrainedModel], Job[T]]) -> tuple[TrainedModel, str, Future[T]]:
    """`make_job(model)` queued in the scheduler of the model's active version: the model, its
    version and the job's future. A version that left the cache between loading and queueing (a
    burst of more new versions than the cache holds closes its scheduler) is loaded again; 503
    with Retry-After if that keeps happening."""
    for _ in range(3):
        loaded, version, scheduler = await load_engine(services, name)
        try:
            return loaded, version, scheduler.submit(make_job(loaded))
        except SchedulerClosed:
            continue
    raise HTTPException(503, f"model {name!r} is changing faster than it can be loaded; try again shortly",
                        headers={"Retry-After": "1"})


@contextmanager
def _model_errors(name: str) -> Iterator[None]:
    try:
        yield
    except ModelNotFound:
        raise HTTPException(404, f"no model named {name!r}") from None
    except InvalidModel as exc:  # the stored files are damaged: the operator's to mend, so 500 with the cause
        log.error("model %r could not be loaded: %s", name, exc)
        raise HTTPException(500, f"model {name!r} could not be loaded (version {exc}); the service's operator "
                                 "must retrain or remove that version") from None


def api_terms(message: str) -> str:
    """The core's messages name CLI options (`--time-budget`, `max-length`); the API's fields are
    `time_budget`, `max_length`."""
    return re.sub(r"--([a-z-]+)|\b(max-length|min-length|top-k)\b",
                  lambda m: (m.group(1) or m.group(2)).replace("-", "_"), message)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the core's InvalidInput into 422 with its message (in the API's terms) as `detail`."""
    try:
        yield
    except InvalidInput as exc:
        raise HTTPException(422, api_terms(str(exc))) from None
