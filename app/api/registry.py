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
from app.charlm.batching import Scheduler, model_stepper
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

    def cached(self, name: str) -> tuple[TrainedModel, str] | None:
        """`get`'s answer when that version is loaded already, else None: reads one small file at
        most, so the event loop may ask (ModelNotFound if no such model)."""
        version = self.store.active_version(name)
        with self._lock:
            model = self._cache.get((name, version))
        return None if model is None else (model, version)

    def scheduler(self, name: str, version: str, model: TrainedModel) -> Scheduler:
        """The batching scheduler of a loaded version (`model`, from `get`), started on first use."""
        key = (name, version)
        with self._lock:
            if key not in self._schedulers:
                self._schedulers[key] = Scheduler(model_stepper(model.net, model.params), f"{name}-{version}")
            return self._schedulers[key]

    def close(self) -> None:
        """Stop every scheduler once its jobs are done (service shutdown)."""
        with self._lock:
            schedulers, self._schedulers = list(self._schedulers.values()), {}
        for scheduler in schedulers:
            scheduler.close()

    def loaded(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._cache)
