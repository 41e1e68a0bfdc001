"""The shipped models load quickly and produce what users came for."""

from __future__ import annotations

import json
import re

from app.charlm.data import parse_names
from app.charlm.sample import NameOptions, PoemOptions, continue_text, sample_names
from app.charlm.store import ModelStore

from .conftest import DINOS, SONNETS


def test_dinos_model_records_how_to_rebuild_it() -> None:
    store = ModelStore()
    meta = json.loads((store.model_dir("dinos") / "model.json").read_text())
    assert meta["command"].startswith("python -m app train --data data/dinos.txt --out model_store/dinos")
    assert meta["metrics"]["val_nll_per_char"] < 1.75  # far better than the course recipe (1.87)
    model = store.load("dinos")
    assert set(model.names) == {n.lower() for n in parse_names(DINOS.read_text())}  # folded (Title list)
    assert (model.case.mode, model.case.style) == ("fold", "title")


def test_novel_dinosaur_names_look_like_dinosaur_names() -> None:
    names = sample_names(ModelStore().load("dinos"), NameOptions(count=200, seed=0, novel=True))
    known = {n.lower() for n in parse_names(DINOS.read_text())}
    assert not {n.lower() for n in names} & known
    endings = ("saurus", "raptor", "don", "ops", "ia", "tor", "suchus", "ceratops", "nyx", "lus", "us")
    assert sum(n.endswith(endings) for n in names) / len(names) > 0.6


def test_shakespeare_model_writes_real_words() -> None:
    model = ModelStore().load("shakespeare")
    meta = json.loads((ModelStore().model_dir("shakespeare") / "model.json").read_text())
    assert meta["command"].startswith("python -m app train --kind text")
    vocabulary = set(re.findall(r"[a-z']+", SONNETS.read_text().lower()))
    poem = continue_text(model, PoemOptions(prompt="Forsooth this maketh no sense ", length=1000, seed=1))
    words = re.findall(r"[a-z']+", poem)
    assert len(words) > 120
    assert sum(w in vocabulary for w in words) / len(words) > 0.85
