"""Held-out negative log-likelihood per character, for names and text models alike."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .checkpoint import TrainedModel
from .data import encode_names, names_batch, parse_names
from .errors import InvalidInput
from .layers import Params
from .model import CharModel, log_softmax
from .textnorm import clean_text


def names_log_probs(net: CharModel, params: Params, encoded: list[np.ndarray], batch: int = 512,
                    poll: Callable[[], None] | None = None) -> np.ndarray:
    """Natural-log probability of each name (N,) plus its end token, each scored from the start state."""
    out = np.empty(len(encoded), dtype=np.float64)
    for i in range(0, len(encoded), batch):
        if poll is not None:
            poll()  # a caller that wants to stop (a cancelled job) raises from here
        inputs, targets, mask = names_batch(encoded[i : i + batch])
        logits, _, _ = net.forward(params, inputs, net.zero_state(inputs.shape[1]))
        picked = np.take_along_axis(log_softmax(logits), targets[..., None], axis=-1)[..., 0]
        out[i : i + batch] = np.where(mask, picked, 0).sum(axis=0, dtype=np.float64)
    return out


def names_nll(net: CharModel, params: Params, encoded: list[np.ndarray], batch: int = 512,
              poll: Callable[[], None] | None = None) -> tuple[float, int]:
    """Summed NLL of each name plus its end token, each scored from the start state, and the count
    of characters scored (end tokens included)."""
    return -float(names_log_probs(net, params, encoded, batch, poll).sum()), sum(len(e) + 1 for e in encoded)


def text_nll(net: CharModel, params: Params, ids: np.ndarray, streams: int = 1, chunk: int = 256,
             poll: Callable[[], None] | None = None) -> tuple[float, int]:
    """Summed NLL of every character after the first, given all before it.

    With `streams` > 1 the text is cut into that many contiguous pieces scored side by side:
    much faster, and exact but for the context lost at the few cuts (used for validation).
    """
    n = len(ids) - 1  # predictions to score
    S = max(1, min(streams, n))
    L = -(-n // S)  # ceil: positions per stream
    inputs = np.zeros((L, S), dtype=np.int64)
    targets = np.zeros((L, S), dtype=np.int64)
    mask = np.zeros((L, S), dtype=bool)
    for s in range(S):
        a, b = s * L, min((s + 1) * L, n)
        inputs[: b - a, s], targets[: b - a, s], mask[: b - a, s] = ids[a:b], ids[a + 1 : b + 1], True
    total = 0.0
    state = net.zero_state(S, params["Wy"].dtype)
    for t in range(0, L, chunk):
        if poll is not None:
            poll()
        logits, state, _ = net.forward(params, inputs[t : t + chunk], state)
        picked = np.take_along_axis(log_softmax(logits), targets[t : t + chunk, :, None], axis=-1)[..., 0]
        total -= float(picked[mask[t : t + chunk]].sum(dtype=np.float64))
    return total, n


@dataclass(frozen=True)
class EvalResult:
    nll_per_char: float
    bits_per_char: float
    chars: int
    items: int


def evaluate(model: TrainedModel, raw_text: str) -> EvalResult:
    """Score a data file as the contract says: names line by line, text as one stream, each cleaned
    (textnorm) and case-folded as the model was trained."""
    net = model.net
    if model.kind == "names":
        names = [model.case.model_form(n) for n in parse_names(raw_text)]
        if not names:
            raise InvalidInput("no names to evaluate")
        total, count = names_nll(net, model.params, encode_names(model.vocab, names))
        items = len(names)
    else:
        text = model.case.model_form(clean_text(raw_text, "data"))
        if len(text) < 2:
            raise InvalidInput("text to evaluate needs at least two characters")
        total, count = text_nll(net, model.params, model.vocab.encode(text))
        items = sum(1 for line in text.split("\n") if line.strip())
    nll = total / count
    return EvalResult(nll, nll / math.log(2), count, items)
