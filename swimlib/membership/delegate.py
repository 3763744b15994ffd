"""The hooks an application layer (Serf's, in swimlib.cluster) plugs into a node.

Same roles as memberlist's ``Delegate``: user messages, user
broadcasts piggybacked on gossip, and user state carried in push-pull. All
calls are synchronous and pure with respect to I/O (sans-IO).
"""

from __future__ import annotations

from typing import Protocol


class Delegate(Protocol):
    def notify_msg(self, payload: bytes, now: float) -> None:
        """A user message (memberlist type 8) arrived."""
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

    def merge_remote_state(self, payload: bytes, join: bool, now: float) -> None:
        """User state received in a push-pull."""
        ...

    def ack_payload(self) -> bytes:
        """Payload for acks we send (Serf: a Vivaldi coordinate); may be empty."""
        ...


class NullDelegate:
    """No application layer: empty meta, no user messages or state."""

    def notify_msg(self, payload: bytes, now: float) -> None:
        return None

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        return []

    def has_broadcasts(self) -> bool:
        return False

    def local_state(self, join: bool) -> bytes:
        return b""

    def merge_remote_state(self, payload: bytes, join: bool, now: float) -> None:
        return None

    def ack_payload(self) -> bytes:
        return b""
