"""The agent: a Serf core, a shell that moves its bytes, and the public API.

:class:`Agent` is what a program embeds (``async with swimlib.open_agent(...)
as agent``). It runs on anyio, so the same code runs under ``asyncio.run``
and ``trio.run``; the synchronous face for code that is not async is
:mod:`swimlib.blocking`. The protocol lives in the sans-IO
:class:`~swimlib.cluster.serf.Serf`; :class:`~swimlib.agent.shell.CoreShell`
feeds it the network and time, and the agent turns the rest of its effects
into what a caller waits on: events for subscribers, query replies, joins
and leaves finished, the keyring file rewritten. A full subscriber drops
(and counts) events rather than slow the protocol.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from swimlib.agent.addresses import resolve_join_addresses
from swimlib.agent.shell import CoreShell
from swimlib.cluster import events as ev
from swimlib.cluster.coordinates import Coordinate
from swimlib.cluster.keys import KeyResult, key_request, tally_key_responses
from swimlib.cluster.serf import (
    Emit,
    KeyringChanged,
    LeaveFinished,
    QueryDone,
    QueryReply,
    Serf,
)
from swimlib.config import Config
from swimlib.errors import JoinError, KeyQueryError, SwimError
from swimlib.faults import FaultLog
from swimlib.membership.types import (
    Address,
    DeathDeclared,
    JoinFinished,
    Refuted,
    SuspicionRaised,
)
from swimlib.records import record
from swimlib.transport.base import Transport
from swimlib.transport.sockets import SocketTransport
from swimlib.wire import serf as sw

if TYPE_CHECKING:  # cryptography is imported only when encryption is on
    from swimlib.wire.crypto import Keyring

log = logging.getLogger("swimlib")

#: Serf's log names for member events (log-scraping tools look for these).
_LOG_LABELS = {ev.EventType.MEMBER_JOIN: "EventMemberJoin",
               ev.EventType.MEMBER_LEAVE: "EventMemberLeave",
               ev.EventType.MEMBER_FAILED: "EventMemberFailed",
               ev.EventType.MEMBER_UPDATE: "EventMemberUpdate",
               ev.EventType.MEMBER_REAP: "EventMemberReap"}
@record
class AgentStatistics:
    """A snapshot of an agent's counters (:meth:`Agent.statistics`)."""

    #: Protocol and runtime activity (``udp.sent``, ``probe.failed`` ...).
    counters: Mapping[str, int]
    #: Input refused, by reason (``msgpack``, ``serf.query_ltime_implausible`` ...).
    drops: Mapping[str, int]
    #: Failures caught at a boundary, by place (``datagram``, ``stream.in`` ...).
    internal_errors: Mapping[str, int]


class QueryHandle:
    """Replies to a query: iterate for :class:`QueryReply` values until its deadline."""

    def __init__(self, handle: int, receive: MemoryObjectReceiveStream[QueryReply]) -> None:
        self.handle = handle
        self._receive = receive

    def __aiter__(self) -> AsyncIterator[QueryReply]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[QueryReply]:
        async with self._receive:
            async for reply in self._receive:
                yield reply


class Agent:
    """A running swimlib agent. Create with :func:`open_agent`."""

    def __init__(self, serf: Serf, transport: Transport, task_group: TaskGroup,
                 keyring_file: str | None = None, tags_file: str | None = None) -> None:
        self.serf = serf
        self.config = serf.config
        #: Rewritten whenever a key query changes the keyring (as Serf does).
        self.keyring_file = keyring_file
        #: Rewritten before every change of our tags (:mod:`swimlib.agent.tags_file`).
        self.tags_file = tags_file
        #: Failures caught at the boundaries of single inputs (see :mod:`swimlib.faults`).
        self.faults = FaultLog()
        self._shell = CoreShell(serf, transport, task_group, tcp_timeout=self.config.tcp_timeout,
                                on_effect=self._on_effect, faults=self.faults)
        self._transport = transport
        #: Runtime counters (sends, stream failures, dropped events ...); the daemon adds its own.
        self.counters: Counter[str] = self._shell.counters
        self._subscribers: list[MemoryObjectSendStream[ev.Event]] = []
        self._queries: dict[int, MemoryObjectSendStream[QueryReply]] = {}
        self._joins: dict[int, tuple[anyio.Event, list[JoinFinished]]] = {}
        self._left = anyio.Event()
        #: Set and replaced whenever a member event goes out (wait_member wakes on it).
        self._members_changed = anyio.Event()

    # ------------------------------------------------------------------ identity, view

    @property
    def keyring(self) -> Keyring | None:
        """The keys the core encrypts with (None: plaintext); key queries change it."""
        return self.serf.keyring

    @property
    def name(self) -> str:
        return self.serf.name

    @property
    def address(self) -> Address:
        return (self.serf.addr, self.serf.port)

    @property
    def inbound_streams(self) -> int:
        """Inbound TCP exchanges (push-pulls, joins, pings) being served now."""
        return self._shell.inbound_streams

    @property
    def has_left(self) -> bool:
        return self._left.is_set()

    def members(self) -> list[ev.ClusterMember]:
        return self.serf.members()

    def local_member(self) -> ev.ClusterMember:
        return self.serf.local_member()

    def coordinate(self, node: str | None = None) -> Coordinate | None:
        """The Vivaldi network coordinate of ``node`` as last heard (ours by default);
        None when unknown or when coordinates are disabled. Estimate the RTT between
        two with :func:`swimlib.cluster.coordinates.distance_seconds`."""
        return self.serf.get_cached_coordinate(self.name if node is None else node)

    def member_time(self) -> int:
        """Our Lamport member clock (what the snapshot records)."""
        return self.serf.clock.time()

    def restore_clocks(self, member: int, event: int, query: int) -> None:
        """Start the clocks where a snapshot left them (before joining)."""
        self.serf.restore_clocks(member, event, query)

    def events(self, buffer: int = 1024) -> MemoryObjectReceiveStream[ev.Event]:
        """Subscribe to cluster events; close the returned stream to unsubscribe.

        A subscriber that falls ``buffer`` events behind loses the newest ones
        (counted as ``events.dropped_slow_subscriber``): the protocol never waits.
        """
        send, receive = anyio.create_memory_object_stream[ev.Event](buffer)
        self._subscribers.append(send)
        return receive

    @property
    def members_changed(self) -> anyio.Event:
        """Set at the next member event (join, leave, failure, update, reap).

        Take it *before* reading :meth:`members`, then wait on it: a change in
        between is not missed.
        """
        return self._members_changed

    async def wait_member(self, name: str,
                          status: ev.MemberStatus = ev.MemberStatus.ALIVE) -> ev.ClusterMember:
        """Wait until ``name`` is a member with ``status``; returns it.

        No timeout of its own: wrap it in ``anyio.fail_after`` (or trio's).
        """
        while True:
            changed = self._members_changed
            for member in self.serf.members():
                if member.name == name and member.status == status:
                    return member
            await changed.wait()

    # ------------------------------------------------------------------ actions

    async def join(self, addrs: Sequence[str], replay: bool = False) -> int:
        """Join through ``addrs`` (``host``, ``host:port``, ``name/host:port``).

        Returns how many addresses answered; raises :class:`JoinError` if none did.
        """
        resolved = await resolve_join_addresses(addrs, self.serf.port)
        if not resolved:
            raise JoinError(f"could not resolve any of {', '.join(addrs)}")
        join_id = self.serf.join(resolved, self._shell.now(), ignore_old=not replay)
        done = anyio.Event()
        result: list[JoinFinished] = []
        self._joins[join_id] = (done, result)
        await self._shell.drive()
        # Every join stream ends within tcp_timeout; the margin covers a reply lost
        # to a failure caught at a boundary, so a join can fail but never hang.
        with anyio.move_on_after(self.config.tcp_timeout + 5.0):
            await done.wait()
        if not result:
            self._joins.pop(join_id, None)
            raise JoinError("join did not finish")
        finished = result[0]
        if finished.contacted == 0:
            failed = ", ".join(f"{h}:{p}" for h, p in finished.failed)
            raise JoinError(f"failed to join any of: {failed}")
        return finished.contacted

    async def leave(self) -> None:
        """Leave gracefully and wait until the departure has propagated."""
        self.serf.leave(self._shell.now())
        await self._shell.drive()
        limit = 2 * self.config.broadcast_timeout + self.config.leave_propagate_delay + 1
        with anyio.move_on_after(limit):
            await self._left.wait()

    async def user_event(self, name: str, payload: bytes = b"", coalesce: bool = True) -> None:
        self.serf.user_event(name, payload, coalesce, self._shell.now())
        await self._shell.drive()

    async def query(self, name: str, payload: bytes = b"", *,
                    filter_nodes: Sequence[str] = (),
                    filter_tags: Mapping[str, str] | None = None,
                    request_ack: bool = False, relay_factor: int = 0,
                    timeout: float = 0.0) -> QueryHandle:
        """Send a query; iterate the returned handle for acks and responses."""
        send, receive = anyio.create_memory_object_stream[QueryReply](math.inf)
        handle = self.serf.query(name, payload, self._shell.now(),
                                 filter_nodes=filter_nodes, filter_tags=filter_tags,
                                 request_ack=request_ack, relay_factor=relay_factor,
                                 timeout=timeout)
        self._queries[handle] = send
        await self._shell.drive()
        return QueryHandle(handle, receive)

    async def respond(self, query_id: int, payload: bytes) -> None:
        self.serf.respond(query_id, payload, self._shell.now())
        await self._shell.drive()

    async def set_tags(self, tags: Mapping[str, str] | None = None,
                       delete: Sequence[str] = ()) -> None:
        """Merge ``tags`` into ours and drop ``delete``; announced as member-update."""
        before = self.serf.tags
        merged = dict(before)
        merged.update(tags or {})
        for key in delete:
            merged.pop(key, None)
        self._keep_tags(merged)  # first: a change the file cannot keep is not made
        try:
            self.serf.set_tags(merged, self._shell.now())
        except ValueError as exc:
            with contextlib.suppress(SwimError):
                self._keep_tags(before)
            raise SwimError(str(exc)) from None
        await self._shell.drive()

    def _keep_tags(self, tags: Mapping[str, str]) -> None:
        if self.tags_file is None:
            return
        from swimlib.agent.tags_file import write_tags_file

        try:
            write_tags_file(self.tags_file, tags)
        except OSError as exc:
            raise SwimError(f"failed to write tags file {self.tags_file}: "
                            f"{exc.strerror or exc}") from None

    async def force_leave(self, node: str, prune: bool = False) -> None:
        self.serf.force_leave(node, prune, self._shell.now())
        await self._shell.drive()

    # ------------------------------------------------------------------ keys

    async def install_key(self, key: str) -> KeyResult:
        """Add a base64 key on every member (Serf's ``keys -install``)."""
        return await self._key_query("install-key", key)

    async def use_key(self, key: str) -> KeyResult:
        """Make an installed key the primary on every member."""
        return await self._key_query("use-key", key)

    async def remove_key(self, key: str) -> KeyResult:
        """Remove a key from every member (not the primary)."""
        return await self._key_query("remove-key", key)

    async def list_keys(self) -> KeyResult:
        """Which keys the members hold, and how many hold each."""
        return await self._key_query("list-keys", None)

    async def _key_query(self, kind: str, key: str | None) -> KeyResult:
        """Serf's KeyManager: a cluster-wide internal query, then per-node verdicts.

        Raises :class:`KeyQueryError` (with the per-node result) unless every
        alive member answered, and none with an error.
        """
        handle = await self.query(sw.INTERNAL_QUERY_PREFIX + kind, key_request(key))
        num_nodes = self.serf.alive_count()
        replies = [(reply.from_node, reply.payload) async for reply in handle
                   if reply.kind == "response"]
        result = tally_key_responses(replies, num_nodes)
        if result.failed:
            raise KeyQueryError(f"{result.num_err}/{num_nodes} nodes reported failure", result)
        if result.incomplete:
            raise KeyQueryError(f"{result.num_resp}/{num_nodes} nodes reported success", result)
        return result

    # ------------------------------------------------------------------ statistics

    def statistics(self) -> AgentStatistics:
        """Counters, drops by reason and internal errors by place, as of now."""
        counters: Counter[str] = Counter()
        drops: Counter[str] = Counter()
        for source in (self.serf.node.stats, self.serf.stats, self.counters,
                       self._transport.counters):
            for key, value in source.items():
                if key.startswith("drop."):
                    drops[key[5:]] += value
                else:
                    counters[key] += value
        return AgentStatistics(dict(counters), dict(drops), self.faults.snapshot())

    def stats(self) -> dict[str, dict[str, str]]:
        """What ``swimlib info`` / ``serf info`` show, plus drops and internal errors."""
        members = self.serf.members()
        count = Counter(m.status_name for m in members)
        statistics = self.statistics()
        drops = statistics.drops
        serf = {
            "members": str(len(members)),
            "failed": str(count["failed"]),
            "left": str(count["left"]),
            "health_score": str(self.serf.node.health_score),
            "member_time": str(self.serf.clock.time()),
            "event_time": str(self.serf.event_clock.time()),
            "query_time": str(self.serf.query_clock.time()),
            "encrypted": str(self.keyring is not None).lower(),
        }
        resets = self.serf.coordinate_resets
        if resets is not None:  # as Serf: only while coordinates are on
            serf["coordinate_resets"] = str(resets)
        return {
            "agent": {"name": self.name},
            "runtime": {"version": "swimlib", "backend": _backend_name()},
            "serf": serf,
            "tags": self.serf.tags,
            "drops": {k: str(v) for k, v in sorted(drops.items())},
            "internal_errors": {k: str(v) for k, v in
                                sorted(statistics.internal_errors.items())},
        }

    # ------------------------------------------------------------------ effects

    def _on_effect(self, effect: object) -> None:
        """Everything the core asks for besides moving bytes."""
        if isinstance(effect, Emit):
            self._publish(effect.event)
        elif isinstance(effect, QueryReply):
            channel = self._queries.get(effect.handle)
            if channel is not None:
                channel.send_nowait(effect)
        elif isinstance(effect, QueryDone):
            channel = self._queries.pop(effect.handle, None)
            if channel is not None:
                channel.close()
        elif isinstance(effect, JoinFinished):
            waiter = self._joins.pop(effect.join_id, None)
            if waiter is not None:
                waiter[1].append(effect)
                waiter[0].set()
        elif isinstance(effect, LeaveFinished):
            self._left.set()
        elif isinstance(effect, KeyringChanged):
            self._save_keyring()
        else:
            _log_protocol_effect(effect, self.name)

    def _save_keyring(self) -> None:
        """Persist the keyring after a change, atomically (Serf rewrites the file too)."""
        keyring = self.keyring
        if self.keyring_file is None or keyring is None:
            return
        path = Path(self.keyring_file)
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(keyring.to_json())
            os.replace(tmp, path)
        except OSError as exc:
            log.error("agent: failed to write keyring file %s: %s", path, exc)

    def _publish(self, event: ev.Event) -> None:
        if isinstance(event, ev.MemberEvent):
            label = _LOG_LABELS[event.type]
            for m in event.members:
                log.info("serf: %s: %s %s", label, m.name, m.addr)
            self._members_changed.set()
            self._members_changed = anyio.Event()
        elif isinstance(event, ev.UserEvent):
            log.info("serf: Received event: user-event: %s", event.name)
        kept = []
        for channel in self._subscribers:
            try:
                channel.send_nowait(event)
                kept.append(channel)
            except anyio.WouldBlock:
                self.counters["events.dropped_slow_subscriber"] += 1
                kept.append(channel)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # unsubscribed
        self._subscribers = kept


def _log_protocol_effect(effect: object, name: str) -> None:
    """memberlist's log lines for suspicion, death and refutation."""
    if isinstance(effect, SuspicionRaised):
        log.info("memberlist: Suspect %s has failed, no acks received", effect.node)
    elif isinstance(effect, DeathDeclared):
        log.info("memberlist: Marking %s as failed, suspect timeout reached "
                 "(%d peer confirmations)", effect.node, effect.confirmations)
    elif isinstance(effect, Refuted):
        if effect.kind == "alive":  # memberlist's wording, where it has one
            log.warning("memberlist: Refuting an alive message for '%s'", name)
        else:
            log.warning("memberlist: Refuting a %s message (from: %s)", effect.kind,
                        effect.accuser)


def _backend_name() -> str:
    """``asyncio`` or ``trio``: which event loop runs this agent."""
    import sniffio

    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return "none"


@contextmanager
def _single_errors_unwrapped() -> Iterator[None]:
    """One error out of the agent's task group is raised as itself.

    The caller's own exception (or a JoinError at start-up) would otherwise
    reach them wrapped in an ExceptionGroup, under trio always.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


def _default_advertise(bind_host: str) -> str:
    """An address peers can reach us at when bound to a wildcard (set --advertise!)."""
    if bind_host not in ("", "0.0.0.0", "::"):
        return bind_host
    try:
        addr = socket.gethostbyname(socket.gethostname())
    except OSError:
        addr = "127.0.0.1"
    return addr


@asynccontextmanager
async def open_agent(name: str | None = None, *, bind: Address = ("0.0.0.0", 7946),
                     advertise: Address | None = None, config: Config | None = None,
                     tags: Mapping[str, str] | None = None, keyring: Keyring | None = None,
                     join: Sequence[str] = (), replay: bool = False,
                     rng: random.Random | None = None,
                     keyring_file: str | None = None,
                     tags_file: str | None = None,
                     transport: Transport | None = None) -> AsyncIterator[Agent]:
    """Run an agent for the duration of the ``async with`` block.

    It binds UDP and TCP on ``bind`` unless given a ``transport`` (say, from a
    :class:`~swimlib.transport.memory.MemoryNetwork`), which it then owns and
    closes. Leaving the block shuts the agent down without a graceful leave;
    call ``await agent.leave()`` first to leave gracefully. ``keyring_file`` and
    ``tags_file`` are rewritten when the keyring or the tags change.
    """
    config = config or Config.lan()
    if transport is None:
        transport = await SocketTransport.bind(bind[0], bind[1])
        bound_host = bind[0]
    else:
        bound_host = transport.local_address[0]
    try:
        port = transport.local_address[1]
        adv_host, adv_port = advertise or (_default_advertise(bound_host), port)
        serf = Serf(name or socket.gethostname(), adv_host, adv_port or port, config,
                    rng or random.Random(), anyio.current_time(), tags=tags, keyring=keyring)
        with _single_errors_unwrapped():
            async with anyio.create_task_group() as task_group:
                agent = Agent(serf, transport, task_group, keyring_file, tags_file)
                # Effects so far (our own member-join) go out on the timer loop's first
                # pass, after the caller had a chance to subscribe with agent.events().
                agent._shell.start()
                if join:
                    await agent.join(join, replay=replay)
                yield agent
                task_group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await transport.aclose()
