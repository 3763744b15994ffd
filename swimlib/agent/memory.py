"""Handing freed start-up memory back to the OS.

Importing the event loop (trio or asyncio, through anyio) and swimlib and
building their classes allocates and frees megabytes of short-lived objects;
glibc keeps the freed pages of its heap mapped, so an idle agent would carry
about a megabyte of garbage for as long as it runs. One ``malloc_trim`` after
start-up returns it. Elsewhere (not glibc, no ctypes) this does nothing.

What survives start-up (modules, classes, tables: a hundred thousand
objects) lives as long as the agent, so it is then frozen out of the
cyclic garbage collector (:func:`gc.freeze`): every later full collection
would walk it again for nothing, and an idle agent's CPU is mostly such
periodic work.

The collector is off while the agent starts (``swimlib.cli``) and comes back
through :func:`resume_collector`, which freezes first: enabling it over a
hundred thousand young objects would make the first allocation run a full
collection (about 5 ms) before the agent answered anything. The few cycles
of start-up garbage frozen with them are collected at the settle point.
"""

from __future__ import annotations

import gc
import sys

import anyio

#: Long enough for the first join and push-pull to have come and gone.
SETTLE_SECONDS = 5.0


def resume_collector() -> None:
    """Turn the cyclic collector back on without a full collection now."""
    gc.freeze()
    gc.enable()


def release_free_heap() -> bool:
    """Collect garbage (start-up's too), freeze the survivors, ask glibc to
    unmap free heap pages; True if it could."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes  # trio loads it anyway; under asyncio it costs ~0.25 MB once

        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, ImportError):
        return False
    trim(0)
    return True


async def release_after_startup(delay: float = SETTLE_SECONDS) -> None:
    await anyio.sleep(delay)
    release_free_heap()
