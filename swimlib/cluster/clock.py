"""Lamport clocks (Serf keeps three: members, events, queries).

``witness(v)`` moves the clock past ``v`` so anything we send afterwards is
ordered after what we saw: if ``v >= now`` then ``now = v + 1``.
"""

from __future__ import annotations


class LamportClock:
    __slots__ = ("_time",)

    def __init__(self, start: int = 1) -> None:
        self._time = start

    def time(self) -> int:
        return self._time

    def increment(self) -> int:
        """Advance and return the new time."""
        self._time += 1
        return self._time

    def witness(self, value: int) -> None:
        if value >= self._time:
            self._time = value + 1
