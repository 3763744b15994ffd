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

That settle point waits for membership to stand still. A full collection
and the trim cost an agent 10-20 ms of CPU; at a fixed 5 s after start it
landed, in every agent at once, in the join storm of a cluster started
together, when CPU decides how soon each agent is whole: 50 agents on 2
cores used 3.5-3.9 CPU-s from the storm's start to 2.5 s after it ended,
and 2.2-2.6 CPU-s once the release waited for quiet. A busy cluster that
never stands still still gets it, :data:`LATEST_SECONDS` after start.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable

import anyio

#: Long enough for the first join and push-pull to have come and gone.
SETTLE_SECONDS = 5.0
#: ... and then membership unchanged for this long (a join storm is over) ...
QUIET_SECONDS = 2.0
#: ... but never later than this after start.
LATEST_SECONDS = 60.0


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


async def release_after_startup(members_changed: Callable[[], anyio.Event], *,
                                delay: float = SETTLE_SECONDS, quiet: float = QUIET_SECONDS,
                                latest: float = LATEST_SECONDS) -> None:
    """:func:`release_free_heap` once start-up is over: ``delay`` after now and
    once no member event came for ``quiet`` seconds, at the latest ``latest``
    after now. ``members_changed()`` is an event set at the next member event
    (:attr:`swimlib.agent.runtime.Agent.members_changed`)."""
    deadline = anyio.current_time() + latest
    await anyio.sleep(delay)
    with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
        while True:
            changed = members_changed()
            with anyio.move_on_after(quiet) as still:
                await changed.wait()
            if still.cancelled_caught:
                break
    release_free_heap()
