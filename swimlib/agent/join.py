"""Joining a cluster until it works: the agent's ``--join`` and lbadapter's.

The seed may not be up yet (containers start in any order, a balancer may
boot before its backends), so a join that reaches nobody is retried with
exponential backoff, forever, until one answers or the caller is cancelled.
An unexpected error is recorded at the agent's ``join`` boundary and retried
like a refusal: one bad start must not leave a member alone for good.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio

from swimlib.errors import ConfigError, JoinError

if TYPE_CHECKING:
    from swimlib.agent.runtime import Agent

log = logging.getLogger(__name__)

#: First wait, factor, ceiling (seconds).
JOIN_BACKOFF = (1.0, 2.0, 30.0)


async def join_with_backoff(agent: Agent, addrs: Sequence[str], *, replay: bool = False,
                            backoff: tuple[float, float, float] = JOIN_BACKOFF,
                            logger: logging.Logger | None = None) -> int:
    """Join through ``addrs`` until someone answers; returns how many did."""
    out = logger or log
    delay, factor, ceiling = backoff
    while True:
        try:
            n = await agent.join(list(addrs), replay=replay)
            out.info("agent: joined: %d nodes", n)
            return n
        except (JoinError, ConfigError) as exc:
            out.warning("agent: join failed: %s; retrying in %.0fs", exc, delay)
        except Exception as exc:
            agent.faults.record("join", exc)
        await anyio.sleep(delay)
        delay = min(ceiling, delay * factor)
