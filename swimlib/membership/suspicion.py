"""Lifeguard's dynamic suspicion timeout (memberlist ``suspicion.go`` semantics).

A suspicion starts at ``max`` and shrinks as *independent* peers confirm it:
``max - (max - min) * ln(c + 1) / ln(k + 1)``, floored at ``min`` (Lifeguard
paper section IV-B; memberlist's code, whose timeout uses ``log10 n`` where its
comment says ``log(N+1)``). The first accuser never counts as a confirmation.
"""

from __future__ import annotations

import math


def suspicion_min_timeout(suspicion_mult: int, n: int, probe_interval: float) -> float:
    """``mult * max(1, log10 n) * interval``; node scale truncated to ms as Go does."""
    node_scale = max(1.0, math.log10(max(1, n)))
    return suspicion_mult * (math.floor(node_scale * 1000) / 1000) * probe_interval


def expected_confirmations(suspicion_mult: int, n: int) -> int:
    """k = mult - 2, or 0 when the cluster is too small to supply them (n - 2 < k)."""
    k = suspicion_mult - 2
    return 0 if n - 2 < k else k


def suspicion_timeout(confirmations: int, k: int, min_timeout: float, max_timeout: float) -> float:
    """Total timeout after ``confirmations`` of ``k`` wanted, in seconds (ms floor as Go)."""
    if k < 1:
        return min_timeout
    frac = math.log(confirmations + 1.0) / math.log(k + 1.0)
    raw = max_timeout - frac * (max_timeout - min_timeout)
    return max(min_timeout, math.floor(1000.0 * raw) / 1000.0)


class Suspicion:
    """One suspicion timer: start time, accusers seen, and the current deadline."""

    __slots__ = ("_seen", "confirmations", "deadline", "k", "max_timeout", "min_timeout",
                 "start")

    def __init__(self, accuser: str, k: int, min_timeout: float, max_timeout: float,
                 start: float) -> None:
        self._seen = {accuser}
        self.confirmations = 0
        self.k = k
        self.min_timeout = min_timeout
        self.max_timeout = max_timeout
        self.start = start
        self.deadline = start + suspicion_timeout(0, k, min_timeout, max_timeout)

    def confirm(self, accuser: str) -> bool:
        """Count a new independent accuser; True if it was new (so re-gossip it).

        May pull the deadline in (never pushes it out).
        """
        if self.confirmations >= self.k or accuser in self._seen:
            return False
        self._seen.add(accuser)
        self.confirmations += 1
        self.deadline = self.start + suspicion_timeout(
            self.confirmations, self.k, self.min_timeout, self.max_timeout)
        return True
