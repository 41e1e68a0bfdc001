"""Training speed: the course loop vs our batched trainer (vs PyTorch, when installed).

Prints, from one run on the same 90/10 split of the distinct names, with the machine:
1. the course recipe's time for 35,000 SGD steps and its held-out loss;
2. our time (default settings) until our held-out loss is at least as good;
3. our held-out loss with a time budget of one sixth of the course recipe's time (issue 9: it
   should reach the course's loss), and the network the budget chose;
4. seconds per epoch of the same architecture (2x256 LSTM, dropout, Adam, clipping), batch (16
   random names, padded for PyTorch, packed by ours), data and thread count (one, for NumPy's BLAS
   and for PyTorch) in PyTorch and in ours, measured alternately (ours, PyTorch, ours, ...) in CPU
   seconds of the process, so that other jobs on the machine count for neither; the ratio is of
   the medians. PyTorch's own packed path (pack_padded_sequence) was slower than its padded one
   here (33 against 24 ms a batch), so the padded one is the bar. `--epochs-only` runs only this.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time

import numpy as np
from _common import machine, names_split, timer, torch_available, torch_update
from threadpoolctl import threadpool_limits

from app.charlm import course
from app.charlm.data import encode_names, names_batch
from app.charlm.errors import TrainingCancelled
from app.charlm.evaluate import evaluate
from app.charlm.train import DEFAULTS, Progress, TrainConfig, train
from app.charlm.vocab import Vocab


def course_recipe(train_names: list[str], test_names: list[str]) -> tuple[float, float]:
    """Seconds for the notebook's 35,000 steps and the held-out NLL per char it reaches."""
    char_to_ix, ix_to_char = course.dino_vocab()
    with timer() as elapsed, contextlib.redirect_stdout(io.StringIO()):
        params = course.model("\n".join(train_names), ix_to_char, char_to_ix, num_iterations=35000)
    total, chars = 0.0, 0
    for name in test_names:
        ids = [char_to_ix[c] for c in name.lower()]  # the course model learns lower case
        loss, _ = course.rnn_forward([None, *ids], [*ids, 0], np.zeros((50, 1)), params)
        total, chars = total + loss, chars + len(ids) + 1
    return elapsed(), total / chars


def ours_time_to(target: float, train_names: list[str], test_names: list[str]) -> tuple[float, float]:
    """Seconds of default training until the held-out loss is <= target (checked every epoch)."""
    reached: list[Progress] = []

    def on_progress(p: Progress) -> None:
        if p.val_loss is not None and p.val_loss <= target and not reached:
            reached.append(p)

    with contextlib.suppress(TrainingCancelled):
        train("\n".join(train_names), TrainConfig(epochs=200), on_progress=on_progress,
              should_stop=lambda: bool(reached), val_text="\n".join(test_names))
    return (reached[0].seconds, float(reached[0].val_loss or 0)) if reached else (float("nan"), float("nan"))


def ours_with_budget(train_names: list[str], test_names: list[str], seconds: float) -> tuple[float, str]:
    """Held-out NLL per char of default training with `--time-budget seconds`, and the network used."""
    model = train("\n".join(train_names), TrainConfig(time_budget=seconds))
    return evaluate(model, "\n".join(test_names)).nll_per_char, f"{model.config.layers}x{model.config.hidden}"


def ours_epoch_seconds(train_names: list[str], epochs: int = 3) -> float:
    """CPU seconds per epoch of default training, without validation."""
    model = train("\n".join(train_names), TrainConfig(epochs=epochs, val_fraction=0.0), clock=time.process_time)
    return float(model.meta["training"]["seconds"]) / epochs


def torch_epoch_seconds(train_names: list[str], epochs: int = 3) -> float:
    """The same network (one-hot input, 2x256 LSTM, dropout, linear head), batch and optimiser."""
    import torch

    d = DEFAULTS["names"]
    vocab = Vocab.from_texts(train_names)
    encoded = encode_names(vocab, train_names)
    V, H = vocab.size, d["hidden"]
    lstm = torch.nn.LSTM(V, H, num_layers=d["layers"], dropout=d["dropout"])
    head = torch.nn.Linear(H, V)
    params = [*lstm.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=d["lr"])
    eye = torch.eye(V)
    rng = np.random.default_rng(0)
    start = time.process_time()
    for _ in range(epochs):
        order = rng.permutation(len(encoded))
        for i in range(0, len(order), d["batch_size"]):
            inputs, targets, mask = names_batch([encoded[j] for j in order[i : i + d["batch_size"]]])
            out, _ = lstm(eye[torch.from_numpy(inputs)])
            logits = head(torch.nn.functional.dropout(out, d["dropout"]))
            m = torch.from_numpy(mask).float()
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.from_numpy(targets).reshape(-1),
                                                    reduction="none")
            loss = (nll * m.reshape(-1)).sum() / m.sum()
            torch_update(loss, params, opt)
    return (time.process_time() - start) / epochs


def compare_epochs(train_names: list[str], repeats: int = 3) -> None:
    """Item 4 of the module docstring, printed."""
    import torch

    torch.set_num_threads(1)
    ours, theirs = [], []
    for _ in range(repeats):
        ours.append(ours_epoch_seconds(train_names))
        theirs.append(torch_epoch_seconds(train_names))
    ours_epoch, torch_epoch = float(np.median(ours)), float(np.median(theirs))
    d = DEFAULTS["names"]
    print(f"per epoch ({d['layers']}x{d['hidden']} LSTM, batch {d['batch_size']}, one thread), alternately {repeats} "
          f"times, CPU seconds: ours {ours_epoch:.2f} ({', '.join(f'{x:.2f}' for x in ours)}), PyTorch "
          f"{torch_epoch:.2f} ({', '.join(f'{x:.2f}' for x in theirs)})  ->  ours takes "
          f"{ours_epoch / torch_epoch:.2f}x PyTorch's time (goal <= 1)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs-only", action="store_true", help="only the per-epoch comparison with PyTorch")
    args = parser.parse_args()
    threadpool_limits(1)  # one BLAS thread, as the service's training worker uses
    print(f"machine: {machine()}")
    train_names, test_names = names_split()
    print(f"split: {len(train_names)} training names, {len(test_names)} held out")
    if not args.epochs_only:
        course_s, course_loss = course_recipe(train_names, test_names)
        print(f"course recipe: 35,000 steps in {course_s:.1f}s, held-out {course_loss:.3f} nats/char")
        ours_s, ours_loss = ours_time_to(course_loss, train_names, test_names)
        print(f"ours (defaults): held-out {ours_loss:.3f} after {ours_s:.1f}s  ->  {course_s / ours_s:.1f}x faster")
        budget = course_s / 6
        budget_loss, size = ours_with_budget(train_names, test_names, budget)
        print(f"ours --time-budget {budget:.1f} (a sixth of the course's time): held-out {budget_loss:.3f} nats/char "
              f"with a {size} LSTM (goal: at most the course's {course_loss:.3f})")
    if not torch_available():
        print(f"ours: {ours_epoch_seconds(train_names):.2f} CPU s/epoch; pytorch: not installed "
              "(pip install -e '.[bench]' to compare)")
        return
    compare_epochs(train_names)


if __name__ == "__main__":
    main()
