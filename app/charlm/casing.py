"""How a names model treats letter case: learn it as given, or fold it and restore one style.

The rule (`--case auto`): when at least 95% of the distinct names are all lower case or are one
capital followed by lower case ("Title"), case is folded for the model and generated names are
shown in the list's dominant style (Title when most names start with a capital, else lower
case). Otherwise the characters are kept exactly as given and the model generates case as it
learnt it ("keep"). Models written before case was recorded fold to lower case and show Title.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .errors import InvalidInput

CASE_CHOICES = ("auto", "keep", "fold")
FOLD_SHARE = 0.95  # the threshold: a few odd lines (dinos.txt has 10 of 1,524) must not flip the mode


def is_plain_lower(name: str) -> bool:
    return name == name.lower()


def is_title(name: str) -> bool:
    """One capital followed by lower case only: "Tyrannosaurus rex", not "McCoy" or "USA"."""
    return name[:1].isupper() and name[1:] == name[1:].lower()


@dataclass(frozen=True)
class CasePolicy:
    """`mode` fold: the model sees lower case and names are shown in `style`; keep: as learnt."""

    mode: Literal["fold", "keep"] = "fold"
    style: Literal["title", "lower"] = "title"

    def model_form(self, name: str) -> str:
        """A name (or prefix) as the model reads it."""
        return name.lower() if self.mode == "fold" else name

    def display(self, name: str) -> str:
        """A generated name (in model form) as the user sees it."""
        if self.mode == "fold" and self.style == "title" and name:
            first = name[0].upper()
            return (first if len(first) == 1 else name[0]) + name[1:]  # 'ß'.upper() is two letters
        return name

    def to_meta(self) -> dict[str, Any]:
        return {"case": self.mode, "case_style": self.style} if self.mode == "fold" else {"case": "keep"}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> CasePolicy:
        """From model.json; absent fields (format version 1) mean fold, shown as Title."""
        mode = meta.get("case", "fold")
        style = meta.get("case_style", "title" if mode == "fold" else "lower")  # keep: no style to restore
        if mode not in ("fold", "keep") or style not in ("title", "lower"):
            raise ValueError(f"unknown case {mode!r}/{style!r}")
        return cls(mode, style)


def check_case(case: str) -> None:
    """InvalidInput unless `case` is one of CASE_CHOICES."""
    if case not in CASE_CHOICES:
        raise InvalidInput(f"case must be one of {', '.join(CASE_CHOICES)}, got {case!r}")


def choose(names: Sequence[str], case: str = "auto") -> CasePolicy:
    """The policy for a list of distinct, cleaned names under `--case auto|keep|fold`."""
    check_case(case)
    if case == "keep":
        return CasePolicy("keep", "lower")
    capitals = sum(1 for n in names if n[:1].isupper())
    style: Literal["title", "lower"] = "title" if capitals * 2 > len(names) else "lower"
    if case == "fold":
        return CasePolicy("fold", style)
    plain = sum(1 for n in names if is_plain_lower(n) or is_title(n))
    return CasePolicy("fold", style) if plain >= FOLD_SHARE * len(names) else CasePolicy("keep", "lower")
