"""The Kneser-Ney baseline of the benches: hand-computed values, normalisation, the eval count."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from kneser_ney import KneserNey

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_bigram_values_worked_out_by_hand() -> None:
    # Corpus "ab", "a"; order 2, D = 0.75. Read as  ^ a b $  and  ^ a $  (^ start, $ end).
    # Vocabulary a, b, $: uniform 1/3.
    # Order 1 uses continuation counts, the number of distinct symbols before each one:
    #   a <- {^}: 1, b <- {a}: 1, $ <- {b, a}: 2; total 4, 3 distinct symbols.
    #   P1(w) = (N(w) - 0.75 + 0.75 * 3 * 1/3) / 4 = N(w) / 4:  a 1/4, b 1/4, $ 1/2.
    # Order 2 uses raw counts. After ^: a twice (total 2, 1 distinct):
    #   P(a|^) = (2 - 0.75 + 0.75 * 1 * 1/4) / 2 = 0.71875
    #   P(b|^) = 0.75 * 1/4 / 2 = 0.09375,  P($|^) = 0.75 * 1/2 / 2 = 0.1875
    # After a: b once, $ once (total 2, 2 distinct):
    #   P(b|a) = (0.25 + 1.5 * 1/4) / 2 = 0.3125,  P($|a) = (0.25 + 1.5 * 1/2) / 2 = 0.5,
    #   P(a|a) = 1.5 * 1/4 / 2 = 0.1875
    # After b: $ once (total 1, 1 distinct): P($|b) = 0.25 + 0.75 * 1/2 = 0.625
    model = KneserNey(order=2).fit(["ab", "a"])
    assert model.probability("", "a") == pytest.approx(0.71875)
    assert model.probability("", "b") == pytest.approx(0.09375)
    assert model.probability("", None) == pytest.approx(0.1875)
    assert model.probability("a", "b") == pytest.approx(0.3125)
    assert model.probability("a", None) == pytest.approx(0.5)
    assert model.probability("a", "a") == pytest.approx(0.1875)
    assert model.probability("ab", None) == pytest.approx(0.625)
    total, count = model.nll(["ab"])
    assert count == 3  # a, b and the end token
    assert total == pytest.approx(-math.log(0.71875 * 0.3125 * 0.625))


def test_order_one_is_the_discounted_unigram_over_uniform() -> None:
    # "ab", "a": counts a 2, b 1, $ 2 (5 symbols, 3 distinct), uniform 1/3 over a, b, $:
    # P(w) = (c(w) - 0.75 + 0.75 * 3 * 1/3) / 5 = c(w) / 5 -> a 0.4, b 0.2, $ 0.4, whatever came before.
    model = KneserNey(order=1).fit(["ab", "a"])
    for prefix in ("", "b", "ba"):
        assert model.probability(prefix, "a") == pytest.approx(0.4)
        assert model.probability(prefix, "b") == pytest.approx(0.2)
        assert model.probability(prefix, None) == pytest.approx(0.4)


def test_extra_character_and_unseen_history_get_the_lower_order() -> None:
    # As the bigram case plus an extra character c never seen: uniform 1/4 over a, b, c, $.
    # P1(w) = (max(N(w) - 0.75, 0) + 0.75 * 3 * 1/4) / 4 with N = a 1, b 1, c 0, $ 2:
    #   a = b = (0.25 + 0.5625) / 4 = 0.203125, c = 0.5625 / 4 = 0.140625, $ = (1.25 + 0.5625) / 4 = 0.453125.
    # History c was never seen, so P(w|c) = P1(w).
    model = KneserNey(order=2).fit(["ab", "a"], extra="c")
    assert [model.probability("c", w) for w in "abc"] == pytest.approx([0.203125, 0.203125, 0.140625])
    assert model.probability("c", None) == pytest.approx(0.453125)


@pytest.mark.parametrize("fixture", ["starwars-characters.txt", "japanese-names-kana.txt", "cat-names.txt"])
def test_four_gram_distributions_sum_to_one(fixture: str) -> None:
    names = (FIXTURES / fixture).read_text(encoding="utf-8").splitlines()
    model = KneserNey(order=4).fit(names)
    first = names[0]
    prefixes = ["", first[:1], first[:3], first, first[::-1], model.vocabulary[-1] * 5]  # seen and unseen
    for prefix in prefixes:
        dist = [model.probability(prefix, c) for c in model.vocabulary] + [model.probability(prefix, None)]
        assert min(dist) > 0
        assert sum(dist) == pytest.approx(1.0, abs=1e-12)


def test_nll_counts_every_character_and_the_end_token() -> None:
    names = (FIXTURES / "starwars-characters.txt").read_text(encoding="utf-8").splitlines()
    held_out = names[60:]
    model = KneserNey(order=4).fit(names[:60], extra="".join(held_out))  # held-out has letters like "U"
    total, count = model.nll(held_out)
    assert count == sum(len(name) + 1 for name in held_out)
    by_prefix = sum(
        -math.log(model.probability(name[:i], name[i] if i < len(name) else None))
        for name in held_out
        for i in range(len(name) + 1)
    )
    assert total == pytest.approx(by_prefix)


def test_unknown_character_is_named() -> None:
    model = KneserNey(order=4).fit(["ab"])
    with pytest.raises(ValueError, match="'z'"):
        model.nll(["az"])
    with pytest.raises(ValueError, match="no names"):
        KneserNey().fit([])
