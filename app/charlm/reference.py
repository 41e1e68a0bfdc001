"""What a names model records about itself at training time, for scores and for novelty.

- The score reference (`reference.json` in the model directory): NLL per character of the
  validation names when there are at least MIN_VALIDATION of them, else of the training names;
  none below MIN_REFERENCE names. `score` ranks a name against it as a percentile.
- The memorisation rate (in model.json): the share of MEMORISATION_SAMPLES names drawn at
  temperature 1 (seed 0, default limits, repeats kept) that are training names.
Model directories from before these existed load without them (scores get `percentile` null).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from .checkpoint import TrainedModel
from .evaluate import names_log_probs
from .sample import NameOptions, _generate, prime_names

MIN_VALIDATION = 30  # validation names needed to use them as the reference (else training names)
MIN_REFERENCE = 20  # below this, no percentile: one name would move it by more than 5 points
MEMORISATION_SAMPLES = 1000
_MAX_ROUNDS = 20


def nll_per_char(model: TrainedModel, names: list[str]) -> np.ndarray:
    """NLL per character (nats, end token counted as a character) of names in model form (N,)."""
    encoded = [model.vocab.encode(n) for n in names]
    return -names_log_probs(model.net, model.params, encoded) / np.array([len(n) + 1 for n in names])


def build_reference(model: TrainedModel, validation: list[str]) -> dict[str, Any] | None:
    """The score reference: {"set": "validation"|"training", "names": N, "nll_per_char": sorted}, or None."""
    chosen, names = ("validation", validation) if len(validation) >= MIN_VALIDATION else ("training",
                                                                                          list(model.names))
    if len(names) < MIN_REFERENCE:
        return None
    values = sorted(float(v) for v in nll_per_char(model, names))
    return {"set": chosen, "names": len(names), "nll_per_char": [round(v, 6) for v in values]}


def memorisation_rate(model: TrainedModel) -> float:
    """Share of MEMORISATION_SAMPLES seeded samples at temperature 1 that are training names."""
    opts = NameOptions(seed=0)
    plan = opts.check(model)
    rng = np.random.default_rng(0)
    step = model.net.stepper(model.params)
    primed = prime_names(model, step, plan)
    drawn: list[str] = []
    for _ in range(_MAX_ROUNDS):  # a model that rarely ends a name within the limits gets fewer samples
        rows, _ = _generate(model, step, plan, primed, MEMORISATION_SAMPLES - len(drawn) + 16, opts, rng)
        drawn.extend(model.vocab.decode(r) for r in rows)
        if len(drawn) >= MEMORISATION_SAMPLES:
            break
    training = set(model.names)
    sample = drawn[:MEMORISATION_SAMPLES]
    return round(sum(n in training for n in sample) / max(len(sample), 1), 4)


def with_records(model: TrainedModel, validation: list[str]) -> TrainedModel:
    """A names model with its score reference and memorisation rate attached (others unchanged)."""
    if model.kind != "names":
        return model
    return replace(model, reference=build_reference(model, validation),
                   meta={**model.meta, "memorisation_rate": memorisation_rate(model)})
