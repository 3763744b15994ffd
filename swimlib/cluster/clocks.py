"""The Serf layer's Lamport clocks and their rules, all in one place.

Serf keeps three Lamport clocks: members (intents), user events and
queries. ``witness(v)`` moves a clock past ``v`` so anything we send
afterwards is ordered after what we saw: if ``v >= now`` then ``now = v + 1``.
Unlike Go's, a clock here stops at the top of uint64 instead of wrapping to 0
(a wrapped clock orders everything we send before everything we saw).
What may move them:

- a message's time is witnessed only if :func:`.domains.plausible_ltime`
  allows it, unless it came in the reply to a stream we opened (``trusted``:
  nobody can spoof that, so a member's own word is believed whatever its jump);
- a push-pull's clocks are witnessed minus one (Serf: the peer's clock is
  the next time it will use, not one it has used), its member clock held to
  the highest status time it carries;
- after a restart from a snapshot, the clocks move past what we used before
  and events and queries older than that are never delivered again.
"""

from __future__ import annotations

from swimlib.cluster import domains as dom
from swimlib.wire import serf as sw

#: Suffix of the drop reasons of a time outside :func:`.domains.plausible_ltime`.
IMPLAUSIBLE = "_ltime_implausible"


class LamportClock:
    """One Lamport clock (saturating: see the module docstring)."""

    __slots__ = ("_time",)

    def __init__(self, start: int = 1) -> None:
        self._time = start

    def time(self) -> int:
        return self._time

    def increment(self) -> int:
        """Advance and return the new time."""
        self._time = dom.saturating_add(self._time)
        return self._time

    def witness(self, value: int) -> None:
        if value >= self._time:
            self._time = dom.saturating_add(value)


def ltime_problem(clock: LamportClock, ltime: int, what: str,
                  trusted: bool = False) -> str | None:
    """``<what>_ltime_implausible`` when ``ltime`` may not move ``clock``."""
    if trusted or dom.plausible_ltime(clock.time(), ltime):
        return None
    return f"{what}{IMPLAUSIBLE}"


def is_implausible(problem: str) -> bool:
    """Whether a drop reason is a refused time (the sender is then re-checked)."""
    return problem.endswith(IMPLAUSIBLE)


class SerfClocks:
    """The member, event and query clocks, and the floor of events and queries."""

    __slots__ = ("event", "event_min_time", "member", "query", "query_min_time")

    def __init__(self) -> None:
        self.member = LamportClock()
        self.event = LamportClock()
        self.query = LamportClock()
        #: Events and queries below these were delivered before a restart.
        self.event_min_time = 0
        self.query_min_time = 0

    def restore(self, member: int, event: int, query: int) -> None:
        """After a restart (snapshot): never reuse an old LTime, never replay old events."""
        self.member.witness(member)
        self.event.witness(event)
        self.query.witness(query)
        self.event_min_time = max(self.event_min_time, event + 1)
        self.query_min_time = max(self.query_min_time, query + 1)

    def push_pull_problem(self, pp: sw.SerfPushPull, trusted: bool) -> str | None:
        """Why a push-pull's clocks may not be witnessed (None: they may)."""
        # Status times are intents' times: held to the member clock like them.
        member_time = max(pp.ltime, max(pp.status_ltimes.values(), default=0))
        return (ltime_problem(self.member, member_time, "push_pull", trusted)
                or ltime_problem(self.event, pp.event_ltime, "push_pull", trusted)
                or ltime_problem(self.query, pp.query_ltime, "push_pull", trusted))

    def witness_push_pull(self, pp: sw.SerfPushPull) -> None:
        """Move our clocks up to a peer's (each minus one, as Serf)."""
        if pp.ltime > 0:
            self.member.witness(pp.ltime - 1)
        if pp.event_ltime > 0:
            self.event.witness(pp.event_ltime - 1)
        if pp.query_ltime > 0:
            self.query.witness(pp.query_ltime - 1)
