"""The most probable complete names, exactly: best-first (uniform-cost) search over prefixes.

A name's log-probability (temperature 1, end token included, as `score` and `eval` count it) only
falls as characters are added, so expanding the open prefix of highest log-probability first
returns complete names in descending order, and the first `count` that meet the constraints are
exactly the `count` most probable. The bound: once `count` admissible complete names are known,
no prefix scoring below the worst of them is kept, since none of its names can enter the answer.
Masks (min_length, spaces, `exclude`) prune characters; they do not renormalise, so log-probs stay
the model's own. A prefix is dropped, too, when no name of it can take the suffix or `contains`
within max_length (NamePlan.shortest_completion), and complete names that break a rule are never
queued. Work is bounded by MAX_EXPANSIONS (then InvalidInput with advice).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .checkpoint import TrainedModel
from .errors import InvalidInput
from .evaluate import names_log_probs
from .model import ModelState, log_softmax
from .sample import NameOptions, NamePlan, StopCheck, _poll

MAX_EXPANSIONS = 150_000  # prefixes expanded per request (each one model step of one row): about 5 s here
# (one BLAS thread), as hard rules need: 7 names ending in "x" of at most 6 characters take 120,000 on dinos
_EXPAND_BATCH = 256  # prefixes stepped together (a wider step costs little more than a narrow one)


class _Entry(NamedTuple):
    """A heap entry; ordered by (-log_prob, tie) only, as `tie` is unique."""

    neg_log_prob: float
    tie: int
    text: str  # model form, prefix included
    complete: bool  # the end token was taken
    state: ModelState | None  # the state batch that reads text[-1] next (None when complete)
    row: int


def _gather(entries: list[_Entry]) -> ModelState:
    """The recurrent states of `entries`, stacked into one batch."""
    first = entries[0].state
    assert first is not None
    return [tuple(np.concatenate([e.state[n][j][e.row : e.row + 1] for e in entries if e.state is not None])
                  for j in range(len(first[n]))) for n in range(len(first))]


def best_names(model: TrainedModel, plan: NamePlan, opts: NameOptions, should_stop: StopCheck | None = None,
               reject: Callable[[str], bool] | None = None) -> list[tuple[str, float]]:
    """The `opts.count` most probable names (model form) meeting `plan` (and not novel-excluded or
    rejected), with their natural-log probabilities, most probable first (ties: first found first)."""
    if opts.temperature != 1.0 or opts.top_k is not None:
        raise InvalidInput("mode beam ranks names by the model's own probabilities (temperature 1, every "
                           "character); drop temperature and top_k")
    taken = set(model.names) if opts.novel else set()
    step = model.net.stepper(model.params)
    ids = np.concatenate([[0], model.vocab.encode(plan.prefix)]).astype(np.int64)
    state = model.net.zero_state(1, model.params["Wy"].dtype)
    lp = 0.0
    for a, b in itertools.pairwise(ids):  # the prefix's own probability counts
        logits, state = step(np.array([a]), state)
        lp += float(log_softmax(logits[0].astype(np.float64))[b])
    tick = itertools.count()
    heap = [_Entry(-lp, next(tick), plan.prefix, False, state, 0)]
    admitted: list[float] = []  # log-probs of the best `count` admissible complete names pushed (a min-heap)
    found: list[tuple[str, float]] = []
    expansions = 0

    def wanted(name: str) -> bool:
        return plan.admits(name) and name not in taken and not (reject is not None and reject(name))

    while heap and len(found) < opts.count:
        batch: list[_Entry] = []
        while heap and len(batch) < _EXPAND_BATCH and len(found) < opts.count:
            if heap[0].complete:  # a complete name on top: final only when no popped prefix could still beat it
                if batch:
                    break
                done = heapq.heappop(heap)
                if wanted(done.text):
                    found.append((done.text, -done.neg_log_prob))
                continue
            batch.append(heapq.heappop(heap))
        if not batch:
            continue
        _poll(should_stop)
        expansions += len(batch)
        if expansions > MAX_EXPANSIONS:
            raise InvalidInput(f"mode beam found only {len(found)} of the {opts.count} names asked within its work "
                               f"bound ({MAX_EXPANSIONS:,} prefixes); ask for fewer names, loosen the prefix, suffix, "
                               "contains or exclude rule, or use mode sample, which draws names under the same rules")
        last = np.array([model.vocab.index[e.text[-1]] if e.text else 0 for e in batch])
        logits, new_state = step(last, _gather(batch))
        logp = log_softmax(logits.astype(np.float64))
        lengths = np.array([len(e.text) for e in batch])
        allowed = np.empty(logits.shape, dtype=bool)
        for length in np.unique(lengths):  # the masks depend on the length: one call per length
            rows = lengths == length
            allowed[rows] = plan.mask(model, logits[rows], last[rows], int(length)) > -np.inf
        allowed[lengths >= plan.max_length, 1:] = False
        children = logp - np.array([e.neg_log_prob for e in batch])[:, None]
        if len(admitted) == opts.count:
            allowed &= children >= admitted[0]
        for row, c in zip(*np.nonzero(allowed), strict=True):  # row by row, as the bound rises
            child, entry = float(children[row, c]), batch[row]
            if len(admitted) == opts.count and child < admitted[0]:
                continue
            if c == 0:
                if wanted(entry.text):  # other complete names can never be returned
                    heapq.heappush(heap, _Entry(-child, next(tick), entry.text, True, None, 0))
                    (heapq.heappush if len(admitted) < opts.count else heapq.heappushpop)(admitted, child)
            else:
                text = entry.text + model.vocab.chars[c]
                if plan.shortest_completion(text) <= plan.max_length:  # else no name of it fits
                    heapq.heappush(heap, _Entry(-child, next(tick), text, False, new_state, int(row)))
    if len(found) < opts.count:
        raise InvalidInput(f"only {_names(len(found))} meet{'s' * (len(found) == 1)} these constraints within "
                           f"max-length {plan.max_length}; ask for at most {_names(len(found))} or loosen the "
                           "constraints")
    # the log-probabilities as `score` computes them (one name at a time), not the search's sums of
    # float32 steps, which differ in the last digits; re-sorted, as a near-tie may swap
    exact = names_log_probs(model.net, model.params, [model.vocab.encode(n) for n, _ in found], batch=1)
    return sorted(zip((n for n, _ in found), exact.tolist(), strict=True), key=lambda pair: -pair[1])


def _names(n: int) -> str:
    return f"{n} name{'s' * (n != 1)}"


def most_likely_names(model: TrainedModel, opts: NameOptions, should_stop: StopCheck | None = None,
                      reject: Callable[[str], bool] | None = None) -> list[tuple[str, float]]:
    """`best_names` for validated options, the names shown in the model's case style."""
    return [(model.case.display(n), lp) for n, lp in best_names(model, opts.check(model), opts, should_stop, reject)]
