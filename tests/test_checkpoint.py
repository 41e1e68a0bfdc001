"""Model directories round-trip exactly; damaged or foreign ones give a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.charlm import checkpoint
from app.charlm.checkpoint import TrainedModel
from app.charlm.errors import InvalidModel, ModelNotFound
from app.charlm.evaluate import evaluate
from app.charlm.sample import NameOptions, sample_names
from app.charlm.store import ModelStore

from .conftest import FIXTURES


def test_round_trip_gives_identical_samples(tiny_names_model: TrainedModel, tmp_path: Path) -> None:
    path = checkpoint.save(tiny_names_model, tmp_path / "m")
    loaded = checkpoint.load(path)
    assert loaded.config == tiny_names_model.config and loaded.vocab == tiny_names_model.vocab
    assert loaded.names == tiny_names_model.names
    for k, v in tiny_names_model.params.items():
        np.testing.assert_array_equal(loaded.params[k], v)
    opts = NameOptions(count=20, seed=4)
    assert sample_names(loaded, opts) == sample_names(tiny_names_model, opts)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary left behind


def test_save_replaces_atomically(tiny_names_model: TrainedModel, tmp_path: Path) -> None:
    checkpoint.save(tiny_names_model, tmp_path / "m")
    checkpoint.save(tiny_names_model, tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert checkpoint.load(tmp_path / "m").config == tiny_names_model.config


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "model.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "weights.npz").write_bytes(b"garbage"), "unreadable"),
        (lambda d: (d / "weights.npz").unlink(), "missing"),
        (lambda d: (d / "model.json").unlink(), "not a model directory"),
        (lambda d: _edit_meta(d, format_version=99), "format version"),
        (lambda d: _edit_meta(d, hidden=31), "hidden size"),
        (lambda d: _edit_meta(d, hidden=10**9), "hidden size"),  # refused before anything of that size is built
        (lambda d: _edit_meta(d, layers=10**7), "number of layers"),
        (lambda d: (d / "names.txt").write_bytes(b"caf\xe9\n"), "names.txt is not UTF-8"),
        (lambda d: (d / "reference.json").write_text('{"set": "validation", "nll_per_char": []}'), "reference.json"),
        (lambda d: _edit_meta(d, vocab=["a", "b"]), "bad model.json"),
        (lambda d: _edit_meta(d, arch="transformer"), "architecture"),
    ],
)
def test_damaged_directories_are_refused(tiny_names_model: TrainedModel, tmp_path: Path, damage, message) -> None:
    d = checkpoint.save(tiny_names_model, tmp_path / "m")
    damage(d)
    with pytest.raises(InvalidModel, match=message):
        checkpoint.load(d)


def test_pickled_weights_are_never_loaded(tiny_names_model: TrainedModel, tmp_path: Path) -> None:
    d = checkpoint.save(tiny_names_model, tmp_path / "m")
    arrays = dict(np.load(d / "weights.npz"))
    arrays["Wy"] = np.array([object()], dtype=object)
    np.savez(d / "weights.npz", **arrays)
    with pytest.raises(InvalidModel):
        checkpoint.load(d)


def _edit_meta(d: Path, **changes: object) -> None:
    meta = json.loads((d / "model.json").read_text())
    meta.update(changes)
    (d / "model.json").write_text(json.dumps(meta))


def test_store_versions_and_builtins(tiny_names_model: TrainedModel, tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    assert "dinos" in store.names() and store.active_version("dinos") == "builtin"
    assert store.add_version("pets", tiny_names_model) == "1"
    assert store.add_version("pets", tiny_names_model) == "2"
    assert store.versions("pets") == ["1", "2"] and store.active_version("pets") == "2"
    assert store.resolve("pets") == tmp_path / "pets" / "versions" / "2"
    with pytest.raises(Exception, match="built-in"):
        store.add_version("dinos", tiny_names_model)
    with pytest.raises(ModelNotFound):
        store.resolve("nope")
    with pytest.raises(ModelNotFound):
        store.resolve("../etc")


def test_partial_writes_are_removed(tiny_names_model: TrainedModel, tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.add_version("pets", tiny_names_model)
    (tmp_path / "pets" / "versions" / ".2.tmp-deadbeef").mkdir()
    (tmp_path / "pets" / ".ACTIVE.cafe").write_text("2\n")
    assert store.remove_partial_writes() == 2
    assert store.versions("pets") == ["1"] and store.active_version("pets") == "1"
    assert sorted(p.name for p in (tmp_path / "pets").iterdir()) == ["ACTIVE", "versions"]


def test_format_version_1_directories_keep_loading(tmp_path: Path) -> None:
    """A model written by Dinosaurus 0.1.0 (no case fields) folds case and shows Title case."""
    old = checkpoint.load(FIXTURES / "v1_names_model")
    assert json.loads((FIXTURES / "v1_names_model" / "model.json").read_text())["format_version"] == 1
    assert (old.case.mode, old.case.style) == ("fold", "title")
    names = sample_names(old, NameOptions(count=5, seed=0, prefix="A"))
    assert all(n[0] == "A" and n[1:] == n[1:].lower() for n in names)
    assert evaluate(old, "Aachenosaurus\n").nll_per_char == evaluate(old, "aachenosaurus\n").nll_per_char
    resaved = checkpoint.load(checkpoint.save(old, tmp_path / "again"))  # re-saved in the current format
    assert resaved.case == old.case
    assert json.loads((tmp_path / "again" / "model.json").read_text())["format_version"] == checkpoint.FORMAT_VERSION


def test_case_round_trips(tiny_multiword_model: TrainedModel, tmp_path: Path) -> None:
    loaded = checkpoint.load(checkpoint.save(tiny_multiword_model, tmp_path / "m"))
    assert loaded.case == tiny_multiword_model.case and loaded.case.mode == "keep"
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["case"] == "keep" and "case_style" not in meta  # nothing to restore when case is kept
