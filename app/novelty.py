"""Strict novelty: reject a name within Levenshtein distance 1 of a training name.

Uses rapidfuzz (a well-kept C++ implementation with a cutoff that stops each comparison early),
kept outside app/charlm, which imports only NumPy and the standard library; the sampler takes the
check as its `reject` predicate.
"""

from __future__ import annotations

from collections.abc import Callable

from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from .charlm.checkpoint import TrainedModel

NOVELTY_CHOICES = ("false", "true", "strict")


def near_training(model: TrainedModel) -> Callable[[str], bool]:
    """A predicate: True for a name (model form) at Levenshtein distance at most 1 from a training name."""
    names = list(model.names)

    def near(name: str) -> bool:
        return process.extractOne(name, names, scorer=Levenshtein.distance, score_cutoff=1) is not None

    return near


def novelty(model: TrainedModel, choice: str) -> tuple[bool, Callable[[str], bool] | None]:
    """`novel` as the API and CLI take it (false, true, strict): (exclude training names, extra reject rule)."""
    return choice != "false", near_training(model) if choice == "strict" else None
