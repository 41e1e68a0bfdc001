"""Recurrent layers (tanh RNN, LSTM) that own their forward and backward passes.

Every layer is stateless: parameters, states and caches go in and out as values, so one
loaded model can serve any number of concurrent callers. A layer's input is either integer
ids of shape (T, B) — a one-hot input, applied as a row gather — or floats of shape (T, B, D).
The input projection and the weight gradients are computed for all time steps in one matrix
product; only the recurrence itself loops over time.

`active` (optional, one count per step) says that at step t only the first active[t] sequences
of the batch are still running, the others being padding (a names batch sorted longest first):
the recurrence then computes only those rows and the padded positions' outputs stay zero, which
is exact as long as nothing downstream scores padded positions (the names loss masks them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

Params = dict[str, np.ndarray]
State = tuple[np.ndarray, ...]
Cache = dict[str, Any]


def _project(Wx: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """x·Wx + b for all steps: (T, B) ids or (T, B, D) floats -> (T, B, G)."""
    if x.dtype.kind in "iu":
        return Wx[x] + b
    T, B, D = x.shape
    return (x.reshape(T * B, D) @ Wx).reshape(T, B, -1) + b


def _project_backward(
    Wx: np.ndarray, x: np.ndarray, dpre: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """Gradients of `_project` with respect to Wx and (for float inputs) x."""
    T, B, G = dpre.shape
    flat = dpre.reshape(T * B, G)
    if x.dtype.kind in "iu":
        onehot = np.zeros((T * B, Wx.shape[0]), dtype=dpre.dtype)
        onehot[np.arange(T * B), x.reshape(-1)] = 1
        return onehot.T @ flat, None
    D = x.shape[2]
    return x.reshape(T * B, D).T @ flat, (flat @ Wx.T).reshape(T, B, D)


def _weight_grads(p: Params, cache: Cache, dpre: np.ndarray) -> tuple[np.ndarray | None, Params]:
    """Parameter gradients (and dL/dx) from the pre-activation gradients of all steps (T, B, G)."""
    h = cache["h"]
    H, G = h.shape[2], dpre.shape[2]
    h_prev = np.concatenate([cache["h0"][None], h[:-1]])
    dWx, dx = _project_backward(p["Wx"], cache["x"], dpre)
    grads = {"Wx": dWx, "Wh": h_prev.reshape(-1, H).T @ dpre.reshape(-1, G), "b": dpre.sum(axis=(0, 1))}
    return dx, grads


def _sigmoid(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Logistic function as 0.5·tanh(x/2) + 0.5: one transcendental, no overflow."""
    np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


class RecurrentLayer(Protocol):
    """What the model needs from a layer; `arch` names map to implementations in ARCHS."""

    state_size: int  # how many arrays the recurrent state has (h, or h and c)

    def init(self, n_in: int, hidden: int, rng: np.random.Generator, dtype: Any) -> Params: ...

    def forward(self, p: Params, x: np.ndarray, state: State,
                active: Sequence[int] | None = None) -> tuple[np.ndarray, State, Cache]:
        """Run all steps from `state`: returns outputs h (T, B, H), the final state, a cache."""
        ...

    def backward(
        self, p: Params, cache: Cache, dh: np.ndarray
    ) -> tuple[np.ndarray | None, Params, State]:
        """From dL/dh (T, B, H): returns dL/dx (None for ids), parameter grads, dL/dstate0."""
        ...

    def step(self, p: Params, x: np.ndarray, state: State) -> State:
        """One step for sampling: x is (B,) ids or (B, D); returns the new state (h first)."""
        ...


def _uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, dtype: Any) -> np.ndarray:
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


class TanhRNN:
    """Elman RNN: h_t = tanh(x_t·Wx + h_{t-1}·Wh + b)."""

    state_size = 1

    def init(self, n_in: int, hidden: int, rng: np.random.Generator, dtype: Any) -> Params:
        return {
            "Wx": _uniform(rng, (n_in, hidden), hidden, dtype),
            "Wh": _uniform(rng, (hidden, hidden), hidden, dtype),
            "b": _uniform(rng, (hidden,), hidden, dtype),
        }

    def forward(self, p: Params, x: np.ndarray, state: State,
                active: Sequence[int] | None = None) -> tuple[np.ndarray, State, Cache]:
        pre = _project(p["Wx"], p["b"], x)  # (T, B, H)
        T, B, _ = pre.shape
        h = np.zeros_like(pre) if active is not None else np.empty_like(pre)
        prev = state[0]
        for t in range(T):
            n = B if active is None else active[t]
            np.matmul(prev[:n], p["Wh"], out=h[t, :n])
            h[t, :n] += pre[t, :n]
            np.tanh(h[t, :n], out=h[t, :n])
            prev = h[t]
        return h, (h[-1].copy(),), {"x": x, "h": h, "h0": state[0], "active": active}

    def backward(
        self, p: Params, cache: Cache, dh: np.ndarray
    ) -> tuple[np.ndarray | None, Params, State]:
        h, Wh_T, active = cache["h"], p["Wh"].T, cache["active"]
        dpre = 1 - h * h  # (T, B, H) tanh derivative, scaled in place below
        dh_next = np.zeros_like(h[0])
        for t in range(h.shape[0] - 1, -1, -1):
            n = h.shape[1] if active is None else active[t]
            if n < h.shape[1]:
                dpre[t, n:] = 0
            dpre[t, :n] *= dh[t, :n] + dh_next[:n]
            dh_next[:n] = dpre[t, :n] @ Wh_T
        dx, grads = _weight_grads(p, cache, dpre)
        return dx, grads, (dh_next,)

    def step(self, p: Params, x: np.ndarray, state: State) -> State:
        pre = _project(p["Wx"], p["b"], x[None])[0]
        return (np.tanh(pre + state[0] @ p["Wh"]),)


class LSTM:
    """Long short-term memory layer. Gates are packed as [o, i, f, g] along the last axis:

        a = x_t·Wx + h_{t-1}·Wh + b
        o, i, f = sigmoid(a_o), sigmoid(a_i), sigmoid(a_f);  g = tanh(a_g)
        c_t = f * c_{t-1} + i * g;   h_t = o * tanh(c_t)

    Weights and biases start uniform in ±1/sqrt(H). Random (not zero) biases matter: from an
    all-zero bias, training on text sat on the unigram plateau for several epochs.
    """

    state_size = 2

    def init(self, n_in: int, hidden: int, rng: np.random.Generator, dtype: Any) -> Params:
        return {
            "Wx": _uniform(rng, (n_in, 4 * hidden), hidden, dtype),
            "Wh": _uniform(rng, (hidden, 4 * hidden), hidden, dtype),
            "b": _uniform(rng, (4 * hidden,), hidden, dtype),
        }

    def forward(self, p: Params, x: np.ndarray, state: State,
                active: Sequence[int] | None = None) -> tuple[np.ndarray, State, Cache]:
        act = _project(p["Wx"], p["b"], x)  # (T, B, 4H): pre-activations, then activations
        T, B, G = act.shape
        H = G // 4
        new = np.empty if active is None else np.zeros  # padded positions must read as zeros
        c = new((T, B, H), dtype=act.dtype)
        tc = new((T, B, H), dtype=act.dtype)
        h = new((T, B, H), dtype=act.dtype)
        buf = np.empty((B, G), dtype=act.dtype)
        ig = np.empty((B, H), dtype=act.dtype)
        h_prev, c_prev = state
        for t in range(T):
            n = B if active is None else active[t]
            if n < B:
                act[t, n:] = 0  # finite, so the backward pass's products there are zeros
            a = act[t, :n]
            np.matmul(h_prev[:n], p["Wh"], out=buf[:n])
            a += buf[:n]
            _sigmoid(a[:, : 3 * H], out=a[:, : 3 * H])
            np.tanh(a[:, 3 * H :], out=a[:, 3 * H :])
            np.multiply(a[:, 2 * H : 3 * H], c_prev[:n], out=c[t, :n])
            np.multiply(a[:, H : 2 * H], a[:, 3 * H :], out=ig[:n])
            c[t, :n] += ig[:n]
            np.tanh(c[t, :n], out=tc[t, :n])
            np.multiply(a[:, :H], tc[t, :n], out=h[t, :n])
            h_prev, c_prev = h[t], c[t]
        cache = {"x": x, "act": act, "c": c, "tc": tc, "h": h, "h0": state[0], "c0": state[1], "active": active}
        return h, (h[-1].copy(), c[-1].copy()), cache

    def backward(
        self, p: Params, cache: Cache, dh: np.ndarray
    ) -> tuple[np.ndarray | None, Params, State]:
        act, c, tc = cache["act"], cache["c"], cache["tc"]
        T, B, G = act.shape
        H = G // 4
        o, i, f, g = (act[..., k * H : (k + 1) * H] for k in range(4))
        c_prev = np.concatenate([cache["c0"][None], c[:-1]])
        # Local derivatives for all steps at once; the loop only chains them through time.
        o_dtc = o * (1 - tc * tc)  # dh -> dc
        tc_do = tc * o * (1 - o)  # dh -> da_o
        k_ifg = np.stack([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g)], axis=2)  # dc -> da_{i,f,g}
        active = cache["active"]
        da = np.empty_like(act) if active is None else np.zeros_like(act)
        da4 = da.reshape(T, B, 4, H)
        Wh_T = p["Wh"].T
        dh_next = np.zeros((B, H), dtype=act.dtype)
        dc_next = np.zeros((B, H), dtype=act.dtype)
        d = np.empty((B, H), dtype=act.dtype)
        dc = np.empty((B, H), dtype=act.dtype)
        for t in range(T - 1, -1, -1):
            n = B if active is None else active[t]
            np.add(dh[t, :n], dh_next[:n], out=d[:n])
            np.multiply(d[:n], o_dtc[t, :n], out=dc[:n])
            dc[:n] += dc_next[:n]
            np.multiply(d[:n], tc_do[t, :n], out=da4[t, :n, 0])
            np.multiply(dc[:n, None, :], k_ifg[t, :n], out=da4[t, :n, 1:])
            np.multiply(dc[:n], f[t, :n], out=dc_next[:n])
            np.matmul(da[t, :n], Wh_T, out=dh_next[:n])
        dx, grads = _weight_grads(p, cache, da)
        return dx, grads, (dh_next, dc_next)

    def step(self, p: Params, x: np.ndarray, state: State) -> State:
        h_prev, c_prev = state
        a = _project(p["Wx"], p["b"], x[None])[0] + h_prev @ p["Wh"]
        H = h_prev.shape[-1]
        _sigmoid(a[:, : 3 * H], out=a[:, : 3 * H])
        c = a[:, 2 * H : 3 * H] * c_prev + a[:, H : 2 * H] * np.tanh(a[:, 3 * H :])
        return (a[:, :H] * np.tanh(c), c)


ARCHS: dict[str, RecurrentLayer] = {"rnn": TanhRNN(), "lstm": LSTM()}
