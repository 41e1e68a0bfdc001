"""How likely and how typical a name is under a names model (`python -m app score`, POST /score).

`log_prob` is the natural-log probability of the name and its end token from the start state, the
sum `eval` makes for a one-line file; `nll_per_char` is -log_prob / (characters + 1), which is
`eval`'s nll_per_char for that file. Each name is computed on its own, as `eval` computes a
one-line file, so a name's figures do not depend on the names scored with it (float32
products round differently with the batch's shape) and equal `eval`'s and beam's exactly.
`percentile` (0-100) is the share of the model's reference
names (reference.py) whose NLL per character is higher, i.e. that the model finds less typical;
null when the model has no reference (fewer than 20 names, or a directory from before references).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Literal, cast

from .checkpoint import TrainedModel
from .data import encode_names
from .errors import InvalidInput
from .evaluate import names_log_probs
from .sample import MAX_NAME_CHARS
from .textnorm import clean_name
from .vocab import describe_chars

MAX_SCORE_NAMES = 100


@dataclass(frozen=True)
class NameScore:
    name: str  # as given
    log_prob: float  # nats, end token included
    nll_per_char: float  # nats per character, end token counted as one
    percentile: float | None  # 0-100: share of reference names scoring worse; None without a reference


def reference_set(model: TrainedModel) -> Literal["validation", "training"] | None:
    """"validation" or "training": which names the percentiles compare with; None when there are none."""
    return None if model.reference is None else cast(Literal["validation", "training"], model.reference["set"])


def score_names(model: TrainedModel, names: list[str]) -> list[NameScore]:
    """Score names typed by a user (cleaned by textnorm's rule, case per model). Raises InvalidInput
    for an empty list, more than MAX_SCORE_NAMES, an empty name, one of more than MAX_NAME_CHARS
    or characters the model lacks."""
    if model.kind != "names":
        raise InvalidInput("this model generates text, not names; use a names model")
    if not 1 <= len(names) <= MAX_SCORE_NAMES:
        raise InvalidInput(f"give between 1 and {MAX_SCORE_NAMES} names to score")
    forms = [model.case.model_form(clean_name(n, f"name {number}")) for number, n in enumerate(names, start=1)]
    for number, form in enumerate(forms, start=1):
        if not form or "\n" in form:
            problem = "is empty" if not form else "has a line break"
            raise InvalidInput(f"name {number} {problem}; give each name as one line of at least one character")
        if len(form) > MAX_NAME_CHARS:
            raise InvalidInput(f"name {number} has {len(form)} characters; names have at most {MAX_NAME_CHARS}, so "
                               "score a shorter one")
        bad = model.vocab.unknown(form)
        if bad:
            spaces = " " in bad and any(c.isspace() and c != " " for c in names[number - 1])
            raise InvalidInput(f"name {number} ({names[number - 1]!r}) has characters not in the model's vocabulary: "
                               f"{describe_chars(bad)}{' (tabs and other spaces are read as spaces)' * spaces}; "
                               "remove them or score it with a model that knows them")
    log_probs = names_log_probs(model.net, model.params, encode_names(model.vocab, forms), batch=1)
    ref = sorted(model.reference["nll_per_char"]) if model.reference is not None else None
    scores = []
    for name, form, lp in zip(names, forms, log_probs, strict=True):
        nll = -float(lp) / (len(form) + 1)
        pct = None if ref is None else round(100 * (len(ref) - bisect.bisect_right(ref, nll)) / len(ref), 2)
        scores.append(NameScore(name, float(lp), nll, pct))
    return scores
