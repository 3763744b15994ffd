"""Serf's application layer as a sans-IO state machine on top of a membership node.

It adds what ``serf agent`` users see: tags (carried in node meta), member
status with graceful leave (alive -> leaving -> left; failed), Lamport-clocked
join/leave intents, user events with de-duplication, queries with filters,
acks and relayed responses, Serf's internal queries, reaping and reconnects,
the Serf state carried in push-pull, and Vivaldi network coordinates
(:mod:`.coordinates`) carried in acks. Behaviour follows Serf 0.9.4's
``serf.go``/``delegate.go``/``query.go`` (reference/memberlist-wire.md section 11).

Like :class:`~swimlib.membership.node.Node`, it never reads a clock or touches
a socket: the runtime feeds it packets, streams and ticks and carries out the
effects (:class:`SendPacket`, :class:`OpenStream`) returned by
:meth:`Serf.take_effects`, together with the cluster events to deliver.

:class:`Serf` wires objects that each own their state: the three clocks and
their rules (:mod:`.clocks`), the member list and intents (:mod:`.members`),
user events (:mod:`.user_events`), queries (:mod:`.queries`, keys in
:mod:`.keys`) and the leave sequence (:mod:`.leave`). It dispatches the Serf
messages memberlist hands it, and answers memberlist as its delegate.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from swimlib.cluster import domains as dom
from swimlib.cluster import events as ev
from swimlib.cluster.catch_up import CATCH_UP_GOSSIP_ROUNDS, CatchUp
from swimlib.cluster.clocks import LamportClock, SerfClocks, is_implausible, ltime_problem
from swimlib.cluster.coordinates import Coordinate, CoordinateClient
from swimlib.cluster.effects import (
    ClusterEffect,
    Emit,
    KeyringChanged,
    LeaveFinished,
    QueryDone,
    QueryReply,
)
from swimlib.cluster.leave import LeaveSequence, SerfState
from swimlib.cluster.members import MemberStatus, SerfMembers, name_problem
from swimlib.cluster.queries import Queries
from swimlib.cluster.user_events import USER_EVENT_HARD_LIMIT, UserEvents
from swimlib.config import Config
from swimlib.errors import DecodeError, SwimError
from swimlib.membership.broadcasts import BroadcastQueue, retransmit_limit
from swimlib.membership.node import Node
from swimlib.membership.rows import RowCache
from swimlib.membership.timers import Timers
from swimlib.membership.types import Address, JoinFinished, NodeEvent, PingCompleted
from swimlib.wire import serf as sw

if TYPE_CHECKING:  # cryptography is imported only when encryption is on
    from swimlib.wire.crypto import Keyring

__all__ = [
    "CATCH_UP_GOSSIP_ROUNDS",
    "USER_EVENT_HARD_LIMIT",
    "ClusterEffect",
    "Emit",
    "KeyringChanged",
    "LeaveFinished",
    "MemberStatus",
    "QueryDone",
    "QueryReply",
    "Serf",
    "SerfState",
]

#: Bytes a gossip datagram spends around one Serf message: compound header
#: and part length, the user-message byte, and encryption.
_GOSSIP_OVERHEAD = 2 + 2 + 1 + 29

#: How often the gossip queues are pruned to ``max_queue_depth`` (Serf's checkQueueDepth).
_QUEUE_CHECK_INTERVAL = 30.0


class Serf:
    """One Serf member: a membership :class:`Node` plus Serf's application state."""

    def __init__(self, name: str, addr: str, port: int, config: Config, rng: random.Random,
                 now: float, tags: Mapping[str, str] | None = None,
                 keyring: Keyring | None = None, row_cache: RowCache | None = None,
                 report_node_events: bool = False) -> None:
        self.name = name
        self._report_node_events = False
        self.config = config
        self._rng = rng
        self._tags = dict(tags or {})
        self._state = SerfState.ALIVE
        self.stats: Counter[str] = Counter()
        self._effects: list[ClusterEffect] = []
        self._timers = Timers()
        shared: dict[str, Any] = {"stats": self.stats, "effects": self._effects}

        self._clocks = SerfClocks()
        #: Our Vivaldi coordinate (None: ``disable_coordinates``), the last one each
        #: member sent us (keys are members: erased with them), and our ack payload.
        self._coords: CoordinateClient | None = None
        if not config.disable_coordinates:
            self._coords = CoordinateClient(_coordinate_rng(rng))
        self._coord_cache: dict[str, Coordinate] = {}
        self._ack_payload: bytes | None = None
        self._members = SerfMembers(name, config, self._clocks.member, timers=self._timers,
                                    on_erase=self._forget_coordinate, **shared)
        self._events = UserEvents(config, self._clocks, **shared)
        self._queries = Queries(name, config, rng, self._clocks, self._members,
                                self._send_user, lambda: self._tags, lambda: self.node.keyring,
                                timers=self._timers, **shared)
        self._leave = LeaveSequence(config)
        self._ignore_old_joins: set[int] = set()
        self._user_joins: set[int] = set()

        self.node = Node(name, addr, port, config, rng, now, meta=sw.encode_tags(self._tags),
                         delegate=self, keyring=keyring, row_cache=row_cache)
        #: Largest Serf message one gossip datagram can carry (see _regossip).
        self._max_gossip_size = config.udp_buffer_size - _GOSSIP_OVERHEAD
        self._catch_up = CatchUp(config, rng, self._members, self.node,
                                 lambda: self._state is SerfState.ALIVE,
                                 stats=self.stats, timers=self._timers)
        self._pump(now)
        #: Also hand out memberlist's own member events from now on (the
        #: simulator's metrics read them; our own join at start-up is not one).
        self._report_node_events = report_node_events
        self._timers.schedule(now + config.reap_interval, self._reap_tick)
        self._catch_up.start_reconnecting(now)
        self._timers.schedule(now + _QUEUE_CHECK_INTERVAL, self._queue_check_tick)

    # ================================================================== runtime inputs

    def handle_packet(self, data: bytes, source: Address, now: float) -> None:
        for payload in self.node.receive_packet(data, source, now):
            self.handle_user_message(payload, now, source)
        self._pump(now)

    def handle_unreachable(self, dest: Address, sent: bytes, now: float) -> None:
        """Our datagram ``sent`` to ``dest`` met a closed port (:meth:`Node.handle_unreachable`)."""
        self.node.handle_unreachable(dest, sent, now)
        self._pump(now)

    def handle_stream(self, data: bytes, source: Address, now: float) -> bytes | None:
        received = self.node.receive_stream(data, source, now)
        if received.user_message is not None:
            self.handle_user_message(received.user_message, now)
        state = received.user_state
        if state is not None and self.merge_remote_state(state.payload, state.join, now,
                                                         trusted=state.trusted):
            self.node.recheck_stream_sender(source, now)
        self._pump(now)
        return received.reply

    def handle_stream_reply(self, request_id: int, data: bytes | None, now: float) -> None:
        for state in self.node.receive_stream_reply(request_id, data, now):
            self.merge_remote_state(state.payload, state.join, now, trusted=state.trusted)
        self._pump(now)

    def tick(self, now: float) -> None:
        self.node.tick(now)
        self._pump(now)
        self._timers.run_due(now)
        self._pump(now)

    def next_deadline(self, skip_idle: bool = False) -> float | None:
        """Earliest timer of this layer or the node's (see :meth:`Node.next_deadline`)."""
        own = self._timers.next_deadline()
        node = self.node.next_deadline(skip_idle)
        if own is None:
            return node
        return own if node is None else min(own, node)

    def take_effects(self) -> list[ClusterEffect]:
        effects = self._effects  # shared with the parts, so emptied rather than replaced
        if not effects:
            return []
        taken = effects[:]
        effects.clear()
        return taken

    # ================================================================== queries

    @property
    def addr(self) -> str:
        return self.node.addr

    @property
    def port(self) -> int:
        return self.node.port

    @property
    def state(self) -> SerfState:
        """``alive``, ``leaving``, ``left`` or ``shutdown``."""
        return self._state

    @property
    def tags(self) -> dict[str, str]:
        return dict(self._tags)

    @property
    def keyring(self) -> Keyring | None:
        """The keys the core encrypts with; key queries change it in place."""
        return self.node.keyring

    @property
    def clock(self) -> LamportClock:
        return self._clocks.member

    @property
    def event_clock(self) -> LamportClock:
        return self._clocks.event

    @property
    def query_clock(self) -> LamportClock:
        return self._clocks.query

    def members(self) -> list[ev.ClusterMember]:
        return self._members.snapshots()

    def local_member(self) -> ev.ClusterMember:
        me = self._members.get(self.name)
        assert me is not None
        return me.snapshot()

    def alive_count(self) -> int:
        """memberlist's NumMembers: members not dead or left, self included."""
        return self.node.live_count()

    def status_counts(self) -> dict[str, int]:
        """Members by Serf status (``alive``, ``leaving``, ``left``, ``failed``), self included."""
        counts = dict.fromkeys(("alive", "leaving", "left", "failed"), 0)
        for m in self._members.by_name.values():
            name = m.status.name.lower()
            counts[name] = counts.get(name, 0) + 1
        return counts

    def queue_depths(self) -> dict[str, int]:
        """Serf's gossip queues by Serf's names for them (its ``serf.queue.*`` metrics)."""
        return {"Intent": len(self._members.intents), "Event": len(self._events.queue),
                "Query": len(self._queries.queue)}

    def get_coordinate(self) -> Coordinate | None:
        """Our network coordinate (Serf's GetCoordinate); None when disabled."""
        return None if self._coords is None else self._coords.coordinate

    def get_cached_coordinate(self, name: str) -> Coordinate | None:
        """The last coordinate ``name`` sent us, ours for our own name (Serf's
        GetCachedCoordinate); None if unknown or disabled."""
        if self._coords is None:
            return None
        if name == self.name:
            return self._coords.coordinate
        return self._coord_cache.get(name)

    @property
    def coordinate_resets(self) -> int | None:
        """Times our coordinate went invalid and restarted (``coordinate_resets``)."""
        return None if self._coords is None else self._coords.resets

    # ================================================================== commands

    def join(self, addrs: Sequence[Address], now: float, ignore_old: bool = True) -> int:
        """Join through ``addrs``; a ``JoinFinished`` effect with the returned id follows."""
        if self._state is not SerfState.ALIVE:
            raise SwimError("can't join after leave or shutdown")
        join_id = self.node.join(addrs, now)
        self._user_joins.add(join_id)
        if ignore_old:
            self._ignore_old_joins.add(join_id)
        self._pump(now)
        return join_id

    def leave(self, now: float) -> None:
        """Graceful leave: leave intent, then memberlist leave, then a propagation pause."""
        if self._state is not SerfState.ALIVE:
            return
        self._state = SerfState.LEAVING
        clock = self._clocks.member
        msg = sw.LeaveIntent(clock.time(), self.name)
        clock.increment()
        self._members.on_leave_intent(msg, now, we_are_alive=False)
        if self._members.has_alive_others():
            self._members.intents.queue(None, sw.encode_serf(msg),
                                        self._leave.mark_intent_sent)
            self._leave.begin(now, intent_sent=False)
        else:
            self._leave.begin(now, intent_sent=True)
        self._advance_leave(None, now)
        self._pump(now)

    def force_leave(self, node: str, prune: bool, now: float) -> None:
        """Mark a failed member as left everywhere (``serf force-leave``)."""
        clock = self._clocks.member
        msg = sw.LeaveIntent(clock.time(), node, prune)
        clock.increment()
        self._members.on_leave_intent(msg, now, self._state is SerfState.ALIVE)
        if self._members.has_alive_others():
            self._members.intents.queue(None, sw.encode_serf(msg))
        self._pump(now)

    def set_tags(self, tags: Mapping[str, str], now: float) -> None:
        """Replace our tags: a new alive with a higher incarnation (member-update)."""
        meta = sw.encode_tags(tags)  # raises ValueError over 512 bytes
        self._tags = dict(tags)
        self.node.set_meta(meta, now)
        self._pump(now)

    def user_event(self, name: str, payload: bytes, coalesce: bool, now: float) -> None:
        """Broadcast a user event (``serf event``); size-checked like Serf."""
        self._events.publish(name, payload, coalesce, now)
        self._pump(now)

    def restore_clocks(self, clock: int, event_clock: int, query_clock: int) -> None:
        """After a restart (snapshot): never reuse an old LTime, never replay old events."""
        self._clocks.restore(clock, event_clock, query_clock)

    def default_query_timeout(self) -> float:
        n = self.alive_count()
        return (self.config.gossip_interval * self.config.query_timeout_mult
                * math.ceil(math.log10(n + 1)))

    def query(self, name: str, payload: bytes, now: float, *,
              filter_nodes: Sequence[str] = (), filter_tags: Mapping[str, str] | None = None,
              request_ack: bool = False, relay_factor: int = 0,
              timeout: float = 0.0) -> int:
        """Send a query; replies arrive as :class:`QueryReply` effects, then
        :class:`QueryDone`. Returns the handle those effects carry."""
        problem = dom.event_name_problem(name)
        if problem is not None:
            raise SwimError(f"query name {name!r} is not allowed ({problem})")
        if timeout <= 0:
            timeout = self.default_query_timeout()
        me = self.node.member(self.name)
        assert me is not None
        handle = self._queries.send(name, payload, now, (me.addr, me.port), timeout,
                                    filter_nodes=filter_nodes, filter_tags=filter_tags,
                                    request_ack=request_ack, relay_factor=relay_factor)
        self._pump(now)
        return handle

    def respond(self, handle: int, payload: bytes, now: float) -> None:
        """Answer a query we received (once, before its deadline)."""
        self._queries.respond(handle, payload, now)
        self._pump(now)

    # ================================================================== Serf messages

    def handle_user_message(self, payload: bytes, now: float,
                            source: Address | None = None) -> None:
        """One Serf message (memberlist's user message); ``source`` is the
        datagram's sender (None for one that came on a stream, whose port says
        nothing)."""
        self._pump(now)
        stats = self.stats
        stats["serf.msgs.received"] += 1  # serf.msgs.received: a sample of its size
        stats["serf.msgs.received_bytes"] += len(payload)
        try:
            msg = sw.decode_serf(payload)
        except DecodeError as exc:
            self.stats["drop.serf." + exc.reason] += 1
            return
        problem = self._message_problem(msg)
        if problem is not None:
            self.stats["drop.serf." + problem] += 1
            if source is not None and is_implausible(problem):
                self._recheck_sender(source, now)
            return
        members = self._members
        if isinstance(msg, sw.LeaveIntent):
            if members.on_leave_intent(msg, now, self._state is SerfState.ALIVE):
                self._regossip(members.intents, payload)
        elif isinstance(msg, sw.JoinIntent):
            if members.on_join_intent(msg, now):
                self._regossip(members.intents, payload)
                if msg.node != self.name and not members.is_alive(msg.node):
                    self._catch_up.expect_member(msg.node, now)
        elif isinstance(msg, sw.UserEvent):
            if self._events.receive(msg, now):
                self._regossip(self._events.queue, payload)
        elif isinstance(msg, sw.Query):
            if self._queries.receive(msg, now):
                self._regossip(self._queries.queue, payload)
        elif isinstance(msg, sw.QueryResponse):
            self._queries.on_response(msg)
        elif isinstance(msg, sw.Relay):
            self.stats["relay.forwarded"] += 1
            self._send_user((msg.dest_addr, msg.dest_port), msg.message)
        else:
            self.stats["drop.serf.unexpected"] += 1

    def _send_user(self, dest: Address, payload: bytes) -> None:
        self.node.send_user(dest, payload)

    def _recheck_sender(self, source: Address, now: float) -> None:
        """A member sent a time we refused: sync with it to see if we are behind.

        Times past the free limit may only move a clock by a step
        (:mod:`.domains`); a member whose clock moved further on a path that
        is not gossiped (a no-rebroadcast query, a push-pull) would otherwise
        be refused by everyone for good, and so would a whole cluster by a
        member that restarted with a fresh clock. The reply to a stream we
        open is believed whole (nobody can spoof it), so one sync closes the
        gap. A spoofed sender costs one sync per member per verify interval.
        """
        name = self._members.at.get(source)
        if name is not None and name != self.name and self.node.verify_member(name, source, now):
            self.stats["verify.implausible_time"] += 1

    def _regossip(self, queue: BroadcastQueue, payload: bytes) -> None:
        """Queue a message for gossip, if one gossip datagram can carry it.

        A bigger one arrived by other means (a direct datagram, up to 64 KiB);
        queued, it would sit at the head of the queue for ever, never sent
        and keeping an idle agent awake. Serf queues it all the same.
        """
        if len(payload) > self._max_gossip_size:
            self.stats["gossip.too_large"] += 1
            return
        queue.queue(None, payload)

    def _message_problem(self, msg: sw.SerfMessage) -> str | None:
        """Why a decoded Serf message is outside our domains (see :mod:`.domains`)."""
        if isinstance(msg, (sw.JoinIntent, sw.LeaveIntent)):
            return (name_problem(self.config, msg.node, "intent")
                    or ltime_problem(self._clocks.member, msg.ltime, "intent"))
        if isinstance(msg, sw.UserEvent):
            return self._events.problem(msg)
        if isinstance(msg, sw.Query):
            return self._queries.problem(msg)
        if isinstance(msg, sw.QueryResponse):
            return name_problem(self.config, msg.from_, "response_from")
        if isinstance(msg, sw.Relay):
            return self._queries.relay_problem(msg)
        return None

    # ================================================================== asked by Node (Delegate)

    def has_broadcasts(self) -> bool:
        return bool(self._members.intents or self._queries.queue or self._events.queue)

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        transmits = retransmit_limit(self.config.retransmit_mult, self.alive_count())
        out = self._members.intents.take(overhead, limit, transmits)
        used = sum(len(m) + overhead for m in out)
        for queue in (self._queries.queue, self._events.queue):
            if queue:
                more = queue.take(overhead, limit - used, transmits)
                used += sum(len(m) + overhead for m in more)
                out.extend(more)
        if out:  # serf.msgs.sent: a sample of each broadcast's size
            self.stats["serf.msgs.sent"] += len(out)
            self.stats["serf.msgs.sent_bytes"] += sum(len(m) for m in out)
        return out

    def local_state(self, join: bool) -> bytes:
        clocks = self._clocks
        pp = sw.SerfPushPull(clocks.member.time(), self._members.status_ltimes(),
                             tuple(self._members.left), clocks.event.time(),
                             self._events.ring_for_push_pull(), clocks.query.time())
        return sw.encode_serf(pp)

    def merge_remote_state(self, payload: bytes, join: bool, now: float,
                           trusted: bool = False) -> bool:
        """Merge a peer's Serf state (Serf's MergeRemoteState, with our domains).

        ``trusted``: the reply to a stream we opened, so its clocks are
        believed whatever their jump (see :mod:`.clocks`). True when its
        clocks were refused as implausible (the node then syncs with the
        sender, as :meth:`_recheck_sender` does for a datagram).
        """
        self._pump(now)
        try:
            pp = sw.decode_serf(payload)
        except DecodeError as exc:
            self.stats["drop.serf." + exc.reason] += 1
            return False
        if not isinstance(pp, sw.SerfPushPull):
            self.stats["drop.serf.push_pull_type"] += 1
            return False
        problem = self._clocks.push_pull_problem(pp, trusted)
        if problem is not None:
            self.stats["drop.serf." + problem] += 1
            return is_implausible(problem)
        self._clocks.witness_push_pull(pp)
        for leave in self._members.merge(pp, now, self._state is SerfState.ALIVE):
            self._regossip(self._members.intents, leave)
        ignore_old = join and bool(self._ignore_old_joins)
        return self._events.merge(pp.events, ignore_old, trusted, now)

    def ack_payload(self) -> bytes:
        """Our coordinate for the acks we send (Serf's AckPayload), encoded once per change."""
        if self._coords is None:
            return b""
        if self._ack_payload is None:
            self._ack_payload = sw.encode_ping_payload(self._coords.coordinate)
        return self._ack_payload

    # ================================================================== coordinates

    def _on_ping_complete(self, effect: PingCompleted) -> None:
        """A direct ack to our probe (Serf's NotifyPingComplete): learn from its coordinate.

        Refused input is counted (``drop.serf.coordinate_*``) and changes nothing.
        """
        coords = self._coords
        if coords is None or not effect.payload:  # a plain memberlist peer sends none
            return
        try:
            other = sw.decode_ping_payload(effect.payload)
        except DecodeError as exc:
            self.stats["drop.serf.coordinate_" + exc.reason] += 1
            return
        if effect.node == self.name or self._members.get(effect.node) is None:
            # Only members get an entry (and lose it when reaped): the cache stays bounded.
            self.stats["drop.serf.coordinate_not_member"] += 1
            return
        problem = coords.update(effect.node, other, effect.rtt)
        if problem is not None:
            self.stats["drop.serf." + problem] += 1
            return
        self.stats["coordinate.updates"] += 1
        self._coord_cache[effect.node] = other
        self._ack_payload = None

    def _forget_coordinate(self, name: str) -> None:
        """A member was erased (reaped or pruned): forget its coordinate and samples."""
        self._coord_cache.pop(name, None)
        if self._coords is not None:
            self._coords.forget(name)

    # ================================================================== memberlist events

    def _pump(self, now: float) -> None:
        """Move the node's effects into ours, turning membership events into Serf's."""
        for effect in self.node.take_effects():
            if isinstance(effect, NodeEvent):
                if self._report_node_events:
                    self._effects.append(effect)
                self._members.on_node_event(effect, now)
            elif isinstance(effect, PingCompleted):
                self._on_ping_complete(effect)
            elif isinstance(effect, JoinFinished):
                self._on_join_finished(effect, now)
                self._effects.append(effect)
            else:
                self._effects.append(effect)

    def _on_join_finished(self, effect: JoinFinished, now: float) -> None:
        self._ignore_old_joins.discard(effect.join_id)
        if effect.join_id in self._user_joins:
            self._user_joins.discard(effect.join_id)
            if effect.contacted > 0 and self._state is SerfState.ALIVE:
                self._members.broadcast_join(self._clocks.member.time(), now)
                self._catch_up.after_join(now)

    # ================================================================== periodic work

    def _reap_tick(self, _: object, now: float) -> None:
        self._timers.schedule(now + self.config.reap_interval, self._reap_tick)
        self._members.reap(now)

    def _queue_check_tick(self, _: object, now: float) -> None:
        self._timers.schedule(now + _QUEUE_CHECK_INTERVAL, self._queue_check_tick)
        for queue in (self._members.intents, self._events.queue, self._queries.queue):
            dropped = queue.prune(self.config.max_queue_depth)
            if dropped:
                self.stats["queue.pruned"] += dropped

    def _advance_leave(self, _: object, now: float) -> None:
        """Step the graceful leave (see :class:`~.leave.LeaveSequence`)."""
        if self._leave.finished:
            return
        poll = self._leave.advance(now, self.node)
        if self._leave.finished:
            self._state = SerfState.LEFT
            self._effects.append(LeaveFinished())
        elif poll is not None:
            self._timers.schedule(poll, self._advance_leave)


def _coordinate_rng(rng: random.Random) -> random.Random:
    """The stream Vivaldi draws its random directions from: a copy of ``rng``'s state.

    A copy, not ``rng`` itself, so turning coordinates on or off leaves every
    other random choice of the node as it was (the simulator's traces show
    it); still fully determined by the injected generator.
    """
    try:
        state = rng.getstate()
    except NotImplementedError:  # random.SystemRandom has no state to copy
        return rng
    copy = random.Random(0)
    copy.setstate(state)
    return copy
