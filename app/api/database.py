"""The job database: one SQLAlchemy Core engine for SQLite (the default) or PostgreSQL.

SQLAlchemy Core keeps one code path for both engines (plain SQL through `text()`, pooled
connections, the psycopg 3 driver for PostgreSQL); the few differences live here:

- SQLite: every write transaction starts with `BEGIN IMMEDIATE` (the database-wide write lock is
  taken at once, so a read-then-update such as a claim cannot interleave with another process's);
  WAL mode lets readers go on meanwhile.
- PostgreSQL: row locks instead: claims use `FOR UPDATE SKIP LOCKED`, and the few statements that
  must see a consistent queue (queueing against a limit, migrations) take a transaction-scoped
  advisory lock.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import ArgumentError

from app.charlm.errors import InvalidInput

SQLITE_BUSY_SECONDS = 10.0  # how long a writer waits for SQLite's lock before an error
QUEUE_LOCK = 0x64696E6F  # PostgreSQL advisory lock key for queue-wide decisions ("dino")


def sqlite_url(path: Path) -> str:
    """The URL of the SQLite file `path` (made absolute, its folder created: the default job file)."""
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def shown_url(url: str) -> str:
    """`url` for messages and logs: the password (`user:password@`, even one with an unencoded `@`
    in it, or `?password=`) replaced by `***`."""
    shown = re.sub(r"^([^:/]+://[^:/@]*:).*@", r"\1***@", url)
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", shown)


def reason(exc: BaseException) -> str:
    """The first line of a database error, from the driver's own exception where there is one (for
    one-line messages and logs; SQLAlchemy's text adds the statement and a link)."""
    return (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]


def make_engine(url: str) -> Engine:
    """An engine for `sqlite:////ABSOLUTE/FILE` or `postgresql://…` (InvalidInput naming the URL,
    password hidden, and what to write instead)."""
    scheme = url.split(":", 1)[0].lower()
    try:
        if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
            # psycopg 3 whatever the scheme says (SQLAlchemy's bare `postgresql://` means psycopg2).
            driver_url = "postgresql+psycopg:" + url.split(":", 1)[1]
            engine = create_engine(driver_url, pool_pre_ping=True, pool_size=5, max_overflow=20)
            engine.url.port  # noqa: B018 -- a port that is not a number fails here, not at the first query
            return engine
        if scheme == "sqlite":
            return _sqlite_engine(url)
    except (ArgumentError, ValueError) as exc:
        raise InvalidInput(f"DINO_DATABASE_URL {shown_url(url)!r} is malformed ({exc}); write it as "
                           "postgresql://USER:PASSWORD@HOST:PORT/DB, special characters percent-encoded") from None
    raise InvalidInput(f"DINO_DATABASE_URL {shown_url(url)!r}: unsupported database; use sqlite:////ABSOLUTE/FILE "
                       "or postgresql://USER:PASSWORD@HOST/DB")


def _sqlite_engine(url: str) -> Engine:
    path = url.removeprefix("sqlite:///")
    if path == url or not path or path == ":memory:":
        raise InvalidInput(f"DINO_DATABASE_URL {url!r}: a SQLite URL names a file, as sqlite:////abs/jobs.sqlite3")
    if not Path(path).is_absolute():
        raise InvalidInput(f"DINO_DATABASE_URL {url!r} is relative, so each process would use its own file; "
                           f"give an absolute path: sqlite:///{Path(path).resolve()}")
    if not Path(path).parent.is_dir():
        raise InvalidInput(f"DINO_DATABASE_URL {url!r}: the folder {Path(path).parent} does not exist; "
                           "create it or correct the path")
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False})
    _sqlite_transactions(engine)
    return engine


def _sqlite_transactions(engine: Engine) -> None:
    """SQLAlchemy's documented recipe: pysqlite's own BEGIN off, ours on (IMMEDIATE for writes)."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


@contextmanager
def write(engine: Engine, queue_lock: bool = False) -> Iterator[Connection]:
    """A write transaction (committed on exit, rolled back on error); `queue_lock` serialises it with
    every other queue-wide decision (SQLite's IMMEDIATE lock already does)."""
    with engine.connect().execution_options(write=True) as conn, conn.begin():
        if queue_lock and is_postgres(conn):
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": QUEUE_LOCK})
        yield conn


@contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        yield conn
