"""Loaded models for the API: the active version of each name, swapped without a restart.

A request asks for a model once and keeps that immutable object to the end, so a version that
becomes active meanwhile is used only by requests that start after it. Each loaded version has
its own batching scheduler (app/charlm/batching.py), started on first use and closed when the
version leaves the cache (after the jobs it has).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from app.charlm import checkpoint
from app.charlm.batching import Scheduler
from app.charlm.checkpoint import TrainedModel
from app.charlm.store import ModelStore


class ModelRegistry:
    def __init__(self, store: ModelStore, capacity: int = 16) -> None:
        self.store = store
        self.capacity = capacity
        self._cache: OrderedDict[tuple[str, str], TrainedModel] = OrderedDict()
        self._schedulers: dict[tuple[str, str], Scheduler] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> tuple[TrainedModel, str]:
        """The active version of `name` and its version string (ModelNotFound if none)."""
        version = self.store.active_version(name)
        key = (name, version)
        with self._lock:
            model = self._cache.get(key)
            if model is not None:
                self._cache.move_to_end(key)
                return model, version
        model = checkpoint.load(self.store.model_dir(name, version))
        with self._lock:
            self._cache[key] = model
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
            for gone in [k for k in self._schedulers if k not in self._cache]:
                self._schedulers.pop(gone).close(wait=False)
        return model, version

    def cached_engine(self, name: str) -> tuple[TrainedModel, str, Scheduler] | None:
        """`engine`'s answer when that version is loaded and its scheduler started, else None:
        reads one small file at most, so the event loop may ask (ModelNotFound if no such model)."""
        key = (name, self.store.active_version(name))
        with self._lock:
            model, scheduler = self._cache.get(key), self._schedulers.get(key)
        return None if model is None or scheduler is None or scheduler.closed else (model, key[1], scheduler)

    def engine(self, name: str) -> tuple[TrainedModel, str, Scheduler]:
        """`get`, and the batching scheduler of that version, started on first use (checking its
        block sizes takes a few steps of the model: call from a thread)."""
        model, version = self.get(name)
        key = (name, version)
        with self._lock:
            scheduler = self._schedulers.get(key)
        if scheduler is None or scheduler.closed:
            started = Scheduler(model.stepper, f"{name}-{version}")
            with self._lock:
                scheduler = self._schedulers.get(key)
                if scheduler is None or scheduler.closed:
                    scheduler = self._schedulers[key] = started
            if scheduler is not started:
                started.close(wait=False)
        return model, version, scheduler

    def close(self) -> None:
        """Stop every scheduler once its jobs are done (service shutdown)."""
        with self._lock:
            schedulers, self._schedulers = list(self._schedulers.values()), {}
        for scheduler in schedulers:
            scheduler.close()

    def loaded(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._cache)
