"""HTTP round trips through TestClient: every endpoint and the contract's error cases."""

from __future__ import annotations

import codecs
import json
import re
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.api.settings import Settings
from app.charlm.checkpoint import TrainedModel
from app.charlm.store import ModelStore

from .conftest import ROOT

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NAMES_FILE = "\n".join(["Aurora", "Borealis", "Cassia", "Delphine", "Elowen", "Fenna", "Gwendolyn", "Hestia",
                        "Isolde", "Juniper", "Kestrel", "Liora"]) + "\n"


def make_client(tmp_path: Path, **overrides: object) -> TestClient:
    settings = Settings(store_dir=tmp_path / "store", admin_token=TOKEN, start_worker=False, **overrides)
    return TestClient(create_app(settings))


def upload(client: TestClient, content: bytes | str = NAMES_FILE, name: str = "heroines",
           headers: dict[str, str] | None = None, **fields: str) -> object:
    data = content.encode() if isinstance(content, str) else content
    return client.post("/train", files={"file": ("names.txt", data, "text/plain")},
                       data={"name": name, **fields}, headers=AUTH if headers is None else headers)


def test_names_round_trip(client: TestClient) -> None:
    r = client.get("/names", params={"count": 7, "seed": 1})
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == "dinos" and body["version"] == "builtin"
    assert len(body["names"]) == 7 and len(set(body["names"])) == 7
    assert client.get("/names", params={"count": 7, "seed": 1}).json() == body
    r = client.get("/names", params={"count": 20, "prefix": "tri", "min_length": 6, "max_length": 12,
                                     "top_k": 5, "temperature": 0.7, "novel": "true", "seed": 2})
    names = r.json()["names"]
    assert r.status_code == 200 and all(n.startswith("Tri") and 6 <= len(n) <= 12 for n in names)


@pytest.mark.parametrize(
    "params, status, fragment",
    [
        ({"count": 0}, 422, "count"),
        ({"count": 1001}, 422, "count"),
        ({"count": "many"}, 422, "count"),
        ({"temperature": 0}, 422, "temperature"),
        ({"temperature": "nan"}, 422, "temperature: Input should be a finite number"),
        ({"top_k": 0}, 422, "top_k"),
        ({"min_length": 10, "max_length": 5}, 422, "min_length 10 must be between 0 and max_length 5"),
        ({"prefix": "x7"}, 422, "'7'"),
        ({"model": "nope"}, 404, "nope"),
        ({"model": "../etc"}, 422, "model"),
        ({"model": "shakespeare"}, 422, "names model"),
    ],
)
def test_names_errors(client: TestClient, params: dict[str, object], status: int, fragment: str) -> None:
    r = client.get("/names", params=params)
    assert r.status_code == status
    assert fragment in r.json()["detail"]


def test_poem_round_trip_and_errors(client: TestClient) -> None:
    prompt = "Forsooth this maketh no sense "
    r = client.get("/poem", params={"prompt": prompt, "length": 120, "seed": 1})
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == "shakespeare" and body["prompt"] == prompt
    assert body["poem"].startswith(prompt) and len(body["poem"]) == len(prompt) + 120
    assert client.get("/poem", params={"prompt": "Shall I \u201ccompare\u201d", "length": 5}).status_code == 200
    for params, fragment in [({"prompt": "x" * 201}, "prompt"), ({"length": 0}, "length"),
                             ({"length": 2001}, "length"), ({"prompt": "a § b"}, "'§'"),
                             ({"temperature": -1}, "temperature"), ({"model": "dinos"}, "text model")]:
        r = client.get("/poem", params=params)
        assert r.status_code == 422 and fragment in r.json()["detail"], params
    assert client.get("/poem", params={"model": "nope"}).status_code == 404


def test_train_queues_job_and_jobs_endpoints(client: TestClient) -> None:
    r = upload(client, epochs="2", hidden="16", seed="3")
    assert r.status_code == 202
    job_id = r.json()["job_id"]
    assert r.json()["status"] == "queued" and r.headers["location"] == f"/jobs/{job_id}"
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "queued" and job["model"] == "heroines" and job["progress"] == 0
    assert job["options"] == {"arch": "lstm", "hidden": 16, "epochs": 2, "seed": 3}
    assert [j["id"] for j in client.get("/jobs").json()] == [job_id]
    cancelled = client.post(f"/jobs/{job_id}/cancel", headers=AUTH)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = client.post(f"/jobs/{job_id}/cancel", headers=AUTH)
    assert again.status_code == 409 and "already finished" in again.json()["detail"]
    assert client.get("/jobs/0123abcd").status_code == 404
    assert client.post("/jobs/0123abcd/cancel", headers=AUTH).status_code == 404


def test_write_endpoints_need_the_token(client: TestClient) -> None:
    assert upload(client, headers={}).status_code == 401
    r = upload(client, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 403 and "token" in r.json()["detail"]
    job_id = upload(client).json()["job_id"]
    assert client.post(f"/jobs/{job_id}/cancel").status_code == 401


def test_without_token_only_loopback_may_write(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(store_dir=tmp_path, start_worker=False))) as c:  # host "testclient"
        r = upload(c, headers={})
        assert r.status_code == 403 and "loopback" in r.json()["detail"]


def test_a_form_field_given_twice_is_refused(client: TestClient) -> None:
    r = client.post("/train", files={"file": ("names.txt", NAMES_FILE.encode(), "text/plain")},
                     data={"name": "twice", "epochs": ["1", "2"]}, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"] == "epochs: given 2 times; give it once"
    assert client.get("/jobs").json() == []


@pytest.mark.parametrize("fields, fragment", [
    ({"hidden": "30", "members": "4"}, "members 4 cannot share hidden 30 evenly"), ({"members": "9"}, "members")])
def test_members_that_cannot_be_trained_are_refused(client: TestClient, fields: dict[str, str], fragment: str) -> None:
    r = upload(client, **fields)
    assert r.status_code == 422 and fragment in r.json()["detail"]
    assert client.get("/jobs").json() == []


@pytest.mark.parametrize(
    "content, name, status, fragment",
    [
        (b"", "ok", 422, "empty"),
        (b"\x00\x01binary\xff", "ok", 422, "binary"),
        (b"caf\xe9\nbar\n", "ok", 422, "UTF-8"),
        ("anna\nbob\n", "ok", 422, "at least 10 distinct"),
        (NAMES_FILE + "x" * 200 + "\n", "ok", 422, "longer than"),
        (NAMES_FILE, "../../etc", 422, "name"),
        (NAMES_FILE, "Bad Name", 422, "name"),
        (NAMES_FILE, "a" * 41, 422, "name"),
        (NAMES_FILE, "dinos", 409, "built-in"),
        (NAMES_FILE, "shakespeare", 409, "built-in"),
    ],
)
def test_bad_uploads_change_nothing(client: TestClient, tmp_path: Path, content: bytes | str, name: str,
                                    status: int, fragment: str) -> None:
    before = client.get("/models").json()
    r = upload(client, content, name=name)
    assert r.status_code == status and fragment in r.json()["detail"]
    assert client.get("/models").json() == before
    assert client.get("/jobs").json() == []
    assert [p.name for p in (tmp_path / "store").iterdir() if not p.name.startswith("jobs.sqlite3")] == []


def test_bad_training_options_are_refused(client: TestClient) -> None:
    for fields, fragment in [({"epochs": "0"}, "epochs"), ({"arch": "gru"}, "arch"), ({"hidden": "100000"}, "hidden"),
                             ({"time_budget": "-1"}, "time_budget"), ({"layers": "9"}, "layers")]:
        r = upload(client, **fields)
        assert r.status_code == 422 and fragment in r.json()["detail"], fields
    assert client.get("/jobs").json() == []


@pytest.mark.parametrize(
    "fields, fragments",
    [
        ({"init_from": "nope"}, ["no model named 'nope'", "GET /models"]),
        ({"init_from": "shakespeare"}, ["is a text model", "names model"]),
        ({"init_from": "dinos", "hidden": "64"}, ["hidden 64 conflicts", "leave hidden out"]),
        ({"init_from": "dinos", "members": "3"}, ["members 3: a fine-tuned model", "leave members out"]),
        ({"init_from": "../model_store/dinos"}, ["init_from"]),  # a name of the store, never a server path
    ],
)
def test_a_base_model_that_cannot_be_fine_tuned_is_refused(client: TestClient, fields: dict[str, str],
                                                           fragments: list[str]) -> None:
    r = upload(client, **fields)
    assert r.status_code == 422 and all(f in r.json()["detail"] for f in fragments), r.json()
    assert client.get("/jobs").json() == []


def test_fine_tuning_a_names_model_is_queued(client: TestClient) -> None:
    r = upload(client, init_from="dinos", layers="2")  # the base model's own layer count agrees
    assert r.status_code == 202
    assert client.get(r.headers["Location"]).json()["options"]["init_from"] == "dinos"


def test_oversized_upload_is_413(tmp_path: Path) -> None:
    with make_client(tmp_path, max_upload_bytes=100) as c:
        r = upload(c, NAMES_FILE * 5)
        assert r.status_code == 413 and "100 bytes" in r.json()["detail"]
        assert c.get("/jobs").json() == []


def test_queue_is_bounded(tmp_path: Path) -> None:
    with make_client(tmp_path, max_queued_jobs=2) as c:
        assert upload(c).status_code == 202 and upload(c).status_code == 202
        r = upload(c)
        assert r.status_code == 429 and "queue is full" in r.json()["detail"]


def test_models_endpoints(client: TestClient) -> None:
    models = {m["name"]: m for m in client.get("/models").json()}
    assert {"dinos", "shakespeare"} <= set(models)
    dinos = models["dinos"]
    assert dinos["kind"] == "names" and dinos["builtin"] and dinos["active_version"] == "builtin"
    assert dinos["versions"][0]["metrics"]["val_nll_per_char"] > 0
    assert models["shakespeare"]["kind"] == "text"
    assert client.get("/models/dinos").json() == dinos
    r = client.get("/models/nope")
    assert r.status_code == 404 and "nope" in r.json()["detail"]


def test_operations_endpoints(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "models": []}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and {"dinos", "shakespeare"} <= set(ready.json()["models"])
    client.get("/names", params={"count": 5})
    client.get("/names", params={"count": 0})
    text = client.get("/metrics").text
    assert 'dino_http_requests_total{method="GET",route="/names",status="200"} 1.0' in text
    assert 'dino_http_requests_total{method="GET",route="/names",status="422"} 1.0' in text
    assert 'dino_names_generated_total{model="dinos"} 5.0' in text
    assert 'dino_model_active_version{model="dinos",version="builtin"} 1.0' in text
    assert re.search(r'dino_jobs\{status="queued"\} 0\.0', text)
    assert client.get("/openapi.json").json()["info"]["title"] == "Dinosaurus"
    assert client.get("/docs").status_code == 200


def test_page_has_the_test_hooks(client: TestClient) -> None:
    html = client.get("/").text
    for hook in ("names-count", "names-model", "names-temperature", "names-generate", "names-list", "poem-prompt",
                 "poem-generate", "poem-output", "train-file", "train-name", "train-submit", "job-status",
                 "loss-chart", "error", "names-suffix", "names-contains", "names-exclude", "names-novel", "names-seed",
                 "names-more", "names-mode", "score-input", "score-submit", "score-output", "names-prefix",
                 "poem-lines", "poem-temperature", "train-epochs", "train-budget", "train-case", "train-token",
                 "job-eta", "job-cancel"):
        assert f'data-testid="{hook}"' in html
    assert "http://" not in html and "https://" not in html  # nothing fetched from elsewhere


def test_damaged_stored_model_gives_json_error_without_paths(tmp_path: Path) -> None:
    broken = tmp_path / "store" / "broken" / "versions" / "1"
    broken.mkdir(parents=True)
    (broken / "model.json").write_text("{}")
    (broken / "weights.npz").write_bytes(b"junk")
    (tmp_path / "store" / "broken" / "ACTIVE").write_text("1\n")
    with make_client(tmp_path) as c:
        r = c.get("/names", params={"model": "broken"})
        assert r.status_code == 500
        detail = r.json()["detail"]  # what is wrong with which version, for the operator
        assert detail.startswith("model 'broken' could not be loaded (version 1: unsupported format version None")
        assert str(tmp_path) not in r.text


def test_huge_declared_upload_is_refused_before_reading(tmp_path: Path) -> None:
    with make_client(tmp_path, max_upload_bytes=100) as c:
        body = b"x" * 200_000
        r = c.post("/train", content=body, headers={**AUTH, "Content-Type": "multipart/form-data; boundary=b"})
        assert r.status_code == 413 and "100 bytes" in r.json()["detail"]


def test_blank_query_values_mean_defaults(client: TestClient) -> None:
    r = client.get("/names?count=3&model=dinos&temperature=1.0&top_k=&seed=&prefix=&min_length=&max_length="
                   "&novel=false")
    assert r.status_code == 200 and len(r.json()["names"]) == 3
    r = client.get("/poem?prompt=&length=20&temperature=1.0&seed=&model=shakespeare")
    assert r.status_code == 200 and len(r.json()["poem"]) == 20


@pytest.mark.parametrize("content", [
    "\n".join(NAMES_FILE.split("\n")).replace("\n", "\r\n"),  # Windows line endings
    NAMES_FILE.replace("Juniper", "Juniper\tMay").replace("Kestrel", "Kestrel\u00a0Rae"),  # tab, no-break space
    codecs.BOM_UTF16_LE + NAMES_FILE.encode("utf-16-le"),  # what Notepad calls "Unicode"
    codecs.BOM_UTF8 + NAMES_FILE.encode(),
])
def test_ordinary_text_uploads_are_accepted(client: TestClient, content: str | bytes) -> None:
    r = upload(client, content)
    assert r.status_code == 202, r.text


@pytest.mark.parametrize("content, fragment", [
    (NAMES_FILE + "Bad\x07Bell\n", "line 13 contains the control character U+0007"),
    (NAMES_FILE + "Ab" * 31 + "\n", "line 13: name of 62 characters"),
    ("Ana\nBo\n".encode("utf-16-le"), "UTF-16 without a byte-order mark"),
])
def test_unusable_uploads_name_the_line(client: TestClient, content: str | bytes, fragment: str) -> None:
    r = upload(client, content)
    assert r.status_code == 422 and fragment in r.json()["detail"], r.text


def test_prefix_keeps_its_trailing_space(client: TestClient, tiny_multiword_model: TrainedModel,
                                         tmp_path: Path) -> None:
    ModelStore(tmp_path / "store").add_version("starwars", tiny_multiword_model)
    r = client.get("/names", params={"model": "starwars", "prefix": "Darth ", "count": 5, "seed": 1})
    assert r.status_code == 200 and all(n.startswith("Darth ") for n in r.json()["names"]), r.text
    r = client.get("/names", params={"model": "starwars", "prefix": "Darth ", "max_length": 6})
    assert r.status_code == 422 and "raise max_length to 7" in r.json()["detail"]
    r = client.get("/names", params={"count": 5, "top_k": 1})
    assert r.status_code == 422 and "ask for count 1" in r.json()["detail"]


@pytest.mark.parametrize("name", ["cat-names", "pokemon-en", "towns-fr", "towns-pl", "surnames-us-census",
                                  "comic-characters-multiword", "pokemon-ja", "japanese-names-kana"])
def test_real_lists_of_every_size_and_script_are_accepted(client: TestClient, name: str) -> None:
    content = (Path(__file__).resolve().parents[1] / "data" / "lists" / f"{name}.txt").read_bytes()
    r = upload(client, content, name=name)
    assert r.status_code == 202, r.text


def test_a_version_recording_odd_members_is_listed_and_served_as_one_network(client: TestClient,
                                                                            tmp_path: Path) -> None:
    version = tmp_path / "store" / "odd" / "versions" / "1"
    shutil.copytree(ROOT / "model_store" / "dinos", version)
    meta = json.loads((version / "model.json").read_text())
    meta["training"]["options"]["members"] = "x"
    (version / "model.json").write_text(json.dumps(meta))
    (tmp_path / "store" / "odd" / "ACTIVE").write_text("1")
    assert client.get("/models/odd").json()["versions"][0]["members"] == 1
    assert client.get("/names", params={"model": "odd", "seed": 1}).status_code == 200


@pytest.mark.parametrize("damage", ['[1, 2]', '{"metrics": [1]}', '{"training": "abc"}', '{"case": 5, "kind": 3}',
                                    '{"training": {"options": {"members": "x"}}}', "not json"])
def test_one_damaged_version_hides_only_itself(client: TestClient, tmp_path: Path, damage: str) -> None:
    for version, text in (("1", damage), ("2", damage)):
        (tmp_path / "store" / "broken" / "versions" / version).mkdir(parents=True)
        (tmp_path / "store" / "broken" / "versions" / version / "model.json").write_text(text)
    (tmp_path / "store" / "broken" / "ACTIVE").write_text("2")
    r = client.get("/models")
    assert r.status_code == 200 and {"dinos", "shakespeare"} <= {m["name"] for m in r.json()}
    assert next(m for m in r.json() if m["name"] == "broken")["versions"] == []
    assert client.get("/info").status_code == 200
