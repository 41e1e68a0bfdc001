"""Where this copy runs from: a checkout keeps user models in model_store/, an installed package in a
per-user data directory (never site-packages); the git commit of a checkout, for GET /info."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

import platformdirs

CHECKOUT = Path(__file__).resolve().parents[1]  # the repo in a checkout, site-packages when installed


def is_checkout() -> bool:
    """True when `app` is imported from the source tree (as such or as an editable install)."""
    return (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "model_store").is_dir()


def default_store_dir() -> Path:
    """model_store/ in a checkout; otherwise e.g. ~/.local/share/dinosaurus (platformdirs, XDG on Linux)."""
    if is_checkout():
        return CHECKOUT / "model_store"
    return Path(platformdirs.user_data_dir("dinosaurus", appauthor=False))


@cache
def checkout_commit() -> str | None:
    """The checkout's `git rev-parse HEAD`, or None (installed package, no git, not a repository)."""
    if not is_checkout() or not (CHECKOUT / ".git").exists():
        return None
    try:
        done = subprocess.run(["git", "-C", str(CHECKOUT), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = done.stdout.strip() if done.returncode == 0 else ""
    return commit or None
