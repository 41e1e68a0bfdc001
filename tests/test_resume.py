"""Resume and fine-tune: a stopped run continues to the very same weights; a model starts another."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app.api.jobs import JobStore
from app.api.worker import Worker
from app.charlm import resume as resume_file
from app.charlm.checkpoint import load
from app.charlm.data import parse_names
from app.charlm.errors import InvalidInput, TrainingCancelled
from app.charlm.finetune import counterpart, extend_params, extended_vocab
from app.charlm.store import ModelStore
from app.charlm.train import TrainConfig, resume, train
from app.charlm.vocab import Vocab
from app.cli import main

from .conftest import DINOS, ROOT, SONNETS

NAMES = "\n".join(parse_names(DINOS.read_text())[:200])
# Several steps per epoch, dropout, DropConnect and the moving average all on: every source of
# state a resumed run must restore.
NAMES_CONFIG = TrainConfig(hidden=16, layers=2, epochs=3, batch_size=32, seed=4, ema=0.99)
TEXT_CONFIG = TrainConfig(kind="text", hidden=16, layers=1, epochs=3, batch_size=4, window=16, seed=4)


def stop_after(steps: int):  # type: ignore[no-untyped-def]
    """A should_stop that says yes at its (steps+1)-th call: the trainer asks once before the first
    step and once after every step, so the run stops after exactly `steps` steps."""
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > steps

    return should_stop


def assert_same_weights(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize(("text", "config", "steps", "asked_before"), [
    (NAMES, NAMES_CONFIG, 3, 0),  # mid-epoch (7 steps per epoch: 190 training names / 32)
    (NAMES, NAMES_CONFIG, 7, 0),  # right at the end of the first epoch, before its validation
    (SONNETS.read_text()[:3000], TEXT_CONFIG, 40, 0),  # text: the carried state mid-epoch
    # The small-list rule, cross-validated first: 4 folds x 60 epochs x 1 step (9 names, batch 16),
    # each step asking whether to stop, before the run's own steps.
    ("\n".join(parse_names(DINOS.read_text())[:12]), TrainConfig(seed=3), 5, 4 * 60 * 1),
])
def test_interrupted_and_resumed_run_ends_with_identical_weights(
        tmp_path: Path, text: str, config: TrainConfig, steps: int, asked_before: int) -> None:
    whole = train(text, config)
    with pytest.raises(TrainingCancelled):
        train(text, config, should_stop=stop_after(asked_before + steps), checkpoint_dir=tmp_path)
    snap = resume_file.read(tmp_path)
    assert snap.meta["steps_done"] == steps
    resumed = resume(tmp_path)
    assert_same_weights(whole.params, resumed.params)
    assert resumed.meta["metrics"] == whole.meta["metrics"]
    strip = [{k: v for k, v in h.items() if k not in ("seconds", "chars_per_second")} for h in whole.meta["history"]]
    assert strip == [{k: v for k, v in h.items() if k not in ("seconds", "chars_per_second")}
                     for h in resumed.meta["history"]]


def test_twice_interrupted_run_still_matches(tmp_path: Path) -> None:
    whole = train(NAMES, NAMES_CONFIG)
    with pytest.raises(TrainingCancelled):
        train(NAMES, NAMES_CONFIG, should_stop=stop_after(2), checkpoint_dir=tmp_path)
    with pytest.raises(TrainingCancelled):
        resume(tmp_path, should_stop=stop_after(9))
    assert resume_file.read(tmp_path).meta["steps_done"] == 11
    assert_same_weights(whole.params, resume(tmp_path).params)


def test_checkpoints_are_written_periodically_and_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[int] = []
    real_write = resume_file.write

    def spy(directory: Path, snap: resume_file.Snapshot) -> Path:
        written.append(snap.meta["steps_done"])
        return real_write(directory, snap)

    ticks = iter(range(10**6))
    monkeypatch.setattr(resume_file, "write", spy)
    # A clock that advances 1 s per reading: a checkpoint every few steps.
    train(NAMES, NAMES_CONFIG, checkpoint_dir=tmp_path, checkpoint_every=3, clock=lambda: float(next(ticks)))
    assert len(written) >= 5 and written == sorted(written)
    assert [p.name for p in tmp_path.iterdir()] == ["resume.npz"]  # no temporary file left behind


def test_resume_refuses_a_missing_or_damaged_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no resumable run"):
        resume(tmp_path)
    (tmp_path / "resume.npz").write_bytes(b"not a zip file")
    with pytest.raises(InvalidInput, match="damaged"):
        resume(tmp_path)


def test_cli_stops_on_sigint_with_a_checkpoint_then_resumes(tmp_path: Path) -> None:
    data = tmp_path / "names.txt"
    data.write_text(NAMES)
    out = tmp_path / "model"
    proc = subprocess.Popen([sys.executable, "-m", "app", "train", "--data", str(data), "--out", str(out),
                             "--hidden", "16", "--layers", "1", "--epochs", "400", "--batch-size", "32"],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    assert "expected to take" in proc.stderr.readline()  # the plan: training starts right after it
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"--resume {out}" in err.strip().splitlines()[-1]
    assert resume_file.read(out).meta["steps_done"] < 400 * 6  # long enough (seconds) to be stopped mid-way
    assert main(["train", "--data", str(data), "--out", str(out)]) == 2  # a stopped run is not overwritten
    assert main(["train", "--resume", str(out), "--epochs", "3"]) == 2  # its own options: others are refused
    assert resume_file.exists(out)
    assert main(["train", "--resume", str(out)]) == 0
    model = load(out)
    assert model.meta["training"]["epochs_run"] == 400
    assert not (out / "resume.npz").exists()
    assert main(["train", "--resume", str(out)]) == 2  # finished: nothing to resume
    assert main(["train", "--resume", str(out), "--data", str(data)]) == 2


def test_counterpart_rule() -> None:
    known = set("abcdeé")
    assert counterpart("A", known) == "a"
    assert counterpart("É", known) == "é"  # the other case before the bare letter
    assert counterpart("è", known) == "e"
    assert counterpart("Ê", known) == "e"
    assert counterpart("ж", known) is None


def test_extended_vocabulary_copies_counterparts_and_averages_the_rest() -> None:
    old = Vocab(("\n", "a", "b"))
    rng = np.random.default_rng(0)
    params = {"l0.Wx": rng.normal(size=(3, 8)), "l0.Wh": rng.normal(size=(2, 8)),
              "Wy": rng.normal(size=(2, 3)), "by": np.array([0.5, -1.0, 2.0])}
    new = extended_vocab(old, set("abBж"))
    assert new.chars == ("\n", "a", "b", "B", "ж")  # old indices kept, new ones appended in code-point order
    out = extend_params(params, old, new)
    np.testing.assert_array_equal(out["l0.Wx"][:3], params["l0.Wx"])
    np.testing.assert_array_equal(out["l0.Wx"][3], params["l0.Wx"][2])  # B starts as b
    np.testing.assert_array_equal(out["Wy"][:, 3], params["Wy"][:, 2])
    assert out["by"][3] == 2.0
    np.testing.assert_allclose(out["l0.Wx"][4], (params["l0.Wx"][1] + params["l0.Wx"][2]) / 2)  # ж: mean of a, b
    np.testing.assert_allclose(out["Wy"][:, 4], (params["Wy"][:, 1] + params["Wy"][:, 2]) / 2)
    assert out["by"][4] == -1.0  # the smallest letter bias, not the boundary's
    np.testing.assert_array_equal(out["l0.Wh"], params["l0.Wh"])
    # With counts (b 2, B 6 times): b and B share b's old probability 3:7 (counts plus one), so the
    # base's predictions of every other character are untouched; ж (no counterpart) is left alone.
    shared = extend_params(params, old, new, counts=np.array([0, 4, 2, 6, 1]))
    np.testing.assert_allclose(np.exp(shared["by"][[2, 3]]), np.exp(2.0) * np.array([3, 7]) / 10)
    np.testing.assert_array_equal(shared["by"][[0, 1, 4]], out["by"][[0, 1, 4]])


def test_fine_tuning_starts_from_the_base_model(tiny_names_model) -> None:  # type: ignore[no-untyped-def]
    new_list = "Émile\nÉlodie\nJoséphine\nZoë\nMathéo\nLéa\nChloé\nInès\n"
    gentle = TrainConfig(init_from="tiny", epochs=1, lr=1e-6, ema=0, batch_size=4)
    tuned = train(new_list, gentle, base=tiny_names_model)
    base = tiny_names_model
    assert tuned.vocab.chars[: base.vocab.size] == base.vocab.chars
    assert set(tuned.vocab.chars[base.vocab.size :]) == {"é", "ë", "è"}  # the list is Title case: folded
    assert (tuned.config.hidden, tuned.config.layers) == (base.config.hidden, base.config.layers)
    # Two steps of lr 1e-6 move no weight by more than ~2e-6: the run started from the base.
    np.testing.assert_allclose(tuned.params["l0.Wh"], base.params["l0.Wh"], atol=1e-5)
    scratch = train(new_list, TrainConfig(hidden=32, layers=1, epochs=1, lr=1e-6, ema=0, batch_size=4))
    assert np.abs(scratch.params["l0.Wh"] - base.params["l0.Wh"]).max() > 0.01
    assert tuned.meta["training"]["options"]["init_from"] == "tiny"
    with pytest.raises(InvalidInput, match="conflicts with the base model"):
        train(new_list, TrainConfig(init_from="tiny", hidden=64), base=base)


def test_a_case_kept_list_does_not_fine_tune_a_case_folding_base(tiny_names_model) -> None:  # type: ignore[no-untyped-def]
    """The base (dinos names, folded) has never seen a capital: a list whose case is kept trains
    from scratch, to exactly the weights a run without --init-from gives; a folded one fine-tunes."""
    kept = "McAllister\nMacBride\nDeVito\nLeBlanc\nO'Brien\nVanDyke\nFitzGerald\nDuBois\n"
    options = dict(epochs=2, batch_size=4, seed=1)
    fine = train(kept, TrainConfig(init_from="tiny", **options), base=tiny_names_model)
    scratch = train(kept, TrainConfig(**options))
    assert fine.case.mode == "keep" and fine.meta["training"]["fine_tuning"] == {"base": "tiny", "used": False}
    assert_same_weights(fine.params, scratch.params)
    folded = train(kept.lower(), TrainConfig(init_from="tiny", **options), base=tiny_names_model)
    assert folded.meta["training"]["fine_tuning"]["used"] and folded.config.hidden == tiny_names_model.config.hidden


def test_cli_fine_tunes_a_store_model(tmp_path: Path) -> None:
    data = tmp_path / "dragons.txt"
    data.write_text("Smaug\nFalkor\nToothless\nGlaurung\nAncalagon\nDrogon\nViserion\nRhaegal\n")
    out = tmp_path / "dragons"
    assert main(["train", "--data", str(data), "--out", str(out), "--init-from", "dinos", "--epochs", "2"]) == 0
    model = load(out)
    assert (model.config.hidden, model.config.layers) == (256, 2)  # the shipped dinos model's sizes
    assert main(["train", "--data", str(data), "--out", str(out), "--init-from", "no-such-model"]) == 2


def test_worker_resumes_a_requeued_job_from_its_checkpoint(tmp_path: Path) -> None:
    """SIGTERM sets `stopping`: the job is re-queued with its checkpoint and continues from it.

    (Not bit for bit: the worker caps every job with a time budget, which shapes the schedule.)
    """
    store, jobs = ModelStore(tmp_path / "store"), JobStore(tmp_path / "store" / "jobs.sqlite3")
    options = {"hidden": 16, "layers": 1, "epochs": 3, "batch_size": 32, "seed": 2}
    job = jobs.create("later", options, NAMES, max_queued=4)
    assert job is not None
    worker = Worker(store, jobs)
    reported: list[int] = []
    real_report = jobs.report

    def report(job_id: str, progress: float, epochs_done: int, *args, **kwargs):  # type: ignore[no-untyped-def]
        reported.append(epochs_done)
        worker.stopping = len(reported) >= 2  # after the plan and the first epoch
        return real_report(job_id, progress, epochs_done, *args, **kwargs)

    jobs.report = report  # type: ignore[method-assign]
    worker.run_job(*jobs.claim_next(worker.owner))  # type: ignore[misc]
    assert jobs.get(job["id"])["status"] == "queued"  # type: ignore[index]
    first_epoch = resume_file.read(worker.job_dir(job["id"])).meta["history"]
    assert [h["epoch"] for h in first_epoch] == [1]
    worker.stopping, reported[:] = False, []
    charts: list[list[int]] = []

    def report_again(job_id: str, progress: float, epochs_done: int, history: list,  # type: ignore[no-untyped-def]
                     *args, **kwargs):
        reported.append(epochs_done)
        charts.append([h["epoch"] for h in history])

    jobs.report = report_again  # type: ignore[method-assign]
    worker.run_job(*jobs.claim_next(worker.owner))  # type: ignore[misc]
    assert reported[0] == 1  # the plan of the second run: one epoch already done
    assert charts[0] == [1] and charts[-1] == [1, 2, 3]  # the job's loss chart goes on, not over
    finished = jobs.get(job["id"])
    assert finished is not None and finished["status"] == "succeeded"
    assert not worker.job_dir(job["id"]).exists()
    history = store.load("later").meta["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3] and history[0] == first_epoch[0]
