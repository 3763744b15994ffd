"""A tiny heartbeat-gossip node with swimlib's Node API, for testing the engine alone.

It is deliberately not SWIM: every second it gossips its whole table (JSON)
to two random peers; a member whose heartbeat stops advancing is suspected
after 3 s and declared dead after 6 s. That is enough to exercise every
effect the engine routes or records (packets, streams, joins, member events,
suspicions, deaths, refutations) without depending on swimlib's Node.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence

from swimlib.config import Config
from swimlib.membership.types import (
    Address,
    DeathDeclared,
    Effect,
    EventKind,
    JoinFinished,
    Member,
    MemberState,
    NodeEvent,
    OpenStream,
    Refuted,
    SendPacket,
    SuspicionRaised,
)

SUSPECT_AFTER = 3.0
DEAD_AFTER = 6.0
PERIOD = 1.0


class _Entry:
    __slots__ = ("addr", "hb", "inc", "left", "port", "seen", "state")

    def __init__(self, addr: str, port: int, inc: int, hb: int, left: bool, now: float) -> None:
        self.addr, self.port, self.inc, self.hb, self.left = addr, port, inc, hb, left
        self.seen = now
        self.state = MemberState.LEFT if left else MemberState.ALIVE


class FakeNode:
    def __init__(self, name: str, addr: str, port: int, config: Config, rng: random.Random,
                 now: float, meta: bytes = b"") -> None:
        self.name = name
        self.addr, self.port = addr, port
        self._rng = rng
        self._effects: list[Effect] = []
        self._table: dict[str, _Entry] = {name: _Entry(addr, port, 1, 0, False, now)}
        self._next = now + rng.random() * PERIOD
        self._rid = 0
        self._joins: dict[int, Address] = {}
        self._join_state: list[int] = [0, 0]
        self._join_failed: list[Address] = []
        self.ticks: list[float] = []

    # -- API ---------------------------------------------------------------------

    @property
    def incarnation(self) -> int:
        return self._table[self.name].inc

    def take_effects(self) -> list[Effect]:
        out, self._effects = self._effects, []
        return out

    def next_deadline(self, skip_idle: bool = False) -> float | None:
        return self._next

    def members(self) -> list[Member]:
        return [Member(n, e.addr, e.port, b"", e.inc, e.state) for n, e in self._table.items()]

    def state_of(self, name: str) -> MemberState | None:
        e = self._table.get(name)
        return None if e is None else e.state

    def alive_count(self) -> int:
        return sum(1 for e in self._table.values() if e.state is MemberState.ALIVE)

    def seed_members(self, members: Iterable[Member], now: float) -> None:
        for m in members:
            if m.name not in self._table:
                self._table[m.name] = _Entry(m.addr, m.port, m.incarnation, 0, False, now)

    def tick(self, now: float) -> None:
        self.ticks.append(now)
        if now < self._next:
            return
        self._next = now + PERIOD
        me = self._table[self.name]
        if not me.left:
            me.hb += 1
        self._detect(now)
        peers = [e for n, e in sorted(self._table.items())
                 if n != self.name and e.state in (MemberState.ALIVE, MemberState.SUSPECT)]
        for e in self._rng.sample(peers, min(2, len(peers))):
            self._effects.append(SendPacket((e.addr, e.port), self._encode()))

    def handle_packet(self, data: bytes, source: Address, now: float) -> None:
        self._merge(data, now)

    def handle_unreachable(self, dest: Address, sent: bytes, now: float) -> None:
        pass  # a heartbeat fake has no probe to end early

    def handle_stream(self, data: bytes, source: Address, now: float) -> bytes | None:
        reply = self._encode()
        self._merge(data, now)
        return reply

    def handle_stream_reply(self, request_id: int, data: bytes | None, now: float) -> None:
        addr = self._joins.pop(request_id, None)
        if addr is None:
            return
        if data is None:
            self._join_failed.append(addr)
        else:
            self._join_state[1] += 1
            self._merge(data, now)
        self._join_state[0] -= 1
        if self._join_state[0] == 0:
            self._effects.append(JoinFinished(self._join_state[1], tuple(self._join_failed)))

    def join(self, addrs: Sequence[Address], now: float) -> None:
        self._join_state = [len(addrs), 0]
        self._join_failed = []
        for a in addrs:
            self._rid += 1
            self._joins[self._rid] = a
            self._effects.append(OpenStream(self._rid, a, self._encode(), 10.0))

    def leave(self, now: float) -> None:
        me = self._table[self.name]
        me.left, me.state = True, MemberState.LEFT
        me.inc += 1
        for n, e in sorted(self._table.items()):
            if n != self.name and e.state is MemberState.ALIVE:
                self._effects.append(SendPacket((e.addr, e.port), self._encode()))

    # -- internals -----------------------------------------------------------------

    def _encode(self) -> bytes:
        rows = [[n, e.addr, e.port, e.inc, e.hb, e.left] for n, e in sorted(self._table.items())]
        return json.dumps(rows).encode()

    def _detect(self, now: float) -> None:
        for n, e in sorted(self._table.items()):
            if n == self.name or e.state in (MemberState.DEAD, MemberState.LEFT):
                continue
            quiet = now - e.seen
            if quiet >= DEAD_AFTER:
                e.state = MemberState.DEAD
                self._effects.append(DeathDeclared(n, e.inc, 0))
                self._effects.append(NodeEvent(EventKind.LEAVE, self._member(n, e)))
            elif quiet >= SUSPECT_AFTER and e.state is MemberState.ALIVE:
                e.state = MemberState.SUSPECT
                self._effects.append(SuspicionRaised(n, e.inc))

    def _member(self, n: str, e: _Entry) -> Member:
        return Member(n, e.addr, e.port, b"", e.inc, e.state)

    def _merge(self, data: bytes, now: float) -> None:
        for n, addr, port, inc, hb, left in json.loads(data):
            mine = self._table.get(n)
            if n == self.name:
                assert mine is not None
                if (inc, hb) > (mine.inc, mine.hb) and not mine.left:
                    mine.inc = inc + 1  # an older life of ours is still gossiped: outbid it
                    self._effects.append(Refuted(mine.inc))
                continue
            if mine is None:
                e = _Entry(addr, port, inc, hb, left, now)
                self._table[n] = e
                self._effects.append(NodeEvent(
                    EventKind.LEAVE if left else EventKind.JOIN, self._member(n, e)))
                continue
            if (inc, hb) <= (mine.inc, mine.hb):
                continue
            mine.inc, mine.hb, mine.seen = inc, hb, now
            old = mine.state
            if left:
                mine.left, mine.state = True, MemberState.LEFT
                if old is not MemberState.LEFT:
                    self._effects.append(NodeEvent(EventKind.LEAVE, self._member(n, mine)))
            elif old is not MemberState.LEFT:
                mine.state = MemberState.ALIVE
                if old is MemberState.DEAD:
                    self._effects.append(NodeEvent(EventKind.JOIN, self._member(n, mine)))
