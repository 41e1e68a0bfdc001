"""Sampling: many names in one batch through the network, and poems that continue a prompt.

Names obey three rules. Every returned name ended by itself (the model drew the end token)
within [min_length, max_length]: a row that reaches max_length without ending is thrown away
and drawn again, which conditions the model exactly on the upper limit; before min_length the
end token is masked (short names are lengthened rather than discarded, so names near the lower
limit are a little over-represented compared with exact conditioning). A space never starts or
ends a name and never follows another (masked: no training name has one there). A prefix is
used as typed after the text rule of `textnorm` and the model's case rule (`casing`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .checkpoint import TrainedModel
from .errors import InvalidInput, WorkStopped
from .model import CharModel, ModelState, Stepper
from .textnorm import clean_text, collapse_spaces
from .vocab import describe_chars

MAX_COUNT = 1000
MAX_NAME_CHARS = 100
MAX_POEM_CHARS = 2000
MAX_PROMPT_CHARS = 200
GREEDY_BELOW = 1e-3  # below this a temperature is its limit 0: a rival a logit 0.02 behind has odds < e^-20
MAX_ROW_STEPS = 150_000  # work bound of one names request: rows drawn x characters per row (about a second
# of the shipped 2x256 model on one core, at 1.5 MFLOP per row-step)
_STALE_ROUNDS = 2  # rounds in a row whose finished names were all repeats: the model has no more to give
_MAX_BATCH = 4096


StopCheck = Callable[[], bool]


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise InvalidInput(message)


def _poll(should_stop: StopCheck | None) -> None:
    """Raise WorkStopped when the caller's check says so (polled once per generation step)."""
    if should_stop is not None and should_stop():
        raise WorkStopped("sampling was stopped before it finished")


def is_greedy(temperature: float, top_k: int | None) -> bool:
    """True when sampling always takes the likeliest character (top-k 1, or temperature near 0)."""
    return top_k == 1 or temperature < GREEDY_BELOW


def draw(logits: np.ndarray, temperature: float, top_k: int | None, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per row of logits (B, V), after temperature and top-k.

    Masked entries are -inf. Logits are shifted so the likeliest is exactly 0 before dividing by
    the temperature, so nothing overflows; greedy settings (see `is_greedy`) take the argmax.
    """
    z = logits.astype(np.float64)
    if is_greedy(temperature, top_k):
        return np.asarray(z.argmax(axis=1))
    if top_k is not None and top_k < z.shape[1]:
        kth = np.partition(z, -top_k, axis=1)[:, -top_k][:, None]
        z = np.where(z >= kth, z, -np.inf)
    z = (z - z.max(axis=1, keepdims=True)) / temperature
    with np.errstate(under="ignore"):
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
        """Validate the options; returns the prefix as the model reads it (cleaned, case per model)."""
        _check(model.kind == "names", "this model generates text, not names; use a names model")
        _check(1 <= self.count <= MAX_COUNT, f"count must be between 1 and {MAX_COUNT}")
        _check(0 < self.temperature <= 10, "temperature must be greater than 0 and at most 10")
        _check(self.top_k is None or self.top_k >= 1, "top-k must be at least 1")
        _check(1 <= self.max_length <= MAX_NAME_CHARS, f"max-length must be between 1 and {MAX_NAME_CHARS}")
        _check(0 <= self.min_length <= self.max_length, "min-length must be between 0 and max-length")
        _check(self.seed is None or 0 <= self.seed < 2**32, "seed must be between 0 and 4294967295")
        _check(self.count == 1 or not is_greedy(self.temperature, self.top_k),
               f"greedy sampling (top-k 1 or a temperature below {GREEDY_BELOW:g}) always gives the same single "
               "name; ask for count 1, or for several names use the default temperature 1 and no top-k")
        prefix = model.case.model_form(collapse_spaces(clean_text(self.prefix, "prefix")))
        _check("\n" not in prefix, "prefix contains a line break, and a name is one line; remove it")
        _check(not prefix.startswith(" "), "prefix starts with a space, and names never do; remove the space")
        bad = model.vocab.unknown(prefix)
        _check(not bad, f"prefix has characters the model does not know: {describe_chars(bad)}; "
                        "use only characters that occur in its training names")
        shortest = len(prefix) + prefix.endswith(" ")  # a space must be followed by a letter
        _check(shortest <= MAX_NAME_CHARS, f"prefix is {len(prefix)} characters long; names have at most "
                                           f"{MAX_NAME_CHARS}, so use a shorter prefix")
        _check(shortest <= self.max_length, f"prefix {self.prefix!r} needs names of at least {shortest} characters, "
                                            f"more than max-length {self.max_length}; raise max-length to {shortest}")
        return prefix


def _generate(model: TrainedModel, step: Stepper, prefix_ids: np.ndarray, batch: int,
              opts: NameOptions, rng: np.random.Generator,
              should_stop: StopCheck | None = None) -> tuple[list[np.ndarray], int]:
    """Draw `batch` names continuing the prefix. Returns the continuations (ids, prefix excluded)
    of the rows that ended by themselves within the limits, and the row-steps spent."""
    n0 = len(prefix_ids)
    space = model.vocab.index.get(" ")
    logits, state = _prime(model.net, step, model.params["Wy"].dtype, np.concatenate([[0], prefix_ids]), batch)
    last = np.full(batch, prefix_ids[-1] if n0 else 0)  # 0: the start of the name
    out = np.zeros((batch, opts.max_length - n0), dtype=np.int64)
    alive = np.arange(batch)
    ended: list[np.ndarray] = []
    work = 0
    for pos in range(opts.max_length - n0 + 1):
        _poll(should_stop)
        length = n0 + pos  # characters so far
        logits = logits.astype(np.float64)  # a copy we may mask
        if length < max(1, opts.min_length):
            logits[:, 0] = -np.inf  # the end token may not come before min_length
        if space is not None:
            logits[last == space, 0] = -np.inf
            logits[(last == space) | (last == 0), space] = -np.inf
        ids = draw(logits, opts.temperature, opts.top_k, rng)
        work += len(alive)
        stop = ids == 0
        ended.extend(out[r, :pos].copy() for r in alive[stop])
        keep = ~stop
        if length == opts.max_length or not keep.any():
            break  # rows still going have hit max_length: they are thrown away
        alive, ids = alive[keep], ids[keep]
        out[alive, pos] = ids
        last = ids
        state = [tuple(a[keep] for a in s) for s in state]
        logits, state = step(ids, state)
    return ended, work


def sample_names(model: TrainedModel, opts: NameOptions, should_stop: StopCheck | None = None) -> list[str]:
    """`count` distinct names (novel ones only if asked), shown in the model's case style.

    Raises InvalidInput with advice when the work bound (MAX_ROW_STEPS) is spent first, and
    WorkStopped when `should_stop` (asked once per generation step) answers True.
    """
    prefix = opts.check(model)
    rng = np.random.default_rng(opts.seed)
    prefix_ids = model.vocab.encode(prefix)
    excluded = set(model.names) if opts.novel else set()
    found: dict[str, None] = {}
    step = model.net.stepper(model.params)
    per_row = opts.max_length - len(prefix) + 1  # the most draws one row can take
    drawn = ended = work = stale = 0
    while len(found) < opts.count and stale < _STALE_ROUNDS:
        need = opts.count - len(found)
        share = (ended + 1) / (drawn + 1)  # rows that end within the limits, so far (add-one estimate)
        batch = min(_MAX_BATCH, max(8, int(need / share * 1.15) + 2), (MAX_ROW_STEPS - work) // per_row)
        if batch < 1 or (drawn and is_greedy(opts.temperature, opts.top_k)):
            break
        rows, spent = _generate(model, step, prefix_ids, batch, opts, rng, should_stop)
        drawn, ended, work = drawn + batch, ended + len(rows), work + spent
        before = len(found)
        for ids in rows:
            name = prefix + model.vocab.decode(ids)
            if name not in excluded and name not in found:
                found[name] = None
                if len(found) == opts.count:
                    break
        stale = stale + 1 if rows and len(found) == before else 0
    if len(found) < opts.count:
        raise InvalidInput(_shortfall(model, opts, prefix, len(found), drawn, ended))
    return [model.case.display(n) for n in found]


def _shortfall(model: TrainedModel, opts: NameOptions, prefix: str, found: int, drawn: int, ended: int) -> str:
    """Why a names request fell short, with the change that would make it work."""
    kind = "novel distinct" if opts.novel else "distinct"
    head = f"found only {found} {kind} names of the {opts.count} asked"
    if is_greedy(opts.temperature, opts.top_k):
        why = "the training list already has it" if ended else f"it does not end within max-length {opts.max_length}"
        return (f"{head}: greedy sampling gives one name and {why}; use the default temperature 1 and no top-k"
                + ("" if ended else ", or raise max-length"))
    if ended < opts.count:
        lengths = sorted(len(n) for n in model.names) or [opts.max_length]
        return (f"{head}: only {ended} of {drawn} drawn names ({ended / max(drawn, 1):.1%}) end by themselves "
                f"within max-length {opts.max_length}; raise max-length above {opts.max_length} (9 in 10 "
                f"training names have at most {lengths[int(0.9 * (len(lengths) - 1))]} characters)")
    if found == 0:
        return (f"{head}: every name that fits the prefix and length limits is in the training list; drop novel, "
                "or loosen the prefix and length limits")
    return (f"{head}: at these settings the model keeps repeating {found} names; ask for at most {found}, "
            "raise the temperature, or loosen the prefix and length limits")


@dataclass(frozen=True)
class PoemOptions:
    prompt: str = ""
    length: int = 400
    lines: int | None = None
    temperature: float = 1.0
    top_k: int | None = None
    seed: int | None = None

    def check(self, model: TrainedModel) -> str:
        """Validate; returns the prompt as the model reads it (cleaned, case per model, typographic
        characters the model lacks folded to plain ones it knows)."""
        _check(model.kind == "text", "this model generates names, not text; use a text model")
        _check(len(self.prompt) <= MAX_PROMPT_CHARS, f"prompt must be at most {MAX_PROMPT_CHARS} characters")
        _check(1 <= self.length <= MAX_POEM_CHARS, f"length must be between 1 and {MAX_POEM_CHARS}")
        _check(self.lines is None or 1 <= self.lines <= 200, "lines must be between 1 and 200")
        _check(0 < self.temperature <= 10, "temperature must be greater than 0 and at most 10")
        _check(self.top_k is None or self.top_k >= 1, "top-k must be at least 1")
        _check(self.seed is None or 0 <= self.seed < 2**32, "seed must be between 0 and 4294967295")
        typed = clean_text(self.prompt, "prompt")
        bad = {c for c in set(typed) if model.vocab.unknown(model.vocab.fold(model.case.model_form(c)))}
        _check(not bad, f"prompt has characters the model does not know: {describe_chars(bad)}")
        return model.vocab.fold(model.case.model_form(typed))


def continue_text(model: TrainedModel, opts: PoemOptions, should_stop: StopCheck | None = None) -> str:
    """The continuation of the prompt: `length` characters, or up to `lines` complete lines (a blank
    line does not count: a run of newlines is no verse).

    `should_stop` is asked once per generated character; when it answers True, WorkStopped is raised.
    """
    text = opts.check(model)
    rng = np.random.default_rng(opts.seed)
    step = model.net.stepper(model.params)
    logits, state = _prime(model.net, step, model.params["Wy"].dtype, model.vocab.encode("\n" + text), 1)
    limit = MAX_POEM_CHARS if opts.lines is not None else opts.length
    out: list[str] = []
    lines = 0
    line_has_text = bool(text.rsplit("\n", 1)[-1].strip())  # the prompt may end mid-line
    for _ in range(limit):
        _poll(should_stop)
        i = draw(logits, opts.temperature, opts.top_k, rng)
        ch = model.vocab.chars[int(i[0])]
        if ch == "\n":
            lines += line_has_text
            line_has_text = False
            if opts.lines is not None and lines >= opts.lines:
                break
        else:
            line_has_text = line_has_text or not ch.isspace()
        out.append(ch)
        logits, state = step(i, state)
    return "".join(out)
