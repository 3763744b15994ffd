"""The hooks an application layer (Serf's, in swimlib.cluster) plugs into a node.

Same roles as memberlist's ``Delegate``: user messages, user
broadcasts piggybacked on gossip, and user state carried in push-pull. All
calls are synchronous and pure with respect to I/O (sans-IO).
"""

from __future__ import annotations

from typing import Protocol

from swimlib.membership.types import Address


class Delegate(Protocol):
    def notify_msg(self, payload: bytes, now: float, source: Address | None = None) -> None:
        """A user message (memberlist type 8) arrived; ``source`` is the datagram's
        sender (None for one that came on a stream, whose port says nothing)."""
        ...

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        """User broadcasts to piggyback, each costing ``overhead`` extra bytes."""
        ...

    def has_broadcasts(self) -> bool:
        """Whether :meth:`get_broadcasts` has anything queued (cheap; no side effects)."""
        ...

    def local_state(self, join: bool) -> bytes:
        """User state to send in a push-pull."""
        ...

    def merge_remote_state(self, payload: bytes, join: bool, now: float,
                           trusted: bool = False) -> bool:
        """User state received in a push-pull; ``trusted`` when it is the reply
        to a stream we opened (nobody can spoof that). True when something in
        it was refused as implausible: the sender may have seen times we have
        not, and the node syncs with it to find out."""
        ...

    def ack_payload(self) -> bytes:
        """Payload for acks we send (Serf: a Vivaldi coordinate); may be empty."""
        ...


class NullDelegate:
    """No application layer: empty meta, no user messages or state."""

    def notify_msg(self, payload: bytes, now: float, source: Address | None = None) -> None:
        return None

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        return []

    def has_broadcasts(self) -> bool:
        return False

    def local_state(self, join: bool) -> bytes:
        return b""

    def merge_remote_state(self, payload: bytes, join: bool, now: float,
                           trusted: bool = False) -> bool:
        return False

    def ack_payload(self) -> bytes:
        return b""
