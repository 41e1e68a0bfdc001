"""Small uploads (10-100 names): the defaults beside a Kneser-Ney 4-gram, and fine-tuning from `dinos`.

For each real list and seed: draw `--size` distinct names (cleaned and cased as training does)
to train on; every other name of the list whose characters the training part has is the
held-out set. Prints held-out nats per character (end token included) of
- an interpolated Kneser-Ney 4-gram fitted on the same names (kneser_ney.py),
- our trainer with the defaults, from scratch,
- our trainer with the defaults, fine-tuned from the shipped `dinos` model (`--init-from dinos`;
  marked "(scratch)" where the fine-tuning rule of train.py trained from scratch instead).
Several lists and several draws, never one: held-out scores of different draws differ a lot.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from _common import ROOT, machine
from kneser_ney import KneserNey
from threadpoolctl import threadpool_limits

from app.charlm.casing import choose
from app.charlm.data import check_names, model_names
from app.charlm.evaluate import evaluate
from app.charlm.store import ModelStore
from app.charlm.train import TrainConfig, train

LISTS = ["cat-names.txt", "pokemon-en.txt", "animals-lowercase.txt", "towns-fr.txt", "starwars-characters.txt"]


def draw(name: str, size: int, seed: int) -> tuple[list[str], list[str]]:
    distinct = check_names((ROOT / "data" / "lists" / name).read_text(encoding="utf-8"))
    names = model_names(distinct, choose(distinct))
    order = np.random.default_rng(seed).permutation(len(names))
    train_names = [names[i] for i in order[:size]]
    known = set("".join(train_names))
    held = [names[i] for i in order[size:] if set(names[i]) <= known][:500]
    return train_names, held


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lists", nargs="+", default=LISTS)
    parser.add_argument("--size", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--options", default="{}", help="JSON TrainConfig overrides, for exploring")
    parser.add_argument("--no-finetune", action="store_true")
    args = parser.parse_args()
    overrides = json.loads(args.options)
    dinos = ModelStore().load("dinos")
    threadpool_limits(1)  # one BLAS thread, as the service's training worker uses
    print(f"machine: {machine()}")
    print(f"{args.size} training names; options {overrides or 'defaults'}")
    print("list | seed | held-out names | KN 4-gram | ours from scratch | ours from dinos")
    rows = []
    for name in args.lists:
        for seed in args.seeds:
            train_names, held = draw(name, args.size, seed)
            text, held_text = "\n".join(train_names), "\n".join(held)
            total, chars = KneserNey(order=4).fit(train_names).nll(held)
            scratch = evaluate(train(text, TrainConfig(seed=seed, **overrides)), held_text).nll_per_char
            tuned, used = float("nan"), True
            if not args.no_finetune:
                model = train(text, TrainConfig(seed=seed, init_from="dinos", **overrides), base=dinos)
                tuned = evaluate(model, held_text).nll_per_char
                used = model.meta["training"].get("fine_tuning", {}).get("used", True)
            rows.append((total / chars, scratch, tuned))
            note = "" if used else " (scratch)"
            print(f"{name} | {seed} | {len(held)} | {total / chars:.3f} | {scratch:.3f} | {tuned:.3f}{note}",
                  flush=True)
    kn, scratch, tuned = np.array(rows).T
    print(f"mean | | | {kn.mean():.3f} | {scratch.mean():.3f} | {tuned.mean():.3f}")
    print(f"scratch beats KN on {int((scratch < kn).sum())}/{len(kn)} draws; "
          f"dinos beats scratch on {int((tuned < scratch).sum())}/{len(kn)}, loses on {int((tuned > scratch).sum())}")


if __name__ == "__main__":
    main()
