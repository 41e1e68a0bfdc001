"""Service configuration from DINO_* environment variables (contract §4)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.exc import SQLAlchemyError

from app.charlm.errors import InvalidInput
from app.charlm.store import BUILTIN_DIR, ModelStore
from app.charlm.train import CHECKPOINT_EVERY
from app.locations import default_store_dir

from .database import reason, shown_url, sqlite_url
from .jobs import LEASE_SECONDS, MAX_ATTEMPTS, JobStore


class Settings(BaseSettings):
    """One settings object for the whole service; every field has a working default."""

    model_config = SettingsConfigDict(env_prefix="DINO_", extra="ignore")

    store_dir: Path = Field(default_factory=default_store_dir,
                            description="where user models, jobs and logs go (checkout: model_store/)")
    builtin_dir: Path = Field(default=BUILTIN_DIR, description="the shipped models (read-only)")
    admin_token: str | None = Field(default=None, description="bearer token for write endpoints")
    max_upload_bytes: int = Field(default=2 * 1024 * 1024, ge=1)
    max_queued_jobs: int = Field(default=4, ge=1)
    start_worker: bool = Field(default=True, description="run the training worker process")
    database_url: str | None = Field(default=None, description="job database: sqlite:///FILE or postgresql://"
                                     "USER:PASSWORD@HOST/DB (default: jobs.sqlite3 in the store)")
    job_lease_seconds: float = Field(default=LEASE_SECONDS, gt=0, description="a running job's lease; its worker "
                                     "renews it every third of this, another worker takes the job once it expires")
    job_checkpoint_seconds: float = Field(default=CHECKPOINT_EVERY, gt=0, description="seconds between a "
                                          "running job's resumable checkpoints: at most this much work is lost")
    job_max_attempts: int = Field(default=MAX_ATTEMPTS, ge=1, description="claims of a job whose worker keeps "
                                  "dying, then it fails")
    # Limits that keep one client from stalling, filling or taking over the service (README: Operations).
    max_sampling_requests: int = Field(default=8, ge=1, description="sampling requests at once; more get 429")
    request_work_seconds: float = Field(default=10.0, gt=0, description="sampling time per request, then 422")
    max_job_seconds: float = Field(default=3600.0, ge=1, description="training time per job, whatever its options")
    max_finished_jobs: int = Field(default=200, ge=1, description="finished job records kept (newest)")
    header_timeout: float = Field(default=10.0, gt=0, description="seconds to receive a request's headers")
    body_timeout: float = Field(default=30.0, gt=0, description="seconds to receive a request's body")
    max_connections: int = Field(default=1000, ge=1, description="open connections; more are closed at once")
    max_connections_per_client: int = Field(default=64, ge=1,
                                            description="open connections from one client address")
    log_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, description="size of a log file before rotation")
    log_backups: int = Field(default=3, ge=0, description="rotated log files kept")
    commit: str | None = Field(default=None, description="git commit of this build (images set it; else git)")

    @cached_property
    def store(self) -> ModelStore:
        return ModelStore(self.store_dir, self.builtin_dir)

    @property
    def jobs_url(self) -> str:
        return self.database_url or sqlite_url(self.store_dir / "jobs.sqlite3")

    @property
    def jobs_url_shown(self) -> str:
        """The job database's URL without its password (for logs and messages)."""
        return shown_url(self.jobs_url)

    def open_jobs(self) -> JobStore:
        """The job database (migrated to the latest schema)."""
        return JobStore(self.jobs_url, keep_finished=self.max_finished_jobs, lease_seconds=self.job_lease_seconds,
                        max_attempts=self.job_max_attempts)

    def as_env(self) -> dict[str, str]:
        """These settings as DINO_* variables, for a child process (the local worker) to read back."""
        values = self.model_dump(exclude_none=True, exclude={"admin_token"})  # workers need no token
        return {f"DINO_{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v) for k, v in values.items()}


def load_settings(**overrides: Any) -> Settings:
    """Settings from DINO_* (and `overrides`) with the job database reached and migrated, or
    InvalidInput naming the problem (the CLI's one-line exit 2)."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"DINO_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"invalid setting: {problems}") from None
    try:
        settings.open_jobs().close()
    except (SQLAlchemyError, ValueError) as exc:  # ValueError: a connection string psycopg cannot read
        raise InvalidInput(f"cannot use the job database {settings.jobs_url_shown}: {reason(exc)}; check "
                           "DINO_DATABASE_URL and that the database server runs") from None
    return settings
