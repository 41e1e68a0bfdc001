"""Name lists: the checks a names model needs, and padded batches of encoded names."""

from __future__ import annotations

import numpy as np

from .casing import CasePolicy
from .errors import InvalidInput
from .textnorm import name_lines
from .vocab import Vocab, describe_chars

MAX_NAME_LENGTH = 60
MAX_VOCAB = 1000  # distinct characters; room for a list of names in kanji, hangul or hanzi


def parse_names(text: str, source: str = "data") -> list[str]:
    """Every line that holds a name, cleaned (textnorm's rule, case untouched), duplicates kept."""
    return [name for _, name in name_lines(text, source)]


def check_names(text: str, min_distinct: int = 1, source: str = "data") -> list[str]:
    """Distinct cleaned names in first-seen order, after the limits a names model needs.

    Raises InvalidInput naming the first line over the length limit, or the shortfall.
    """
    lines = name_lines(text, source)
    for number, name in lines:
        if len(name) > MAX_NAME_LENGTH:
            raise InvalidInput(f"{source} line {number}: name of {len(name)} characters is longer than the limit of "
                               f"{MAX_NAME_LENGTH} ({name[:20]!r}...); shorten or split it")
    distinct = list(dict.fromkeys(name for _, name in lines))
    if len(distinct) < min_distinct:
        plural = "" if len(distinct) == 1 else "s"
        raise InvalidInput(f"{source} has {len(distinct)} distinct name{plural}; at least {min_distinct} distinct "
                           "names are needed, one per line")
    alphabet = set("".join(distinct))
    if len(alphabet) > MAX_VOCAB:
        raise InvalidInput(f"{source} uses {len(alphabet)} distinct characters; the limit is {MAX_VOCAB}")
    return distinct


def model_names(distinct: list[str], case: CasePolicy) -> list[str]:
    """The names as the model learns them (case folded or kept), distinct, in first-seen order."""
    return list(dict.fromkeys(case.model_form(n) for n in distinct))


def names_batch(encoded: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pad encoded names into (T, B) inputs, targets and mask; the boundary 0 starts and ends each."""
    T = max(len(e) for e in encoded) + 1
    B = len(encoded)
    inputs = np.zeros((T, B), dtype=np.int64)
    targets = np.zeros((T, B), dtype=np.int64)
    mask = np.zeros((T, B), dtype=bool)
    for b, e in enumerate(encoded):
        n = len(e)
        inputs[1 : n + 1, b] = e
        targets[:n, b] = e
        mask[: n + 1, b] = True
    return inputs, targets, mask


def encode_names(vocab: Vocab, names: list[str]) -> list[np.ndarray]:
    """Encode names, naming every unknown character at once."""
    bad = set().union(*(vocab.unknown(n) for n in names)) if names else set()
    if bad:
        raise InvalidInput(f"characters not in the model's vocabulary: {describe_chars(bad)}")
    return [vocab.encode(n) for n in names]
