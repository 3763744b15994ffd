"""The ordered event trace and its replay hash.

Every run folds its trace -- membership events, suspicions, deaths,
refutations, joins and injected faults, in the order the engine produced
them -- into a SHA-256. Same seed and same code give the same hash; that is
the replay check. Lines are canonical text (time rounded to microseconds and
printed with ``repr``), so the hash never depends on PYTHONHASHSEED or on
object identity. Lines are hashed in batches to keep the per-event cost low,
and kept in memory only on request (tests, demo).
"""

from __future__ import annotations

import hashlib

from swimlib.membership.types import (
    DeathDeclared,
    JoinFinished,
    NodeEvent,
    Refuted,
    SuspicionRaised,
)

_BATCH = 2048


def describe(effect: object) -> str:
    """Canonical one-line text for a reported effect (not for SendPacket/OpenStream)."""
    t = type(effect)
    if t is NodeEvent:
        assert isinstance(effect, NodeEvent)
        m = effect.member
        return f"member-{effect.kind.value} {m.name} {m.state.name} {m.incarnation}"
    if t is SuspicionRaised:
        assert isinstance(effect, SuspicionRaised)
        return f"suspect {effect.node} {effect.incarnation}"
    if t is DeathDeclared:
        assert isinstance(effect, DeathDeclared)
        return f"declare-dead {effect.node} {effect.incarnation} {effect.confirmations}"
    if t is Refuted:
        assert isinstance(effect, Refuted)
        return f"refute {effect.incarnation}"
    if t is JoinFinished:
        assert isinstance(effect, JoinFinished)
        failed = ",".join(f"{h}:{p}" for h, p in effect.failed)
        return f"join-finished {effect.contacted} [{failed}]"
    return f"{t.__name__} {effect!r}"


class Trace:
    """Accumulates ``(time, node, text)`` lines into a running SHA-256."""

    def __init__(self, keep: bool = False) -> None:
        self._hash = hashlib.sha256()
        self._buf: list[str] = []
        self.count = 0
        #: The lines themselves, only when ``keep`` was asked for.
        self.lines: list[tuple[float, str, str]] | None = [] if keep else None

    def record(self, now: float, node: str, text: str) -> None:
        self.count += 1
        self._buf.append(f"{round(now, 6)!r} {node} {text}\n")
        if self.lines is not None:
            self.lines.append((now, node, text))
        if len(self._buf) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._buf:
            self._hash.update("".join(self._buf).encode("utf-8", "surrogateescape"))
            self._buf.clear()

    def hexdigest(self) -> str:
        """Hash of every line so far (recording may continue afterwards)."""
        self._flush()
        return self._hash.hexdigest()
