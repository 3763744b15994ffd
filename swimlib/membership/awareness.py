"""Lifeguard local health awareness (LHA): a node that is itself slow backs off.

memberlist's variant (not the paper's): the score lives in
``[0, awareness_max_multiplier - 1]`` and scales only the probe interval,
not the probe timeout.
"""

from __future__ import annotations


class Awareness:
    """A saturating health score; 0 is healthy."""

    __slots__ = ("max_score", "score")

    def __init__(self, max_multiplier: int) -> None:
        self.max_score = max(0, max_multiplier - 1)
        self.score = 0

    def apply_delta(self, delta: int) -> None:
        self.score = min(self.max_score, max(0, self.score + delta))

    def scale(self, timeout: float) -> float:
        return timeout * (self.score + 1)
