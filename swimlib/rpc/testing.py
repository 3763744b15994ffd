"""An in-memory :class:`~swimlib.rpc.api.AgentAPI` for tests and demos.

It records every call in :attr:`FakeAgent.calls`, answers queries from the
member list, and lets a test publish events and log lines, so the RPC server
and any RPC client (ours or ``serf``) can be exercised without a cluster;
:func:`serving` runs the server for it. Both work under any anyio backend.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Any

import anyio
from anyio.abc import SocketAttribute
from anyio.streams.memory import MemoryObjectSendStream

from swimlib.cluster.events import (
    ClusterMember,
    Event,
    MemberStatus,
    QueryEvent,
    UserEvent,
    freeze_tags,
)
from swimlib.errors import SwimError
from swimlib.rpc.api import AgentAPI, Coordinate, KeyQueryError, KeyResult, LogLine, QueryReply
from swimlib.rpc.server import serve_rpc

__all__ = ["FakeAgent", "default_coordinates", "default_members", "serving"]

_BUFFER = 512


def default_members() -> list[ClusterMember]:
    """Three members like the captured ``serf members`` listing."""
    return [
        ClusterMember("n0", "127.0.0.1", 17200, freeze_tags({"role": "balancer"})),
        ClusterMember("n1", "127.0.0.1", 17201, freeze_tags({"role": "web"})),
        ClusterMember("n2", "127.0.0.1", 17202, freeze_tags({"role": "web", "weight": "10"}),
                      status=MemberStatus.FAILED),
    ]


def default_coordinates() -> dict[str, Coordinate]:
    """Coordinates for n0 and n1 (none for the failed n2): two a live ``serf agent``
    pair reported, for which ``serf rtt n1 n0`` printed 0.569 ms."""
    return {
        "n0": Coordinate(
            (-0.0001483222547754131, -0.00013616670438531774, -8.494008620282676e-05,
             9.149470151688182e-05, 0.00012243081923853875, 2.3163038171036012e-05,
             -0.00013068454138597888, -0.00011047396268875148),
            1.203915268252068, 5.587238172812005e-05, 9.927917479301918e-05),
        "n1": Coordinate(
            (3.334020045371482e-05, 3.0607849281972846e-05, 1.9093018137069868e-05,
             -2.0566378886597863e-05, -2.75202670112189e-05, -5.206638322136698e-06,
             2.93755567066297e-05, 2.483257867496862e-05),
            1.2487819078852644, 1.422165127090048e-05, 1.0068368377208965e-05),
    }


@asynccontextmanager
async def serving(agent: AgentAPI, *, auth_key: str = "") -> AsyncIterator[int]:
    """Serve ``agent`` over RPC on a free loopback port for the block; yields the port.

    The server and its connections are cancelled when the block ends. An
    exception from the block comes out in an ``ExceptionGroup`` (the server's
    task group).
    """
    async with anyio.create_task_group() as tg:
        listeners = await tg.start(partial(serve_rpc, agent, "127.0.0.1", 0, auth_key=auth_key))
        try:
            yield listeners[0].extra(SocketAttribute.local_port)
        finally:
            tg.cancel_scope.cancel()


class FakeAgent:
    """Fixed members, scripted behaviour, every call appended to :attr:`calls`.

    ``fail[method] = "text"`` makes that method raise ``SwimError("text")``.
    Joining an address ending in ``:1`` fails (nothing listens on port 1).
    """

    def __init__(self, members: Sequence[ClusterMember] | None = None) -> None:
        self._members = list(default_members() if members is None else members)
        #: What ``get-coordinate`` answers, by node name (empty: coordinates disabled).
        self.coordinates: dict[str, Coordinate] = (
            default_coordinates() if members is None else {})
        self.name = self._members[0].name if self._members else "local"
        self.calls: list[tuple[Any, ...]] = []
        self.fail: dict[str, str] = {}
        self.shutdown_requested = False
        self.ltime = 0
        self.keyring: list[str] = ["primarykeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]
        self.log_backlog: list[LogLine] = []
        self._event_subs: set[MemoryObjectSendStream[Event]] = set()
        self._log_subs: set[MemoryObjectSendStream[LogLine]] = set()

    def _check(self, method: str) -> None:
        if method in self.fail:
            raise SwimError(self.fail[method])

    # -- snapshot -----------------------------------------------------------------

    def members(self) -> list[ClusterMember]:
        self.calls.append(("members",))
        self._check("members")
        return list(self._members)

    def stats(self) -> dict[str, dict[str, str]]:
        self.calls.append(("stats",))
        self._check("stats")
        alive = sum(m.status == MemberStatus.ALIVE for m in self._members)
        failed = sum(m.status == MemberStatus.FAILED for m in self._members)
        left = sum(m.status == MemberStatus.LEFT for m in self._members)
        own = self._members[0].tag_map if self._members else {}
        return {
            "agent": {"name": self.name},
            "runtime": {"os": "linux", "arch": "amd64", "version": "python"},
            "serf": {
                "members": str(len(self._members)),
                "failed": str(failed),
                "left": str(left),
                "alive": str(alive),
                "health_score": "0",
                "encrypted": "false",
                "coordinate_resets": "0",
            },
            "tags": own,
            "event_handlers": {},
        }

    def get_coordinate(self, node: str) -> Coordinate | None:
        self.calls.append(("get_coordinate", node))
        self._check("get_coordinate")
        return self.coordinates.get(node)

    # -- cluster actions --------------------------------------------------------------

    async def join(self, addrs: Sequence[str], replay: bool) -> int:
        self.calls.append(("join", list(addrs), replay))
        self._check("join")
        ok = [a for a in addrs if not a.endswith(":1")]
        if not ok:
            raise SwimError(
                f"{len(addrs)} error(s) occurred:\n\n"
                + "\n".join(f"* Failed to join {a}: connection refused" for a in addrs)
            )
        return len(ok)

    async def leave(self) -> None:
        self.calls.append(("leave",))
        self._check("leave")
        if self._members:
            self._members[0] = _with_status(self._members[0], MemberStatus.LEFT)

    def request_shutdown(self) -> None:
        self.calls.append(("request_shutdown",))
        self.shutdown_requested = True

    async def force_leave(self, node: str, prune: bool) -> None:
        self.calls.append(("force_leave", node, prune))
        self._check("force_leave")
        for i, m in enumerate(self._members):
            if m.name == node:
                if prune:
                    del self._members[i]
                else:
                    self._members[i] = _with_status(m, MemberStatus.LEFT)
                return

    async def user_event(self, name: str, payload: bytes, coalesce: bool) -> None:
        self.calls.append(("user_event", name, payload, coalesce))
        self._check("user_event")
        self.ltime += 1
        self.publish(UserEvent(self.ltime, name, payload, coalesce))

    async def set_tags(self, set: Mapping[str, str], delete: Sequence[str]) -> None:
        self.calls.append(("set_tags", dict(set), list(delete)))
        self._check("set_tags")
        if self._members:
            me = self._members[0]
            tags = {k: v for k, v in me.tag_map.items() if k not in delete}
            tags.update(set)
            self._members[0] = ClusterMember(
                me.name, me.addr, me.port, freeze_tags(tags), status=me.status
            )

    # -- queries ------------------------------------------------------------------------

    async def query(
        self,
        name: str,
        payload: bytes,
        *,
        filter_nodes: Sequence[str],
        filter_tags: Mapping[str, str],
        request_ack: bool,
        relay_factor: int,
        timeout: float,
    ) -> AsyncIterator[QueryReply]:
        self.calls.append(
            ("query", name, payload, list(filter_nodes), dict(filter_tags), request_ack,
             relay_factor, timeout)
        )
        self._check("query")
        targets = [
            m.name
            for m in self._members
            if m.status == MemberStatus.ALIVE and (not filter_nodes or m.name in filter_nodes)
        ]
        return self._replies(name, targets, request_ack)

    async def _replies(
        self, name: str, targets: list[str], request_ack: bool
    ) -> AsyncIterator[QueryReply]:
        for node in targets:
            if request_ack:
                yield QueryReply("ack", node)
            if not name.startswith("_serf_"):
                yield QueryReply("response", node, f"pong-from-{node}\n".encode())
            await anyio.sleep(0)

    async def respond(self, query: QueryEvent, payload: bytes) -> None:
        self.calls.append(("respond", query.id, payload))
        self._check("respond")

    # -- keyring ------------------------------------------------------------------------

    def _key_result(self, with_keys: bool = False) -> KeyResult:
        n = len(self._members)
        keys = {k: n for k in self.keyring} if with_keys else {}
        return KeyResult(keys=keys, num_nodes=n, num_resp=n)

    async def install_key(self, key: str) -> KeyResult:
        self.calls.append(("install_key", key))
        self._check("install_key")
        if key not in self.keyring:
            self.keyring.append(key)
        return self._key_result()

    async def use_key(self, key: str) -> KeyResult:
        self.calls.append(("use_key", key))
        self._check("use_key")
        if key not in self.keyring:
            n = len(self._members)
            result = KeyResult(messages={m.name: "Requested key is not in the keyring"
                                         for m in self._members},
                               num_nodes=n, num_err=n, num_resp=n)
            raise KeyQueryError(f"{n}/{n} nodes reported failure", result)
        self.keyring.remove(key)
        self.keyring.insert(0, key)
        return self._key_result()

    async def remove_key(self, key: str) -> KeyResult:
        self.calls.append(("remove_key", key))
        self._check("remove_key")
        if key in self.keyring[1:]:
            self.keyring.remove(key)
        return self._key_result()

    async def list_keys(self) -> KeyResult:
        self.calls.append(("list_keys",))
        self._check("list_keys")
        return self._key_result(with_keys=True)

    # -- subscriptions ------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        """Deliver an event to every subscriber (dropped for a full one)."""
        for ch in list(self._event_subs):
            with suppress(anyio.WouldBlock, anyio.BrokenResourceError,
                          anyio.ClosedResourceError):
                ch.send_nowait(event)

    def log(self, level: str, message: str) -> LogLine:
        """Log a line the Serf way and deliver it to monitors."""
        stamp = time.strftime("%Y/%m/%d %H:%M:%S")
        line = LogLine(level, f"    {stamp} [{level}] {message}")
        self.log_backlog.append(line)
        for ch in list(self._log_subs):
            with suppress(anyio.WouldBlock, anyio.BrokenResourceError,
                          anyio.ClosedResourceError):
                ch.send_nowait(line)
        return line

    @asynccontextmanager
    async def subscribe_events(self) -> AsyncIterator[AsyncIterator[Event]]:
        self.calls.append(("subscribe_events",))
        self._check("subscribe_events")
        send, recv = anyio.create_memory_object_stream[Event](_BUFFER)
        self._event_subs.add(send)
        try:
            async with recv:
                yield recv
        finally:
            self._event_subs.discard(send)
            send.close()

    @asynccontextmanager
    async def subscribe_logs(self) -> AsyncIterator[AsyncIterator[LogLine]]:
        self.calls.append(("subscribe_logs",))
        self._check("subscribe_logs")
        send, recv = anyio.create_memory_object_stream[LogLine](_BUFFER)
        for line in self.log_backlog[-_BUFFER:]:
            send.send_nowait(line)
        self._log_subs.add(send)
        try:
            async with recv:
                yield recv
        finally:
            self._log_subs.discard(send)
            send.close()

    @property
    def event_subscribers(self) -> int:
        return len(self._event_subs)

    @property
    def log_subscribers(self) -> int:
        return len(self._log_subs)


def _with_status(m: ClusterMember, status: MemberStatus) -> ClusterMember:
    return ClusterMember(m.name, m.addr, m.port, m.tags, status=status)
