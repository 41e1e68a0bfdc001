"""Sampling: many names in one batch through the network, and poems that continue a prompt."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .checkpoint import TrainedModel
from .data import normalise_name
from .errors import InvalidInput, WorkStopped
from .model import CharModel, ModelState, Stepper
from .vocab import describe_chars

MAX_COUNT = 1000
MAX_NAME_CHARS = 100
MAX_POEM_CHARS = 2000
MAX_PROMPT_CHARS = 200
_MAX_ROUNDS = 30


StopCheck = Callable[[], bool]


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise InvalidInput(message)


def _poll(should_stop: StopCheck | None) -> None:
    """Raise WorkStopped when the caller's check says so (polled once per generation step)."""
    if should_stop is not None and should_stop():
        raise WorkStopped("sampling was stopped before it finished")


def draw(logits: np.ndarray, temperature: float, top_k: int | None, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per row of logits (B, V), after temperature and top-k."""
    z = logits.astype(np.float64) / temperature
    if top_k is not None and top_k < z.shape[1]:
        kth = np.partition(z, -top_k, axis=1)[:, -top_k][:, None]
        z = np.where(z >= kth, z, -np.inf)
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    cdf = np.cumsum(p, axis=1)
    u = rng.random((z.shape[0], 1)) * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=1), z.shape[1] - 1)


def _prime(net: CharModel, step: Stepper, dtype: Any, ids: np.ndarray, batch: int) -> tuple[np.ndarray, ModelState]:
    """Feed the same ids to `batch` fresh streams; returns the last logits (batch, V) and state."""
    state = net.zero_state(batch, dtype)
    logits = np.empty(0)
    for i in ids:
        logits, state = step(np.full(batch, i), state)
    return logits, state


@dataclass(frozen=True)
class NameOptions:
    """What a caller may ask of a names model; `check` validates against the model."""

    count: int = 7
    temperature: float = 1.0
    top_k: int | None = None
    seed: int | None = None
    prefix: str = ""
    min_length: int = 1
    max_length: int = 40
    novel: bool = False

    def check(self, model: TrainedModel) -> str:
        """Validate the options; returns the prefix normalised as the model sees names."""
        _check(model.kind == "names", "this model generates text, not names; use a names model")
        _check(1 <= self.count <= MAX_COUNT, f"count must be between 1 and {MAX_COUNT}")
        _check(0 < self.temperature <= 10, "temperature must be greater than 0 and at most 10")
        _check(self.top_k is None or self.top_k >= 1, "top-k must be at least 1")
        _check(1 <= self.max_length <= MAX_NAME_CHARS, f"max-length must be between 1 and {MAX_NAME_CHARS}")
        _check(0 <= self.min_length <= self.max_length, "min-length must be between 0 and max-length")
        _check(self.seed is None or 0 <= self.seed < 2**32, "seed must be between 0 and 4294967295")
        prefix = model.vocab.fold(normalise_name(self.prefix))
        bad = model.vocab.unknown(prefix)
        _check(not bad, f"prefix has characters the model does not know: {describe_chars(bad)}")
        _check(len(prefix) < self.max_length, "prefix must be shorter than max-length")
        return prefix


def _generate(model: TrainedModel, step: Stepper, prefix_ids: np.ndarray, batch: int,
              opts: NameOptions, rng: np.random.Generator, should_stop: StopCheck | None) -> np.ndarray:
    """One batch of continuations as (batch, steps) ids, 0-padded; rows leave the batch as they end."""
    start = np.concatenate([[0], prefix_ids]).astype(np.int64)
    logits, state = _prime(model.net, step, model.params["Wy"].dtype, start, batch)
    steps = opts.max_length - len(prefix_ids)
    out = np.zeros((batch, steps), dtype=np.int64)
    alive = np.arange(batch)
    for pos in range(steps):
        _poll(should_stop)
        if len(prefix_ids) + pos < opts.min_length:
            logits = logits.copy()
            logits[:, 0] = -np.inf  # the end token may not come before min_length
        ids = draw(logits, opts.temperature, opts.top_k, rng)
        out[alive, pos] = ids
        keep = ids != 0
        if not keep.all():
            if not keep.any():
                break
            alive, ids = alive[keep], ids[keep]
            state = [tuple(a[keep] for a in s) for s in state]
        logits, state = step(ids, state)
    return out


def sample_names(model: TrainedModel, opts: NameOptions, should_stop: StopCheck | None = None) -> list[str]:
    """`count` distinct names (novel ones only if asked), first letter capitalised.

    `should_stop` is asked once per generation step; when it answers True, WorkStopped is raised.
    """
    prefix = opts.check(model)
    rng = np.random.default_rng(opts.seed)
    prefix_ids = model.vocab.encode(prefix)
    excluded = set(model.names) if opts.novel else set()
    found: dict[str, None] = {}
    step = model.net.stepper(model.params)
    for _ in range(_MAX_ROUNDS):
        need = opts.count - len(found)
        if need <= 0:
            break
        batch = min(4096, need + need // 8 + 2)  # a little extra for duplicates and rejects
        for row in _generate(model, step, prefix_ids, batch, opts, rng, should_stop):
            name = prefix + model.vocab.decode(row[: int(np.argmin(row))] if not row.all() else row)
            if name and name not in excluded and name not in found:
                found[name] = None
                if len(found) == opts.count:
                    break
    if len(found) < opts.count:
        kind = "novel distinct" if opts.novel else "distinct"
        raise InvalidInput(f"could only generate {len(found)} {kind} names of the {opts.count} asked; "
                           "ask for fewer, raise the temperature or relax the length limits")
    return [n[:1].upper() + n[1:] for n in found]


@dataclass(frozen=True)
class PoemOptions:
    prompt: str = ""
    length: int = 400
    lines: int | None = None
    temperature: float = 1.0
    top_k: int | None = None
    seed: int | None = None

    def check(self, model: TrainedModel) -> str:
        """Validate; returns the prompt as the model reads it (folded to known characters, lowercased)."""
        _check(model.kind == "text", "this model generates names, not text; use a text model")
        _check(len(self.prompt) <= MAX_PROMPT_CHARS, f"prompt must be at most {MAX_PROMPT_CHARS} characters")
        _check(1 <= self.length <= MAX_POEM_CHARS, f"length must be between 1 and {MAX_POEM_CHARS}")
        _check(self.lines is None or 1 <= self.lines <= 200, "lines must be between 1 and 200")
        _check(0 < self.temperature <= 10, "temperature must be greater than 0 and at most 10")
        _check(self.top_k is None or self.top_k >= 1, "top-k must be at least 1")
        _check(self.seed is None or 0 <= self.seed < 2**32, "seed must be between 0 and 4294967295")
        text = model.vocab.fold(self.prompt.replace("\r\n", "\n").lower())
        bad = model.vocab.unknown(text)
        _check(not bad, f"prompt has characters the model does not know: {describe_chars(bad)}")
        return text


def continue_text(model: TrainedModel, opts: PoemOptions, should_stop: StopCheck | None = None) -> str:
    """The continuation of the prompt: `length` characters, or up to `lines` complete lines.

    `should_stop` is asked once per generated character; when it answers True, WorkStopped is raised.
    """
    text = opts.check(model)
    rng = np.random.default_rng(opts.seed)
    step = model.net.stepper(model.params)
    logits, state = _prime(model.net, step, model.params["Wy"].dtype, model.vocab.encode("\n" + text), 1)
    limit = MAX_POEM_CHARS if opts.lines is not None else opts.length
    out: list[str] = []
    newlines = 0
    for _ in range(limit):
        _poll(should_stop)
        i = draw(logits, opts.temperature, opts.top_k, rng)
        ch = model.vocab.chars[int(i[0])]
        if ch == "\n":
            newlines += 1
            if opts.lines is not None and newlines >= opts.lines:
                break
        out.append(ch)
        logits, state = step(i, state)
    return "".join(out)
