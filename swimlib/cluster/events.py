"""What the Serf layer reports: member snapshots with tags and status, and events.

These are the values event handlers, the RPC ``stream`` command and the
Python API (``agent.events()``) all consume, so they carry exactly what Serf
exposes: member-join/leave/failed/update/reap with member lists, user events,
and queries.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

from swimlib.records import field, record
from swimlib.wire.serf import MemberStatus

__all__ = ["ClusterMember", "EventType", "MemberEvent", "MemberStatus", "QueryEvent", "UserEvent"]


def freeze_tags(tags: Mapping[str, str] | Iterable[tuple[str, str]]
                 ) -> tuple[tuple[str, str], ...]:
    """Tags as :attr:`ClusterMember.tags` keeps them: sorted (key, value) pairs.

    The field converts whatever it is given at run time; typed callers
    convert first (mypy does not see converters)."""
    items = tags.items() if isinstance(tags, Mapping) else tags
    return tuple(sorted((str(k), str(v)) for k, v in items))


@record
class ClusterMember:
    """One member as Serf shows it (``serf members``)."""

    name: str
    addr: str
    port: int
    #: Tags as sorted (key, value) pairs; see :attr:`tag_map`.
    tags: tuple[tuple[str, str], ...] = field(converter=freeze_tags, default=())
    status: MemberStatus = MemberStatus.ALIVE
    protocol_min: int = 1
    protocol_max: int = 5
    protocol_cur: int = 2
    delegate_min: int = 2
    delegate_max: int = 5
    delegate_cur: int = 5

    @property
    def tag_map(self) -> dict[str, str]:
        return dict(self.tags)

    @property
    def status_name(self) -> str:
        """``alive``, ``leaving``, ``left``, ``failed`` or ``none`` (Serf's strings)."""
        return self.status.name.lower()


class EventType(enum.Enum):
    """``SERF_EVENT`` values."""

    MEMBER_JOIN = "member-join"
    MEMBER_LEAVE = "member-leave"
    MEMBER_FAILED = "member-failed"
    MEMBER_UPDATE = "member-update"
    MEMBER_REAP = "member-reap"
    USER = "user"
    QUERY = "query"


@record
class MemberEvent:
    """One or more members changed the same way (coalesced like Serf's agent)."""

    type: EventType
    members: tuple[ClusterMember, ...]


@record
class UserEvent:
    """A custom event (``serf event NAME PAYLOAD``)."""

    ltime: int
    name: str
    payload: bytes
    coalesce: bool = True

    @property
    def type(self) -> EventType:
        return EventType.USER


@record
class QueryEvent:
    """A query awaiting (at most) one response before ``deadline`` (local clock)."""

    ltime: int
    id: int
    name: str
    payload: bytes
    source_node: str
    deadline: float

    @property
    def type(self) -> EventType:
        return EventType.QUERY


Event = MemberEvent | UserEvent | QueryEvent
