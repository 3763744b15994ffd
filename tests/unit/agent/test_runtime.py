"""The agent runtime on an in-memory network under a virtual clock.

Real agents (the whole runtime: shell, timers, streams, subscribers) on a
:class:`~swimlib.transport.memory.MemoryNetwork`, under trio's MockClock with
autojump: nothing sleeps on the real clock and nothing polls, yet every
figure below is in protocol seconds.
"""

from __future__ import annotations

import functools
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import ParamSpec

import anyio
import pytest

from swimlib import Config, MemberStatus, MemoryNetwork, UserEvent, open_agent
from swimlib.agent.join import join_with_backoff
from swimlib.agent.runtime import Agent
from tests.backends import virtual_time  # noqa: F401

LOCAL = Config.local()
P = ParamSpec("P")


#: Virtual seconds any one test may take: a runaway retry loop fails instead of spinning.
VIRTUAL_LIMIT = 600.0


def within_virtual_limit(test: Callable[P, Awaitable[None]]) -> Callable[P, Awaitable[None]]:
    @functools.wraps(test)
    async def bounded(*args: P.args, **kwargs: P.kwargs) -> None:
        with anyio.fail_after(VIRTUAL_LIMIT):
            await test(*args, **kwargs)

    return bounded


def host(i: int) -> str:
    return f"10.0.0.{i + 1}"


@asynccontextmanager
async def cluster(network: MemoryNetwork, n: int, *, config: Config = LOCAL,
                  first: int = 0) -> AsyncIterator[list[Agent]]:
    """``n`` agents joined through the first one, every one seeing every other alive."""
    async with AsyncExitStack() as stack:
        agents = [await stack.enter_async_context(open_agent(
            f"n{i}", config=config, rng=random.Random(i),
            transport=network.open_transport(host(i))))
            for i in range(first, first + n)]
        for agent in agents[1:]:
            assert await agent.join([f"{host(first)}:7946"]) == 1
        with anyio.fail_after(30):
            for agent in agents:
                for other in agents:
                    await agent.wait_member(other.name)
        yield agents


@within_virtual_limit
async def test_a_cluster_converges_and_carries_a_user_event() -> None:
    network = MemoryNetwork(seed=1)
    async with cluster(network, 5) as agents:
        events = agents[4].events()
        start = anyio.current_time()
        await agents[0].user_event("deploy", b"v1")
        with anyio.fail_after(5):
            async for event in events:
                if isinstance(event, UserEvent):
                    break
        # Gossip goes out on the next gossip tick, pulled in from the probe timer's
        # wake-up: two hops of 0.1 s each, not a probe interval (1 s).
        assert anyio.current_time() - start < 0.5
        assert event.name == "deploy" and event.payload == b"v1"
    assert network.counters["delivered"] > 0


@within_virtual_limit
async def test_a_killed_agent_is_detected_within_the_suspicion_bound() -> None:
    network = MemoryNetwork(seed=2)
    async with cluster(network, 4) as agents:
        # Kill n3: its transport closes without a leave (datagrams to it now meet a
        # closed port, as on loopback after SIGKILL).
        victim_scope = anyio.CancelScope()
        async with anyio.create_task_group() as task_group:
            async def run_victim() -> None:
                with victim_scope:
                    async with open_agent("victim", config=LOCAL, rng=random.Random(9),
                                          transport=network.open_transport("10.0.1.1"),
                                          join=[f"{host(0)}:7946"]):
                        await anyio.sleep_forever()

            task_group.start_soon(run_victim)
            with anyio.fail_after(30):
                for agent in agents:
                    await agent.wait_member("victim")
            killed_at = anyio.current_time()
            victim_scope.cancel()
        with anyio.fail_after(60):
            for agent in agents:
                await agent.wait_member("victim", MemberStatus.FAILED)
        detected = anyio.current_time() - killed_at
        # Lifeguard's suspicion timeout for 5 members, local profile: about 3 x 1 s x
        # log10(5) scaled up to 6x while nobody confirms; far from minutes.
        assert 0.2 < detected < 20, detected


@within_virtual_limit
async def test_a_graceful_leave_is_seen_as_left_by_everyone() -> None:
    network = MemoryNetwork(seed=3)
    async with cluster(network, 3) as agents:
        start = anyio.current_time()
        await agents[2].leave()
        assert agents[2].has_left
        with anyio.fail_after(10):
            for agent in agents[:2]:
                await agent.wait_member("n2", MemberStatus.LEFT)
        assert anyio.current_time() - start < LOCAL.leave_propagate_delay + 5


@within_virtual_limit
async def test_a_slow_subscriber_loses_events_and_slows_nothing() -> None:
    network = MemoryNetwork(seed=4)
    async with cluster(network, 2) as agents:
        never_read = agents[0].events(buffer=1)
        reader = agents[0].events()
        for i in range(5):
            await agents[1].user_event(f"e{i}", b"", coalesce=False)
        with anyio.fail_after(5):
            names = [event.name async for event in _user_events(reader, 5)]
        assert sorted(names) == [f"e{i}" for i in range(5)]
        # The one it holds is the first; the four after it were dropped and counted.
        assert isinstance(never_read.receive_nowait(), UserEvent)
        assert agents[0].statistics().counters["events.dropped_slow_subscriber"] == 4
        async with cluster(network, 2, first=2) as more:  # the protocol goes on as ever
            assert await more[0].join([f"{host(0)}:7946"]) == 1
            with anyio.fail_after(30):
                for name in ("n2", "n3"):
                    await agents[0].wait_member(name)


async def _user_events(events: AsyncIterator[object], count: int) -> AsyncIterator[UserEvent]:
    async for event in events:
        if isinstance(event, UserEvent):
            yield event
            count -= 1
            if count == 0:
                return


@within_virtual_limit
async def test_join_with_backoff_waits_for_a_seed_that_comes_up_later() -> None:
    network = MemoryNetwork(seed=5)
    async with open_agent("early", config=LOCAL, rng=random.Random(1),
                          transport=network.open_transport(host(1))) as early, \
            anyio.create_task_group() as task_group:
        start = anyio.current_time()
        task_group.start_soon(join_with_backoff, early, [f"{host(0)}:7946"])
        await anyio.sleep(4.5)  # virtual: three refused attempts (1, 2, 3 s apart)
        assert [m.name for m in early.members()] == ["early"]
        async with open_agent("seed", config=LOCAL, rng=random.Random(0),
                              transport=network.open_transport(host(0))) as seed:
            with anyio.fail_after(30):
                await seed.wait_member("early")
            joined = anyio.current_time() - start
            assert 4.5 <= joined < 12, joined
        task_group.cancel_scope.cancel()  # its last attempt may still be in flight


@within_virtual_limit
async def test_a_partition_heals_and_the_sides_merge_again() -> None:
    network = MemoryNetwork(seed=6)
    config = LOCAL.evolve(push_pull_interval=5.0)
    async with cluster(network, 4, config=config) as agents:
        network.partition([host(0), host(1)], [host(2), host(3)])
        with anyio.fail_after(60):
            await agents[0].wait_member("n3", MemberStatus.FAILED)
            await agents[3].wait_member("n0", MemberStatus.FAILED)
        network.heal()
        with anyio.fail_after(120):  # Serf's reconnect loop brings the failed back
            for agent in agents:
                for other in agents:
                    await agent.wait_member(other.name)
    assert network.counters["partitioned"] > 0


@pytest.mark.parametrize("loss", [0.0, 0.2])
@within_virtual_limit
async def test_statistics_count_what_the_network_did(loss: float) -> None:
    network = MemoryNetwork(seed=7, loss=loss, latency=0.005)
    async with cluster(network, 3) as agents:
        await anyio.sleep(20)
        sent = sum(agent.statistics().counters["udp.sent"] for agent in agents)
        assert sent > 0
        assert network.counters["delivered"] + network.counters["lost"] <= sent
        if loss:
            assert network.counters["lost"] > 0
        for agent in agents:
            assert {m.status for m in agent.members()} == {MemberStatus.ALIVE}
            assert agent.statistics().internal_errors == {}
