"""Service configuration from DINO_* environment variables (contract §4)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.charlm.store import BUILTIN_DIR, ModelStore
from app.locations import default_store_dir


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
    def jobs_db(self) -> Path:
        return self.store_dir / "jobs.sqlite3"
