"""The server-side filters Serf's agent applies: members, event streams, log levels.

Kept apart from the server so each rule can be tested directly against what
``ipc.go`` / ``event_handler.go`` / ``logutils`` do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from swimlib.cluster.domains import go_text_bytes
from swimlib.cluster.events import ClusterMember, Event, EventType, QueryEvent, UserEvent
from swimlib.records import record
from swimlib.rpc.api import LOG_LEVELS

__all__ = [
    "EventFilter",
    "InvalidRegex",
    "event_matches",
    "filter_members",
    "log_level_passes",
    "parse_event_filters",
]

_VALID_EVENTS = frozenset(t.value for t in EventType) | {"*"}


class InvalidRegex(ValueError):
    """A members filter did not compile (the message is Serf's)."""


class _Anchored:
    """Go's ``regexp.Compile("^" + expr + "$")``, in RE2 as Go's is.

    RE2 matches in linear time (Python's ``re`` backtracks: one filter from a
    client could stall the agent) and its ``$`` is Go's end of text. Note
    ``^a|b$`` is ``(^a)|(b$)`` in both, which is why Serf's
    ``-status='left|failed'`` works. Text that is not valid UTF-8 is
    matched as Go reads it (each bad byte a U+FFFD), never raised on.
    """

    def __init__(self, expr: str) -> None:
        import re2  # google-re2

        options = re2.Options()
        options.log_errors = False
        try:
            self._pattern: Any = re2.compile(
                f"^{expr}$".encode("utf-8", "surrogateescape"), options)
        except re2.error as exc:
            detail = exc.args[0] if exc.args else exc
            if isinstance(detail, bytes):
                detail = detail.decode("utf-8", "replace")
            raise InvalidRegex(f"Failed to compile regex: {detail}") from None

    def search(self, text: str) -> bool:
        return self._pattern.search(go_text_bytes(text)) is not None


def _anchored(expr: str) -> _Anchored:
    return _Anchored(expr)


def filter_members(
    members: Iterable[ClusterMember], tags: Mapping[str, str], status: str, name: str
) -> list[ClusterMember]:
    """``members-filtered``: every tag regex must match (a missing tag is ``""``).

    Empty ``status`` / ``name`` match everything. Raises :class:`InvalidRegex`.
    """
    tag_res = {key: _anchored(expr) for key, expr in tags.items()}
    status_re = _anchored(status)
    name_re = _anchored(name)
    result = []
    for m in members:
        tag_map = m.tag_map
        if not all(rx.search(tag_map.get(key, "")) for key, rx in tag_res.items()):
            continue
        if status and not status_re.search(m.status_name):
            continue
        if name and not name_re.search(m.name):
            continue
        result.append(m)
    return result


@record
class EventFilter:
    """One ``type`` or ``user:NAME`` / ``query:NAME`` item of a stream filter."""

    event: str
    name: str = ""

    @property
    def valid(self) -> bool:
        return self.event in _VALID_EVENTS


def parse_event_filters(spec: str) -> list[EventFilter]:
    """Serf's ``ParseEventFilter``: comma list, empty meaning ``*``."""
    result = []
    for item in (spec or "*").split(","):
        if item.startswith("user:"):
            result.append(EventFilter("user", item[len("user:") :]))
        elif item.startswith("query:"):
            result.append(EventFilter("query", item[len("query:") :]))
        else:
            result.append(EventFilter(item))
    return result


def event_matches(filters: Iterable[EventFilter], event: Event) -> bool:
    """Serf's ``EventFilter.Invoke`` over a list (any match wins)."""
    for f in filters:
        if f.event == "*":
            return True
        if event.type.value != f.event:
            continue
        if f.name and isinstance(event, UserEvent | QueryEvent) and event.name != f.name:
            continue
        return True
    return False


def log_level_passes(min_level: str, level: str) -> bool:
    """``logutils.LevelFilter``: drop known levels below ``min_level``, keep the rest."""
    if level not in LOG_LEVELS or min_level not in LOG_LEVELS:
        return True
    return LOG_LEVELS.index(level) >= LOG_LEVELS.index(min_level)
