"""The trio runtime around the sans-IO Serf state machine: sockets, timers, streams.

One UDP socket and one TCP listener share the gossip port (memberlist's
layout). Every input (datagram, inbound stream, stream reply, timer) is fed
to :class:`~swimlib.cluster.serf.Serf` synchronously, then its effects are
carried out: datagrams sent, streams opened in their own tasks, events
published to subscribers. The protocol never waits on a subscriber: a full
subscriber channel drops (and counts) instead.

``now`` is ``trio.current_time()`` throughout, so trio's ``MockClock`` drives
the whole agent in tests.
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import trio

from swimlib.agent.addresses import resolve_join_addresses
from swimlib.agent.datagrams import DatagramSocket
from swimlib.agent.streams import read_message
from swimlib.cluster import events as ev
from swimlib.cluster.serf import (
    Emit,
    KeyringChanged,
    LeaveFinished,
    QueryDone,
    QueryReply,
    Serf,
)
from swimlib.config import Config
from swimlib.errors import DecodeError, JoinError, SwimError
from swimlib.faults import FaultLog
from swimlib.membership.types import (
    Address,
    DeathDeclared,
    JoinFinished,
    OpenStream,
    Refuted,
    SendPacket,
    SuspicionRaised,
)

if TYPE_CHECKING:  # cryptography is imported only when encryption is on
    from swimlib.wire.crypto import Keyring

log = logging.getLogger("swimlib")

#: Serf's log names for member events (log-scraping tools look for these).
_LOG_LABELS = {ev.EventType.MEMBER_JOIN: "EventMemberJoin",
               ev.EventType.MEMBER_LEAVE: "EventMemberLeave",
               ev.EventType.MEMBER_FAILED: "EventMemberFailed",
               ev.EventType.MEMBER_UPDATE: "EventMemberUpdate",
               ev.EventType.MEMBER_REAP: "EventMemberReap"}
#: Concurrent inbound TCP exchanges beyond this are refused (memberlist: 128).
_MAX_INBOUND_STREAMS = 128


@attrs.frozen
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

    def __init__(self, handle: int, receive: trio.MemoryReceiveChannel[QueryReply]) -> None:
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

    def __init__(self, serf: Serf, udp: DatagramSocket, nursery: trio.Nursery,
                 keyring_file: str | None = None) -> None:
        self.serf = serf
        self.config = serf.config
        #: Rewritten whenever a key query changes the keyring (as Serf does).
        self.keyring_file = keyring_file
        self._udp = udp
        self._nursery = nursery
        #: The timer loop's sleep; its deadline is pulled in when work comes due sooner.
        self._timer_scope: trio.CancelScope | None = None
        self._subscribers: list[trio.MemorySendChannel[ev.Event]] = []
        self._queries: dict[int, trio.MemorySendChannel[QueryReply]] = {}
        self._joins: dict[int, tuple[trio.Event, list[JoinFinished]]] = {}
        self._left = trio.Event()
        self._inbound_streams = 0
        #: Runtime counters (sends, stream failures, decrypt drops ...).
        self.counters: Counter[str] = Counter()
        #: Failures caught at the boundaries of single inputs (see :mod:`swimlib.faults`).
        self.faults = FaultLog()

    # ------------------------------------------------------------------ public API

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

    def members(self) -> list[ev.ClusterMember]:
        return self.serf.members()

    def local_member(self) -> ev.ClusterMember:
        return self.serf.local_member()

    def events(self, buffer: int = 1024) -> trio.MemoryReceiveChannel[ev.Event]:
        """Subscribe to cluster events; close the returned channel to unsubscribe."""
        send, receive = trio.open_memory_channel[ev.Event](buffer)
        self._subscribers.append(send)
        return receive

    async def join(self, addrs: Sequence[str], replay: bool = False) -> int:
        """Join through ``addrs`` (``host``, ``host:port``, ``name/host:port``).

        Returns how many addresses answered; raises :class:`JoinError` if none did.
        """
        resolved = await resolve_join_addresses(addrs, self.serf.port)
        if not resolved:
            raise JoinError(f"could not resolve any of {', '.join(addrs)}")
        join_id = self.serf.join(resolved, trio.current_time(), ignore_old=not replay)
        done = trio.Event()
        result: list[JoinFinished] = []
        self._joins[join_id] = (done, result)
        await self._drive()
        # Every join stream ends within tcp_timeout; the margin covers a reply lost
        # to a failure caught at a boundary, so a join can fail but never hang.
        with trio.move_on_after(self.config.tcp_timeout + 5.0):
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
        self.serf.leave(trio.current_time())
        await self._drive()
        limit = 2 * self.config.broadcast_timeout + self.config.leave_propagate_delay + 1
        with trio.move_on_after(limit):
            await self._left.wait()

    @property
    def has_left(self) -> bool:
        return self._left.is_set()

    async def user_event(self, name: str, payload: bytes = b"", coalesce: bool = True) -> None:
        self.serf.user_event(name, payload, coalesce, trio.current_time())
        await self._drive()

    async def query(self, name: str, payload: bytes = b"", *,
                    filter_nodes: Sequence[str] = (),
                    filter_tags: Mapping[str, str] | None = None,
                    request_ack: bool = False, relay_factor: int = 0,
                    timeout: float = 0.0) -> QueryHandle:
        """Send a query; iterate the returned handle for acks and responses."""
        send, receive = trio.open_memory_channel[QueryReply](math.inf)
        handle = self.serf.query(name, payload, trio.current_time(),
                                 filter_nodes=filter_nodes, filter_tags=filter_tags,
                                 request_ack=request_ack, relay_factor=relay_factor,
                                 timeout=timeout)
        self._queries[handle] = send
        await self._drive()
        return QueryHandle(handle, receive)

    async def respond(self, query_id: int, payload: bytes) -> None:
        self.serf.respond(query_id, payload, trio.current_time())
        await self._drive()

    async def set_tags(self, tags: Mapping[str, str] | None = None,
                       delete: Sequence[str] = ()) -> None:
        """Merge ``tags`` into ours and drop ``delete``; announced as member-update."""
        merged = self.serf.tags
        merged.update(tags or {})
        for key in delete:
            merged.pop(key, None)
        try:
            self.serf.set_tags(merged, trio.current_time())
        except ValueError as exc:
            raise SwimError(str(exc)) from None
        await self._drive()

    async def force_leave(self, node: str, prune: bool = False) -> None:
        self.serf.force_leave(node, prune, trio.current_time())
        await self._drive()

    def statistics(self) -> AgentStatistics:
        """Counters, drops by reason and internal errors by place, as of now."""
        counters: Counter[str] = Counter()
        drops: Counter[str] = Counter()
        for source in (self.serf.node.stats, self.serf.stats, self.counters):
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
        return {
            "agent": {"name": self.name},
            "runtime": {"version": "swimlib"},
            "serf": {
                "members": str(len(members)),
                "failed": str(count["failed"]),
                "left": str(count["left"]),
                "health_score": str(self.serf.node.health_score),
                "member_time": str(self.serf.clock.time()),
                "event_time": str(self.serf.event_clock.time()),
                "query_time": str(self.serf.query_clock.time()),
                "encrypted": str(self.keyring is not None).lower(),
            },
            "tags": self.serf.tags,
            "drops": {k: str(v) for k, v in sorted(drops.items())},
            "internal_errors": {k: str(v) for k, v in
                                sorted(statistics.internal_errors.items())},
        }

    # ------------------------------------------------------------------ loops

    async def _timer_loop(self) -> None:
        while True:
            deadline = self.serf.next_deadline(skip_idle=True)
            with trio.CancelScope(deadline=math.inf if deadline is None else deadline) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None
            with self.faults.boundary("timer"):
                self.serf.tick(trio.current_time())
            await self._drive()

    async def _udp_loop(self) -> None:
        """Feed datagrams to the state machine a batch at a time, then act once."""
        udp = self._udp
        boundary = self.faults.boundary
        while True:
            batch = await udp.receive_batch()
            now = trio.current_time()
            for data, source in batch:
                with boundary("datagram"):
                    self._on_datagram(data, source, now)
            for dest, sent in udp.take_unreachable():
                with boundary("unreachable"):
                    self._on_unreachable(dest, sent, now)
            self._count_socket_errors()
            await self._drive()

    def _on_datagram(self, data: bytes, source: Address, now: float) -> None:
        self.serf.handle_packet(data, source, now)

    def _on_unreachable(self, dest: Address, sent: bytes, now: float) -> None:
        self.serf.handle_unreachable(dest, sent, now)

    def _count_socket_errors(self) -> None:
        udp = self._udp
        if udp.recv_errors:  # each ICMP error also fails one read or send, once
            self.counters["udp.recv_error"] += udp.recv_errors
            udp.recv_errors = 0
        if udp.send_retries:
            self.counters["udp.send_retry"] += udp.send_retries
            udp.send_retries = 0

    async def _serve_stream(self, stream: trio.SocketStream) -> None:
        """One inbound TCP exchange: read, answer, close."""
        if self._inbound_streams >= _MAX_INBOUND_STREAMS:
            self.counters["drop.stream.too_many"] += 1
            await stream.aclose()
            return
        self._inbound_streams += 1
        try:
            peer = stream.socket.getpeername()
            with trio.fail_after(self.config.tcp_timeout):
                raw = await read_message(stream)
                reply = self.serf.handle_stream(raw, (peer[0], peer[1]), trio.current_time())
                await self._drive()
                if reply is not None:
                    await stream.send_all(reply)
        except DecodeError as exc:
            self.counters["drop.stream." + exc.reason] += 1
        except (trio.TooSlowError, trio.BrokenResourceError, OSError):
            self.counters["stream.in_failed"] += 1
        except Exception as exc:
            self.faults.record("stream.in", exc)
        finally:
            self._inbound_streams -= 1
            await trio.aclose_forcefully(stream)

    async def _stream_out(self, effect: OpenStream) -> None:
        reply: bytes | None = None
        try:
            with trio.fail_after(effect.timeout):
                stream = await trio.open_tcp_stream(effect.dest[0], effect.dest[1])
                async with stream:
                    await stream.send_all(effect.data)
                    reply = await read_message(stream)
        except DecodeError as exc:
            self.counters["drop.stream." + exc.reason] += 1
        except (trio.TooSlowError, trio.BrokenResourceError, OSError):
            self.counters["stream.out_failed"] += 1
        except Exception as exc:
            self.faults.record("stream.out", exc)
            reply = None
        with self.faults.boundary("stream.reply"):
            self.serf.handle_stream_reply(effect.request_id, reply, trio.current_time())
        await self._drive()

    # ------------------------------------------------------------------ effects

    async def _drive(self) -> None:
        """Carry out everything the state machine asked for since the last call."""
        for effect in self.serf.take_effects():
            with self.faults.boundary("effect"):
                await self._carry_out(effect)
        deadline = self.serf.next_deadline(skip_idle=True)
        scope = self._timer_scope
        if deadline is not None and scope is not None and deadline < scope.deadline:
            scope.deadline = deadline

    async def _carry_out(self, effect: object) -> None:
        if isinstance(effect, SendPacket):
            await self._send_packet(effect)
        elif isinstance(effect, OpenStream):
            self._nursery.start_soon(self._stream_out, effect)
        elif isinstance(effect, Emit):
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
        elif isinstance(effect, SuspicionRaised):
            log.info("memberlist: Suspect %s has failed, no acks received", effect.node)
        elif isinstance(effect, DeathDeclared):
            log.info("memberlist: Marking %s as failed, suspect timeout reached "
                     "(%d peer confirmations)", effect.node, effect.confirmations)
        elif isinstance(effect, Refuted):
            if effect.kind == "alive":  # memberlist's wording, where it has one
                log.warning("memberlist: Refuting an alive message for '%s'", self.name)
            else:
                log.warning("memberlist: Refuting a %s message (from: %s)", effect.kind,
                            effect.accuser)

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

    async def _send_packet(self, effect: SendPacket) -> None:
        try:
            await self._udp.send(effect.data, effect.dest)
            self.counters["udp.sent"] += 1
        except OSError as exc:
            self.counters["udp.send_error"] += 1
            log.debug("memberlist: failed to send to %s: %s", effect.dest, exc)

    def _publish(self, event: ev.Event) -> None:
        if isinstance(event, ev.MemberEvent):
            label = _LOG_LABELS[event.type]
            for m in event.members:
                log.info("serf: %s: %s %s", label, m.name, m.addr)
        elif isinstance(event, ev.UserEvent):
            log.info("serf: Received event: user-event: %s", event.name)
        kept = []
        for channel in self._subscribers:
            try:
                channel.send_nowait(event)
                kept.append(channel)
            except trio.WouldBlock:
                self.counters["events.dropped_slow_subscriber"] += 1
                kept.append(channel)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # unsubscribed
        self._subscribers = kept


def _default_advertise(bind_host: str) -> str:
    """An address peers can reach us at when bound to a wildcard (set --advertise!)."""
    if bind_host not in ("", "0.0.0.0", "::"):
        return bind_host
    try:
        addr = socket.gethostbyname(socket.gethostname())
    except OSError:
        addr = "127.0.0.1"
    return addr


async def _bind(host: str, port: int) -> tuple[DatagramSocket, list[trio.SocketListener]]:
    """UDP and TCP on the same port; with port 0, retry until both get the same one."""
    for _ in range(20):
        udp = await DatagramSocket.bind(host, port)
        try:
            chosen = udp.getsockname()[1]
            listeners = await trio.open_tcp_listeners(chosen, host=host or None)
            return udp, listeners
        except OSError:
            udp.close()
            if port != 0:
                raise
    raise SwimError("could not bind UDP and TCP to the same port")


@asynccontextmanager
async def open_agent(name: str | None = None, *, bind: Address = ("0.0.0.0", 7946),
                     advertise: Address | None = None, config: Config | None = None,
                     tags: Mapping[str, str] | None = None, keyring: Keyring | None = None,
                     join: Sequence[str] = (), replay: bool = False,
                     rng: random.Random | None = None,
                     keyring_file: str | None = None) -> AsyncIterator[Agent]:
    """Run an agent for the duration of the ``async with`` block.

    Leaving the block shuts the agent down without a graceful leave; call
    ``await agent.leave()`` first to leave gracefully.
    """
    config = config or Config.lan()
    udp, listeners = await _bind(bind[0], bind[1])
    port = udp.getsockname()[1]
    adv_host, adv_port = advertise or (_default_advertise(bind[0]), port)
    serf = Serf(name or socket.gethostname(), adv_host, adv_port or port, config,
                rng or random.Random(), trio.current_time(), tags=tags, keyring=keyring)
    try:
        async with trio.open_nursery() as nursery:
            agent = Agent(serf, udp, nursery, keyring_file)
            nursery.start_soon(agent._timer_loop)
            nursery.start_soon(agent._udp_loop)
            nursery.start_soon(trio.serve_listeners, agent._serve_stream, listeners)
            # Effects so far (our own member-join) go out on the timer loop's first pass,
            # after the caller had a chance to subscribe with agent.events().
            if join:
                await agent.join(join, replay=replay)
            yield agent
            nursery.cancel_scope.cancel()
    finally:
        udp.close()
        for listener in listeners:
            await listener.aclose()

