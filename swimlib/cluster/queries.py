"""Serf's queries: sent, answered, relayed, de-duplicated; Serf's internal queries.

A query is gossiped like an event; each member it reaches (and whose
filters it passes) may ack it and respond, directly to the sender's address
or relayed through a few other members. The sender collects acks and
responses until the deadline. Names starting ``_serf_`` are Serf's own:
ping, conflict (who else holds a name) and key management (:mod:`.keys`).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from swimlib.cluster import domains as dom
from swimlib.cluster import events as ev
from swimlib.cluster.clocks import SerfClocks, ltime_problem
from swimlib.cluster.dedup import DedupRing
from swimlib.cluster.effects import (
    ClusterEffect,
    Emit,
    KeyringChanged,
    QueryDone,
    QueryReply,
    SendUser,
)
from swimlib.cluster.keys import KEY_QUERIES, answer_key_query
from swimlib.cluster.members import MemberStatus, SerfMembers, name_problem
from swimlib.config import Config
from swimlib.errors import DecodeError, SwimError
from swimlib.membership import domains as member_domains
from swimlib.membership.broadcasts import BroadcastQueue
from swimlib.membership.timers import TimerEntry, Timers
from swimlib.membership.types import Address
from swimlib.wire import serf as sw

if TYPE_CHECKING:  # cryptography is imported only when encryption is on
    from swimlib.wire.crypto import Keyring


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


class Queries:
    """Our queries in flight, others' queries we may answer, and the query ring."""

    def __init__(self, name: str, config: Config, rng: random.Random, clocks: SerfClocks,
                 members: SerfMembers, send_user: SendUser,
                 local_tags: Callable[[], Mapping[str, str]],
                 keyring: Callable[[], Keyring | None], *, stats: Counter[str],
                 effects: list[ClusterEffect], timers: Timers) -> None:
        self.name = name
        self.config = config
        self._rng = rng
        self._clocks = clocks
        self._members = members
        self._send_user = send_user
        self._local_tags = local_tags
        self._keyring = keyring
        self._stats = stats
        self._effects = effects
        self._timers = timers
        self._ring: DedupRing[int] = DedupRing(
            "query", stats, dom.MAX_EVENTS_PER_SLOT, size=sw.EVENT_BUFFER_SIZE)
        #: Queries and responses waiting to be gossiped.
        self.queue = BroadcastQueue()
        self._outbound: dict[int, _OutboundQuery] = {}  # by ltime (Serf's key)
        self._inbound: dict[int, _InboundQuery] = {}  # by local handle
        self._handle = 0

    # ------------------------------------------------------------------ sending

    def send(self, name: str, payload: bytes, now: float, local: Address, timeout: float, *,
             filter_nodes: Sequence[str] = (), filter_tags: Mapping[str, str] | None = None,
             request_ack: bool = False, relay_factor: int = 0) -> int:
        """Send a query from ``local``; returns the handle its replies carry."""
        problem = dom.event_name_problem(name)
        if problem is not None:
            raise SwimError(f"query name {name!r} is not allowed ({problem})")
        timeout = min(timeout, dom.QUERY_TIMEOUT_MAX)
        filters: list[sw.Filter] = []
        if filter_nodes:
            filters.append(sw.NodeFilter(tuple(filter_nodes)))
        for tag, expr in (filter_tags or {}).items():
            filters.append(sw.TagFilter(tag, expr))
        q = sw.Query(self._clocks.query.time(), self._rng.randrange(1 << 31), local[0],
                     local[1], self.name, name, payload, tuple(filters),
                     sw.QUERY_FLAG_ACK if request_ack else 0, relay_factor,
                     int(timeout * 1e9))
        raw = sw.encode_serf(q)
        if len(raw) > self.config.query_size_limit:
            raise SwimError(f"query exceeds limit of {self.config.query_size_limit} bytes")
        self._handle += 1
        out = _OutboundQuery(self._handle, q.ltime, q.id, now + timeout)
        self._outbound[q.ltime] = out
        self._timers.schedule(out.deadline, self._outbound_deadline, out)
        self.receive(q, now)
        self.queue.queue(None, raw)
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
        self._send_user(dest, raw)
        self._relay_response(pending.relay_factor, dest, resp)

    # ------------------------------------------------------------------ value domains

    def problem(self, q: sw.Query) -> str | None:
        """Why a received query is refused (None: accepted)."""
        problem = (dom.event_name_problem(q.name)
                   or name_problem(self.config, q.source_node, "query_source")
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
        return problem or ltime_problem(self._clocks.query, q.ltime, "query")

    def relay_problem(self, relay: sw.Relay) -> str | None:
        """Serf relays only query responses, and we only to live members."""
        try:
            inner = sw.decode_serf(relay.message)
        except DecodeError:
            return "relay_payload"
        if not isinstance(inner, sw.QueryResponse):
            return "relay_payload"
        if not self._members.alive_at((relay.dest_addr, relay.dest_port)):
            return "relay_unknown_dest"
        return None

    # ------------------------------------------------------------------ receiving

    def receive(self, q: sw.Query, now: float) -> bool:
        """Handle a query (ours or a peer's); True if it should be rebroadcast."""
        clocks = self._clocks
        clocks.query.witness(q.ltime)
        if q.ltime < clocks.query_min_time:
            return False
        if not self._ring.add(q.ltime, q.id):
            return False
        self._stats["serf.queries"] += 1  # serf.queries: a new query seen
        rebroadcast = not q.no_broadcast
        if not self._should_process(q.filters):
            return rebroadcast
        if q.ack:
            ack = sw.QueryResponse(q.ltime, q.id, self.name, sw.QUERY_FLAG_ACK)
            dest = (q.addr, q.port)
            self._send_user(dest, sw.encode_serf(ack))
            self._relay_response(q.relay_factor, dest, ack)
        self._handle += 1
        pending = _InboundQuery(q, now + dom.query_timeout_seconds(q.timeout_ns))
        if len(self._inbound) >= dom.MAX_PENDING_QUERIES:
            del self._inbound[next(iter(self._inbound))]  # the oldest: handles only grow
            self._stats["query.pending_evicted"] += 1
        self._inbound[self._handle] = pending
        if q.name.startswith(sw.INTERNAL_QUERY_PREFIX):
            self._internal_query(self._handle, q, now)
            return rebroadcast
        self._timers.schedule(pending.deadline, self._inbound_deadline, self._handle)
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
                if not dom.tag_filter_matches(f.expr, self._local_tags().get(f.tag, "")):
                    return False
            else:
                return False
        return True

    def _relay_response(self, factor: int, dest: Address, resp: sw.QueryResponse) -> None:
        """Send copies of a response through ``factor`` random peers (Serf relay),
        at most :data:`~.domains.RELAY_FACTOR_MAX`: each copy is a datagram we
        make other members send."""
        if factor > dom.RELAY_FACTOR_MAX:
            self._stats["query.relay_factor_capped"] += 1
            factor = dom.RELAY_FACTOR_MAX
        if factor <= 0 or len(self._members) < factor + 1:
            return
        raw = sw.encode_serf(sw.relay_response(dest[0], dest[1], "", resp))
        if len(raw) > self.config.query_response_size_limit:
            return
        candidates = [m for m in self._members.by_name.values()
                      if m.status == MemberStatus.ALIVE and m.name != self.name
                      and len(m.vsn) >= 2 and m.vsn[1] >= 5]
        for m in self._rng.sample(candidates, min(factor, len(candidates))):
            self._send_user((m.addr, m.port), raw)

    def on_response(self, resp: sw.QueryResponse) -> None:
        out = self._outbound.get(resp.ltime)
        if out is None or out.id != resp.id:
            self._stats["query.reply_unknown"] += 1
            return
        if resp.ack:
            if resp.from_ in out.acks:
                self._stats["query.duplicate_acks"] += 1
                return
            self._stats["query.acks"] += 1
            out.acks.add(resp.from_)
            self._effects.append(QueryReply("ack", resp.from_, handle=out.handle))
        else:
            if resp.from_ in out.responses:
                self._stats["query.duplicate_responses"] += 1
                return
            self._stats["query.responses"] += 1
            out.responses.add(resp.from_)
            self._effects.append(QueryReply("response", resp.from_, resp.payload,
                                                 handle=out.handle))

    # ------------------------------------------------------------------ Serf's own queries

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
        if kind in KEY_QUERIES:
            answer, changed = answer_key_query(self._keyring(), kind, q.payload,
                                               self.config.query_response_size_limit)
            self._respond_internal(handle, answer, now)
            if changed:
                self._stats["keyring.changed"] += 1
                self._effects.append(KeyringChanged())
            return
        self._inbound.pop(handle, None)
        self._stats["query.internal_unknown"] += 1

    def _respond_internal(self, handle: int, payload: bytes, now: float) -> None:
        try:
            self.respond(handle, payload, now)
        except SwimError:
            self._stats["query.internal_response_failed"] += 1

    # ------------------------------------------------------------------ deadlines

    def _outbound_deadline(self, out: _OutboundQuery, now: float) -> None:
        if self._outbound.get(out.ltime) is out:
            del self._outbound[out.ltime]
            self._effects.append(QueryDone(out.handle))

    def _inbound_deadline(self, handle: int, now: float) -> None:
        self._inbound.pop(handle, None)

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
        inbound_deadline = self._inbound_deadline

        def keep(entry: TimerEntry) -> bool:
            return entry[2] != inbound_deadline or entry[3] in inbound

        self._timers.discard(keep)
        self._stats["timers.compacted"] += 1
