"""Real name lists of every size: held-out NLL beside a Kneser-Ney 4-gram, and how truthful the ETA is.

For each list, a seeded random 90/10 split of its distinct names (cleaned as training cleans
them); our trainer with the CLI's defaults (or `--epochs` for the list) on the 90%, then:
- held-out nats per character (end token included) of our model and of an interpolated
  Kneser-Ney 4-gram fitted on the same 90% (`kneser_ney.py`);
- the expected duration stated before the first step against the real one, and the ETA given
  once 10% was done against the real remaining time (goal: within +-25%).
Held-out names with a character the training part never had are left out for both models.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import ROOT, config_overrides, machine
from kneser_ney import KneserNey

from app.charlm.casing import choose
from app.charlm.data import check_names, model_names
from app.charlm.evaluate import evaluate
from app.charlm.train import Progress, TrainConfig, train

LISTS = {  # file in data/lists: epochs (None: the size-aware default of the CLI)
    "cat-names.txt": None,
    "pokemon-en.txt": None,
    "towns-fr.txt": None,
    "surnames-us-census.txt": None,
}


def split(names: list[str], seed: int = 0) -> tuple[list[str], list[str]]:
    order = np.random.default_rng(seed).permutation(len(names))
    n_test = int(round(len(names) * 0.1))
    return [names[i] for i in order[n_test:]], [names[i] for i in order[:n_test]]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lists", nargs="+", default=list(LISTS))
    parser.add_argument("--seed", type=int, default=0, help="which 90/10 split")
    parser.add_argument("--set", action="append", default=[], help="override an option, e.g. members=1")
    args = parser.parse_args()
    overrides = config_overrides(args.set)
    print(f"machine: {machine()}")
    print("list | names | case | ours nats/char | KN 4-gram | expected s | took s | ETA at 10% | real rest")
    for name in args.lists:
        distinct = check_names((ROOT / "data" / "lists" / name).read_text(encoding="utf-8"))
        case = choose(distinct)
        train_names, test_names = split(model_names(distinct, case), args.seed)
        known = set("".join(train_names))
        test_names = [n for n in test_names if set(n) <= known]
        reports: list[tuple[float, Progress]] = []  # (wall-clock seconds since the call, report)
        start = time.perf_counter()

        def note(p: Progress, reports: list[tuple[float, Progress]] = reports, start: float = start) -> None:
            reports.append((time.perf_counter() - start, p))

        model = train("\n".join(train_names), TrainConfig(**{"epochs": LISTS.get(name), **overrides}), on_progress=note)
        took = time.perf_counter() - start  # everything, cross-validation of small lists included
        ours = evaluate(model, "\n".join(test_names)).nll_per_char
        kn = KneserNey(order=4).fit(train_names)
        total, chars = kn.nll(test_names)
        expected = reports[0][1].eta_seconds or 0.0
        at, at10 = next((t, r) for t, r in reports if r.event != "plan" and r.fraction >= 0.1)
        print(f"{name} | {len(distinct):,} | {case.mode} | {ours:.3f} | {total / chars:.3f} | {expected:.1f} | "
              f"{took:.1f} | {at10.eta_seconds or 0:.1f} | {took - at:.1f}", flush=True)


if __name__ == "__main__":
    main()
