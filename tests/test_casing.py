"""The case rule: when a list's case is folded, and how names are shown (counts worked out by hand)."""

from __future__ import annotations

import pytest

from app.charlm.casing import CasePolicy, choose, is_title
from app.charlm.data import check_names
from app.charlm.errors import InvalidInput

from .conftest import DINOS, FIXTURES


def test_dinosaur_list_folds_and_shows_title_case() -> None:
    # 1,524 distinct lines: 1,513 Title ("Aachenosaurus"), 1 lower case, 10 run together
    # ("AetonyxAfromimus"): (1513 + 1) / 1524 = 99.3% >= 95%, and most start with a capital.
    names = check_names(DINOS.read_text())
    assert len(names) == 1524 and sum(map(is_title, names)) == 1513
    assert choose(names) == CasePolicy("fold", "title")


def test_the_threshold_is_95_percent_of_distinct_names() -> None:
    title = [f"Name{chr(97 + i)}" for i in range(19)]
    assert choose([*title, "McCoy"]) == CasePolicy("fold", "title")  # 19 of 20 = 95%
    assert choose([*title[:18], "McCoy", "DeVito"]) == CasePolicy("keep", "lower")  # 18 of 20 = 90%
    assert choose([*title[:18], "McCoy", "DeVito"], "fold") == CasePolicy("fold", "title")
    assert choose([n.lower() for n in title], "auto") == CasePolicy("fold", "lower")
    assert choose(title, "keep") == CasePolicy("keep", "lower")


@pytest.mark.parametrize("fixture, expected", [
    ("starwars-characters.txt", CasePolicy("keep", "lower")),  # "Luke Skywalker": 85% have an inner capital
    ("japanese-names-kana.txt", CasePolicy("fold", "lower")),  # kana has no case: folding changes nothing
    ("cat-names.txt", CasePolicy("fold", "title")),  # "Tigger"
])
def test_real_lists(fixture: str, expected: CasePolicy) -> None:
    assert choose(check_names((FIXTURES / fixture).read_text(encoding="utf-8"))) == expected


def test_all_capitals_are_kept() -> None:
    assert choose(["SMITH", "JOHNSON", "WILLIAMS"]) == CasePolicy("keep", "lower")


def test_display_and_model_form() -> None:
    title, keep = CasePolicy("fold", "title"), CasePolicy("keep", "lower")
    assert title.model_form("San José") == "san josé" and title.display("san josé") == "San josé"
    assert title.display("ßo") == "ßo"  # 'ß'.upper() is 'SS': two letters, so left alone
    assert CasePolicy("fold", "lower").display("ayu") == "ayu"
    assert keep.model_form("McCoy") == "McCoy" and keep.display("McCoy") == "McCoy"


def test_models_without_case_fields_fold_and_show_title() -> None:
    assert CasePolicy.from_meta({}) == CasePolicy("fold", "title")
    assert CasePolicy.from_meta({"case": "keep", "case_style": "lower"}) == CasePolicy("keep", "lower")


def test_unknown_case_choice_is_refused() -> None:
    with pytest.raises(InvalidInput, match="case must be one of auto, keep, fold"):
        choose(["a"], "upper")
