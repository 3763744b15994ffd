"""Serf's application layer as a sans-IO state machine on top of a membership node.

It adds what ``serf agent`` users see: tags (carried in node meta), member
status with graceful leave (alive -> leaving -> left; failed), Lamport-clocked
join/leave intents, user events with de-duplication, queries with filters,
acks and relayed responses, Serf's internal queries, reaping and reconnects,
and the Serf state carried in push-pull. Behaviour follows Serf 0.9.4's
``serf.go``/``delegate.go``/``query.go`` (reference/memberlist-wire.md section 11).

Like :class:`~swimlib.membership.node.Node`, it never reads a clock or touches
a socket: the runtime feeds it packets, streams and ticks and carries out the
effects (:class:`SendPacket`, :class:`OpenStream`) returned by
:meth:`Serf.take_effects`, together with the cluster events to deliver.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from swimlib.cluster import domains as dom
from swimlib.cluster import events as ev
from swimlib.cluster.clock import LamportClock
from swimlib.cluster.dedup import DedupRing
from swimlib.config import Config
from swimlib.errors import DecodeError, SwimError
from swimlib.membership import domains as member_domains
from swimlib.membership.broadcasts import BroadcastQueue, retransmit_limit
from swimlib.membership.node import Node
from swimlib.membership.rows import RowCache
from swimlib.membership.types import (
    Address,
    Effect,
    EventKind,
    JoinFinished,
    MemberState,
)
from swimlib.membership.types import MemberEvent as NodeMemberEvent
from swimlib.wire import serf as sw
from swimlib.wire.messages import DEFAULT_VSN

if TYPE_CHECKING:  # cryptography is imported only when encryption is on
    from swimlib.wire.crypto import Keyring

MemberStatus = sw.MemberStatus

#: Serf's hard cap on user events, whatever the configured limit.
USER_EVENT_HARD_LIMIT = 9 * 1024


# ----------------------------------------------------------------------------- effects


@attrs.frozen(slots=True)
class QueryReply:
    """An ack or a response to a query we sent (``handle`` from :meth:`Serf.query`)."""

    handle: int
    kind: str  # "ack" | "response"
    from_node: str
    payload: bytes = b""


@attrs.frozen(slots=True)
class QueryDone:
    """A query we sent reached its deadline; no more replies will be reported."""

    handle: int


@attrs.frozen(slots=True)
class LeaveFinished:
    """Graceful leave is complete: the runtime may shut the node down."""


@attrs.frozen(slots=True)
class Emit:
    """A cluster event for the application (handlers, RPC streams, Python API)."""

    event: ev.Event


ClusterEffect = Effect | QueryReply | QueryDone | LeaveFinished | Emit


# ----------------------------------------------------------------------------- internal state


class _Member:
    __slots__ = ("addr", "leave_time", "name", "port", "status", "status_ltime", "tags", "vsn")

    def __init__(self, name: str, addr: str, port: int, tags: dict[str, str],
                 vsn: bytes) -> None:
        self.name = name
        self.addr = addr
        self.port = port
        self.tags = tags
        self.vsn = vsn
        self.status = MemberStatus.ALIVE
        self.status_ltime = 0
        self.leave_time = 0.0

    def versions(self) -> tuple[int, int, int, int, int, int]:
        v = self.vsn if len(self.vsn) == 6 else DEFAULT_VSN
        return (v[0], v[1], v[2], v[3], v[4], v[5])

    def snapshot(self) -> ev.ClusterMember:
        return ev.ClusterMember(self.name, self.addr, self.port, self.tags, self.status,
                                *self.versions())


class _OutboundQuery:
    __slots__ = ("acks", "deadline", "handle", "id", "ltime", "responses")

    def __init__(self, handle: int, ltime: int, qid: int, deadline: float) -> None:
        self.handle = handle
        self.ltime = ltime
        self.id = qid
        self.deadline = deadline
        self.acks: set[str] = set()
        self.responses: set[str] = set()


class _InboundQuery:
    __slots__ = ("addr", "deadline", "id", "ltime", "port", "relay_factor")

    def __init__(self, q: sw.Query, deadline: float) -> None:
        self.ltime = q.ltime
        self.id = q.id
        self.addr = q.addr
        self.port = q.port
        self.relay_factor = q.relay_factor
        self.deadline = deadline


# Timer kinds
#: Suffix of the drop reasons of a Lamport time outside :func:`.domains.plausible_ltime`.
_IMPLAUSIBLE = "_ltime_implausible"

_T_REAP, _T_RECONNECT, _T_QUEUE_CHECK, _T_QUERY_DEADLINE, _T_LEAVE, _T_PRUNE = range(6)
_T_CATCH_UP, _T_JOIN_FOLLOW_UP = 6, 7

#: Bytes a gossip datagram spends around one Serf message: compound header
#: and part length, the user-message byte, and encryption.
_GOSSIP_OVERHEAD = 2 + 2 + 1 + 29

#: A join intent for a member memberlist has not told us about gets this many
#: gossip intervals for the member's alive message to arrive; then we sync.
#: A join of ours is followed by a second sync after as long.
CATCH_UP_GOSSIP_ROUNDS = 5

_ALIVE, _LEAVING, _LEFT, _SHUTDOWN = "alive", "leaving", "left", "shutdown"


class Serf:
    """One Serf member: a membership :class:`Node` plus Serf's application state."""

    def __init__(self, name: str, addr: str, port: int, config: Config, rng: random.Random,
                 now: float, tags: Mapping[str, str] | None = None,
                 keyring: Keyring | None = None, row_cache: RowCache | None = None) -> None:
        self.name = name
        self.config = config
        self._rng = rng
        self._tags = dict(tags or {})
        self._state = _ALIVE
        #: Shared with the transport, which encrypts with it; key queries change it.
        self.keyring: Keyring | None = keyring

        self.clock = LamportClock()
        self.event_clock = LamportClock()
        self.query_clock = LamportClock()
        self._event_min_time = 0
        self._query_min_time = 0
        self.stats: Counter[str] = Counter()
        self._event_ring: DedupRing[tuple[str, bytes]] = DedupRing(
            "event", self.stats, dom.MAX_EVENTS_PER_SLOT, dom.EVENT_RING_BUDGET,
            lambda record: len(record[0]) + len(record[1]), sw.EVENT_BUFFER_SIZE)
        self._query_ring: DedupRing[int] = DedupRing(
            "query", self.stats, dom.MAX_EVENTS_PER_SLOT, size=sw.EVENT_BUFFER_SIZE)

        self._members: dict[str, _Member] = {}
        #: Which member lives at an address (to verify what it sent, see notify_msg).
        self._member_at: dict[Address, str] = {}
        self._failed: list[str] = []
        self._left: list[str] = []
        self._recent_intents: dict[str, tuple[int, int, float]] = {}  # name -> (type, ltime, when)
        #: Members we heard join (Serf intent) but memberlist never announced.
        self._catch_up: set[str] = set()

        self._intents = BroadcastQueue()
        self._event_queue = BroadcastQueue()
        self._query_queue = BroadcastQueue()

        self._outbound: dict[int, _OutboundQuery] = {}  # by ltime (Serf's key)
        self._inbound: dict[int, _InboundQuery] = {}  # by local handle
        self._handle = 0
        self._ignore_old_joins: set[int] = set()
        self._user_joins: set[int] = set()
        self._leave_phase = ""
        self._leave_deadline = 0.0
        self._intent_sent = False

        self._timers: list[tuple[float, int, int, Any]] = []
        self._timer_seq = 0
        self._effects: list[ClusterEffect] = []

        self.node = Node(name, addr, port, config, rng, now, meta=sw.encode_tags(self._tags),
                         delegate=self, encrypted=keyring is not None, row_cache=row_cache)
        #: Largest Serf message one gossip datagram can carry (see _regossip).
        self._max_gossip_size = config.udp_buffer_size - _GOSSIP_OVERHEAD
        self._pump(now)
        self._schedule(now + config.reap_interval, _T_REAP, None)
        # Serf ticks from its own start, so a real fleet's reconnect attempts are
        # spread out; a random first tick keeps nodes started together (the
        # simulator, a cluster booted at once) from retrying in lockstep.
        self._schedule(now + rng.random() * config.reconnect_interval, _T_RECONNECT, None)
        self._schedule(now + 30.0, _T_QUEUE_CHECK, None)

    # ================================================================== runtime inputs

    def handle_packet(self, data: bytes, source: Address, now: float) -> None:
        self.node.handle_packet(data, source, now)
        self._pump(now)

    def handle_unreachable(self, dest: Address, sent: bytes, now: float) -> None:
        """Our datagram ``sent`` to ``dest`` met a closed port (:meth:`Node.handle_unreachable`)."""
        self.node.handle_unreachable(dest, sent, now)
        self._pump(now)

    def handle_stream(self, data: bytes, source: Address, now: float) -> bytes | None:
        reply = self.node.handle_stream(data, source, now)
        self._pump(now)
        return reply

    def handle_stream_reply(self, request_id: int, data: bytes | None, now: float) -> None:
        self.node.handle_stream_reply(request_id, data, now)
        self._pump(now)

    def tick(self, now: float) -> None:
        self.node.tick(now)
        self._pump(now)
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, kind, arg = heapq.heappop(timers)
            self._fire(kind, arg, now)
        self._pump(now)

    def next_deadline(self, skip_idle: bool = False) -> float | None:
        """Earliest timer of this layer or the node's (see :meth:`Node.next_deadline`)."""
        own = self._timers[0][0] if self._timers else None
        node = self.node.next_deadline(skip_idle)
        if own is None:
            return node
        return own if node is None else min(own, node)

    def take_effects(self) -> list[ClusterEffect]:
        effects, self._effects = self._effects, []
        return effects

    # ================================================================== commands

    @property
    def addr(self) -> str:
        return self.node.addr

    @property
    def port(self) -> int:
        return self.node.port

    @property
    def state(self) -> str:
        """``alive``, ``leaving``, ``left`` or ``shutdown``."""
        return self._state

    @property
    def tags(self) -> dict[str, str]:
        return dict(self._tags)

    def members(self) -> list[ev.ClusterMember]:
        return [m.snapshot() for m in self._members.values()]

    def local_member(self) -> ev.ClusterMember:
        return self._members[self.name].snapshot()

    def alive_count(self) -> int:
        """memberlist's NumMembers: members not dead or left, self included."""
        return self.node.live_count()

    def join(self, addrs: Sequence[Address], now: float, ignore_old: bool = True) -> int:
        """Join through ``addrs``; a ``JoinFinished`` effect with the returned id follows."""
        if self._state != _ALIVE:
            raise SwimError("can't join after leave or shutdown")
        join_id = self.node.join(addrs, now)
        self._user_joins.add(join_id)
        if ignore_old:
            self._ignore_old_joins.add(join_id)
        self._pump(now)
        return join_id

    def leave(self, now: float) -> None:
        """Graceful leave: leave intent, then memberlist leave, then a propagation pause."""
        if self._state != _ALIVE:
            return
        self._state = _LEAVING
        msg = sw.LeaveIntent(self.clock.time(), self.name)
        self.clock.increment()
        self._on_leave_intent(msg, now)
        if self._has_alive_members():
            self._intent_sent = False
            self._intents.queue(None, sw.encode_serf(msg), self._mark_intent_sent)
            self._leave_phase = "intent"
        else:
            self._intent_sent = True
            self._leave_phase = "intent"
        self._leave_deadline = now + self.config.broadcast_timeout
        self._advance_leave(now)
        self._pump(now)

    def force_leave(self, node: str, prune: bool, now: float) -> None:
        """Mark a failed member as left everywhere (``serf force-leave``)."""
        msg = sw.LeaveIntent(self.clock.time(), node, prune)
        self.clock.increment()
        self._on_leave_intent(msg, now)
        if self._has_alive_members():
            self._intents.queue(None, sw.encode_serf(msg))
        self._pump(now)

    def set_tags(self, tags: Mapping[str, str], now: float) -> None:
        """Replace our tags: a new alive with a higher incarnation (member-update)."""
        meta = sw.encode_tags(tags)  # raises ValueError over 512 bytes
        self._tags = dict(tags)
        self.node.set_meta(meta, now)
        self._pump(now)

    def user_event(self, name: str, payload: bytes, coalesce: bool, now: float) -> None:
        """Broadcast a user event (``serf event``); size-checked like Serf."""
        problem = dom.event_name_problem(name)
        if problem is not None:
            raise SwimError(f"user event name {name!r} is not allowed ({problem})")
        size = len(name.encode()) + len(payload)
        limit = min(self.config.user_event_size_limit, USER_EVENT_HARD_LIMIT)
        if size > limit:
            raise SwimError(f"user event exceeds limit of {limit} bytes before encoding")
        msg = sw.UserEvent(self.event_clock.time(), name, payload, coalesce)
        raw = sw.encode_serf(msg)
        if len(raw) > limit:
            raise SwimError(f"user event exceeds limit of {limit} bytes after encoding")
        self.event_clock.increment()
        self._on_user_event(msg, now)
        self._event_queue.queue(None, raw)
        self._pump(now)

    def restore_clocks(self, clock: int, event_clock: int, query_clock: int) -> None:
        """After a restart (snapshot): never reuse an old LTime, never replay old events."""
        self.clock.witness(clock)
        self.event_clock.witness(event_clock)
        self.query_clock.witness(query_clock)
        self._event_min_time = max(self._event_min_time, event_clock + 1)
        self._query_min_time = max(self._query_min_time, query_clock + 1)

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
        timeout = min(timeout, dom.QUERY_TIMEOUT_MAX)
        filters: list[sw.Filter] = []
        if filter_nodes:
            filters.append(sw.NodeFilter(tuple(filter_nodes)))
        for tag, expr in (filter_tags or {}).items():
            filters.append(sw.TagFilter(tag, expr))
        me = self.node.member(self.name)
        assert me is not None
        q = sw.Query(self.query_clock.time(), self._rng.randrange(1 << 31), me.addr, me.port,
                     self.name, name, payload, tuple(filters),
                     sw.QUERY_FLAG_ACK if request_ack else 0, relay_factor,
                     int(timeout * 1e9))
        raw = sw.encode_serf(q)
        if len(raw) > self.config.query_size_limit:
            raise SwimError(f"query exceeds limit of {self.config.query_size_limit} bytes")
        self._handle += 1
        out = _OutboundQuery(self._handle, q.ltime, q.id, now + timeout)
        self._outbound[q.ltime] = out
        self._schedule(out.deadline, _T_QUERY_DEADLINE, out)
        self._on_query(q, now)
        self._query_queue.queue(None, raw)
        self._pump(now)
        return out.handle

    def respond(self, handle: int, payload: bytes, now: float) -> None:
        """Answer a query we received (once, before its deadline)."""
        pending = self._inbound.pop(handle, None)
        if pending is None:
            raise SwimError("unknown query or response already sent")
        if now > pending.deadline:
            raise SwimError("response is past the deadline")
        resp = sw.QueryResponse(pending.ltime, pending.id, self.name, 0, payload)
        raw = sw.encode_serf(resp)
        if len(raw) > self.config.query_response_size_limit:
            raise SwimError(
                f"response exceeds limit of {self.config.query_response_size_limit} bytes")
        dest = (pending.addr, pending.port)
        self.node.send_user(dest, raw)
        self._relay_response(pending.relay_factor, dest, resp)
        self._pump(now)

    # ================================================================== delegate (called by Node)

    def notify_msg(self, payload: bytes, now: float, source: Address | None = None) -> None:
        self._pump(now)
        try:
            msg = sw.decode_serf(payload)
        except DecodeError as exc:
            self.stats["drop.serf." + exc.reason] += 1
            return
        problem = self._message_problem(msg)
        if problem is not None:
            self.stats["drop.serf." + problem] += 1
            if source is not None and problem.endswith(_IMPLAUSIBLE):
                self._verify_sender(source, now)
            return
        if isinstance(msg, sw.LeaveIntent):
            if self._on_leave_intent(msg, now):
                self._regossip(self._intents, payload)
        elif isinstance(msg, sw.JoinIntent):
            if self._on_join_intent(msg, now):
                self._regossip(self._intents, payload)
                if msg.node != self.name and not self._is_alive(msg.node):
                    self._expect_member(msg.node, now)
        elif isinstance(msg, sw.UserEvent):
            if self._on_user_event(msg, now):
                self._regossip(self._event_queue, payload)
        elif isinstance(msg, sw.Query):
            if self._on_query(msg, now):
                self._regossip(self._query_queue, payload)
        elif isinstance(msg, sw.QueryResponse):
            self._on_query_response(msg)
        elif isinstance(msg, sw.Relay):
            self.stats["relay.forwarded"] += 1
            self.node.send_user((msg.dest_addr, msg.dest_port), msg.message)
        else:
            self.stats["drop.serf.unexpected"] += 1

    def _verify_sender(self, source: Address, now: float) -> None:
        """A member sent a time we refused: sync with it to see if we are behind.

        Times past the free limit may only move a clock by a step
        (:mod:`.domains`); a member whose clock moved further on a path that
        is not gossiped (a no-rebroadcast query, a push-pull) would otherwise
        be refused by everyone for good, and so would a whole cluster by a
        member that restarted with a fresh clock. The reply to a stream we
        open is believed whole (nobody can spoof it), so one sync closes the
        gap. A spoofed sender costs one sync per member per verify interval.
        """
        name = self._member_at.get(source)
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

    # ================================================================== value domains

    def _message_problem(self, msg: sw.SerfMessage, trusted: bool = False) -> str | None:
        """Why a decoded Serf message is outside our domains (see :mod:`.domains`).

        ``trusted``: it came in the reply to a stream we opened; its times
        are believed whatever their jump (see :meth:`_verify_sender`).
        """
        if isinstance(msg, (sw.JoinIntent, sw.LeaveIntent)):
            return (self._name_problem(msg.node, "intent")
                    or self._ltime_problem(self.clock, msg.ltime, "intent", trusted))
        if isinstance(msg, sw.UserEvent):
            if len(msg.name.encode("utf-8", "surrogateescape")) + len(
                    msg.payload) > dom.MAX_USER_EVENT_BYTES:
                return "event_too_large"
            problem = dom.event_name_problem(msg.name)
            return problem or self._ltime_problem(self.event_clock, msg.ltime, "event", trusted)
        if isinstance(msg, sw.Query):
            return self._query_problem(msg)
        if isinstance(msg, sw.QueryResponse):
            return self._name_problem(msg.from_, "response_from")
        if isinstance(msg, sw.Relay):
            return self._relay_problem(msg)
        return None

    def _name_problem(self, name: str, what: str) -> str | None:
        problem = member_domains.name_problem(name)
        if problem is None and self.config.validate_node_names:
            problem = member_domains.strict_name_problem(name)
        return None if problem is None else f"{what}_{problem}"

    @staticmethod
    def _ltime_problem(clock: LamportClock, ltime: int, what: str,
                       trusted: bool = False) -> str | None:
        if trusted or dom.plausible_ltime(clock.time(), ltime):
            return None
        return f"{what}{_IMPLAUSIBLE}"

    def _query_problem(self, q: sw.Query) -> str | None:
        problem = (dom.event_name_problem(q.name)
                   or self._name_problem(q.source_node, "query_source")
                   or dom.query_timeout_problem(q.timeout_ns))
        if problem is None:
            addr_problem = member_domains.address_problem(q.addr, q.port)
            problem = None if addr_problem is None else "query_" + addr_problem
        if problem is None:
            # Replies go to (Addr, Port): it must be the sender's, or anyone
            # could make the whole cluster answer a third party.
            sender = self._members.get(q.source_node)
            if sender is not None and (sender.addr, sender.port) != (q.addr, q.port):
                problem = "query_addr_mismatch"
        return problem or self._ltime_problem(self.query_clock, q.ltime, "query")

    def _relay_problem(self, relay: sw.Relay) -> str | None:
        """Serf relays only query responses, and we only to live members."""
        try:
            inner = sw.decode_serf(relay.message)
        except DecodeError:
            return "relay_payload"
        if not isinstance(inner, sw.QueryResponse):
            return "relay_payload"
        dest = (relay.dest_addr, relay.dest_port)
        if not any((m.addr, m.port) == dest and m.status == MemberStatus.ALIVE
                   for m in self._members.values()):
            return "relay_unknown_dest"
        return None

    def has_broadcasts(self) -> bool:
        return bool(self._intents or self._query_queue or self._event_queue)

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        transmits = retransmit_limit(self.config.retransmit_mult, self.alive_count())
        out = self._intents.take(overhead, limit, transmits)
        used = sum(len(m) + overhead for m in out)
        for queue in (self._query_queue, self._event_queue):
            if queue:
                more = queue.take(overhead, limit - used, transmits)
                used += sum(len(m) + overhead for m in more)
                out.extend(more)
        return out

    def local_state(self, join: bool) -> bytes:
        ring = tuple(None if slot is None else sw.EventSlot(
            slot[0], tuple(sw.EventRecord(n, p) for n, p in slot[1]))
            for slot in self._event_ring.slots())
        pp = sw.SerfPushPull(self.clock.time(),
                             {name: m.status_ltime for name, m in self._members.items()},
                             tuple(self._left), self.event_clock.time(), ring,
                             self.query_clock.time())
        return sw.encode_serf(pp)

    def merge_remote_state(self, payload: bytes, join: bool, now: float,
                           trusted: bool = False) -> bool:
        """Merge a peer's Serf state (Serf's MergeRemoteState, with our domains).

        ``trusted``: the reply to a stream we opened, so its clocks are
        believed whatever their jump (see :meth:`_verify_sender`). True when
        its clocks were refused as implausible (the node then syncs with the
        sender, as :meth:`_verify_sender` does for a datagram).
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
        # Status times are intents' times: held to the member clock like them.
        member_times = (pp.ltime, max(pp.status_ltimes.values(), default=0))
        problem = (self._ltime_problem(self.clock, max(member_times), "push_pull", trusted)
                   or self._ltime_problem(self.event_clock, pp.event_ltime, "push_pull", trusted)
                   or self._ltime_problem(self.query_clock, pp.query_ltime, "push_pull", trusted))
        if problem is not None:
            self.stats["drop.serf." + problem] += 1
            return problem.endswith(_IMPLAUSIBLE)
        if pp.ltime > 0:
            self.clock.witness(pp.ltime - 1)
        if pp.event_ltime > 0:
            self.event_clock.witness(pp.event_ltime - 1)
        if pp.query_ltime > 0:
            self.query_clock.witness(pp.query_ltime - 1)
        left = set(pp.left_members)
        for name in pp.left_members:
            if self._counted_name_problem(name, "push_pull"):
                continue
            leave = sw.LeaveIntent(dom.saturating_add(pp.status_ltimes.get(name, 0)), name)
            if self._on_leave_intent(leave, now) and self._is_leaving(name):
                # A peer says a member we see alive has left. Serf believes it
                # quietly; if it is not true, the member never hears of it and
                # stays "leaving" in our view for good. Gossiped, the intent
                # reaches the member, which refutes it if it is still here.
                self.stats["intent.regossiped_from_push_pull"] += 1
                self._regossip(self._intents, sw.encode_serf(leave))
        self._refute_stale_leave(pp.status_ltimes.get(self.name), now)
        for name, ltime in pp.status_ltimes.items():
            if name not in left and not self._counted_name_problem(name, "push_pull"):
                self._on_join_intent(sw.JoinIntent(ltime, name), now)
        # Joining with "ignore old", the events the peer holds are history:
        # remembered as seen, not delivered. Serf instead drops every event
        # older than the peer's event clock, which one forged push-pull or
        # one event that was never gossiped can move past everyone else's:
        # their next events were then dropped for good (tests/unit/test_hostile_repros.py).
        ignore_old = join and bool(self._ignore_old_joins)
        refused = False
        for slot in pp.events:
            if slot is None:
                continue
            for record in slot.events:
                event = sw.UserEvent(slot.ltime, record.name, record.payload)
                problem = self._message_problem(event, trusted)
                if problem is not None:
                    self.stats["drop.serf." + problem] += 1
                    refused = refused or problem.endswith(_IMPLAUSIBLE)
                elif ignore_old:
                    self.event_clock.witness(event.ltime)
                    self._event_ring.add(event.ltime, (event.name, event.payload))
                else:
                    self._on_user_event(event, now)
        return refused

    def _refute_stale_leave(self, ltime: int | None, now: float) -> None:
        """A peer holds our status at a time newer than ours: say we are alive.

        That time comes from an intent about us that we never heard: most
        likely a leave (forged, or gossiped while we were cut off), leaving us
        "leaving" in that peer's view for good, since a leave is refuted only
        by the member itself and gossip does not repeat it. Push-pull carries
        it as a status time, so the periodic sync brings the news; a newer
        join intent repairs every view. Serf has no such repair.
        """
        me = self._members.get(self.name)
        if ltime is None or me is None or ltime <= me.status_ltime or self._state != _ALIVE:
            return
        self.stats["intent.refuted_from_push_pull"] += 1
        self.clock.witness(ltime)
        self._broadcast_join(self.clock.time(), now)

    def _counted_name_problem(self, name: str, what: str) -> bool:
        problem = self._name_problem(name, what)
        if problem is not None:
            self.stats["drop.serf." + problem] += 1
        return problem is not None

    def ack_payload(self) -> bytes:
        return b""

    # ================================================================== memberlist events

    def _pump(self, now: float) -> None:
        """Move the node's effects into ours, turning membership events into Serf's."""
        for effect in self.node.take_effects():
            if isinstance(effect, NodeMemberEvent):
                self._on_node_event(effect, now)
            elif isinstance(effect, JoinFinished):
                self._on_join_finished(effect, now)
                self._effects.append(effect)
            else:
                self._effects.append(effect)

    def _on_node_event(self, event: NodeMemberEvent, now: float) -> None:
        node = event.member
        if event.kind == EventKind.JOIN:
            self._on_node_join(node.name, node.addr, node.port, node.meta, node.vsn, now)
        elif event.kind == EventKind.UPDATE:
            m = self._members.get(node.name)
            if m is None:
                return
            self._place(m, node.addr, node.port)
            m.vsn = node.vsn
            m.tags = self._decode_tags(node.meta)
            self._emit(ev.EventType.MEMBER_UPDATE, m)
        else:
            self._on_node_leave(node.name, node.state, now)

    def _decode_tags(self, meta: bytes) -> dict[str, str]:
        try:
            return sw.decode_tags(meta)
        except DecodeError:
            self.stats["drop.serf.tags"] += 1
            return {}

    def _on_node_join(self, name: str, addr: str, port: int, meta: bytes, vsn: bytes,
                      now: float) -> None:
        m = self._members.get(name)
        if m is None:
            m = _Member(name, addr, port, self._decode_tags(meta), vsn)
            intent = self._recent_intents.get(name)
            if intent is not None:
                kind, ltime, _ = intent
                m.status_ltime = ltime
                if kind == sw.SerfMessageType.LEAVE:
                    m.status = MemberStatus.LEAVING
                    m.leave_time = now
            self._members[name] = m
        else:
            old = m.status
            m.status = MemberStatus.ALIVE
            m.leave_time = 0.0
            m.vsn = vsn
            m.tags = self._decode_tags(meta)
            if old in (MemberStatus.FAILED, MemberStatus.LEFT):
                self._drop_from(self._failed, name)
                self._drop_from(self._left, name)
        self._place(m, addr, port)
        self._emit(ev.EventType.MEMBER_JOIN, m)

    def _place(self, m: _Member, addr: str, port: int) -> None:
        """Record (or move) a member's address, keeping ``_member_at`` in step."""
        if self._member_at.get((m.addr, m.port)) == m.name:
            del self._member_at[(m.addr, m.port)]
        m.addr, m.port = addr, port
        self._member_at[(addr, port)] = m.name

    def _on_node_leave(self, name: str, state: MemberState, now: float) -> None:
        m = self._members.get(name)
        if m is None:
            return
        if m.status == MemberStatus.LEAVING or (
                m.status == MemberStatus.ALIVE and state == MemberState.LEFT):
            # memberlist's own "left" (dead from the node itself) is a graceful leave even
            # when the intent has not reached us yet (Serf 0.9 would say failed first).
            m.status = MemberStatus.LEFT
            m.leave_time = now
            self._left.append(name)
            self._emit(ev.EventType.MEMBER_LEAVE, m)
        elif m.status == MemberStatus.ALIVE:
            m.status = MemberStatus.FAILED
            m.leave_time = now
            self._failed.append(name)
            self._emit(ev.EventType.MEMBER_FAILED, m)
        else:
            self.stats["leave.bad_state"] += 1
        self._forget_gone_beyond_cap()

    def _forget_gone_beyond_cap(self) -> None:
        """Reap the longest-gone members early past :data:`~.domains.MAX_GONE_MEMBERS`.

        Serf keeps failed and left members a day, and sends every one in each
        push-pull: fake members joining and dying in bulk would otherwise grow
        that state until no push-pull fits a stream.
        """
        while len(self._failed) + len(self._left) > dom.MAX_GONE_MEMBERS:
            oldest = min((names[0] for names in (self._failed, self._left) if names),
                         key=lambda name: self._members[name].leave_time
                         if name in self._members else 0.0)
            self.stats["gone.forgotten"] += 1
            self._drop_from(self._failed, oldest)
            self._drop_from(self._left, oldest)
            self._erase(oldest)

    def _on_join_finished(self, effect: JoinFinished, now: float) -> None:
        self._ignore_old_joins.discard(effect.join_id)
        if effect.join_id in self._user_joins:
            self._user_joins.discard(effect.join_id)
            if effect.contacted > 0 and self._state == _ALIVE:
                self._broadcast_join(self.clock.time(), now)
                delay = CATCH_UP_GOSSIP_ROUNDS * self.config.gossip_interval
                self._schedule(now + delay, _T_JOIN_FOLLOW_UP, None)

    def _broadcast_join(self, ltime: int, now: float) -> None:
        msg = sw.JoinIntent(ltime, self.name)
        self.clock.witness(ltime)
        self._on_join_intent(msg, now)
        self._intents.queue(None, sw.encode_serf(msg))

    # ================================================================== catching up

    def _expect_member(self, name: str, now: float) -> None:
        """Someone (re)joined that memberlist has not announced: check again soon.

        Gossip reaches each member ~retransmit-limit times on average, so in a
        big enough burst of joins some member misses some alive message
        entirely (p ~ e^-8 per pair at 50 nodes) and, in memberlist, waits for
        its next push-pull, up to minutes away: Serf's 30-90 s join
        stragglers. The same goes for a member restarted after a crash, which
        we go on seeing as failed. The Serf join intent travels by its own
        gossip; hearing it for a member memberlist does not show alive says we
        missed its alive message, so we sync state with a random member
        instead of waiting. Costs nothing when nothing was missed.
        """
        if not self._catch_up:
            delay = CATCH_UP_GOSSIP_ROUNDS * self.config.gossip_interval
            self._schedule(now + delay, _T_CATCH_UP, None)
        self._catch_up.add(name)

    def _follow_up_join(self, now: float) -> None:
        """Sync once more, a second after our join, with a random member.

        The join's push-pull gave us the seed's table as it was then; members
        joining at the same moment were not in it, and their alive messages
        were gossiped mostly before anyone knew us. A second sync picks up
        what the seed and everyone else learnt meanwhile (in a 5-agent storm
        one joiner went 8 s without three of the others).
        """
        if self._state == _ALIVE and self.node.sync_now(now):
            self.stats["join.follow_up_sync"] += 1

    def _is_leaving(self, name: str) -> bool:
        m = self._members.get(name)
        return m is not None and m.status == MemberStatus.LEAVING

    def _is_alive(self, name: str) -> bool:
        m = self._members.get(name)
        return m is not None and m.status == MemberStatus.ALIVE

    def _catch_up_now(self, now: float) -> None:
        missing = [n for n in self._catch_up if not self._is_alive(n)]
        self._catch_up.clear()
        if missing and self._state == _ALIVE and self.node.sync_now(now):
            self.stats["catch_up.sync"] += 1

    # ================================================================== intents

    def _upsert_intent(self, name: str, kind: int, ltime: int, now: float) -> bool:
        known = self._recent_intents.get(name)
        if known is None or ltime > known[1]:
            if known is None and len(self._recent_intents) >= dom.MAX_RECENT_INTENTS:
                # Full of names nobody announced: forget the oldest (dicts keep order).
                del self._recent_intents[next(iter(self._recent_intents))]
                self.stats["intent.evicted"] += 1
            self._recent_intents[name] = (kind, ltime, now)
            return True
        return False

    def _on_join_intent(self, msg: sw.JoinIntent, now: float) -> bool:
        """Apply a join intent; True if it was news (so rebroadcast it)."""
        self.clock.witness(msg.ltime)
        m = self._members.get(msg.node)
        if m is None:
            return self._upsert_intent(msg.node, sw.SerfMessageType.JOIN, msg.ltime, now)
        if msg.ltime <= m.status_ltime:
            return False
        m.status_ltime = msg.ltime
        if m.status == MemberStatus.LEAVING:
            m.status = MemberStatus.ALIVE
        return True

    def _on_leave_intent(self, msg: sw.LeaveIntent, now: float) -> bool:
        """Apply a leave intent; True if it was news (so rebroadcast it)."""
        self.clock.witness(msg.ltime)
        m = self._members.get(msg.node)
        if m is None:
            return self._upsert_intent(msg.node, sw.SerfMessageType.LEAVE, msg.ltime, now)
        if msg.ltime <= m.status_ltime:
            return False
        if msg.node == self.name and self._state == _ALIVE:
            # Someone says we are leaving and we are not: refute with a newer join.
            self._broadcast_join(self.clock.time(), now)
            return False
        if m.status == MemberStatus.ALIVE:
            m.status = MemberStatus.LEAVING
            m.status_ltime = msg.ltime
            m.leave_time = now
        elif m.status == MemberStatus.FAILED:
            m.status = MemberStatus.LEFT
            m.status_ltime = msg.ltime
            self._drop_from(self._failed, m.name)
            self._left.append(m.name)
            self._emit(ev.EventType.MEMBER_LEAVE, m)
        elif m.status in (MemberStatus.LEAVING, MemberStatus.LEFT):
            # Serf with prune support reports these as news (so a prune
            # spreads) without recording the time: then every newer leave for
            # a member already gone is news again at every node, for ever, and
            # one forged leave with a high time loops through the cluster's
            # gossip, re-queued on every receipt. Recorded, it is news once.
            m.status_ltime = msg.ltime
        else:
            return False
        if msg.prune:
            self._prune(m, now)
        return True

    def _prune(self, m: _Member, now: float) -> None:
        if m.status == MemberStatus.LEAVING:
            self._schedule(now + self.config.broadcast_timeout + self.config.leave_propagate_delay,
                           _T_PRUNE, m.name)
        else:
            self._erase(m.name)

    def _prune_due(self, name: str, now: float) -> None:
        """Erase a pruned member unless it came back meanwhile.

        Serf erases unconditionally; then a forged ``leave(prune)`` for a
        live member, refuted by its join or not (it may never hear it),
        still removes it from our table while memberlist keeps it alive: it
        would vanish from our view for good.
        """
        m = self._members.get(name)
        if m is not None and m.status == MemberStatus.ALIVE:
            self.stats["prune.cancelled"] += 1
            return
        if m is not None and m.status == MemberStatus.LEAVING:
            # memberlist still sees it alive: erased now, it would never be
            # announced again. Wait until it is left (then erase) or its leave
            # expires (then keep it: see _expire_stale_leaves).
            self.stats["prune.deferred"] += 1
            self._prune(m, now)
            return
        self._erase(name)

    def _erase(self, name: str) -> None:
        m = self._members.pop(name, None)
        if m is None:
            return
        if self._member_at.get((m.addr, m.port)) == name:
            del self._member_at[(m.addr, m.port)]
        self._drop_from(self._failed, name)
        self._drop_from(self._left, name)
        self._emit(ev.EventType.MEMBER_REAP, m)

    @staticmethod
    def _drop_from(names: list[str], name: str) -> None:
        if name in names:
            names.remove(name)

    def _has_alive_members(self) -> bool:
        return any(m.status == MemberStatus.ALIVE and m.name != self.name
                   for m in self._members.values())

    def _emit(self, kind: ev.EventType, m: _Member) -> None:
        self._effects.append(Emit(ev.MemberEvent(kind, (m.snapshot(),))))

    # ================================================================== user events

    def _on_user_event(self, msg: sw.UserEvent, now: float) -> bool:
        """De-duplicate by (LTime, Name, Payload) in a 512-slot ring; emit once."""
        self.event_clock.witness(msg.ltime)
        if msg.ltime < self._event_min_time:
            return False
        if not self._event_ring.add(msg.ltime, (msg.name, msg.payload)):
            return False
        self._effects.append(Emit(ev.UserEvent(msg.ltime, msg.name, msg.payload, msg.cc)))
        return True

    # ================================================================== queries

    def _on_query(self, q: sw.Query, now: float) -> bool:
        """Handle a query (ours or a peer's); True if it should be rebroadcast."""
        self.query_clock.witness(q.ltime)
        if q.ltime < self._query_min_time:
            return False
        if not self._query_ring.add(q.ltime, q.id):
            return False
        rebroadcast = not q.no_broadcast
        if not self._should_process(q.filters):
            return rebroadcast
        if q.ack:
            ack = sw.QueryResponse(q.ltime, q.id, self.name, sw.QUERY_FLAG_ACK)
            dest = (q.addr, q.port)
            self.node.send_user(dest, sw.encode_serf(ack))
            self._relay_response(q.relay_factor, dest, ack)
        self._handle += 1
        pending = _InboundQuery(q, now + dom.query_timeout_seconds(q.timeout_ns))
        if len(self._inbound) >= dom.MAX_PENDING_QUERIES:
            del self._inbound[next(iter(self._inbound))]  # the oldest: handles only grow
            self.stats["query.pending_evicted"] += 1
        self._inbound[self._handle] = pending
        if q.name.startswith(sw.INTERNAL_QUERY_PREFIX):
            self._internal_query(self._handle, q, now)
            return rebroadcast
        self._schedule(pending.deadline, _T_QUERY_DEADLINE, self._handle)
        self._forget_evicted_query_timers()
        self._effects.append(Emit(ev.QueryEvent(q.ltime, self._handle, q.name, q.payload,
                                                q.source_node, pending.deadline)))
        return rebroadcast

    def _should_process(self, filters: Sequence[sw.Filter]) -> bool:
        for f in filters:
            if isinstance(f, sw.NodeFilter):
                if self.name not in f.nodes:
                    return False
            elif isinstance(f, sw.TagFilter):
                if not dom.tag_filter_matches(f.expr, self._tags.get(f.tag, "")):
                    return False
            else:
                return False
        return True

    def _relay_response(self, factor: int, dest: Address, resp: sw.QueryResponse) -> None:
        """Send copies of a response through ``factor`` random peers (Serf relay),
        at most :data:`~.domains.RELAY_FACTOR_MAX`: each copy is a datagram we
        make other members send."""
        if factor > dom.RELAY_FACTOR_MAX:
            self.stats["query.relay_factor_capped"] += 1
            factor = dom.RELAY_FACTOR_MAX
        if factor <= 0 or len(self._members) < factor + 1:
            return
        raw = sw.encode_serf(sw.relay_response(dest[0], dest[1], "", resp))
        if len(raw) > self.config.query_response_size_limit:
            return
        candidates = [m for m in self._members.values()
                      if m.status == MemberStatus.ALIVE and m.name != self.name
                      and len(m.vsn) >= 2 and m.vsn[1] >= 5]
        for m in self._rng.sample(candidates, min(factor, len(candidates))):
            self.node.send_user((m.addr, m.port), raw)

    def _on_query_response(self, resp: sw.QueryResponse) -> None:
        out = self._outbound.get(resp.ltime)
        if out is None or out.id != resp.id:
            self.stats["query.reply_unknown"] += 1
            return
        if resp.ack:
            if resp.from_ in out.acks:
                return
            out.acks.add(resp.from_)
            self._effects.append(QueryReply(out.handle, "ack", resp.from_))
        else:
            if resp.from_ in out.responses:
                return
            out.responses.add(resp.from_)
            self._effects.append(QueryReply(out.handle, "response", resp.from_, resp.payload))

    def _internal_query(self, handle: int, q: sw.Query, now: float) -> None:
        """Serf's ``_serf_*`` queries: ping (ack only), conflict, key management."""
        kind = q.name[len(sw.INTERNAL_QUERY_PREFIX):]
        if kind == "ping":
            self._inbound.pop(handle, None)
            return
        if kind == "conflict":
            name = q.payload.decode("utf-8", "surrogateescape")
            m = self._members.get(name)
            member = None if m is None or name == self.name else sw.SerfMember(
                m.name, m.addr, m.port, m.tags, int(m.status), *m.versions())
            self._respond_internal(handle, sw.encode_serf(sw.ConflictResponse(member)), now)
            return
        if kind in ("install-key", "use-key", "remove-key", "list-keys"):
            self._respond_internal(handle, self._key_query(kind, q.payload), now)
            return
        self._inbound.pop(handle, None)
        self.stats["query.internal_unknown"] += 1

    def _respond_internal(self, handle: int, payload: bytes, now: float) -> None:
        try:
            self.respond(handle, payload, now)
        except SwimError:
            self.stats["query.internal_response_failed"] += 1

    def _key_query(self, kind: str, payload: bytes) -> bytes:
        """Answer Serf's keyring queries (install/use/remove/list) from our keyring."""
        from swimlib.wire.crypto import KeyringError, encode_key

        keyring = self.keyring
        if keyring is None:
            return sw.encode_serf(sw.KeyResponse(
                False, "No keyring to modify (encryption not enabled)"))
        try:
            req = sw.decode_serf(payload)
        except DecodeError:
            req = None
        if not isinstance(req, sw.KeyRequest):
            return sw.encode_serf(sw.KeyResponse(False, "Failed to decode key request"))
        try:
            if kind == "install-key":
                keyring.add(req.key)
            elif kind == "use-key":
                keyring.use(req.key)
            elif kind == "remove-key":
                keyring.remove(req.key)
        except (KeyringError, ValueError) as exc:
            return sw.encode_serf(sw.KeyResponse(False, str(exc)))
        if kind != "list-keys":
            self.stats["keyring.changed"] += 1
            return sw.encode_serf(sw.KeyResponse(True))
        primary = encode_key(keyring.primary)
        keys = tuple(keyring.to_base64())
        while True:  # truncate the key list to fit the response limit, as Serf does
            raw = sw.encode_serf(sw.KeyResponse(True, "", keys, primary))
            if len(raw) <= self.config.query_response_size_limit - 64 or not keys:
                return raw
            keys = keys[:-1]

    # ================================================================== timers

    def _forget_evicted_query_timers(self) -> None:
        """Drop the deadline timers of queries evicted by the pending cap.

        Each query from a peer waits on a timer up to its timeout (an hour at
        most); evicted early, its timer would stay behind, and a flood would
        hold one per query for that hour. Rebuilt when the heap holds twice
        the cap, so the cost is amortised over the queries that filled it.
        """
        if len(self._timers) <= 2 * dom.MAX_PENDING_QUERIES:
            return
        inbound = self._inbound
        self._timers = [t for t in self._timers
                        if t[2] != _T_QUERY_DEADLINE or isinstance(t[3], _OutboundQuery)
                        or t[3] in inbound]
        heapq.heapify(self._timers)
        self.stats["timers.compacted"] += 1

    def _schedule(self, when: float, kind: int, arg: Any) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (when, self._timer_seq, kind, arg))

    def _fire(self, kind: int, arg: Any, now: float) -> None:
        if kind == _T_REAP:
            self._schedule(now + self.config.reap_interval, _T_REAP, None)
            self._reap(now)
        elif kind == _T_RECONNECT:
            self._schedule(now + self.config.reconnect_interval, _T_RECONNECT, None)
            self._reconnect(now)
        elif kind == _T_QUEUE_CHECK:
            self._schedule(now + 30.0, _T_QUEUE_CHECK, None)
            for queue in (self._intents, self._event_queue, self._query_queue):
                dropped = queue.prune(self.config.max_queue_depth)
                if dropped:
                    self.stats["queue.pruned"] += dropped
        elif kind == _T_QUERY_DEADLINE:
            if isinstance(arg, _OutboundQuery):
                if self._outbound.get(arg.ltime) is arg:
                    del self._outbound[arg.ltime]
                    self._effects.append(QueryDone(arg.handle))
            else:
                self._inbound.pop(arg, None)
        elif kind == _T_LEAVE:
            self._advance_leave(now)
        elif kind == _T_PRUNE:
            self._prune_due(arg, now)
        elif kind == _T_CATCH_UP:
            self._catch_up_now(now)
        elif kind == _T_JOIN_FOLLOW_UP:
            self._follow_up_join(now)

    def _reap(self, now: float) -> None:
        for names, timeout in ((self._failed, self.config.reconnect_timeout),
                               (self._left, self.config.tombstone_timeout)):
            for name in list(names):
                m = self._members.get(name)
                if m is None or now - m.leave_time > timeout:
                    self._erase(name)
                    self._drop_from(names, name)
        cutoff = now - self.config.recent_intent_timeout
        for name in [n for n, (_, _, t) in self._recent_intents.items() if t < cutoff]:
            del self._recent_intents[name]
        self._expire_stale_leaves(now)

    def _expire_stale_leaves(self, now: float) -> None:
        """A member "leaving" that memberlist still sees alive long after is alive.

        A member that really leaves stops gossiping within its broadcast
        timeout and leave-propagate delay, and memberlist then reports it
        left. One still alive ten times that long after its leave intent did
        not send it, or never heard it to refute it: a Serf peer, which only
        refutes a leave it hears (swimlib members also refute through
        push-pull, see :meth:`_refute_stale_leave`). Serf keeps it "leaving"
        for good; the next leave intent, newer, still applies.
        """
        grace = 10 * (self.config.broadcast_timeout + self.config.leave_propagate_delay)
        for m in self._members.values():
            if (m.status == MemberStatus.LEAVING and m.name != self.name
                    and now - m.leave_time > grace):
                m.status = MemberStatus.ALIVE
                self.stats["intent.leave_expired"] += 1

    def _reconnect(self, now: float) -> None:
        """Try to rejoin one failed member, with probability failed/alive (Serf)."""
        if not self._failed or self._state != _ALIVE:
            return
        alive = max(1, len(self._members) - len(self._failed) - len(self._left))
        if self._rng.random() > len(self._failed) / alive:
            return
        m = self._members.get(self._rng.choice(self._failed))
        if m is not None:
            self.stats["reconnect.attempts"] += 1
            self.node.join([(m.addr, m.port)], now)

    def _mark_intent_sent(self) -> None:
        self._intent_sent = True

    def _advance_leave(self, now: float) -> None:
        """Step the graceful leave: intent out -> memberlist leave -> propagate -> left."""
        if self._leave_phase == "intent" and (self._intent_sent or now >= self._leave_deadline):
            self.node.leave(now)
            self._leave_phase = "memberlist"
            self._leave_deadline = now + self.config.broadcast_timeout
        if self._leave_phase == "memberlist" and (self.node.leave_broadcast_sent
                                                  or now >= self._leave_deadline):
            self._leave_phase = "propagate"
            self._leave_deadline = now + self.config.leave_propagate_delay
        if self._leave_phase == "propagate" and now >= self._leave_deadline:
            self._leave_phase = "done"
            self._state = _LEFT
            self._effects.append(LeaveFinished())
            return
        if self._leave_phase in ("intent", "memberlist", "propagate"):
            poll = min(self._leave_deadline, now + self.config.gossip_interval)
            self._schedule(poll, _T_LEAVE, None)
