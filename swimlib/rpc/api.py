"""What the RPC server needs from an agent: the :class:`AgentAPI` protocol.

The RPC layer only translates Serf's IPC protocol into calls on this small
surface, so the agent (``swimlib.agent``) implements it once and both
``swimlib`` and the stock ``serf`` CLI can drive it. Failures are reported by
raising: the server turns ``str(exc)`` into the response's ``Error`` string,
exactly like Go's ``errToString(err)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from swimlib.cluster.coordinates import Coordinate
from swimlib.cluster.effects import QueryReply
from swimlib.cluster.events import ClusterMember, Event, QueryEvent
from swimlib.cluster.keys import KeyResult
from swimlib.errors import KeyQueryError
from swimlib.records import record

__all__ = [
    "LOG_LEVELS",
    "AgentAPI",
    "Coordinate",
    "KeyQueryError",
    "KeyResult",
    "LogLine",
    "QueryReply",
]

#: Serf's log levels, lowest first (``logutils`` levels used by the agent).
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERR")


@record
class LogLine:
    """One agent log line for ``monitor``; ``level`` is one of :data:`LOG_LEVELS`.

    ``line`` is printed verbatim by the CLI, so agents format it the way Serf
    does (``2026/11/25 01:10:11 [INFO] agent: ...``).
    """

    level: str
    line: str


class AgentAPI(Protocol):
    """The agent as the RPC server sees it. Every method may raise to fail.

    Snapshot methods are synchronous (they read the current state); anything
    that talks to the cluster is async. Subscriptions are async context
    managers yielding async iterators; the agent should buffer a bounded
    number of items and drop (not block) when a subscriber falls behind, as
    Serf does (512 items).
    """

    def members(self) -> Sequence[ClusterMember]:
        """Every known member, including left and failed ones (``serf members``)."""
        ...

    async def join(self, addrs: Sequence[str], replay: bool) -> int:
        """Join via each ``host[:port]``; return how many nodes were contacted.

        Raise if none could be contacted.
        """
        ...

    async def leave(self) -> None:
        """Leave gracefully (broadcast the intent and wait for it to spread)."""
        ...

    def request_shutdown(self) -> None:
        """Stop the agent soon; called after a ``leave`` reply has been sent.

        Must not block: the RPC server may be cancelled by the shutdown.
        """
        ...

    async def force_leave(self, node: str, prune: bool) -> None:
        """Mark a failed ``node`` as left; ``prune`` also forgets it at once."""
        ...

    async def user_event(self, name: str, payload: bytes, coalesce: bool) -> None:
        """Broadcast a custom event (size limits are the agent's to enforce)."""
        ...

    async def set_tags(self, set: Mapping[str, str], delete: Sequence[str]) -> None:
        """Merge ``set`` into our tags and drop the ``delete`` keys, then gossip."""
        ...

    async def query(
        self,
        name: str,
        payload: bytes,
        *,
        filter_nodes: Sequence[str],
        filter_tags: Mapping[str, str],
        request_ack: bool,
        relay_factor: int,
        timeout: float,
    ) -> AsyncIterator[QueryReply]:
        """Start a query and return its replies; the iterator ends at the deadline.

        Raising here (before returning the iterator) rejects the query.
        ``timeout`` is seconds, 0 meaning the agent's default; ``filter_tags``
        values are regular expressions.
        """
        ...

    async def respond(self, query: QueryEvent, payload: bytes) -> None:
        """Answer a query that was delivered through :meth:`subscribe_events`.

        Raise if it is past its deadline or already answered.
        """
        ...

    def stats(self) -> Mapping[str, Mapping[str, str]]:
        """``serf info`` sections: agent, runtime, serf, tags, event_handlers."""
        ...

    def get_coordinate(self, node: str) -> Coordinate | None:
        """The network coordinate last heard from ``node`` (ours for our own name), or
        None: unknown, or coordinates are disabled (Serf's GetCachedCoordinate)."""
        ...

    async def install_key(self, key: str) -> KeyResult:
        """Install a base64 key on every member (raise :class:`KeyQueryError`)."""
        ...

    async def use_key(self, key: str) -> KeyResult:
        """Make an installed key primary everywhere."""
        ...

    async def remove_key(self, key: str) -> KeyResult:
        """Remove a non-primary key everywhere."""
        ...

    async def list_keys(self) -> KeyResult:
        """Ask every member for its keys; fills :attr:`KeyResult.keys`."""
        ...

    def subscribe_events(self) -> AbstractAsyncContextManager[AsyncIterator[Event]]:
        """Member, user and (non-internal) query events from now on."""
        ...

    def subscribe_logs(self) -> AbstractAsyncContextManager[AsyncIterator[LogLine]]:
        """Log lines: recent ones first (Serf replays its ring buffer), then live."""
        ...
