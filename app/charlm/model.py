"""A character language model: a stack of recurrent layers, dropout between them, a softmax head.

`forward` returns logits and a cache, `backward` turns dL/dlogits into parameter gradients;
the architecture is looked up in `layers.ARCHS`, so nothing here branches on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .layers import ARCHS, Cache, Params, RecurrentLayer, State
from .members import block_masks, merge
from .members import stepper as members_stepper
from .packing import Packing

ModelState = list[State]  # one recurrent state per layer
Stepper = Callable[[np.ndarray, ModelState], tuple[np.ndarray, ModelState]]


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes the shapes of a model's parameters, plus its training-time dropout:
    `dropout` on each layer's output (one mask per sequence, shared across time steps) and
    `weight_drop` on the recurrent matrices (DropConnect, one mask per batch), as in AWD-LSTM.
    """

    arch: str
    vocab_size: int
    hidden: int
    layers: int
    dropout: float = 0.0
    weight_drop: float = 0.0


class CharModel:
    """Stacked recurrent character model; parameters live outside in a flat dict.

    With `members` K > 1 (training only) the network is an ensemble of K networks of hidden / K
    units laid out block-diagonally (members.py): `init_params` starts each member as its own
    network, `forward` with an `rng` returns each member's logits and `backward` keeps the
    blocks apart. Without an `rng` (validation, sampling) it is the plain network, whose logits
    are the mean of the members'.
    """

    def __init__(self, config: ModelConfig, members: int = 1) -> None:
        if members < 1 or config.hidden % members:
            raise ValueError(f"{members} members cannot split {config.hidden} hidden units evenly")
        self.config = config
        self.members = members
        self.layer: RecurrentLayer = ARCHS[config.arch]
        self._block_masks: dict[str, np.ndarray] | None = None

    def init_params(self, rng: np.random.Generator, dtype: Any = np.float32) -> Params:
        if self.members > 1:  # each member starts as a network of its own size would
            member = CharModel(replace(self.config, hidden=self.config.hidden // self.members))
            return merge([member.init_params(rng, dtype) for _ in range(self.members)], self.config.layers)
        cfg = self.config
        params: Params = {}
        for n in range(cfg.layers):
            n_in = cfg.vocab_size if n == 0 else cfg.hidden
            for key, value in self.layer.init(n_in, cfg.hidden, rng, dtype).items():
                params[f"l{n}.{key}"] = value
        bound = 1.0 / np.sqrt(cfg.hidden)
        params["Wy"] = rng.uniform(-bound, bound, (cfg.hidden, cfg.vocab_size)).astype(dtype)
        params["by"] = rng.uniform(-bound, bound, cfg.vocab_size).astype(dtype)
        return params

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Expected shape of every parameter, used to validate checkpoints."""
        rng = np.random.default_rng(0)
        return {k: v.shape for k, v in self.init_params(rng).items()}

    def zero_state(self, batch: int, dtype: Any = np.float32) -> ModelState:
        zeros = np.zeros((batch, self.config.hidden), dtype=dtype)
        return [tuple(zeros.copy() for _ in range(self.layer.state_size)) for _ in range(self.config.layers)]

    @staticmethod
    def _layer_params(params: Params, n: int) -> Params:
        prefix = f"l{n}."
        return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}

    def forward(
        self,
        params: Params,
        ids: np.ndarray,
        state: ModelState,
        rng: np.random.Generator | None = None,
        active: Sequence[int] | None = None,
    ) -> tuple[np.ndarray, ModelState, Cache]:
        """ids (T, B) -> logits (T, B, V). Dropout is applied only when `rng` is given; with members
        (class docstring) the logits are then each member's, (T, B·K, V). `active`
        (sequences still running at each step, the batch sorted longest first) packs the batch
        (packing.py): padding is not computed and its logits are zeros, for a loss that masks them."""
        T, B = ids.shape
        packing = Packing.of(T, B, active)
        x: np.ndarray = packing.pack(ids)
        new_state: ModelState = []
        caches: list[Cache] = []
        masks: list[np.ndarray | None] = []
        weight_masks: list[np.ndarray | None] = []
        layer_params: list[Params] = []
        p_drop = self.config.dropout if rng is not None else 0.0
        p_weight = self.config.weight_drop if rng is not None else 0.0
        for n in range(self.config.layers):
            lp = self._layer_params(params, n)
            wmask = None
            if p_weight > 0 and rng is not None:
                wmask = _keep_mask(rng, lp["Wh"].shape, p_weight, lp["Wh"].dtype)
                lp = {**lp, "Wh": lp["Wh"] * wmask}
            h, s, cache = self.layer.forward(lp, x, state[n], packing)
            new_state.append(s)
            caches.append(cache)
            layer_params.append(lp)
            weight_masks.append(wmask)
            mask = None
            if p_drop > 0 and rng is not None:
                mask = _keep_mask(rng, (packing.batch, h.shape[1]), p_drop, h.dtype)  # one mask per sequence
                h = packing.scale(h, mask)
            masks.append(mask)
            x = h
        by_member = self.members > 1 and rng is not None
        cache = {"layers": caches, "masks": masks, "weight_masks": weight_masks, "params": layer_params, "top": x,
                 "packing": packing, "by_member": by_member}
        if by_member:
            return self._member_logits(params, x, packing), new_state, cache
        logits = x @ params["Wy"]
        logits += params["by"]
        return packing.unpack(logits), new_state, cache

    def _member_logits(self, params: Params, top: np.ndarray, packing: Packing) -> np.ndarray:
        """Each member's logits K·h_k·Wy_k + by (members.py) of packed top-layer outputs (N, K·H),
        as (T, B·K, V): member k of sequence b is column b·K + k (targets repeated K times match)."""
        K = self.members
        N, V = len(top), params["Wy"].shape[1]
        h = top.reshape(N, K, -1).transpose(1, 0, 2)  # (K, N, H)
        logits = (h @ params["Wy"].reshape(K, -1, V)).transpose(1, 0, 2)  # (N, K, V)
        logits *= K
        logits += params["by"]
        T, B = len(packing.sizes), packing.batch
        return packing.unpack(logits).reshape(T, B * K, V)

    def backward(self, params: Params, cache: Cache, dlogits: np.ndarray) -> Params:
        """Gradients of the loss for every parameter, given dL/dlogits of `forward`'s logits ((T, B, V),
        or the members' (T, B·K, V))."""
        packing: Packing = cache["packing"]
        if cache["by_member"]:  # the members' logits (T, B·K, V) of a training forward
            grads, dh = self._member_head_backward(params, cache["top"], dlogits, packing)
        else:
            flat = packing.pack(dlogits)
            grads = {"Wy": cache["top"].T @ flat, "by": flat.sum(axis=0)}
            dh = flat @ params["Wy"].T
        for n in range(self.config.layers - 1, -1, -1):
            mask = cache["masks"][n]
            if mask is not None:
                dh = packing.scale(dh, mask)
            dx, layer_grads, _ = self.layer.backward(cache["params"][n], cache["layers"][n], dh)
            wmask = cache["weight_masks"][n]
            if wmask is not None:
                layer_grads["Wh"] *= wmask
            for key, value in layer_grads.items():
                grads[f"l{n}.{key}"] = value
            if dx is not None:
                dh = dx
        if self.members > 1:
            if self._block_masks is None:
                self._block_masks = block_masks(params, self.config.layers, self.members)
            for key, keep in self._block_masks.items():
                grads[key] *= keep  # members never read each other's units
        return grads

    def _member_head_backward(self, params: Params, top: np.ndarray, dlogits: np.ndarray,
                              packing: Packing) -> tuple[Params, np.ndarray]:
        """Gradients of the output layer and dL/dh (N, K·H) from the members' dL/dlogits (T, B·K, V)."""
        K = self.members
        T, V = dlogits.shape[0], dlogits.shape[2]
        d = packing.pack(dlogits.reshape(T, packing.batch, K, V)).transpose(1, 0, 2)  # (K, N, V)
        N = d.shape[1]
        h = top.reshape(N, K, -1).transpose(1, 0, 2)  # (K, N, H)
        dWy = (h.transpose(0, 2, 1) @ d).reshape(-1, V) * np.float32(K)
        dh = (d @ params["Wy"].reshape(K, -1, V).transpose(0, 2, 1)).transpose(1, 0, 2).reshape(N, -1)
        dh *= K
        return {"Wy": dWy, "by": d.sum(axis=(0, 1))}, dh

    def stepper(self, params: Params) -> Stepper:
        """A function for sampling, one step at a time: ids (B,) -> logits (B, V) and the next state.

        The per-layer parameters are split out once here, not at every step of a hot loop. With
        members (block-diagonal `params`, as trained) each member's blocks run apart (members.stepper).
        """
        if self.members > 1:
            return members_stepper(params, self.config.layers, self.members, self.layer)
        layer_params = [self._layer_params(params, n) for n in range(self.config.layers)]
        Wy, by, step = params["Wy"], params["by"], self.layer.step

        def run(ids: np.ndarray, state: ModelState) -> tuple[np.ndarray, ModelState]:
            x: np.ndarray = ids
            new_state: ModelState = []
            for lp, s in zip(layer_params, state, strict=True):
                s = step(lp, x, s)
                new_state.append(s)
                x = s[0]
            return x @ Wy + by, new_state

        return run


def _keep_mask(rng: np.random.Generator, shape: tuple[int, ...], p_drop: float, dtype: Any) -> np.ndarray:
    """Inverted-dropout mask: 0 with probability p_drop, else 1/(1 - p_drop).

    Drawn as 16-bit integers cut from the generator's raw 64-bit output: half the random bits of
    float32 uniforms and 2.5x faster for a 256 x 1024 DropConnect mask. p_drop is rounded to a
    multiple of 1/65536 (at most 8e-6 off) and the scale follows the rounded value, so the mask's
    mean stays exactly 1.
    """
    size = math.prod(shape)
    draws = rng.bit_generator.random_raw(-(-size // 4)).view(np.uint16)[:size].reshape(shape)
    cut = round(p_drop * 65536)
    return np.multiply(draws >= cut, 65536 / (65536 - cut), dtype=dtype)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def cross_entropy(
    logits: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None
) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood over unmasked positions, and its gradient wrt logits."""
    logp = log_softmax(logits)
    T, B, V = logits.shape
    picked = np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]  # (T, B)
    weights = np.ones((T, B), dtype=logits.dtype) if mask is None else mask.astype(logits.dtype)
    count = max(float(weights.sum()), 1.0)
    loss = float(-(picked * weights).sum() / count)
    dlogits = np.exp(logp)
    np.put_along_axis(dlogits, targets[..., None], np.take_along_axis(dlogits, targets[..., None], -1) - 1, -1)
    dlogits *= (weights / count)[..., None]
    return loss, dlogits
