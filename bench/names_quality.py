"""Names model quality: default `train` on a random 90% of the distinct names, NLL on the rest.

Goal (issue 9 item 3): mean held-out <= 1.56 nats/char over the seeded splits 0-4, and on every
split better than the PyTorch anchor of bench/torch_anchor.py (`--anchor` trains it beside ours).
Several splits, since 150 held-out names are few: the splits' scores differ by up to 0.06.

    python bench/names_quality.py --splits 0 1 2 3 4 [--anchor] [--set epochs=20 ...]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
from _common import ROOT, config_overrides, machine, names_split

from app.charlm.checkpoint import TrainedModel
from app.charlm.data import parse_names
from app.charlm.evaluate import evaluate
from app.charlm.score import score_names
from app.charlm.train import TrainConfig, train


def best_epoch(model: TrainedModel) -> int:
    """The epoch whose validation loss the kept weights had (0 without validation)."""
    history = [h for h in model.meta["history"] if h["val_loss"] is not None]
    return min(history, key=lambda h: h["val_loss"])["epoch"] if history else 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--splits", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--anchor", action="store_true", help="also train the PyTorch anchor on each split")
    parser.add_argument("--set", action="append", default=[], help="override an option, e.g. epochs=20")
    args = parser.parse_args()
    config = TrainConfig(**config_overrides(args.set))
    print(machine(), flush=True)
    recent = parse_names((ROOT / "data" / "lists" / "dinos-recent.txt").read_text())
    scores, wins = [], 0
    for split in args.splits:
        train_names, test_names = names_split(seed=split)
        model = train("\n".join(train_names), config)
        result = evaluate(model, "\n".join(test_names))
        scores.append(result.nll_per_char)
        typical = statistics.median(s.percentile or 0.0 for s in score_names(model, recent))
        line = (f"split {split}: held-out {result.nll_per_char:.3f} nats/char ({result.items} names), "
                f"trained in {model.meta['training']['seconds']:.0f}s (best epoch {best_epoch(model)} of "
                f"{model.meta['training']['epochs_run']}); recent genera: median percentile "
                f"{typical:.0f} against its {model.meta['metrics']['val_items']} validation names")
        if args.anchor:
            from torch_anchor import anchor_nll

            anchor, epoch = anchor_nll(train_names, test_names)
            wins += result.nll_per_char < anchor
            line += f"; PyTorch anchor {anchor:.3f} (best epoch {epoch})"
        print(line, flush=True)
    summary = f"mean held-out: {np.mean(scores):.3f} nats/char (goal <= 1.56)"
    if args.anchor:
        summary += f"; better than the anchor on {wins} of {len(scores)} splits (goal: all)"
    print(summary)


if __name__ == "__main__":
    main()
