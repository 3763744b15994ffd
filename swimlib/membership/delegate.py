"""What a node asks of the application layer above it (Serf's, in swimlib.cluster).

Some of memberlist's ``Delegate`` roles: user broadcasts piggybacked on
gossip, user state carried in push-pull, the ack payload. Each is a
question the node asks while it builds what it sends, answered from the
layer's state. User *messages* are not among them: the node hands those up
as data (:meth:`Node.receive_packet`, :meth:`Node.receive_stream`), so it
never calls into the layer while handling its input. All calls are
synchronous and pure with respect to I/O (sans-IO).
"""

from __future__ import annotations

from typing import Protocol


class Delegate(Protocol):
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
