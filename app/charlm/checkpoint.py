"""Model directories: `model.json` (metadata) + `weights.npz` (+ `names.txt` for names models, and
`reference.json`, the score reference of `reference.py`, when the model has one).

Writes go to a temporary sibling directory that is renamed into place, so a reader never sees
half a model; loading checks format version, shapes and vocabulary and never unpickles.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .batching import model_stepper
from .casing import CasePolicy
from .errors import InvalidInput, InvalidModel
from .layers import ARCHS, Params
from .members import is_block_diagonal
from .model import CharModel, ModelConfig, Stepper
from .vocab import Vocab

FORMAT_VERSION = 2  # 2 added `case` and `case_style`; version 1 directories load as fold/Title
READABLE_VERSIONS = (1, 2)
KINDS = ("names", "text")
_CONFIG_KEYS = ("format_version", "kind", "arch", "hidden", "layers", "dropout", "weight_drop", "vocab",
                "case", "case_style")


@dataclass(frozen=True)
class TrainedModel:
    """A trained model and what it needs to sample and evaluate: immutable once loaded."""

    kind: str
    config: ModelConfig
    vocab: Vocab
    params: Params
    names: tuple[str, ...] = ()  # training names of a names model (model form), for --novel
    meta: dict[str, Any] = field(default_factory=dict)  # training options, metrics, data hash
    case: CasePolicy = CasePolicy()
    reference: dict[str, Any] | None = None  # score reference (reference.py); None in older directories

    @property
    def net(self) -> CharModel:
        return CharModel(self.config, self.members)

    @cached_property
    def members(self) -> int:
        """Networks of the ensemble the model was trained as (members.py), whose blocks sampling runs
        apart: the count its training options record, when the weights are block-diagonal for it
        (checked once); else 1, the plain network, right for any weights."""
        recorded = recorded_members(self.meta, self.config.hidden)
        return recorded if is_block_diagonal(self.params, self.config.layers, recorded) else 1

    @cached_property
    def stepper(self) -> Stepper:
        """The network's blocked stepper (`batching.model_stepper`: its block sizes are checked with a
        few steps), made once per loaded model rather than once per request."""
        return model_stepper(self.net, self.params)

    @cached_property
    def name_set(self) -> frozenset[str]:
        """The training names as a set, built once (every names request asks which are known)."""
        return frozenset(self.names)

    @cached_property
    def shortest_name(self) -> int:
        """Length of the shortest training name (1 when the model keeps none), found once."""
        return min((len(n) for n in self.names), default=1)


def recorded_members(meta: dict[str, Any], hidden: object) -> int:
    """The members a model.json's training options record (members.py): a whole number from 1 to
    `hidden` (the units per layer) that divides it; 1 when they record none (models from before
    members) or something else."""
    training = meta.get("training")
    options = training.get("options") if isinstance(training, dict) else None
    members = options.get("members") if isinstance(options, dict) else None
    if type(members) is not int or type(hidden) is not int or not 1 <= members <= hidden or hidden % members:
        return 1
    return members


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _metadata(model: TrainedModel) -> dict[str, Any]:
    cfg = model.config
    return {
        "format_version": FORMAT_VERSION,
        "kind": model.kind,
        "arch": cfg.arch,
        "hidden": cfg.hidden,
        "layers": cfg.layers,
        "dropout": cfg.dropout,
        "weight_drop": cfg.weight_drop,
        "vocab": list(model.vocab.chars),
        **model.case.to_meta(),
        **model.meta,
    }


def check_target(directory: str | Path) -> None:
    """Refuse, before any training, a place `save` would harm or cannot use: an existing file or a
    directory that holds something other than a model (saving replaces the whole directory), or a
    parent that cannot be created. Raises InvalidInput naming the path."""
    target = Path(directory)
    if target.exists() and not (target.is_dir() and ((target / "model.json").is_file() or not any(target.iterdir()))):
        raise InvalidInput(f"{target} already exists and is not a model directory; saving would replace it, "
                           "so choose a new path")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"cannot create {target.parent} ({exc.strerror}); choose another path") from None
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise InvalidInput(f"{target.parent} is not writable; choose another path")


def save(model: TrainedModel, directory: str | Path) -> Path:
    """Write `model` to `directory` atomically, replacing any model already there."""
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        arrays = {k: np.asarray(v, dtype=np.float32) for k, v in model.params.items()}
        with open(tmp / "weights.npz", "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        if model.kind == "names":
            _fsync_write(tmp / "names.txt", "".join(n + "\n" for n in model.names).encode())
        if model.reference is not None:
            _fsync_write(tmp / "reference.json", json.dumps(model.reference).encode())
        _fsync_write(tmp / "model.json", json.dumps(_metadata(model), indent=2).encode())
        old = None
        # An empty target (a version number reserved by ModelStore.add_version) is replaced by the
        # rename itself, atomically: moving it aside first would free the number for a moment.
        if target.exists() and any(target.iterdir()):
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(target, old)
        os.rename(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _require(cond: bool, directory: Path, problem: str) -> None:
    if not cond:
        raise InvalidModel(f"{directory.name}: {problem}")


def load(directory: str | Path) -> TrainedModel:
    """Read and validate a model directory; any damage raises InvalidModel naming it."""
    d = Path(directory)
    _require((d / "model.json").is_file(), d, "not a model directory (no model.json)")
    _require((d / "weights.npz").is_file(), d, "weights.npz is missing")
    try:
        meta = json.loads((d / "model.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise InvalidModel(f"{d.name}: model.json is not valid JSON") from None
    _require(isinstance(meta, dict), d, "model.json is not an object")
    _require(meta.get("format_version") in READABLE_VERSIONS, d,
             f"unsupported format version {meta.get('format_version')!r} (this version reads "
             f"{', '.join(map(str, READABLE_VERSIONS))}); upgrade Dinosaurus")
    _require(meta.get("kind") in KINDS, d, f"unknown kind {meta.get('kind')!r}")
    _require(meta.get("arch") in ARCHS, d, f"unknown architecture {meta.get('arch')!r}")
    try:
        vocab = Vocab(tuple(meta["vocab"]))
        config = ModelConfig(meta["arch"], vocab.size, int(meta["hidden"]), int(meta["layers"]),
                             float(meta.get("dropout", 0.0)), float(meta.get("weight_drop", 0.0)))
        case = CasePolicy.from_meta(meta)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidModel(f"{d.name}: bad model.json ({exc})") from None
    _require(config.hidden > 0 and config.layers > 0, d, "hidden and layers must be positive")
    try:
        with np.load(d / "weights.npz", allow_pickle=False) as npz:
            params = {k: npz[k] for k in npz.files}
    except Exception as exc:  # zipfile/pickle/OS errors: all mean the file is damaged
        raise InvalidModel(f"{d.name}: weights.npz is unreadable ({type(exc).__name__})") from None
    # Sizes first, from the file's own arrays: model.json's hidden and layers are checked before the
    # expected shapes are built (building them for a damaged "hidden": 20000 would fill memory).
    _require("Wy" in params and params["Wy"].shape == (config.hidden, vocab.size), d,
             "weights do not match model.json's hidden size and vocabulary")
    stack = {k.split(".")[0] for k in params if k not in ("Wy", "by")}
    _require(len(stack) == config.layers and stack == {f"l{n}" for n in range(len(stack))}, d,
             "weights do not match model.json's number of layers")
    expected = CharModel(config).param_shapes()
    _require(set(params) == set(expected), d, "weights do not match the architecture")
    for k, shape in expected.items():
        _require(params[k].shape == shape, d, f"weight {k} has shape {params[k].shape}, expected {shape}")
        _require(params[k].dtype.kind == "f" and bool(np.isfinite(params[k]).all()), d,
                 f"weight {k} is not finite floating point")
    names: tuple[str, ...] = ()
    if meta["kind"] == "names":
        _require((d / "names.txt").is_file(), d, "names.txt is missing")
        try:
            names = tuple(n for n in (d / "names.txt").read_text(encoding="utf-8").split("\n") if n)
        except UnicodeDecodeError:
            raise InvalidModel(f"{d.name}: names.txt is not UTF-8") from None
    extra = {k: v for k, v in meta.items() if k not in _CONFIG_KEYS}
    for array in params.values():
        array.setflags(write=False)
    return TrainedModel(meta["kind"], config, vocab, params, names, extra, case, _load_reference(d))


def _load_reference(d: Path) -> dict[str, Any] | None:
    """reference.json if present and well formed (InvalidModel if damaged); None if absent."""
    path = d / "reference.json"
    if not path.is_file():
        return None
    try:
        ref = json.loads(path.read_text(encoding="utf-8"))
        scores = ref["nll_per_char"]
        ok = ref["set"] in ("validation", "training") and isinstance(scores, list) and len(scores) > 0 \
            and all(isinstance(v, float | int) for v in scores)
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        ok = False
    _require(ok, d, "reference.json is damaged (expected a set name and a non-empty list of numbers)")
    return dict(ref)

