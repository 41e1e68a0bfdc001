"""Add the score reference (reference.json) to a names model trained before references existed.

The trainer's validation split depends only on the data, the options and the seed, so it is
recomputed here; the split is accepted only if the recomputed validation NLL equals the one the
model recorded when it was trained (to 1e-6), i.e. these are exactly its validation names.

    python scripts/add_score_reference.py model_store/dinos data/dinos.txt
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from app.charlm.checkpoint import load
from app.charlm.evaluate import names_nll
from app.charlm.reference import build_reference
from app.charlm.textnorm import read_text_file, sha256_text
from app.charlm.train import TrainConfig, _prepare


def main(directory: str, data: str) -> int:
    model = load(directory)
    raw = read_text_file(data)
    if sha256_text(raw) != model.meta.get("data_sha256"):
        print(f"error: {data} is not the data this model was trained on", file=sys.stderr)
        return 2
    options = {**model.meta["training"]["options"], "case": model.case.mode}
    cfg = TrainConfig(**options).resolved()
    prep = _prepare(raw, cfg, None, np.random.default_rng(cfg.seed))
    validation = [prep.vocab.decode(e) for e in prep.val_data] if prep.val_data is not None else []
    recorded = model.meta["metrics"]["val_nll_per_char"]
    if validation:
        total, count = names_nll(model.net, model.params, prep.val_data)
        if abs(total / count - recorded) > 1e-6:
            print(f"error: recomputed validation NLL {total / count:.6f} differs from the recorded {recorded:.6f}",
                  file=sys.stderr)
            return 2
    reference = build_reference(model, validation)
    if reference is None:
        print("error: fewer than 20 reference names; nothing written", file=sys.stderr)
        return 2
    (Path(directory) / "reference.json").write_text(json.dumps(reference))
    print(json.dumps({"set": reference["set"], "names": reference["names"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
