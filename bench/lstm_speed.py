"""Seconds per training epoch of the poem model's configuration, ours vs PyTorch's nn.LSTM.

Same data (all sonnets), same shape (2x256 LSTM, windows of 128, batch 32, state carried,
dropout, Adam, clipping), one thread each (NumPy's BLAS and PyTorch): only the implementation
differs. Measured alternately in CPU seconds of the process, so that other jobs on the machine
count for neither.
"""

from __future__ import annotations

import time

import numpy as np
from _common import SONNETS, machine, torch_available, torch_update
from threadpoolctl import threadpool_limits

from app.charlm.textnorm import clean_text
from app.charlm.train import DEFAULTS, TrainConfig, train
from app.charlm.vocab import Vocab

EPOCHS = 2
REPEATS = 2


def ours() -> float:
    model = train(SONNETS.read_text(), TrainConfig(kind="text", epochs=EPOCHS, val_fraction=0.0),
                  clock=time.process_time)
    return float(model.meta["training"]["seconds"]) / EPOCHS


def pytorch() -> float:
    import torch

    d = DEFAULTS["text"]
    text = clean_text(SONNETS.read_text()).lower()
    vocab = Vocab.from_texts([text])
    ids = torch.from_numpy(vocab.encode(text))
    V, H, B, T = vocab.size, d["hidden"], d["batch_size"], d["window"]
    L = (len(ids) - 1) // B
    inputs = torch.stack([ids[b * L : (b + 1) * L] for b in range(B)], 1)
    targets = torch.stack([ids[b * L + 1 : (b + 1) * L + 1] for b in range(B)], 1)
    lstm = torch.nn.LSTM(V, H, num_layers=d["layers"], dropout=d["dropout"])
    head = torch.nn.Linear(H, V)
    params = [*lstm.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=d["lr"])
    eye = torch.eye(V)
    start = time.process_time()
    for _ in range(EPOCHS):
        state = None
        for s in range(0, L, T):
            out, state = lstm(eye[inputs[s : s + T]], state)
            state = tuple(x.detach() for x in state)
            logits = head(torch.nn.functional.dropout(out, d["dropout"]))
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets[s : s + T].reshape(-1))
            torch_update(loss, params, opt)
    return (time.process_time() - start) / EPOCHS


def main() -> None:
    np.random.seed(0)
    threadpool_limits(1)
    print(f"machine: {machine()}")
    if not torch_available():
        print(f"ours:    {ours():.2f} s/epoch; pytorch: not installed (pip install -e '.[bench]' to compare)")
        return
    import torch

    torch.set_num_threads(1)
    mine, theirs = [], []
    for _ in range(REPEATS):  # alternately, so that a busy machine slows both alike
        mine.append(ours())
        theirs.append(pytorch())
    ours_s, torch_s = float(np.median(mine)), float(np.median(theirs))
    print(f"per epoch (2x256 LSTM, window 128, batch 32), one thread, alternately {REPEATS} times, CPU seconds: "
          f"ours {ours_s:.2f} s, "
          f"PyTorch {torch_s:.2f} s  ->  ours takes {ours_s / torch_s:.2f}x PyTorch's time (goal <= 1.2x)")


if __name__ == "__main__":
    main()
