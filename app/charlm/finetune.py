"""Fine-tuning: a run that starts from another model's weights, its vocabulary extended.

The base model fixes the architecture and sizes. A character of the new list that the base
model lacks is appended to the vocabulary (base characters keep their indices) and starts as its
nearest known counterpart: the same letter in the other case, else the letter without its
accent (Unicode NFKD), e.g. 'É' -> 'é' -> 'e'. It gets a copy of that character's first-layer
input row (`l0.Wx`), output column (`Wy`) and output bias (`by`), so "Émile" starts where "émile"
and "emile" were; the characters then share the probability "e" had, in proportion to their
counts in the new list plus one (`extend_params`). A character with no counterpart (a new script,
a digit) gets the mean input row and mean output column ("an average character") and the
smallest output bias of the base vocabulary (a rare character until the new list says
otherwise). Every other weight is copied.

Whether fine-tuning is used at all on a small list is decided in train.py: cross-validated
against training from scratch, the better of the two is trained.
"""

from __future__ import annotations

import unicodedata

import numpy as np

from .checkpoint import TrainedModel
from .errors import InvalidInput
from .layers import Params
from .vocab import Vocab


def counterpart(ch: str, known: set[str]) -> str | None:
    """The known character `ch` starts from: other case first, then without accents."""
    bare = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    for candidate in (ch.lower(), ch.upper(), bare, bare.lower(), bare.upper()):
        if len(candidate) == 1 and candidate != ch and candidate in known:
            return candidate
    return None


def extended_vocab(base: Vocab, chars: set[str]) -> Vocab:
    """`base` with the characters it lacks appended in code-point order."""
    return Vocab((*base.chars, *sorted(chars - set(base.chars))))


def extend_params(params: Params, old: Vocab, new: Vocab, counts: np.ndarray | None = None) -> Params:
    """Copies of `params` for vocabulary `new`, which starts with all of `old` (module rule).

    With `counts` (occurrences of every character of `new` in the training data), a character
    and the new characters that start as copies of it share its output probability in proportion
    to their counts plus one: "S" and "s" together start where "s" was, so the base model's
    predictions are not halved by the copy.
    """
    if new.chars[: old.size] != old.chars:
        raise ValueError("the new vocabulary must extend the old one")
    out = {k: np.array(v, copy=True) for k, v in params.items()}
    added = new.chars[old.size :]
    if not added:
        return out
    Wx, Wy, by = out["l0.Wx"], out["Wy"], out["by"]
    known = set(old.chars[1:])  # the boundary token is nobody's counterpart
    average = (Wx[1:].mean(axis=0), Wy[:, 1:].mean(axis=1), by[1:].min())
    starts = []
    shares: dict[int, list[int]] = {}  # a base character's index -> the indices in `new` sharing its probability
    for j, ch in enumerate(added, start=old.size):
        twin = counterpart(ch, known)
        if twin is None:
            starts.append(average)
            continue
        t = old.index[twin]
        starts.append((Wx[t], Wy[:, t], by[t]))
        shares.setdefault(t, [t]).append(j)
    rows, cols, bias = zip(*starts, strict=True)
    out["l0.Wx"] = np.concatenate([Wx, np.stack(rows)]).astype(Wx.dtype)
    out["Wy"] = np.concatenate([Wy, np.stack(cols, axis=1)], axis=1).astype(Wy.dtype)
    out["by"] = np.concatenate([by, np.array(bias, dtype=by.dtype)])
    if counts is not None:
        for group in shares.values():
            weights = counts[group] + 1.0
            out["by"][group] += np.log(weights / weights.sum()).astype(by.dtype)
    return out


def adopt_base(config_fields: dict[str, object], base: TrainedModel) -> dict[str, object]:
    """Training options with the base model's architecture and sizes; conflicts are refused."""
    if config_fields.get("kind") != base.kind:
        raise InvalidInput(f"--init-from: the base model is a {base.kind} model, this run trains "
                           f"{config_fields.get('kind')}; fine-tune a model of the same kind")
    fixed = {"arch": base.config.arch, "hidden": base.config.hidden, "layers": base.config.layers}
    for key in ("hidden", "layers"):
        given = config_fields.get(key)
        if given is not None and given != fixed[key]:
            raise InvalidInput(f"--{key} {given} conflicts with the base model's {fixed[key]}; a fine-tuned model "
                               f"keeps its base's sizes, so leave --{key} out")
    if config_fields.get("members") not in (None, 1):
        raise InvalidInput(f"--members {config_fields['members']}: a fine-tuned model goes on as its base's one "
                           "network, so leave --members out")
    return {**config_fields, **fixed, "members": 1}

