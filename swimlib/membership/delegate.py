"""What a node asks of the application layer above it (Serf's, in swimlib.cluster).

Some of memberlist's ``Delegate`` roles: user broadcasts piggybacked on
gossip, the user state we send in push-pull, the ack payload. Each is a
question the node asks while it builds what it sends, answered from the
layer's state. What it *receives* for the layer -- user messages, the user
part of a push-pull -- it hands up as data (:meth:`Node.receive_packet`,
:meth:`Node.receive_stream`, :meth:`Node.receive_stream_reply`) and, for
memberlist's ping delegate, as a :class:`~.types.PingCompleted` effect (the
RTT and ack payload of a direct ack to our probe), so it never calls into the
layer while handling its input. All calls are
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

    def ack_payload(self) -> bytes:
        """Payload for acks we send (Serf: a Vivaldi coordinate); may be empty."""
        ...

