"""Keeping this member's view whole: catch-up syncs and Serf's reconnect loop.

memberlist alone heals a missed message only at the next push-pull, up to
minutes away, and never rejoins a member it declared dead. The Serf layer
adds three nudges, each a push-pull or a join at the right moment:

- a join intent for a member memberlist has not announced says we missed
  its alive message: sync soon (:meth:`CatchUp.expect_member`);
- after our own join, sync once more with a random member
  (:meth:`CatchUp.after_join`);
- Serf's reconnect loop: now and then, rejoin one failed member
  (:meth:`CatchUp.reconnect`).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Protocol

from swimlib.cluster.members import SerfMembers
from swimlib.config import Config
from swimlib.membership.timers import Timers
from swimlib.membership.types import Address

#: A join intent for a member memberlist has not told us about gets this many
#: gossip intervals for the member's alive message to arrive; then we sync.
CATCH_UP_GOSSIP_ROUNDS = 5
#: A join of ours is followed by a second sync after this many gossip intervals.
FOLLOW_UP_GOSSIP_ROUNDS = 2


class Syncing(Protocol):
    """What catching up needs of the membership layer."""

    def sync_now(self, now: float) -> bool: ...

    def join(self, addrs: Sequence[Address], now: float) -> int: ...


class CatchUp:
    """Catch-up syncs and reconnects (see the module docstring)."""

    def __init__(self, config: Config, rng: random.Random, members: SerfMembers,
                 node: Syncing, active: Callable[[], bool], *, stats: Counter[str],
                 timers: Timers) -> None:
        self.config = config
        self._rng = rng
        self._members = members
        self._node = node
        #: Whether we are still a live member (not leaving, left or shut down).
        self._active = active
        self._stats = stats
        self._timers = timers
        #: Members we heard join (Serf intent) but memberlist never announced.
        self._expected: set[str] = set()

    def _delay(self) -> float:
        return CATCH_UP_GOSSIP_ROUNDS * self.config.gossip_interval

    def expect_member(self, name: str, now: float) -> None:
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
        if not self._expected:
            self._timers.schedule(now + self._delay(), self._catch_up_now)
        self._expected.add(name)

    def _catch_up_now(self, _: object, now: float) -> None:
        missing = [n for n in self._expected if not self._members.is_alive(n)]
        self._expected.clear()
        if missing and self._active() and self._node.sync_now(now):
            self._stats["catch_up.sync"] += 1

    def after_join(self, now: float) -> None:
        """Schedule the follow-up sync of a join of ours that reached someone."""
        self._timers.schedule(now + FOLLOW_UP_GOSSIP_ROUNDS * self.config.gossip_interval,
                              self._follow_up_join)

    def _follow_up_join(self, _: object, now: float) -> None:
        """Sync once more, two gossip rounds after our join, with a random member.

        The join's push-pull gave us the seed's table as it was then; members
        joining at the same moment were not in it, and their alive messages
        were gossiped mostly before anyone knew us. A second sync picks up
        what the seed and everyone else learnt meanwhile (in a 5-agent storm
        one joiner went 8 s without three of the others).

        Two rounds (0.4 s on a LAN), not five: in a 50-agent join storm the
        last holes are closed by these syncs, so their delay is the storm's
        tail. At five rounds the last agent was whole 1.31 s after the join
        requests (median of 4 storms on 2 cores); at two, 0.96 s; at one,
        1.13 s (the member asked does not know the other joiners yet).
        """
        if self._active() and self._node.sync_now(now):
            self._stats["join.follow_up_sync"] += 1

    def start_reconnecting(self, now: float) -> None:
        # Serf ticks from its own start, so a real fleet's reconnect attempts are
        # spread out; a random first tick keeps nodes started together (the
        # simulator, a cluster booted at once) from retrying in lockstep.
        self._timers.schedule(now + self._rng.random() * self.config.reconnect_interval,
                              self._reconnect_tick)

    def _reconnect_tick(self, _: object, now: float) -> None:
        self._timers.schedule(now + self.config.reconnect_interval, self._reconnect_tick)
        self.reconnect(now)

    def reconnect(self, now: float) -> None:
        """Try to rejoin one failed member, with probability failed/alive (Serf)."""
        members = self._members
        if not members.failed or not self._active():
            return
        alive = max(1, len(members) - len(members.failed) - len(members.left))
        if self._rng.random() > len(members.failed) / alive:
            return
        m = members.get(self._rng.choice(members.failed))
        if m is not None:
            self._stats["reconnect.attempts"] += 1
            self._node.join([(m.addr, m.port)], now)
