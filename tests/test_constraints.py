"""The sampling engine's constraints, beam, scores, pages and records, checked on a tiny model
(vocabulary a, b; names of at most 4 characters) against exhaustive enumeration of its names."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from app.charlm.beam import most_likely_names
from app.charlm.casing import CasePolicy
from app.charlm.checkpoint import TrainedModel, load, save
from app.charlm.errors import InvalidInput
from app.charlm.evaluate import evaluate, names_log_probs
from app.charlm.model import CharModel, ModelConfig
from app.charlm.reference import build_reference, memorisation_rate
from app.charlm.sample import GUIDE_RATE, NameOptions, _generate, prime_names, sample_names
from app.charlm.score import score_names
from app.charlm.vocab import Vocab
from app.novelty import near_training

MAX_LEN = 4
TRAINING = ("ab", "ba", "aab", "bab", "abba")


@pytest.fixture(scope="module")
def tiny() -> TrainedModel:
    config = ModelConfig("lstm", 3, 4, 1)
    params = CharModel(config).init_params(np.random.default_rng(5))
    params = {k: (v * 3).astype(np.float32) for k, v in params.items()}  # sharper: unequal probabilities
    return TrainedModel("names", config, Vocab(("\n", "a", "b")), params, TRAINING, case=CasePolicy("fold", "lower"))


def all_names(min_len: int = 1) -> list[str]:
    return ["".join(t) for n in range(min_len, MAX_LEN + 1) for t in itertools.product("ab", repeat=n)]


def exact_log_probs(model: TrainedModel, names: list[str]) -> dict[str, float]:
    """log P(name, end) from the start state, by the full-sequence forward pass (not the sampler's stepper)."""
    lps = names_log_probs(model.net, model.params, [model.vocab.encode(n) for n in names])
    return dict(zip(names, lps.tolist(), strict=True))


def sampling_probs(model: TrainedModel) -> dict[str, float]:
    """P(name) as the sampler draws it with min_length 1: the end token masked at the start only,
    so every name's probability is divided by 1 - P(end | start) (P(end | start) = P('') below)."""
    lp = exact_log_probs(model, all_names())
    p_empty = float(np.exp(exact_log_probs(model, [""])[""]))
    return {n: float(np.exp(v)) / (1 - p_empty) for n, v in lp.items()}


@pytest.mark.parametrize("rule, holds", [({"suffix": "ab"}, lambda n: n.endswith("ab")),
                                         ({"contains": "ba"}, lambda n: "ba" in n),
                                         ({"contains": "b"}, lambda n: "b" in n)])  # one character: no forced tail
def test_guided_proposals_follow_the_model_exactly(tiny: TrainedModel, rule: dict[str, str], holds) -> None:  # type: ignore[no-untyped-def]
    # Each name meeting the rule is proposed GUIDE_RATE x P(name) times per walk on average:
    # the mean over 40 batches must match within 5 standard errors measured from the batches.
    opts = NameOptions(min_length=1, max_length=MAX_LEN, **rule)
    plan = opts.check(tiny)
    step = tiny.net.stepper(tiny.params)
    primed = prime_names(tiny, step, plan)
    rng = np.random.default_rng(0)
    batch, rounds = 400, 40
    names = [n for n in all_names() if holds(n)]
    counts = np.zeros((rounds, len(names)))
    for r in range(rounds):
        rows, _ = _generate(tiny, step, plan, primed, batch, opts, rng)
        got = [tiny.vocab.decode(ids) for ids in rows]
        assert all(holds(n) and 1 <= len(n) <= MAX_LEN for n in got)
        for n in got:
            counts[r, names.index(n)] += 1
    p = sampling_probs(tiny)
    expected = np.array([batch * GUIDE_RATE * p[n] for n in names])
    mean, se = counts.mean(axis=0), counts.std(axis=0, ddof=1) / np.sqrt(rounds)
    assert np.all(np.abs(mean - expected) <= 5 * se + 0.5), list(zip(names, mean, expected, se, strict=True))
    assert expected.min() > 1  # every name is reachable, and the check is not vacuous


def test_every_constraint_holds_and_exclude_is_masked(tiny: TrainedModel) -> None:
    for seed in range(5):
        names = sample_names(tiny, NameOptions(count=3, seed=seed, suffix="b", contains="aa", max_length=MAX_LEN))
        assert all(n.endswith("b") and "aa" in n for n in names) and len(set(names)) == 3
    assert set(sample_names(tiny, NameOptions(count=3, seed=1, exclude="b", max_length=MAX_LEN))) == \
        {"aa", "aaa", "aaaa"}  # the only names without b (min_length: the shortest training name, 2)


@pytest.mark.parametrize("opts, fragment", [
    (NameOptions(suffix="ab", exclude="b"), "exclude forbids"),
    (NameOptions(suffix="abc"), "'c'"),
    (NameOptions(prefix="ab", suffix="bba", max_length=3), "raise max-length to 4"),
    (NameOptions(count=20, suffix="ab", max_length=MAX_LEN), "ask for at most 7"),  # 7 names of <= 4 end so
    (NameOptions(count=30, page=200), "page x count"),
    (NameOptions(mode="beam", temperature=0.5), "drop temperature"),
])
def test_unsatisfiable_requests_get_advice(tiny: TrainedModel, opts: NameOptions, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        if opts.mode == "beam":
            most_likely_names(tiny, opts)
        else:
            sample_names(tiny, opts)


@pytest.mark.parametrize("rule", [{}, {"suffix": "ab"}, {"contains": "bb"}, {"exclude": "a"}, {"prefix": "b"},
                                  {"novel": True}])
def test_beam_is_the_top_of_exhaustive_enumeration(tiny: TrainedModel, rule: dict[str, object]) -> None:
    opts = NameOptions(count=4, mode="beam", min_length=1, max_length=MAX_LEN, **rule)  # type: ignore[arg-type]
    got = most_likely_names(tiny, opts)
    lp = exact_log_probs(tiny, all_names())
    ok = [n for n in lp if n.endswith(str(rule.get("suffix", ""))) and str(rule.get("contains", "")) in n
          and not set(str(rule.get("exclude", ""))) & set(n) and n.startswith(str(rule.get("prefix", "")))
          and not (rule.get("novel") and n in TRAINING)]
    best = sorted(ok, key=lambda n: -lp[n])[:4]
    assert [n for n, _ in got] == best
    np.testing.assert_allclose([v for _, v in got], [lp[n] for n in best], atol=1e-5)
    assert most_likely_names(tiny, opts) == got  # deterministic


@pytest.mark.parametrize("rule", [{"suffix": "abb"}, {"suffix": "b", "contains": "aa"}, {"contains": "bab"},
                                  {"prefix": "b", "suffix": "ba"}, {"prefix": "ab", "contains": "bb"}])
def test_beam_finds_every_name_a_tight_rule_allows(tiny: TrainedModel, rule: dict[str, str]) -> None:
    # with the count set to the number of names (by enumeration) that meet the rule within max-length 4,
    # the pruned search returns all of them, in order; one more is refused with that number
    lp = exact_log_probs(tiny, all_names())
    ok = sorted((n for n in lp if n.startswith(rule.get("prefix", "")) and n.endswith(rule.get("suffix", ""))
                 and rule.get("contains", "") in n), key=lambda n: -lp[n])
    got = most_likely_names(tiny, NameOptions(count=len(ok), mode="beam", min_length=1, max_length=MAX_LEN, **rule))
    assert [n for n, _ in got] == ok
    with pytest.raises(InvalidInput, match=f"only {len(ok)} names? meets? these constraints.*at most {len(ok)}"):
        most_likely_names(tiny, NameOptions(count=len(ok) + 1, mode="beam", min_length=1, max_length=MAX_LEN, **rule))


def test_score_equals_eval_and_percentile_counts_worse_names(tiny: TrainedModel) -> None:
    (s,) = score_names(tiny, ["abba"])
    one_line = evaluate(tiny, "abba\n")
    assert s.log_prob == pytest.approx(-one_line.nll_per_char * one_line.chars, abs=1e-6)
    assert s.nll_per_char == pytest.approx(one_line.nll_per_char, abs=1e-9) and one_line.chars == 5
    assert s.percentile is None  # no reference
    x = s.nll_per_char
    ref = {"set": "validation", "nll_per_char": sorted([x - 1, x - 0.5, x, x + 0.5, x + 1] * 4)}
    (s,) = score_names(replace(tiny, reference=ref), ["abba"])
    assert s.percentile == 40.0  # 8 of the 20 reference names are worse; equal is not worse
    with pytest.raises(InvalidInput, match="'c'"):
        score_names(tiny, ["abc"])


def test_reference_and_memorisation_are_stored_and_old_directories_load(tiny: TrainedModel, tmp_path: Path) -> None:
    validation = all_names()[:30]
    ref = build_reference(tiny, validation)
    assert ref is not None and ref["set"] == "validation" and ref["names"] == 30
    p = exact_log_probs(tiny, validation)
    np.testing.assert_allclose(ref["nll_per_char"], sorted(-p[n] / (len(n) + 1) for n in validation), atol=1e-5)
    assert build_reference(tiny, validation[:29]) is None  # 5 training names: fewer than 20
    rate = memorisation_rate(tiny)
    share = sum(sampling_probs(tiny)[n] for n in TRAINING)  # the expected share, by enumeration
    assert abs(rate - share) < 4 * np.sqrt(share * (1 - share) / 1000)
    saved = save(replace(tiny, reference=ref, meta={"memorisation_rate": rate}), tmp_path / "m")
    back = load(saved)
    assert back.reference == json.loads((saved / "reference.json").read_text()) == ref
    assert json.loads((saved / "model.json").read_text())["memorisation_rate"] == rate
    (saved / "reference.json").unlink()
    assert load(saved).reference is None  # a directory from before references


def test_pages_repeat_nothing_and_page_one_is_the_plain_answer(tiny: TrainedModel) -> None:
    opts = NameOptions(count=4, seed=4, max_length=MAX_LEN)
    pages = [sample_names(tiny, replace(opts, page=p)) for p in (1, 2, 3)]
    assert pages[0] == sample_names(tiny, opts)
    assert len(set(itertools.chain(*pages))) == 12
    assert sample_names(tiny, replace(opts, page=3)) == pages[2]


def test_strict_novelty_keeps_one_edit_away_from_training(tiny: TrainedModel) -> None:
    near = near_training(tiny)
    def one_edit(n: str) -> set[str]:  # independent: every string one insertion, deletion or substitution away
        out = {n[:i] + n[i + 1:] for i in range(len(n))}
        for i in range(len(n) + 1):
            out |= {n[:i] + c + n[i:] for c in "ab"} | {n[:i] + c + n[i + 1:] for c in "ab"}
        return out
    close = set(TRAINING).union(*(one_edit(t) for t in TRAINING))
    assert {n for n in all_names() if near(n)} == close & set(all_names())
    far = set(all_names()) - close
    ranked = most_likely_names(tiny, NameOptions(count=len(far), mode="beam", novel=True, max_length=MAX_LEN),
                               reject=near)
    assert {n for n, _ in ranked} == far


def test_excluding_every_letter_is_refused_not_answered_with_an_empty_name(tiny_names_model: TrainedModel) -> None:
    every = "abcdefghijklmnopqrstuvwxyz"  # the dinosaur list's letters (a space is never in a name's edge)
    with pytest.raises(InvalidInput, match="exclude forbids every character"):
        sample_names(tiny_names_model, NameOptions(count=1, exclude=every))
    names = sample_names(tiny_names_model, NameOptions(count=3, seed=0, exclude=every.replace("a", ""), min_length=2))
    assert names and all(set(n.lower()) == {"a"} and len(n) >= 2 for n in names)  # one letter left: names of it
