"""Character vocabulary with index 0 reserved for the boundary token '\\n' (start and end)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .errors import InvalidInput
from .textnorm import describe_char

BOUNDARY = "\n"

# Typographic characters that have a plain ASCII form the models know.
_PLAIN = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"',
        "\u2013": "-", "\u2014": "-", "\u2012": "-", "\u2212": "-",
        "\u2026": "...",
    }
)


def describe_chars(chars: Iterable[str]) -> str:
    """Render characters for an error message, e.g. `'é', U+0007` (textnorm's rule for each)."""
    return ", ".join(describe_char(c) for c in sorted(set(chars)))


@dataclass(frozen=True)
class Vocab:
    """An ordered set of characters; `chars[0]` is always the boundary token."""

    chars: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.chars or self.chars[0] != BOUNDARY:
            raise ValueError("vocabulary must start with the boundary token")
        if len(set(self.chars)) != len(self.chars) or any(len(c) != 1 for c in self.chars):
            raise ValueError("vocabulary entries must be distinct single characters")

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Vocab:
        seen = set().union(*(set(t) for t in texts)) - {BOUNDARY}
        return cls((BOUNDARY, *sorted(seen)))

    @property
    def size(self) -> int:
        return len(self.chars)

    @cached_property
    def index(self) -> dict[str, int]:  # built once: encode() runs for every name of a data file
        return {c: i for i, c in enumerate(self.chars)}

    def unknown(self, text: str) -> set[str]:
        return set(text) - set(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """Indices of `text`; raises InvalidInput naming any character the model does not know."""
        bad = self.unknown(text)
        if bad:
            raise InvalidInput(f"characters not in the model's vocabulary: {describe_chars(bad)}")
        index = self.index
        return np.array([index[c] for c in text], dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def fold(self, text: str) -> str:
        """Map characters the vocabulary lacks to plain forms it has (curly quotes, accents).

        Characters with no plain form are left alone, so `encode` can still name them.
        """
        known = set(self.chars)
        out = []
        for ch in text:
            base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
            candidates = (ch, ch.translate(_PLAIN), base)
            # A double quote becomes a single one where only that is known (the sonnets have no '"').
            plain = [c for cand in candidates for c in (cand, cand.replace('"', "'")) if c and set(c) <= known]
            out.append(plain[0] if plain else ch)
        return "".join(out)
