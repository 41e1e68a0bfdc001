"""Shared fixtures: tiny trained models (seconds to train) and the repo's data files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.charlm.checkpoint import TrainedModel
from app.charlm.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
DINOS = ROOT / "data" / "dinos.txt"
SONNETS = ROOT / "data" / "shakespeare.txt"
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="session")
def tiny_names_model() -> TrainedModel:
    """A small LSTM trained for a few seconds on the dinosaur names."""
    config = TrainConfig(kind="names", arch="lstm", hidden=32, layers=1, epochs=3, batch_size=64, seed=3)
    return train(DINOS.read_text(), config)


@pytest.fixture(scope="session")
def tiny_text_model() -> TrainedModel:
    """A small two-layer LSTM trained for a few seconds on the first sonnets."""
    text = SONNETS.read_text()[:12000]
    config = TrainConfig(kind="text", hidden=32, layers=2, epochs=2, batch_size=16, window=32, seed=3)
    return train(text, config)


@pytest.fixture(scope="session")
def tiny_multiword_model() -> TrainedModel:
    """A small LSTM on Star Wars character names: two words, inner capitals, so case is kept."""
    config = TrainConfig(kind="names", hidden=32, layers=1, epochs=6, batch_size=16, seed=3)
    return train((FIXTURES / "starwars-characters.txt").read_text(encoding="utf-8"), config)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """The app with a token and no worker, on an empty store (see tests/test_api.py: make_client)."""
    from .test_api import make_client

    with make_client(tmp_path) as c:
        yield c
