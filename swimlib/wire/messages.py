"""memberlist 0.2 message types as immutable Python values.

Field names follow Go's (``SeqNo`` -> ``seq_no``); the codec maps them. IP
addresses are held as text (``"127.0.0.1"``); the codec turns them into the
4- or 16-byte raw form Go uses. Names are ``str`` decoded with
``surrogateescape`` so any byte string from Go round-trips exactly.
"""

from __future__ import annotations

import enum

from swimlib.records import record

#: What Go Serf advertises: PMin PMax PCur DMin DMax DCur (memberlist 1-5 speaking 2,
#: Serf 2-5 speaking 5).
DEFAULT_VSN = bytes([1, 5, 2, 2, 5, 5])


def serf_vsn(protocol: int) -> bytes:
    """Our Vsn speaking Serf protocol ``protocol``: only DCur changes (serf maps every
    Serf version 2-5 to memberlist protocol 2, and advertises its full range)."""
    return DEFAULT_VSN[:5] + bytes((protocol,))


class MessageType(enum.IntEnum):
    """First byte of every memberlist message (reference section 3)."""

    PING = 0
    INDIRECT_PING = 1
    ACK = 2
    SUSPECT = 3
    ALIVE = 4
    DEAD = 5
    PUSH_PULL = 6
    COMPOUND = 7
    USER = 8
    COMPRESS = 9
    ENCRYPT = 10
    NACK = 11
    HAS_CRC = 12
    ERR = 13


class MemberState(enum.IntEnum):
    """memberlist's node states, as numbered in push-pull rows (``State``)."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


@record
class Ping:
    seq_no: int
    node: str
    source_addr: str = ""
    source_port: int = 0
    source_node: str = ""


@record
class IndirectPing:
    seq_no: int
    target: str
    port: int
    node: str
    nack: bool = False
    source_addr: str = ""
    source_port: int = 0
    source_node: str = ""


@record
class Ack:
    seq_no: int
    payload: bytes = b""


@record
class Nack:
    seq_no: int


@record
class Suspect:
    incarnation: int
    node: str
    from_: str


@record
class Alive:
    incarnation: int
    node: str
    addr: str
    port: int
    meta: bytes = b""
    vsn: bytes = DEFAULT_VSN


@record
class Dead:
    incarnation: int
    node: str
    from_: str


@record
class UserMsg:
    """Delegate (Serf) bytes; on UDP they follow the type byte raw."""

    payload: bytes


@record
class ErrResp:
    error: str


@record
class PushNodeState:
    name: str
    addr: str
    port: int
    meta: bytes
    incarnation: int
    state: int
    vsn: bytes = DEFAULT_VSN


@record
class PushPull:
    """A full-state exchange (stream only): header, node states, user state."""

    join: bool
    nodes: tuple[PushNodeState, ...]
    user_state: bytes = b""


Message = Ping | IndirectPing | Ack | Nack | Suspect | Alive | Dead | UserMsg | ErrResp
StreamMessage = PushPull | Ping | Ack | UserMsg | ErrResp
