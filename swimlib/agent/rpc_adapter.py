"""The running agent as the RPC server sees it (:class:`swimlib.rpc.api.AgentAPI`).

Translates RPC calls into :class:`~swimlib.agent.runtime.Agent` calls (the
keyring queries included: the agent runs them and keeps the keyring file in
step), and streams log lines to ``monitor`` clients from a bounded backlog.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from swimlib.agent.runtime import Agent
from swimlib.cluster.events import ClusterMember, Event, QueryEvent
from swimlib.rpc import api
from swimlib.rpc.server import serve_rpc
from swimlib.wire import serf as sw

log = logging.getLogger("swimlib")

#: Lines and events kept for slow subscribers (Serf: 512).
_BUFFER = 512
_LEVEL_NAMES = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARN", "ERROR": "ERR",
                "CRITICAL": "ERR"}


class LogFanout(logging.Handler):
    """Copies formatted log records to ``monitor`` subscribers, with a backlog."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(formatter)
        self.backlog: deque[api.LogLine] = deque(maxlen=_BUFFER)
        self.subscribers: set[MemoryObjectSendStream[api.LogLine]] = set()

    def emit(self, record: logging.LogRecord) -> None:
        line = api.LogLine(_LEVEL_NAMES.get(record.levelname, "INFO"), self.format(record))
        self.backlog.append(line)
        for channel in list(self.subscribers):
            with suppress(anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                channel.send_nowait(line)


class AgentRPC:
    """Implements :class:`~swimlib.rpc.api.AgentAPI` for one :class:`Agent`."""

    def __init__(self, agent: Agent, logs: LogFanout) -> None:
        self.agent = agent
        self.logs = logs
        #: Set when a client asked the agent to leave and shut down.
        self.shutdown_requested = anyio.Event()

    def members(self) -> Sequence[ClusterMember]:
        return self.agent.members()

    async def join(self, addrs: Sequence[str], replay: bool) -> int:
        return await self.agent.join(addrs, replay=replay)

    async def leave(self) -> None:
        await self.agent.leave()

    def request_shutdown(self) -> None:
        self.shutdown_requested.set()

    async def force_leave(self, node: str, prune: bool) -> None:
        await self.agent.force_leave(node, prune)

    async def user_event(self, name: str, payload: bytes, coalesce: bool) -> None:
        await self.agent.user_event(name, payload, coalesce)

    async def set_tags(self, set: Mapping[str, str], delete: Sequence[str]) -> None:
        await self.agent.set_tags(set, delete)

    async def query(self, name: str, payload: bytes, *, filter_nodes: Sequence[str],
                    filter_tags: Mapping[str, str], request_ack: bool, relay_factor: int,
                    timeout: float) -> AsyncIterator[api.QueryReply]:
        handle = await self.agent.query(name, payload, filter_nodes=filter_nodes,
                                        filter_tags=filter_tags, request_ack=request_ack,
                                        relay_factor=relay_factor, timeout=timeout)

        async def replies() -> AsyncIterator[api.QueryReply]:
            async for reply in handle:
                yield reply

        return replies()

    async def respond(self, query: QueryEvent, payload: bytes) -> None:
        await self.agent.respond(query.id, payload)

    def stats(self) -> Mapping[str, Mapping[str, str]]:
        return self.agent.stats()

    def get_coordinate(self, node: str) -> api.Coordinate | None:
        return self.agent.coordinate(node)

    # ------------------------------------------------------------------ keys

    async def install_key(self, key: str) -> api.KeyResult:
        return await self.agent.install_key(key)

    async def use_key(self, key: str) -> api.KeyResult:
        return await self.agent.use_key(key)

    async def remove_key(self, key: str) -> api.KeyResult:
        return await self.agent.remove_key(key)

    async def list_keys(self) -> api.KeyResult:
        return await self.agent.list_keys()

    # ------------------------------------------------------------------ subscriptions

    @asynccontextmanager
    async def subscribe_events(self) -> AsyncIterator[AsyncIterator[Event]]:
        receive = self.agent.events(_BUFFER)
        async with receive:
            yield _without_internal_queries(receive)

    @asynccontextmanager
    async def subscribe_logs(self) -> AsyncIterator[AsyncIterator[api.LogLine]]:
        send, receive = anyio.create_memory_object_stream[api.LogLine](_BUFFER)
        for line in list(self.logs.backlog):
            send.send_nowait(line)
        self.logs.subscribers.add(send)
        try:
            async with receive:
                yield receive
        finally:
            self.logs.subscribers.discard(send)
            send.close()


async def _without_internal_queries(
        events: MemoryObjectReceiveStream[Event]) -> AsyncIterator[Event]:
    async for event in events:
        if isinstance(event, QueryEvent) and event.name.startswith(sw.INTERNAL_QUERY_PREFIX):
            continue
        yield event


async def start_rpc_server(task_group: TaskGroup, agent: Agent, addr: tuple[str, int],
                           auth_key: str) -> AgentRPC:
    """Serve Serf's RPC protocol for ``agent`` on ``addr``; returns the adapter."""
    root = logging.getLogger("swimlib")
    formatter = root.handlers[0].formatter if root.handlers else None
    fanout = LogFanout(formatter or logging.Formatter("%(message)s"))
    root.addHandler(fanout)
    adapter = AgentRPC(agent, fanout)
    await task_group.start(lambda task_status: serve_rpc(
        adapter, addr[0], addr[1], auth_key=auth_key, faults=agent.faults,
        counters=agent.counters, task_status=task_status))
    return adapter
