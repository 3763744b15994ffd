"""One timer heap for a sans-IO layer: ``schedule`` now, ``run_due`` on tick.

Every timer is a callback and its argument, ordered by due time and then by
the order it was scheduled in, so two timers due at the same instant fire
in the order they were set: replays (the simulator's trace hashes) depend on
it. The callback gets ``(arg, now)``. Owners that want to skip timers which
would do nothing (an answered probe's timeout) inspect the top with
:meth:`Timers.peek` and :meth:`Timers.pop`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

TimerCallback = Callable[[Any, float], None]
#: ``(when, order, callback, arg)``: the order breaks ties, callbacks are never compared.
TimerEntry = tuple[float, int, TimerCallback, Any]


class Timers:
    """A heap of ``(when, order, callback, arg)``."""

    __slots__ = ("_heap", "_order")

    def __init__(self) -> None:
        self._heap: list[TimerEntry] = []
        self._order = 0

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, when: float, callback: TimerCallback, arg: Any = None) -> None:
        self._order += 1
        heapq.heappush(self._heap, (when, self._order, callback, arg))

    def run_due(self, now: float) -> None:
        """Fire every timer due at or before ``now``, earliest first (callbacks may schedule)."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, callback, arg = heapq.heappop(heap)
            callback(arg, now)

    def next_deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def peek(self) -> TimerEntry | None:
        return self._heap[0] if self._heap else None

    def pop(self) -> TimerEntry:
        return heapq.heappop(self._heap)

    def push(self, entry: TimerEntry) -> None:
        """Put back an entry taken with :meth:`pop` (its order is kept)."""
        heapq.heappush(self._heap, entry)

    def discard(self, keep: Callable[[TimerEntry], bool]) -> int:
        """Drop every timer ``keep`` refuses (O(n)); returns how many went."""
        before = len(self._heap)
        self._heap = [entry for entry in self._heap if keep(entry)]
        heapq.heapify(self._heap)
        return before - len(self._heap)
