"""Sampling-engine targets (issue 8), on the shipped dinos model, in one run:

1. 100 names with suffix=raptor vs 100 unconstrained names, timed side by side (alternating, same
   seeds), goal < 10x; beside it the share of unconstrained names that end in "raptor" (1/share
   is what plain rejection would cost).
2. Scores: median percentile of real genera not in the training list (data/lists/dinos-recent.txt),
   goal 30-70; shuffled-letter versions of real names score lower than the originals, goal >= 95%.
3. The guided search's deviation as a set: on a tiny model (letters a, b; names up to 4), how
   often each name is in a list of 3 distinct names with suffix "ab", guided vs exact (iid draws
   from the enumerated conditional distribution, kept until 3 are distinct).
"""

from __future__ import annotations

import itertools
import random
import statistics

import numpy as np
from _common import ROOT, machine, timer

from app.charlm.casing import CasePolicy
from app.charlm.checkpoint import TrainedModel
from app.charlm.data import parse_names
from app.charlm.evaluate import names_log_probs
from app.charlm.model import CharModel, ModelConfig
from app.charlm.sample import NameOptions, sample_names
from app.charlm.score import reference_set, score_names
from app.charlm.store import ModelStore
from app.charlm.vocab import Vocab

REPS = 5


def suffix_speed() -> None:
    model = ModelStore().load("dinos")
    plain_t, guided_t = [], []
    for seed in range(REPS):
        with timer() as plain:
            sample_names(model, NameOptions(count=100, seed=seed))
        with timer() as guided:
            names = sample_names(model, NameOptions(count=100, seed=seed, suffix="raptor"))
        assert all(model.case.model_form(n).endswith("raptor") for n in names)
        plain_t.append(plain())
        guided_t.append(guided())
    drawn = sample_names(model, NameOptions(count=1000, seed=99))
    share = sum(model.case.model_form(n).endswith("raptor") for n in drawn) / len(drawn)
    training = sum(n.endswith("raptor") for n in model.names) / len(model.names)
    p, g = statistics.median(plain_t), statistics.median(guided_t)
    print(f"100 names: plain {p * 1000:.0f} ms, suffix=raptor {g * 1000:.0f} ms (medians of {REPS}): "
          f"{g / p:.1f}x (goal < 10x)")
    print(f"  names ending in 'raptor': {training:.1%} of the training list, {share:.1%} of 1,000 samples "
          f"(plain rejection would cost about {1 / max(share, 1e-9):.0f}x)")


def scores() -> None:
    model = ModelStore().load("dinos")
    recent = parse_names((ROOT / "data" / "lists" / "dinos-recent.txt").read_text())
    training = set(model.names)
    unseen = [n for n in recent if model.case.model_form(n) not in training]
    pct = [s.percentile for s in score_names(model, unseen) if s.percentile is not None]
    print(f"recent genera not in the training list: {len(unseen)}, median percentile "
          f"{statistics.median(pct):.1f} (goal 30-70; reference: {reference_set(model)} names)")
    rnd = random.Random(0)
    real = unseen + rnd.sample(sorted(training), 200)
    lower = 0
    for name in real:
        letters = list(model.case.model_form(name))
        while "".join(letters) == model.case.model_form(name) and len(set(letters)) > 1:
            rnd.shuffle(letters)
        original, shuffled = score_names(model, [name, "".join(letters)])
        lower += shuffled.log_prob < original.log_prob
    print(f"shuffled letters score lower than the original: {lower}/{len(real)} = {lower / len(real):.1%} "
          "(goal >= 95%)")


def set_deviation(count: int = 3, runs: int = 400) -> None:
    config = ModelConfig("lstm", 3, 4, 1)
    params = {k: (v * 3).astype(np.float32) for k, v in CharModel(config).init_params(np.random.default_rng(5)).items()}
    tiny = TrainedModel("names", config, Vocab(("\n", "a", "b")), params, ("ab", "ba", "aab", "bab", "abba"),
                        case=CasePolicy("fold", "lower"))
    names = ["".join(t) for n in range(2, 5) for t in itertools.product("ab", repeat=n) if "".join(t).endswith("ab")]
    p = np.exp(names_log_probs(tiny.net, tiny.params, [tiny.vocab.encode(n) for n in names]))
    q = p / p.sum()  # the model conditioned on the suffix (min_length 2 masks no end before "ab")
    guided = np.zeros(len(names))
    for seed in range(runs):
        for n in sample_names(tiny, NameOptions(count=count, seed=seed, suffix="ab", max_length=4)):
            guided[names.index(n)] += 1 / runs
    rng = np.random.default_rng(0)
    exact = np.zeros(len(names))
    for _ in range(20_000):
        seen: set[int] = set()
        while len(seen) < count:
            seen.add(int(rng.choice(len(names), p=q)))
        exact[list(seen)] += 1 / 20_000
    print(f"lists of {count} names ending in 'ab' (tiny model), share of lists holding each name:")
    for n, g, e, qq in zip(names, guided, exact, q, strict=True):
        print(f"  {n:5s} P={qq:.3f}  guided {g:.3f}  exact {e:.3f}")
    print(f"  largest difference {np.abs(guided - exact).max():.3f} (guided: {runs} lists; exact: 20,000)")


if __name__ == "__main__":
    print(machine())
    suffix_speed()
    scores()
    set_deviation()
