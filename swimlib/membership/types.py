"""Values the membership core hands out: member snapshots and effects.

The core is a state machine (sans-IO): callers feed it packets, streams and
ticks, then collect *effects* -- datagrams to send, streams to open, events to
report -- with :meth:`Node.take_effects`. Nothing here performs I/O.
"""

from __future__ import annotations

import enum

from swimlib.records import record
from swimlib.wire.messages import DEFAULT_VSN
from swimlib.wire.messages import MemberState as MemberState  # defined with the wire format

Address = tuple[str, int]


@record
class Member:
    """An immutable snapshot of one member as this node sees it."""

    name: str
    addr: str
    port: int
    meta: bytes
    incarnation: int
    state: MemberState
    vsn: bytes = DEFAULT_VSN

    @property
    def address(self) -> Address:
        return (self.addr, self.port)


class EventKind(enum.Enum):
    """memberlist's notifications: join, leave (dead or left), update (meta)."""

    JOIN = "join"
    LEAVE = "leave"
    UPDATE = "update"


@record
class SendPacket:
    """Send ``data`` as one UDP datagram to ``dest``."""

    dest: Address
    data: bytes


@record
class OpenStream:
    """Open a TCP connection to ``dest``, write ``data``, read one reply.

    The runtime reports the outcome with
    ``Node.handle_stream_reply(request_id, reply_or_None, now)``; ``None``
    means the connection failed or ``timeout`` elapsed.
    """

    request_id: int
    dest: Address
    data: bytes
    timeout: float


@record
class NodeEvent:
    """A member joined, left/died (``member.state`` says which) or changed meta."""

    kind: EventKind
    member: Member


@record
class SuspicionRaised:
    """This node suspected ``node`` after a failed probe (it originated the suspicion)."""

    node: str
    incarnation: int


@record
class DeathDeclared:
    """This node's suspicion timer for ``node`` expired: it declared it dead."""

    node: str
    incarnation: int
    confirmations: int


@record
class Refuted:
    """This node out-bid a claim about itself: ``kind`` is the message refuted
    (``"suspect"``, ``"dead"``, or ``"alive"`` for a stale or conflicting copy of
    our own announcement), ``accuser`` who sent it (memberlist's ``From``; empty
    for alive messages, which carry none)."""

    incarnation: int
    kind: str = "suspect"
    accuser: str = ""


@record
class PingCompleted:
    """Our probe of ``node`` was answered directly, before the probe timeout
    (memberlist's ``NotifyPingComplete``): ``rtt`` seconds from our ping to the
    ack, and the ack's ``payload`` (Serf's coordinate; may be empty). Only a
    node with a delegate reports it; the layer above consumes it."""

    node: str
    rtt: float
    payload: bytes = b""


@record
class JoinFinished:
    """A join attempt ended: how many addresses answered, and the failures."""

    contacted: int
    failed: tuple[Address, ...]
    #: What :meth:`Node.join` returned for this attempt.
    join_id: int = 0


Effect = (
    SendPacket | OpenStream | NodeEvent | SuspicionRaised | DeathDeclared | Refuted
    | JoinFinished | PingCompleted
)
