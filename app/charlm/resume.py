"""Resumable training state: one file under the output directory, replaced atomically.

`<dir>/resume.npz` holds everything a run needs to continue exactly where it stopped: the data
and resolved options, the weights, Adam's moments, the moving average and best weights, the
random generator's state (`np.random.Generator.bit_generator.state`), the position in the
schedule (epoch, batch, this epoch's order or carried text state) and the history so far. It is
read with `allow_pickle=False`: the metadata is JSON stored as UTF-8 bytes.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidInput

RESUME_FILE = "resume.npz"
RESUME_VERSION = 1
_META, _DATA, _VAL = "__meta__", "__data__", "__val__"


@dataclass
class Snapshot:
    """A run's state between two optimiser steps.

    `meta` is JSON-safe (options, vocabulary, counters, RNG state, history, epoch losses);
    `arrays` maps "<group>/<name>" to arrays, groups being params, m, v, ema, best and epoch.
    """

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    data: str
    val_data: str | None

    def group(self, name: str) -> dict[str, np.ndarray]:
        prefix = name + "/"
        return {k[len(prefix) :]: v for k, v in self.arrays.items() if k.startswith(prefix)}


def _bytes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def write(directory: str | Path, snap: Snapshot) -> Path:
    """Write `snap` to `<directory>/resume.npz` via a temporary file and a rename (atomic)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    target = d / RESUME_FILE
    tmp = d / f".{RESUME_FILE}.tmp-{uuid.uuid4().hex[:8]}"
    arrays = {_META: _bytes(json.dumps({"resume_version": RESUME_VERSION, **snap.meta})), _DATA: _bytes(snap.data),
              **({_VAL: _bytes(snap.val_data)} if snap.val_data is not None else {}), **snap.arrays}
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def exists(directory: str | Path) -> bool:
    return (Path(directory) / RESUME_FILE).is_file()


def read(directory: str | Path) -> Snapshot:
    """Load `<directory>/resume.npz`; a missing or damaged file raises InvalidInput naming it."""
    path = Path(directory) / RESUME_FILE
    if not path.is_file():
        raise InvalidInput(f"{directory}: no resumable run here ({RESUME_FILE} is missing); a finished run leaves "
                           "a model instead, train again with --out")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(arrays.pop(_META).tobytes().decode("utf-8"))
        data = arrays.pop(_DATA).tobytes().decode("utf-8")
        val = arrays.pop(_VAL).tobytes().decode("utf-8") if _VAL in arrays else None
    except Exception as exc:  # zip, JSON, Unicode or OS errors: all mean the file is damaged
        problem = type(exc).__name__
        raise InvalidInput(f"{path}: the resume file is damaged ({problem}); train again with --out") from None
    version = meta.get("resume_version") if isinstance(meta, dict) else None
    if version != RESUME_VERSION:
        raise InvalidInput(f"{path}: unsupported resume file version {version!r}; train again with --out")
    return Snapshot(meta, arrays, data, val)


def remove(directory: str | Path) -> None:
    (Path(directory) / RESUME_FILE).unlink(missing_ok=True)
