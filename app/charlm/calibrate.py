"""Temperature scaling after training: one scalar T divides the logits, fitted on held-out data.

Weights chosen by validation loss are still over-confident (the training loss is far below the
validation loss): dividing the logits by a fitted T > 1 lowers the held-out loss at no cost, and
most for names unlike any training name. Method: Guo et al. 2017, "On Calibration of Modern
Neural Networks" (section 4.2). T is folded into the output layer (Wy / T, by / T), so sampling,
scoring and `eval` use the calibrated model with nothing new to load.
"""

from __future__ import annotations

import math

import numpy as np

from .data import names_batch
from .layers import Params
from .model import CharModel

T_RANGE = (0.5, 3.0)  # searched temperatures; the fitted ones were 1.1-1.2 on the dinosaur names
_GOLDEN = (math.sqrt(5) - 1) / 2
_TEXT_CHUNK = 1024  # characters per forward call when collecting the logits of a text


def held_out_logits(net: CharModel, params: Params, data: list[np.ndarray] | np.ndarray,
                    kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, V) in float64 and targets (N,) of every scored position of validation data:
    each name from the start state (end token included), or a text as one stream (every
    character after the first, given all before it)."""
    logits_out: list[np.ndarray] = []
    targets_out: list[np.ndarray] = []
    if kind == "names":
        for i in range(0, len(data), 256):
            inputs, targets, mask = names_batch(list(data[i : i + 256]))
            logits, _, _ = net.forward(params, inputs, net.zero_state(inputs.shape[1]))
            logits_out.append(logits[mask])
            targets_out.append(targets[mask])
    else:
        ids = np.asarray(data)
        state = net.zero_state(1)
        for s in range(0, len(ids) - 1, _TEXT_CHUNK):
            inputs, targets = ids[s : s + _TEXT_CHUNK], ids[s + 1 : s + _TEXT_CHUNK + 1]
            inputs = inputs[: len(targets)]
            logits, state, _ = net.forward(params, inputs[:, None], state)
            logits_out.append(logits[:, 0])
            targets_out.append(targets)
    return np.concatenate(logits_out).astype(np.float64), np.concatenate(targets_out)


def nll_at(logits: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    """Mean NLL (nats) of the targets under softmax(logits / temperature)."""
    z = logits / temperature
    top = z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(log_norm - z[np.arange(len(targets)), targets]))


def fit_temperature(logits: np.ndarray, targets: np.ndarray, tol: float = 1e-3) -> float:
    """The T in T_RANGE that minimises `nll_at` (golden-section search: the NLL is convex in 1/T,
    so it has one minimum in T)."""
    lo, hi = T_RANGE
    a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fa, fb = nll_at(logits, targets, a), nll_at(logits, targets, b)
    while hi - lo > tol:
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = nll_at(logits, targets, a)
        else:
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = nll_at(logits, targets, b)
    return round((lo + hi) / 2, 3)


def with_temperature(params: Params, temperature: float) -> Params:
    """A copy of `params` whose logits are those of `params` divided by `temperature`."""
    scaled = dict(params)
    scaled["Wy"] = (params["Wy"] / temperature).astype(params["Wy"].dtype)
    scaled["by"] = (params["by"] / temperature).astype(params["by"].dtype)
    return scaled


def calibrate(net: CharModel, params: Params, data: list[np.ndarray] | np.ndarray,
              kind: str) -> tuple[Params, dict[str, float]]:
    """`params` with the temperature fitted on validation data folded in, and what was done:
    {"temperature", "val_nll_before", "val_nll_after"} (nats per character on `data`)."""
    logits, targets = held_out_logits(net, params, data, kind)
    temperature = fit_temperature(logits, targets)
    return with_temperature(params, temperature), {
        "temperature": temperature,
        "val_nll_before": round(nll_at(logits, targets, 1.0), 6),
        "val_nll_after": round(nll_at(logits, targets, temperature), 6),
    }
