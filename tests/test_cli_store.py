"""The CLI and the service's store: `train --name` versions, `serve` address and port errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from _common import free_port  # bench/_common.py, on the test path (pyproject: pythonpath)

from .conftest import ROOT
from .test_api import NAMES_FILE
from .test_cli import assert_clean_error, run


def test_train_name_adds_versions_to_the_store(tmp_path: Path) -> None:
    data = tmp_path / "heroines.txt"
    data.write_text(NAMES_FILE)
    store = tmp_path / "store"
    env = {"DINO_STORE_DIR": str(store)}
    opts = ["--data", str(data), "--hidden", "8", "--layers", "1", "--epochs", "1", "--seed", "1"]
    first = run("train", "--name", "heroines", *opts, env=env)
    assert first.returncode == 0, first.stderr
    second = run("train", "--name", "heroines", *opts, env=env)
    summaries = [json.loads(p.stdout.strip().splitlines()[-1]) for p in (first, second)]
    assert [(s["model"], s["version"]) for s in summaries] == [("heroines", "1"), ("heroines", "2")]
    assert summaries[1]["out"] == str(store / "heroines" / "versions" / "2")
    assert (store / "heroines" / "ACTIVE").read_text().strip() == "2"
    names = run("sample", "--model", "heroines", "--count", "3", "--seed", "0", env=env)
    assert names.returncode == 0 and len(names.stdout.split()) == 3


def test_train_name_refuses_builtins_and_bad_names_before_training(tmp_path: Path) -> None:
    data = tmp_path / "names.txt"
    data.write_text(NAMES_FILE)
    env = {"DINO_STORE_DIR": str(tmp_path / "store")}
    assert_clean_error(run("train", "--data", str(data), "--name", "dinos", env=env), "built-in")
    assert_clean_error(run("train", "--data", str(data), "--name", "Bad Name", env=env), "model name")
    assert_clean_error(run("train", "--data", str(data), "--name", "x", "--out", str(tmp_path / "m"), env=env),
                       "not allowed with")
    assert_clean_error(run("train", "--data", str(data), env=env), "--out --name")
    assert not (tmp_path / "store").exists()


def test_serve_refuses_a_port_in_use_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run("serve", "--port", str(port))
    assert_clean_error(proc, f"port {port} is already in use")


def test_serve_prints_its_address(tmp_path: Path) -> None:
    port = free_port()
    env = {"DINO_STORE_DIR": str(tmp_path / "store"), "DINO_START_WORKER": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port)], cwd=ROOT,
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        first_line = proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(30)
    assert f"http://127.0.0.1:{port}/" in first_line
