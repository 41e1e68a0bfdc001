"""Names per second: 10,000 names sampled in batches vs one name per call (shipped model)."""

from __future__ import annotations

from _common import timer

from app.charlm.sample import NameOptions, sample_names
from app.charlm.store import ModelStore

TOTAL = 10_000


def main() -> None:
    model = ModelStore().load("dinos")
    with timer() as batched:
        n = sum(len(sample_names(model, NameOptions(count=1000, seed=s))) for s in range(TOTAL // 1000))
    batched_rate = n / batched()
    single_n = 1000  # one at a time is slow: time a tenth and report the rate
    with timer() as single:
        for s in range(single_n):
            sample_names(model, NameOptions(count=1, seed=s))
    single_rate = single_n / single()
    print(f"batched:    {batched_rate:10,.0f} names/s  ({TOTAL} names in {batched():.2f}s)")
    print(f"one by one: {single_rate:10,.0f} names/s  ({single_n} names in {single():.2f}s)")
    print(f"speed-up:   {batched_rate / single_rate:10.1f}x  (goal >= 20x)")


if __name__ == "__main__":
    main()
