"""What the guided search of `sample._generate` forces, and a matcher that tells where text first
contains a string (a Knuth-Morris-Pratt automaton over character ids)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def kmp_table(pattern: np.ndarray, vocab_size: int) -> np.ndarray:
    """Transitions (len(pattern) + 1, vocab_size): from state q (the longest prefix of `pattern`
    that ends the text read so far) and the next id to the new state; state len(pattern) is a match."""
    m = len(pattern)
    table = np.zeros((m + 1, vocab_size), dtype=np.int64)
    table[0, pattern[0]] = 1
    fallback = 0
    for q in range(1, m + 1):
        table[q] = table[fallback]
        if q < m:
            table[q, pattern[q]] = q + 1
            fallback = table[fallback, pattern[q]]
    return table


@dataclass(frozen=True)
class Guide:
    """Forced characters of a probe. `tail` = suffix + end token (`finish` False), or the `contains`
    string (`finish` True: after it the probe's copies continue freely and end by themselves)."""

    tail: np.ndarray
    finish: bool
    table: np.ndarray | None = None  # contains: the KMP transitions
    early: np.ndarray | None = None  # contains: per state, whether text + pattern holds it before the end

    @property
    def chars(self) -> int:
        """Characters a probe adds to its text (the end token not counted)."""
        return len(self.tail) - (not self.finish)

    @classmethod
    def for_suffix(cls, suffix: np.ndarray) -> Guide:
        return cls(np.append(suffix, 0).astype(np.int64), False)

    @classmethod
    def for_contains(cls, pattern: np.ndarray, vocab_size: int) -> Guide:
        table = kmp_table(pattern, vocab_size)
        m = len(pattern)
        early = np.zeros(m + 1, dtype=bool)
        for q in range(m + 1):
            state = q
            for c in pattern[:-1]:
                state = table[state, c] if state < m else m
                early[q] |= state == m
        early[m] = True
        return cls(pattern.astype(np.int64), True, table, early)

    def state_after(self, ids: np.ndarray) -> int:
        """The matcher's state after reading `ids` from the start (len(pattern) once it matched)."""
        assert self.table is not None
        m = len(self.tail)
        state = 0
        for c in ids:
            state = int(self.table[state, c]) if state < m else m
        return state
