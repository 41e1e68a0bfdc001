"""The PyTorch anchor of issue 9 item 3 on a names split: what a plain, well-tuned LSTM reaches.

2x256 `nn.LSTM` over a 32-wide character embedding, dropout 0.3 (between the layers and before the
head), AdamW lr 3e-3 weight decay 0.01, batches of 32 names, 60 epochs with a cosine schedule
(per step), global-norm clipping 1.0. Held-out NLL per character (end token included, as `eval`
counts) after every epoch; the best epoch is reported, which flatters the anchor: it is chosen on
the very names it is scored on. Names are case-folded, as our trainer folds this Title-case list.

    python bench/torch_anchor.py --splits 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from _common import machine, names_split

from app.charlm.data import names_batch
from app.charlm.vocab import Vocab

HIDDEN, LAYERS, EMBED, DROPOUT, LR, WEIGHT_DECAY, BATCH, EPOCHS, CLIP = 256, 2, 32, 0.3, 3e-3, 0.01, 32, 60, 1.0


def anchor_nll(train_names: list[str], test_names: list[str], seed: int = 0,
               epochs: int = EPOCHS) -> tuple[float, int]:
    """(best held-out nats/char over the epochs, that epoch) of the anchor trained on `train_names`."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_l, test_l = [n.lower() for n in train_names], [n.lower() for n in test_names]
    vocab = Vocab.from_texts(train_l + test_l)  # the held-out names' letters all occur in training
    train_e, test_e = [vocab.encode(n) for n in train_l], [vocab.encode(n) for n in test_l]
    V = vocab.size

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(V, EMBED)
            self.lstm = nn.LSTM(EMBED, HIDDEN, num_layers=LAYERS, dropout=DROPOUT)
            self.drop = nn.Dropout(DROPOUT)
            self.head = nn.Linear(HIDDEN, V)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(self.embed(x))
            return self.head(self.drop(out))

    net = Net()
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = math.ceil(len(train_e) / BATCH)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)

    def batch_nll(encoded: list[np.ndarray]) -> tuple[torch.Tensor, float]:
        inputs, targets, mask = names_batch(encoded)
        logits = net(torch.from_numpy(inputs))
        nll = nn.functional.cross_entropy(logits.reshape(-1, V), torch.from_numpy(targets).reshape(-1),
                                          reduction="none")
        m = torch.from_numpy(mask).reshape(-1).float()
        return (nll * m).sum(), float(m.sum())

    best, best_epoch = math.inf, 0
    for epoch in range(1, epochs + 1):
        net.train()
        order = rng.permutation(len(train_e))
        for i in range(steps_per_epoch):
            total, count = batch_nll([train_e[j] for j in order[i * BATCH : (i + 1) * BATCH]])
            opt.zero_grad()
            (total / count).backward()
            nn.utils.clip_grad_norm_(net.parameters(), CLIP)
            opt.step()
            sched.step()
        net.eval()
        with torch.no_grad():
            sums = [batch_nll(test_e[i : i + 256]) for i in range(0, len(test_e), 256)]
        held_out = float(sum(float(t) for t, _ in sums) / sum(c for _, c in sums))
        if held_out < best:
            best, best_epoch = held_out, epoch
    return best, best_epoch


def main() -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--splits", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{machine()}; PyTorch {torch.__version__}, 1 thread")
    scores = []
    for split in args.splits:
        train_names, test_names = names_split(seed=split)
        nll, epoch = anchor_nll(train_names, test_names)
        scores.append(nll)
        print(f"split {split}: anchor held-out {nll:.3f} nats/char at its best epoch {epoch} of {EPOCHS}", flush=True)
    print(f"mean anchor held-out: {np.mean(scores):.3f} nats/char")


if __name__ == "__main__":
    main()
