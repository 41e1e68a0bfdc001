"""Continuous batching: one scheduler thread steps the rows of every concurrent job together.

A job is a generator that does its own sampling logic (masks, draws from its own
`np.random.Generator`, stopping rules) and hands each network step to whoever drives it:
it yields `(ids (B,), state)` and receives `(logits (B, V), new state)`, and its return value
is the job's answer. `run_alone` drives one job with a stepper; a `Scheduler` drives many, each
tick concatenating the pending rows of all its jobs into one batch (rows join when a job yields,
leave when it stops yielding them), so one large matrix product serves every request instead of
one small product per request (the shipped dinos model, 2 members of a 2x128 LSTM, one BLAS
thread, here: a step of 72 rows takes 0.72 ms, a step of 9 rows 0.19 ms; bench/http_load.py
measures the service).

Exactness: matrix products can round differently in the last bits when the batch size changes
(OpenBLAS takes another path for one row: 1.4e-6 in the logits), and a different bit can flip a
draw. `blocked` therefore runs every step in blocks of a few fixed sizes (the last one padded),
which `model_stepper` first checks give a row the same bits whatever its size and place (else it
keeps to one size), so a seeded job returns the same answer alone or amid any load
(tests/test_batching.py).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Generator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from .layers import Params
from .model import CharModel, ModelState, Stepper

T = TypeVar("T")
StepRequest = tuple[np.ndarray, ModelState]  # ids (B,) and the state (per layer, arrays (B, H)) they read
StepResult = tuple[np.ndarray, ModelState]  # logits (B, V) and the next state
Job = Generator[StepRequest, StepResult, T]

BLOCK_SIZES = (2, 4, *range(8, 129, 8))  # rows per product (padding wastes at most 7); a step of 8, 32,
# 64, 128 rows takes 0.23, 0.37, 0.67, 1.2 ms on the shipped dinos model here (one BLAS thread). One row
# (0.10 ms) is left out: OpenBLAS rounds it another way
SAFE_SIZES = (32,)  # where the sizes above do not all round alike: one shape only
TICK_ROWS = 256  # rows stepped per tick at most (~2.5 ms): a big request cannot stall small ones


def blocked(step: Stepper, sizes: tuple[int, ...] = SAFE_SIZES) -> Stepper:
    """`step` run on blocks of the largest of `sizes` rows, the rest in one block of the smallest
    size that holds it (zero-padded). When every size gives a row the same bits (see
    `model_stepper`), a row's logits and state do not depend on how many rows, or which, share
    the call. Same signature as `step`."""
    big = sizes[-1]

    def run(ids: np.ndarray, state: ModelState) -> StepResult:
        n = len(ids)
        full, rest = divmod(n, big)
        blocks = [big] * full + ([next(k for k in sizes if k >= rest)] if rest else [])
        pad = sum(blocks) - n
        if pad:
            ids = np.concatenate([ids, np.zeros(pad, dtype=ids.dtype)])
            state = [tuple(np.concatenate([a, np.zeros((pad, *a.shape[1:]), dtype=a.dtype)]) for a in s)
                     for s in state]
        starts = np.cumsum([0, *blocks])
        parts = [step(ids[a:b], [tuple(x[a:b] for x in s) for s in state]) for a, b in itertools.pairwise(starts)]
        if len(parts) == 1:
            logits, new = parts[0]
            return logits[:n], [tuple(a[:n] for a in s) for s in new]
        logits = np.concatenate([p[0] for p in parts])[:n]
        new = [tuple(np.concatenate([p[1][layer][j] for p in parts])[:n] for j in range(len(s)))
               for layer, s in enumerate(parts[0][1])]
        return logits, new

    return run


def model_stepper(net: CharModel, params: Params) -> Stepper:
    """The network's stepper, blocked with the sizes `exact_sizes` finds on a random batch."""
    step = net.stepper(params)
    rng = np.random.default_rng(0)
    n = BLOCK_SIZES[-1]
    ids = rng.integers(0, net.config.vocab_size, n)
    state = [tuple(rng.uniform(-1, 1, a.shape).astype(a.dtype) for a in s)
             for s in net.zero_state(n, params["Wy"].dtype)]
    return blocked(step, exact_sizes(step, ids, state))


def exact_sizes(step: Stepper, ids: np.ndarray, state: ModelState) -> tuple[int, ...]:
    """BLOCK_SIZES if, on this machine, each of them gives the rows of the batch `ids` (at least
    BLOCK_SIZES[-1] rows) and `state` the same bits as the largest block does (also with the rows
    shifted one place), else SAFE_SIZES. Costs one step of each size (about 30 ms on the 2x256 LSTM)."""
    n = BLOCK_SIZES[-1]
    ids, state = ids[:n], [tuple(a[:n] for a in s) for s in state]
    ref = _flat(step(ids, state))
    rolled = _flat(step(np.roll(ids, 1), [tuple(np.roll(a, 1, axis=0) for a in s) for s in state]))
    same = all(np.array_equal(np.roll(a, 1, axis=0), b) for a, b in zip(ref, rolled, strict=True))
    for k in BLOCK_SIZES[:-1]:
        got = _flat(step(ids[:k], [tuple(a[:k] for a in s) for s in state]))
        same = same and all(np.array_equal(a[:k], b) for a, b in zip(ref, got, strict=True))
    return BLOCK_SIZES if same else SAFE_SIZES


def _flat(result: StepResult) -> list[np.ndarray]:
    return [result[0], *(a for s in result[1] for a in s)]


def run_alone(job: Job[T], step: Stepper) -> T:
    """Drive one job to its end with `step`; returns its answer (its exceptions propagate)."""
    try:
        request = next(job)
        while True:
            request = job.send(step(*request))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


@dataclass(eq=False)
class _Pending:
    """A job waiting for one step: its request, and the rows of it already computed."""

    job: Job[Any]
    future: Future[Any]
    ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    state: ModelState = field(default_factory=list)
    done: int = 0  # rows of the request computed so far (a big request may take several ticks)
    parts: list[StepResult] = field(default_factory=list)
    starved: bool = False  # got no rows in the last tick: goes first in the next

    @property
    def rows(self) -> int:
        return len(self.ids)


class SchedulerClosed(RuntimeError):
    """The scheduler takes no more jobs (its model version left the cache, or the service stops)."""


class Scheduler:
    """One thread that steps the jobs of one model version together (continuous batching), with
    `step` (give it `model_stepper`'s, so that answers equal `sample_names`' alone).

    `submit(job)` returns a `concurrent.futures.Future` for the job's answer (or its exception).
    Each tick takes up to TICK_ROWS rows: first the jobs that got nothing last tick, then the
    smallest requests, so a request for a thousand names shares the ticks instead of holding them.
    A job's own code (between its steps) runs on this thread too.
    """

    def __init__(self, step: Stepper, name: str = "model", tick_rows: int = TICK_ROWS) -> None:
        self._step = step
        self.tick_rows = tick_rows
        self._incoming: list[_Pending] = []
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"batching-{name}", daemon=True)
        self._thread.start()

    def submit(self, job: Job[T]) -> Future[T]:
        """Queue a job; it joins the batch at the next tick. SchedulerClosed once closed."""
        pending = _Pending(job, Future())
        with self._wake:
            if self._closed:
                raise SchedulerClosed("this model version's scheduler has closed")
            self._incoming.append(pending)
            self._wake.notify()
        return pending.future

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, wait: bool = True) -> None:
        """Take no more jobs; the thread ends once those it has are finished."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        active: list[_Pending] = []
        while True:
            with self._wake:
                while not self._incoming and not active and not self._closed:
                    self._wake.wait()
                if self._closed and not self._incoming and not active:
                    return
                new, self._incoming = self._incoming, []
            for pending in new:
                if pending.future.set_running_or_notify_cancel():
                    self._advance(pending, None, active)
            if active:
                self._tick(active)

    @staticmethod
    def _advance(pending: _Pending, result: StepResult | None, active: list[_Pending]) -> None:
        """Run the job's own code up to its next step (queued in `active`) or its end (future set)."""
        try:
            ids, state = next(pending.job) if result is None else pending.job.send(result)
        except StopIteration as done:
            pending.future.set_result(done.value)
            return
        except BaseException as exc:  # the job's error is its caller's answer; the other jobs go on
            pending.future.set_exception(exc)
            return
        pending.ids, pending.state, pending.done, pending.parts = ids, state, 0, []
        active.append(pending)

    def _tick(self, active: list[_Pending]) -> None:
        """One step for up to `tick_rows` rows of the active jobs; finished requests move their jobs on."""
        order = sorted(active, key=lambda p: (not p.starved, p.rows - p.done))
        budget = self.tick_rows
        served: list[tuple[_Pending, int, int]] = []  # job, first row, rows taken this tick
        for pending in order:
            take = min(pending.rows - pending.done, budget)
            pending.starved = take == 0
            if take:
                served.append((pending, pending.done, take))
                budget -= take
        try:
            ids = np.concatenate([p.ids[a : a + k] for p, a, k in served])
            layers = range(len(served[0][0].state))
            state = [tuple(np.concatenate([p.state[n][j][a : a + k] for p, a, k in served])
                           for j in range(len(served[0][0].state[n]))) for n in layers]
            logits, new = self._step(ids, state)
        except Exception as exc:  # a broken step (never expected): fail these jobs, keep the thread
            for pending, _, _ in served:
                active.remove(pending)
                pending.future.set_exception(exc)
            return
        at = 0
        for pending, _, k in served:
            pending.parts.append((logits[at : at + k], [tuple(a[at : at + k] for a in s) for s in new]))
            pending.done += k
            at += k
            if pending.done == pending.rows:
                active.remove(pending)
                self._advance(pending, _join(pending.parts), active)


def _join(parts: list[StepResult]) -> StepResult:
    """The pieces of one request's result, in row order, as one result."""
    if len(parts) == 1:
        return parts[0]
    logits = np.concatenate([p[0] for p in parts])
    state = [tuple(np.concatenate([p[1][n][j] for p in parts]) for j in range(len(s)))
             for n, s in enumerate(parts[0][1])]
    return logits, state
