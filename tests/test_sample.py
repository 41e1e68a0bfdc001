"""Batched sampling honours every option and fails clearly when a request cannot be met."""

from __future__ import annotations

import numpy as np
import pytest

from app.charlm.checkpoint import TrainedModel
from app.charlm.errors import InvalidInput
from app.charlm.sample import NameOptions, PoemOptions, continue_text, draw, sample_names


def test_draw_respects_top_k_and_temperature() -> None:
    rng = np.random.default_rng(0)
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]] * 20000))
    ids = draw(logits, 1.0, None, rng)
    freq = np.bincount(ids, minlength=4) / len(ids)
    np.testing.assert_allclose(freq, [0.5, 0.3, 0.15, 0.05], atol=0.015)
    assert set(draw(logits, 1.0, 2, rng)) <= {0, 1}
    cold = np.bincount(draw(logits, 0.05, None, rng), minlength=4) / 20000
    assert cold[0] > 0.99


def test_names_are_distinct_reproducible_and_capitalised(tiny_names_model: TrainedModel) -> None:
    opts = NameOptions(count=50, seed=7)
    names = sample_names(tiny_names_model, opts)
    assert len(names) == 50 and len(set(names)) == 50
    assert all(n[0].isupper() for n in names)
    assert names == sample_names(tiny_names_model, opts)
    assert names != sample_names(tiny_names_model, NameOptions(count=50, seed=8))


def test_prefix_and_length_limits(tiny_names_model: TrainedModel) -> None:
    names = sample_names(tiny_names_model, NameOptions(count=30, seed=1, prefix="Tyr", min_length=6, max_length=9))
    assert all(n.startswith("Tyr") for n in names)
    assert all(6 <= len(n) <= 9 for n in names)


def test_novel_excludes_training_names(tiny_names_model: TrainedModel) -> None:
    names = sample_names(tiny_names_model, NameOptions(count=100, seed=2, temperature=0.5, novel=True))
    training = set(tiny_names_model.names)
    assert not {n.lower() for n in names} & training


def test_impossible_request_fails_clearly(tiny_names_model: TrainedModel) -> None:
    # Names of exactly one letter after the prefix "a": at most 26 distinct exist.
    with pytest.raises(InvalidInput, match="found only 26 distinct names of the 100 asked"):
        sample_names(tiny_names_model, NameOptions(count=100, prefix="a", min_length=2, max_length=2, seed=0))


@pytest.mark.parametrize(
    "opts, message",
    [
        (NameOptions(count=0), "count"),
        (NameOptions(count=1001), "count"),
        (NameOptions(temperature=0), "temperature"),
        (NameOptions(top_k=0), "top-k"),
        (NameOptions(min_length=10, max_length=5), "min-length"),
        (NameOptions(max_length=0), "max-length"),
        (NameOptions(prefix="x1"), "'1'"),
    ],
)
def test_bad_name_options(tiny_names_model: TrainedModel, opts: NameOptions, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        sample_names(tiny_names_model, opts)


def test_poem_length_lines_and_prompt_rules(tiny_text_model: TrainedModel) -> None:
    text = continue_text(tiny_text_model, PoemOptions(prompt="Shall I ", length=120, seed=3))
    assert len(text) == 120
    assert text == continue_text(tiny_text_model, PoemOptions(prompt="SHALL I ", length=120, seed=3))
    lines = continue_text(tiny_text_model, PoemOptions(prompt="", lines=3, seed=1))
    assert lines.count("\n") == 2 and not lines.endswith("\n")
    # Curly quotes and accents fold to the plain characters the model knows.
    assert continue_text(tiny_text_model, PoemOptions(prompt="th\u2019é", length=5, seed=0))
    with pytest.raises(InvalidInput, match="'§'"):
        continue_text(tiny_text_model, PoemOptions(prompt="a § b"))
    with pytest.raises(InvalidInput, match="200"):
        continue_text(tiny_text_model, PoemOptions(prompt="a" * 201))
    for bad in (PoemOptions(length=0), PoemOptions(length=2001), PoemOptions(temperature=-1)):
        with pytest.raises(InvalidInput):
            continue_text(tiny_text_model, bad)


def test_kinds_are_not_mixed(tiny_names_model: TrainedModel, tiny_text_model: TrainedModel) -> None:
    with pytest.raises(InvalidInput, match="names"):
        continue_text(tiny_names_model, PoemOptions())
    with pytest.raises(InvalidInput, match="text"):
        sample_names(tiny_text_model, NameOptions())
