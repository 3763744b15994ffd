"""swimlib for code that is not async: the agent on a background thread.

A Flask or Django view, a script, a test::

    with swimlib.blocking.open_agent("web-1", bind=("0.0.0.0", 7946), join=["ha"]) as agent:
        print([m.name for m in agent.members()])
        for event in agent.events(timeout=5):
            ...

The agent runs in an event loop on a thread of its own (anyio's blocking
portal, asyncio unless ``backend="trio"``); every method is a call into that
loop that waits for its answer. Leaving the ``with`` block leaves the cluster
gracefully. Should the agent's loop fail, the next call -- or the one
waiting -- raises :class:`~swimlib.errors.AgentCrashed` with the cause, so
a failure never goes unnoticed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import anyio
from anyio.abc import TaskStatus
from anyio.from_thread import BlockingPortal, start_blocking_portal
from anyio.streams.memory import MemoryObjectReceiveStream

from swimlib.agent.runtime import Agent, AgentStatistics
from swimlib.agent.runtime import open_agent as open_async_agent
from swimlib.cluster.coordinates import Coordinate
from swimlib.cluster.effects import QueryReply
from swimlib.cluster.events import ClusterMember, Event, MemberStatus
from swimlib.cluster.keys import KeyResult
from swimlib.errors import AgentCrashed
from swimlib.records import record

T = TypeVar("T")


@record
class Outcome(Generic[T]):
    """A value, or the error that came instead."""

    value: T | None = None
    error: Exception | None = None

    def unwrap(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


class BlockingAgent:
    """The synchronous face of an :class:`~swimlib.agent.runtime.Agent` (see module doc)."""

    def __init__(self, portal: BlockingPortal, agent: Agent, crashed: anyio.Event,
                 running: Future[None]) -> None:
        self._portal = portal
        self._agent = agent
        self._crashed = crashed
        self._running = running

    @property
    def name(self) -> str:
        return self._agent.name

    @property
    def address(self) -> tuple[str, int]:
        return self._agent.address

    def members(self) -> list[ClusterMember]:
        return self._call_sync(self._agent.members)

    def local_member(self) -> ClusterMember:
        return self._call_sync(self._agent.local_member)

    def statistics(self) -> AgentStatistics:
        return self._call_sync(self._agent.statistics)

    def coordinate(self, node: str | None = None) -> Coordinate | None:
        """``node``'s network coordinate as last heard (ours by default), or None."""
        return self._call_sync(self._agent.coordinate, node)

    def join(self, addrs: Sequence[str], replay: bool = False) -> int:
        return self._call(self._agent.join, addrs, replay)

    def leave(self) -> None:
        self._call(self._agent.leave)

    def user_event(self, name: str, payload: bytes = b"", coalesce: bool = True) -> None:
        self._call(self._agent.user_event, name, payload, coalesce)

    def set_tags(self, tags: Mapping[str, str] | None = None, delete: Sequence[str] = ()) -> None:
        self._call(self._agent.set_tags, tags, delete)

    def query(self, name: str, payload: bytes = b"", *, filter_nodes: Sequence[str] = (),
              filter_tags: Mapping[str, str] | None = None, request_ack: bool = False,
              relay_factor: int = 0, timeout: float = 0.0) -> list[QueryReply]:
        """Send a query and return every ack and response that came by its deadline."""
        async def collect() -> list[QueryReply]:
            handle = await self._agent.query(
                name, payload, filter_nodes=filter_nodes, filter_tags=filter_tags,
                request_ack=request_ack, relay_factor=relay_factor, timeout=timeout)
            return [reply async for reply in handle]

        return self._call(collect)

    def respond(self, query_id: int, payload: bytes) -> None:
        """Answer a query seen in :meth:`events` (its ``id``)."""
        self._call(self._agent.respond, query_id, payload)

    def force_leave(self, node: str, prune: bool = False) -> None:
        self._call(self._agent.force_leave, node, prune)

    def wait_member(self, name: str, status: MemberStatus = MemberStatus.ALIVE,
                    timeout: float | None = None) -> ClusterMember:
        """Wait until ``name`` has ``status``; TimeoutError after ``timeout`` seconds."""
        async def wait() -> ClusterMember:
            with anyio.fail_after(timeout):
                return await self._agent.wait_member(name, status)

        return self._call(wait)

    def install_key(self, key: str) -> KeyResult:
        return self._call(self._agent.install_key, key)

    def use_key(self, key: str) -> KeyResult:
        return self._call(self._agent.use_key, key)

    def remove_key(self, key: str) -> KeyResult:
        return self._call(self._agent.remove_key, key)

    def list_keys(self) -> KeyResult:
        return self._call(self._agent.list_keys)

    def events(self, timeout: float | None = None, buffer: int = 1024) -> Iterator[Event]:
        """Cluster events from now on; the iteration ends after ``timeout`` quiet seconds.

        Subscribed when called (nothing after this call is missed); ending
        the iteration unsubscribes.
        """
        receive = self._call_sync(self._agent.events, buffer)
        return self._iterate(receive, timeout)

    def _iterate(self, receive: MemoryObjectReceiveStream[Event],
                 timeout: float | None) -> Iterator[Event]:
        try:
            while True:
                try:
                    yield self._call(self._next_event, receive, timeout)
                except TimeoutError:
                    return
        finally:
            if not self._running.done():
                self._portal.call(receive.aclose)

    # ------------------------------------------------------------------ plumbing

    async def _next_event(self, receive: MemoryObjectReceiveStream[Event],
                          timeout: float | None) -> Event:
        with anyio.fail_after(timeout):
            return await receive.receive()

    def _call_sync(self, func: Callable[..., T], *args: Any) -> T:
        self._raise_if_crashed()
        return self._portal.call(func, *args)

    def _call(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``func`` in the agent's loop; a crash of the agent ends the wait."""
        self._raise_if_crashed()

        async def unless_crashed() -> T:
            outcome: list[Outcome[T]] = []
            async with anyio.create_task_group() as task_group:
                async def run() -> None:
                    try:
                        outcome.append(Outcome(await func(*args)))
                    except Exception as exc:  # raised below, outside the task group
                        outcome.append(Outcome(error=exc))
                    task_group.cancel_scope.cancel()

                async def watch() -> None:
                    await self._crashed.wait()
                    task_group.cancel_scope.cancel()

                task_group.start_soon(run)
                task_group.start_soon(watch)
            if not outcome:
                raise AgentCrashed("the agent stopped while the call waited")
            return outcome[0].unwrap()

        try:
            return self._portal.call(unless_crashed)
        except AgentCrashed:
            self._raise_if_crashed()
            raise

    def _raise_if_crashed(self) -> None:
        if self._running.done():
            exc = self._running.exception()
            if exc is not None:
                raise AgentCrashed(f"the agent failed: {exc!r}") from exc
            raise AgentCrashed("the agent is no longer running")


@contextmanager
def open_agent(name: str | None = None, *, backend: str = "asyncio",
               **options: Any) -> Iterator[BlockingAgent]:
    """Run an agent on a background thread for the ``with`` block; leave gracefully at the end.

    ``options`` are those of :func:`swimlib.open_agent` (bind, config, tags,
    join, keyring ...). Start-up errors (cannot bind, no join address
    answered) are raised here.
    """
    with start_blocking_portal(backend) as portal:
        crashed = portal.call(anyio.Event)
        stop = portal.call(anyio.Event)
        running, agent = portal.start_task(_run_agent, name, options, crashed, stop)
        blocking = BlockingAgent(portal, agent, crashed, running)
        try:
            yield blocking
        finally:
            if not running.done():
                if not agent.has_left:
                    portal.call(agent.leave)
                portal.call(stop.set)
            exc = running.exception()
        if exc is not None:
            raise AgentCrashed(f"the agent failed: {exc!r}") from exc


async def _run_agent(name: str | None, options: dict[str, Any], crashed: anyio.Event,
                     stop: anyio.Event, *, task_status: TaskStatus[Agent]) -> None:
    try:
        async with open_async_agent(name, **options) as agent:
            task_status.started(agent)
            await stop.wait()
    except BaseException:
        crashed.set()
        raise
