"""The command line, run as users run it: real processes, exit codes, stdout and stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import DINOS, ROOT


def run(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=300)


def assert_clean_error(proc: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert fragment in proc.stderr


def test_course_command_prints_notebook_report() -> None:
    proc = run("course", "--iterations", "1")
    assert proc.returncode == 0
    assert proc.stdout.startswith("Iteration: 0, Loss: 23.087336\n\nNkzxwtdmfqoeyhsqwasjkjvu\nKneb\n")


def test_train_sample_eval_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "pets"
    proc = run("train", "--data", str(DINOS), "--out", str(out), "--hidden", "32", "--layers", "1",
               "--epochs", "2", "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["out"] == str(out) and summary["epochs_run"] == 2
    assert "epoch 2/2" in proc.stderr
    meta = json.loads((out / "model.json").read_text())
    assert meta["command"].startswith("python -m app train --data")

    names = run("sample", "--model", str(out), "--count", "5", "--seed", "3", "--novel")
    assert names.returncode == 0, names.stderr
    assert len(names.stdout.split()) == 5
    assert names.stdout == run("sample", "--model", str(out), "--count", "5", "--seed", "3", "--novel").stdout

    result = run("eval", "--model", str(out), "--data", str(DINOS))
    scores = json.loads(result.stdout)
    assert set(scores) == {"nll_per_char", "bits_per_char", "chars", "items"} and scores["items"] == 1536


def test_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\x00\x01\x02")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    odd = tmp_path / "odd.txt"
    odd.write_text("Rex\nT-Rex 2\n")
    out = tmp_path / "never"
    assert_clean_error(run("train", "--data", str(tmp_path / "missing.txt"), "--out", str(out)), "not found")
    assert_clean_error(run("train", "--data", str(binary), "--out", str(out)), "binary")
    assert_clean_error(run("train", "--data", str(empty), "--out", str(out)), "empty")
    assert_clean_error(run("train", "--data", str(DINOS), "--out", str(out), "--epochs", "0"), "--epochs")
    assert_clean_error(run("train", "--data", str(DINOS), "--out", str(out), "--arch", "gru"), "invalid choice")
    assert not out.exists()
    assert_clean_error(run("sample", "--model", "no-such-model"), "no model named")
    assert_clean_error(run("sample", "--count", "0"), "count")
    assert_clean_error(run("sample", "--temperature", "-1"), "temperature")
    assert_clean_error(run("eval", "--model", "dinos", "--data", str(odd)), "'2'")
    assert_clean_error(run("course", "--data", str(odd)), "a-z")


def test_every_command_has_help() -> None:
    for cmd in ("course", "train", "eval", "sample", "poem", "serve"):
        proc = run(cmd, "--help")
        assert proc.returncode == 0 and "usage:" in proc.stdout


@pytest.mark.parametrize("module", ["app.charlm.train", "app.charlm.sample", "app.charlm.store", "app.cli"])
def test_core_imports_no_web_stack(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in ('fastapi', 'pydantic', 'uvicorn') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.strip() == "[]"


def test_poem_prints_prompt_as_typed_then_continuation() -> None:
    prompt = "Forsooth This maketh no sense "
    proc = run("poem", "--prompt", prompt, "--seed", "1", "--length", "80")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(prompt) and len(proc.stdout) == len(prompt) + 80 + 1  # + print's newline
    assert proc.stdout == run("poem", "--prompt", prompt, "--seed", "1", "--length", "80").stdout
    sonnet = run("poem", "--seed", "2", "--lines", "14")
    assert sonnet.returncode == 0 and sonnet.stdout.count("\n") == 14


def test_poem_bad_input() -> None:
    assert_clean_error(run("poem", "--prompt", "x" * 201), "200")
    assert_clean_error(run("poem", "--prompt", "héllo ☃"), "'☃'")
    assert_clean_error(run("poem", "--length", "0"), "length")
    assert_clean_error(run("poem", "--length", "2001"), "length")
    assert_clean_error(run("poem", "--temperature", "0"), "temperature")
    assert_clean_error(run("poem", "--model", "dinos"), "names")


def test_eval_text_model(tmp_path: Path) -> None:
    sample = tmp_path / "verse.txt"
    sample.write_text("Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\n")
    scores = json.loads(run("eval", "--model", "shakespeare", "--data", str(sample)).stdout)
    assert scores["chars"] == len(sample.read_text()) - 1 and scores["items"] == 2
    assert 0.5 < scores["nll_per_char"] < 3.0


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_course_reads_windows_and_old_mac_line_endings(tmp_path: Path, newline: str) -> None:
    copy = tmp_path / "dinos.txt"
    copy.write_bytes(DINOS.read_text().replace("\n", newline).encode())
    proc = run("course", "--data", str(copy), "--iterations", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == run("course", "--iterations", "1").stdout  # the notebook's own numbers


def test_utf16_files_with_a_byte_order_mark_train_and_evaluate(tmp_path: Path) -> None:
    names = "Łódź\nŁeba\nŁomża\nŁowicz\nŁańcut\nŁuków\nŁask\nŁęczyca\n"
    data = tmp_path / "towns.txt"
    data.write_bytes(names.encode("utf-16"))  # Python writes the byte-order mark, as Notepad does
    out = tmp_path / "towns"
    proc = run("train", "--data", str(data), "--out", str(out), "--hidden", "8", "--layers", "1", "--epochs", "1")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(run("eval", "--model", str(out), "--data", str(data)).stdout)["items"] == 8
    # A Windows user redirecting output gets a cp1252 stdout: the names still come out, in UTF-8.
    env = {**os.environ, "PYTHONIOENCODING": "cp1252"}
    sample = subprocess.run([sys.executable, "-m", "app", "sample", "--model", str(out), "--count", "3",
                             "--prefix", "Ł", "--seed", "1"], cwd=ROOT, env=env, capture_output=True, timeout=120)
    assert sample.returncode == 0 and sample.stderr == b"", sample.stderr
    lines = sample.stdout.decode("utf-8").split()
    assert len(lines) == 3 and all(n.startswith("Ł") for n in lines)


def test_a_closed_pipe_ends_quietly() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "app", "poem", "--length", "2000", "--seed", "1"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the poem is written (as `| head -c 20` once it has read)
    assert proc.wait(60) == 141  # 128 + SIGPIPE, like any Unix tool
    assert proc.stderr.read() == b""


def test_extreme_temperature_gives_words_and_no_warnings() -> None:
    proc = run("poem", "--temperature", "1e-310", "--length", "80", "--prompt", "thy ")
    assert proc.returncode == 0 and proc.stderr == ""
    assert sum(c.isalpha() for c in proc.stdout) > 40
    assert_clean_error(run("sample", "--temperature", "1e-310", "--count", "3"), "ask for count 1")


def test_case_option_and_bad_lines(tmp_path: Path) -> None:
    data = tmp_path / "heroes.txt"
    data.write_text("Peter Parker\nMary Jane\n\tTony\u00a0Stark\r\nBruce  Wayne\n", encoding="utf-8")
    out = tmp_path / "heroes"
    proc = run("train", "--data", str(data), "--out", str(out), "--hidden", "8", "--layers", "1", "--epochs", "1",
               "--case", "fold")
    assert proc.returncode == 0, proc.stderr
    model = json.loads((out / "model.json").read_text())
    assert (model["case"], model["case_style"]) == ("fold", "title")
    assert "tony stark" in (out / "names.txt").read_text().split("\n")  # tab, no-break space, CRLF cleaned
    bell = tmp_path / "bell.txt"
    bell.write_text("Rex\nT\arex\n")
    assert_clean_error(run("train", "--data", str(bell), "--out", str(tmp_path / "x")), "line 2")
    long = tmp_path / "long.txt"
    long.write_text("Rex\n" * 3 + "Ab" * 40 + "\n")
    assert_clean_error(run("train", "--data", str(long), "--out", str(tmp_path / "x")), "line 4")


def test_out_never_replaces_what_is_not_a_model(tmp_path: Path) -> None:
    thesis = tmp_path / "work"
    thesis.mkdir()
    (thesis / "thesis.tex").write_text("keep me")
    lone = tmp_path / "notes.txt"
    lone.write_text("keep me too")
    small = ("--hidden", "8", "--layers", "1", "--epochs", "1")
    for target in (thesis, lone):
        assert_clean_error(run("train", "--data", str(DINOS), "--out", str(target), *small), "not a model directory")
    assert (thesis / "thesis.tex").read_text() == "keep me" and lone.read_text() == "keep me too"
    assert_clean_error(run("train", "--data", str(DINOS), "--out", "/proc/no-such/model", *small), "cannot create")
    model = tmp_path / "model"
    assert run("train", "--data", str(DINOS), "--out", str(model), *small).returncode == 0
    assert run("train", "--data", str(DINOS), "--out", str(model), *small).returncode == 0  # a model is replaced


def test_commands_run_with_one_blas_thread_unless_the_environment_sets_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from threadpoolctl import threadpool_info

    from app import cli

    seen: list[list[int]] = []
    monkeypatch.setattr(cli, "cmd_eval", lambda args: seen.append(
        [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]))
    for variable in cli.BLAS_THREAD_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    assert cli.main(["eval", "--model", "dinos", "--data", "unused.txt"]) == 0
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")  # the user's own setting is left alone (read at start)
    assert cli.main(["eval", "--model", "dinos", "--data", "unused.txt"]) == 0
    outside = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert seen[0] and set(seen[0]) == {1} and seen[1] == outside
    assert max(outside) > 1 or os.cpu_count() == 1  # so the first call did change something
