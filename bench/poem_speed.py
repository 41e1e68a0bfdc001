"""Compute time of a 400-character poem from the shipped model (goal: under 50 ms)."""

from __future__ import annotations

import time

import numpy as np

from app.charlm.sample import PoemOptions, continue_text
from app.charlm.store import ModelStore


def main() -> None:
    with_load = time.perf_counter()
    model = ModelStore().load("shakespeare")
    load_s = time.perf_counter() - with_load
    times = []
    for seed in range(20):
        start = time.perf_counter()
        continue_text(model, PoemOptions(prompt="Forsooth this maketh no sense ", length=400, seed=seed))
        times.append(time.perf_counter() - start)
    print(f"model load: {load_s * 1000:.0f} ms")
    print(f"400-character poem: median {np.median(times) * 1000:.1f} ms, best {min(times) * 1000:.1f} ms "
          f"(goal < 50 ms)")


if __name__ == "__main__":
    main()
