"""GET /info, the offline API docs and the favicon, through TestClient."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from fastapi.testclient import TestClient

from app.api.main import create_app
from app.api.settings import Settings
from app.charlm.store import BUILTIN_DIR

from .conftest import ROOT
from .test_api import NAMES_FILE, make_client, upload


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def test_info_reports_version_commit_models_and_limits(tmp_path: Path) -> None:
    with make_client(tmp_path, max_upload_bytes=12345, commit="abc123") as c:
        info = c.get("/info").json()
    assert info["commit"] == "abc123"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'version = \{attr = "app.__version__"\}', pyproject)
    assert re.fullmatch(r"\d+\.\d+\.\d+", info["version"])
    by_name = {m["name"]: m for m in info["models"]}
    assert by_name["dinos"] == {"name": "dinos", "version": "builtin", "kind": "names",
                                "size_bytes": dir_bytes(BUILTIN_DIR / "dinos")}
    assert by_name["shakespeare"]["kind"] == "text"
    assert info["limits"]["max_upload_bytes"] == 12345 and info["limits"]["max_names_per_request"] == 1000


def test_info_lists_a_user_model_with_its_active_version(tmp_path: Path, tiny_names_model: object) -> None:
    settings = Settings(store_dir=tmp_path / "store", start_worker=False)
    settings.store.add_version("pets", tiny_names_model)  # type: ignore[arg-type]
    settings.store.add_version("pets", tiny_names_model)  # type: ignore[arg-type]
    with TestClient(create_app(settings)) as c:
        pets = [m for m in c.get("/info").json()["models"] if m["name"] == "pets"]
    path = tmp_path / "store" / "pets" / "versions" / "2"
    assert pets == [{"name": "pets", "version": "2", "kind": "names", "size_bytes": dir_bytes(path)}]


def test_info_commit_in_a_checkout_is_gits(tmp_path: Path) -> None:
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    with TestClient(create_app(Settings(store_dir=tmp_path, start_worker=False))) as c:
        commit = c.get("/info").json()["commit"]
    assert commit == (head.stdout.strip() if head.returncode == 0 else None)


def test_docs_pages_load_their_assets_from_this_server(client: TestClient) -> None:  # noqa: F811
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        scripts = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert scripts and all(s.startswith("/") and not s.startswith("//") for s in scripts), scripts
        for asset in scripts:
            r = client.get(asset)
            assert r.status_code == 200 and len(r.content) > 100, asset
    bundle = client.get(re.findall(r'src="([^"]+swagger-ui-bundle.js)"', client.get("/docs").text)[0]).text
    assert "openapi: 3.1.x" in bundle  # this Swagger UI renders OpenAPI 3.1, which FastAPI emits
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")


def test_favicon(client: TestClient) -> None:  # noqa: F811
    for path in ("/favicon.ico", "/favicon.svg"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
        assert r.text.lstrip().startswith("<svg")
    assert '<link rel="icon" href="/favicon.svg"' in client.get("/").text


def test_info_is_in_the_schema_and_ignores_queued_jobs(client: TestClient) -> None:  # noqa: F811
    before = client.get("/info").json()["models"]
    assert upload(client, NAMES_FILE).status_code == 202  # type: ignore[attr-defined]
    assert client.get("/info").json()["models"] == before  # queued, not trained: nothing new to serve
    assert json.loads(client.get("/openapi.json").text)["paths"]["/info"]["get"]


def test_info_says_what_writes_need(tmp_path: Path) -> None:
    """The page shows its token field when this says `token` (the three cases of deps.require_writer)."""
    with make_client(tmp_path / "a") as c:  # a token is configured
        assert c.get("/info").json()["write_access"] == "token"
    for loopback_writes, expected in ((True, "loopback"), (False, "off")):
        settings = Settings(store_dir=tmp_path / expected, start_worker=False)
        with TestClient(create_app(settings, loopback_writes=loopback_writes), base_url="http://127.0.0.1:8000",
                        client=("127.0.0.1", 50000)) as c:
            assert c.get("/info").json()["write_access"] == expected
            # Through a proxy every client looks like loopback: a tokenless server refuses its writes.
            assert c.get("/info", headers={"X-Forwarded-For": "203.0.113.9"}).json()["write_access"] == "off"
