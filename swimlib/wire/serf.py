"""Serf's messages (protocol 2-5, reference section 11), in go-msgpack's dialect.

Serf rides inside memberlist: a gossiped or directly sent Serf message is a
memberlist user message ``08 | serfType | msgpack``; the push-pull user state
is ``02 | pushPull``; query payloads and responses nest more Serf messages
(``06`` conflict response, ``07`` key request, ``08`` key response). The
:func:`encode_serf` / :func:`decode_serf` pair handles ``serfType | body``.

Like the memberlist codec: keys sorted (Go's field order), strings and bytes
as the old raw family, nil for empty slices; decoding tolerates any key order,
missing or unknown keys, and raises only :class:`~swimlib.errors.DecodeError`.
What crashes Go Serf is refused both ways (an empty query filter).

Node tags travel in memberlist's alive ``Meta``: :func:`encode_tags` /
:func:`decode_tags`. Serf's Vivaldi coordinate travels in memberlist's ack
payload: :func:`encode_ping_payload` / :func:`decode_ping_payload`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any

import msgpack

from swimlib.errors import DecodeError
from swimlib.records import field, record
from swimlib.wire._mp import (
    MSGPACK_ERRORS,
    U8,
    U16,
    U32,
    U64,
    as_map,
    check_int64,
    check_uint,
    get_bool,
    get_int,
    get_list,
    get_raw,
    get_str,
    get_str_list,
    get_str_map,
    get_uint,
    name_bytes,
    pack,
    sorted_str_map,
    text,
    to_raw,
    to_str,
    unpack_one,
)
from swimlib.wire.codec import MAX_META_SIZE, ip_from_bytes, ip_to_bytes
from swimlib.wire.messages import UserMsg


class SerfMessageType(enum.IntEnum):
    """First byte of every Serf message (unchanged through Serf HEAD)."""

    LEAVE = 0
    JOIN = 1
    PUSH_PULL = 2
    USER_EVENT = 3
    QUERY = 4
    QUERY_RESPONSE = 5
    CONFLICT_RESPONSE = 6
    KEY_REQUEST = 7
    KEY_RESPONSE = 8
    RELAY = 9


class FilterType(enum.IntEnum):
    NODE = 0
    TAG = 1


class MemberStatus(enum.IntEnum):
    NONE = 0
    ALIVE = 1
    LEAVING = 2
    LEFT = 3
    FAILED = 4


#: Query flag: the sender wants an immediate ack.
QUERY_FLAG_ACK = 1
#: Query flag: receivers must not re-gossip the query.
QUERY_FLAG_NO_BROADCAST = 2
#: Serf's magic first byte of a msgpack tag map in node meta.
TAG_MAGIC = 0xFF
#: Serf's prefix of internal query names.
INTERNAL_QUERY_PREFIX = "_serf_"
#: Serf's event/query dedup rings (and the push-pull ``Events`` length).
EVENT_BUFFER_SIZE = 512
#: First byte of Serf's ack payload (``PingVersion``); a coordinate follows.
PING_VERSION = 1
#: Most dimensions a received coordinate may have (Serf's have 8); longer is a DecodeError.
MAX_COORDINATE_DIMENSIONS = 64


# --------------------------------------------------------------------------- messages


@record
class JoinIntent:
    ltime: int
    node: str


@record
class LeaveIntent:
    ltime: int
    node: str
    prune: bool = False


@record
class EventRecord:
    """One event kept in a push-pull ring slot (Go ``userEvent``)."""

    name: str
    payload: bytes = b""


@record
class EventSlot:
    """All events seen at one Lamport time (Go ``userEvents``)."""

    ltime: int
    events: tuple[EventRecord, ...] = ()


def _str_int_map(value: Mapping[str, int]) -> dict[str, int]:
    return dict(value)


@record
class SerfPushPull:
    """Serf's anti-entropy state, carried as memberlist push-pull user state.

    ``events`` is Serf's whole event ring: ``None`` for an empty slot.
    """

    ltime: int
    status_ltimes: dict[str, int] = field(factory=dict, converter=_str_int_map)
    left_members: tuple[str, ...] = ()
    event_ltime: int = 0
    events: tuple[EventSlot | None, ...] = ()
    query_ltime: int = 0


@record
class UserEvent:
    ltime: int
    name: str
    payload: bytes = b""
    cc: bool = False  # "can coalesce"; the serf CLI sends true


@record
class NodeFilter:
    """Only the named nodes process the query."""

    nodes: tuple[str, ...]


@record
class TagFilter:
    """Only nodes whose tag ``tag`` matches the (unanchored, RE2) regex ``expr``."""

    tag: str
    expr: str


@record
class UnknownFilter:
    """A filter Go could not use (unknown type or bad body); it never matches."""

    data: bytes


Filter = NodeFilter | TagFilter | UnknownFilter


@record
class Query:
    ltime: int
    id: int
    addr: str
    port: int
    source_node: str
    name: str
    payload: bytes = b""
    filters: tuple[Filter, ...] = ()
    flags: int = 0
    relay_factor: int = 0
    timeout_ns: int = 0

    @property
    def ack(self) -> bool:
        return bool(self.flags & QUERY_FLAG_ACK)

    @property
    def no_broadcast(self) -> bool:
        return bool(self.flags & QUERY_FLAG_NO_BROADCAST)


@record
class QueryResponse:
    ltime: int
    id: int
    from_: str
    flags: int = 0
    payload: bytes = b""

    @property
    def ack(self) -> bool:
        return bool(self.flags & QUERY_FLAG_ACK)


def _str_str_map(value: Mapping[str, str]) -> dict[str, str]:
    return dict(value)


@record
class SerfMember:
    """Serf's ``Member`` struct, as sent in a conflict response."""

    name: str
    addr: str
    port: int
    tags: dict[str, str] = field(factory=dict, converter=_str_str_map)
    status: int = MemberStatus.NONE
    protocol_min: int = 0
    protocol_max: int = 0
    protocol_cur: int = 0
    delegate_min: int = 0
    delegate_max: int = 0
    delegate_cur: int = 0


@record
class ConflictResponse:
    """Answer to ``_serf_conflict``: what we know of the name, or None (``06 c0``)."""

    member: SerfMember | None


@record
class KeyRequest:
    """Payload of the key queries; an empty key (nil) for ``list-keys``."""

    key: bytes = b""


@record
class KeyResponse:
    result: bool
    message: str = ""
    keys: tuple[str, ...] = ()
    primary_key: str = ""


@record
class Relay:
    """Ask a member to forward ``message`` (Serf bytes, ``05 ...``) to a destination."""

    dest_addr: str
    dest_port: int
    dest_name: str
    message: bytes
    dest_zone: str = ""


@record
class Coordinate:
    """Serf's Vivaldi network coordinate (``coordinate.Coordinate``); seconds.

    ``vec`` is the Euclidean part, ``height`` the access-link offset,
    ``adjustment`` the non-Euclidean correction and ``error`` the
    (dimensionless) confidence. The math lives in
    :mod:`swimlib.cluster.coordinates`; this is only the value on the wire.
    """

    vec: tuple[float, ...]
    error: float
    adjustment: float = 0.0
    height: float = 0.0


SerfMessage = (JoinIntent | LeaveIntent | SerfPushPull | UserEvent | Query | QueryResponse
               | ConflictResponse | KeyRequest | KeyResponse | Relay)


# --------------------------------------------------------------------------- encode


def _ltime(v: int) -> int:
    return check_uint("LTime", v, U64)


def _nil_raw(b: bytes) -> bytes | None:
    return b or None


def encode_filter(f: Filter) -> bytes:
    """One query filter: ``type | msgpack``. An empty filter would crash Go."""
    if isinstance(f, NodeFilter):
        return bytes((FilterType.NODE,)) + pack([name_bytes(n) for n in f.nodes])
    if isinstance(f, TagFilter):
        return bytes((FilterType.TAG,)) + pack({"Expr": name_bytes(f.expr),
                                                "Tag": name_bytes(f.tag)})
    if isinstance(f, UnknownFilter):
        if not f.data:
            raise ValueError("an empty query filter crashes Go peers")
        return f.data
    raise TypeError(f"not a filter: {type(f).__name__}")


def _slot_map(slot: EventSlot | None) -> dict[str, Any] | None:
    if slot is None:
        return None
    return {"Events": [{"Name": name_bytes(e.name), "Payload": _nil_raw(e.payload)}
                       for e in slot.events] or None,
            "LTime": _ltime(slot.ltime)}


def _member_map(m: SerfMember) -> dict[str, Any]:
    return {
        "Addr": ip_to_bytes(m.addr),
        "DelegateCur": check_uint("DelegateCur", m.delegate_cur, U8),
        "DelegateMax": check_uint("DelegateMax", m.delegate_max, U8),
        "DelegateMin": check_uint("DelegateMin", m.delegate_min, U8),
        "Name": name_bytes(m.name),
        "Port": check_uint("Port", m.port, U16),
        "ProtocolCur": check_uint("ProtocolCur", m.protocol_cur, U8),
        "ProtocolMax": check_uint("ProtocolMax", m.protocol_max, U8),
        "ProtocolMin": check_uint("ProtocolMin", m.protocol_min, U8),
        "Status": check_int64("Status", int(m.status)),
        "Tags": sorted_str_map(m.tags),
    }


def _body(msg: SerfMessage) -> Any:
    if isinstance(msg, JoinIntent):
        return {"LTime": _ltime(msg.ltime), "Node": name_bytes(msg.node)}
    if isinstance(msg, LeaveIntent):
        return {"LTime": _ltime(msg.ltime), "Node": name_bytes(msg.node), "Prune": msg.prune}
    if isinstance(msg, UserEvent):
        return {"CC": msg.cc, "LTime": _ltime(msg.ltime), "Name": name_bytes(msg.name),
                "Payload": _nil_raw(msg.payload)}
    if isinstance(msg, Query):
        return {
            "Addr": _nil_raw(ip_to_bytes(msg.addr)),
            "Filters": [encode_filter(f) for f in msg.filters] or None,
            "Flags": check_uint("Flags", msg.flags, U32),
            "ID": check_uint("ID", msg.id, U32),
            "LTime": _ltime(msg.ltime),
            "Name": name_bytes(msg.name),
            "Payload": _nil_raw(msg.payload),
            "Port": check_uint("Port", msg.port, U16),
            "RelayFactor": check_uint("RelayFactor", msg.relay_factor, U8),
            "SourceNode": name_bytes(msg.source_node),
            "Timeout": check_int64("Timeout", msg.timeout_ns),
        }
    if isinstance(msg, QueryResponse):
        return {"Flags": check_uint("Flags", msg.flags, U32), "From": name_bytes(msg.from_),
                "ID": check_uint("ID", msg.id, U32), "LTime": _ltime(msg.ltime),
                "Payload": _nil_raw(msg.payload)}
    if isinstance(msg, SerfPushPull):
        return {
            "EventLTime": _ltime(msg.event_ltime),
            "Events": [_slot_map(s) for s in msg.events] or None,
            "LTime": _ltime(msg.ltime),
            # Serf makes this slice non-nil, so an empty one is 90, not nil.
            "LeftMembers": [name_bytes(n) for n in msg.left_members],
            "QueryLTime": _ltime(msg.query_ltime),
            "StatusLTimes": dict(sorted((name_bytes(k), _ltime(v))
                                        for k, v in msg.status_ltimes.items())),
        }
    if isinstance(msg, ConflictResponse):
        return None if msg.member is None else _member_map(msg.member)
    if isinstance(msg, KeyRequest):
        return {"Key": _nil_raw(msg.key)}
    if isinstance(msg, KeyResponse):
        return {"Keys": [name_bytes(k) for k in msg.keys] or None,
                "Message": name_bytes(msg.message), "PrimaryKey": name_bytes(msg.primary_key),
                "Result": msg.result}
    raise TypeError(f"cannot encode {type(msg).__name__}")


_TYPE_OF: dict[type, SerfMessageType] = {
    LeaveIntent: SerfMessageType.LEAVE,
    JoinIntent: SerfMessageType.JOIN,
    SerfPushPull: SerfMessageType.PUSH_PULL,
    UserEvent: SerfMessageType.USER_EVENT,
    Query: SerfMessageType.QUERY,
    QueryResponse: SerfMessageType.QUERY_RESPONSE,
    ConflictResponse: SerfMessageType.CONFLICT_RESPONSE,
    KeyRequest: SerfMessageType.KEY_REQUEST,
    KeyResponse: SerfMessageType.KEY_RESPONSE,
    Relay: SerfMessageType.RELAY,
}


def encode_serf(msg: SerfMessage) -> bytes:
    """``serfType | msgpack``: what Serf hands memberlist (or nests in a query payload)."""
    if isinstance(msg, Relay):
        if not msg.message:
            raise ValueError("a relay must carry a message")
        header = {"DestAddr": {"IP": _nil_raw(ip_to_bytes(msg.dest_addr)),
                               "Port": check_uint("Port", msg.dest_port, U16),
                               "Zone": name_bytes(msg.dest_zone)},
                  "DestName": name_bytes(msg.dest_name)}
        return bytes((SerfMessageType.RELAY,)) + pack(header) + msg.message
    return bytes((_TYPE_OF[type(msg)],)) + pack(_body(msg))


def serf_user_msg(msg: SerfMessage) -> UserMsg:
    """The memberlist user message (``08 | serfType | msgpack`` on the wire) carrying ``msg``."""
    return UserMsg(encode_serf(msg))


def relay_response(dest_addr: str, dest_port: int, dest_name: str,
                   response: QueryResponse) -> Relay:
    """A relay asking a member to forward ``response`` to the query's origin."""
    return Relay(dest_addr, dest_port, dest_name, encode_serf(response))


# --------------------------------------------------------------------------- decode


def _get_ltime(m: dict[bytes, Any], key: bytes = b"LTime") -> int:
    return get_uint(m, key, U64)


def decode_filter(data: bytes) -> Filter:
    """One query filter. An empty one is refused (it crashes Go Serf); one Go
    cannot decode becomes :class:`UnknownFilter`, which never matches, as in Go."""
    if not data:
        raise DecodeError("filter", "empty query filter")
    try:
        if data[0] == FilterType.NODE:
            names = unpack_one(data[1:])
            if names is None:
                return NodeFilter(())
            if isinstance(names, list):
                return NodeFilter(tuple(to_str(n, "node filter") for n in names))
        elif data[0] == FilterType.TAG:
            m = as_map(unpack_one(data[1:]), "tag filter")
            return TagFilter(get_str(m, b"Tag"), get_str(m, b"Expr"))
    except DecodeError:
        pass
    return UnknownFilter(bytes(data))


def _decode_slot(v: Any) -> EventSlot | None:
    if v is None:
        return None
    m = as_map(v, "event slot")
    events = []
    for e in get_list(m, b"Events"):
        em = as_map(e, "event")
        events.append(EventRecord(get_str(em, b"Name"), get_raw(em, b"Payload")))
    return EventSlot(_get_ltime(m), tuple(events))


def _decode_status_ltimes(m: dict[bytes, Any]) -> dict[str, int]:
    v = m.get(b"StatusLTimes")
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise DecodeError("schema", "StatusLTimes is not a map")
    out = {}
    for name, ltime in v.items():
        if type(ltime) is not int or not 0 <= ltime <= U64:
            raise DecodeError("schema", "StatusLTimes value is not an LTime")
        out[to_str(name, "StatusLTimes")] = ltime
    return out


def _decode_member(v: Any) -> SerfMember | None:
    if v is None:
        return None
    m = as_map(v, "member")
    return SerfMember(
        get_str(m, b"Name"), ip_from_bytes(get_raw(m, b"Addr")), get_uint(m, b"Port", U16),
        get_str_map(m, b"Tags"), get_int(m, b"Status"),
        get_uint(m, b"ProtocolMin", U8), get_uint(m, b"ProtocolMax", U8),
        get_uint(m, b"ProtocolCur", U8), get_uint(m, b"DelegateMin", U8),
        get_uint(m, b"DelegateMax", U8), get_uint(m, b"DelegateCur", U8))


def _decode_query(m: dict[bytes, Any]) -> Query:
    return Query(
        ltime=_get_ltime(m), id=get_uint(m, b"ID", U32), addr=ip_from_bytes(get_raw(m, b"Addr")),
        port=get_uint(m, b"Port", U16), source_node=get_str(m, b"SourceNode"),
        name=get_str(m, b"Name"), payload=get_raw(m, b"Payload"),
        filters=tuple(decode_filter(to_raw(f, "filter")) for f in get_list(m, b"Filters")),
        flags=get_uint(m, b"Flags", U32), relay_factor=get_uint(m, b"RelayFactor", U8),
        timeout_ns=get_int(m, b"Timeout"))


def _decode_leave(v: Any) -> LeaveIntent:
    m = as_map(v)
    return LeaveIntent(_get_ltime(m), get_str(m, b"Node"), get_bool(m, b"Prune"))


def _decode_join(v: Any) -> JoinIntent:
    m = as_map(v)
    return JoinIntent(_get_ltime(m), get_str(m, b"Node"))


def _decode_push_pull(v: Any) -> SerfPushPull:
    m = as_map(v)
    return SerfPushPull(
        _get_ltime(m), _decode_status_ltimes(m), get_str_list(m, b"LeftMembers"),
        _get_ltime(m, b"EventLTime"), tuple(_decode_slot(s) for s in get_list(m, b"Events")),
        _get_ltime(m, b"QueryLTime"))


def _decode_user_event(v: Any) -> UserEvent:
    m = as_map(v)
    return UserEvent(_get_ltime(m), get_str(m, b"Name"), get_raw(m, b"Payload"),
                     get_bool(m, b"CC"))


def _decode_query_response(v: Any) -> QueryResponse:
    m = as_map(v)
    return QueryResponse(_get_ltime(m), get_uint(m, b"ID", U32), get_str(m, b"From"),
                         get_uint(m, b"Flags", U32), get_raw(m, b"Payload"))


def _decode_key_response(v: Any) -> KeyResponse:
    m = as_map(v)
    return KeyResponse(get_bool(m, b"Result"), get_str(m, b"Message"),
                       get_str_list(m, b"Keys"), get_str(m, b"PrimaryKey"))


_DECODERS: dict[int, Callable[[Any], SerfMessage]] = {
    SerfMessageType.LEAVE: _decode_leave,
    SerfMessageType.JOIN: _decode_join,
    SerfMessageType.PUSH_PULL: _decode_push_pull,
    SerfMessageType.USER_EVENT: _decode_user_event,
    SerfMessageType.QUERY: lambda v: _decode_query(as_map(v)),
    SerfMessageType.QUERY_RESPONSE: _decode_query_response,
    SerfMessageType.CONFLICT_RESPONSE: lambda v: ConflictResponse(_decode_member(v)),
    SerfMessageType.KEY_REQUEST: lambda v: KeyRequest(get_raw(as_map(v), b"Key")),
    SerfMessageType.KEY_RESPONSE: _decode_key_response,
}


def _decode_relay(data: bytes) -> Relay:
    unpacker = msgpack.Unpacker(raw=True, strict_map_key=False, use_list=True,
                                max_buffer_size=max(len(data), 1))
    unpacker.feed(data[1:])
    try:
        header = as_map(unpacker.unpack(), "relay header")
    except msgpack.OutOfData:
        raise DecodeError("truncated", "relay header") from None
    except MSGPACK_ERRORS as exc:
        raise DecodeError("msgpack", str(exc)[:80]) from None
    dest = as_map(header.get(b"DestAddr") or {}, "DestAddr")
    message = data[1 + unpacker.tell():]
    if not message:
        raise DecodeError("relay", "relay carries no message")
    return Relay(ip_from_bytes(get_raw(dest, b"IP")), get_uint(dest, b"Port", U16),
                 get_str(header, b"DestName"), message, get_str(dest, b"Zone"))


def decode_serf(data: bytes) -> SerfMessage:
    """Decode ``serfType | msgpack`` (a memberlist user message body, a push-pull
    user state, or a nested query payload). Unknown types raise DecodeError
    with reason ``"serf-type"`` (Go logs and ignores them)."""
    if not data:
        raise DecodeError("empty", "empty Serf message")
    data = bytes(data)
    kind = data[0]
    if kind == SerfMessageType.RELAY:
        return _decode_relay(data)
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise DecodeError("serf-type", f"unknown Serf message type {kind}")
    return decoder(unpack_one(data[1:]))


# --------------------------------------------------------------------------- coordinates


def encode_ping_payload(coord: Coordinate) -> bytes:
    """Serf's ack payload: ``01`` + ``{Adjustment, Error, Height, Vec}`` (float64s, keys
    sorted as Go writes them). A fresh node's is 130 bytes."""
    return bytes((PING_VERSION,)) + pack({
        "Adjustment": float(coord.adjustment),
        "Error": float(coord.error),
        "Height": float(coord.height),
        "Vec": [float(x) for x in coord.vec] or None,
    })


def _coordinate_float(v: Any, what: str) -> float:
    """A Go ``float64`` field: a msgpack float, or an integer (Go converts), nil as 0."""
    if v is None:
        return 0.0
    if type(v) is float:
        return v
    if type(v) is int:
        return float(v)
    raise DecodeError("schema", f"{what} is not a number")


def decode_coordinate(obj: Any) -> Coordinate:
    """A decoded msgpack ``coordinate.Coordinate`` map. Only its shape is checked here:
    NaN, infinities or a wrong dimension are the coordinate client's to refuse."""
    m = as_map(obj, "coordinate")
    vec = get_list(m, b"Vec")
    if len(vec) > MAX_COORDINATE_DIMENSIONS:
        raise DecodeError("schema", f"coordinate has {len(vec)} dimensions")
    return Coordinate(tuple(_coordinate_float(x, "Vec") for x in vec),
                      _coordinate_float(m.get(b"Error"), "Error"),
                      _coordinate_float(m.get(b"Adjustment"), "Adjustment"),
                      _coordinate_float(m.get(b"Height"), "Height"))


def decode_ping_payload(data: bytes) -> Coordinate:
    """The coordinate in a Serf ack payload (``01`` + msgpack; trailing bytes ignored, as
    Go does). DecodeError reasons: ``empty``, ``ping_version``, ``msgpack``, ``schema``."""
    if not data:
        raise DecodeError("empty", "empty ack payload")
    if data[0] != PING_VERSION:
        raise DecodeError("ping_version", f"unsupported ping version {data[0]}")
    return decode_coordinate(unpack_one(data[1:]))


# --------------------------------------------------------------------------- tags


def encode_tags(tags: Mapping[str, str]) -> bytes:
    """Node meta for Serf protocol >= 3: ``ff`` + msgpack map, keys sorted for stable bytes.

    Raises ``ValueError`` over memberlist's 512-byte meta limit (Go panics there).
    """
    meta = bytes((TAG_MAGIC,)) + pack(sorted_str_map(tags))
    if len(meta) > MAX_META_SIZE:
        raise ValueError(f"encoded tags are {len(meta)} bytes; the limit is {MAX_META_SIZE}")
    return meta


def decode_tags(meta: bytes) -> dict[str, str]:
    """Tags from node meta. Meta that is empty or lacks the ``ff`` prefix is the
    pre-protocol-3 form, read as ``{"role": meta}`` exactly as Serf does."""
    if not meta or meta[0] != TAG_MAGIC:
        return {"role": text(bytes(meta))}
    m = unpack_one(meta[1:])
    if m is None:  # Go leaves the map empty
        return {}
    if not isinstance(m, dict):
        raise DecodeError("tags", "tag meta is not a map")
    try:
        return {to_str(k, "tag"): to_str(v, "tag") for k, v in m.items()}
    except DecodeError as exc:
        raise DecodeError("tags", exc.detail) from None
