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
from dataclasses import dataclass

import numpy as np

from .checkpoint import TrainedModel
from .errors import InvalidInput
from .evaluate import names_log_probs
from .model import ModelState, log_softmax
from .sample import NameOptions, NamePlan, StopCheck, _poll

MAX_EXPANSIONS = 100_000  # prefixes expanded per request (each one model step of one row): about 3.5 s and
# 600 MB here (one BLAS thread); 7 dinos names ending in "x" of at most 6 characters would take 120,000
_EXPAND_BATCH = 256  # prefixes stepped together (a wider step costs little more than a narrow one)
_SLACK = 1e-4  # nats: the search's running sums of float32 steps are within 3e-6 of the exact log-probabilities
# (score's); names that close to the cut are all found, then ranked by the exact values


@dataclass(eq=False)
class _Parent:
    """An expanded prefix: the state after reading it and its children (next characters, 0 the end)
    that may still lead to an answer, most probable first. Only its best child not yet taken waits
    on the heap (k-best successor order), not all of them: a tenth of the heap and its pushes."""

    text: str  # model form, prefix included
    state: ModelState  # the expansion batch's next state; row `row` is this prefix's
    row: int
    chars: np.ndarray  # (C,) child ids, by falling log-probability
    log_probs: np.ndarray  # (C,) the children's log-probabilities, falling


def _gather(prefixes: list[tuple[str, float, _Parent]]) -> ModelState:
    """The recurrent states of the prefixes' parents, stacked into one batch."""
    first = prefixes[0][2].state
    return [tuple(np.concatenate([p.state[n][j][p.row : p.row + 1] for _, _, p in prefixes])
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
    rule = max(len(plan.suffix), len(plan.contains))  # characters the rules may still need
    tick = itertools.count()
    heap: list[tuple[float, int, _Parent, int]] = []  # (-log-prob, tie, parent, rank): its rank-th child
    admitted: list[float] = []  # log-probs of the best `count` admissible complete names known (a min-heap)
    found: list[tuple[str, float]] = []
    expansions = 0

    def wanted(name: str) -> bool:
        return plan.admits(name) and name not in taken and not (reject is not None and reject(name))

    def bound() -> float:
        return admitted[0] - _SLACK if len(admitted) == opts.count else -np.inf

    def settled() -> bool:
        """The `count` best are found, and no queued candidate comes within _SLACK of the last of them."""
        return len(found) >= opts.count and (not heap or -heap[0][0] < found[opts.count - 1][1] - _SLACK)

    def offer(parent: _Parent, rank: int) -> None:
        """Queue the parent's rank-th child unless it (and so every later one) falls below the bound."""
        if rank < len(parent.chars) and parent.log_probs[rank] >= bound():
            heapq.heappush(heap, (-float(parent.log_probs[rank]), next(tick), parent, rank))

    # the first expansion: the prefix, read up to its last character (the state a parent would hold)
    batch: list[tuple[str, float, _Parent]] = [(plan.prefix, lp, _Parent("", state, 0, ids[:0], np.empty(0)))]
    while batch and not settled():
        _poll(should_stop)
        expansions += len(batch)
        if expansions > MAX_EXPANSIONS:
            raise InvalidInput(f"mode beam found only {len(found)} of the {opts.count} names asked within its work "
                               f"bound ({MAX_EXPANSIONS:,} prefixes); "
                               + ("ask for fewer names, " if opts.count > 1 else "")
                               + "loosen the prefix, suffix, contains or exclude rule, or use mode sample, which "
                                 "draws names under the same rules")
        last = np.array([model.vocab.index[text[-1]] if text else 0 for text, _, _ in batch])
        logits, new_state = step(last, _gather(batch))
        children = log_softmax(logits.astype(np.float64)) + np.array([lp for _, lp, _ in batch])[:, None]
        lengths = np.array([len(text) for text, _, _ in batch])
        allowed = np.empty(logits.shape, dtype=bool)
        for length in np.unique(lengths):  # the masks depend on the length: one call per length
            rows = lengths == length
            allowed[rows] = plan.mask(model, logits[rows], last[rows], int(length)) > -np.inf
        allowed[lengths >= plan.max_length, 1:] = False
        allowed &= children >= bound()
        for i in np.flatnonzero(allowed[:, 0]).tolist():  # complete names that break a rule are never queued
            allowed[i, 0] = wanted(batch[i][0])
        for i in np.flatnonzero(lengths + 1 + rule > plan.max_length).tolist():  # children may lack room for rules
            for c in (np.flatnonzero(allowed[i, 1:]) + 1).tolist():
                allowed[i, c] = plan.shortest_completion(batch[i][0] + model.vocab.chars[c]) <= plan.max_length
        order = np.argsort(np.where(allowed, -children, np.inf), axis=1, kind="stable")  # best child first
        for row, (text, _, _) in enumerate(batch):
            chars = order[row, : allowed[row].sum()]
            if allowed[row, 0]:
                (heapq.heappush if len(admitted) < opts.count else heapq.heappushpop)(admitted, children[row, 0])
            offer(_Parent(text, new_state, row, chars, children[row, chars]), 0)
        batch = []
        while heap and len(batch) < _EXPAND_BATCH and not settled():
            neg_lp, _, parent, rank = heap[0]
            c = int(parent.chars[rank])
            if c == 0 and batch:  # a complete name is final only when no prefix popped before it could beat it
                break
            heapq.heappop(heap)
            offer(parent, rank + 1)
            if -neg_lp < bound():
                continue  # queued before the bound rose past it
            if c == 0:
                found.append((parent.text, -neg_lp))
            else:
                batch.append((parent.text + model.vocab.chars[c], -neg_lp, parent))
    if len(found) < opts.count:
        raise InvalidInput(f"only {_names(len(found))} meet{'s' * (len(found) == 1)} these constraints within "
                           f"max-length {plan.max_length}; ask for at most {_names(len(found))} or loosen the "
                           "constraints")
    # ranked by the log-probabilities as `score` computes them (one name at a time), not the search's
    # sums, which differ in the last digits: a near-tie at the cut may swap
    exact = names_log_probs(model.net, model.params, [model.vocab.encode(n) for n, _ in found], batch=1)
    return sorted(zip((n for n, _ in found), exact.tolist(), strict=True), key=lambda pair: -pair[1])[: opts.count]


def _names(n: int) -> str:
    return f"{n} name{'s' * (n != 1)}"


def most_likely_names(model: TrainedModel, opts: NameOptions, should_stop: StopCheck | None = None,
                      reject: Callable[[str], bool] | None = None) -> list[tuple[str, float]]:
    """`best_names` for validated options, the names shown in the model's case style."""
    return [(model.case.display(n), lp) for n, lp in best_names(model, opts.check(model), opts, should_stop, reject)]
