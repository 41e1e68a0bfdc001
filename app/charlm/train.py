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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import resume as resume_file
from .calibrate import calibrate
from .casing import CasePolicy, check_case, choose
from .checkpoint import TrainedModel
from .data import check_names, encode_names, model_names, names_batch, parse_names
from .errors import InvalidInput, TrainingCancelled
from .evaluate import names_nll, text_nll
from .finetune import adopt_base, extend_params, extended_vocab
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
    hidden: int | None = None  # units per layer of the whole network (split evenly among `members`)
    layers: int | None = None
    members: int | None = None  # an ensemble of this many networks trained side by side (members.py)
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
    init_from: str | None = None  # name or directory of the model fine-tuning starts from (see finetune.py)
    schedule_epochs: int | None = None  # length of the learning-rate schedule when it differs from `epochs`
    # (a small list stops where cross-validation found the best epoch of a CV_EPOCHS-long schedule)

    def sized_for(self, n_names: int) -> TrainConfig:
        """A names config with the unset options that follow the list's size filled (module rule).

        Lists under SMALL_LIST distinct names get no validation set (5% of them would be under
        50 names, too few to choose weights by), a SMALL_NET when trained from scratch, and a
        schedule of CV_EPOCHS (CV_EPOCHS_FINE_TUNE when fine-tuned) that `train` stops at the
        epoch a CV_FOLDS-fold cross-validation finds best (`_cross_validate`). Longer lists keep
        5% for validation and get fewer epochs as they grow (BIG_LIST), and from BIG_BATCH_LIST
        names on bigger batches and one network instead of members, so an 80,000-name list trains
        in minutes, not hours. With a time budget the epochs of a list of
        SMALL_LIST names or more are not set (the budget decides); a small list keeps its
        cross-validated stop, which the budget only caps: run to the end of the budget, a 1x64
        network learns 30 names by heart. The rule counts names, not seconds: same data, same schedule.
        """
        if self.kind != "names":
            return self
        fill: dict[str, Any] = {}
        if n_names < SMALL_LIST:
            fill.update(val_fraction=0.0, members=1, **({} if self.init_from else SMALL_NET),
                        epochs=CV_EPOCHS_FINE_TUNE if self.init_from else CV_EPOCHS)
        else:
            fill.update(epochs=max(MIN_EPOCHS, round(DEFAULTS["names"]["epochs"] * min(1.0, BIG_LIST / n_names))),
                        batch_size=16 if n_names < BIG_BATCH_LIST else 64,
                        **({} if n_names < BIG_BATCH_LIST else {"members": 1}))
        if self.time_budget is not None and n_names >= SMALL_LIST:
            fill.pop("epochs")  # the budget decides; a small list keeps its cross-validated stop (the budget caps it)
        return replace(self, **{k: v for k, v in fill.items() if getattr(self, k) is None})

    def resolved(self) -> TrainConfig:
        """This config with every unset option filled from the kind's defaults, validated."""
        if self.kind not in DEFAULTS:
            raise InvalidInput(f"unknown kind {self.kind!r} (choose from {', '.join(DEFAULTS)})")
        check_case(self.case)
        if self.arch not in ARCHS:
            raise InvalidInput(f"unknown architecture {self.arch!r} (choose from {', '.join(ARCHS)})")
        filled = {k: v for k, v in DEFAULTS[self.kind].items() if getattr(self, k) is None}
        if self.time_budget is not None and self.epochs is None:
            filled["epochs"] = UNLIMITED_EPOCHS  # the budget decides: the schedule then runs on time
        cfg = replace(self, **filled)
        _check_range("hidden", cfg.hidden, 1, 2048)
        _check_range("layers", cfg.layers, 1, 8)
        _check_range("members", cfg.members, 1, 8)
        if int(cfg.hidden or 0) % int(cfg.members or 1):
            sizes = [int(cfg.hidden or 0)] + ([SMALL_NET["hidden"]] if self.hidden is None else [])
            fits = [str(m) for m in range(1, 5) if all(h % m == 0 for h in sizes)]  # 1 always; 4: the API's most
            units = (f"--hidden {cfg.hidden}" if self.hidden is not None else
                     f"the default hidden units per layer ({cfg.hidden}; {SMALL_NET['hidden']} for lists under "
                     f"{SMALL_LIST:,} names)")
            raise InvalidInput(f"--members {cfg.members} cannot share {units} evenly; give --hidden a multiple of "
                               f"{cfg.members}, or --members {' or '.join(fits)}")
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


def check_options(config: TrainConfig, base: TrainedModel | None = None) -> None:
    """InvalidInput for options `train` would refuse, before any data is read: their ranges, with
    the sizes of the `base` model when fine-tuning (a size that conflicts with the base's is named)."""
    (config if base is None else TrainConfig(**adopt_base(asdict(config), base))).resolved()  # type: ignore[arg-type]


UNLIMITED_EPOCHS = 1_000_000
DEFAULTS: dict[str, dict[str, Any]] = {
    "names": dict(hidden=256, layers=2, members=2, dropout=0.4, weight_drop=0.5, epochs=40, batch_size=16, lr=1e-2,
                  weight_decay=0.0, ema=0.999, val_fraction=0.05),
    "text": dict(hidden=256, layers=2, members=1, dropout=0.4, weight_drop=0.5, epochs=40, batch_size=32, lr=6e-3,
                 weight_decay=0.0, window=128, ema=0.999, val_fraction=0.1),
}
# Names members=2 (members.py): 2 members of 2x128 in place of one 2x256 network, the same cost per
# step, held-out 1.555 nats/char against 1.574 over the splits 0-4 of the dinosaur names (better on
# each) and 1.747/1.763 against 1.757/1.769 on two splits of Polish towns (bench/names_quality.py,
# bench/list_quality.py). Not from BIG_BATCH_LIST names on (sized_for): on French towns (8,684)
# members gave 1.728 against 1.694, a list that large trains too few epochs to over-fit one network.
# Text lr 6e-3: 1.568 nats/char on sonnets 141-154 after `--time-budget 600` on sonnets 1-140, against
# 1.576 with 3e-3 (bench/poem_quality.py, one run each on the 2-core development machine).


# The size rule of TrainConfig.sized_for; the figures come from bench/small_lists.py and
# bench/list_quality.py (README, "Training").
SMALL_LIST = 1000  # distinct names: below, no validation set and a fixed schedule
SMALL_NET = dict(hidden=64, layers=1)  # from scratch on a small list: a 2x256 LSTM over-fits 40 names in 10 epochs
# Held-out NLL of a 1x64 LSTM on 40 names was best after 10 to 60 epochs depending on the list
# (cat names: 13, French towns: 55), and fine-tuning 2x256 from dinos peaked after 5 and then
# over-fitted fast: no fixed count suits every list, so cross-validation picks it.
CV_EPOCHS, CV_EPOCHS_FINE_TUNE, CV_FOLDS = 60, 20, 4
SIZED_OPTIONS = ("hidden", "layers", "members", "epochs", "batch_size", "val_fraction")  # what the size rule may set
BIG_LIST = 2000  # distinct names: above, epochs shrink in proportion (40 at 2,000; 6 from 13,300 up)
MIN_EPOCHS = 6  # 80,000 names: 6 epochs of 1,319 steps at 70 ms of CPU each, about 9 minutes on one core
BIG_BATCH_LIST = 8000  # distinct names: from here on, batches of 64 names and one network (no members)
# With --time-budget and no --hidden/--layers (lists of SMALL_LIST names or more): the largest of
# these (hidden, layers) whose measured epoch fits BUDGET_EPOCHS times into the budget.
BUDGET_LADDER = ((256, 2), (128, 2), (64, 1))
BUDGET_EPOCHS = 15


def _check_range(name: str, value: Any, low: float, high: float) -> None:
    if value is None or not low <= value <= high:
        raise InvalidInput(f"--{name} must be between {low:g} and {high:g}, got {value}")


Clock = Callable[[], float]
REPORT_EVERY = 5.0  # seconds between progress reports inside an epoch (users asked for at most 10)
CHECKPOINT_EVERY = 30.0  # seconds between resumable checkpoints (the issue: at least every 30 s)
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
    phase: str = "training"  # or "cross-validation": a short list's folds, before its own run


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
    ema_params: Params | None = None  # exponential moving average of the weights, if enabled
    best_params: Params | None = None
    best_val: float | None = None
    chars_seen: int = 0
    steps_done: int = 0
    epoch: int = 0  # epochs finished
    losses: list[float] = field(default_factory=list)  # batch losses of the current epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    # Where the current epoch stands after the last step (its order and next batch, or the text
    # offset and carried state); None between epochs. An epoch function resumes from it.
    epoch_state: dict[str, np.ndarray] | None = None
    deadline: float | None = None  # a hard stop in seconds that leaves the schedule alone (a service's cap)
    steps_before: int = 0  # cross-validation steps (small lists) reported before the run's own

    def elapsed(self) -> float:
        return self.clock() - self.started

    def progress(self, epoch: float) -> float:
        by_epochs = epoch / float(self.cfg.schedule_epochs or self.cfg.epochs or 1)
        if self.cfg.time_budget and self.cfg.schedule_epochs is None:  # a cross-validated schedule runs on
            return max(by_epochs, self.elapsed() / self.cfg.time_budget)  # steps: the budget only caps it
        return by_epochs

    @property
    def limit(self) -> float | None:
        """Seconds after which the run stops: the time budget or the deadline, whichever comes first."""
        limits = [x for x in (self.cfg.time_budget, self.deadline) if x is not None]
        return min(limits) if limits else None

    def out_of_time(self) -> bool:
        return self.limit is not None and self.elapsed() >= self.limit

    def update(self, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None,
               state: ModelState, epoch_pos: float) -> tuple[float, ModelState]:
        """One optimiser step on a batch; returns its loss and the final recurrent state."""
        active = None if mask is None else mask.sum(axis=1).tolist()  # names come longest first
        self.chars_seen += int(mask.sum()) if mask is not None else targets.size
        logits, new_state, cache = self.net.forward(self.params, inputs, state, self.rng, active)
        if self.net.members > 1:  # each member's logits get the targets: the loss is the members' mean
            targets = np.repeat(targets, self.net.members, axis=1)
            mask = None if mask is None else np.repeat(mask, self.net.members, axis=1)
        loss, dlogits = cross_entropy(logits, targets, mask)
        grads = self.net.backward(self.params, cache, dlogits)
        clip_global_norm(grads, self.cfg.clip)
        self.opt.step(self.params, grads, cosine_lr(float(self.cfg.lr or 0), self.progress(epoch_pos)))
        if self.ema_params is not None:
            decay = min(float(self.cfg.ema or 0), (1 + self.opt.t) / (10 + self.opt.t))
            for k, v in self.ema_params.items():
                v *= decay
                v += (1 - decay) * self.params[k]
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
    at = run.epoch_state
    order = run.rng.permutation(len(train)) if at is None else at["order"]
    bs = int(run.cfg.batch_size or 1)
    n_batches = max(1, (len(train) + bs - 1) // bs)
    for i in range(0 if at is None else int(at["batch"]), n_batches):
        batch = sorted((train[j] for j in order[i * bs : (i + 1) * bs]), key=len, reverse=True)  # stable
        inputs, targets, mask = names_batch(batch)
        state = run.net.zero_state(len(batch))
        loss, _ = run.update(inputs, targets, mask, state, epoch + i / n_batches)
        run.epoch_state = {"order": order, "batch": np.array(i + 1)}
        yield loss


def _text_epoch(run: _Run, stream: np.ndarray, epoch: int) -> Iterator[float]:
    B, T = int(run.cfg.batch_size or 1), int(run.cfg.window or 2)
    # A fresh cut of the windows every epoch, never so late that a stream gets under 2 characters
    # (the length check in _prepare guarantees len(stream) >= 2B + 1, so `high` >= 1 for every seed).
    at = run.epoch_state
    offset = int(run.rng.integers(0, min(T, len(stream) - 2 * B))) if at is None else int(at["offset"])
    L = (len(stream) - 1 - offset) // B
    rows = stream[offset : offset + B * L + 1]
    inputs_all = np.stack([rows[b * L : (b + 1) * L] for b in range(B)], axis=1)  # (L, B)
    targets_all = np.stack([rows[b * L + 1 : (b + 1) * L + 1] for b in range(B)], axis=1)
    state = run.net.zero_state(B)
    if at is not None:
        state = [tuple(at[f"state{n}_{k}"] for k in range(len(s))) for n, s in enumerate(state)]
    starts = range(0, L, T)
    for i in range(0 if at is None else int(at["batch"]), len(starts)):
        s = starts[i]
        loss, state = run.update(inputs_all[s : s + T], targets_all[s : s + T], None, state,
                                 epoch + i / len(starts))
        run.epoch_state = {"offset": np.array(offset), "batch": np.array(i + 1),
                           **{f"state{n}_{k}": a for n, layer in enumerate(state) for k, a in enumerate(layer)}}
        yield loss


@dataclass(frozen=True)
class _Prepared:
    """The data of a run, checked and encoded before the first step, and the options for it."""

    cfg: TrainConfig  # resolved, with the size rule applied
    vocab: Vocab
    case: CasePolicy
    names: list[str]  # all distinct training names in model form (names models)
    train_data: Any  # names: list of encoded names; text: (N,) ids
    val_data: Any
    epoch_fn: EpochFn
    steps_per_epoch: int


def _prepare(raw_text: str, cfg: TrainConfig, val_text: str | None, rng: np.random.Generator,
             vocab_base: Vocab | None = None) -> _Prepared:
    """Clean, check, split and encode the data and resolve the options for it (`sized_for`);
    raises InvalidInput (same verdict for every seed).

    The vocabulary is the data's characters, or `vocab_base` extended by those it lacks.
    """

    def vocab_of(texts: list[str]) -> Vocab:
        return Vocab.from_texts(texts) if vocab_base is None else extended_vocab(vocab_base, set("".join(texts)))

    if not raw_text.strip():
        raise InvalidInput("training data is empty")
    if cfg.kind == "names":
        distinct = check_names(raw_text, min_distinct=2)
        case = choose(distinct, cfg.case)
        names = model_names(distinct, case)
        if len(names) < 2:
            raise InvalidInput("with case folded, fewer than 2 distinct names remain; add names or use --case keep")
        cfg = cfg.sized_for(len(names)).resolved()
        bs = int(cfg.batch_size or 1)
        vocab = vocab_of(names)
        shuffled = [names[i] for i in rng.permutation(len(names))]
        n_val = 0 if val_text is not None else int(round(len(names) * float(cfg.val_fraction or 0)))
        val_items, train_items = shuffled[:n_val], shuffled[n_val:]
        if val_text is not None:
            val_items = [case.model_form(n) for n in parse_names(val_text, "validation data")]
        return _Prepared(cfg, vocab, case, names, encode_names(vocab, train_items),
                         encode_names(vocab, val_items) if val_items else None, _names_epoch,
                         -(-len(train_items) // bs))
    cfg = cfg.resolved()
    bs = int(cfg.batch_size or 1)
    case = CasePolicy("keep", "lower") if cfg.case == "keep" else CasePolicy("fold", "lower")
    text = case.model_form(clean_text(raw_text, "data"))
    vocab = vocab_of([text])
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
    return _Prepared(cfg, vocab, case, [], train_data, val_data, _text_epoch, -(-per_stream // T))


def _measure(run: _Run, prep: _Prepared, validate: Callable[[Params, Any], float]) -> tuple[float, float]:
    """Seconds per optimiser step and per validation, timed on throw-away copies before training.

    The run's weights, optimiser state and random stream are untouched, so the result of
    training does not depend on the measurement.
    """
    copies = {k: v.copy() for k, v in run.params.items()}
    ema = None if run.ema_params is None else {k: v.copy() for k, v in run.ema_params.items()}  # its update
    probe = replace(run, params=copies, opt=Adam(copies), rng=np.random.default_rng(run.cfg.seed + 1),
                    ema_params=ema, epoch_state=None)  # costs time on every step too
    least, most, seconds = _CALIBRATION
    durations: list[float] = []
    losses: Iterator[float] = iter(())
    while len(durations) <= least or (len(durations) <= most and sum(durations[1:]) < seconds):
        start = run.clock()
        if next(losses, None) is None:  # a fresh epoch (tiny data sets have epochs of one step)
            probe.epoch_state = None
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
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: float = CHECKPOINT_EVERY,
    base: TrainedModel | None = None,
    snapshot: resume_file.Snapshot | None = None,
    deadline: float | None = None,
) -> TrainedModel:
    """Train a model on `raw_text` (a name list or a text stream), from scratch or from `base`.

    Validation uses a `val_fraction` split of the data, or all of `val_text` when given.
    `on_progress` gets a "plan" report before the first step, a "step" report every
    `report_every` seconds and an "epoch" report after each epoch. With `checkpoint_dir`, a
    resumable checkpoint (resume.py) is written there every `checkpoint_every` seconds and when
    `should_stop` stops the run (TrainingCancelled). `base` is the model named by
    `config.init_from` (fine-tuning, finetune.py); `snapshot` continues a checkpointed run.
    `deadline` (seconds) is a hard stop that, unlike a time budget, leaves the schedule alone: a
    service's cap on every job. Once time is up (budget or deadline), the last validation scores
    at most QUICK_VALIDATION items, so stopping stays prompt whatever the data size.
    """
    if config.init_from is not None and base is None and snapshot is None:
        raise ValueError("config.init_from names a base model: load it and pass it as `base`")
    requested = config
    if base is not None:
        config = TrainConfig(**adopt_base(asdict(config), base))  # type: ignore[arg-type]
    rng = np.random.default_rng(config.resolved().seed)
    vocab_base = Vocab(tuple(snapshot.meta["vocab"])) if snapshot is not None else base.vocab if base else None
    prep = _prepare(raw_text, config, val_text, rng, vocab_base)
    fine_tuning: dict[str, Any] | None = None
    # --init-from trains from scratch instead when the base model folds case and the list keeps it:
    # such a base has never seen a capital, and every capital of the list is a new character. On 40
    # names from dinos (bench/small_lists.py, 3 draws each) cat, Pokémon and animal names (folded)
    # fine-tuned 0.15-0.25 nats/char better than from scratch; French towns and Star Wars names (case
    # kept) 0.11-0.27 worse, and about even when folded too (--case fold). Cross-validating both ways
    # picked the worse one on 3 of those 6 draws: 40 names are too few to tell.
    if base is not None and snapshot is None and prep.cfg.kind == "names":
        fine_tuning = {"base": requested.init_from, "used": not (prep.case.mode == "keep" and base.case.mode == "fold")}
        if not fine_tuning["used"]:  # from scratch, exactly as without --init-from (`rng` has drawn the same shuffle)
            base, config = None, replace(requested, init_from=None)
            prep = _prepare(raw_text, config, val_text, np.random.default_rng(prep.cfg.seed))
    cfg = prep.cfg
    steps_before = 0  # cross-validation steps reported before the run's own (small lists)
    if (cfg.kind == "names" and config.epochs is None and snapshot is None
            and len(prep.names) < SMALL_LIST and prep.val_data is None):
        chosen, steps_before = _reported_cross_validation(cfg, prep, clock, base, on_progress, should_stop,
                                                          report_every)
        cfg = replace(cfg, epochs=chosen, schedule_epochs=cfg.epochs)
    measured = None
    if (cfg.kind == "names" and cfg.time_budget is not None and config.epochs is None and config.hidden is None
            and config.layers is None and base is None and snapshot is None and len(prep.names) >= SMALL_LIST):
        cfg, measured = _size_for_budget(cfg, prep, clock)
    run = _new_run(cfg, prep, rng, clock, base)
    run.deadline, run.steps_before = deadline, steps_before
    limit = run.limit
    if snapshot is not None:
        _restore(run, snapshot)
    validate = _validator(cfg, run.net)

    def checkpoint() -> None:
        if checkpoint_dir is not None:
            resume_file.write(checkpoint_dir, _capture(run, prep.vocab, raw_text, val_text))

    epochs = int(cfg.epochs or 0)
    steps = None if epochs >= UNLIMITED_EPOCHS else epochs * prep.steps_per_epoch
    step_seconds, val_seconds = measured or _measure(run, prep, validate)
    run.started = clock() - (float(snapshot.meta["elapsed"]) if snapshot is not None else 0.0)  # the measurement
    # is not part of the run's time budget; a resumed run has spent what it had spent before

    def report(event: str, val: float | None) -> Progress:
        elapsed = run.elapsed()
        eta: float | None
        if event == "plan":
            left = None if steps is None else steps - run.steps_done
            eta = expected_seconds(step_seconds, left, val_seconds, epochs - run.epoch,
                                   None if limit is None else limit - elapsed)
        else:
            eta = eta_seconds(elapsed, run.steps_done, steps, limit)
        done, total = run.steps_before + run.steps_done, None if steps is None else run.steps_before + steps
        fraction = max(done / total if total else 0.0, elapsed / cfg.time_budget if cfg.time_budget else 0.0)
        losses = run.losses
        p = Progress(event, run.epoch, epochs, done, total, float(np.mean(losses)) if losses else None,
                     val, run.best_val, elapsed, run.chars_seen / max(elapsed, 1e-9), min(1.0, fraction), eta)
        if on_progress is not None:
            on_progress(p)
        return p

    def stop_if_asked() -> None:
        if should_stop is not None and should_stop():
            checkpoint()
            raise TrainingCancelled("training was cancelled")

    report("plan", None)
    stop_if_asked()
    last_report = last_checkpoint = clock()
    while run.epoch < epochs and not run.out_of_time():
        for loss in prep.epoch_fn(run, prep.train_data, run.epoch):
            run.losses.append(loss)
            stop_if_asked()
            if run.out_of_time():
                break  # the budget is spent: stop mid-epoch
            if clock() - last_checkpoint >= checkpoint_every:
                checkpoint()
                last_checkpoint = clock()
            if clock() - last_report >= report_every:
                last_report = clock()
                report("step", None)
        val_data = prep.val_data
        if val_data is not None and run.out_of_time():
            val_data = val_data[: QUICK_VALIDATION[cfg.kind]]
        scores = [(validate(p, val_data, stop_if_asked) if val_data is not None else None, p) for p in run.candidates]
        for score, candidate in scores:
            run.consider(score, candidate)
        val = None if prep.val_data is None else min(float(score or 0) for score, _ in scores)
        run.epoch += 1
        done = report("epoch", val)
        run.history.append({k: v for k, v in asdict(done).items() if k in _HISTORY_KEYS})
        run.losses, run.epoch_state = [], None
        last_report = clock()

    best = run.best_params if run.best_params is not None else run.candidates[0]
    calibration = None
    # Temperature scaling (calibrate.py) for names only: a text model's fitted T (1.07-1.26 on the sonnets)
    # flattens what users sample at temperature 1 (70.6% of a seeded poem's words were real words with
    # it, 75.5% without; the shipped model's test asks for 85%). At most QUICK_VALIDATION items.
    if prep.val_data is not None and cfg.kind == "names":
        best, calibration = calibrate(run.net, best, prep.val_data[: QUICK_VALIDATION[cfg.kind]], cfg.kind)
    names_model = cfg.kind == "names"
    history = run.history
    meta = {
        "training": {"options": asdict(cfg), "epochs_run": run.epoch, "seconds": round(run.elapsed(), 2),
                     "expected_seconds": round(expected_seconds(step_seconds, steps, val_seconds, epochs, limit), 2),
                     "calibration": calibration, **({"fine_tuning": fine_tuning} if fine_tuning else {})},
        "metrics": {
            "val_nll_per_char": run.best_val,
            "train_nll_per_char": history[-1]["train_loss"] if history else None,
            "train_items": len(prep.train_data) if names_model else None,
            "val_items": (len(prep.val_data) if prep.val_data is not None else 0) if names_model else None,
        },
        "history": history,
        "data_sha256": sha256_text(raw_text),
    }
    model = TrainedModel(cfg.kind, run.net.config, prep.vocab, best, tuple(prep.names), meta, prep.case)
    validation = [prep.vocab.decode(e) for e in prep.val_data] if names_model and prep.val_data is not None else []
    return with_records(model, validation)


def _new_run(cfg: TrainConfig, prep: _Prepared, rng: np.random.Generator, clock: Clock,
             base: TrainedModel | None) -> _Run:
    """A run at step 0: fresh weights from `rng`, or the base model's with the vocabulary extended."""
    net = CharModel(ModelConfig(cfg.arch, prep.vocab.size, int(cfg.hidden or 0), int(cfg.layers or 0),
                                float(cfg.dropout or 0), float(cfg.weight_drop or 0)), int(cfg.members or 1))
    if base is None:
        params = net.init_params(rng)
    else:
        data = prep.train_data if cfg.kind == "text" else np.concatenate(prep.train_data)
        params = extend_params(base.params, base.vocab, prep.vocab, np.bincount(data, minlength=prep.vocab.size))
    run = _Run(cfg, net, params, Adam(params, weight_decay=float(cfg.weight_decay or 0)), rng, clock, clock())
    if cfg.ema:
        run.ema_params = {k: v.copy() for k, v in params.items()}
    return run


Validator = Callable[..., float]  # (weights, validation data, poll=None) -> nats per character
QUICK_VALIDATION = {"names": 512, "text": 32_768}  # names or characters scored once time is up


def _validator(cfg: TrainConfig, net: CharModel) -> Validator:
    """Mean nats per character of some weights on validation data of the run's kind; `poll` is
    called between batches (it may raise to stop)."""

    def validate(candidate: Params, data: Any, poll: Callable[[], None] | None = None) -> float:
        if cfg.kind == "names":
            total, count = names_nll(net, candidate, data, poll=poll)
        else:
            total, count = text_nll(net, candidate, data, streams=8, poll=poll)
        return total / count

    return validate


def _reported_cross_validation(cfg: TrainConfig, prep: _Prepared, clock: Clock, base: TrainedModel | None,
                               on_progress: ProgressCallback | None, should_stop: StopCheck | None,
                               report_every: float) -> tuple[int, int]:
    """`_cross_validate` with a plan before it and progress during it, as training reports them.

    The plan covers the folds and the final run, counted at half the schedule (where the chosen
    stop falls in the middle of its range: 13 to 55 of 60 epochs on the lists measured); returns
    the chosen epochs and the steps the folds took. Measured on throw-away weights, like `_measure`.
    """
    probe = _new_run(cfg, prep, np.random.default_rng([cfg.seed, 3]), clock, base)
    step_seconds, _ = _measure(probe, prep, _validator(cfg, probe.net))
    k, n, schedule = min(CV_FOLDS, len(prep.train_data)), len(prep.train_data), int(cfg.epochs or 0)
    fold_steps = k * schedule * -(-(n - n // k) // int(cfg.batch_size or 1))
    total = fold_steps + schedule // 2 * prep.steps_per_epoch
    start = clock()
    names_nll(probe.net, probe.params, prep.train_data[:64])
    fold_val_seconds = (clock() - start) * (n / k) / min(n, 64)
    started = last = clock()
    done = 0

    def emit(event: str, eta: float | None) -> None:
        if on_progress is not None:
            elapsed = clock() - started
            on_progress(Progress(event, 0, schedule, done, total, None, None, None, elapsed, 0.0,
                                 min(1.0, done / total), eta, "cross-validation"))  # the folds come first

    emit("plan", expected_seconds(step_seconds, total, fold_val_seconds, k * schedule, None))

    def tick() -> None:
        nonlocal done, last
        done += 1
        if should_stop is not None and should_stop():
            raise TrainingCancelled("training was cancelled")
        if clock() - last >= report_every:
            last = clock()
            emit("step", eta_seconds(last - started, done, total, None))

    return _cross_validate(cfg, prep, clock, base, tick), done


def _cross_validate(cfg: TrainConfig, prep: _Prepared, clock: Clock, base: TrainedModel | None,
                    tick: Callable[[], None] | None = None) -> int:
    """The number of epochs (of a `cfg.epochs`-long schedule) after which weights trained on
    (CV_FOLDS - 1)/CV_FOLDS of the names score best on the rest, summed over the folds.

    Deterministic: the folds and every fold's weights come from generators seeded by `cfg.seed`.
    """
    names = prep.train_data
    k = min(CV_FOLDS, len(names))
    order = np.random.default_rng([cfg.seed, 1]).permutation(len(names))
    nll = np.zeros(int(cfg.epochs or 0))
    bs = int(cfg.batch_size or 1)
    for f in range(k):
        held = [names[i] for i in order[f::k]]
        kept = [names[i] for j, i in enumerate(order) if j % k != f]
        fold = replace(prep, train_data=kept, val_data=held, steps_per_epoch=-(-len(kept) // bs))
        run = _new_run(cfg, fold, np.random.default_rng([cfg.seed, 2, f]), clock, base)
        for epoch in range(len(nll)):
            for _ in prep.epoch_fn(run, kept, epoch):
                if tick is not None:
                    tick()
            run.epoch_state = None
            total, _count = names_nll(run.net, run.params, held)  # the weights a run without validation keeps
            nll[epoch] += total
    return int(np.argmin(nll)) + 1


def _size_for_budget(cfg: TrainConfig, prep: _Prepared, clock: Clock) -> tuple[TrainConfig, tuple[float, float]]:
    """The largest network of BUDGET_LADDER whose measured epochs fit BUDGET_EPOCHS times into the
    time budget (else the smallest), with its measured seconds per step and per validation.

    Timed on throw-away weights from another generator: the run's own random stream is untouched.
    """
    budget = float(cfg.time_budget or 0)
    for hidden, layers in BUDGET_LADDER:
        trial = replace(cfg, hidden=hidden, layers=layers)
        probe = _new_run(trial, prep, np.random.default_rng(cfg.seed + 2), clock, None)
        step_seconds, val_seconds = _measure(probe, prep, _validator(trial, probe.net))
        if (step_seconds * prep.steps_per_epoch + val_seconds) * BUDGET_EPOCHS <= budget:
            break
    return trial, (step_seconds, val_seconds)


def resume(
    directory: str | Path,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    clock: Clock = time.perf_counter,
    report_every: float = REPORT_EVERY,
    checkpoint_every: float = CHECKPOINT_EVERY,
    deadline: float | None = None,
) -> TrainedModel:
    """Continue the run checkpointed in `directory` (its data and options are in the checkpoint).

    A run scheduled by steps ends with exactly the weights it would have had uninterrupted; a
    time-budgeted run continues with what is left of its budget.
    """
    snap = resume_file.read(directory)
    try:
        config = TrainConfig(**{"members": 1, **snap.meta["options"]})  # files from before members: one network
        config.resolved()  # an edited file's wrong types, before they reach the trainer
    except (KeyError, TypeError, InvalidInput):
        raise InvalidInput(f"{directory}: the resume file's options are unreadable or invalid; train again with "
                           "--out") from None
    return train(snap.data, config, on_progress, should_stop, snap.val_data, clock, report_every,
                 checkpoint_dir=directory, checkpoint_every=checkpoint_every, snapshot=snap, deadline=deadline)


def _group(name: str, arrays: Params | None) -> dict[str, np.ndarray]:
    return {} if arrays is None else {f"{name}/{k}": v for k, v in arrays.items()}


def _capture(run: _Run, vocab: Vocab, raw_text: str, val_text: str | None) -> resume_file.Snapshot:
    """Everything `_restore` needs to put `run` back where it is now (between two steps)."""
    meta = {"options": asdict(run.cfg), "vocab": list(vocab.chars), "rng": run.rng.bit_generator.state,
            "adam_t": run.opt.t, "steps_done": run.steps_done, "chars_seen": run.chars_seen, "epoch": run.epoch,
            "losses": run.losses, "history": run.history, "best_val": run.best_val, "elapsed": run.elapsed(),
            "steps_before": run.steps_before}
    arrays = {**_group("params", run.params), **_group("m", run.opt.m), **_group("v", run.opt.v),
              **_group("ema", run.ema_params), **_group("best", run.best_params), **_group("epoch", run.epoch_state)}
    return resume_file.Snapshot(meta, arrays, raw_text, val_text)


def _restore(run: _Run, snap: resume_file.Snapshot) -> None:
    """Put the snapshot's state into a freshly built run of the same options and data."""
    m = snap.meta
    shapes = {k: v.shape for k, v in run.params.items()}
    for group in ("params", "m", "v") + (("ema",) if run.ema_params is not None else ()):
        arrays = snap.group(group)
        if {k: v.shape for k, v in arrays.items()} != shapes:
            raise InvalidInput(f"the resume file's {group} weights do not match its options; train again with --out")
    run.params.update({k: v.astype(run.params[k].dtype) for k, v in snap.group("params").items()})
    run.opt.m, run.opt.v, run.opt.t = snap.group("m"), snap.group("v"), int(m["adam_t"])
    run.opt.m = {k: run.opt.m[k] for k in run.params}  # Adam steps parameters in this order
    run.opt.v = {k: run.opt.v[k] for k in run.params}
    if run.ema_params is not None:
        run.ema_params = snap.group("ema")
    run.best_params = snap.group("best") or None
    run.best_val = m["best_val"]
    run.rng.bit_generator.state = m["rng"]
    run.steps_done, run.chars_seen, run.epoch = int(m["steps_done"]), int(m["chars_seen"]), int(m["epoch"])
    run.steps_before = int(m.get("steps_before", 0))
    run.losses, run.history = list(m["losses"]), list(m["history"])
    run.epoch_state = snap.group("epoch") or None
