"""Continuous batching: rows of concurrent requests share steps, and no answer depends on the load."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from app.api.registry import ModelRegistry
from app.charlm.batching import BLOCK_SIZES, SAFE_SIZES, Scheduler, SchedulerClosed, blocked, exact_sizes, model_stepper
from app.charlm.checkpoint import TrainedModel
from app.charlm.errors import InvalidInput, WorkStopped
from app.charlm.model import ModelState
from app.charlm.sample import NameOptions, names_job, sample_names
from app.charlm.store import ModelStore

from .test_api import make_client

# Options that exercise every path of a names job: plain, prefix, exclude (masks), lengths, top-k,
# temperature, novelty, pages, and the guided search (suffix, contains).
MIXED = [
    NameOptions(count=7, seed=1),
    NameOptions(count=12, seed=2, prefix="tri", min_length=6, max_length=12),
    NameOptions(count=9, seed=3, exclude="aeo", temperature=1.3),
    NameOptions(count=5, seed=4, top_k=4, temperature=0.8, novel=True),
    NameOptions(count=6, seed=5, suffix="rus"),
    NameOptions(count=6, seed=6, contains="on", max_length=20),
    NameOptions(count=8, seed=7, page=3),
    NameOptions(count=30, seed=8, max_length=9),
]


@pytest.fixture(scope="module")
def dinos() -> TrainedModel:
    return ModelStore().load("dinos")


def random_batch(model: TrainedModel, n: int, seed: int) -> tuple[np.ndarray, ModelState]:
    rng = np.random.default_rng(seed)
    state = [tuple(rng.uniform(-1, 1, a.shape).astype(a.dtype) for a in s)
             for s in model.net.zero_state(n, model.params["Wy"].dtype)]
    return rng.integers(0, model.vocab.size, n), state


def test_a_row_gets_the_same_bits_whatever_shares_its_step(dinos: TrainedModel) -> None:
    step = model_stepper(dinos.net, dinos.params)
    ids, state = random_batch(dinos, 1, 0)
    alone_logits, alone_state = step(ids, state)
    for n, at in [(2, 1), (8, 3), (37, 0), (130, 129), (300, 201)]:
        others_ids, others = random_batch(dinos, n, n)
        others_ids[at] = ids[0]
        for layer, s in enumerate(others):
            for j, a in enumerate(s):
                a[at] = state[layer][j][0]
        logits, new = step(others_ids, others)
        assert np.array_equal(logits[at], alone_logits[0]), (n, at)  # bit for bit, not approximately
        assert all(np.array_equal(a[at], b[0]) for s, t in zip(new, alone_state, strict=True)
                   for a, b in zip(s, t, strict=True))


def test_block_sizes_that_round_differently_are_not_mixed(dinos: TrainedModel) -> None:
    plain = dinos.net.stepper(dinos.params)
    ids, state = random_batch(dinos, BLOCK_SIZES[-1], 2)
    assert exact_sizes(lambda i, s: (np.ones((len(i), 3)), s), ids, state) == BLOCK_SIZES

    def size_dependent(i: np.ndarray, s: ModelState) -> tuple[np.ndarray, ModelState]:
        logits, new = plain(i, s)
        return logits + np.float32(1e-6) * (len(i) % 3), new  # like a BLAS kernel chosen by size

    assert exact_sizes(size_dependent, ids, state) == SAFE_SIZES
    # blocked pads to whole blocks: 70 rows in blocks of 32 are three steps of exactly 32 rows
    shapes: list[int] = []
    logits, _ = blocked(lambda i, s: (shapes.append(len(i)), plain(i, s))[1], (32,))(*random_batch(dinos, 70, 3))
    assert shapes == [32, 32, 32] and logits.shape == (70, dinos.vocab.size)


def test_seeded_requests_give_the_same_names_alone_and_amid_load(dinos: TrainedModel,
                                                                  tiny_names_model: TrainedModel) -> None:
    jobs = [(model, opts) for model in (dinos, tiny_names_model) for opts in MIXED]
    alone = [sample_names(model, opts) for model, opts in jobs]
    assert all(n.endswith("rus") for n in alone[4]) and len(alone[7]) == 30  # the options did what they say
    schedulers = {id(m): Scheduler(model_stepper(m.net, m.params)) for m in (dinos, tiny_names_model)}
    try:
        def run(k: int) -> list[str]:
            model, opts = jobs[k % len(jobs)]
            return schedulers[id(model)].submit(names_job(model, opts)).result(timeout=120)

        with ThreadPoolExecutor(16) as pool:  # every request three times, 16 at once, in shuffled order
            order = np.random.default_rng(0).permutation(3 * len(jobs)).tolist()
            got = dict(zip(order, pool.map(run, order), strict=True))
    finally:
        for scheduler in schedulers.values():
            scheduler.close()
    for k, names in got.items():
        assert names == alone[k % len(jobs)], jobs[k % len(jobs)][1]


def test_errors_and_stops_reach_their_own_caller_only(tiny_names_model: TrainedModel) -> None:
    model = tiny_names_model
    scheduler = Scheduler(model_stepper(model.net, model.params))
    stop = threading.Event()
    try:
        stopped = scheduler.submit(names_job(model, NameOptions(count=500, seed=1, max_length=60), stop.is_set))
        bad = scheduler.submit(names_job(model, NameOptions(count=100, seed=2, prefix="a", min_length=2, max_length=2)))
        fine = scheduler.submit(names_job(model, NameOptions(count=7, seed=9)))
        stop.set()
        with pytest.raises(WorkStopped):
            stopped.result(timeout=60)
        with pytest.raises(InvalidInput, match=r"found only \d+ distinct names") as shortfall:
            bad.result(timeout=60)
        # "a" and one of 26 letters: at most 26 distinct names exist (how many are drawn is chance)
        assert 1 <= int(str(shortfall.value).split()[2]) <= 26
        assert fine.result(timeout=60) == sample_names(model, NameOptions(count=7, seed=9))
    finally:
        scheduler.close()
    with pytest.raises(RuntimeError, match="closed"):
        scheduler.submit(names_job(model, NameOptions()))


def test_a_big_request_does_not_hold_the_steps(tiny_names_model: TrainedModel) -> None:
    model = tiny_names_model
    step = model_stepper(model.net, model.params)
    rows: list[int] = []
    gate = threading.Event()

    def spy(ids: np.ndarray, state: ModelState) -> tuple[np.ndarray, ModelState]:
        gate.wait(30)  # the first step waits until both requests are queued
        rows.append(len(ids))
        return step(ids, state)

    scheduler = Scheduler(spy, tick_rows=64)
    try:
        big = scheduler.submit(names_job(model, NameOptions(count=400, seed=1)))
        small = scheduler.submit(names_job(model, NameOptions(count=3, seed=2)))
        gate.set()
        small_names = small.result(timeout=60)
        assert not big.done()  # the small one was served in every tick, the big one in what was left
        assert len(big.result(timeout=60)) == 400 and len(small_names) == 3
    finally:
        scheduler.close()
    assert max(rows) <= 64 and len(rows) > 400 * 8 / 64  # the big request's rows were spread over ticks


def test_http_answers_do_not_depend_on_concurrent_requests(tmp_path: Path) -> None:
    queries = [{"count": 7, "seed": s} for s in range(6)] + [{"count": 5, "seed": 1, "suffix": "saurus"},
                                                             {"count": 10, "seed": 2, "prefix": "a", "page": 2}]
    with make_client(tmp_path) as client:
        alone = [client.get("/names", params=q).json()["names"] for q in queries]
        with ThreadPoolExecutor(8) as pool:
            together = list(pool.map(lambda q: client.get("/names", params=q).json()["names"], queries * 3))
    assert together == alone * 3


def test_each_loaded_version_has_one_scheduler_closed_with_it(tmp_path: Path) -> None:
    registry = ModelRegistry(ModelStore(tmp_path), capacity=1)
    model, version, scheduler = registry.engine("dinos")
    assert registry.cached_engine("dinos") == (model, version, scheduler)
    assert registry.engine("dinos")[2] is scheduler  # shared by every request for that version
    assert scheduler.submit(names_job(model, NameOptions(count=2, seed=0))).result(timeout=60)
    registry.get("shakespeare")  # evicts dinos (capacity 1): its scheduler takes no more jobs
    assert registry.cached_engine("dinos") is None
    with pytest.raises(SchedulerClosed, match="closed"):
        scheduler.submit(names_job(model, NameOptions()))
    fresh = registry.engine("dinos")[2]
    registry.close()
    with pytest.raises(RuntimeError, match="closed"):
        fresh.submit(names_job(model, NameOptions()))


def test_a_request_whose_version_left_the_cache_meanwhile_is_served(tmp_path: Path) -> None:
    """The race of a burst of new versions: a request took a version's scheduler just before the
    version left the cache and its scheduler closed. It loads the version again instead of failing."""
    with make_client(tmp_path) as client:
        first = client.get("/names", params={"seed": 3})
        registry = client.app.state.services.registry  # type: ignore[attr-defined]
        _, _, scheduler = registry.cached_engine("dinos")
        scheduler.close()  # closed behind the registry's back, as eviction does in the race
        again = client.get("/names", params={"seed": 3})
        assert again.status_code == 200, again.text
        assert again.json()["names"] == first.json()["names"]
        assert registry.cached_engine("dinos")[2] is not scheduler
