"""Recurrent layers (tanh RNN, LSTM) that own their forward and backward passes.

Every layer is stateless: parameters, states and caches go in and out as values, so one
loaded model can serve any number of concurrent callers. Layers run on packed sequences
(packing.py): an input is either integer ids of shape (N,) — a one-hot input, applied as a row
gather — or floats of shape (N, D), with the Packing that says how many sequences run at each
step; outputs are (N, H). Padding is never computed. The input projection and the weight
gradients are one matrix product over all steps; only the recurrence itself loops over time,
without allocating.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from .packing import Packing

Params = dict[str, np.ndarray]
State = tuple[np.ndarray, ...]
Cache = dict[str, Any]


def _project(Wx: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """x·Wx + b for all rows: (N,) ids or (N, D) floats -> (N, G), a new array."""
    if x.dtype.kind in "iu":
        return Wx[x] + b
    out = x @ Wx
    out += b
    return out


def _weight_grads(p: Params, x: np.ndarray, h_prev: np.ndarray, dpre: np.ndarray) -> tuple[np.ndarray | None, Params]:
    """Parameter gradients (and dL/dx) from the pre-activation gradients of all rows (N, G), the
    inputs x and every row's previous state h_prev (N, H)."""
    if x.dtype.kind in "iu":
        onehot = np.zeros((len(x), p["Wx"].shape[0]), dtype=dpre.dtype)
        onehot[np.arange(len(x)), x] = 1
        dWx, dx = onehot.T @ dpre, None
    else:
        dWx, dx = x.T @ dpre, dpre @ p["Wx"].T
    return dx, {"Wx": dWx, "Wh": h_prev.T @ dpre, "b": dpre.sum(axis=0)}


def _stacked(initial: np.ndarray, rows: int) -> np.ndarray:
    """A (B + N, H) array holding the initial state, then room for the N packed rows."""
    out = np.empty((len(initial) + rows, initial.shape[1]), dtype=initial.dtype)
    out[: len(initial)] = initial
    return out


def _rows(n: int, available: int) -> int:
    """How many rows of a recurrent product to compute when `n` sequences run: up to 4 as they are,
    more rounded up to whole blocks of 8, as far as `available` rows of the operand go. The rows
    past `n` are other sequences' finite values whose results are not used: OpenBLAS 0.3 computes
    Whᵀ·hᵀ for 8 rows (90 µs for 256 hidden units) faster than for 5 to 7 (91-114 µs), 16 rows (108)
    faster than 9 to 15 (118-181), and 1 to 4 rows faster still (18-80), one thread, AMD EPYC.
    """
    return n if n <= 4 else min(available, -(-n // 8) * 8)


def _transposed(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of a.T, copied in bands of 8 rows: 4x faster than np.ascontiguousarray
    for a 256 x 1024 matrix, whose plain transposed copy walks memory with a large stride."""
    out = np.empty(a.shape[::-1], dtype=a.dtype)
    for i in range(0, a.shape[0], 8):
        out[:, i : i + 8] = a[i : i + 8].T
    return out


class RecurrentLayer(Protocol):
    """What the model needs from a layer; `arch` names map to implementations in ARCHS."""

    state_size: int  # how many arrays the recurrent state has (h, or h and c)

    def init(self, n_in: int, hidden: int, rng: np.random.Generator, dtype: Any) -> Params: ...

    def forward(self, p: Params, x: np.ndarray, state: State, packing: Packing) -> tuple[np.ndarray, State, Cache]:
        """Run all steps from `state` (B, H) arrays: returns outputs h (N, H), the state after the
        last step (of the sequences still running then) and a cache for `backward`."""
        ...

    def backward(
        self, p: Params, cache: Cache, dh: np.ndarray
    ) -> tuple[np.ndarray | None, Params, State]:
        """From dL/dh (N, H): returns dL/dx (None for ids), parameter grads, dL/dstate0 (B, H)."""
        ...

    def step(self, p: Params, x: np.ndarray, state: State) -> State:
        """One step for sampling: x is (B,) ids or (B, D); returns the new state (h first)."""
        ...

    def cell(self, a: np.ndarray, state: State) -> State:
        """The step after its products: pre-activations a (..., G) (overwritten) and the state
        (..., H) arrays to the new state, for any leading axes (members.py steps (B, K, G))."""
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

    def forward(self, p: Params, x: np.ndarray, state: State, packing: Packing) -> tuple[np.ndarray, State, Cache]:
        pre = _project(p["Wx"], p["b"], x)  # (N, H)
        B = packing.batch
        hs = _stacked(state[0], len(pre))  # the initial state, then the outputs
        prev = hs[:B]
        for n, s in zip(packing.sizes, packing.starts, strict=False):
            ht = hs[B + s : B + s + n]
            np.matmul(prev[:n], p["Wh"], out=ht)
            ht += pre[s : s + n]
            np.tanh(ht, out=ht)
            prev = ht
        return hs[B:], (prev.copy(),), {"x": x, "hs": hs, "packing": packing}

    def backward(
        self, p: Params, cache: Cache, dh: np.ndarray
    ) -> tuple[np.ndarray | None, Params, State]:
        hs, packing = cache["hs"], cache["packing"]
        B = packing.batch
        h = hs[B:]
        dpre = h * h  # becomes the tanh derivative 1 - h², scaled in place below
        np.subtract(1, dpre, out=dpre)
        dh_next = np.zeros((B, h.shape[1]), dtype=h.dtype)  # rows past a step's size stay zero
        Wh_T = p["Wh"].T
        for n, s in zip(packing.sizes[::-1], packing.starts[-2::-1], strict=True):
            d = dpre[s : s + n]
            dh_next[:n] += dh[s : s + n]
            d *= dh_next[:n]
            np.matmul(d, Wh_T, out=dh_next[:n])
        dx, grads = _weight_grads(p, cache["x"], packing.previous(hs), dpre)
        return dx, grads, (dh_next,)

    def step(self, p: Params, x: np.ndarray, state: State) -> State:
        return self.cell(_project(p["Wx"], p["b"], x) + state[0] @ p["Wh"], state)

    def cell(self, a: np.ndarray, state: State) -> State:
        return (np.tanh(a, out=a),)


class LSTM:
    """Long short-term memory layer. Gates are packed as [o, i, f, g] along the last axis:

        a = x_t·Wx + h_{t-1}·Wh + b
        o, i, f = sigmoid(a_o), sigmoid(a_i), sigmoid(a_f);  g = tanh(a_g)
        c_t = f * c_{t-1} + i * g;   h_t = o * tanh(c_t)

    The sigmoids are computed as 0.5·tanh(a/2) + 0.5, with the halving folded into the inputs of
    the step (exact: a power of two), so one tanh covers all four gates. The recurrent products
    run transposed, as Whᵀ·hᵀ forward and Wh·daᵀ backward, with their results written as the
    transpose of a (B, 4H) array: for the few rows of a batch (16 to 32) OpenBLAS 0.3 computes
    them 1.4x to 2.2x faster that way than as h·Wh and da·Whᵀ (256 hidden units, one thread,
    AMD EPYC; bench/train_speed.py compares the whole epoch with PyTorch). Weights and biases start
    uniform in ±1/sqrt(H). Random (not zero) biases matter: from an all-zero bias, training on
    text sat on the unigram plateau for several epochs.
    """

    state_size = 2

    def init(self, n_in: int, hidden: int, rng: np.random.Generator, dtype: Any) -> Params:
        return {
            "Wx": _uniform(rng, (n_in, 4 * hidden), hidden, dtype),
            "Wh": _uniform(rng, (hidden, 4 * hidden), hidden, dtype),
            "b": _uniform(rng, (4 * hidden,), hidden, dtype),
        }

    def forward(self, p: Params, x: np.ndarray, state: State, packing: Packing) -> tuple[np.ndarray, State, Cache]:
        act = _project(p["Wx"], p["b"], x)  # (N, 4H): pre-activations, then activations
        N, G = act.shape
        H = G // 4
        act[:, : 3 * H] *= 0.5
        Wh_T = _transposed(p["Wh"])  # (4H, H): the recurrent product runs as Whᵀ·hᵀ (class docstring)
        Wh_T[: 3 * H] *= 0.5
        B = packing.batch
        hs, cs = _stacked(state[0], N), _stacked(state[1], N)  # the initial state, then every step's
        tc = np.empty((N, H), dtype=act.dtype)
        rec = np.empty((B, G), dtype=act.dtype, order="F")  # (h_prev·Wh)ᵀ as written by BLAS
        h_prev, c_prev = hs[:B], cs[:B]
        for n, s in zip(packing.sizes, packing.starts, strict=False):
            a, ht, ct, tct = act[s : s + n], hs[B + s : B + s + n], cs[B + s : B + s + n], tc[s : s + n]
            m = _rows(n, len(h_prev))
            np.matmul(Wh_T, h_prev[:m].T, out=rec[:m].T)
            a += rec[:n]
            np.tanh(a, out=a)
            sig = a[:, : 3 * H]
            sig *= 0.5
            sig += 0.5
            np.multiply(a[:, 2 * H : 3 * H], c_prev[:n], out=ct)
            np.multiply(a[:, H : 2 * H], a[:, 3 * H :], out=tct)  # i·g, before tc holds tanh(c)
            ct += tct
            np.tanh(ct, out=tct)
            np.multiply(a[:, :H], tct, out=ht)
            h_prev, c_prev = ht, ct
        cache = {"x": x, "act": act, "cs": cs, "tc": tc, "hs": hs, "packing": packing}
        return hs[B:], (h_prev.copy(), c_prev.copy()), cache

    def backward(
        self, p: Params, cache: Cache, dh: np.ndarray
    ) -> tuple[np.ndarray | None, Params, State]:
        act, tc, packing = cache["act"], cache["tc"], cache["packing"]
        N, G = act.shape
        H, B = G // 4, packing.batch
        o, i, f, g = (act[:, k * H : (k + 1) * H] for k in range(4))
        # Local derivatives for all rows at once; the loop only chains them through time.
        o_dtc = tc * tc  # dh -> dc: o·(1 - tc²)
        np.subtract(1, o_dtc, out=o_dtc)
        o_dtc *= o
        tc_do = 1 - o  # dh -> da_o: tc·o·(1 - o)
        tc_do *= o
        tc_do *= tc
        k_ifg = np.empty((N, 3, H), dtype=act.dtype)  # dc -> da_{i,f,g}
        np.subtract(1, i, out=k_ifg[:, 0])
        k_ifg[:, 0] *= i
        k_ifg[:, 0] *= g
        np.subtract(1, f, out=k_ifg[:, 1])
        k_ifg[:, 1] *= f
        k_ifg[:, 1] *= packing.previous(cache["cs"])
        np.multiply(g, g, out=k_ifg[:, 2])
        np.subtract(1, k_ifg[:, 2], out=k_ifg[:, 2])
        k_ifg[:, 2] *= i
        da = np.empty_like(act)
        da4 = da.reshape(N, 4, H)
        Wh = p["Wh"]
        dh_next = np.zeros((B, H), dtype=act.dtype, order="F")  # (da·Whᵀ)ᵀ as written by BLAS
        dc_next = np.zeros((B, H), dtype=act.dtype)  # rows past a step's size stay zero
        d = np.empty((B, H), dtype=act.dtype)
        dc = np.empty((B, H), dtype=act.dtype)
        for n, s in zip(packing.sizes[::-1], packing.starts[-2::-1], strict=True):
            np.add(dh[s : s + n], dh_next[:n], out=d[:n])
            np.multiply(d[:n], o_dtc[s : s + n], out=dc[:n])
            dc[:n] += dc_next[:n]
            np.multiply(d[:n], tc_do[s : s + n], out=da4[s : s + n, 0])
            np.multiply(dc[:n, None, :], k_ifg[s : s + n], out=da4[s : s + n, 1:])
            np.multiply(dc[:n], f[s : s + n], out=dc_next[:n])
            m = _rows(n, min(B, N - s))
            np.matmul(Wh, da[s : s + m].T, out=dh_next[:m].T)
            dh_next[n:m] = 0  # the rows past n were other sequences' (a later step's) gradients
        dx, grads = _weight_grads(p, cache["x"], packing.previous(cache["hs"]), da)
        return dx, grads, (np.ascontiguousarray(dh_next), dc_next)

    def step(self, p: Params, x: np.ndarray, state: State) -> State:
        return self.cell(_project(p["Wx"], p["b"], x) + state[0] @ p["Wh"], state)

    def cell(self, a: np.ndarray, state: State) -> State:
        c_prev = state[1]
        H = c_prev.shape[-1]
        sig = a[..., : 3 * H]
        sig *= 0.5
        np.tanh(a, out=a)
        sig *= 0.5
        sig += 0.5
        c = a[..., 2 * H : 3 * H] * c_prev + a[..., H : 2 * H] * a[..., 3 * H :]
        return (a[..., :H] * np.tanh(c), c)


ARCHS: dict[str, RecurrentLayer] = {"rnn": TanhRNN(), "lstm": LSTM()}
