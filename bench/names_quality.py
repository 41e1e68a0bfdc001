"""Names model quality: default `train` on a random 90% of the distinct names, NLL on the rest.

Anchors (issue #2): course recipe 1.87, 4-gram 1.85, tuned PyTorch 2x256 LSTM 1.61 nats/char.
Goal: <= 1.60 with the defaults, in under 5 minutes. Several splits, since 150 names are few.
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import names_split

from app.charlm.evaluate import evaluate
from app.charlm.train import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--splits", type=int, nargs="+", default=[123, 7, 2024])
    args = parser.parse_args()
    scores = []
    for split in args.splits:
        train_names, test_names = names_split(seed=split)
        model = train("\n".join(train_names), TrainConfig())
        result = evaluate(model, "\n".join(test_names))
        scores.append(result.nll_per_char)
        print(f"split {split}: held-out {result.nll_per_char:.3f} nats/char ({result.items} names), "
              f"trained in {model.meta['training']['seconds']:.0f}s")
    print(f"mean held-out: {np.mean(scores):.3f} nats/char (goal <= 1.60; course 1.87, PyTorch 2x256 1.61)")


if __name__ == "__main__":
    main()
