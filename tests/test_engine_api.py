"""The sampling engine through HTTP and the CLI: constraints, strict parameters, known flags,
the default min_length, scores, beam, pages and the memorisation rate (shipped dinos model)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.charlm.evaluate import evaluate
from app.charlm.store import ModelStore

from .conftest import FIXTURES
from .test_api import make_client
from .test_cli import assert_clean_error, run


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with make_client(tmp_path_factory.mktemp("engine")) as c:
        yield c


@pytest.fixture(scope="module")
def training() -> set[str]:
    return set(ModelStore().load("dinos").names)


def test_constraints_hold_and_known_flags_are_true_exactly_for_training_names(client: TestClient,
                                                                              training: set[str]) -> None:
    r = client.get("/names", params={"count": 30, "seed": 3, "suffix": "raptor", "exclude": "q", "contains": "o"})
    body = r.json()
    assert r.status_code == 200, body
    assert all(n.lower().endswith("raptor") and "o" in n.lower() and "q" not in n.lower() for n in body["names"])
    assert body["known"] == [n.lower() in training for n in body["names"]]
    assert body["log_probs"] is None
    # Both kinds occur among 300 plain names (the model repeats about 1.5% of its samples).
    plain = client.get("/names", params={"count": 300, "seed": 1}).json()
    assert plain["known"] == [n.lower() in training for n in plain["names"]]
    assert any(plain["known"]) and not all(plain["known"])


@pytest.mark.parametrize("path, params", [("/names", {"suffx": "saurus", "count": 2}), ("/poem", {"lenght": 5}),
                                          ("/jobs", {"status": "failed"}), ("/models/dinos", {"version": "1"}),
                                          ("/info", {"verbose": 1})])
def test_unknown_query_parameters_are_named(client: TestClient, path: str, params: dict[str, object]) -> None:
    r = client.get(path, params=params)
    typo = next(k for k in params if k not in ("count",))
    assert r.status_code == 422 and typo in r.json()["detail"] and "unknown query parameter" in r.json()["detail"]
    blank = client.get(f"{path}?{typo}=")  # a blank value is still an unknown name
    assert blank.status_code == 422 and typo in blank.json()["detail"]


@pytest.mark.parametrize("path, query", [("/names", "count=7&count=8"), ("/poem", "seed=1&lines=2&seed=2")])
def test_a_repeated_query_parameter_is_refused(client: TestClient, path: str, query: str) -> None:
    r = client.get(f"{path}?{query}")  # which one would win is not for the server to guess
    repeated = query.split("=")[0]
    assert r.status_code == 422 and r.json()["detail"] == f"{repeated}: given 2 times; give it once"


def test_default_min_length_is_the_shortest_training_name(client: TestClient, training: set[str]) -> None:
    shortest = min(len(n) for n in training)
    names = client.get("/names", params={"count": 300, "seed": 0, "temperature": 2.0}).json()["names"]
    assert min(len(n) for n in names) >= shortest


def test_score_matches_eval_and_reports_its_reference(client: TestClient, tmp_path: Path) -> None:
    r = client.post("/score", json={"model": "dinos", "names": ["Zorbasaurus", "Tyrannosaurus", "Xqzzq"]})
    body = r.json()
    assert r.status_code == 200 and body["reference"] == "validation" and body["version"] == "builtin"
    model = ModelStore().load("dinos")
    for s in body["scores"]:
        (tmp_path / "one.txt").write_text(s["name"] + "\n")
        one = evaluate(model, (tmp_path / "one.txt").read_text())
        assert s["nll_per_char"] == one.nll_per_char  # exactly: each name is computed as a one-line file is
    pct = {s["name"]: s["percentile"] for s in body["scores"]}
    assert pct["Tyrannosaurus"] > pct["Zorbasaurus"] > pct["Xqzzq"] == 0.0
    bad = client.post("/score", json={"names": ["Tyrannosaurus", "Caf\u00e9"]})
    assert bad.status_code == 422 and "'\u00e9'" in bad.json()["detail"]
    assert "name 2 ('Caf\u00e9')" in bad.json()["detail"]  # which of the names is at fault
    tab = client.post("/score", json={"names": ["Re\tx"]}).json()["detail"]
    assert "' '" in tab and "tabs and other spaces are read as spaces" in tab  # dinos has no space
    extra = client.post("/score", json={"names": ["a"], "modle": "x"})
    assert extra.status_code == 422 and "modle" in extra.json()["detail"]
    assert client.post("/score", json={"names": []}).status_code == 422


@pytest.mark.parametrize("body, content_type, fragment", [
    (b'{"names": ["Rex"', "application/json", "not valid JSON (Expecting ',' delimiter at character 16)"),
    (b"", "application/json", "must be a JSON object"),
    (b'["Rex"]', "application/json", "must be a JSON object"),
    (b"names=Rex", "application/x-www-form-urlencoded", "sent as Content-Type: application/json"),
    (b'{"names": ["\xff\xfe"]}', "application/json", "cannot be read as JSON (is it UTF-8"),
    (b"[" * 100_000, "application/json", "cannot be read as JSON"),
    (b'{"names": ["Rex"], "names": ["Ab"]}', "application/json", "names: given 2 times; give it once"),
])
def test_a_body_that_is_no_json_object_is_named_as_such(client: TestClient, body: bytes, content_type: str,
                                                        fragment: str) -> None:
    r = client.post("/score", content=body, headers={"content-type": content_type})
    assert r.status_code == 422 and fragment in r.json()["detail"]


def test_beam_log_probs_equal_scores_and_are_descending(client: TestClient) -> None:
    body = client.get("/names", params={"mode": "beam", "count": 5, "suffix": "saurus"}).json()
    assert body["names"] and body["log_probs"] == sorted(body["log_probs"], reverse=True)
    scores = client.post("/score", json={"names": body["names"]}).json()["scores"]
    assert [s["log_prob"] for s in scores] == body["log_probs"]  # exactly: beam reports what score computes
    alone = client.post("/score", json={"names": body["names"][-1:]}).json()["scores"]
    assert alone[0]["log_prob"] == scores[-1]["log_prob"]  # whatever else is scored with it
    assert client.get("/names", params={"mode": "beam", "count": 5, "suffix": "saurus"}).json() == body


def test_beam_ranks_near_ties_at_the_cut_by_the_exact_scores(client: TestClient) -> None:
    # 81 and 82 names ending in "za" of at most 4 letters: the 81st and 82nd (Huza, Erza) lie within
    # 3e-7 nats, closer than the search's running float32 sums can tell apart
    ask = {"mode": "beam", "suffix": "za", "max_length": 4}
    k = client.get("/names", params={**ask, "count": 81}).json()
    more = client.get("/names", params={**ask, "count": 82}).json()
    assert more["names"][:81] == k["names"] and more["log_probs"][:81] == k["log_probs"]
    scores = client.post("/score", json={"names": more["names"][-2:]}).json()["scores"]
    assert scores[0]["log_prob"] >= scores[1]["log_prob"]  # the one kept at 81 is the likelier by /score


def test_pages_of_a_seed(client: TestClient) -> None:
    pages = [client.get("/names", params={"seed": 9, "count": 20, "page": p}).json()["names"] for p in (1, 2, 3)]
    assert len({n for page in pages for n in page}) == 60
    assert client.get("/names", params={"seed": 9, "count": 20, "page": 2}).json()["names"] == pages[1]
    r = client.get("/names", params={"count": 1000, "page": 6})
    assert r.status_code == 422 and "page x count" in r.json()["detail"]
    r = client.get("/names", params={"count": 20, "page": 2})  # without a seed page 2 would be any 20 names
    assert r.status_code == 422 and "page 2 needs a seed" in r.json()["detail"]


def test_strict_novelty_and_unsatisfiable_constraints(client: TestClient, training: set[str]) -> None:
    r = client.get("/names", params={"count": 20, "seed": 1, "novel": "strict"})
    assert r.status_code == 200 and not any(r.json()["known"])
    r = client.get("/names", params={"count": 5, "suffix": "saurus", "exclude": "s"})
    assert r.status_code == 422 and "exclude forbids" in r.json()["detail"]
    r = client.get("/names", params={"count": 5, "suffix": "qqqraptor"})
    assert r.status_code == 422 and "shorter suffix 'raptor'" in r.json()["detail"]  # the longest ending names have
    assert client.get("/names", params={"count": 5, "suffix": "raptor"}).status_code == 200  # the advice works
    r = client.get("/names", params={"count": 5, "suffix": "xqzj"})  # not even a "j" ends a training name
    advised = re.search(r"such as suffix '([a-z]+)'", r.json()["detail"])
    assert r.status_code == 422 and advised and "no training name has any part of suffix 'xqzj'" in r.json()["detail"]
    assert client.get("/names", params={"count": 5, "suffix": advised.group(1)}).status_code == 200
    assert any(n.endswith("n") for n in training)  # a failure with suffix "n" is not for want of such names
    r = client.get("/names", params={"count": 3, "suffix": "n", "max_length": 5, "top_k": 2, "seed": 1})
    assert r.status_code == 422 and "no training name" not in r.json()["detail"]


def test_models_report_memorisation_rate_and_members(client: TestClient) -> None:
    dinos = client.get("/models/dinos").json()
    meta = json.loads((ModelStore().model_dir("dinos") / "model.json").read_text())
    assert dinos["memorisation_rate"] == meta["memorisation_rate"] and 0 < meta["memorisation_rate"] < 1
    assert [v["members"] for v in dinos["versions"]] == [meta["training"]["options"]["members"]] == [2]
    assert client.get("/models/shakespeare").json()["versions"][0]["members"] == 1


def test_cli_sample_flags_and_score(tmp_path: Path) -> None:
    proc = run("sample", "--count", "5", "--seed", "2", "--suffix", "raptor", "--novel=strict", "--page", "2")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.split()) == 5 and all(n.endswith("raptor") for n in proc.stdout.split())
    proc = run("sample", "--mode", "beam", "--count", "3")
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert proc.returncode == 0 and len(rows) == 3
    proc = run("score", "--model", "dinos", "Tyrannosaurus", "Zorbasaurus")
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [s["name"] for s in lines] == ["Tyrannosaurus", "Zorbasaurus"] and lines[0]["reference"] == "validation"
    beam_lp = float(rows[0][1])
    first = json.loads(run("score", rows[0][0]).stdout)
    assert first["log_prob"] == pytest.approx(beam_lp, abs=1e-3)  # printed to 4 decimals
    assert_clean_error(run("score", "Caf\u00e9"), "'\u00e9'")
    assert_clean_error(run("score", "a" * 101), "names have at most 100")
    assert_clean_error(run("sample", "--count", "7", "--count=8"), "--count given more than once")
    assert_clean_error(run("sample", "--suffix", "raptor", "--exclude", "r"), "exclude forbids")


def test_cli_score_prints_names_as_typed(tmp_path: Path) -> None:
    kana = FIXTURES / "japanese-names-kana.txt"
    name = kana.read_text(encoding="utf-8").split()[0]
    trained = run("train", "--data", str(kana), "--out", str(tmp_path / "kana"), "--hidden", "8", "--layers", "1",
                  "--epochs", "1")
    assert trained.returncode == 0, trained.stderr
    proc = run("score", "--model", str(tmp_path / "kana"), name)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["name"] == name and name in proc.stdout  # not as \u escapes


def test_training_stores_reference_and_memorisation(tiny_names_model) -> None:  # type: ignore[no-untyped-def]
    ref = tiny_names_model.reference
    assert ref["set"] == "validation" and ref["names"] == tiny_names_model.meta["metrics"]["val_items"]
    rate = tiny_names_model.meta["memorisation_rate"]
    assert 0 <= rate <= 1
