"""Never strand: while we see fewer members than we know, keep rejoining them.

How Serf strands (serf#333, consul#7750), and what we do instead:

- **A power cycle.** Serf's snapshot rejoin tries each remembered member once at
  start. Agents that boot together all find nobody up, give up, and the
  cluster comes back as islands that stay islands: nothing ever joins them
  again. Here an agent that knows peers it cannot see keeps trying them.
- **A partition.** Each side declares the other failed. Serf's reconnect loop
  tries one failed member every 30 s with probability failed/alive, and
  forgets it after ``reconnect_timeout``; with many members down it mostly
  skips its turn. Here every gap is retried, on a backoff that starts at a
  second when the gap opens.
- **An outage longer than the reap.** Serf forgets a member reaped from its
  list, so after a long outage nobody remembers anybody. The snapshot keeps
  every peer it has known (:mod:`swimlib.agent.snapshot` keeps failed ones as
  rejoin candidates), and so do we, until the member leaves gracefully.

:class:`Rejoiner` is the rule, sans-IO: it is told what the agent sees
(:meth:`Rejoiner.observe`) and the time, and says when to try
(:meth:`Rejoiner.next_deadline`) and whom (:meth:`Rejoiner.targets`). The
agent's loop (:func:`swimlib.agent.join.keep_rejoining`) does the joining.

"Knows": every member seen (alive or failed) since start, the snapshot's
remembered peers, and the ``-retry-join`` addresses. A member that *left*
(graceful leave, ``force-leave``) is forgotten: it meant to go. A gap is a
known member that is not alive in our view, and the ``-retry-join``
addresses count as one while no member at all is visible. Attempts follow a
jittered exponential backoff from :data:`FIRST_DELAY` to :data:`MAX_DELAY`,
reset when a new gap opens; a gap a success does not close (that member is
really down) keeps backing off, so a dead peer costs one connection attempt
per ``MAX_DELAY`` at worst, forever (as asked: a node that comes back after a
week is found again).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from swimlib.agent.addresses import member_address
from swimlib.cluster.events import ClusterMember, MemberStatus

#: First retry after a gap opens, and the ceiling of the backoff (seconds).
#: The ceiling bounds how long a healed network waits: under half of the
#: default push-pull interval (30 s), so a partition heals within one.
FIRST_DELAY = 1.0
MAX_DELAY = 15.0
#: Members tried per attempt: enough that one dead peer does not stall the
#: attempt, few enough that a thousand known peers do not cost a thousand
#: connections every time.
TARGETS_PER_ATTEMPT = 3
#: Peers remembered at most (a flood of fake members must not grow us without bound).
MAX_KNOWN = 10_000


class Rejoiner:
    """When and whom to rejoin (see the module docstring)."""

    def __init__(self, own_name: str, rng: random.Random, *, seeds: Sequence[str] = (),
                 first_delay: float = FIRST_DELAY, max_delay: float = MAX_DELAY) -> None:
        self._own_name = own_name
        self._rng = rng
        self._seeds = tuple(seeds)
        self._first_delay = first_delay
        self._max_delay = max_delay
        #: name -> "ip:port" of every peer we know, as last seen.
        self._known: dict[str, str] = {}
        self._alive: set[str] = set()
        #: Peers in the member list at the last observation, and the gaps then.
        self._listed: set[str] = set()
        self._missing: set[str] = set()
        self._delay = first_delay
        self._deadline: float | None = None
        self.attempts = 0

    def remember(self, name: str, addr: str) -> None:
        """A peer known from elsewhere (the snapshot) at ``addr`` ("ip:port")."""
        if name != self._own_name and len(self._known) < MAX_KNOWN:
            self._known.setdefault(name, addr)

    @property
    def known(self) -> dict[str, str]:
        return dict(self._known)

    def missing(self) -> list[str]:
        """Known peers we do not see alive, by name."""
        return sorted(set(self._known) - self._alive)

    def _stranded(self) -> bool:
        if self.missing():
            return True
        return bool(self._seeds) and not self._alive

    def observe(self, members: Iterable[ClusterMember], now: float) -> None:
        """What the agent sees now: learn peers, forget leavers, schedule an attempt.

        A peer that was listed and no longer is has been reaped (Serf's
        ``reconnect_timeout``, 24 h by default): the operator's word on how
        long a failed member is worth rejoining, so it is forgotten too.
        """
        alive: set[str] = set()
        listed: set[str] = set()
        for m in members:
            if m.name == self._own_name:
                continue
            listed.add(m.name)
            if m.status in (MemberStatus.LEFT, MemberStatus.LEAVING):
                self._known.pop(m.name, None)
                continue
            if m.name in self._known or len(self._known) < MAX_KNOWN:
                self._known[m.name] = member_address(m.addr, m.port)
            if m.status == MemberStatus.ALIVE:
                alive.add(m.name)
        for name in self._listed - listed:
            self._known.pop(name, None)
        self._listed = listed
        self._alive = alive
        missing = set(self.missing())
        if not self._stranded():
            self._deadline = None
            self._delay = self._first_delay
        elif self._deadline is None or missing - self._missing:
            # A new gap (not one we were already backing off on): try soon.
            self._delay = self._first_delay
            self._deadline = min(self._deadline if self._deadline is not None else now + 1e9,
                                 now + self._jittered(self._first_delay))
        self._missing = missing

    def next_deadline(self) -> float | None:
        """When the next attempt is due; None while we see everyone we know."""
        return self._deadline

    def targets(self, now: float) -> list[str]:
        """Addresses to join now (empty if not due), and back off for the next time."""
        if self._deadline is None or now < self._deadline:
            return []
        missing = self.missing()
        self._rng.shuffle(missing)
        picked = [self._known[name] for name in missing[:TARGETS_PER_ATTEMPT]]
        if self._seeds and not self._alive:
            picked.extend(self._seeds)
        self.attempts += 1
        self._delay = min(self._max_delay, self._delay * 2)
        self._deadline = now + self._jittered(self._delay)
        return picked

    def _jittered(self, delay: float) -> float:
        """Between half and all of ``delay``: agents that lost the same peers spread out."""
        return delay * (0.5 + 0.5 * self._rng.random())
