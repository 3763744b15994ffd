"""Joining a cluster until it works: the agent's ``--join`` and lbadapter's,
and serf's ``-retry-join``.

The seed may not be up yet (containers start in any order, a balancer may
boot before its backends), so a join that reaches nobody is retried with
exponential backoff, forever, until one answers or the caller is cancelled.
An unexpected error is recorded at the agent's ``join`` boundary and retried
like a refusal: one bad start must not leave a member alone for good.

``-retry-join`` keeps serf's contract instead, for unit files written for
it: a fixed interval, and with ``-retry-max N`` the agent gives up (exit 1,
no leave) after N retries, N+1 attempts in all, logging serf's lines.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio

from swimlib.errors import ConfigError, JoinError, SwimError
from swimlib.rpc.goflags import format_go_duration

if TYPE_CHECKING:
    from swimlib.agent.rejoin import Rejoiner
    from swimlib.agent.runtime import Agent

log = logging.getLogger(__name__)

#: First wait, factor, ceiling (seconds).
JOIN_BACKOFF = (1.0, 2.0, 30.0)
#: keep_rejoining looks at the member list at most this often (seconds).
OBSERVE_COALESCE = 0.5


async def _join_once(agent: Agent, addrs: Sequence[str], replay: bool) -> int | Exception:
    """One join: how many answered, or why not. A refusal (JoinError, ConfigError)
    is expected; anything else is also recorded at the agent's ``join`` boundary."""
    try:
        return await agent.join(list(addrs), replay=replay)
    except (JoinError, ConfigError) as exc:
        return exc
    except Exception as exc:
        agent.faults.record("join", exc)
        return exc


async def join_with_backoff(agent: Agent, addrs: Sequence[str], *, replay: bool = False,
                            backoff: tuple[float, float, float] = JOIN_BACKOFF,
                            logger: logging.Logger | None = None) -> int:
    """Join through ``addrs`` until someone answers; returns how many did."""
    out = logger or log
    delay, factor, ceiling = backoff
    while True:
        result = await _join_once(agent, addrs, replay)
        if not isinstance(result, Exception):
            out.info("agent: joined: %d nodes", result)
            return result
        if isinstance(result, JoinError | ConfigError):
            out.warning("agent: join failed: %s; retrying in %.0fs", result, delay)
        await anyio.sleep(delay)
        delay = min(ceiling, delay * factor)


class RetryJoinExhausted(SwimError):
    """``-retry-max`` attempts of ``-retry-join`` all failed: the agent exits."""


async def retry_join(agent: Agent, addrs: Sequence[str], *, interval: float, max_retries: int,
                     replay: bool = False, logger: logging.Logger | None = None) -> int:
    """serf's ``retryJoin``: returns how many answered, or raises
    :class:`RetryJoinExhausted` after ``max_retries`` retries (0: never)."""
    out = logger or log
    attempt = 0
    while True:
        out.info("agent: Joining cluster...(replay: %s)", str(replay).lower())
        result = await _join_once(agent, addrs, replay)
        if not isinstance(result, Exception):
            out.info("agent: Join completed. Synced with %d initial agents", result)
            return result
        attempt += 1
        if max_retries > 0 and attempt > max_retries:
            out.error("agent: maximum retry join attempts made, exiting")
            raise RetryJoinExhausted("maximum retry join attempts made")
        out.warning("agent: Join failed: %s, retrying in %s", result,
                    format_go_duration(interval))
        await anyio.sleep(interval)


async def keep_rejoining(agent: Agent, rejoiner: Rejoiner, *, replay: bool = False,
                         logger: logging.Logger | None = None) -> None:
    """Never strand (:mod:`swimlib.agent.rejoin`): rejoin gaps until cancelled."""
    out = logger or log
    while not agent.has_left:
        changed = agent.members_changed
        now = anyio.current_time()
        rejoiner.observe(agent.members(), now)
        targets = rejoiner.targets(now)
        if targets:
            result = await _join_once(agent, targets, replay)
            if isinstance(result, Exception):
                out.debug("agent: rejoin of %s failed: %s", ", ".join(targets), result)
            else:
                out.info("agent: rejoined through %d of %s", result, ", ".join(targets))
            continue
        deadline = rejoiner.next_deadline()
        with anyio.CancelScope(deadline=math.inf if deadline is None else deadline):
            await changed.wait()
            # A burst of member events (a join storm: one per member) is looked at
            # once: each look copies the whole member list.
            await anyio.sleep(OBSERVE_COALESCE)
