"""The fast trainer: mini-batches through time, Adam, clipping, validation, best weights kept.

Every check that can fail is made before the first step, with the same verdict for every seed;
the expected duration is measured before the first step and progress is reported every few
seconds, not only per epoch.

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

from .casing import CASE_CHOICES, CasePolicy, choose
from .checkpoint import TrainedModel
from .data import check_names, encode_names, model_names, names_batch, parse_names
from .errors import InvalidInput, TrainingCancelled
from .evaluate import names_nll, text_nll
from .layers import ARCHS, Params
from .model import CharModel, ModelConfig, ModelState, cross_entropy
from .optim import Adam, clip_global_norm, cosine_lr
from .reference import with_records
from .textnorm import clean_text, sha256_text
from .vocab import Vocab


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
    case: str = "auto"

    def resolved(self) -> TrainConfig:
        """This config with every unset option filled from the kind's defaults, validated."""
        if self.kind not in DEFAULTS:
            raise InvalidInput(f"unknown kind {self.kind!r} (choose from {', '.join(DEFAULTS)})")
        if self.case not in CASE_CHOICES:
            raise InvalidInput(f"unknown case {self.case!r} (choose from {', '.join(CASE_CHOICES)})")
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


Clock = Callable[[], float]
REPORT_EVERY = 5.0  # seconds between progress reports inside an epoch (users asked for at most 10)
_CALIBRATION = (3, 20, 0.5)  # timed optimiser steps for the expected duration: at least 3, at most 20,
# and more than 3 only while under half a second has been spent (after one untimed warm-up step)
_HISTORY_KEYS = ("epoch", "train_loss", "val_loss", "best_val_loss", "seconds", "chars_per_second", "fraction")


@dataclass(frozen=True)
class Progress:
    """A progress report. `event` is "plan" (before the first step; `eta_seconds` is then the
    expected duration), "step" (every REPORT_EVERY seconds inside an epoch) or "epoch" (at the end
    of each epoch, with validation). Losses are nats per character; times are seconds.
    """

    event: str
    epoch: int  # epochs finished
    epochs: int
    step: int  # optimiser steps taken
    steps: int | None  # steps planned; None when only the time budget ends training
    train_loss: float | None  # mean batch loss of the current (or just finished) epoch
    val_loss: float | None
    best_val_loss: float | None
    seconds: float
    chars_per_second: float
    fraction: float  # 0..1, by steps or by time budget, whichever is further along
    eta_seconds: float | None


ProgressCallback = Callable[[Progress], None]
StopCheck = Callable[[], bool]


def expected_seconds(step_seconds: float, steps: int | None, val_seconds: float, epochs: int | None,
                     budget: float | None) -> float:
    """Expected duration of a run: every planned step plus one validation per epoch, capped by the
    time budget (which alone decides when no number of steps is planned)."""
    planned = None if steps is None else steps * step_seconds + (epochs or 0) * val_seconds
    if planned is None:
        return float(budget or 0.0)
    return planned if budget is None else min(planned, budget)


def eta_seconds(elapsed: float, steps_done: int, steps: int | None, budget: float | None) -> float | None:
    """Seconds left: the pace so far over the remaining steps (validation included, since it is in
    `elapsed`), and never more than what is left of the time budget."""
    candidates = []
    if steps and steps_done:
        candidates.append(elapsed * (steps - steps_done) / steps_done)
    if budget is not None:
        candidates.append(max(0.0, budget - elapsed))
    return min(candidates) if candidates else None


@dataclass
class _Run:
    """Mutable bookkeeping of one training run."""

    cfg: TrainConfig
    net: CharModel
    params: Params
    opt: Adam
    rng: np.random.Generator
    clock: Clock
    started: float
    should_stop: StopCheck | None
    ema_params: Params | None = None  # exponential moving average of the weights, if enabled
    best_params: Params | None = None
    best_val: float | None = None
    chars_seen: int = 0
    steps_done: int = 0

    def elapsed(self) -> float:
        return self.clock() - self.started

    def progress(self, epoch: float) -> float:
        by_epochs = epoch / float(self.cfg.epochs or 1)
        if self.cfg.time_budget:
            return max(by_epochs, self.elapsed() / self.cfg.time_budget)
        return by_epochs

    def out_of_time(self) -> bool:
        budget = self.cfg.time_budget
        return budget is not None and self.elapsed() >= budget

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
        self.steps_done += 1
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


EpochFn = Callable[[_Run, Any, int], Iterator[float]]


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
    # A fresh cut of the windows every epoch, never so late that a stream gets under 2 characters
    # (the length check in _prepare guarantees len(stream) >= 2B + 1, so `high` >= 1 for every seed).
    offset = int(run.rng.integers(0, min(T, len(stream) - 2 * B)))
    L = (len(stream) - 1 - offset) // B
    rows = stream[offset : offset + B * L + 1]
    inputs_all = np.stack([rows[b * L : (b + 1) * L] for b in range(B)], axis=1)  # (L, B)
    targets_all = np.stack([rows[b * L + 1 : (b + 1) * L + 1] for b in range(B)], axis=1)
    state = run.net.zero_state(B)
    starts = range(0, L, T)
    for i, s in enumerate(starts):
        loss, state = run.update(inputs_all[s : s + T], targets_all[s : s + T], None, state,
                                 epoch + i / len(starts))
        yield loss


@dataclass(frozen=True)
class _Prepared:
    """The data of a run, checked and encoded before the first step."""

    vocab: Vocab
    case: CasePolicy
    names: list[str]  # all distinct training names in model form (names models)
    train_data: Any  # names: list of encoded names; text: (N,) ids
    val_data: Any
    epoch_fn: EpochFn
    steps_per_epoch: int


def _prepare(raw_text: str, cfg: TrainConfig, val_text: str | None, rng: np.random.Generator) -> _Prepared:
    """Clean, check, split and encode the data; raises InvalidInput (same verdict for every seed)."""
    if not raw_text.strip():
        raise InvalidInput("training data is empty")
    bs = int(cfg.batch_size or 1)
    if cfg.kind == "names":
        distinct = check_names(raw_text, min_distinct=2)
        case = choose(distinct, cfg.case)
        names = model_names(distinct, case)
        if len(names) < 2:
            raise InvalidInput("with case folded, fewer than 2 distinct names remain; add names or use --case keep")
        vocab = Vocab.from_texts(names)
        shuffled = [names[i] for i in rng.permutation(len(names))]
        n_val = 0 if val_text is not None else int(round(len(names) * float(cfg.val_fraction or 0)))
        val_items, train_items = shuffled[:n_val], shuffled[n_val:]
        if val_text is not None:
            val_items = [case.model_form(n) for n in parse_names(val_text, "validation data")]
        return _Prepared(vocab, case, names, encode_names(vocab, train_items),
                         encode_names(vocab, val_items) if val_items else None, _names_epoch,
                         -(-len(train_items) // bs))
    case = CasePolicy("keep", "lower") if cfg.case == "keep" else CasePolicy("fold", "lower")
    text = case.model_form(clean_text(raw_text, "data"))
    vocab = Vocab.from_texts([text])
    ids = vocab.encode(text)
    val_data: np.ndarray | None
    if val_text is not None:
        train_data, val_data = ids, vocab.encode(case.model_form(clean_text(val_text, "validation data")))
    else:
        n_val = int(len(ids) * float(cfg.val_fraction or 0))
        train_data = ids[: len(ids) - n_val]
        val_data = ids[len(ids) - n_val - 1 :] if n_val > 1 else None  # one char of overlap as context
    if len(train_data) < 2 * bs + 1:
        held = f" (after holding out {len(ids) - len(train_data)} for validation)" if val_text is None else ""
        most = (len(train_data) - 1) // 2
        remedy = f"use --batch-size {most} or less" if most >= 1 else "use a longer text"
        raise InvalidInput(f"the text has {len(train_data)} characters to train on{held}; batch size {bs} needs "
                           f"at least {2 * bs + 1} (two per stream, plus one); {remedy}")
    T = int(cfg.window or 2)
    mean_offset = (min(T, len(train_data) - 2 * bs) - 1) // 2  # as drawn in _text_epoch
    per_stream = (len(train_data) - 1 - mean_offset) // bs
    return _Prepared(vocab, case, [], train_data, val_data, _text_epoch, -(-per_stream // T))


def _measure(run: _Run, prep: _Prepared, validate: Callable[[Params, Any], float]) -> tuple[float, float]:
    """Seconds per optimiser step and per validation, timed on throw-away copies before training.

    The run's weights, optimiser state and random stream are untouched, so the result of
    training does not depend on the measurement.
    """
    copies = {k: v.copy() for k, v in run.params.items()}
    probe = replace(run, params=copies, opt=Adam(copies), rng=np.random.default_rng(run.cfg.seed + 1),
                    should_stop=None, ema_params=None)
    least, most, seconds = _CALIBRATION
    durations: list[float] = []
    losses: Iterator[float] = iter(())
    while len(durations) <= least or (len(durations) <= most and sum(durations[1:]) < seconds):
        start = run.clock()
        if next(losses, None) is None:  # a fresh epoch (tiny data sets have epochs of one step)
            losses = prep.epoch_fn(probe, prep.train_data, 0)
            start = run.clock()
            next(losses)
        durations.append(run.clock() - start)
    step_seconds = float(np.median(durations[1:]))  # robust to a step the OS preempted
    val_seconds = 0.0
    if prep.val_data is not None:
        part = prep.val_data[: 64 if run.cfg.kind == "names" else 2048]
        start = run.clock()
        validate(copies, part)
        val_seconds = (run.clock() - start) * len(prep.val_data) / len(part) * len(run.candidates)
    return step_seconds, val_seconds


def train(
    raw_text: str,
    config: TrainConfig,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    val_text: str | None = None,
    clock: Clock = time.perf_counter,
    report_every: float = REPORT_EVERY,
) -> TrainedModel:
    """Train a model from scratch on `raw_text` (a name list or a text stream).

    Validation uses a `val_fraction` split of the data, or all of `val_text` when given.
    `on_progress` gets a "plan" report before the first step, a "step" report every
    `report_every` seconds and an "epoch" report after each epoch.
    """
    cfg = config.resolved()
    rng = np.random.default_rng(cfg.seed)
    prep = _prepare(raw_text, cfg, val_text, rng)
    net = CharModel(ModelConfig(cfg.arch, prep.vocab.size, int(cfg.hidden or 0), int(cfg.layers or 0),
                                float(cfg.dropout or 0), float(cfg.weight_drop or 0)))
    params = net.init_params(rng)
    run = _Run(cfg, net, params, Adam(params, weight_decay=float(cfg.weight_decay or 0)), rng, clock, clock(),
               should_stop)
    if cfg.ema:
        run.ema_params = {k: v.copy() for k, v in params.items()}

    def validate(candidate: Params, data: Any) -> float:
        if cfg.kind == "names":
            total, count = names_nll(net, candidate, data)
        else:
            total, count = text_nll(net, candidate, data, streams=8)
        return total / count

    epochs = int(cfg.epochs or 0)
    steps = None if epochs >= UNLIMITED_EPOCHS else epochs * prep.steps_per_epoch
    step_seconds, val_seconds = _measure(run, prep, validate)
    run.started = clock()  # the measurement is not part of the run's time budget

    def report(event: str, epoch: int, losses: list[float], val: float | None) -> Progress:
        elapsed = run.elapsed()
        eta = (expected_seconds(step_seconds, steps, val_seconds, epochs, cfg.time_budget) if event == "plan"
               else eta_seconds(elapsed, run.steps_done, steps, cfg.time_budget))
        fraction = max(run.steps_done / steps if steps else 0.0, elapsed / cfg.time_budget if cfg.time_budget else 0.0)
        p = Progress(event, epoch, epochs, run.steps_done, steps, float(np.mean(losses)) if losses else None,
                     val, run.best_val, elapsed, run.chars_seen / max(elapsed, 1e-9), min(1.0, fraction), eta)
        if on_progress is not None:
            on_progress(p)
        return p

    report("plan", 0, [], None)
    history: list[dict[str, Any]] = []
    epochs_run = 0
    last_report = clock()
    for epoch in range(epochs):
        losses: list[float] = []
        for loss in prep.epoch_fn(run, prep.train_data, epoch):
            losses.append(loss)
            if run.out_of_time():
                break  # the budget is spent: stop mid-epoch
            if clock() - last_report >= report_every:
                last_report = clock()
                report("step", epoch, losses, None)
        scores = [(validate(p, prep.val_data) if prep.val_data is not None else None, p) for p in run.candidates]
        for score, candidate in scores:
            run.consider(score, candidate)
        val = None if prep.val_data is None else min(float(score or 0) for score, _ in scores)
        epochs_run = epoch + 1
        done = report("epoch", epochs_run, losses, val)
        history.append({k: v for k, v in asdict(done).items() if k in _HISTORY_KEYS})
        last_report = clock()
        if run.out_of_time():
            break

    best = run.best_params if run.best_params is not None else run.candidates[0]
    options = {k: v for k, v in asdict(cfg).items()}
    names_model = cfg.kind == "names"
    meta = {
        "training": {"options": options, "epochs_run": epochs_run, "seconds": round(run.elapsed(), 2),
                     "expected_seconds": round(expected_seconds(step_seconds, steps, val_seconds, epochs,
                                                                cfg.time_budget), 2)},
        "metrics": {
            "val_nll_per_char": run.best_val,
            "train_nll_per_char": history[-1]["train_loss"] if history else None,
            "train_items": len(prep.train_data) if names_model else None,
            "val_items": (len(prep.val_data) if prep.val_data is not None else 0) if names_model else None,
        },
        "history": history,
        "data_sha256": sha256_text(raw_text),
    }
    model = TrainedModel(cfg.kind, net.config, prep.vocab, best, tuple(prep.names), meta, prep.case)
    validation = [prep.vocab.decode(e) for e in prep.val_data] if names_model and prep.val_data is not None else []
    return with_records(model, validation)
