"""A SWIM + Lifeguard member as a sans-IO state machine (memberlist 0.2 behaviour).

Feed it datagrams (:meth:`Node.handle_packet`), inbound TCP exchanges
(:meth:`Node.handle_stream`), replies to the streams it asked for
(:meth:`Node.handle_stream_reply`) and the passage of time (:meth:`Node.tick`);
collect what it wants done with :meth:`Node.take_effects`. It never reads a
clock, never touches a socket and draws randomness only from the injected
``random.Random``: the same inputs give the same outputs, which is what lets
the simulator replay a whole cluster from a seed.

The precedence rules (who may override whom) live in ``_on_alive``,
``_on_suspect`` and ``_on_dead``, each following memberlist's ``state.go`` and
SWIM section 4.2; the formulas live in :mod:`.suspicion`, :mod:`.awareness`
and :mod:`.broadcasts`.
"""

from __future__ import annotations

import heapq
import math
import random
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from swimlib.config import Config
from swimlib.errors import ConfigError, DecodeError, SwimError
from swimlib.membership import domains
from swimlib.membership.awareness import Awareness
from swimlib.membership.broadcasts import BroadcastQueue, retransmit_limit
from swimlib.membership.delegate import Delegate, NullDelegate
from swimlib.membership.suspicion import (
    Suspicion,
    expected_confirmations,
    suspicion_min_timeout,
)
from swimlib.membership.types import (
    Address,
    DeathDeclared,
    Effect,
    EventKind,
    JoinFinished,
    Member,
    MemberEvent,
    MemberState,
    OpenStream,
    Refuted,
    SendPacket,
    SuspicionRaised,
)
from swimlib.wire import codec
from swimlib.wire.messages import (
    DEFAULT_VSN,
    Ack,
    Alive,
    Dead,
    ErrResp,
    IndirectPing,
    Message,
    Nack,
    Ping,
    PushNodeState,
    PushPull,
    Suspect,
    UserMsg,
)

#: Bytes a compound header costs, and each part's length prefix.
_COMPOUND_HEADER = 2
_COMPOUND_PART = 2
#: AES-GCM version + nonce + tag added to every encrypted datagram.
_ENCRYPT_OVERHEAD = 29
#: Framing byte in front of each user (Serf) broadcast.
_USER_MSG_OVERHEAD = 1
#: memberlist scales the push-pull interval once the cluster exceeds this size.
_PUSH_PULL_SCALE_THRESHOLD = 32
#: Incarnations are uint32 on the wire.
_MAX_INCARNATION = domains.INCARNATION_MAX
#: Indirect probes we run for others at once; more are refused (each costs a
#: ping to an address the requester chose and a timer).
MAX_PENDING_RELAYS = 1024
#: Streams in flight that check a claimed new address of a member (see
#: :meth:`Node._may_move`): each is a TCP connection a claim makes us open.
MAX_ADDRESS_CHECKS = 16
#: Members re-checked when the sender of a refused push-pull is known only by
#: its IP (see :meth:`Node._verify_stream_sender`).
MAX_STREAM_SENDER_CHECKS = 4
#: Leave room for the message itself in a compound (Go 0.2.2 breaks at 128 parts).
_MAX_PIGGYBACK_PARTS = 120

# Timer kinds (small ints keep heap entries cheap).
_T_PROBE, _T_GOSSIP, _T_PUSH_PULL, _T_PROBE_TIMEOUT, _T_PROBE_DEADLINE = range(5)
_T_RELAY_EXPIRE, _T_SUSPICION = 5, 6
_PROBE_TIMERS = (_T_PROBE_TIMEOUT, _T_PROBE_DEADLINE)

# Pending stream purposes.
_S_JOIN, _S_PUSH_PULL, _S_TCP_PING = range(3)

_VSN_CACHE: dict[bytes, bytes] = {DEFAULT_VSN: DEFAULT_VSN}


def _shared_vsn(vsn: bytes) -> bytes:
    """One bytes object per distinct Vsn: thousands of nodes share it in simulations."""
    return _VSN_CACHE.setdefault(vsn, vsn) if len(_VSN_CACHE) < 1024 else vsn


#: Encoded rows shared by every node in the process (a simulated cluster holds
#: the same row in thousands of tables).
_ROW_BYTES: dict[tuple[Any, ...], bytes] = {}
_ROW_BYTES_SIZE = 1 << 15


def push_pull_interval(base: float, n: int) -> float:
    """memberlist's push-pull period: ``base * (ceil(log2 n - 5) + 1)`` above 32 nodes."""
    if n <= _PUSH_PULL_SCALE_THRESHOLD:
        return base
    return base * (math.ceil(math.log2(n) - math.log2(_PUSH_PULL_SCALE_THRESHOLD)) + 1)


class NodeState:
    """One row of the member table (mutable; snapshots go out as :class:`Member`)."""

    __slots__ = ("addr", "heard", "incarnation", "meta", "name", "port", "row", "state",
                 "state_change", "vsn")

    def __init__(self, name: str, addr: str, port: int, meta: bytes, vsn: bytes,
                 incarnation: int, state: MemberState, state_change: float) -> None:
        self.name = name
        self.addr = addr
        self.port = port
        self.meta = meta
        self.vsn = vsn
        self.incarnation = incarnation
        self.state = state
        self.state_change = state_change
        #: This row's encoded push-pull bytes; None whenever a field changes.
        self.row: bytes | None = None
        #: It acked one of our pings from its own address since it was last
        #: announced at a new address: see :meth:`Node._prefer_heard`.
        self.heard = False

    @property
    def pmax(self) -> int:
        """Highest memberlist protocol the member understands (feature gates)."""
        return self.vsn[1] if len(self.vsn) >= 2 else 0

    def dead_or_left(self) -> bool:
        return self.state >= MemberState.DEAD

    def snapshot(self) -> Member:
        return Member(self.name, self.addr, self.port, self.meta, self.incarnation,
                      self.state, self.vsn)

    def encoded_row(self) -> bytes:
        row = self.row
        if row is None:
            key = (self.name, self.addr, self.port, self.meta, self.incarnation, self.state,
                   self.vsn)
            row = _ROW_BYTES.get(key)
            if row is None:
                row = codec.encode_node_state(PushNodeState(
                    self.name, self.addr, self.port, self.meta, self.incarnation,
                    int(self.state), self.vsn))
                if len(_ROW_BYTES) >= _ROW_BYTES_SIZE:
                    _ROW_BYTES.clear()
                _ROW_BYTES[key] = row
            self.row = row
        return row


class _Probe:
    """The probe in flight (memberlist runs at most one at a time)."""

    __slots__ = ("addr", "deadline", "expected_nacks", "helpers", "incarnation", "indirect_sent",
                 "nacks", "seq", "target", "tcp_ok", "tcp_pending", "unreachable")

    def __init__(self, seq: int, target: NodeState, deadline: float) -> None:
        self.seq = seq
        self.target = target.name
        self.incarnation = target.incarnation
        self.addr = (target.addr, target.port)
        self.deadline = deadline
        self.expected_nacks = 0
        self.nacks = 0
        self.helpers = 0
        self.indirect_sent = False
        self.tcp_ok = False
        self.tcp_pending = False
        #: The target's host said nothing listens there (see handle_unreachable).
        self.unreachable = False


class _Relay:
    """We are an indirect-probe helper: relay the target's ack to the requester."""

    __slots__ = ("nack", "orig_seq", "requester", "requester_is_member", "target")

    def __init__(self, orig_seq: int, requester: Address, nack: bool, target: Address,
                 requester_is_member: bool) -> None:
        self.orig_seq = orig_seq
        self.requester = requester
        self.nack = nack
        self.target = target
        self.requester_is_member = requester_is_member


class _JoinAttempt:
    __slots__ = ("contacted", "failed", "join_id", "remaining")

    def __init__(self, remaining: int, join_id: int) -> None:
        self.join_id = join_id
        self.remaining = remaining
        self.contacted = 0
        self.failed: list[Address] = []


class Node:
    """One cluster member's view and protocol duties. See the module docstring."""

    def __init__(self, name: str, addr: str, port: int, config: Config, rng: random.Random,
                 now: float, meta: bytes = b"", delegate: Delegate | None = None,
                 vsn: bytes = DEFAULT_VSN, encrypted: bool = False) -> None:
        if len(vsn) != 6:
            raise ConfigError("vsn must be 6 bytes")
        problem = self._name_problem_for(config, name)
        if problem is not None:
            raise ConfigError(f"node name {name!r} is not allowed ({problem})")
        if len(meta) > codec.MAX_META_SIZE:
            raise ConfigError(f"meta is {len(meta)} bytes; the limit is {codec.MAX_META_SIZE}")
        self.name = name
        self.addr = addr
        self.port = port
        self.config = config
        self._rng = rng
        self._delegate: Delegate = delegate if delegate is not None else NullDelegate()
        self._has_delegate = delegate is not None
        self._vsn = vsn
        self._encrypted = encrypted
        self._lifeguard = config.lifeguard
        self._compress_datagrams = config.enable_compression and config.compress_datagrams

        self._nodes: list[NodeState] = []  # probe order (shuffled round robin)
        self._node_map: dict[str, NodeState] = {}
        self._probe_index = 0
        self._seq = 0
        self._incarnation = 0
        self._stream_id = 0
        self._join_id = 0
        self._left = False
        self._leave_done = False

        self.awareness = Awareness(config.awareness_max_multiplier)
        self._broadcasts = BroadcastQueue()
        self._suspicions: dict[str, Suspicion] = {}
        self._ack_handlers: dict[int, _Probe | _Relay] = {}
        self._relays = 0
        #: Upper bound of the table's encoded size (see domains.MAX_TABLE_BYTES).
        self._table_bytes = 0
        #: When each member's view was last re-checked against the member itself.
        self._verified: dict[str, float] = {}
        #: Request ids of the streams checking a claimed new address.
        self._address_checks: set[int] = set()
        #: Members whose ``heard`` is set (so draws skip the filter while none is).
        self._heard_count = 0
        self._probe: _Probe | None = None
        self._probe_pending = False
        self._streams: dict[int, tuple[int, Any]] = {}

        self._timers: list[tuple[float, int, int, Any]] = []
        self._timer_seq = 0
        self._effects: list[Effect] = []
        self._handlers: dict[type, Callable[[Any, Address, float], None]] = {
            Ping: self._on_ping,
            IndirectPing: self._on_indirect_ping,
            Ack: self._on_ack,
            Nack: self._on_nack,
            Suspect: self._on_suspect_msg,
            Alive: self._on_alive_msg,
            Dead: self._on_dead_msg,
            UserMsg: self._on_user,
            ErrResp: self._on_err,
        }
        #: Counters: ``drop.<reason>`` for refused input, plus protocol activity.
        self.stats: Counter[str] = Counter()

        # Announce ourselves (memberlist setAlive): incarnation 1, queued broadcast.
        self._incarnation = 1
        self._on_alive(Alive(1, name, addr, port, meta, vsn), now, bootstrap=True)

        # Staggered periodic work so nodes started together do not tick in lockstep.
        self._schedule(now + rng.random() * config.probe_interval, _T_PROBE, None)
        self._schedule(now + rng.random() * config.gossip_interval, _T_GOSSIP, None)
        if config.push_pull_interval > 0:
            self._schedule(now + rng.random() * config.push_pull_interval, _T_PUSH_PULL, None)

    # ------------------------------------------------------------------ public API

    @property
    def incarnation(self) -> int:
        return self._node_map[self.name].incarnation

    @property
    def has_left(self) -> bool:
        return self._left

    @property
    def leave_broadcast_sent(self) -> bool:
        """After :meth:`leave`: whether our departure has been gossiped enough."""
        return self._leave_done

    @property
    def health_score(self) -> int:
        return self.awareness.score

    @property
    def num_nodes(self) -> int:
        """Table size, every state included (memberlist's estNumNodes)."""
        return len(self._nodes)

    def members(self) -> list[Member]:
        return [s.snapshot() for s in self._node_map.values()]

    def member(self, name: str) -> Member | None:
        st = self._node_map.get(name)
        return st.snapshot() if st is not None else None

    def state_of(self, name: str) -> MemberState | None:
        """The state of ``name`` in this view, without building a snapshot."""
        st = self._node_map.get(name)
        return st.state if st is not None else None

    def alive_count(self) -> int:
        return sum(1 for s in self._nodes if s.state == MemberState.ALIVE)

    def live_count(self) -> int:
        """Members not dead or left, self included (memberlist's NumMembers)."""
        return sum(1 for s in self._nodes if s.state <= MemberState.SUSPECT)

    def take_effects(self) -> list[Effect]:
        effects, self._effects = self._effects, []
        return effects

    def next_deadline(self, skip_idle: bool = False) -> float | None:
        """When :meth:`tick` next has work.

        With ``skip_idle`` the timers that would do nothing are not counted: a
        gossip tick while nothing is queued (it would only pick random peers
        and send nothing) and the timeout and deadline of a probe whose ack
        has come back. They are most of an idle agent's wake-ups; a real-time
        runtime sleeps through them: the gossip tick runs overdue at the next
        wake-up, the probe's timers are dropped. Ask again after every call
        that may queue a broadcast.
        The simulator does not skip, so its traces draw randomness as
        memberlist does.
        """
        timers = self._timers
        if not skip_idle:
            return timers[0][0] if timers else None
        self._drop_answered_probe_timers()
        if not timers:
            return None
        if timers[0][2] != _T_GOSSIP or self.has_broadcasts():
            return timers[0][0]
        # The idle gossip tick is first: the answer is the earliest timer after it.
        gossip = heapq.heappop(timers)
        try:
            self._drop_answered_probe_timers()
            return timers[0][0] if timers else None
        finally:
            heapq.heappush(timers, gossip)

    def _drop_answered_probe_timers(self) -> None:
        """Pop finished probes' timeout and deadline timers off the top of the heap.

        Firing them would do nothing; popping only from the top keeps this
        O(log n) per timer however many other timers (relays, suspicions) wait.
        """
        timers = self._timers
        probe = self._probe
        while timers and timers[0][2] in _PROBE_TIMERS and timers[0][3] is not probe:
            heapq.heappop(timers)

    def has_broadcasts(self) -> bool:
        """Whether a gossip tick now would send anything."""
        return bool(self._broadcasts) or (self._has_delegate and self._delegate.has_broadcasts())

    def tick(self, now: float) -> None:
        """Run every timer due at or before ``now``."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, kind, arg = heapq.heappop(timers)
            self._fire(kind, arg, now)

    def handle_unreachable(self, dest: Address, sent: bytes, now: float) -> None:
        """The host of ``dest`` answered ``sent`` (our datagram, decrypted) with
        "port unreachable": nothing listens there, the agent is gone.

        memberlist never sees these; a runtime that can (Linux, IP_RECVERR)
        passes them in. Only the waiting changes, never the verdict: a probe
        whose ping came back unreachable asks its helpers at once rather than
        after probe_timeout, and suspects as soon as every path has failed
        (each helper nacked, TCP answered no) rather than at the end of the
        probe interval; a helper whose relayed ping came back unreachable
        nacks at once. Where only timeouts speak, memberlist's timing stands.
        """
        self.stats["udp.unreachable"] += 1
        try:
            seqs = [m.seq_no for m in codec.decode_packet(sent) if isinstance(m, Ping)]
        except DecodeError:
            seqs = []  # the kernel quoted only part of it: match the probe by address
        probe = self._probe
        if probe is not None and probe.addr == dest and (probe.seq in seqs or not seqs):
            probe.unreachable = True
            self._probe_timeout(probe, now)
            self._end_probe_if_every_path_failed(probe, now)
        for seq in seqs:
            relay = self._ack_handlers.get(seq)
            if isinstance(relay, _Relay) and relay.target == dest:
                del self._ack_handlers[seq]
                self._relays -= 1
                if relay.nack:
                    self._send_msg(relay.requester, codec.encode(Nack(relay.orig_seq)),
                                   piggyback=relay.requester_is_member)

    def handle_packet(self, data: bytes, source: Address, now: float) -> None:
        """One (decrypted) UDP datagram from ``source``."""
        try:
            messages = codec.decode_packet(data)
        except DecodeError as exc:
            self.stats["drop." + exc.reason] += 1
            return
        for msg in messages:
            self._handlers[type(msg)](msg, source, now)

    def handle_stream(self, data: bytes, source: Address, now: float) -> bytes | None:
        """An inbound TCP exchange: the whole request in, our reply (if any) out."""
        try:
            msg = codec.decode_stream(data)
        except DecodeError as exc:
            self.stats["drop.stream." + exc.reason] += 1
            return codec.encode(ErrResp(f"failed to decode stream: {exc.reason}"))
        if isinstance(msg, PushPull):
            # Reply with our state before merging theirs (memberlist order).
            reply = self._local_state(msg.join)
            if self._merge(msg, now):
                self._verify_stream_sender(source, now)
            return reply
        if isinstance(msg, Ping):
            if msg.node and msg.node != self.name:
                self.stats["drop.ping_wrong_node"] += 1
                return codec.encode(ErrResp(f"ping for unexpected node {msg.node!r}"))
            return codec.encode(Ack(msg.seq_no))
        if isinstance(msg, UserMsg):
            self._delegate.notify_msg(msg.payload, now)
            return None
        self.stats["drop.stream.unexpected"] += 1
        return None

    def handle_stream_reply(self, request_id: int, data: bytes | None, now: float) -> None:
        """The reply to an :class:`OpenStream` we asked for (``None`` = it failed)."""
        pending = self._streams.pop(request_id, None)
        if pending is None:
            return
        self._address_checks.discard(request_id)
        purpose, info = pending
        msg: Any = None
        if data is not None:
            try:
                msg = codec.decode_stream(data)
            except DecodeError as exc:
                self.stats["drop.stream." + exc.reason] += 1
        if purpose == _S_TCP_PING:
            probe = self._probe
            if probe is not None and probe.seq == info:
                probe.tcp_pending = False
                if isinstance(msg, Ack) and msg.seq_no == info:
                    probe.tcp_ok = True
                else:
                    self._end_probe_if_every_path_failed(probe, now)
            return
        ok = isinstance(msg, PushPull)
        peer = info[1] if purpose == _S_JOIN else info
        if ok:
            self._merge(msg, now, peer)
        else:
            self.stats["push_pull.failed"] += 1
        if purpose == _S_JOIN:
            attempt, addr = info
            attempt.remaining -= 1
            if ok:
                attempt.contacted += 1
            else:
                attempt.failed.append(addr)
            if attempt.remaining == 0:
                self._effects.append(JoinFinished(attempt.contacted, tuple(attempt.failed),
                                                  attempt.join_id))

    def join(self, addrs: Sequence[Address], now: float) -> int:
        """Push-pull (Join=true) with every address; ends with a :class:`JoinFinished`.

        Returns the join id that the :class:`JoinFinished` effect will carry.
        """
        self._join_id += 1
        if not addrs:
            self._effects.append(JoinFinished(0, (), self._join_id))
            return self._join_id
        attempt = _JoinAttempt(len(addrs), self._join_id)
        data = self._local_state(True)
        for addr in addrs:
            self._open_stream(addr, data, _S_JOIN, (attempt, addr))
        return self._join_id

    def leave(self, now: float) -> None:
        """Gracefully leave: broadcast ``dead(self, From=self)``; we stop refuting."""
        if self._left:
            return
        self._left = True
        me = self._node_map[self.name]
        self._on_dead(Dead(me.incarnation, me.name, me.name), now)
        if not any(s.state == MemberState.ALIVE and s.name != self.name for s in self._nodes):
            self._leave_done = True

    def set_meta(self, meta: bytes, now: float) -> None:
        """Advertise new meta (Serf tags): a new incarnation and an alive broadcast."""
        if len(meta) > codec.MAX_META_SIZE:
            raise ConfigError(f"meta is {len(meta)} bytes; the limit is {codec.MAX_META_SIZE}")
        if self._incarnation >= _MAX_INCARNATION:
            raise SwimError("incarnation number exhausted")
        self._incarnation += 1
        self._on_alive(Alive(self._incarnation, self.name, self.addr, self.port, meta,
                             self._vsn), now, bootstrap=True)

    def send_user(self, dest: Address, payload: bytes) -> None:
        """Send a user (Serf) message directly, without piggybacking (memberlist SendTo)."""
        self._raw_send(dest, b"\x08" + payload, crc=False)

    def seed_members(self, members: Iterable[Member], now: float) -> None:
        """Install already-known members without gossip or events.

        For simulations and tests that start from a converged cluster; a real
        node learns members by joining.
        """
        for m in members:
            if m.name in self._node_map:
                continue
            st = NodeState(sys.intern(m.name), sys.intern(m.addr), m.port, m.meta,
                           _shared_vsn(m.vsn), m.incarnation, m.state, now)
            self._table_bytes += domains.row_cost(st.name, st.meta)
            self._node_map[st.name] = st
            self._nodes.append(st)
        self._rng.shuffle(self._nodes)

    # ------------------------------------------------------------------ timers

    def _schedule(self, when: float, kind: int, arg: Any) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (when, self._timer_seq, kind, arg))

    def _fire(self, kind: int, arg: Any, now: float) -> None:
        if kind == _T_PROBE:
            self._schedule(now + self.config.probe_interval, _T_PROBE, None)
            if self._probe is not None:
                self._probe_pending = True  # Go's ticker buffers one tick
            else:
                self._start_probe(now)
        elif kind == _T_GOSSIP:
            self._schedule(now + self.config.gossip_interval, _T_GOSSIP, None)
            self._gossip(now)
        elif kind == _T_PUSH_PULL:
            self._schedule(now + push_pull_interval(self.config.push_pull_interval,
                                                    len(self._nodes)), _T_PUSH_PULL, None)
            self._periodic_push_pull(now)
        elif kind == _T_PROBE_TIMEOUT:
            self._probe_timeout(arg, now)
        elif kind == _T_PROBE_DEADLINE:
            self._probe_deadline(arg, now)
        elif kind == _T_RELAY_EXPIRE:
            self._relay_expire(arg)
        elif kind == _T_SUSPICION:
            self._suspicion_expired(arg, now)

    # ------------------------------------------------------------------ sending

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def _raw_send(self, dest: Address, data: bytes, crc: bool) -> None:
        if self._compress_datagrams:
            data = codec.maybe_compress(data)
        if crc:
            data = codec.add_crc(data)
        self.stats["udp.sent"] += 1
        self._effects.append(SendPacket(dest, data))

    def _send_msg(self, dest: Address, msg: bytes, piggyback: bool = True) -> None:
        """Send one message, piggybacking queued broadcasts (memberlist sendMsg).

        memberlist piggybacks on every message, so each ping, from anyone and
        naming any reply address, costs one of the few sends each broadcast
        gets: a burst of spoofed pings drained our gossip into the attacker's
        (or our own) address, and members never heard it (found by the state
        machine). Replies to addresses that are not the member they claim to
        come from go out bare (``piggyback=False``).
        """
        if piggyback:
            avail = self.config.udp_buffer_size - len(msg) - _COMPOUND_HEADER
            if self._encrypted:
                avail -= _ENCRYPT_OVERHEAD
            extra = self._get_broadcasts(_COMPOUND_PART, avail)
            if extra:
                msg = codec.encode_compound([msg, *extra[:_MAX_PIGGYBACK_PARTS]])
        self._raw_send(dest, msg, crc=False)

    def _is_member_at(self, name: str, addr: Address) -> bool:
        """Whether ``name`` is another live (or suspect) member living at ``addr``."""
        st = self._node_map.get(name)
        return (st is not None and st.name != self.name and st.state <= MemberState.SUSPECT
                and (st.addr, st.port) == addr)

    def _get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        out = self._broadcasts.take(overhead, limit,
                                    retransmit_limit(self.config.retransmit_mult,
                                                     len(self._nodes)))
        if self._has_delegate:
            used = sum(len(m) + overhead for m in out)
            avail = limit - used
            if avail > overhead + _USER_MSG_OVERHEAD:
                for payload in self._delegate.get_broadcasts(overhead + _USER_MSG_OVERHEAD,
                                                              avail):
                    out.append(b"\x08" + payload)
        return out

    def _broadcast(self, key: str, msg: Message,
                   on_done: Callable[[], None] | None = None) -> None:
        self._broadcasts.queue(key, codec.encode(msg), on_done)

    def _open_stream(self, dest: Address, data: bytes, purpose: int, info: Any) -> int:
        """Ask the runtime for a TCP exchange; returns its request id."""
        self._stream_id += 1
        self._streams[self._stream_id] = (purpose, info)
        self.stats["tcp.opened"] += 1
        self._effects.append(OpenStream(self._stream_id, dest, data, self.config.tcp_timeout))
        return self._stream_id

    def _k_random_nodes(self, k: int, exclude: Callable[[NodeState], bool]) -> list[NodeState]:
        """Up to ``k`` distinct random members passing the filter (memberlist kRandomNodes)."""
        nodes = self._nodes
        n = len(nodes)
        picked: list[NodeState] = []
        rand = self._rng.random
        for _ in range(3 * n):
            if len(picked) >= k:
                break
            st = nodes[int(rand() * n)]
            if exclude(st) or st in picked:
                continue
            picked.append(st)
        return picked

    def _prefer_heard(self, k: int, exclude: Callable[[NodeState], bool]) -> list[NodeState]:
        """Up to ``k`` random members we have heard from (else any, as memberlist).

        Anyone may announce members in an unencrypted cluster, and fake ones
        never answer. memberlist draws indirect-probe helpers, gossip targets
        and push-pull peers among all live members alike: a hundred fakes then
        take nearly every helper slot, and every failed probe of a fake misses
        the helpers' nacks, which Lifeguard reads as our own slowness; at the
        top of the awareness scale we probe eight times slower, so the fakes
        live eight times longer, and gossip and anti-entropy mostly go to
        them. Members that acked a ping of ours from their own address are
        real; once every live member has (a round of probes after it joins),
        this draws exactly as memberlist does. Part of Lifeguard here (it
        reads the same local-health signal); classic SWIM draws as before.
        """
        heard = (self._k_random_nodes(k, lambda s: exclude(s) or not s.heard)
                 if self._heard_count and self._lifeguard else [])
        return heard or self._k_random_nodes(k, exclude)

    def _set_heard(self, st: NodeState, heard: bool) -> None:
        if st.heard != heard:
            st.heard = heard
            self._heard_count += 1 if heard else -1

    # ------------------------------------------------------------------ probing

    def _start_probe(self, now: float) -> None:
        """Probe the next member in shuffled round-robin order (SWIM section 4.3)."""
        checked = 0
        nodes = self._nodes
        while True:
            if checked >= len(nodes):
                return
            if self._probe_index >= len(nodes):
                self._reset_nodes(now)
                self._probe_index = 0
                checked += 1
                continue
            st = nodes[self._probe_index]
            self._probe_index += 1
            if st.name == self.name or st.dead_or_left():
                checked += 1
                continue
            self._probe_node(st, now)
            return

    def _probe_node(self, target: NodeState, now: float) -> None:
        interval = self.config.probe_interval
        if self._lifeguard:
            interval = self.awareness.scale(interval)
        seq = self._next_seq()
        probe = _Probe(seq, target, now + interval)
        self._probe = probe
        self._ack_handlers[seq] = probe
        ping = codec.encode(Ping(seq, target.name, self.addr, self.port, self.name))
        self.stats["probe.sent"] += 1
        if target.state == MemberState.ALIVE or not self._lifeguard:
            self._send_msg(probe.addr, ping)
        else:
            # Lifeguard buddy system: tell a suspect it is suspected, so it refutes now.
            buddy = codec.encode(Suspect(target.incarnation, target.name, self.name))
            self._raw_send(probe.addr, codec.encode_compound([ping, buddy]),
                           crc=target.pmax >= 5)
        self._schedule(now + self.config.probe_timeout, _T_PROBE_TIMEOUT, probe)
        self._schedule(probe.deadline, _T_PROBE_DEADLINE, probe)

    def _probe_timeout(self, probe: _Probe, now: float) -> None:
        """No direct ack in time: ask helpers, and try TCP in parallel."""
        if self._probe is not probe or probe.indirect_sent:
            return
        probe.indirect_sent = True
        target = probe.target
        helpers = self._prefer_heard(
            self.config.indirect_checks,
            lambda s: s.name == self.name or s.name == target or s.state != MemberState.ALIVE)
        for helper in helpers:
            nack = self._lifeguard and helper.pmax >= 4
            if nack:
                probe.expected_nacks += 1
            req = IndirectPing(probe.seq, probe.addr[0], probe.addr[1], target, nack,
                               self.addr, self.port, self.name)
            self._send_msg((helper.addr, helper.port), codec.encode(req))
        probe.helpers = len(helpers)
        self.stats["probe.indirect"] += 1
        st = self._node_map.get(target)
        if self.config.tcp_pings and st is not None and st.pmax >= 3:
            ping = Ping(probe.seq, target, self.addr, self.port, self.name)
            probe.tcp_pending = True
            self._open_stream(probe.addr, codec.encode(ping), _S_TCP_PING, probe.seq)

    def _probe_deadline(self, probe: _Probe, now: float) -> None:
        """The probe period is over without an ack: suspect the target."""
        if self._probe is not probe:
            return
        self._ack_handlers.pop(probe.seq, None)
        if probe.tcp_ok:
            self.stats["probe.tcp_only"] += 1
            self._finish_probe(-1, now)
            return
        delta = max(0, probe.expected_nacks - probe.nacks) if probe.expected_nacks > 0 else 1
        self.stats["probe.failed"] += 1
        started = self._on_suspect(Suspect(probe.incarnation, probe.target, self.name), now)
        if started:
            self._effects.append(SuspicionRaised(probe.target, probe.incarnation))
        self._finish_probe(delta, now)

    def _end_probe_if_every_path_failed(self, probe: _Probe, now: float) -> None:
        """Suspect now if the target is unreachable and no path can still answer."""
        if (self._probe is probe and probe.unreachable and probe.indirect_sent
                and not probe.tcp_pending and not probe.tcp_ok
                and probe.expected_nacks == probe.helpers and probe.nacks >= probe.helpers):
            self.stats["probe.ended_early"] += 1
            self._probe_deadline(probe, now)

    def _finish_probe(self, awareness_delta: int, now: float) -> None:
        self._probe = None
        if self._lifeguard:
            self.awareness.apply_delta(awareness_delta)
        if self._probe_pending:
            self._probe_pending = False
            self._start_probe(now)

    def _reset_nodes(self, now: float) -> None:
        """End of a round: purge long-dead/left members, reshuffle the rest."""
        cutoff = now - self.config.gossip_to_the_dead_time
        keep: list[NodeState] = []
        for st in self._nodes:
            if st.dead_or_left() and st.state_change <= cutoff and st.name != self.name:
                self._set_heard(st, False)
                del self._node_map[st.name]
                self._table_bytes -= domains.row_cost(st.name, st.meta)
                self._suspicions.pop(st.name, None)
                self._verified.pop(st.name, None)
            else:
                keep.append(st)
        self._rng.shuffle(keep)
        self._nodes[:] = keep

    # ------------------------------------------------------------------ gossip and push-pull

    def _gossip(self, now: float) -> None:
        """Send queued broadcasts to a few random live (or recently dead) members."""
        if not self._broadcasts and not self._has_delegate:
            return
        dead_cutoff = now - self.config.gossip_to_the_dead_time
        # The dead are gossiped to so that one falsely declared dead learns it
        # and refutes. A member that never answered us (a fake one) has nothing
        # to refute, and a hundred fakes dead at once would take the gossip of
        # the next half minute (see _prefer_heard); a member that answered us
        # and is said to have left may not have (anyone can say so), and until
        # it hears it cannot refute: memberlist leaves it to the next push-pull.
        heard_only = self._lifeguard and self._heard_count > 0

        def exclude(s: NodeState) -> bool:
            if s.name == self.name:
                return True
            if s.state <= MemberState.SUSPECT:
                return False
            if s.state_change < dead_cutoff:
                return True
            if heard_only:
                return not s.heard
            return s.state != MemberState.DEAD

        avail = self.config.udp_buffer_size - _COMPOUND_HEADER
        if self._encrypted:
            avail -= _ENCRYPT_OVERHEAD
        targets = self._k_random_nodes(self.config.gossip_nodes, exclude)
        if (targets and self._heard_count and self._lifeguard
                and not any(st.heard for st in targets)):
            # One target at least is a member we have heard from (see _prefer_heard).
            heard = self._k_random_nodes(1, lambda s: exclude(s) or not s.heard)
            if heard and heard[0] not in targets:
                targets[-1] = heard[0]
        for st in targets:
            msgs = self._get_broadcasts(_COMPOUND_PART, avail)
            if not msgs:
                return
            data = msgs[0] if len(msgs) == 1 else codec.encode_compound(
                msgs[:_MAX_PIGGYBACK_PARTS + 1])
            self._raw_send((st.addr, st.port), data, crc=st.pmax >= 5)

    def sync_now(self, now: float) -> bool:
        """Push-pull with a random live member now (anti-entropy on demand).

        False when there is no live member to sync with.
        """
        return self._periodic_push_pull(now)

    def _periodic_push_pull(self, now: float) -> bool:
        peers = self._prefer_heard(
            1, lambda s: s.name == self.name or s.state != MemberState.ALIVE)
        if not peers:
            return False
        peer = peers[0]
        dest = (peer.addr, peer.port)
        self._open_stream(dest, self._local_state(False), _S_PUSH_PULL, dest)
        return True

    def verify_member(self, name: str, source: Address, now: float) -> bool:
        """Sync with the live member ``name`` living at ``source`` (rate-limited
        as :meth:`_verify`): the layer above refused something that member
        sent as implausible, and its own state says whether we are behind."""
        st = self._node_map.get(name)
        if st is None or st.state != MemberState.ALIVE or (st.addr, st.port) != source:
            return False
        return self._verify(st, now)

    def _verify_stream_sender(self, source: Address, now: float) -> None:
        """Sync with whoever sent a push-pull whose times we refused.

        One message can move a node's clock to the very edge of what its
        peers accept; its next push-pull then carries a time just past it,
        refused by peers that never saw that message. A datagram's sender is
        re-checked by its address (the layer above calls
        :meth:`verify_member`); a stream comes from an ephemeral port, so its
        sender is one of the live members at its IP: the one at ``source``
        if the port matches, else the first few. Each sync is rate-limited
        per member (:meth:`_verify`), so a spoofed sender costs little.
        """
        host, port = source
        at_host = [st for st in self._nodes
                   if st.addr == host and st.state == MemberState.ALIVE and st.name != self.name]
        exact = [st for st in at_host if st.port == port]
        for st in (exact or at_host)[:MAX_STREAM_SENDER_CHECKS]:
            if self._verify(st, now):
                self.stats["verify.stream_sender"] += 1

    def _verify(self, st: NodeState, now: float) -> bool:
        """Sync with ``st`` itself after refusing a claim about it (see
        :func:`domains.may_verify`): its own row is the one we may believe
        whatever its jump, so a view left behind catches up."""
        if st.name == self.name or st.dead_or_left():
            return False
        if not domains.may_verify(self._verified.get(st.name), now):
            return False
        self._verified[st.name] = now
        self.stats["verify.sync"] += 1
        dest = (st.addr, st.port)
        self._open_stream(dest, self._local_state(False), _S_PUSH_PULL, dest)
        return True

    def _local_state(self, join: bool) -> bytes:
        """Our whole table as an encoded push-pull (rows cached between syncs)."""
        user = self._delegate.local_state(join) if self._has_delegate else b""
        return codec.encode_push_pull_rows(join, [s.encoded_row() for s in self._nodes], user)

    def _merge(self, remote: PushPull, now: float, peer: Address | None = None) -> bool:
        """Merge a peer's full state (memberlist mergeState).

        ``peer`` is the address we opened the stream to, when we did: the row
        of the member living there is its own word about itself. True when
        the layer above refused part of it as implausible.
        """
        if not self._verify_protocol(remote.nodes):
            self.stats["drop.push_pull.protocol"] += 1
            return False
        node_map = self._node_map
        me = self.name
        for r in remote.nodes:
            state = r.state
            if state == MemberState.ALIVE:
                known = node_map.get(r.name)
                if (known is not None and r.incarnation <= known.incarnation
                        and r.name != me and known.addr == r.addr and known.port == r.port):
                    continue  # fast path: nothing new (what _on_alive would conclude)
                own_word = peer is not None and peer == (r.addr, r.port) and r.name != me
                self._on_alive(Alive(r.incarnation, r.name, r.addr, r.port, r.meta, r.vsn), now,
                               authoritative=own_word)
            elif state == MemberState.LEFT:
                self._on_dead(Dead(r.incarnation, r.name, r.name), now)
            else:
                # A peer's "dead" only makes us suspect: we never kill on hearsay.
                self._on_suspect(Suspect(r.incarnation, r.name, me), now)
        if remote.user_state and self._has_delegate:
            return self._delegate.merge_remote_state(remote.user_state, remote.join, now,
                                                     trusted=peer is not None)
        return False

    def _verify_protocol(self, remote: Sequence[PushNodeState]) -> bool:
        """Every alive node's current versions must fit the cluster-wide ranges."""
        distinct = {s.vsn for s in self._nodes if s.state == MemberState.ALIVE}
        distinct.update(r.vsn for r in remote if r.state == MemberState.ALIVE)
        distinct.discard(b"")
        if len(distinct) <= 1:
            return True
        pmin = max(v[0] for v in distinct)
        pmax = min(v[1] for v in distinct)
        dmin = max(v[3] for v in distinct)
        dmax = min(v[4] for v in distinct)
        return all(pmin <= v[2] <= pmax and dmin <= v[5] <= dmax for v in distinct)

    # ------------------------------------------------------------------ message handlers

    def _on_ping(self, msg: Ping, source: Address, now: float) -> None:
        if msg.node and msg.node != self.name:
            self.stats["drop.ping_wrong_node"] += 1
            return
        reply_to = source
        if msg.source_addr and domains.address_problem(msg.source_addr, msg.source_port) is None:
            reply_to = (msg.source_addr, msg.source_port)
        payload = self._delegate.ack_payload() if self._has_delegate else b""
        self._send_msg(reply_to, codec.encode(Ack(msg.seq_no, payload)),
                       piggyback=self._is_member_at(msg.source_node, reply_to))

    def _on_indirect_ping(self, msg: IndirectPing, source: Address, now: float) -> None:
        """Probe ``msg.target`` for a requester; relay the ack, or nack if none comes."""
        requester = source
        if msg.source_addr and domains.address_problem(msg.source_addr, msg.source_port) is None:
            requester = (msg.source_addr, msg.source_port)
        target = (msg.target, msg.port or self.port)
        problem = domains.address_problem(*target)
        if problem is not None:
            self.stats["drop.indirect_ping_" + problem] += 1
            return
        if self._relays >= MAX_PENDING_RELAYS:
            self.stats["drop.indirect_ping_too_many"] += 1
            return
        seq = self._next_seq()
        self._relays += 1
        self._ack_handlers[seq] = _Relay(msg.seq_no, requester, msg.nack, target,
                                         self._is_member_at(msg.source_node, requester))
        ping = Ping(seq, msg.node, self.addr, self.port, self.name)
        self._send_msg(target, codec.encode(ping), piggyback=self._is_member_at(msg.node, target))
        self._schedule(now + self.config.probe_timeout, _T_RELAY_EXPIRE, seq)

    def _relay_expire(self, seq: int) -> None:
        handler = self._ack_handlers.get(seq)
        if isinstance(handler, _Relay):
            del self._ack_handlers[seq]
            self._relays -= 1
            if handler.nack:
                self._send_msg(handler.requester, codec.encode(Nack(handler.orig_seq)),
                               piggyback=handler.requester_is_member)

    def _on_ack(self, msg: Ack, source: Address, now: float) -> None:
        handler = self._ack_handlers.pop(msg.seq_no, None)
        if handler is None:
            self.stats["ack.unexpected"] += 1
            return
        if isinstance(handler, _Relay):
            self._relays -= 1
            self._send_msg(handler.requester, codec.encode(Ack(handler.orig_seq)),
                           piggyback=handler.requester_is_member)
        elif self._probe is handler:
            if source == handler.addr:
                target = self._node_map.get(handler.target)
                if target is not None and (target.addr, target.port) == source:
                    self._set_heard(target, True)
            self._finish_probe(-1, now)

    def _on_nack(self, msg: Nack, source: Address, now: float) -> None:
        handler = self._ack_handlers.get(msg.seq_no)
        if isinstance(handler, _Probe):
            handler.nacks += 1
            self._end_probe_if_every_path_failed(handler, now)

    def _on_user(self, msg: UserMsg, source: Address, now: float) -> None:
        self._delegate.notify_msg(msg.payload, now, source)

    def _on_err(self, msg: ErrResp, source: Address, now: float) -> None:
        self.stats["drop.unexpected_err"] += 1

    def _on_alive_msg(self, msg: Alive, source: Address, now: float) -> None:
        self._on_alive(msg, now)

    def _on_suspect_msg(self, msg: Suspect, source: Address, now: float) -> None:
        if not self._refused_name(msg.from_, "suspect_from"):
            self._on_suspect(msg, now)

    def _on_dead_msg(self, msg: Dead, source: Address, now: float) -> None:
        if not self._refused_name(msg.from_, "dead_from"):
            self._on_dead(msg, now)

    # ------------------------------------------------------------------ value domains

    @staticmethod
    def _name_problem_for(config: Config, name: str) -> str | None:
        problem = domains.name_problem(name)
        if problem is None and config.validate_node_names:
            problem = domains.strict_name_problem(name)
        return problem

    def _refused_name(self, name: str, what: str) -> bool:
        """Count and refuse a name outside the domain (:func:`domains.name_problem`)."""
        problem = self._name_problem_for(self.config, name)
        if problem is None:
            return False
        self.stats[f"drop.{what}_{problem}"] += 1
        return True

    def _implausible(self, st: NodeState, claimed: int, what: str, now: float) -> bool:
        """Refuse (count, then re-check with the member) an incarnation jump
        :func:`domains.plausible_incarnation` does not allow."""
        if domains.plausible_incarnation(st.incarnation, claimed):
            return False
        self.stats[f"drop.{what}_incarnation_implausible"] += 1
        self._verify(st, now)
        return True

    # ------------------------------------------------------------------ precedence rules

    def _on_alive(self, a: Alive, now: float, bootstrap: bool = False,
                  authoritative: bool = False) -> None:
        """Apply ``alive`` (SWIM: Alive(i) overrides Suspect/Alive(j) for i > j).

        ``authoritative``: the member's own row, from a stream we opened to
        its address (may jump its incarnation; see :mod:`.domains`).
        """
        if self._left and a.node == self.name:
            return  # a queued alive must not undo our leave
        vsn = a.vsn
        if len(vsn) != 6:
            # Go tolerates an empty Vsn, but it cannot be re-gossiped safely: drop it.
            self.stats["drop.alive_no_vsn"] += 1
            return
        if vsn[0] == 0 or vsn[1] == 0 or vsn[0] > vsn[1]:
            self.stats["drop.alive_bad_vsn"] += 1
            return
        st = self._node_map.get(a.node)
        if not bootstrap:
            if self._refused_name(a.node, "alive"):
                return
            if not domains.vsn_compatible(self._vsn, vsn):
                self.stats["drop.alive_incompatible_vsn"] += 1
                return
            problem = domains.address_problem(a.addr, a.port)
            if problem is not None:
                self.stats["drop.alive_" + problem] += 1
                return
            if st is None:
                if not domains.plausible_incarnation(None, a.incarnation):
                    self.stats["drop.alive_incarnation_implausible"] += 1
                    return
            elif not authoritative and self._implausible(st, a.incarnation, "alive", now):
                return
        updates_addr = False
        is_new = st is None
        if st is None:
            cost = domains.row_cost(a.node, a.meta)
            if self._table_bytes + cost > domains.MAX_TABLE_BYTES and not bootstrap:
                self.stats["drop.alive_table_full"] += 1
                return
            self._table_bytes += cost
            st = NodeState(sys.intern(a.node), sys.intern(a.addr), a.port, a.meta,
                           _shared_vsn(vsn), 0, MemberState.DEAD, now)
            self._node_map[st.name] = st
            # Insert at a random position: keeps the detection bound low (SWIM 4.3).
            n = len(self._nodes)
            self._nodes.append(st)
            offset = int(self._rng.random() * (n + 1))
            self._nodes[offset], self._nodes[n] = self._nodes[n], self._nodes[offset]
            old_state = MemberState.DEAD
        else:
            if st.addr != a.addr or st.port != a.port:
                if not self._may_move(st, a, authoritative, now):
                    return
                updates_addr = True
            old_state = st.state
        is_local = st.name == self.name
        if a.incarnation <= st.incarnation and not (is_local or updates_addr or is_new):
            return
        if a.incarnation < st.incarnation and is_local:
            return
        self._suspicions.pop(a.node, None)
        old_meta = st.meta
        if not bootstrap and is_local:
            if (a.incarnation == st.incarnation and a.meta == st.meta
                    and a.vsn == self._vsn):
                return
            self._refute(st, a.incarnation, "alive", "")
            return
        self._broadcast(a.node, a)
        st.row = None
        st.vsn = _shared_vsn(vsn)
        st.incarnation = a.incarnation
        self._table_bytes += len(a.meta) - len(st.meta)
        st.meta = a.meta
        if st.addr != a.addr or st.port != a.port:
            self._set_heard(st, False)
        if st.addr != a.addr:
            st.addr = sys.intern(a.addr)
        st.port = a.port
        if st.state != MemberState.ALIVE:
            st.state = MemberState.ALIVE
            st.state_change = now
        if old_state >= MemberState.DEAD:
            self._effects.append(MemberEvent(EventKind.JOIN, st.snapshot()))
        elif old_meta != st.meta:
            self._effects.append(MemberEvent(EventKind.UPDATE, st.snapshot()))

    def _may_move(self, st: NodeState, a: Alive, authoritative: bool, now: float) -> bool:
        """Whether ``a`` may move ``st`` to the address it claims.

        memberlist moves a member that left (or died longer than
        ``dead_node_reclaim_time`` ago) on anyone's word and refuses every
        other claim as a conflict. So a forged leave then a forged alive moved
        a live member to an address where nobody answers: it was declared dead
        there, and its own refutations from its real address were refused as
        conflicts until the dead row was reaped, a whole probe round later
        (minutes, with a hundred fake members). Here a member that left or died
        moves on its own word only, from any address: its row in the reply to a
        stream we opened to the new address. Any other claim opens such a
        stream (rate-limited per member and in number) and changes nothing.
        A ``dead_node_reclaim_time`` set by the operator still moves a member
        dead that long on anyone's word, as memberlist does.
        """
        if st.state < MemberState.DEAD or st.name == self.name:
            self.stats["conflict.address"] += 1
            return False
        reclaim = self.config.dead_node_reclaim_time
        if authoritative or (st.state == MemberState.DEAD and reclaim > 0
                             and now - st.state_change > reclaim):
            self.stats["address.moved"] += 1
            return True
        self.stats["address.unverified"] += 1
        if (len(self._address_checks) < MAX_ADDRESS_CHECKS
                and domains.may_verify(self._verified.get(st.name), now)):
            self._verified[st.name] = now
            self.stats["address.checked"] += 1
            self._address_checks.add(self._open_stream(
                (a.addr, a.port), self._local_state(False), _S_PUSH_PULL, (a.addr, a.port)))
        return False

    def _on_suspect(self, s: Suspect, now: float) -> bool:
        """Apply ``suspect``; True if it started a new suspicion of a live member."""
        st = self._node_map.get(s.node)
        if st is None or s.incarnation < st.incarnation:
            return False
        if self._implausible(st, s.incarnation, "suspect", now):
            return False
        timer = self._suspicions.get(s.node)
        if timer is not None:
            # An independent accuser confirms: shorten the timer, re-gossip (Lifeguard).
            if self._lifeguard and timer.confirm(s.from_):
                self._broadcast(s.node, s)
                self._schedule(timer.deadline, _T_SUSPICION, (s.node, timer))
            return False
        if st.state != MemberState.ALIVE:
            return False
        if st.name == self.name:
            self._refute(st, s.incarnation, "suspect", s.from_)
            return False
        self._broadcast(s.node, s)
        st.row = None
        st.incarnation = s.incarnation
        st.state = MemberState.SUSPECT
        st.state_change = now
        n = len(self._nodes)
        min_timeout = suspicion_min_timeout(self.config.suspicion_mult, n,
                                            self.config.probe_interval)
        if self._lifeguard:
            k = expected_confirmations(self.config.suspicion_mult, n)
            max_timeout = self.config.suspicion_max_timeout_mult * min_timeout
        else:
            k, max_timeout = 0, min_timeout
        timer = Suspicion(s.from_, k, min_timeout, max_timeout, now)
        self._suspicions[s.node] = timer
        self._schedule(timer.deadline, _T_SUSPICION, (s.node, timer))
        return True

    def _suspicion_expired(self, arg: tuple[str, Suspicion], now: float) -> None:
        name, timer = arg
        if self._suspicions.get(name) is not timer or now < timer.deadline:
            return
        st = self._node_map.get(name)
        if st is None or st.state != MemberState.SUSPECT or st.state_change != timer.start:
            return
        self.stats["suspicion.expired"] += 1
        self._effects.append(DeathDeclared(name, st.incarnation, timer.confirmations))
        self._on_dead(Dead(st.incarnation, name, self.name), now)

    def _on_dead(self, d: Dead, now: float) -> None:
        """Apply ``dead`` (From == Node means a graceful leave: state LEFT)."""
        st = self._node_map.get(d.node)
        if st is None or d.incarnation < st.incarnation:
            return
        if self._implausible(st, d.incarnation, "dead", now):
            return
        self._suspicions.pop(d.node, None)
        if st.dead_or_left():
            return
        if st.name == self.name:
            if not self._left:
                self._refute(st, d.incarnation, "dead", d.from_)
                return
            self._broadcast(d.node, d, self._leave_sent)
        else:
            self._broadcast(d.node, d)
        st.row = None
        st.incarnation = d.incarnation
        st.state = MemberState.LEFT if d.node == d.from_ else MemberState.DEAD
        st.state_change = now
        self._effects.append(MemberEvent(EventKind.LEAVE, st.snapshot()))

    def _leave_sent(self) -> None:
        self._leave_done = True

    def _refute(self, me: NodeState, accused: int, kind: str, accuser: str) -> None:
        """Out-bid an accusation about ourselves with a higher incarnation."""
        incarnation = domains.refutation_incarnation(self._incarnation, accused)
        if incarnation is None:
            self.stats["refute.incarnation_exhausted"] += 1
            return
        self._incarnation = incarnation
        me.incarnation = incarnation
        me.row = None
        if self._lifeguard:
            self.awareness.apply_delta(1)
        self.stats["refute"] += 1
        self._broadcast(me.name, Alive(me.incarnation, me.name, me.addr, me.port, me.meta,
                                       self._vsn))
        self._effects.append(Refuted(me.incarnation, kind, accuser))
