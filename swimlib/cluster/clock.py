"""Lamport clocks (Serf keeps three: members, events, queries).

``witness(v)`` moves the clock past ``v`` so anything we send afterwards is
ordered after what we saw: if ``v >= now`` then ``now = v + 1``. Unlike Go's,
this clock stops at the top of uint64 instead of wrapping to 0 (a wrapped
clock orders everything we send before everything we saw); which received
times may be witnessed at all is :func:`swimlib.cluster.domains.plausible_ltime`.
"""

from __future__ import annotations

from swimlib.cluster.domains import saturating_add


class LamportClock:
    __slots__ = ("_time",)

    def __init__(self, start: int = 1) -> None:
        self._time = start

    def time(self) -> int:
        return self._time

    def increment(self) -> int:
        """Advance and return the new time."""
        self._time = saturating_add(self._time)
        return self._time

    def witness(self, value: int) -> None:
        if value >= self._time:
            self._time = saturating_add(value)
