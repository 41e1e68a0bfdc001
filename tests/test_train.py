"""The fast trainer: learns, is reproducible, respects its budget and refuses bad data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import app.charlm.train as train_module
from app.charlm.data import parse_names
from app.charlm.errors import InvalidInput, TrainingCancelled
from app.charlm.evaluate import evaluate
from app.charlm.train import DEFAULTS, Progress, TrainConfig, eta_seconds, expected_seconds, train

from .conftest import DINOS, FIXTURES, ROOT, SONNETS

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


SHORT_TEXT = "shall i compare thee to a summer's day? thou art more lovely and more temperate: rough winds do shak"


@pytest.mark.parametrize("seed", range(5))
def test_short_text_verdict_does_not_depend_on_the_seed(seed: int) -> None:
    # 100 characters, 10% (10) held out: 90 to train on. A batch of B streams needs 2B + 1.
    assert len(SHORT_TEXT) == 100
    config = dict(kind="text", hidden=8, layers=1, epochs=3, window=16, seed=seed)
    train(SHORT_TEXT, TrainConfig(batch_size=1, **config))  # type: ignore[arg-type]
    train(SHORT_TEXT, TrainConfig(batch_size=44, **config))  # type: ignore[arg-type]  # 2 * 44 + 1 = 89 <= 90
    with pytest.raises(InvalidInput, match="90 characters to train on .* use --batch-size 44 or less"):
        train(SHORT_TEXT, TrainConfig(batch_size=45, **config))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="use a longer text"):
        train("ab", TrainConfig(batch_size=1, val_fraction=0.0, **{k: v for k, v in config.items()}))  # type: ignore[arg-type]


def test_case_is_learnt_from_the_list() -> None:
    text = (FIXTURES / "starwars-characters.txt").read_text(encoding="utf-8")
    kept = train(text, TrainConfig(**SMALL))  # type: ignore[arg-type]
    assert kept.case.mode == "keep" and "Luke Skywalker" in kept.names and "S" in kept.vocab.chars
    folded = train(text, TrainConfig(case="fold", **SMALL))  # type: ignore[arg-type]
    assert folded.case.mode == "fold" and "luke skywalker" in folded.names
    assert not any(c.isupper() for c in folded.vocab.chars)
    # eval follows the model: a folded model scores "LUKE SKYWALKER" as "luke skywalker".
    assert evaluate(folded, "LUKE SKYWALKER").nll_per_char == evaluate(folded, "luke skywalker").nll_per_char
    with pytest.raises(InvalidInput, match="'L'"):
        evaluate(train("anna\nbob\n", TrainConfig(case="keep", **SMALL)), "Luke")  # type: ignore[arg-type]


def test_duration_arithmetic() -> None:
    # 100 steps of 0.5 s and 4 validations of 2 s: 58 s; a budget of 30 s caps it.
    assert expected_seconds(0.5, 100, 2.0, 4, None) == 58.0
    assert expected_seconds(0.5, 100, 2.0, 4, 30.0) == 30.0
    assert expected_seconds(0.5, None, 2.0, None, 30.0) == 30.0
    # 12 s for 10 of 100 steps: 108 s to go at that pace, unless the budget ends sooner.
    assert eta_seconds(12.0, 10, 100, None) == pytest.approx(108.0)
    assert eta_seconds(12.0, 10, 100, 50.0) == pytest.approx(38.0)
    assert eta_seconds(12.0, 0, 100, None) is None


def test_plan_comes_first_and_steps_are_reported_within_epochs() -> None:
    reports: list[Progress] = []
    model = train(DINOS.read_text(), TrainConfig(hidden=16, layers=1, epochs=2, batch_size=64),
                  on_progress=reports.append, report_every=0.0)
    # 1,524 distinct names, 5% (76) held out: 1,448 to train on, in ceil(1448 / 64) = 23 batches.
    plan = reports[0]
    assert plan.event == "plan" and plan.steps == 46 and plan.step == 0 and (plan.eta_seconds or 0) > 0
    assert [r.event for r in reports].count("epoch") == 2
    steps = [r for r in reports if r.event == "step"]
    assert len(steps) == 46  # report_every 0: after every step
    assert all(r.val_loss is None and r.train_loss is not None for r in steps)
    assert [r.step for r in reports if r.event == "epoch"] == [23, 46] and reports[-1].eta_seconds == 0.0
    assert model.meta["training"]["expected_seconds"] == pytest.approx(plan.eta_seconds, abs=0.01)


@pytest.mark.parametrize(("n_names", "given", "expected"), [
    # (list size, options given, options the rule gives), worked out from the rule's constants by hand
    (40, {}, dict(hidden=64, layers=1, members=1, val_fraction=0.0, epochs=60, batch_size=16)),  # then cross-validated
    (999, {"hidden": 32, "epochs": 3}, dict(hidden=32, layers=1, val_fraction=0.0, epochs=3)),
    (40, {"init_from": "dinos"}, dict(hidden=256, layers=2, val_fraction=0.0, epochs=20)),
    (1500, {}, dict(hidden=256, layers=2, members=2, val_fraction=0.05, epochs=40, batch_size=16)),
    (5000, {}, dict(epochs=16, batch_size=16, members=2)),  # 40 * 2000 / 5000
    (5000, {"members": 4}, dict(members=4)),
    (80000, {}, dict(epochs=6, batch_size=64, members=1)),  # 40 * 2000 / 80000 = 1, raised to the minimum of 6
    (80000, {"time_budget": 60.0}, dict(epochs=1_000_000, batch_size=64)),  # the budget decides
])
def test_size_rule(n_names: int, given: dict, expected: dict) -> None:  # type: ignore[type-arg]
    cfg = TrainConfig(**given).sized_for(n_names).resolved()
    assert {k: getattr(cfg, k) for k in expected} == expected
    assert TrainConfig(kind="text").sized_for(n_names) == TrainConfig(kind="text")


def test_forty_names_with_the_defaults_beat_a_kneser_ney_4gram() -> None:
    """The issue's small-list target, on one fixed draw of a list the rule was not tuned on alone."""
    from kneser_ney import KneserNey  # bench/, on the test path like tests/test_kneser_ney.py

    names = parse_names((ROOT / "data" / "lists" / "pokemon-en.txt").read_text(encoding="utf-8"))
    names = list(dict.fromkeys(n.lower() for n in names))
    order = np.random.default_rng(0).permutation(len(names))
    train_names = [names[i] for i in order[:40]]
    held = [names[i] for i in order[40:340] if set(names[i]) <= set("".join(train_names))]
    model = train("\n".join(train_names), TrainConfig())
    assert (model.config.hidden, model.config.layers, model.meta["metrics"]["val_items"]) == (64, 1, 0)
    ours = evaluate(model, "\n".join(held)).nll_per_char
    total, chars = KneserNey(order=4).fit(train_names).nll(held)
    assert ours < total / chars


def test_a_short_time_budget_buys_a_smaller_network() -> None:
    # No network of the ladder runs 15 epochs of 1,400 names in half a second: the smallest is used.
    model = train(DINOS.read_text(), TrainConfig(time_budget=0.5))
    assert (model.config.hidden, model.config.layers) == (64, 1)
    given = train(DINOS.read_text(), TrainConfig(time_budget=0.5, hidden=24))
    assert (given.config.hidden, given.config.layers) == (24, 2)  # sizes given by the user are kept


def test_cross_validation_stops_a_60_epoch_schedule() -> None:
    """Under 1,000 names the epochs come from 4-fold cross-validation; the run is then exactly a
    60-epoch schedule stopped there, as the same options given by hand produce."""
    names = parse_names((ROOT / "data" / "lists" / "cat-names.txt").read_text(encoding="utf-8"))[:40]
    model = train("\n".join(names), TrainConfig(seed=1))
    options = model.meta["training"]["options"]
    assert options["schedule_epochs"] == 60 and 1 <= options["epochs"] <= 60
    assert model.meta["training"]["epochs_run"] == options["epochs"]
    by_hand = train("\n".join(names), TrainConfig(seed=1, hidden=64, layers=1, val_fraction=0.0,
                                                  epochs=options["epochs"], schedule_epochs=60))
    for k in model.params:
        np.testing.assert_array_equal(model.params[k], by_hand.params[k])


def test_a_time_budget_only_caps_a_small_lists_cross_validated_stop() -> None:
    """A budget on a small list must not buy epochs until the names are learnt by heart (a 1x64
    network memorised 30 cat names in 8 s): the cross-validated stop holds, the budget caps it."""
    names = "\n".join(parse_names((ROOT / "data" / "lists" / "cat-names.txt").read_text(encoding="utf-8"))[:40])
    free = train(names, TrainConfig(seed=1))
    budgeted = train(names, TrainConfig(seed=1, time_budget=3600))
    assert budgeted.meta["training"]["epochs_run"] == free.meta["training"]["epochs_run"] < 60
    for k in free.params:
        np.testing.assert_array_equal(free.params[k], budgeted.params[k])


def test_a_deadline_stops_without_changing_the_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    config = TrainConfig(hidden=16, layers=1, epochs=3, batch_size=64)
    free = train(DINOS.read_text(), config)
    unhit = train(DINOS.read_text(), config, deadline=1e6)  # a deadline never reached changes nothing
    for k in free.params:
        np.testing.assert_array_equal(free.params[k], unhit.params[k])
    scored: list[int] = []
    real = train_module.names_nll

    def spy(net, params, encoded, *args, **kwargs):  # type: ignore[no-untyped-def]
        scored.append(len(encoded))
        return real(net, params, encoded, *args, **kwargs)

    monkeypatch.setattr(train_module, "names_nll", spy)
    big = "\n".join(f"{a}{b}{c}saurus" for a in "bcdfg" for b in "aeiou" for c in "klmnprstvz") * 5  # 250 names
    # A clock that ticks once per reading: the deadline of 300 ticks falls inside the first epoch
    # (about 900 steps of two names, each reading the clock at least once).
    ticks = itertools.count()
    stopped = train(big + "\n" + DINOS.read_text(), TrainConfig(hidden=16, layers=1, epochs=10_000, val_fraction=0.5,
                                                                batch_size=2), deadline=300,
                    clock=lambda: float(next(ticks)))
    assert stopped.meta["training"]["epochs_run"] < 10_000
    options = stopped.meta["training"]["options"]
    assert options["epochs"] == 10_000 and options["time_budget"] is None  # the schedule is the epochs'
    assert scored[-1] <= train_module.QUICK_VALIDATION["names"] < stopped.meta["metrics"]["val_items"]


def test_a_cross_validated_small_list_states_its_plan_before_the_folds() -> None:
    reports: list[Progress] = []
    twelve = "\n".join(parse_names(DINOS.read_text())[:12])
    train(twelve, TrainConfig(seed=3), on_progress=reports.append, report_every=0.0)
    # 12 names, no validation: 4 folds of 9 training names (one batch of 16) for a 60-epoch
    # schedule, 4 x 60 = 240 steps, then the final run counted at half the schedule: 30 steps.
    plan = reports[0]
    assert (plan.event, plan.step, plan.steps) == ("plan", 0, 240 + 30) and (plan.eta_seconds or 0) > 0
    during = [r for r in reports if r.event == "step" and r.step <= 240]
    assert len(during) >= 200 and all(r.eta_seconds is not None for r in during)  # progress during the folds
    finals = [r for r in reports if r.event == "plan"][1:]
    assert len(finals) == 1 and finals[0].step == 240  # the run's own plan continues the count
    assert reports[-1].fraction == 1.0 and reports[-1].step == reports[-1].steps
