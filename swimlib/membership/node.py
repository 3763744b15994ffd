"""A SWIM + Lifeguard member as a sans-IO state machine (memberlist 0.2 behaviour).

Feed it datagrams (:meth:`Node.handle_packet`), inbound TCP exchanges
(:meth:`Node.handle_stream`), replies to the streams it asked for
(:meth:`Node.handle_stream_reply`) and the passage of time (:meth:`Node.tick`);
collect what it wants done with :meth:`Node.take_effects`. It never reads a
clock, never touches a socket and draws randomness only from the injected
``random.Random``: the same inputs give the same outputs, which is what lets
the simulator replay a whole cluster from a seed.

:class:`Node` wires together objects that each own their state:

- :class:`~.table.MemberTable`: the rows and the precedence rules (who may
  override whom), the one place they live;
- :class:`~.prober.Prober`: the probe in flight, indirect probes, relays;
- :class:`~.packets.Packets`: datagrams out, piggybacking and gossip;
- :class:`~.sync.Sync`: push-pull (joins, anti-entropy, re-checks) and the
  registry of streams we opened;
- :class:`~.timers.Timers`: the one timer heap they share.

Node itself only dispatches input to them and answers queries. The formulas
live in :mod:`.suspicion`, :mod:`.awareness` and :mod:`.broadcasts`.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from swimlib.config import Config
from swimlib.errors import ConfigError, DecodeError, SwimError
from swimlib.membership import domains
from swimlib.membership.awareness import Awareness
from swimlib.membership.broadcasts import BroadcastQueue
from swimlib.membership.delegate import Delegate
from swimlib.membership.packets import Packets
from swimlib.membership.prober import Prober
from swimlib.membership.rows import RowCache
from swimlib.membership.sync import StreamPurpose, Sync, UserState
from swimlib.membership.table import MemberTable, Verdict, name_problem_for
from swimlib.membership.timers import Timers
from swimlib.membership.timings import Timings
from swimlib.membership.types import Address, Effect, Member, MemberState
from swimlib.records import record
from swimlib.wire import codec
from swimlib.wire.envelope import Envelope
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
    PushPull,
    Suspect,
    UserMsg,
)

if TYPE_CHECKING:  # cryptography is imported only when encryption is on
    from swimlib.wire.crypto import Keyring


@record
class StreamReceived:
    """What an inbound stream gave: our sealed reply (None: close without one),
    and what it carried for the layer above."""

    reply: bytes | None
    user_message: bytes | None = None
    user_state: UserState | None = None


class Node:
    """One cluster member's view and protocol duties. See the module docstring."""

    def __init__(self, name: str, addr: str, port: int, config: Config, rng: random.Random,
                 now: float, meta: bytes = b"", delegate: Delegate | None = None,
                 vsn: bytes = DEFAULT_VSN, keyring: Keyring | None = None,
                 row_cache: RowCache | None = None) -> None:
        if len(vsn) != 6:
            raise ConfigError("vsn must be 6 bytes")
        problem = name_problem_for(config, name)
        if problem is not None:
            raise ConfigError(f"node name {name!r} is not allowed ({problem})")
        if len(meta) > codec.MAX_META_SIZE:
            raise ConfigError(f"meta is {len(meta)} bytes; the limit is {codec.MAX_META_SIZE}")
        self.name = name
        self.addr = addr
        self.port = port
        self.config = config
        self._delegate = delegate
        #: Counters: ``drop.<reason>`` for refused input, plus protocol activity.
        self.stats: Counter[str] = Counter()
        self._effects: list[Effect] = []
        self._timers = Timers()
        self.awareness = Awareness(config.awareness_max_multiplier)
        #: Probe and push-pull durations, for metrics (:mod:`.timings`).
        self.timings = Timings()
        broadcasts = self._broadcasts = BroadcastQueue()
        #: Seals what we send and opens what we receive (compression, CRC, encryption).
        self.envelope = Envelope(
            keyring, compress_datagrams=config.enable_compression and config.compress_datagrams,
            compress_streams=config.enable_compression and config.compress_streams,
            label=config.label.encode())
        stats, effects, timers = self.stats, self._effects, self._timers
        self._table = MemberTable(
            name, addr, port, config, rng, vsn, broadcasts=broadcasts, awareness=self.awareness,
            row_cache=row_cache if row_cache is not None else RowCache(),
            stats=stats, effects=effects, timers=timers)
        self._packets = Packets(config, self._table, broadcasts, delegate, self.envelope,
                                stats=stats, effects=effects, timers=timers)
        self._sync = Sync(config, self._table, delegate, self.envelope,
                          stats=stats, effects=effects, timers=timers, timings=self.timings)
        self._prober = Prober(config, self._table, self._packets, self._sync, self.awareness,
                              delegate, stats=stats, effects=effects, timers=timers,
                              timings=self.timings)
        self._sync.check_holder = self._prober.check_holder
        self._handlers: dict[type, Callable[[Any, Address, float], None]] = {
            Ping: self._prober.on_ping,
            IndirectPing: self._prober.on_indirect_ping,
            Ack: self._prober.on_ack,
            Nack: self._prober.on_nack,
            Suspect: self._on_suspect_msg,
            Alive: self._on_alive_msg,
            Dead: self._on_dead_msg,
            ErrResp: self._on_err,
        }

        # Announce ourselves (memberlist setAlive): incarnation 1, queued broadcast.
        self._table.announce(meta, now)
        # Staggered periodic work so nodes started together do not tick in lockstep.
        self._prober.start(now, rng.random() * config.probe_interval)
        self._packets.start(now, rng.random() * config.gossip_interval)
        self._sync.start(now, rng)

    # ------------------------------------------------------------------ queries

    @property
    def incarnation(self) -> int:
        return self._table.me.incarnation

    @property
    def keyring(self) -> Keyring | None:
        """The keys we encrypt with (changed in place by key management); None: plaintext."""
        return self.envelope.keyring

    @property
    def has_left(self) -> bool:
        return self._table.left

    @property
    def leave_broadcast_sent(self) -> bool:
        """After :meth:`leave`: whether our departure has been gossiped enough."""
        return self._table.leave_done

    @property
    def health_score(self) -> int:
        return self.awareness.score

    @property
    def num_nodes(self) -> int:
        """Table size, every state included (memberlist's estNumNodes)."""
        return len(self._table)

    def members(self) -> list[Member]:
        return self._table.members()

    def member(self, name: str) -> Member | None:
        st = self._table.get(name)
        return st.snapshot() if st is not None else None

    def state_of(self, name: str) -> MemberState | None:
        """The state of ``name`` in this view, without building a snapshot."""
        st = self._table.get(name)
        return st.state if st is not None else None

    def alive_count(self) -> int:
        return self._table.alive_count()

    def state_counts(self) -> dict[MemberState, int]:
        """How many members are in each state, self included (every state present)."""
        counts = dict.fromkeys(MemberState, 0)
        for st in self._table.nodes:
            counts[st.state] += 1
        return counts

    def broadcast_queue_depth(self) -> int:
        """memberlist's broadcasts waiting to be gossiped (its ``NumQueued``)."""
        return len(self._broadcasts)

    def live_count(self) -> int:
        """Members not dead or left, self included (memberlist's NumMembers)."""
        return self._table.live_count()

    def has_broadcasts(self) -> bool:
        """Whether a gossip tick now would send anything."""
        return self._packets.has_broadcasts()

    # ------------------------------------------------------------------ time

    def take_effects(self) -> list[Effect]:
        effects = self._effects  # shared with the parts, so emptied rather than replaced
        if not effects:
            return []
        taken = effects[:]
        effects.clear()
        return taken

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
            return timers.next_deadline()
        self._drop_idle_probe_timers()
        top = timers.peek()
        if top is None:
            return None
        if top[2] != self._packets.gossip_tick or self.has_broadcasts():
            return top[0]
        # The idle gossip tick is first: the answer is the earliest timer after it.
        gossip = timers.pop()
        try:
            self._drop_idle_probe_timers()
            return timers.next_deadline()
        finally:
            timers.push(gossip)

    def _drop_idle_probe_timers(self) -> None:
        """Pop answered probes' timers off the top of the heap (O(log n) each)."""
        timers = self._timers
        is_idle = self._prober.is_idle_timer
        top = timers.peek()
        while top is not None and is_idle(top):
            timers.pop()
            top = timers.peek()

    def tick(self, now: float) -> None:
        """Run every timer due at or before ``now``."""
        self._timers.run_due(now)

    # ------------------------------------------------------------------ input

    def handle_packet(self, data: bytes, source: Address, now: float) -> None:
        """One UDP datagram from ``source``, as it came off the wire (user
        messages in it are counted and dropped: no layer above takes them)."""
        messages = self._open_packet(data)
        if messages is None:
            return
        handlers = self._handlers
        for msg in messages:
            handler = handlers.get(type(msg))
            if handler is None:
                self.stats["user.unclaimed"] += 1
            else:
                handler(msg, source, now)

    def _open_packet(self, data: bytes) -> list[Message] | None:
        """The messages of a datagram (None, counted, if it does not open or decode)."""
        try:
            return codec.decode_packet(self.envelope.open_packet(data))
        except DecodeError as exc:
            self.stats["drop." + exc.reason] += 1
            return None

    def receive_packet(self, data: bytes, source: Address, now: float) -> Iterator[bytes]:
        """Handle one datagram, yielding each user (Serf) message in it to the
        layer above, in order: that layer handles it before the node goes on
        with the rest of the datagram, as memberlist's delegate call does, but
        the node never calls up (see swimlib/core.py)."""
        messages = self._open_packet(data)
        if messages is None:
            return
        handlers = self._handlers
        for msg in messages:
            if type(msg) is UserMsg:
                yield msg.payload
            else:
                handlers[type(msg)](msg, source, now)

    def handle_unreachable(self, dest: Address, sent: bytes, now: float) -> None:
        """The host of ``dest`` answered ``sent`` (our datagram as the kernel quoted it) with
        "port unreachable": nothing listens there, the agent is gone.

        memberlist never sees these; a runtime that can (Linux, IP_RECVERR)
        passes them in. Only the waiting changes, never the verdict: a probe
        whose ping came back unreachable asks its helpers at once rather than
        after probe_timeout, and suspects as soon as every path has failed
        (each helper nacked, TCP answered no) rather than at the end of the
        probe interval; a helper whose relayed ping came back unreachable
        nacks at once. Where only timeouts speak, memberlist's timing stands.
        """
        try:
            sent = self.envelope.open_packet(sent)
        except DecodeError:
            sent = b""  # quoted in part: the prober matches by address
        self._prober.on_unreachable(dest, sent, now)

    def handle_stream(self, data: bytes, source: Address, now: float) -> bytes | None:
        """An inbound TCP exchange: the whole request in (as framed on the wire),
        our reply (if any) out, sealed. None: close without a reply. What it
        carries for a layer above is counted and dropped."""
        received = self.receive_stream(data, source, now)
        if received.user_message is not None or received.user_state is not None:
            self.stats["user.unclaimed"] += 1
        return received.reply

    def receive_stream(self, data: bytes, source: Address, now: float) -> StreamReceived:
        """:meth:`handle_stream` for a layer above: the sealed reply, and what
        the stream carried for that layer (a user message, or the user part of
        a push-pull, which the layer merges; if it refused some of it, it
        calls :meth:`recheck_stream_sender`)."""
        try:
            plain = self.envelope.open_stream(data, incoming=True)
        except DecodeError as exc:
            self.stats["drop.stream." + exc.reason] += 1
            return StreamReceived(None)
        try:
            msg = codec.decode_stream(plain)
        except DecodeError as exc:
            self.stats["drop.stream." + exc.reason] += 1
            return StreamReceived(self._sealed(ErrResp(f"failed to decode stream: {exc.reason}")))
        if isinstance(msg, PushPull):
            reply, state = self._sync.answer(msg, now)
            return StreamReceived(self.envelope.seal_stream(reply), user_state=state)
        if isinstance(msg, Ping):
            if msg.node and msg.node != self.name:
                self.stats["drop.ping_wrong_node"] += 1
                return StreamReceived(
                    self._sealed(ErrResp(f"ping for unexpected node {msg.node!r}")))
            return StreamReceived(self._sealed(Ack(msg.seq_no)))
        if isinstance(msg, UserMsg):
            return StreamReceived(None, user_message=msg.payload)
        self.stats["drop.stream.unexpected"] += 1
        return StreamReceived(None)

    def _sealed(self, msg: Ack | ErrResp) -> bytes:
        return self.envelope.seal_stream(codec.encode(msg))

    def handle_stream_reply(self, request_id: int, data: bytes | None, now: float) -> None:
        """The reply to an :class:`OpenStream` we asked for (``None`` = it failed)."""
        for _ in self.receive_stream_reply(request_id, data, now):
            self.stats["user.unclaimed"] += 1

    def receive_stream_reply(self, request_id: int, data: bytes | None,
                             now: float) -> Iterator[UserState]:
        """:meth:`handle_stream_reply` for a layer above: yields the user part
        of a push-pull reply for it to merge (trusted: we opened the stream)
        before the node goes on (a join is accounted for after it)."""
        pending = self._sync.take_request(request_id, now)
        if pending is None:
            return
        purpose, info = pending
        msg: Any = None
        if data is not None:
            try:
                msg = codec.decode_stream(self.envelope.open_stream(data))
            except DecodeError as exc:
                self.stats["drop.stream." + exc.reason] += 1
        if purpose is StreamPurpose.TCP_PING:
            self._prober.on_tcp_ping_reply(info, msg, now)
        else:
            yield from self._sync.on_reply(purpose, info, msg, now)

    def recheck_stream_sender(self, source: Address, now: float) -> None:
        """The layer above refused times in a push-pull from ``source``: sync with
        whoever sent it (see :meth:`Sync.recheck_stream_sender`)."""
        self._sync.recheck_stream_sender(source, now)

    def _on_err(self, msg: ErrResp, source: Address, now: float) -> None:
        self.stats["drop.unexpected_err"] += 1

    def _on_alive_msg(self, msg: Alive, source: Address, now: float) -> None:
        verdict = self._table.apply_alive(msg, now)
        if verdict is not Verdict.IGNORED and verdict is not Verdict.APPLIED:
            self._sync.follow(verdict, msg.node, (msg.addr, msg.port), now, msg)

    def _on_suspect_msg(self, msg: Suspect, source: Address, now: float) -> None:
        if (not self._table.refused_name(msg.from_, "suspect_from")
                and self._table.apply_suspect(msg, now) is Verdict.RECHECK):
            self._sync.follow(Verdict.RECHECK, msg.node, None, now)

    def _on_dead_msg(self, msg: Dead, source: Address, now: float) -> None:
        if (not self._table.refused_name(msg.from_, "dead_from")
                and self._table.apply_dead(msg, now) is Verdict.RECHECK):
            self._sync.follow(Verdict.RECHECK, msg.node, None, now)

    # ------------------------------------------------------------------ commands

    def join(self, addrs: Sequence[Address], now: float) -> int:
        """Push-pull (Join=true) with every address; ends with a :class:`JoinFinished`.

        Returns the join id that the :class:`JoinFinished` effect will carry.
        """
        return self._sync.join(addrs, now)

    def leave(self, now: float) -> None:
        """Gracefully leave: broadcast ``dead(self, From=self)``; we stop refuting."""
        if not self._table.left:
            self._table.leave(now)

    def set_meta(self, meta: bytes, now: float) -> None:
        """Advertise new meta (Serf tags): a new incarnation and an alive broadcast."""
        if len(meta) > codec.MAX_META_SIZE:
            raise ConfigError(f"meta is {len(meta)} bytes; the limit is {codec.MAX_META_SIZE}")
        if self._table.local_incarnation >= domains.INCARNATION_MAX:
            raise SwimError("incarnation number exhausted")
        self._table.announce(meta, now)

    def send_user(self, dest: Address, payload: bytes) -> None:
        """Send a user (Serf) message directly, without piggybacking (memberlist SendTo)."""
        self._packets.send_user(dest, payload)

    def seed_members(self, members: Iterable[Member], now: float) -> None:
        """Install already-known members without gossip or events.

        For simulations and tests that start from a converged cluster; a real
        node learns members by joining.
        """
        self._table.seed(members, now)

    def sync_now(self, now: float) -> bool:
        """Push-pull with a random live member now (anti-entropy on demand).

        False when there is no live member to sync with.
        """
        return self._sync.sync_now(now)

    def verify_member(self, name: str, source: Address, now: float) -> bool:
        """Sync with the live member ``name`` living at ``source`` (rate-limited):
        the layer above refused something that member sent as implausible, and
        its own state says whether we are behind."""
        return self._sync.recheck_member(name, source, now)
