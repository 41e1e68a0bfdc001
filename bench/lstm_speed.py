"""Seconds per training epoch of the poem model's configuration, ours vs PyTorch's nn.LSTM.

Same data (all sonnets), same shape (2x256 LSTM, windows of 128, batch 32, state carried,
dropout 0.3, Adam, clipping): only the implementation differs.
"""

from __future__ import annotations

import numpy as np
from _common import SONNETS, timer, torch_available, torch_update

from app.charlm.textnorm import clean_text
from app.charlm.train import DEFAULTS, TrainConfig, train
from app.charlm.vocab import Vocab

EPOCHS = 2


def ours() -> float:
    model = train(SONNETS.read_text(), TrainConfig(kind="text", epochs=EPOCHS, val_fraction=0.0))
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
    with timer() as elapsed:
        for _ in range(EPOCHS):
            state = None
            for s in range(0, L, T):
                out, state = lstm(eye[inputs[s : s + T]], state)
                state = tuple(x.detach() for x in state)
                logits = head(torch.nn.functional.dropout(out, d["dropout"]))
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets[s : s + T].reshape(-1))
                torch_update(loss, params, opt)
    return elapsed() / EPOCHS


def main() -> None:
    np.random.seed(0)
    ours_s = ours()
    print(f"ours:    {ours_s:.2f} s/epoch (2x256 LSTM, window 128, batch 32)")
    if torch_available():
        torch_s = pytorch()
        print(f"pytorch: {torch_s:.2f} s/epoch  ->  ours takes {ours_s / torch_s:.2f}x PyTorch's time (goal <= 1.5x)")
    else:
        print("pytorch: not installed (pip install -e '.[bench]' to compare)")


if __name__ == "__main__":
    main()
