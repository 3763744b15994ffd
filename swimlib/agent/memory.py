"""Handing freed start-up memory back to the OS.

Importing trio and swimlib and building their classes allocates and frees
megabytes of short-lived objects; glibc keeps the freed pages of its heap
mapped, so an idle agent would carry about a megabyte of garbage for as long
as it runs. One ``malloc_trim`` after start-up returns it. Elsewhere (not
glibc, no ctypes) this does nothing.
"""

from __future__ import annotations

import gc
import sys

import trio

#: Long enough for the first join and push-pull to have come and gone.
SETTLE_SECONDS = 5.0


def release_free_heap() -> bool:
    """Collect garbage, then ask glibc to unmap free heap pages; True if it could."""
    gc.collect()
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes  # trio has loaded it already: no extra memory

        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, ImportError):
        return False
    trim(0)
    return True


async def release_after_startup(delay: float = SETTLE_SECONDS) -> None:
    await trio.sleep(delay)
    release_free_heap()
