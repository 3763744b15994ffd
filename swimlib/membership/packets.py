"""Datagrams out: piggybacking, gossip rounds and the broadcast budget.

Everything the membership layer sends by UDP leaves through :class:`Packets`:
a probe's ping with queued broadcasts piggybacked (memberlist ``sendMsg``),
the gossip tick that sends queued broadcasts to a few random members, and
bare replies, each sealed by the :class:`~swimlib.wire.envelope.Envelope`
(compression, checksum, encryption) within one datagram's byte budget.
"""

from __future__ import annotations

from collections import Counter

from swimlib.config import Config
from swimlib.membership.broadcasts import BroadcastQueue, retransmit_limit
from swimlib.membership.delegate import Delegate
from swimlib.membership.rows import NodeState
from swimlib.membership.table import MemberTable
from swimlib.membership.timers import Timers
from swimlib.membership.types import Address, Effect, MemberState, SendPacket
from swimlib.wire import codec
from swimlib.wire.envelope import Envelope

#: Bytes a compound header costs, and each part's length prefix.
COMPOUND_HEADER = 2
COMPOUND_PART = 2
#: Framing byte in front of each user (Serf) broadcast.
USER_MSG_OVERHEAD = 1
#: Leave room for the message itself in a compound (Go 0.2.2 breaks at 128 parts).
MAX_PIGGYBACK_PARTS = 120
#: memberlist's message type byte of a user (Serf) message.
_USER_MSG = b"\x08"


class Packets:
    """The send side of the datagram path (see the module docstring)."""

    def __init__(self, config: Config, table: MemberTable, broadcasts: BroadcastQueue,
                 delegate: Delegate | None, envelope: Envelope, *, stats: Counter[str],
                 effects: list[Effect], timers: Timers) -> None:
        self.config = config
        self._table = table
        self._broadcasts = broadcasts
        self._delegate = delegate
        self._lifeguard = config.lifeguard
        self._envelope = envelope
        #: Datagrams leave as built unless they need a CRC (no compression, no keyring).
        self._plain = envelope.keyring is None and not envelope.compresses_datagrams
        #: Room in a datagram for the messages themselves.
        self._budget = config.udp_buffer_size - envelope.packet_overhead
        self._stats = stats
        self._effects = effects
        self._timers = timers

    def start(self, now: float, first_delay: float) -> None:
        self._timers.schedule(now + first_delay, self.gossip_tick)

    def has_broadcasts(self) -> bool:
        """Whether a gossip tick now would send anything."""
        return bool(self._broadcasts) or (self._delegate is not None
                                          and self._delegate.has_broadcasts())

    def send_raw(self, dest: Address, data: bytes, crc: bool) -> None:
        self._stats["udp.queued"] += 1  # the runtime counts what it actually sent
        if crc or not self._plain:
            data = self._envelope.seal_packet(data, crc)
        self._effects.append(SendPacket(dest, data))

    def send(self, dest: Address, msg: bytes, piggyback: bool = True) -> None:
        """Send one message, piggybacking queued broadcasts (memberlist sendMsg).

        memberlist piggybacks on every message, so each ping, from anyone and
        naming any reply address, costs one of the few sends each broadcast
        gets: a burst of spoofed pings drained our gossip into the attacker's
        (or our own) address, and members never heard it (found by the state
        machine). Replies to addresses that are not the member they claim to
        come from go out bare (``piggyback=False``).
        """
        if piggyback:
            avail = self._budget - len(msg) - COMPOUND_HEADER
            extra = self._take_broadcasts(COMPOUND_PART, avail)
            if extra:
                msg = codec.encode_compound([msg, *extra[:MAX_PIGGYBACK_PARTS]])
        self.send_raw(dest, msg, crc=False)

    def send_user(self, dest: Address, payload: bytes) -> None:
        """Send a user (Serf) message directly, without piggybacking (memberlist SendTo)."""
        self.send_raw(dest, _USER_MSG + payload, crc=False)

    def _take_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        out = self._broadcasts.take(overhead, limit,
                                    retransmit_limit(self.config.retransmit_mult,
                                                     len(self._table)))
        delegate = self._delegate
        if delegate is not None:
            used = sum(len(m) + overhead for m in out)
            avail = limit - used
            if avail > overhead + USER_MSG_OVERHEAD:
                for payload in delegate.get_broadcasts(overhead + USER_MSG_OVERHEAD, avail):
                    out.append(_USER_MSG + payload)
        return out

    def gossip_tick(self, _: object, now: float) -> None:
        self._timers.schedule(now + self.config.gossip_interval, self.gossip_tick)
        if self._broadcasts or self._delegate is not None:
            self._gossip(now)

    def _gossip(self, now: float) -> None:
        """Send queued broadcasts to a few random live (or recently dead) members."""
        if not self._broadcasts and self._delegate is None:
            return
        table = self._table
        me = table.name
        dead_cutoff = now - self.config.gossip_to_the_dead_time
        # The dead are gossiped to so that one falsely declared dead learns it
        # and refutes. A member that never answered us (a fake one) has nothing
        # to refute, and a hundred fakes dead at once would take the gossip of
        # the next half minute (see MemberTable.random_heard_first); a member
        # that answered us and is said to have left may not have (anyone can
        # say so), and until it hears it cannot refute: memberlist leaves it to
        # the next push-pull.
        heard_only = table.prefers_heard()

        def exclude(s: NodeState) -> bool:
            if s.name == me:
                return True
            if s.state <= MemberState.SUSPECT:
                return False
            if s.state_change < dead_cutoff:
                return True
            if heard_only:
                return not s.heard
            return s.state != MemberState.DEAD

        avail = self._budget - COMPOUND_HEADER
        targets = table.random_members(self.config.gossip_nodes, exclude)
        if targets and heard_only and not any(st.heard for st in targets):
            # One target at least is a member we have heard from.
            heard = table.random_members(1, lambda s: exclude(s) or not s.heard)
            if heard and heard[0] not in targets:
                targets[-1] = heard[0]
        for st in targets:
            msgs = self._take_broadcasts(COMPOUND_PART, avail)
            if not msgs:
                return
            data = msgs[0] if len(msgs) == 1 else codec.encode_compound(
                msgs[:MAX_PIGGYBACK_PARTS + 1])
            self.send_raw((st.addr, st.port), data, crc=st.pmax >= 5)
