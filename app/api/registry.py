"""Loaded models for the API: the active version of each name, swapped without a restart.

A request asks for a model once and keeps that immutable object to the end, so a version that
becomes active meanwhile is used only by requests that start after it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from app.charlm import checkpoint
from app.charlm.checkpoint import TrainedModel
from app.charlm.store import ModelStore


class ModelRegistry:
    def __init__(self, store: ModelStore, capacity: int = 16) -> None:
        self.store = store
        self.capacity = capacity
        self._cache: OrderedDict[tuple[str, str], TrainedModel] = OrderedDict()
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
        return model, version

    def loaded(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._cache)
