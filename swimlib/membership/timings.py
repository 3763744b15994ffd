"""Durations the core measures for metrics: how long a probe and a push-pull took.

memberlist times its ``probeNode`` and ``pushPullNode`` functions with
go-metrics (``memberlist.probeNode``, ``memberlist.pushPullNode``, in
milliseconds). The core is sans-IO and reads no clock, but it already knows
when each probe and push-pull began and ended (the ``now`` it was given), so
it records the difference once per probe and once per push-pull: a count, a
running total and the last few samples with their times, from which a
scrape (quantiles over the last seconds) or a statsd flush (each new sample)
is computed later, off the protocol path. Recording draws no randomness and
emits nothing: the simulator's traces do not see it.
"""

from __future__ import annotations

from collections import deque

#: Samples kept per timing (a probe a second: about a minute of them).
RECENT_SAMPLES = 64


class Timing:
    """Count, total and recent samples of one duration, in milliseconds."""

    __slots__ = ("count", "recent", "total")

    def __init__(self, keep: int = RECENT_SAMPLES) -> None:
        #: Samples recorded since start.
        self.count = 0
        #: Their sum, in milliseconds.
        self.total = 0.0
        #: The newest samples as ``(when, milliseconds)``, oldest first.
        self.recent: deque[tuple[float, float]] = deque(maxlen=keep)

    def add(self, now: float, started: float) -> None:
        """Record a duration that began at ``started`` and ended at ``now`` (seconds)."""
        ms = (now - started) * 1000.0
        self.count += 1
        self.total += ms
        self.recent.append((now, ms))

    def since(self, count: int) -> list[float]:
        """The samples recorded after the first ``count`` (those still kept)."""
        new = min(self.count - count, len(self.recent))
        if new <= 0:
            return []
        return [ms for _, ms in list(self.recent)[-new:]]

    def window(self, now: float, seconds: float) -> list[float]:
        """The kept samples recorded in the last ``seconds`` before ``now``."""
        cutoff = now - seconds
        return [ms for when, ms in self.recent if when >= cutoff]


class Timings:
    """The core's timings, shared by the parts that record them."""

    __slots__ = ("probe", "push_pull")

    def __init__(self) -> None:
        #: One probe, from its ping to its ack or to the end of its period
        #: (memberlist's ``probeNode``).
        self.probe = Timing()
        #: One push-pull we opened (periodic, join or re-check), from the
        #: request to the merged reply or the failure (``pushPullNode``).
        self.push_pull = Timing()
