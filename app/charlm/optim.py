"""Adam with decoupled weight decay, global-norm gradient clipping and a cosine schedule."""

from __future__ import annotations

import math

import numpy as np

from .layers import Params


def clip_global_norm(grads: Params, max_norm: float) -> float:
    """Scale all gradients together so their joint L2 norm is at most `max_norm`; returns the norm."""
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
    if norm > max_norm > 0:
        scale = max_norm / (norm + 1e-12)
        for g in grads.values():
            g *= scale
    return norm


def cosine_lr(base_lr: float, progress: float, warmup: float = 0.02, floor: float = 0.05) -> float:
    """Linear warm-up, then cosine decay to `floor * base_lr` as progress goes 0 -> 1."""
    if progress < warmup:
        return base_lr * (0.1 + 0.9 * progress / warmup)
    t = min(1.0, (progress - warmup) / (1 - warmup))
    return base_lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


class Adam:
    """Adam (Kingma & Ba) with AdamW-style weight decay on matrices only; updates in place."""

    def __init__(self, params: Params, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        self.beta1, self.beta2, self.eps, self.weight_decay = beta1, beta2, eps, weight_decay
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0
        self._scratch: dict[str, np.ndarray] = {}

    def step(self, params: Params, grads: Params, lr: float) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step_size = lr * math.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        for k, p in params.items():
            g = grads[k]
            m, v = self.m[k], self.v[k]
            m *= b1
            g_scaled = np.multiply(g, 1 - b1, out=self._buffer(k, g))  # one scratch array per parameter
            m += g_scaled
            v *= b2
            np.multiply(g, g, out=g_scaled)
            g_scaled *= 1 - b2
            v += g_scaled
            if self.weight_decay and p.ndim > 1:
                p *= 1 - lr * self.weight_decay
            update = np.sqrt(v, out=g_scaled)
            update += self.eps
            np.divide(m, update, out=update)
            update *= step_size
            p -= update

    def _buffer(self, key: str, like: np.ndarray) -> np.ndarray:
        buf = self._scratch.get(key)
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype:
            buf = self._scratch[key] = np.empty_like(like)
        return buf
