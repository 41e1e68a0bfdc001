"""Beyond one machine, as plain processes: standalone workers and API replicas sharing one job
database (a throw-away PostgreSQL, and the SQLite default where one machine is enough) and one
store directory, with nginx in front as the compose file's load balancer.

Jobs are tiny and leases short (2 s, checkpoints every second) to keep the suite fast; the
defaults (15 s, 30 s) only change how long each wait is.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from _common import nginx_in_front
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from app.api.database import make_engine, shown_url, sqlite_url
from app.api.jobs import JobStore, gave_up
from app.api.worker import Worker
from app.charlm import resume as resume_file
from app.charlm.checkpoint import TrainedModel, load, save
from app.charlm.errors import InvalidInput
from app.charlm.store import ModelStore

from .conftest import DINOS, ROOT
from .postgres import Cluster, postgres  # noqa: F401  (the fixture, requested by name)
from .test_api import NAMES_FILE
from .test_service_process import Server, wait_for

FAST = {"DINO_JOB_LEASE_SECONDS": "2", "DINO_JOB_CHECKPOINT_SECONDS": "1", "OPENBLAS_NUM_THREADS": "1"}
TINY = {"epochs": 1, "hidden": 8, "layers": 1}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "store" / "jobs.sqlite3")
    cluster: Cluster = request.getfixturevalue("postgres")
    return cluster.new_database()


def test_leases_decide_who_runs_a_job(database_url: str) -> None:
    jobs = JobStore(database_url, lease_seconds=3600, max_attempts=2)
    job = jobs.create("m", TINY, NAMES_FILE, max_queued=4)
    assert job is not None
    claimed = jobs.claim_next("a/1")
    assert claimed is not None and claimed[0]["attempts"] == 1 and claimed[1] == NAMES_FILE
    assert jobs.claim_next("b/2") is None  # held: nobody else takes it
    assert jobs.renew(job["id"], "b/2") is None and jobs.renew(job["id"], "a/1") is False
    jobs.request_cancel(job["id"])
    assert jobs.renew(job["id"], "a/1") is True  # the owner learns of the cancel when it renews
    jobs.lease_seconds = 0.0  # the next renewal ends the lease at once: as if "a" had stopped renewing
    jobs.renew(job["id"], "a/1")
    assert jobs.claim_next("b/2") is None  # expired but cancelled: it ends instead of running again
    assert jobs.get(job["id"])["status"] == "cancelled"  # type: ignore[index]

    job = jobs.create("m", TINY, NAMES_FILE, max_queued=4)
    assert job is not None and jobs.claim_next("a/1") is not None  # lease 0: expired as soon as taken
    second = jobs.claim_next("b/2")
    assert second is not None and second[0]["attempts"] == 2
    assert not jobs.finish(job["id"], "a/1", "succeeded", version="1")  # "a" lost it: its result is refused
    assert jobs.get(job["id"])["status"] == "running"  # type: ignore[index]
    assert jobs.claim_next("c/3") is None  # two attempts, both expired: it fails saying why
    failed = jobs.get(job["id"])
    assert failed is not None and failed["status"] == "failed" and failed["error"] == gave_up(2)
    assert "2 times" in failed["error"]


def test_an_idle_worker_removes_checkpoints_of_ended_jobs(tmp_path: Path) -> None:
    jobs = JobStore(tmp_path / "jobs.sqlite3")
    worker = Worker(ModelStore(tmp_path / "store"), jobs)
    queued, ended = (jobs.create(f"m{i}", TINY, NAMES_FILE, max_queued=4) for i in range(2))
    assert queued is not None and ended is not None
    jobs.request_cancel(ended["id"])
    for job_id in (queued["id"], ended["id"], "0123456789abcdef"):  # the last: a job no longer recorded
        (worker.job_dir(job_id)).mkdir(parents=True)
    assert worker.sweep_checkpoints() == 2
    assert [d.name for d in (tmp_path / "store" / ".jobs").iterdir()] == [queued["id"]]


def test_a_jobs_file_of_the_previous_release_keeps_working(tmp_path: Path) -> None:
    """tests/data/jobs_v1.sqlite3 was written by the previous JobStore (PRAGMA user_version 1): one job
    left running by a service that died, one succeeded. The running one is resumed, not failed."""
    path = tmp_path / "jobs.sqlite3"
    shutil.copy(ROOT / "tests" / "data" / "jobs_v1.sqlite3", path)
    jobs = JobStore(path)
    by_model = {j["model"]: j for j in jobs.recent()}
    assert by_model["done"]["status"] == "succeeded" and by_model["done"]["version"] == "1"
    claimed = jobs.claim_next("w/1")
    assert claimed is not None and claimed[0]["model"] == "left-running" and claimed[1] == "Aurora\nBorealis\n"
    assert claimed[0]["attempts"] == 2  # its first run (in the earlier release) counts


def test_two_writers_of_one_model_get_two_versions(tiny_names_model: TrainedModel, tmp_path: Path) -> None:
    """Workers on two hosts finishing jobs of one model together: the first reserved "1" (an empty
    directory, invisible until its model is in place), so the second gets "2", and neither is lost."""
    store = ModelStore(tmp_path)
    reserved = tmp_path / "pets" / "versions" / "1"
    reserved.mkdir(parents=True)
    assert store.add_version("pets", tiny_names_model) == "2"
    assert store.versions("pets") == ["2"]
    save(tiny_names_model, reserved)  # the first writer finishes
    assert store.versions("pets") == ["1", "2"] and store.active_version("pets") == "2"
    assert load(store.model_dir("pets", "1")).params.keys() == tiny_names_model.params.keys()


class WorkerProcess:
    """`python -m app worker` on the shared store and database; its log is its stderr."""

    def __init__(self, store: Path, database_url: str) -> None:
        env = {**os.environ, **FAST, "DINO_STORE_DIR": str(store), "DINO_DATABASE_URL": database_url}
        self.log_path = store.parent / f"worker-{len(list(store.parent.glob('worker-*.log')))}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "app", "worker"], cwd=ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.log.close()


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.stop()


def test_three_workers_run_each_of_twelve_jobs_exactly_once(database_url: str, tmp_path: Path,
                                                            workers: list[WorkerProcess]) -> None:
    store = tmp_path / "store"
    jobs = JobStore(database_url)
    names = {}
    for i in range(12):
        job = jobs.create(f"m{i}", {**TINY, "seed": i}, NAMES_FILE, max_queued=12)
        assert job is not None
        names[job["id"]] = f"m{i}"
    workers.extend(WorkerProcess(store, database_url) for _ in range(3))
    wait_for(lambda: jobs.counts()["succeeded"] == 12, 180, "all twelve jobs to succeed")
    assert jobs.counts() == {"queued": 0, "running": 0, "succeeded": 12, "failed": 0, "cancelled": 0}
    logs = "".join(w.text() for w in workers)
    for job in jobs.recent():
        # One claim, one training run and one model version per job: a second run of any job would
        # have added version 2 of its model (versions are reserved, never overwritten).
        assert job["attempts"] == 1 and job["version"] == "1", job
        assert logs.count(f"job {job['id']}: training model") == 1
        assert ModelStore(store).versions(names[job["id"]]) == ["1"]


def test_a_killed_workers_job_is_resumed_by_another_after_its_lease(database_url: str, tmp_path: Path,
                                                                    workers: list[WorkerProcess]) -> None:
    store = tmp_path / "store"
    jobs = JobStore(database_url)
    options = {"epochs": 300, "hidden": 32, "layers": 1, "seed": 1, "time_budget": 8}
    job = jobs.create("long", options, DINOS.read_text(), max_queued=4)
    assert job is not None
    first = WorkerProcess(store, database_url)
    workers.append(first)
    job_dir = store / ".jobs" / job["id"]

    def trained_and_checkpointed() -> bool:
        latest = jobs.get(job["id"])
        return latest is not None and latest["epochs_done"] >= 1 and resume_file.exists(job_dir)

    wait_for(trained_and_checkpointed, 120, "an epoch and a checkpoint")
    workers.append(WorkerProcess(store, database_url))  # the second worker finds the job taken
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    wait_for(lambda: jobs.get(job["id"])["status"] in ("succeeded", "failed"), 120, "the job to end")  # type: ignore[index]
    done = jobs.get(job["id"])
    assert done is not None and done["status"] == "succeeded" and done["attempts"] == 2, done
    assert "resuming from its checkpoint" in workers[1].text()
    epochs = [h["epoch"] for h in done["history"]]
    assert epochs == list(range(1, len(epochs) + 1))  # the loss chart goes on from the first worker's epochs
    assert ModelStore(store).versions("long") == ["1"] and not job_dir.exists()
    assert jobs.counts()["running"] == 0


def test_api_replicas_behind_nginx(request: pytest.FixtureRequest, tmp_path: Path,
                                   workers: list[WorkerProcess]) -> None:
    """Two `serve --no-worker` replicas and a worker on PostgreSQL, nginx in front: every replica
    sees a new version at once, a request through the proxy is never loopback, a cancel reaches
    the worker through any replica, and a replica killed with SIGKILL fails no request at the
    other (nor through the proxy)."""
    cluster: Cluster = request.getfixturevalue("postgres")
    url = cluster.new_database()
    store = tmp_path / "store"
    env = {**FAST, "DINO_DATABASE_URL": url}
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").is_file():
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light)")
    replicas = [Server(store, env=env, args=("--no-worker",)) for _ in range(2)]
    try:
        workers.append(WorkerProcess(store, url))
        with nginx_in_front([f"127.0.0.1:{r.port}" for r in replicas], tmp_path) as proxy_url:
            _replicas_behind_proxy(replicas, httpx.Client(base_url=proxy_url, timeout=30))
    finally:
        for replica in replicas:
            replica.stop()


def _replicas_behind_proxy(replicas: list[Server], proxy: httpx.Client) -> None:
    r = proxy.post("/train", files={"file": ("n.txt", NAMES_FILE.encode())}, data={"name": "via-proxy"})
    assert r.status_code == 403 and "direct loopback clients" in r.json()["detail"]
    for version in ("1", "2"):  # uploaded to one replica, trained by the worker, served by both
        job_id = replicas[0].upload(NAMES_FILE, "shared", epochs="1", hidden="8")
        wait_for(lambda j=job_id: replicas[1].job(j)["status"] == "succeeded", 120, "the job")  # type: ignore[misc]
        for replica in replicas:
            got = replica.client.get("/names", params={"model": "shared", "count": 2})
            assert got.status_code == 200 and got.json()["version"] == version
    assert proxy.get("/models/shared").json()["active_version"] == "2"
    # A cancel sent to the other replica stops the job on the standalone worker that runs it.
    long_job = replicas[0].upload(DINOS.read_text(), "long", epochs="300", hidden="32")
    wait_for(lambda: replicas[1].job(long_job)["status"] == "running", 60, "the long job to start")
    assert replicas[1].client.post(f"/jobs/{long_job}/cancel").json()["status"] == "cancelled"

    statuses: dict[str, list[int]] = {"replica": [], "proxy": []}
    stop = threading.Event()

    def load(name: str, client: httpx.Client) -> None:
        while not stop.is_set():
            statuses[name].append(client.get("/names", params={"count": 7}).status_code)

    threads = [threading.Thread(target=load, args=("replica", replicas[1].client)),
               threading.Thread(target=load, args=("proxy", proxy))]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(statuses["proxy"]) >= 20, 60, "requests through the proxy")
        replicas[0].proc.send_signal(signal.SIGKILL)
        replicas[0].proc.wait()
        count = len(statuses["proxy"])
        wait_for(lambda: len(statuses["proxy"]) >= count + 40, 60, "requests after the kill")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert set(statuses["replica"]) == {200} and set(statuses["proxy"]) == {200}, statuses


def test_compose_scale_profile(tmp_path: Path) -> None:
    """The compose file's scale profile as `docker-compose config` reads it (no image is pulled)."""
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose)")
    env = {k: v for k, v in os.environ.items() if k != "DINO_ADMIN_TOKEN"}
    cmd = [compose, "-f", str(ROOT / "docker-compose.yml"), "--profile", "scale", "config"]
    refused = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert refused.returncode != 0 and "DINO_ADMIN_TOKEN" in refused.stderr
    config = yaml.safe_load(subprocess.run(cmd, env={**env, "DINO_ADMIN_TOKEN": "t0ken"}, capture_output=True,
                                           text=True, check=True, cwd=tmp_path).stdout)
    services = config["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["lb"]["image"].startswith("nginx:")
    for api in ("api1", "api2"):
        assert services[api]["command"][-1] == "--no-worker"
    for worker in ("worker1", "worker2"):
        assert services[worker]["command"] == ["dinosaurus", "worker"]
    shared = {s: [v.split(":")[0] for v in services[s]["volumes"]] for s in ("api1", "api2", "worker1", "worker2")}
    assert all(v == ["dino-shared"] for v in shared.values()), shared
    urls = {services[s]["environment"]["DINO_DATABASE_URL"] for s in shared}
    assert len(urls) == 1 and urls.pop().startswith("postgresql://")


def test_roles_refuse_an_unusable_database_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from app.cli import main

    monkeypatch.setenv("DINO_STORE_DIR", str(tmp_path))
    monkeypatch.setenv("DINO_DATABASE_URL", "mysql://db/jobs")
    for command in (["worker"], ["serve", "--no-worker", "--port", "0"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "DINO_DATABASE_URL 'mysql://db/jobs': unsupported database" in err


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql://dino:hunter2@db:5432/jobs", "postgresql://dino:***@db:5432/jobs"),
    ("postgresql://dino:p@ss/w:rd#1@db/jobs", "postgresql://dino:***@db/jobs"),  # an unencoded @ in it
    ("postgresql:///jobs?host=/run/pg&password=hunter2&sslmode=off", "postgresql:///jobs?host=/run/pg&password=***&sslmode=off"),
    ("sqlite:////srv/jobs.sqlite3", "sqlite:////srv/jobs.sqlite3"),
])
def test_database_urls_are_shown_without_their_password(url: str, expected: str) -> None:
    assert shown_url(url) == expected


@pytest.mark.parametrize(("url", "problem"), [
    ("postgresql://dino:hunter2@db:notaport/jobs", "is malformed"),
    ("sqlite:///relative/jobs.sqlite3", "is relative"),
    ("sqlite:////nonexistent-dir-of-dinosaurus/jobs.sqlite3", "does not exist"),
    ("mysql://dino:hunter2@db/jobs", "unsupported database"),
])
def test_unusable_database_urls_are_refused_before_use(url: str, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem) as caught:
        make_engine(url)
    assert "hunter2" not in str(caught.value)


def test_a_lost_database_gives_503_and_an_unready_replica(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL away (simulated: every query fails as psycopg's would): the replica says so, a load
    balancer stops sending it traffic (readyz), and clients are told to retry, not given a 500."""
    def away(*args: object, **kwargs: object) -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    jobs = client.app.state.services.jobs  # type: ignore[attr-defined]
    monkeypatch.setattr(jobs, "recent", away)
    monkeypatch.setattr(jobs, "ping", away)
    answer = client.get("/jobs")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert "job database is unavailable" in answer.json()["detail"]
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "job database unavailable"
    monkeypatch.undo()
    assert client.get("/jobs").status_code == 200 and client.get("/readyz").status_code == 200
