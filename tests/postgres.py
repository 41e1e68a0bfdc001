"""A throw-away PostgreSQL for the tests: Debian's `postgresql` package, a cluster made by `initdb`
in a temporary directory, listening only on a Unix socket there (no TCP port), removed at the end.

Root cannot run PostgreSQL: as root the cluster belongs to the `postgres` user the package creates.
Where the package is missing, the tests that need it are skipped and say how to install it.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SKIP_REASON = "PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run installs it)"


def _bin(name: str) -> str | None:
    """The newest installed major version's program (Debian keeps them off PATH), else PATH's."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[-3]))
    return found[-1] if found else shutil.which(name)


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        initdb, postgres = _bin("initdb"), _bin("postgres")
        if initdb is None or postgres is None:
            pytest.skip(SKIP_REASON)
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                shutil.chown(root, "postgres")
            except LookupError:
                pytest.skip(SKIP_REASON + ": no postgres user")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        data = root / "data"
        subprocess.run([*self.as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                        "--no-sync"], check=True, capture_output=True)
        self.log = open(root / "postgres.log", "wb")  # noqa: SIM115
        # Durability off: a test cluster is thrown away, and fsyncs would slow the suite for nothing.
        self.proc = subprocess.Popen([*self.as_user, postgres, "-D", str(data), "-k", str(root),
                                      "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
                                      "-c", "full_page_writes=off", "-c", "max_connections=200"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not (root / ".s.PGSQL.5432").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not start: " + (root / "postgres.log").read_text())
            time.sleep(0.05)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.root}"

    def new_database(self) -> str:
        """A fresh, empty database's URL (one per test: nothing leaks between tests)."""
        import psycopg

        name = f"t{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host={self.root} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        self.proc.terminate()  # the runuser parent passes it on to postgres: a fast shutdown
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="dino-pg-"))  # not under pytest's 0700 root: postgres must enter it
    try:
        cluster = Cluster(root)
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
