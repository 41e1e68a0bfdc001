"""Giving memory back to the system after a request that took a lot of it.

glibc keeps the memory freed by a large search (mode=beam: up to about 600 MB) in the process's
heap for later use, so a burst of such requests would leave the service holding a gigabyte while
idle. `malloc_trim(0)` (glibc's malloc(3) API) returns the free pages at once: here 480 MB of
resident memory fell to 95 MB after a beam search that reached its work bound. Elsewhere (musl,
macOS) it is not there and nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def give_back() -> bool:
    """Return the heap's free pages to the system; False where the C library cannot."""
    return bool(_TRIM is not None and _TRIM(0) >= 0)
