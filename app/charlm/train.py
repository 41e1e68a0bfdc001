"""The fast trainer: mini-batches through time, Adam, clipping, validation, best weights kept.

Names models train on padded batches of whole names; text models on parallel windows of one
stream with the hidden state carried from window to window (truncated BPTT). Everything else —
model, optimiser, schedule, validation, time budget, checkpoint contents — is shared.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from .checkpoint import TrainedModel
from .data import check_names, encode_names, names_batch, normalise_text, parse_names, sha256_text
from .errors import InvalidInput, TrainingCancelled
from .evaluate import names_nll, text_nll
from .layers import ARCHS, Params
from .model import CharModel, ModelConfig, ModelState, cross_entropy
from .optim import Adam, clip_global_norm, cosine_lr
from .vocab import Vocab, describe_chars


@dataclass(frozen=True)
class TrainConfig:
    """Training options; `None` fields take the defaults of the data kind (see DEFAULTS)."""

    kind: str = "names"
    arch: str = "lstm"
    hidden: int | None = None
    layers: int | None = None
    dropout: float | None = None
    weight_drop: float | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    window: int | None = None
    seed: int = 0
    val_fraction: float | None = None
    time_budget: float | None = None
    clip: float = 1.0
    ema: float | None = None

    def resolved(self) -> TrainConfig:
        """This config with every unset option filled from the kind's defaults, validated."""
        if self.kind not in DEFAULTS:
            raise InvalidInput(f"unknown kind {self.kind!r} (choose from {', '.join(DEFAULTS)})")
        if self.arch not in ARCHS:
            raise InvalidInput(f"unknown architecture {self.arch!r} (choose from {', '.join(ARCHS)})")
        filled = {k: v for k, v in DEFAULTS[self.kind].items() if getattr(self, k) is None}
        if self.time_budget is not None and self.epochs is None:
            filled["epochs"] = UNLIMITED_EPOCHS  # the budget decides: the schedule then runs on time
        cfg = replace(self, **filled)
        _check_range("hidden", cfg.hidden, 1, 2048)
        _check_range("layers", cfg.layers, 1, 8)
        _check_range("dropout", cfg.dropout, 0.0, 0.9)
        _check_range("weight-drop", cfg.weight_drop, 0.0, 0.9)
        _check_range("epochs", cfg.epochs, 1, UNLIMITED_EPOCHS)
        _check_range("batch-size", cfg.batch_size, 1, 4096)
        _check_range("lr", cfg.lr, 1e-6, 1.0)
        _check_range("weight-decay", cfg.weight_decay, 0.0, 1.0)
        if cfg.kind == "text":
            _check_range("window", cfg.window, 2, 4096)
        _check_range("ema", cfg.ema, 0.0, 0.9999)
        _check_range("val-fraction", cfg.val_fraction, 0.0, 0.5)
        _check_range("seed", cfg.seed, 0, 2**32 - 1)
        if cfg.time_budget is not None:
            _check_range("time-budget", cfg.time_budget, 0.1, 7 * 24 * 3600)
        return cfg


UNLIMITED_EPOCHS = 1_000_000
DEFAULTS: dict[str, dict[str, Any]] = {
    "names": dict(hidden=256, layers=2, dropout=0.4, weight_drop=0.5, epochs=40, batch_size=16, lr=1e-2,
                  weight_decay=0.0, ema=0.999, val_fraction=0.05),
    "text": dict(hidden=256, layers=2, dropout=0.4, weight_drop=0.5, epochs=40, batch_size=32, lr=3e-3,
                 weight_decay=0.0, window=128, ema=0.999, val_fraction=0.1),
}


def _check_range(name: str, value: Any, low: float, high: float) -> None:
    if value is None or not low <= value <= high:
        raise InvalidInput(f"--{name} must be between {low:g} and {high:g}, got {value}")


@dataclass(frozen=True)
class Progress:
    """One line of training progress, reported after every epoch."""

    epoch: int
    epochs: int
    train_loss: float
    val_loss: float | None
    best_val_loss: float | None
    seconds: float
    chars_per_second: float
    fraction: float  # 0..1, by epochs or by time budget, whichever is further along


ProgressCallback = Callable[[Progress], None]
StopCheck = Callable[[], bool]


@dataclass
class _Run:
    """Mutable bookkeeping of one training run."""

    cfg: TrainConfig
    net: CharModel
    params: Params
    opt: Adam
    rng: np.random.Generator
    started: float
    should_stop: StopCheck | None
    ema_params: Params | None = None  # exponential moving average of the weights, if enabled
    best_params: Params | None = None
    best_val: float | None = None
    chars_seen: int = 0

    def progress(self, epoch: float) -> float:
        by_epochs = epoch / float(self.cfg.epochs or 1)
        if self.cfg.time_budget:
            return max(by_epochs, (time.perf_counter() - self.started) / self.cfg.time_budget)
        return by_epochs

    def out_of_time(self) -> bool:
        budget = self.cfg.time_budget
        return budget is not None and time.perf_counter() - self.started >= budget

    def update(self, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None,
               state: ModelState, epoch_pos: float) -> tuple[float, ModelState]:
        """One optimiser step on a batch; returns its loss and the final recurrent state."""
        if self.should_stop is not None and self.should_stop():
            raise TrainingCancelled("training was cancelled")
        logits, new_state, cache = self.net.forward(self.params, inputs, state, self.rng)
        loss, dlogits = cross_entropy(logits, targets, mask)
        grads = self.net.backward(self.params, cache, dlogits)
        clip_global_norm(grads, self.cfg.clip)
        self.opt.step(self.params, grads, cosine_lr(float(self.cfg.lr or 0), self.progress(epoch_pos)))
        if self.ema_params is not None:
            decay = min(float(self.cfg.ema or 0), (1 + self.opt.t) / (10 + self.opt.t))
            for k, v in self.ema_params.items():
                v *= decay
                v += (1 - decay) * self.params[k]
        self.chars_seen += int(mask.sum()) if mask is not None else targets.size
        return loss, new_state

    @property
    def candidates(self) -> list[Params]:
        """Weights worth keeping: the moving average (when enabled) and the current weights.

        The average wins on long runs; on very short ones it still lags behind the weights.
        """
        return [self.params] if self.ema_params is None else [self.ema_params, self.params]

    def consider(self, val: float | None, params: Params) -> None:
        """Keep a copy of `params` when validation improves (or when there is none)."""
        if val is None or self.best_val is None or val < self.best_val:
            self.best_val = val
            self.best_params = {k: v.copy() for k, v in params.items()}


def _names_epoch(run: _Run, train: list[np.ndarray], epoch: int) -> Iterator[float]:
    order = run.rng.permutation(len(train))
    bs = int(run.cfg.batch_size or 1)
    n_batches = max(1, (len(train) + bs - 1) // bs)
    for i in range(n_batches):
        batch = [train[j] for j in order[i * bs : (i + 1) * bs]]
        inputs, targets, mask = names_batch(batch)
        state = run.net.zero_state(len(batch))
        loss, _ = run.update(inputs, targets, mask, state, epoch + i / n_batches)
        yield loss


def _text_epoch(run: _Run, stream: np.ndarray, epoch: int) -> Iterator[float]:
    B, T = int(run.cfg.batch_size or 1), int(run.cfg.window or 2)
    offset = int(run.rng.integers(0, T))  # a fresh cut of the windows every epoch
    usable = len(stream) - 1 - offset
    L = usable // B
    if L < 2:
        raise InvalidInput("text is too short for this batch size; use a smaller --batch-size")
    rows = stream[offset : offset + B * L + 1]
    inputs_all = np.stack([rows[b * L : (b + 1) * L] for b in range(B)], axis=1)  # (L, B)
    targets_all = np.stack([rows[b * L + 1 : (b + 1) * L + 1] for b in range(B)], axis=1)
    state = run.net.zero_state(B)
    starts = range(0, L, T)
    for i, s in enumerate(starts):
        loss, state = run.update(inputs_all[s : s + T], targets_all[s : s + T], None, state,
                                 epoch + i / len(starts))
        yield loss


def train(
    raw_text: str,
    config: TrainConfig,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    val_text: str | None = None,
) -> TrainedModel:
    """Train a model from scratch on `raw_text` (a name list or a text stream).

    Validation uses a `val_fraction` split of the data, or all of `val_text` when given.
    """
    cfg = config.resolved()
    if not raw_text.strip():
        raise InvalidInput("training data is empty")
    rng = np.random.default_rng(cfg.seed)
    names: list[str] = []
    if cfg.kind == "names":
        names = check_names(parse_names(raw_text), min_distinct=2)
        vocab = Vocab.from_texts(names)
        shuffled = [names[i] for i in rng.permutation(len(names))]
        n_val = 0 if val_text is not None else int(round(len(names) * float(cfg.val_fraction or 0)))
        val_items, train_items = shuffled[:n_val], shuffled[n_val:]
        if val_text is not None:
            val_items = parse_names(val_text)
        train_data: Any = encode_names(vocab, train_items)
        val_data: Any = encode_names(vocab, val_items) if val_items else None
        epoch_fn: Callable[[_Run, Any, int], Iterator[float]] = _names_epoch
    else:
        text = normalise_text(raw_text)
        vocab = Vocab.from_texts([text])
        bad = {c for c in text if not (c.isprintable() or c == "\n")}
        if bad:
            raise InvalidInput(f"text contains non-printable characters: {describe_chars(bad)}")
        ids = vocab.encode(text)
        if val_text is not None:
            train_data, val_data = ids, vocab.encode(normalise_text(val_text))
        else:
            n_val = int(len(ids) * float(cfg.val_fraction or 0))
            train_data = ids[: len(ids) - n_val]
            val_data = ids[len(ids) - n_val - 1 :] if n_val > 1 else None  # one char of overlap as context
        epoch_fn = _text_epoch

    net = CharModel(ModelConfig(cfg.arch, vocab.size, int(cfg.hidden or 0), int(cfg.layers or 0),
                                float(cfg.dropout or 0), float(cfg.weight_drop or 0)))
    params = net.init_params(rng)
    run = _Run(cfg, net, params, Adam(params, weight_decay=float(cfg.weight_decay or 0)), rng,
               time.perf_counter(), should_stop)
    if cfg.ema:
        run.ema_params = {k: v.copy() for k, v in params.items()}

    def validate(candidate: Params) -> float | None:
        if val_data is None:
            return None
        if cfg.kind == "names":
            total, count = names_nll(net, candidate, val_data)
        else:
            total, count = text_nll(net, candidate, val_data, streams=8)
        return total / count

    history: list[dict[str, Any]] = []
    epochs_run = 0
    for epoch in range(int(cfg.epochs or 0)):
        losses = [loss for loss in _until_out_of_time(run, epoch_fn(run, train_data, epoch))]
        scores = [(validate(p), p) for p in run.candidates]
        for score, candidate in scores:
            run.consider(score, candidate)
        val = None if val_data is None else min(float(score or 0) for score, _ in scores)
        epochs_run = epoch + 1
        elapsed = time.perf_counter() - run.started
        report = Progress(epochs_run, int(cfg.epochs or 0), float(np.mean(losses)), val, run.best_val,
                          elapsed, run.chars_seen / max(elapsed, 1e-9), min(1.0, run.progress(epochs_run)))
        history.append({k: v for k, v in asdict(report).items() if k != "epochs"})
        if on_progress is not None:
            on_progress(report)
        if run.out_of_time():
            break

    best = run.best_params if run.best_params is not None else run.candidates[0]
    elapsed = time.perf_counter() - run.started
    options = {k: v for k, v in asdict(cfg).items()}
    meta = {
        "training": {"options": options, "epochs_run": epochs_run, "seconds": round(elapsed, 2)},
        "metrics": {
            "val_nll_per_char": run.best_val,
            "train_nll_per_char": history[-1]["train_loss"] if history else None,
            "train_items": len(train_data) if cfg.kind == "names" else None,
            "val_items": (len(val_data) if val_data is not None else 0) if cfg.kind == "names" else None,
        },
        "history": history,
        "data_sha256": sha256_text(raw_text),
    }
    return TrainedModel(cfg.kind, net.config, vocab, best, tuple(names), meta)


def _until_out_of_time(run: _Run, losses: Iterator[float]) -> Iterator[float]:
    """Pass batch losses through, stopping mid-epoch once the time budget is spent."""
    for loss in losses:
        yield loss
        if run.out_of_time():
            return
