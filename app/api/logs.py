"""Bounded, one-line-per-record logs: rotating files and escaped untrusted text."""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def printable(text: str, limit: int = 200) -> str:
    """`text` from a client (path, name, header) made safe for a log line.

    Control characters (newlines included) and non-ASCII become backslash escapes, so no one can
    forge a line or hide text; anything beyond `limit` characters is cut with a marker.
    """
    escaped = text[:limit].encode("ascii", "backslashreplace").decode("ascii")
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in escaped) + (
        "...[cut]" if len(text) > limit else "")


def configure(path: Path, max_bytes: int, backups: int, console: bool) -> None:
    """Send the root logger to `path`, rotated at `max_bytes` with `backups` old files (and to stderr)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups,
                                                           encoding="utf-8")]
    if console:
        handlers.append(logging.StreamHandler())
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, handlers=handlers, force=True)
