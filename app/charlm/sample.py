"""Sampling: many names in one batch through the network, and poems that continue a prompt.

Names obey three rules. Every returned name ended by itself (the model drew the end token)
within [min_length, max_length]: a row that reaches max_length without ending is thrown away
and drawn again, which conditions the model exactly on the upper limit; before min_length the
end token is masked (short names are lengthened rather than discarded, so names near the lower
limit are a little over-represented compared with exact conditioning). A space never starts or
ends a name and never follows another (masked: no training name has one there). A prefix is
used as typed after the text rule of `textnorm` and the model's case rule (`casing`).

Constraints (`suffix`, `contains`, `exclude`) are read with the same rules as the prefix.
`exclude` masks its characters at every step (like the end-token mask: the model's distribution
with those characters removed and the rest renormalised). `suffix` and `contains` use a guided
search, documented at `_generate`: each name meeting the constraint is proposed at a rate exactly
GUIDE_RATE times its probability under the model (the model's distribution conditioned on the
constraint), and the other constraint, if both are given, is checked on each name (rejection).
The returned names deviate only as a set: a name proposed several times is kept once, like
distinct names drawn by plain rejection, but likely names saturate sooner. A batch's proposals
are taken in random order, since short names finish first. Measured on a tiny model against
exhaustive enumeration in tests/test_constraints.py.

A names request is a job (`batching`): a generator that hands each network step to its driver,
`sample_names` alone or a model's `Scheduler` amid other requests, with the same answer either way.

Pages: page p of a seed is the p-th run of `count` distinct names drawn with the generator
seeded (seed, p) (page 1: seed alone, as before pages existed), each run excluding every name of
the pages before it, so a seed's pages never repeat a name and every page is reproducible.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .batching import Job, run_alone
from .checkpoint import TrainedModel
from .errors import InvalidInput, WorkStopped
from .guide import Guide
from .model import CharModel, ModelState, Stepper
from .textnorm import clean_text, collapse_spaces
from .vocab import describe_chars

MAX_COUNT = 1000
MAX_NAME_CHARS = 100
MAX_POEM_CHARS = 2000  # characters of `length`
MAX_POEM_LINES = 200
LINE_CHARS = 100  # with `lines`, at most this many characters per line asked (a sonnet line has about 40)
MAX_PROMPT_CHARS = 200
GREEDY_BELOW = 1e-3  # below this a temperature is its limit 0: a rival a logit 0.02 behind has odds < e^-20
MAX_ROW_STEPS = 150_000  # work bound of one names request: rows drawn x characters per row (about a second
# of the shipped 2x256 model on one core, at 1.5 MFLOP per row-step)
MAX_PAGE_NAMES = 5000  # page x count: pages are recomputed from the first, so this bounds a request's work
GUIDE_RATE = 32  # suffix/contains search: proposals per unit of probability (see _generate; cost vs saturation)
_GIVE_UP_ROWS = 2048  # rows without one name meeting suffix/contains: at rate GUIDE_RATE, P(such names) < 2e-5
_STALE_DRAWS = 256  # names meeting the rules drawn in a row (whole rounds) that were all repeats: the model
# has no more to give. Counted in names, not rounds: a round of a few names that all repeat says little when
# the rules leave a few likely names and many rare ones (prefix "rex", max-length 4: "Rex" and 26 "Rex?")
_MAX_BATCH = 4096


StopCheck = Callable[[], bool]
NameFilter = Callable[[str], bool]  # True: reject this name (model form), e.g. strict novelty
MODES = ("sample", "beam")


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
    if is_greedy(temperature, top_k):
        return np.asarray(logits.argmax(axis=1))
    cdf = np.cumsum(_weights(logits, temperature, top_k), axis=1)
    u = rng.random((logits.shape[0], 1)) * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=1), logits.shape[1] - 1)


def _weights(logits: np.ndarray, temperature: float, top_k: int | None) -> np.ndarray:
    """Unnormalised sampling weights (B, V) after top-k and temperature; the likeliest weighs 1."""
    z = np.asarray(logits, dtype=np.float64)  # no copy when already float64 (NamePlan.mask gives a copy)
    if top_k is not None and top_k < z.shape[1]:
        kth = np.partition(z, -top_k, axis=1)[:, -top_k][:, None]
        z = np.where(z >= kth, z, -np.inf)
    z = (z - z.max(axis=1, keepdims=True)) / temperature
    with np.errstate(under="ignore"):
        return np.exp(z)


def probabilities(logits: np.ndarray, temperature: float, top_k: int | None) -> np.ndarray:
    """The distribution `draw` samples from (B, V), rows summing to 1 (not for greedy settings)."""
    w = _weights(logits, temperature, top_k)
    return w / w.sum(axis=1, keepdims=True)


def _prime_steps(net: CharModel, dtype: Any, ids: np.ndarray,
                 should_stop: StopCheck | None = None) -> Job[tuple[np.ndarray, ModelState]]:
    """Feed `ids` to one fresh stream, a step at a time (a job: see `batching`); returns the
    last logits (1, V) and the state."""
    state = net.zero_state(1, dtype)
    logits = np.empty(0)
    for i in ids:
        _poll(should_stop)
        logits, state = yield np.full(1, i), state
    return logits, state


def _prime(net: CharModel, step: Stepper, dtype: Any, ids: np.ndarray,
           should_stop: StopCheck | None = None) -> tuple[np.ndarray, ModelState]:
    """Feed `ids` to one fresh stream; returns the last logits (1, V) and the state."""
    return run_alone(_prime_steps(net, dtype, ids, should_stop), step)


def _prime_names_steps(model: TrainedModel, plan: NamePlan,
                       should_stop: StopCheck | None = None) -> Job[tuple[np.ndarray, ModelState]]:
    ids = np.concatenate([[0], model.vocab.encode(plan.prefix)])
    return (yield from _prime_steps(model.net, model.params["Wy"].dtype, ids, should_stop))


def prime_names(model: TrainedModel, step: Stepper, plan: NamePlan,
                should_stop: StopCheck | None = None) -> tuple[np.ndarray, ModelState]:
    """The start of every name of a request: one stream fed the start token and the prefix."""
    return run_alone(_prime_names_steps(model, plan, should_stop), step)


def _tile(logits: np.ndarray, state: ModelState, batch: int) -> tuple[np.ndarray, ModelState]:
    """One primed stream as `batch` identical rows."""
    return np.repeat(logits, batch, axis=0), [tuple(np.repeat(a, batch, axis=0) for a in s) for s in state]


@dataclass(frozen=True)
class NamePlan:
    """Validated options in the model's form: what `_generate` and `beam.best_names` work from."""

    prefix: str
    suffix: str
    contains: str
    banned: frozenset[str]  # characters never drawn (`exclude`)
    min_length: int
    max_length: int

    def admits(self, name: str) -> bool:
        """True when a name (model form, within the length limits) meets the suffix and contains rules."""
        return name.endswith(self.suffix) and self.contains in name

    def shortest_completion(self, text: str) -> int:
        """The length of the shortest name that starts with `text` (model form) and ends with the
        suffix, or contains `contains` (the larger of the two when both are asked: a lower bound,
        exact for each rule alone)."""
        need = _merged_length(text, self.suffix) if self.suffix else len(text)
        if self.contains not in text:
            need = max(need, _merged_length(text, self.contains))
        return need

    def mask(self, model: TrainedModel, logits: np.ndarray, last: np.ndarray, length: int) -> np.ndarray:
        """A float64 copy of logits (B, V) with what may not come next at `length` characters set to
        -inf: the end before min_length, a space at the start, after a space or before the end, and
        the banned characters. `last` (B,) is each row's previous id (0 at the start)."""
        out = logits.astype(np.float64)
        if length < max(1, self.min_length):
            out[:, 0] = -np.inf
        space = model.vocab.index.get(" ")
        if space is not None:
            out[last == space, 0] = -np.inf
            out[(last == space) | (last == 0), space] = -np.inf
        banned = [model.vocab.index[c] for c in self.banned if c in model.vocab.index]
        if banned:
            out[:, banned] = -np.inf
        return out


def _merged_length(head: str, tail: str) -> int:
    """Length of the shortest text that starts with `head` and ends with `tail`."""
    for overlap in range(min(len(head), len(tail)), -1, -1):
        if head.endswith(tail[:overlap]):
            return len(head) + len(tail) - overlap
    return len(head) + len(tail)  # unreachable: overlap 0 always matches


@dataclass(frozen=True)
class NameOptions:
    """What a caller may ask of a names model; `check` validates against the model.

    `min_length` None means the shortest training name. `novel` drops training names; callers add
    stricter rules (e.g. Levenshtein distance 1) through `sample_names(..., reject=...)`.
    """

    count: int = 7
    temperature: float = 1.0
    top_k: int | None = None
    seed: int | None = None
    prefix: str = ""
    min_length: int | None = None
    max_length: int = 40
    novel: bool = False
    suffix: str = ""
    contains: str = ""
    exclude: str = ""
    page: int = 1
    mode: str = "sample"

    def _text(self, model: TrainedModel, text: str, what: str) -> str:
        """A prefix, suffix or contains value as the model reads it (cleaned, case per model)."""
        value = model.case.model_form(collapse_spaces(clean_text(text, what)))
        _check("\n" not in value, f"{what} contains a line break, and a name is one line; remove it")
        bad = model.vocab.unknown(value)
        _check(not bad, f"{what} has characters the model does not know: {describe_chars(bad)}; "
                        "use only characters that occur in its training names")
        return value

    def check(self, model: TrainedModel) -> NamePlan:
        """Validate the options; returns them in the model's form. Raises InvalidInput with advice."""
        _check(model.kind == "names", "this model generates text, not names; use a names model")
        _check(1 <= self.count <= MAX_COUNT, f"count must be between 1 and {MAX_COUNT}")
        _check(0 < self.temperature <= 10, "temperature must be greater than 0 and at most 10")
        _check(self.top_k is None or self.top_k >= 1, "top-k must be at least 1")
        _check(1 <= self.max_length <= MAX_NAME_CHARS, f"max-length must be between 1 and {MAX_NAME_CHARS}")
        min_length = min(model.shortest_name, self.max_length) if self.min_length is None \
            else self.min_length
        _check(0 <= min_length <= self.max_length,
               f"min-length {min_length} must be between 0 and max-length {self.max_length}; lower it or raise "
               "max-length")
        _check(self.seed is None or 0 <= self.seed < 2**32, "seed must be between 0 and 4294967295")
        _check(self.mode in MODES, f"mode must be one of {', '.join(MODES)}")
        _check(self.page >= 1, "page must be at least 1")
        _check(self.page * self.count <= MAX_PAGE_NAMES,
               f"page x count must be at most {MAX_PAGE_NAMES}; ask for page {MAX_PAGE_NAMES // self.count} or "
               "less at this count")
        _check(self.mode == "sample" or self.page == 1, "page goes with mode sample; beam gives one ranked list, "
                                                         "so ask for a larger count instead")
        _check(self.page == 1 or self.seed is not None, f"page {self.page} needs a seed: only the pages of one "
                                                         "seed never repeat a name; give the same seed on every page, "
                                                         "e.g. 42")
        _check(self.count == 1 or self.mode == "beam" or not is_greedy(self.temperature, self.top_k),
               f"greedy sampling (top-k 1 or a temperature below {GREEDY_BELOW:g}) always gives the same single "
               "name; ask for count 1, use mode beam for the most likely names, or use the default temperature "
               "1 and no top-k")
        prefix = self._text(model, self.prefix, "prefix")
        _check(not prefix.startswith(" "), "prefix starts with a space, and names never do; remove the space")
        suffix = self._text(model, self.suffix, "suffix")
        _check(not suffix.endswith(" "), "suffix ends with a space, and names never do; remove the space")
        contains = self._text(model, self.contains, "contains")
        banned = frozenset(model.case.model_form(clean_text(self.exclude, "exclude")))
        for what, value in (("prefix", prefix), ("suffix", suffix), ("contains", contains)):
            clash = banned & set(value)
            _check(not clash, f"{what} uses {describe_chars(clash)}, which exclude forbids; remove "
                              f"{'it' if len(clash) == 1 else 'them'} from exclude or from {what}")
        letters = set(model.vocab.chars[1:]) - {" "}  # what a name can be made of
        _check(bool(prefix or suffix or contains) or bool(letters - banned),
               "exclude forbids every character the model writes names with; keep at least one of "
               f"{describe_chars(letters)}")
        plan = NamePlan(prefix, suffix, contains, banned, min_length, self.max_length)
        shortest = plan.shortest_completion(prefix) + prefix.endswith(" ")  # a name never ends with a space
        label = " and ".join(w for w, v in (("prefix", prefix), ("suffix", suffix), ("contains", contains)) if v)
        _check(shortest <= MAX_NAME_CHARS, f"{label} need{'s' * (' ' not in label)} names of {shortest} characters; "
                                           f"names have at most {MAX_NAME_CHARS}, so use a shorter {label}")
        _check(shortest <= self.max_length, f"{label} need{'s' * (' ' not in label)} names of at least {shortest} "
                                            f"characters, more than max-length {self.max_length}; raise max-length "
                                            f"to {shortest}")
        return plan


def _generate(model: TrainedModel, step: Stepper, plan: NamePlan, primed: tuple[np.ndarray, ModelState], batch: int,
              opts: NameOptions, rng: np.random.Generator,
              should_stop: StopCheck | None = None) -> tuple[list[np.ndarray], int]:
    """`_generate_steps` driven alone by `step`."""
    return run_alone(_generate_steps(model, plan, primed, batch, opts, rng, should_stop), step)


def _generate_steps(model: TrainedModel, plan: NamePlan, primed: tuple[np.ndarray, ModelState], batch: int,
                    opts: NameOptions, rng: np.random.Generator, should_stop: StopCheck | None = None,
                    enough: Callable[[list[np.ndarray]], bool] | None = None) -> Job[tuple[list[np.ndarray], int]]:
    """A job (see `batching`) that draws `batch` names continuing the prefix (whose stream `primed`
    holds, see `prime_names`). Returns the continuations (ids, prefix excluded) of the rows that
    ended by themselves within the limits, and the row-steps spent. `enough` (given the rows ended
    so far, after each step where some ended) may stop the batch early by answering True.

    With a suffix S or a contains string C (and sampling, not greedy), the rows are a guided
    search instead. Walks sample the model as usual but are never returned; at every step each
    walk whose text s could still take the forced string F (S, else C; for C only if s + C holds
    no earlier C, so each name has one place its first C came from) spawns a probe carrying k
    copies, k = floor(r) or ceil(r) with mean r = GUIDE_RATE * P(F[0] | s). A probe is forced
    through the rest of F, its copies thinned at each forced step by a binomial draw with the
    model's probability of that character. For S the last forced step is the end token and a
    probe with a copy left returns s + S; for C each surviving copy continues as its own row,
    drawing freely, and returns its name when it ends (a suffix probe returns its name once per
    copy left). The expected number of returns of each name n is exactly GUIDE_RATE * P(n): names
    meeting the constraint are proposed in proportion to their probability. Names whose F overlaps
    the prefix cannot come from a probe, so walks that produce one return it: those are proposed
    at 1/GUIDE_RATE of the rate of the others.
    """
    prefix_ids = model.vocab.encode(plan.prefix)
    n0 = len(prefix_ids)
    guide = _guide(model, plan, opts)
    logits, state = _tile(*primed, batch)
    last = np.full(batch, prefix_ids[-1] if n0 else 0)  # 0: the start of the name
    out = np.zeros((batch, plan.max_length - n0), dtype=np.int64)
    ptr = np.full(batch, _WALK)  # a probe's index of its next forced character in guide.tail, or _WALK/_FREE
    copies = np.ones(batch, dtype=np.int64)
    match = np.full(batch, guide.state_after(prefix_ids) if guide and guide.table is not None else 0)
    ended: list[np.ndarray] = []
    work = 0
    for pos in range(plan.max_length - n0 + 1):
        _poll(should_stop)
        length = n0 + pos  # characters so far
        logits = plan.mask(model, logits, last, length)
        work += len(ptr)
        if guide is None:  # every row draws
            ids = draw(logits, opts.temperature, opts.top_k, rng)
            if ids.all() and length < plan.max_length:  # no row ended: every row goes on (the common step)
                out[:, pos] = last = ids
                logits, state = yield ids, state
                continue
            returned = ids == 0
            keep, reps = ~returned, copies
            parents = spawn = np.empty(0, dtype=np.int64)
        else:
            drawn = ptr < 0
            ids = np.empty(len(ptr), dtype=np.int64)
            ids[drawn] = draw(logits[drawn], opts.temperature, opts.top_k, rng)
            returned, keep, reps, parents, spawn = _guided_step(guide, plan, rng, logits, opts, ids, ptr, copies,
                                                                match, length, n0)
        for r in np.flatnonzero(returned):  # once per copy (probes of a suffix may end with several)
            ended.extend([out[r, :pos].copy()] * int(copies[r]))
        if enough is not None and returned.any() and enough(ended):
            break
        if length == plan.max_length or not (keep.any() or len(parents)):
            break  # rows still going have hit max_length: they are thrown away
        kept = np.repeat(np.flatnonzero(keep), reps[keep])
        start = 1  # a new probe's next forced character (its first is its input now)
        if guide is not None and guide.finish and len(guide.tail) == 1:  # a one-character C: the probe is through
            parents, spawn, start = np.repeat(parents, spawn), np.ones(int(spawn.sum()), dtype=np.int64), _FREE
        rows = np.concatenate([kept, parents])
        first = guide.tail[0] if guide is not None else 0
        ids = np.concatenate([ids[kept], np.full(len(parents), first)])
        copies = np.concatenate([np.where(ptr[kept] == _FREE, 1, copies[kept]), spawn])
        ptr = np.concatenate([ptr[kept], np.full(len(parents), start, dtype=np.int64)])
        match = match[rows]
        out = out[rows]
        out[:, pos] = ids
        last = ids
        state = [tuple(a[rows] for a in s) for s in state]
        logits, state = yield ids, state
    return ended, work


_WALK, _FREE = -1, -2  # rows that draw: a walk of the guided search (or any row when unguided); a finishing row


def _guide(model: TrainedModel, plan: NamePlan, opts: NameOptions) -> Guide | None:
    """The guided search's forced string for these options, or None to sample plainly."""
    if is_greedy(opts.temperature, opts.top_k):
        return None
    if plan.suffix:
        return Guide.for_suffix(model.vocab.encode(plan.suffix))
    if plan.contains and plan.contains not in plan.prefix:
        return Guide.for_contains(model.vocab.encode(plan.contains), model.vocab.size)
    return None


def _guided_step(guide: Guide, plan: NamePlan, rng: np.random.Generator, logits: np.ndarray, opts: NameOptions,
                 ids: np.ndarray, ptr: np.ndarray, copies: np.ndarray, match: np.ndarray, length: int, n0: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One step of the guided search (see `_generate`). Updates ids, ptr, copies and match in place
    for the rows; returns (rows returned now, rows kept, copies each kept row becomes, walks that
    spawn a probe, the probes' copies)."""
    p = probabilities(logits, opts.temperature, opts.top_k)
    walk, free, probe = ptr == _WALK, ptr == _FREE, np.flatnonzero(ptr >= 0)
    ids[probe] = guide.tail[ptr[probe]]
    copies[probe] = rng.binomial(copies[probe], p[probe, ids[probe]])
    can_spawn = walk & (length + guide.chars <= plan.max_length)
    if guide.early is not None:
        can_spawn &= ~guide.early[match]
    rate = GUIDE_RATE * p[can_spawn, guide.tail[0]]
    k = np.floor(rate).astype(np.int64) + (rng.random(len(rate)) < rate % 1)
    parents, spawn = np.flatnonzero(can_spawn)[k > 0], k[k > 0]
    reps = np.ones(len(ptr), dtype=np.int64)
    m = len(guide.tail)
    if guide.finish and guide.table is not None:  # contains
        match[walk] = guide.table[match[walk], ids[walk]]
        straddles = walk & (match == m) & (length + 1 - m < n0)  # a natural first C that began in the prefix
        done = (ptr == m - 1) & (copies > 0)  # probes through C: each copy goes on as a row of its own
        returned = free & (ids == 0)
        keep = ((free & (ids != 0)) | straddles | ((ptr >= 0) & (copies > 0))
                | (walk & (ids != 0) & (match < m) & (length + 1 + guide.chars <= plan.max_length)))
        reps[done] = copies[done]
        ptr[(ptr >= 0) & ~done] += 1
        ptr[done | straddles] = _FREE
    else:  # suffix: walks that end return only a name whose suffix overlaps the prefix
        overlap = walk & (length - guide.chars < n0) & (length >= guide.chars)
        returned = (ids == 0) & (copies > 0) & ((ptr >= 0) | overlap)
        keep = (ids != 0) & (copies > 0) & ((ptr >= 0) | (length + 1 + guide.chars <= plan.max_length))
        ptr[ptr >= 0] += 1
    return returned, keep, reps, parents, spawn


def is_known(model: TrainedModel, names: list[str]) -> list[bool]:
    """For each name as shown (display form), whether it is in the model's training list."""
    return [model.case.model_form(n) in model.name_set for n in names]


def sample_names(model: TrainedModel, opts: NameOptions, should_stop: StopCheck | None = None,
                 reject: NameFilter | None = None) -> list[str]:
    """`count` distinct names (novel ones only if asked) of page `opts.page`, shown in the model's
    case style. `reject` (model form -> bool) drops more names, e.g. near-copies of training names.

    Raises InvalidInput with advice when the work bound (MAX_ROW_STEPS) is spent first, and
    WorkStopped when `should_stop` (asked once per generation step) answers True. The steps run
    in blocks (`batching.model_stepper`), so the answer equals that of the same job in a `Scheduler`.
    """
    return run_alone(names_job(model, opts, should_stop, reject), model.stepper)


def names_job(model: TrainedModel, opts: NameOptions, should_stop: StopCheck | None = None,
              reject: NameFilter | None = None) -> Job[list[str]]:
    """`sample_names` as a job (see `batching`): hand it to a `Scheduler` to share its steps."""
    plan = opts.check(model)
    _check(opts.mode == "sample", "mode beam is served by beam.most_likely_names")
    taken: set[str] = set(model.names) if opts.novel else set()
    budget = [MAX_ROW_STEPS]
    primed = yield from _prime_names_steps(model, plan, should_stop)
    page: list[str] = []
    for number in range(1, opts.page + 1):
        seed = opts.seed if number == 1 or opts.seed is None else [opts.seed, number]
        rng = np.random.default_rng(seed)
        page = yield from _sample_page(model, plan, primed, opts, number, rng, taken, budget, should_stop, reject)
        taken.update(page)
    return [model.case.display(n) for n in page]


@dataclass
class _Taker:
    """Takes the names of a batch's rows, in order, into `found` until it holds `count`."""

    model: TrainedModel
    plan: NamePlan
    count: int
    taken: set[str]
    found: dict[str, None]
    reject: NameFilter | None
    admitted: list[str] = field(default_factory=list)  # names meeting the constraints, taken or not
    seen: int = 0  # rows taken so far

    def __call__(self, rows: list[np.ndarray]) -> bool:
        """Take the names of the rows not seen yet; True once `count` names are found."""
        for ids in rows[self.seen :]:
            if len(self.found) == self.count:
                return True
            self.seen += 1
            name = self.plan.prefix + self.model.vocab.decode(ids)
            if not self.plan.admits(name):
                continue
            self.admitted.append(name)
            if name not in self.taken and name not in self.found and not (self.reject and self.reject(name)):
                self.found[name] = None
                if len(self.found) == self.count:
                    return True
        return False


def _sample_page(model: TrainedModel, plan: NamePlan, primed: tuple[np.ndarray, ModelState],
                 opts: NameOptions, number: int, rng: np.random.Generator, taken: set[str], budget: list[int],
                 should_stop: StopCheck | None, reject: NameFilter | None) -> Job[list[str]]:
    """`count` distinct names (model form) not in `taken`, for page `number` of the request's pages;
    `budget` holds the row-steps left."""
    found: dict[str, None] = {}
    guided = _guide(model, plan, opts) is not None
    worst = (plan.max_length - len(plan.prefix) + 1) * (1 + 2 * guided)  # draws one row (and its probes) may take
    drawn = ended = stale = spent_here = 0
    hopeless = bool(plan.suffix or plan.contains)  # may give up early: see _GIVE_UP_ROWS
    while len(found) < opts.count and stale < _STALE_DRAWS and not (hopeless and ended == 0
                                                                     and drawn >= _GIVE_UP_ROWS):
        need = opts.count - len(found)
        share = (ended + 1) / (drawn + 1)  # rows that give an admissible name, so far (add-one estimate)
        per_row = spent_here / drawn if drawn else worst  # row-steps a row has cost so far
        batch = min(_MAX_BATCH, max(8, int(need / share * 1.15) + 2), int(budget[0] / max(per_row, 1)))
        _check(batch >= 1 or number == 1 or drawn > 0,
               f"page {opts.page} is too deep for this model: the work one request may do ran out while drawing "
               f"page {number} (pages are drawn from the first on); ask for {_earlier_page(number)}")
        if batch < 1 or (drawn and is_greedy(opts.temperature, opts.top_k)):
            break
        before = len(found)
        take = _Taker(model, plan, opts.count, taken, found, reject)
        # Unguided rows are taken in the order they end, so the batch stops once `count` names are
        # found: the rows still going could only come later. A guided batch is taken in random order.
        rows, spent = yield from _generate_steps(model, plan, primed, batch, opts, rng, should_stop,
                                                 enough=None if guided else take)
        budget[0] -= spent
        spent_here += spent
        if guided:  # a batch returns names in order of length: take them in random order
            rows = [rows[i] for i in rng.permutation(len(rows))]
        take(rows)
        drawn += batch
        ended += len(set(take.admitted)) if guided else len(take.admitted)  # a probe may return a name often
        stale = stale + len(take.admitted) if len(found) == before else 0
    if len(found) < opts.count:
        raise InvalidInput(_shortfall(model, opts, plan, number, len(found), drawn, ended))
    return list(found)


def _known_part(model: TrainedModel, rule: str, ending: bool) -> str:
    """The longest proper ending (or beginning, for `contains`) of `rule` that some training name
    ends with (or contains): a shorter rule the model has seen, so one that can work ("" if none)."""
    for k in range(len(rule) - 1, 0, -1):
        part = rule[-k:] if ending else rule[:k]
        if any(n.endswith(part) if ending else part in n for n in model.name_set):
            return part
    return ""


def _common_ending(model: TrainedModel, size: int = 3) -> str:
    """The most frequent ending of `size` characters among the training names (model form)."""
    endings = Counter(n[-size:] for n in model.names if len(n) >= size)
    return endings.most_common(1)[0][0] if endings else ""


def _beam_advice(meet: str) -> str:
    return f"use mode beam, which finds the most probable names that meet {meet} (or says how many there are), "


def _pages_before(page: int) -> str:
    return "page 1" if page == 2 else f"pages 1 to {page - 1}"


def _earlier_page(page: int) -> str:
    """The advice for a page that could not be drawn: the page before it (or an earlier one)."""
    return "page 1" if page == 2 else f"page {page - 1} or an earlier one"


def _shortfall(model: TrainedModel, opts: NameOptions, plan: NamePlan, number: int, found: int, drawn: int,
               ended: int) -> str:
    """Why a names request fell short on page `number` of its pages, with the change that would make it work."""
    kind = "novel distinct" if opts.novel else "distinct"
    head = (f"found only {found} {kind} name{'s' * (found != 1)} of the {opts.count} asked"
            + (f" on page {number}" if opts.page > 1 else "")
            + (f" (page {opts.page} is drawn after {_pages_before(opts.page)})" if number < opts.page else ""))
    rules = [f"{what} {value!r}" for what, value in (("suffix", plan.suffix), ("contains", plan.contains)) if value]
    if number > 1:  # the pages before it took names: advice about counts or lengths would be about them
        return (f"{head}: {_pages_before(number)} took most of the names the model gives at these settings; ask "
                f"for {_earlier_page(number)}, or loosen the prefix, constraints and length limits")
    if is_greedy(opts.temperature, opts.top_k):
        meet = f" and meet {' and '.join(rules)}" if rules else ""
        why = ("the training list already has it" if ended
               else f"it does not end within max-length {opts.max_length}{meet}")
        return (f"{head}: greedy sampling gives one name and {why}; use the default temperature 1 and no top-k"
                + ("" if ended else ", or raise max-length"))
    if rules and ended < opts.count:
        shorter = [f"{what} {part!r}" for what, part in (("suffix", _known_part(model, plan.suffix, True)),
                                                          ("contains", _known_part(model, plan.contains, False)))
                   if part]
        if shorter:
            remedy = f"use a shorter {' or '.join(shorter)} (training names have it), "
        elif ended == 0 and not any((not plan.suffix or n.endswith(plan.suffix)) and plan.contains in n
                                    for n in model.name_set):  # nor does the rule itself
            return (f"{head}: no training name has any part of {' and '.join(rules)}, and the model gave none "
                    f"in {drawn} tries; choose a rule that training names have, such as suffix "
                    f"{_common_ending(model)!r}")
        else:
            remedy = ""
        return (f"{head}: the model gave only {ended} names with {' and '.join(rules)} within the limits in "
                f"{drawn} tries; {_beam_advice('them')}{remedy}raise max-length or the temperature"
                + (", or ask for fewer names" if opts.count > 1 else ""))
    if ended < opts.count:
        lengths = sorted(len(n) for n in model.names) or [opts.max_length]
        return (f"{head}: only {ended} of {drawn} drawn names ({ended / max(drawn, 1):.1%}) end by themselves "
                f"within max-length {opts.max_length}; raise max-length above {opts.max_length} (9 in 10 "
                f"training names have at most {lengths[int(0.9 * (len(lengths) - 1))]} characters)")
    if found == 0:
        return (f"{head}: every name that fits the prefix, constraints and length limits is in the training list; "
                "drop novel (or ask novel true instead of strict), or loosen the prefix, constraints and length limits")
    return (f"{head}: at these settings the model keeps repeating {found} name{'s' * (found != 1)}; ask for at "
            f"most {found}, {_beam_advice('these settings')}raise the temperature, or loosen the prefix, "
            "constraints and length limits")


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
        _check(self.lines is None or 1 <= self.lines <= MAX_POEM_LINES, f"lines must be between 1 and {MAX_POEM_LINES}")
        _check(0 < self.temperature <= 10, "temperature must be greater than 0 and at most 10")
        _check(self.top_k is None or self.top_k >= 1, "top-k must be at least 1")
        _check(self.seed is None or 0 <= self.seed < 2**32, "seed must be between 0 and 4294967295")
        typed = clean_text(self.prompt, "prompt")
        bad = {c for c in set(typed) if model.vocab.unknown(model.vocab.fold(model.case.model_form(c)))}
        _check(not bad, f"prompt has characters the model does not know: {describe_chars(bad)}")
        return model.vocab.fold(model.case.model_form(typed))


def continue_text(model: TrainedModel, opts: PoemOptions, should_stop: StopCheck | None = None) -> str:
    """The continuation of the prompt, whole: the pieces of `stream_text` joined."""
    return "".join(stream_text(model, opts, should_stop))


def stream_text(model: TrainedModel, opts: PoemOptions, should_stop: StopCheck | None = None) -> Iterator[str]:
    """The continuation of the prompt one character at a time, as it is drawn: `length` characters,
    or up to `lines` complete lines (a blank line does not count: a run of newlines is no verse), and
    then at most LINE_CHARS characters per line asked (a model that writes no line break stops there).

    The options are checked at the first `next` (InvalidInput). `should_stop` is asked once per
    generated character; when it answers True, WorkStopped is raised.
    """
    text = opts.check(model)
    rng = np.random.default_rng(opts.seed)
    step = model.net.stepper(model.params)
    logits, state = _prime(model.net, step, model.params["Wy"].dtype, model.vocab.encode("\n" + text), should_stop)
    limit = opts.lines * LINE_CHARS if opts.lines is not None else opts.length
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
        yield ch
        logits, state = step(i, state)
