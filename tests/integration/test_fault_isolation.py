"""One failure costs one input: every boundary of the agent, with a failure injected.

Each test makes one place raise (a bug, an input nobody foresaw) and shows
that the agent counts it under that place, keeps running, and that its
cluster still converges and still carries a user event. Agents run in one
process on real loopback sockets, under asyncio and under trio.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest

import swimlib
from swimlib import Config, MemberStatus, open_agent
from swimlib.agent import command
from swimlib.agent.handlers import HandlerRunner, parse_handler_specs
from swimlib.agent.rpc_adapter import start_rpc_server
from swimlib.cluster.events import Event, UserEvent
from swimlib.rpc import server as rpc_server
from swimlib.rpc.client import RPCClient
from swimlib.testing import free_port
from tests.backends import both_backends  # noqa: F401

LOCAL = Config.local()


class Injected(RuntimeError):
    """The failure these tests inject."""


class Failing:
    """``real``, except that its first ``times`` calls raise :class:`Injected`.

    ``raised`` is set at the first failure, ``exhausted`` at the last: a test
    waits on them instead of polling. The agent's boundary counts a failure
    before anything else runs (it catches it in the same step), so once an
    event is set the count is there.
    """

    def __init__(self, real: Callable[..., Any], times: int) -> None:
        self.real = real
        self.left = times
        self.raised = anyio.Event()
        self.exhausted = anyio.Event()

    def _fail_now(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        self.raised.set()
        if self.left == 0:
            self.exhausted.set()
        return True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._fail_now():
            raise Injected("injected failure")
        return self.real(*args, **kwargs)

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        """Set on a class, it binds like the method it replaces."""
        return self if instance is None else functools.partial(self, instance)


class FailingAsync(Failing):
    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._fail_now():
            raise Injected("injected failure")
        return await self.real(*args, **kwargs)


@asynccontextmanager
async def cluster(n: int = 3) -> AsyncIterator[list[swimlib.Agent]]:
    async with AsyncExitStack() as stack:
        agents = [await stack.enter_async_context(
            open_agent(f"a{i}", bind=("127.0.0.1", free_port()), config=LOCAL))
            for i in range(n)]
        seed = [f"127.0.0.1:{agents[0].address[1]}"]
        for agent in agents[1:]:
            await agent.join(seed)
        await converged(agents)
        yield agents


async def converged(agents: list[swimlib.Agent], timeout: float = 15.0) -> None:
    with anyio.fail_after(timeout):
        for agent in agents:
            for other in agents:
                await agent.wait_member(other.name)


async def event_reaches_everyone(agents: list[swimlib.Agent], name: str) -> None:
    channels = [a.events() for a in agents]
    await agents[-1].user_event(name, b"")
    with anyio.fail_after(10):
        for channel in channels:
            async for event in channel:
                if isinstance(event, UserEvent) and event.name == name:
                    break


def errors(agent: swimlib.Agent) -> dict[str, int]:
    return dict(agent.statistics().internal_errors)


async def healthy_after(agents: list[swimlib.Agent], place: str,
                        injected: Failing | FailingSnapshot) -> None:
    """The ``injected`` failures were counted at ``place`` (by ``agents[0]``) and the
    cluster still works."""
    with anyio.fail_after(10):
        await injected.raised.wait()
    assert errors(agents[0]).get(place)
    await converged(agents)
    await event_reaches_everyone(agents, f"after-{place}")
    assert "internal_errors" in agents[0].stats()
    assert agents[0].stats()["internal_errors"][place] == str(errors(agents[0])[place])


async def test_datagram(monkeypatch: pytest.MonkeyPatch) -> None:
    async with cluster() as agents:
        serf = agents[0].serf
        injected = Failing(serf.handle_packet, 20)
        monkeypatch.setattr(serf, "handle_packet", injected)
        with anyio.fail_after(20):
            await injected.exhausted.wait()
        assert errors(agents[0])["datagram"] == 20
        await healthy_after(agents, "datagram", injected)


async def test_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    async with cluster() as agents:
        serf = agents[0].serf
        injected = Failing(serf.tick, 5)
        monkeypatch.setattr(serf, "tick", injected)
        await healthy_after(agents, "timer", injected)


async def test_effect(monkeypatch: pytest.MonkeyPatch) -> None:
    async with cluster() as agents:
        agent = agents[0]
        shell = agent._shell
        injected = FailingAsync(shell._send_packet, 10)
        monkeypatch.setattr(shell, "_send_packet", injected)
        await healthy_after(agents, "effect", injected)


async def test_inbound_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    async with cluster() as agents:
        serf = agents[0].serf
        injected = Failing(serf.handle_stream, 1)
        monkeypatch.setattr(serf, "handle_stream", injected)
        seed = [f"127.0.0.1:{agents[0].address[1]}"]
        with pytest.raises(swimlib.JoinError):
            await agents[1].join(seed)  # its push-pull met the failure
        assert await agents[1].join(seed) == 1
        await healthy_after(agents, "stream.in", injected)


async def test_outbound_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    async with cluster() as agents:
        transport = agents[0]._shell.transport
        injected = FailingAsync(transport.connect, 1)
        monkeypatch.setattr(transport, "connect", injected)
        seed = [f"127.0.0.1:{agents[1].address[1]}"]
        with pytest.raises(swimlib.JoinError):
            await agents[0].join(seed)
        monkeypatch.undo()
        assert await agents[0].join(seed) == 1
        await healthy_after(agents, "stream.out", injected)


async def test_stream_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply the core fails on: the join fails (it cannot hang), the next works."""
    async with cluster() as agents:
        serf = agents[0].serf
        injected = Failing(serf.handle_stream_reply, 1)
        monkeypatch.setattr(serf, "handle_stream_reply", injected)
        seed = [f"127.0.0.1:{agents[1].address[1]}"]
        with pytest.raises(swimlib.JoinError, match="did not finish"):
            await agents[0].join(seed)
        assert await agents[0].join(seed) == 1
        await healthy_after(agents, "stream.reply", injected)


async def test_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ICMP "port unreachable" the core fails on (a stopped member's port is closed)."""
    async with cluster() as agents:
        injected = {}
        for agent in agents:
            serf = agent.serf
            injected[agent.name] = Failing(serf.handle_unreachable, 1_000_000)
            monkeypatch.setattr(serf, "handle_unreachable", injected[agent.name])
        async with open_agent("gone", bind=("127.0.0.1", free_port()), config=LOCAL) as gone:
            await gone.join([f"127.0.0.1:{agents[0].address[1]}"])
            await converged([*agents, gone])
        # Its sockets are closed now: probes to it come back unreachable. Without the
        # ICMP shortcut the failure is still found the memberlist way.
        with anyio.fail_after(30):
            for agent in agents:
                await agent.wait_member("gone", MemberStatus.FAILED)
        agents.sort(key=lambda a: not injected[a.name].raised.is_set())
        await healthy_after(agents, "unreachable", injected[agents[0].name])


async def test_rpc_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    async with cluster() as agents, anyio.create_task_group() as task_group:
        rpc = ("127.0.0.1", free_port())
        await start_rpc_server(task_group, agents[0], rpc, "")
        session = rpc_server._Session
        injected = FailingAsync(session._dispatch, 1)
        monkeypatch.setattr(session, "_dispatch", injected)
        address = f"{rpc[0]}:{rpc[1]}"

        def members() -> list[str]:
            with RPCClient(address, timeout=5) as client:
                return sorted(m.name for m in client.members())

        with pytest.raises(swimlib.SwimError):
            await anyio.to_thread.run_sync(members)
        assert await anyio.to_thread.run_sync(members) == ["a0", "a1", "a2"]
        await healthy_after(agents, "rpc.connection", injected)
        task_group.cancel_scope.cancel()


async def test_handler_run(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async with cluster() as agents, anyio.create_task_group() as task_group:
        out = tmp_path / "ran"
        runner = HandlerRunner(parse_handler_specs([f"user=echo $SERF_USER_EVENT >> {out}"]),
                               agents[0].local_member, faults=agents[0].faults)
        injected = FailingAsync(runner._handle, 1)
        monkeypatch.setattr(runner, "_handle", injected)
        send, receive = anyio.create_memory_object_stream[Event](16)
        task_group.start_soon(runner.run, receive)
        for name in ("first", "second"):
            await send.send(UserEvent(1, name, b""))
        with anyio.fail_after(10):
            while not (out.exists() and out.read_text() == "second\n"):
                await anyio.sleep(0.05)
        await healthy_after(agents, "handler", injected)
        await send.aclose()


class FailingSnapshot:
    """A snapshot whose writes fail (a full or read-only disk)."""

    def __init__(self) -> None:
        self.raised = anyio.Event()

    def record(self, event: Event, now: float, clock: int) -> None:
        self.raised.set()
        raise OSError(28, "No space left on device")

    def tick(self, now: float, clock: int) -> None:
        self.raised.set()
        raise OSError(28, "No space left on device")


async def test_snapshot_write_and_handlers_still_fed() -> None:
    async with cluster() as agents, anyio.create_task_group() as task_group:
        agent = agents[0]
        raw = agent.events()
        handlers_send, handlers_receive = anyio.create_memory_object_stream[Event](64)
        snapshot = FailingSnapshot()
        task_group.start_soon(command._fan_out, agent, raw, handlers_send, snapshot)
        await agents[1].user_event("through", b"", coalesce=False)
        with anyio.fail_after(10):
            async for event in handlers_receive:
                if isinstance(event, UserEvent) and event.name == "through":
                    break
        await healthy_after(agents, "snapshot", snapshot)
        task_group.cancel_scope.cancel()
