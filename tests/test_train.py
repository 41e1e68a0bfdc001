"""The fast trainer: learns, is reproducible, respects its budget and refuses bad data."""

from __future__ import annotations

import numpy as np
import pytest

from app.charlm.data import parse_names
from app.charlm.errors import InvalidInput, TrainingCancelled
from app.charlm.evaluate import evaluate
from app.charlm.train import DEFAULTS, Progress, TrainConfig, train

from .conftest import DINOS, SONNETS

SMALL = dict(hidden=24, layers=1, epochs=2, batch_size=64)


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    text = "\n".join(parse_names(DINOS.read_text())[:300])
    a = train(text, TrainConfig(seed=5, **SMALL))
    b = train(text, TrainConfig(seed=5, **SMALL))
    c = train(text, TrainConfig(seed=6, **SMALL))
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert any(not np.array_equal(a.params[k], c.params[k]) for k in a.params)


@pytest.mark.parametrize("arch", ["rnn", "lstm"])
def test_training_beats_uniform_and_reports_progress(arch: str) -> None:
    reports: list[Progress] = []
    model = train(DINOS.read_text(), TrainConfig(arch=arch, hidden=48, layers=1, epochs=4, batch_size=32),
                  on_progress=lambda p: reports.append(p) if p.event == "epoch" else None)
    assert [r.epoch for r in reports] == [1, 2, 3, 4]
    assert reports[-1].train_loss < reports[0].train_loss
    val = model.meta["metrics"]["val_nll_per_char"]
    assert val == min(r.val_loss for r in reports if r.val_loss is not None)  # best weights kept
    assert val < np.log(27) - 0.6  # far better than guessing uniformly (3.30 nats)
    distinct = len(set(parse_names(DINOS.read_text())))
    assert model.meta["metrics"]["val_items"] == round(distinct * DEFAULTS["names"]["val_fraction"])


def test_time_budget_stops_early() -> None:
    model = train(DINOS.read_text(), TrainConfig(hidden=64, layers=1, epochs=10_000, time_budget=1.0))
    assert model.meta["training"]["epochs_run"] < 10_000
    assert model.meta["training"]["seconds"] >= 1.0  # it stops only once the budget is spent


def test_cancel_stops_training() -> None:
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(TrainingCancelled):
        train(DINOS.read_text(), TrainConfig(**SMALL), should_stop=stop)


def test_text_training_carries_state_and_evaluates() -> None:
    text = SONNETS.read_text()[:6000]
    model = train(text, TrainConfig(kind="text", hidden=32, layers=2, epochs=2, batch_size=8, window=16))
    assert model.kind == "text" and "\n" == model.vocab.chars[0]
    result = evaluate(model, SONNETS.read_text()[6000:8000])
    assert result.chars == len(SONNETS.read_text()[6000:8000].lower()) - 1
    assert result.nll_per_char < np.log(model.vocab.size)
    assert result.bits_per_char == pytest.approx(result.nll_per_char / np.log(2))


def test_names_eval_counts_every_char_plus_end() -> None:
    model = train("anna\nbob\ncarl\ndora\n", TrainConfig(**SMALL))
    result = evaluate(model, "Anna\n\n  bob \n")
    assert (result.items, result.chars) == (2, 5 + 4)


@pytest.mark.parametrize(
    "text, config, message",
    [
        ("", TrainConfig(), "empty"),
        ("anna\n", TrainConfig(), "at least 2 distinct"),
        ("x" * 100 + "\nbob\n", TrainConfig(), "longer than"),
        ("anna\nbob\n", TrainConfig(hidden=0), "--hidden"),
        ("anna\nbob\n", TrainConfig(lr=5.0), "--lr"),
        ("anna\nbob\n", TrainConfig(val_fraction=0.9), "--val-fraction"),
        ("anna\nbob\n", TrainConfig(arch="gru"), "architecture"),
    ],
)
def test_bad_training_input(text: str, config: TrainConfig, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        train(text, config)


def test_parallel_stream_scoring_matches_one_stream(tiny_text_model) -> None:  # type: ignore[no-untyped-def]
    from app.charlm.evaluate import text_nll

    ids = tiny_text_model.vocab.encode(SONNETS.read_text().lower()[:3001])
    one, n1 = text_nll(tiny_text_model.net, tiny_text_model.params, ids)
    four, n4 = text_nll(tiny_text_model.net, tiny_text_model.params, ids, streams=4, chunk=100)
    assert n1 == n4 == 3000
    assert abs(one - four) / one < 0.01  # only the context at three cuts differs
    exact, _ = text_nll(tiny_text_model.net, tiny_text_model.params, ids, streams=1, chunk=7)
    assert abs(one - exact) < 1e-6 * one  # chunking never changes the score
