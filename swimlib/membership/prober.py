"""Failure detection: the probe in flight, indirect probes, and relaying for others.

One probe at a time, members in shuffled round-robin order (SWIM section
4.3): a ping; after ``probe_timeout`` without an ack, ``indirect_checks``
helpers ping the target for us (with nacks, Lifeguard) while a TCP ping
tries the stream path; at the end of the probe interval without an ack, the
target is suspected. The interval stretches with our local health
(Lifeguard's awareness). As a helper, :class:`Prober` pings targets for
others and relays their acks (or a nack when none comes).

An ack to our own probe that arrives before ``probe_timeout`` is a measured
round trip: with a delegate above us, it is handed up as a
:class:`~.types.PingCompleted` effect with the ack's payload, exactly when
memberlist calls ``NotifyPingComplete`` (``probeNode``'s first wait). Acks
relayed by helpers, late acks and TCP pings are not measurements.
"""

from __future__ import annotations

from collections import Counter

from swimlib.config import Config
from swimlib.errors import DecodeError
from swimlib.membership import domains
from swimlib.membership.awareness import Awareness
from swimlib.membership.delegate import Delegate
from swimlib.membership.packets import Packets
from swimlib.membership.rows import NodeState
from swimlib.membership.sync import StreamPurpose, Sync
from swimlib.membership.table import MemberTable, Verdict
from swimlib.membership.timers import TimerEntry, Timers
from swimlib.membership.timings import Timings
from swimlib.membership.types import (
    Address,
    Effect,
    MemberState,
    PingCompleted,
    SuspicionRaised,
)
from swimlib.wire import codec
from swimlib.wire.messages import Ack, Alive, IndirectPing, Nack, Ping, Suspect

#: Indirect probes we run for others at once; more are refused (each costs a
#: ping to an address the requester chose and a timer).
MAX_PENDING_RELAYS = 1024
#: Old addresses of moved members we ping at once (each a claim that a member
#: restarted elsewhere: see MemberTable._may_move); more wait for a later claim.
MAX_HOLDER_CHECKS = 16


class _Probe:
    """The probe in flight (memberlist runs at most one at a time)."""

    __slots__ = ("addr", "deadline", "expected_nacks", "helpers", "incarnation", "indirect_sent",
                 "nacks", "sent", "seq", "target", "tcp_ok", "tcp_pending", "unreachable")

    def __init__(self, seq: int, target: NodeState, sent: float, deadline: float) -> None:
        self.seq = seq
        #: When the ping went out (memberlist's ``sent``, the RTT's start).
        self.sent = sent
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
        #: The target's host said nothing listens there (see on_unreachable).
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


class _HolderCheck:
    """Is anyone still at a member's old address? (A claim moved it elsewhere.)"""

    __slots__ = ("addr", "claim", "seq")

    def __init__(self, seq: int, addr: Address, claim: Alive) -> None:
        self.seq = seq
        self.addr = addr
        self.claim = claim


class Prober:
    """Our probes of others, and the indirect probes we run for them."""

    def __init__(self, config: Config, table: MemberTable, packets: Packets, sync: Sync,
                 awareness: Awareness, delegate: Delegate | None, *, stats: Counter[str],
                 effects: list[Effect], timers: Timers, timings: Timings) -> None:
        self.config = config
        self._table = table
        self._packets = packets
        self._sync = sync
        self._awareness = awareness
        self._delegate = delegate
        self._lifeguard = config.lifeguard
        self._stats = stats
        self._effects = effects
        self._timers = timers
        self._timings = timings
        self._seq = 0
        self._probe_index = 0
        self._probe: _Probe | None = None
        #: A probe tick came while a probe was in flight (Go's ticker buffers one).
        self._probe_pending = False
        self._ack_handlers: dict[int, _Probe | _Relay | _HolderCheck] = {}
        self._relays = 0
        #: Member name -> its pending holder check.
        self._holder_checks: dict[str, _HolderCheck] = {}

    def start(self, now: float, first_delay: float) -> None:
        self._timers.schedule(now + first_delay, self._probe_tick)

    def is_idle_timer(self, entry: TimerEntry) -> bool:
        """Whether a timer is the timeout or deadline of a probe already answered."""
        callback = entry[2]
        return ((callback == self._probe_timeout or callback == self._probe_deadline)
                and entry[3] is not self._probe)

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    # ------------------------------------------------------------------ our probes

    def _probe_tick(self, _: object, now: float) -> None:
        self._timers.schedule(now + self.config.probe_interval, self._probe_tick)
        if self._probe is not None:
            self._probe_pending = True
        else:
            self._start_probe(now)

    def _start_probe(self, now: float) -> None:
        """Probe the next member in shuffled round-robin order (SWIM section 4.3)."""
        checked = 0
        table = self._table
        nodes = table.nodes
        while True:
            if checked >= len(nodes):
                return
            if self._probe_index >= len(nodes):
                table.new_round(now)
                self._probe_index = 0
                checked += 1
                continue
            st = nodes[self._probe_index]
            self._probe_index += 1
            if st.name == table.name or st.dead_or_left():
                checked += 1
                continue
            self._probe_node(st, now)
            return

    def _probe_node(self, target: NodeState, now: float) -> None:
        interval = self.config.probe_interval
        if self._lifeguard:
            interval = self._awareness.scale(interval)
            if interval > self.config.probe_interval:
                self._stats["probe.degraded"] += 1  # memberlist.degraded.probe
        seq = self._next_seq()
        probe = _Probe(seq, target, now, now + interval)
        self._probe = probe
        self._ack_handlers[seq] = probe
        table = self._table
        ping = codec.encode(Ping(seq, target.name, table.addr, table.port, table.name))
        self._stats["probe.sent"] += 1
        if target.state == MemberState.ALIVE or not self._lifeguard:
            self._packets.send(probe.addr, ping)
        else:
            # Lifeguard buddy system: tell a suspect it is suspected, so it refutes now.
            buddy = codec.encode(Suspect(target.incarnation, target.name, table.name))
            self._packets.send_raw(probe.addr, codec.encode_compound([ping, buddy]),
                                   crc=target.pmax >= 5)
        self._timers.schedule(now + self.config.probe_timeout, self._probe_timeout, probe)
        self._timers.schedule(probe.deadline, self._probe_deadline, probe)

    def _probe_timeout(self, probe: _Probe, now: float) -> None:
        """No direct ack in time: ask helpers, and try TCP in parallel."""
        if self._probe is not probe or probe.indirect_sent:
            return
        probe.indirect_sent = True
        target = probe.target
        table = self._table
        me = table.name
        helpers = table.random_heard_first(
            self.config.indirect_checks,
            lambda s: s.name == me or s.name == target or s.state != MemberState.ALIVE)
        for helper in helpers:
            nack = self._lifeguard and helper.pmax >= 4
            if nack:
                probe.expected_nacks += 1
            req = IndirectPing(probe.seq, probe.addr[0], probe.addr[1], target, nack,
                               table.addr, table.port, me)
            self._packets.send((helper.addr, helper.port), codec.encode(req))
        probe.helpers = len(helpers)
        self._stats["probe.indirect"] += 1
        st = table.get(target)
        if self.config.tcp_pings and st is not None and st.pmax >= 3:
            ping = Ping(probe.seq, target, table.addr, table.port, me)
            probe.tcp_pending = True
            self._sync.open_stream(probe.addr, codec.encode(ping), StreamPurpose.TCP_PING,
                                   probe.seq, now)

    def _probe_deadline(self, probe: _Probe, now: float) -> None:
        """The probe period is over without an ack: suspect the target."""
        if self._probe is not probe:
            return
        self._ack_handlers.pop(probe.seq, None)
        if probe.tcp_ok:
            self._stats["probe.tcp_only"] += 1
            self._finish_probe(-1, now)
            return
        delta = max(0, probe.expected_nacks - probe.nacks) if probe.expected_nacks > 0 else 1
        self._stats["probe.failed"] += 1
        verdict = self._table.apply_suspect(
            Suspect(probe.incarnation, probe.target, self._table.name), now)
        if verdict is Verdict.SUSPECTED:
            self._effects.append(SuspicionRaised(probe.target, probe.incarnation))
        else:
            self._sync.follow(verdict, probe.target, None, now)
        self._finish_probe(delta, now)

    def _end_probe_if_every_path_failed(self, probe: _Probe, now: float) -> None:
        """Suspect now if the target is unreachable and no path can still answer."""
        if (self._probe is probe and probe.unreachable and probe.indirect_sent
                and not probe.tcp_pending and not probe.tcp_ok
                and probe.expected_nacks == probe.helpers and probe.nacks >= probe.helpers):
            self._stats["probe.ended_early"] += 1
            self._probe_deadline(probe, now)

    def _finish_probe(self, awareness_delta: int, now: float) -> None:
        probe = self._probe
        if probe is not None:
            self._timings.probe.add(now, probe.sent)
        self._probe = None
        if self._lifeguard:
            self._awareness.apply_delta(awareness_delta)
        if self._probe_pending:
            self._probe_pending = False
            self._start_probe(now)

    def on_tcp_ping_reply(self, seq: int, msg: object, now: float) -> None:
        """The reply to our TCP ping (``msg`` None when the stream failed)."""
        probe = self._probe
        if probe is not None and probe.seq == seq:
            probe.tcp_pending = False
            if isinstance(msg, Ack) and msg.seq_no == seq:
                probe.tcp_ok = True
            else:
                self._end_probe_if_every_path_failed(probe, now)

    def on_unreachable(self, dest: Address, sent: bytes, now: float) -> None:
        """The host of ``dest`` answered ``sent`` with "port unreachable" (see
        :meth:`Node.handle_unreachable`): only the waiting changes, never the verdict."""
        self._stats["udp.unreachable"] += 1
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
                    self._packets.send(relay.requester, codec.encode(Nack(relay.orig_seq)),
                                       piggyback=relay.requester_is_member)

    # ------------------------------------------------------------------ pings from others

    def on_ping(self, msg: Ping, source: Address, now: float) -> None:
        table = self._table
        if msg.node and msg.node != table.name:
            self._stats["drop.ping_wrong_node"] += 1
            return
        reply_to = source
        if msg.source_addr and domains.address_problem(msg.source_addr, msg.source_port) is None:
            reply_to = (msg.source_addr, msg.source_port)
        payload = self._delegate.ack_payload() if self._delegate is not None else b""
        self._packets.send(reply_to, codec.encode(Ack(msg.seq_no, payload)),
                           piggyback=table.is_member_at(msg.source_node, reply_to))

    def on_indirect_ping(self, msg: IndirectPing, source: Address, now: float) -> None:
        """Probe ``msg.target`` for a requester; relay the ack, or nack if none comes."""
        table = self._table
        requester = source
        if msg.source_addr and domains.address_problem(msg.source_addr, msg.source_port) is None:
            requester = (msg.source_addr, msg.source_port)
        target = (msg.target, msg.port or table.port)
        problem = domains.address_problem(*target)
        if problem is not None:
            self._stats["drop.indirect_ping_" + problem] += 1
            return
        if self._relays >= MAX_PENDING_RELAYS:
            self._stats["drop.indirect_ping_too_many"] += 1
            return
        seq = self._next_seq()
        self._relays += 1
        self._ack_handlers[seq] = _Relay(msg.seq_no, requester, msg.nack, target,
                                         table.is_member_at(msg.source_node, requester))
        ping = Ping(seq, msg.node, table.addr, table.port, table.name)
        self._packets.send(target, codec.encode(ping),
                           piggyback=table.is_member_at(msg.node, target))
        self._timers.schedule(now + self.config.probe_timeout, self._relay_expire, seq)

    def _relay_expire(self, seq: int, now: float) -> None:
        handler = self._ack_handlers.get(seq)
        if isinstance(handler, _Relay):
            del self._ack_handlers[seq]
            self._relays -= 1
            if handler.nack:
                self._packets.send(handler.requester, codec.encode(Nack(handler.orig_seq)),
                                   piggyback=handler.requester_is_member)

    def on_ack(self, msg: Ack, source: Address, now: float) -> None:
        handler = self._ack_handlers.pop(msg.seq_no, None)
        if handler is None:
            self._stats["ack.unexpected"] += 1
            return
        if isinstance(handler, _HolderCheck):
            # Someone still answers for the name there: it keeps it (a conflict).
            del self._holder_checks[handler.claim.node]
            self._stats["conflict.holder_alive"] += 1
            return
        if isinstance(handler, _Relay):
            self._relays -= 1
            self._packets.send(handler.requester, codec.encode(Ack(handler.orig_seq)),
                               piggyback=handler.requester_is_member)
        elif self._probe is handler:
            if source == handler.addr:
                target = self._table.get(handler.target)
                if target is not None and (target.addr, target.port) == source:
                    self._table.set_heard(target, True)
            rtt = now - handler.sent
            if (self._delegate is not None and not handler.indirect_sent
                    and rtt <= self.config.probe_timeout):
                # memberlist reports any ack with the probe's SeqNo in this window,
                # whoever sent it; the layer above judges the payload.
                self._effects.append(PingCompleted(handler.target, rtt, msg.payload))
            self._finish_probe(-1, now)

    # ------------------------------------------------------------------ moved members

    def check_holder(self, claim: Alive, now: float) -> None:
        """Ping the address our row has for ``claim.node``, which vouched for a
        new address itself; if no ack comes within a probe interval (two
        pings, so one lost datagram is not a death), the name moves."""
        st = self._table.get(claim.node)
        if (st is None or st.dead_or_left() or claim.node in self._holder_checks
                or len(self._holder_checks) >= MAX_HOLDER_CHECKS):
            return
        check = _HolderCheck(self._next_seq(), (st.addr, st.port), claim)
        self._holder_checks[claim.node] = check
        self._ack_handlers[check.seq] = check
        self._stats["address.holder_checked"] += 1
        self._ping_holder(check, now)
        self._timers.schedule(now + self.config.probe_timeout, self._ping_holder, check)
        self._timers.schedule(now + self.config.probe_interval, self._holder_check_expired,
                              check)

    def _ping_holder(self, check: _HolderCheck, now: float) -> None:
        if self._ack_handlers.get(check.seq) is check:
            table = self._table
            ping = Ping(check.seq, check.claim.node, table.addr, table.port, table.name)
            self._packets.send(check.addr, codec.encode(ping))

    def _holder_check_expired(self, check: _HolderCheck, now: float) -> None:
        if self._ack_handlers.get(check.seq) is not check:
            return  # answered
        del self._ack_handlers[check.seq]
        del self._holder_checks[check.claim.node]
        st = self._table.get(check.claim.node)
        if st is None or (st.addr, st.port) != check.addr or st.dead_or_left():
            return  # moved or declared meanwhile: the usual rules took over
        self._table.apply_alive(check.claim, now, authoritative=True, holder_gone=True)

    def on_nack(self, msg: Nack, source: Address, now: float) -> None:
        handler = self._ack_handlers.get(msg.seq_no)
        if isinstance(handler, _Probe):
            handler.nacks += 1
            self._end_probe_if_every_path_failed(handler, now)
