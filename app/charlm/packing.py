"""Packed sequences: only the positions of a batch that hold data, step after step.

A batch of B sequences sorted longest first runs `sizes[t]` of them at step t (non-increasing).
Packed, step t's rows are the first sizes[t] sequences, and the steps are stacked one after
another into an (N, ...) array, N = sum(sizes) — PyTorch's PackedSequence layout. A batch of
equal lengths (text windows, or names without a mask) is the case sizes = [B] * T, whose packed
array is the (T, B, ...) array reshaped, without a copy. Recurrent layers work on packed arrays,
so padding costs nothing: no matrix product, activation or gradient is computed for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Packing:
    """Step sizes of a packed batch; `sizes[0]` is the batch size B and len(sizes) the steps T."""

    sizes: tuple[int, ...]

    @staticmethod
    def of(steps: int, batch: int, active: Sequence[int] | None = None) -> Packing:
        """The packing of a (steps, batch) batch: `active[t]` sequences at step t, or all of them.

        Raises ValueError for sizes that are not a non-increasing sequence starting at `batch`.
        """
        sizes = tuple(int(n) for n in active) if active is not None else (batch,) * steps
        if len(sizes) != steps or (sizes and sizes[0] != batch) or any(
                b > a for a, b in zip(sizes, sizes[1:], strict=False)) or (sizes and sizes[-1] < 1):
            raise ValueError(f"step sizes {sizes} do not pack a batch of {batch} sequences sorted longest first")
        return Packing(sizes)

    @property
    def batch(self) -> int:
        return self.sizes[0]

    @property
    def full(self) -> bool:
        """Every sequence runs every step: packed arrays are reshaped (T, B, ...) arrays."""
        return self.sizes[-1] == self.sizes[0]

    @cached_property
    def starts(self) -> tuple[int, ...]:
        """The first row of every step, and the total row count N last."""
        return tuple(int(s) for s in np.concatenate([[0], np.cumsum(self.sizes)]))

    @property
    def rows(self) -> int:
        return self.starts[-1]

    @cached_property
    def _positions(self) -> np.ndarray:
        """Flat index (t * B + b) in the (T, B) batch of every packed row."""
        B = self.batch
        return np.concatenate([t * B + np.arange(n) for t, n in enumerate(self.sizes)])

    @cached_property
    def _previous(self) -> np.ndarray:
        """Row in [initial state; packed rows] of every packed row's sequence one step earlier."""
        B = self.batch
        later = [B + self.starts[t] + np.arange(n) for t, n in enumerate(self.sizes[1:])]
        return np.concatenate([np.arange(B), *later])

    def pack(self, a: np.ndarray) -> np.ndarray:
        """(T, B, ...) -> (N, ...): the rows that hold data."""
        flat = a.reshape(-1, *a.shape[2:])
        return flat if self.full else flat[self._positions]

    def unpack(self, packed: np.ndarray) -> np.ndarray:
        """(N, ...) -> (T, B, ...), zeros where a sequence has ended."""
        T, B = len(self.sizes), self.batch
        if self.full:
            return packed.reshape(T, B, *packed.shape[1:])
        out = np.zeros((T * B, *packed.shape[1:]), dtype=packed.dtype)
        out[self._positions] = packed
        return out.reshape(T, B, *packed.shape[1:])

    def previous(self, stacked: np.ndarray) -> np.ndarray:
        """(B + N, ...) the initial state then every packed row -> (N, ...): for every packed row,
        the row of its sequence one step earlier (the initial state at the first step)."""
        return stacked[: self.rows] if self.full else stacked[self._previous]

    def scale(self, packed: np.ndarray, values: np.ndarray) -> np.ndarray:
        """(N, ...) rows times their sequence's (B, ...) values, as a new array."""
        if self.full:
            return (packed.reshape(len(self.sizes), *values.shape) * values).reshape(packed.shape)
        return packed * values[self._positions % self.batch]
