"""The model store: built-in models shipped with the package plus versioned user models.

Layout: a built-in model is a plain model directory `<builtin>/<name>/`; a user model lives in
`<root>/<name>/versions/<n>/` with the active version's number in `<root>/<name>/ACTIVE`.
Every write is a rename of a finished directory or file, so readers never see half of one.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import shutil
import time
import uuid
from pathlib import Path

from . import checkpoint
from .checkpoint import TrainedModel
from .errors import InvalidInput, ModelNotFound


def shipped_models_dir() -> Path:
    """Where the built-in models are: the package `app.shipped` (the wheel maps the repo's model_store/
    there), or model_store/ of a checkout that was never installed."""
    try:
        return Path(str(importlib.resources.files("app.shipped")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "model_store"


BUILTIN_DIR = shipped_models_dir()
BUILTIN_VERSION = "builtin"
NAME_PATTERN = re.compile(r"[a-z0-9_-]{1,40}")


def check_model_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidInput("model name must be 1-40 characters of a-z, 0-9, '_' or '-'")
    return name


class ModelStore:
    """Finds, lists and adds model versions; `root` is writable, `builtin` is read-only."""

    def __init__(self, root: Path | str | None = None, builtin: Path | str = BUILTIN_DIR) -> None:
        self.builtin = Path(builtin)
        self.root = Path(root) if root is not None else self.builtin

    def is_builtin(self, name: str) -> bool:
        return NAME_PATTERN.fullmatch(name) is not None and (self.builtin / name / "model.json").is_file()

    def names(self) -> list[str]:
        """Built-in models (a model.json) and user models (an ACTIVE version)."""
        found: set[str] = set()
        for base, marker in ((self.builtin, "model.json"), (self.root, "ACTIVE")):
            if base.is_dir():
                found.update(d.name for d in base.iterdir()
                             if NAME_PATTERN.fullmatch(d.name) and (d / marker).is_file())
        return sorted(found)

    def versions(self, name: str) -> list[str]:
        if self.is_builtin(name):
            return [BUILTIN_VERSION]
        vdir = self.root / name / "versions"
        if not NAME_PATTERN.fullmatch(name) or not vdir.is_dir():
            return []
        # A directory without model.json is a number reserved by a write still under way (add_version).
        return sorted((d.name for d in vdir.iterdir() if d.name.isdigit() and (d / "model.json").is_file()), key=int)

    def active_version(self, name: str) -> str:
        if self.is_builtin(name):
            return BUILTIN_VERSION
        try:
            version = (self.root / name / "ACTIVE").read_text().strip() if NAME_PATTERN.fullmatch(name) else ""
        except OSError:
            version = ""
        if not version.isdigit():
            raise ModelNotFound(f"no model named {name!r}")
        return version

    def model_dir(self, name: str, version: str | None = None) -> Path:
        """Directory of a model version (the active one by default)."""
        if self.is_builtin(name):
            if version not in (None, BUILTIN_VERSION):
                raise ModelNotFound(f"model {name!r} has no version {version!r}")
            return self.builtin / name
        version = version or self.active_version(name)
        path = self.root / name / "versions" / version
        if not version.isdigit() or not path.is_dir():
            raise ModelNotFound(f"model {name!r} has no version {version!r}")
        return path

    def resolve(self, name_or_path: str) -> Path:
        """A model name in the store, or else a path to a model directory."""
        if NAME_PATTERN.fullmatch(name_or_path) and name_or_path in self.names():
            return self.model_dir(name_or_path)
        path = Path(name_or_path)
        if (path / "model.json").is_file():
            return path
        raise ModelNotFound(f"no model named {name_or_path!r} (and no model directory at that path)")

    def add_version(self, name: str, model: TrainedModel, activate: bool = True) -> str:
        """Store `model` as the next version of `name`; built-in names are refused."""
        check_model_name(name)
        if self.is_builtin(name):
            raise InvalidInput(f"{name!r} is a built-in model and cannot be replaced")
        vdir = self.root / name / "versions"
        vdir.mkdir(parents=True, exist_ok=True)
        number = max((int(d.name) for d in vdir.iterdir() if d.name.isdigit()), default=0) + 1
        while True:  # reserve the number: two workers (on any hosts) finishing together get two versions
            try:
                (vdir / str(number)).mkdir()
                break
            except FileExistsError:
                number += 1
        version = str(number)
        checkpoint.save(model, vdir / version)
        if activate:
            self.activate(name, version)
        return version

    def activate(self, name: str, version: str) -> None:
        self.model_dir(name, version)  # must exist
        tmp = self.root / name / f".ACTIVE.{uuid.uuid4().hex[:8]}"
        tmp.write_text(version + "\n")
        os.replace(tmp, self.root / name / "ACTIVE")

    def remove_partial_writes(self, older_than: float = 0.0) -> int:
        """Delete temporary files and directories left by a writer that died mid-write; with a shared
        store, only those older than `older_than` seconds (another process may be writing the rest)."""
        removed = 0
        cutoff = time.time() - older_than
        if not self.root.is_dir():
            return 0
        for name_dir in self.root.iterdir():
            for parent in (name_dir, name_dir / "versions"):
                if not parent.is_dir():
                    continue
                for leftover in parent.glob(".*"):
                    if any(tag in leftover.name for tag in (".tmp-", ".old-", ".ACTIVE.")) and (
                            older_than <= 0 or leftover.lstat().st_mtime < cutoff):
                        if leftover.is_dir():
                            shutil.rmtree(leftover, ignore_errors=True)
                        else:
                            leftover.unlink(missing_ok=True)
                        removed += 1
        return removed

    def load(self, name_or_path: str) -> TrainedModel:
        return checkpoint.load(self.resolve(name_or_path))
