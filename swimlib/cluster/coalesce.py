"""Event coalescing for handlers, as ``serf agent`` does (member 3 s / 1 s, user 3 s / 1 s).

A burst of member changes becomes one handler call per event type instead of
dozens: events are collected until either the coalesce period since the
first one or the quiescent period since the latest one has passed, then
flushed. Member events keep the latest per member and skip a repeat of the
type last delivered for that member (updates always go out); user events
that allow coalescing keep only those at the newest Lamport time per name.
Queries and non-coalescing user events pass straight through.

Deliberate difference from Serf 0.9: after a flush we forget the delivered
member events, so an unchanged member-update is not re-delivered at every
later flush (Serf's ``coalesce_member.go`` never clears its map).
Sans-IO: callers pass ``now`` and call :meth:`flush_due` at
:meth:`next_deadline`.
"""

from __future__ import annotations

from swimlib.cluster.events import Event, EventType, MemberEvent, UserEvent

_MEMBER_TYPES = (EventType.MEMBER_JOIN, EventType.MEMBER_LEAVE, EventType.MEMBER_FAILED,
                 EventType.MEMBER_UPDATE, EventType.MEMBER_REAP)


class _Window:
    """One coalescing window: opened by the first event, closed by period or quiet."""

    __slots__ = ("period", "quantum_end", "quiescent", "quiet_end")

    def __init__(self, period: float, quiescent: float) -> None:
        self.period = period
        self.quiescent = quiescent
        self.quantum_end: float | None = None
        self.quiet_end: float | None = None

    def touch(self, now: float) -> None:
        if self.quantum_end is None:
            self.quantum_end = now + self.period
        self.quiet_end = now + self.quiescent

    def deadline(self) -> float | None:
        if self.quantum_end is None or self.quiet_end is None:
            return None
        return min(self.quantum_end, self.quiet_end)

    def reset(self) -> None:
        self.quantum_end = self.quiet_end = None


class EventCoalescer:
    """Member and user event coalescing; a period of 0 disables that kind."""

    def __init__(self, member_period: float = 3.0, member_quiescent: float = 1.0,
                 user_period: float = 3.0, user_quiescent: float = 1.0) -> None:
        self._member_window = _Window(member_period, member_quiescent)
        self._user_window = _Window(user_period, user_quiescent)
        self._latest: dict[str, MemberEvent] = {}  # name -> single-member event
        self._last_type: dict[str, EventType] = {}
        self._user: dict[str, tuple[int, list[UserEvent]]] = {}

    def push(self, event: Event, now: float) -> list[Event]:
        """Take one event; returns what must be delivered right away."""
        if isinstance(event, MemberEvent) and self._member_window.period > 0:
            for member in event.members:
                self._latest[member.name] = MemberEvent(event.type, (member,))
            self._member_window.touch(now)
            return []
        if isinstance(event, UserEvent) and event.coalesce and self._user_window.period > 0:
            known = self._user.get(event.name)
            if known is None or known[0] < event.ltime:
                self._user[event.name] = (event.ltime, [event])
            elif known[0] == event.ltime:
                known[1].append(event)
            self._user_window.touch(now)
            return []
        return [event]

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self._member_window.deadline(), self._user_window.deadline())
                     if d is not None]
        return min(deadlines) if deadlines else None

    def flush_due(self, now: float) -> list[Event]:
        out: list[Event] = []
        member_due = self._member_window.deadline()
        if member_due is not None and member_due <= now:
            out.extend(self._flush_members())
        user_due = self._user_window.deadline()
        if user_due is not None and user_due <= now:
            out.extend(self._flush_users())
        return out

    def flush_all(self) -> list[Event]:
        """Everything pending (on shutdown)."""
        return self._flush_members() + self._flush_users()

    def _flush_members(self) -> list[Event]:
        self._member_window.reset()
        grouped: dict[EventType, list[MemberEvent]] = {}
        for name in sorted(self._latest):
            event = self._latest[name]
            if self._last_type.get(name) == event.type and event.type != EventType.MEMBER_UPDATE:
                continue
            self._last_type[name] = event.type
            grouped.setdefault(event.type, []).append(event)
        self._latest.clear()
        return [MemberEvent(kind, tuple(e.members[0] for e in grouped[kind]))
                for kind in _MEMBER_TYPES if kind in grouped]

    def _flush_users(self) -> list[Event]:
        self._user_window.reset()
        out: list[Event] = []
        for name in sorted(self._user):
            out.extend(self._user[name][1])
        self._user.clear()
        return out
