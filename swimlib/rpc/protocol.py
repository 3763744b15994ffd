"""Serf's RPC ("IPC") protocol: framing, codec and every body, with Go's names.

A connection is a TCP stream of msgpack objects. A request is a header
``{Command, Seq}`` followed by a body for the commands that take one; a
response is ``{Seq, Error}`` followed by a body for the commands that return
one. Streams (``stream``, ``monitor``, ``query``) keep sending ``{Seq, Error}``
+ record pairs under the request's ``Seq``.

The codec is not the gossip one (``swimlib.wire._mp``): Serf's agent and
client use go-msgpack with ``WriteExt: true, RawToString: true``, so strings
are msgpack *str* (str8 allowed) and ``[]byte`` is *bin*. Structs are maps
keyed by the Go field name, sorted by name as go-msgpack writes them.
Decoding follows Go: missing
keys are zero values, unknown keys are skipped, nil is the zero value, and a
string field also accepts bin (and a bytes field str) for older clients.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final, NamedTuple, Self

import msgpack

from swimlib.errors import DecodeError
from swimlib.records import field, record

# -- commands and error strings (cmd/serf/command/agent/ipc.go) ---------------

MIN_IPC_VERSION: Final = 1
MAX_IPC_VERSION: Final = 1


class Command(enum.StrEnum):
    HANDSHAKE = "handshake"
    EVENT = "event"
    FORCE_LEAVE = "force-leave"
    JOIN = "join"
    MEMBERS = "members"
    MEMBERS_FILTERED = "members-filtered"
    STREAM = "stream"
    STOP = "stop"
    MONITOR = "monitor"
    LEAVE = "leave"
    INSTALL_KEY = "install-key"
    USE_KEY = "use-key"
    REMOVE_KEY = "remove-key"
    LIST_KEYS = "list-keys"
    TAGS = "tags"
    QUERY = "query"
    RESPOND = "respond"
    AUTH = "auth"
    STATS = "stats"
    GET_COORDINATE = "get-coordinate"


#: Commands whose request has no body (the Go client sends ``nil``).
BODYLESS_REQUESTS: Final = frozenset(
    {Command.MEMBERS, Command.LEAVE, Command.LIST_KEYS, Command.STATS}
)

UNSUPPORTED_COMMAND: Final = "Unsupported command"
UNSUPPORTED_IPC_VERSION: Final = "Unsupported IPC version"
DUPLICATE_HANDSHAKE: Final = "Handshake already performed"
HANDSHAKE_REQUIRED: Final = "Handshake required"
MONITOR_EXISTS: Final = "Monitor already exists"
INVALID_FILTER: Final = "Invalid event filter"
STREAM_EXISTS: Final = "Stream with given sequence exists"
INVALID_QUERY_ID: Final = "No pending queries matching ID"
AUTH_REQUIRED: Final = "Authentication required"
INVALID_AUTH_TOKEN: Final = "Invalid authentication token"

QUERY_RECORD_ACK: Final = "ack"
QUERY_RECORD_RESPONSE: Final = "response"
QUERY_RECORD_DONE: Final = "done"

#: Largest buffered input per connection; every legitimate body is tiny
#: (Serf caps events at 512 B and queries at 1 KiB).
MAX_BUFFER: Final = 4 * 1024 * 1024


class ProtocolError(DecodeError):
    """The peer sent something that is not a valid RPC message."""

    def __init__(self, detail: str) -> None:
        super().__init__("rpc", detail)


# -- codec ---------------------------------------------------------------------

_packer = msgpack.Packer(use_bin_type=True, unicode_errors="surrogateescape", autoreset=True)


def encode(*objects: Any) -> bytes:
    """Pack objects back to back (a header and its body are one write)."""
    return b"".join(_packer.pack(obj) for obj in objects)


class NeedData(enum.Enum):
    NEED_DATA = "need-data"


NEED_DATA: Final = NeedData.NEED_DATA

_MSGPACK_ERRORS = (ValueError, TypeError, msgpack.UnpackException, RecursionError, MemoryError)


class ObjectReader:
    """Sans-IO incremental msgpack decoder for one connection's input."""

    def __init__(self, max_buffer: int = MAX_BUFFER) -> None:
        self._unpacker = msgpack.Unpacker(
            raw=False,
            unicode_errors="surrogateescape",
            strict_map_key=False,
            max_buffer_size=max_buffer,
        )

    def feed(self, data: bytes | bytearray) -> None:
        try:
            self._unpacker.feed(data)
        except msgpack.BufferFull:
            raise ProtocolError("message too large") from None

    def next_object(self) -> Any:
        """The next complete object, or :data:`NEED_DATA`."""
        try:
            return self._unpacker.unpack()
        except msgpack.OutOfData:
            return NEED_DATA
        except _MSGPACK_ERRORS as exc:
            raise ProtocolError(f"malformed msgpack: {str(exc)[:80]}") from None


# -- field kinds (Go type <-> Python value) ------------------------------------


def _type_error(go_type: str, value: Any) -> ProtocolError:
    return ProtocolError(f"cannot decode {type(value).__name__} into {go_type}")


def _str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    raise _type_error("string", value)


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    raise _type_error("[]byte", value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise _type_error("bool", value)


def _int(lo: int, hi: int, go_type: str) -> Callable[[Any], int]:
    def decode(value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            if lo <= value <= hi:
                return value
            raise ProtocolError(f"{value} overflows {go_type}")
        raise _type_error(go_type, value)

    return decode


def _float(value: Any) -> float:
    if isinstance(value, float | int) and not isinstance(value, bool):
        return float(value)
    raise _type_error("float64", value)


def _str_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [_str(v) for v in value]
    raise _type_error("[]string", value)


def _float_list(value: Any) -> list[float]:
    if isinstance(value, list):
        return [_float(v) for v in value]
    raise _type_error("[]float64", value)


def _str_map(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {_str(k): _str(v) for k, v in value.items()}
    raise _type_error("map[string]string", value)


def _int_map(value: Any) -> dict[str, int]:
    if isinstance(value, dict):
        decode = _int(-(1 << 63), (1 << 63) - 1, "int")
        return {_str(k): decode(v) for k, v in value.items()}
    raise _type_error("map[string]int", value)


def _stats_map(value: Any) -> dict[str, dict[str, str]]:
    if isinstance(value, dict):
        return {_str(k): ({} if v is None else _str_map(v)) for k, v in value.items()}
    raise _type_error("map[string]map[string]string", value)


U8 = _int(0, 0xFF, "uint8")
U16 = _int(0, 0xFFFF, "uint16")
U64 = _int(0, (1 << 64) - 1, "uint64")
I32 = _int(-(1 << 31), (1 << 31) - 1, "int32")
INT = _int(-(1 << 63), (1 << 63) - 1, "int")
#: time.Duration (nanoseconds)
I64 = INT


class _Field(NamedTuple):
    attr: str
    go: str
    decode: Callable[[Any], Any]
    zero: Callable[[], Any]
    #: Send an empty value as nil, as Go does for a slice it never filled.
    nil_if_empty: bool = False


def _f(
    attr: str,
    go: str,
    decode: Callable[[Any], Any],
    zero: Callable[[], Any],
    nil_if_empty: bool = False,
) -> _Field:
    return _Field(attr, go, decode, zero, nil_if_empty)


@functools.cache
def _wire_order(fields: tuple[_Field, ...]) -> tuple[_Field, ...]:
    return tuple(sorted(fields, key=lambda f: f.go))


class Body:
    """A Go struct sent as a msgpack map; subclasses are records (``@record``)
    listing their fields in Go order, with ``FIELDS`` mapping each to its Go
    name and kind.

    go-msgpack writes struct fields sorted by name, so :meth:`to_wire` does
    too and our bytes equal the Go agent's.
    """

    __slots__ = ()
    FIELDS: ClassVar[tuple[_Field, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = cls.__dict__.get("__annotations__", {})  # noqa: RUF063 (own fields only)
        names = {name for name in declared if not name.isupper()}
        if names != {f.attr for f in cls.FIELDS}:
            raise TypeError(f"{cls.__name__}: FIELDS and the declared fields differ")

    def to_wire(self) -> dict[str, Any]:
        wire = {}
        for f in _wire_order(self.FIELDS):
            value = getattr(self, f.attr)
            wire[f.go] = None if f.nil_if_empty and not value else _to_wire(value)
        return wire

    @classmethod
    def from_wire(cls, obj: Any) -> Self:
        """Decode like go-msgpack into a struct (lenient on keys, strict on types)."""
        if obj is None:
            obj = {}
        if not isinstance(obj, dict):
            raise _type_error(cls.__name__, obj)
        kwargs: dict[str, Any] = {}
        for f in cls.FIELDS:
            raw = obj.get(f.go)
            kwargs[f.attr] = f.zero() if raw is None else f.decode(raw)
        return cls(**kwargs)


def _to_wire(value: Any) -> Any:
    if isinstance(value, Body):
        return value.to_wire()
    if isinstance(value, list | tuple):
        return [_to_wire(v) for v in value]
    return value


# -- headers ---------------------------------------------------------------------


@record
class RequestHeader(Body):
    command: str
    seq: int
    FIELDS = (_f("command", "Command", _str, str), _f("seq", "Seq", U64, int))


@record
class ResponseHeader(Body):
    seq: int
    error: str = ""
    FIELDS = (_f("seq", "Seq", U64, int), _f("error", "Error", _str, str))


# -- request bodies ----------------------------------------------------------------


@record
class HandshakeRequest(Body):
    version: int
    FIELDS = (_f("version", "Version", I32, int),)


@record
class AuthRequest(Body):
    auth_key: str
    FIELDS = (_f("auth_key", "AuthKey", _str, str),)


@record
class CoordinateRequest(Body):
    node: str
    FIELDS = (_f("node", "Node", _str, str),)


@record
class EventRequest(Body):
    name: str
    payload: bytes = b""
    coalesce: bool = False
    FIELDS = (
        _f("name", "Name", _str, str),
        _f("payload", "Payload", _bytes, bytes, True),
        _f("coalesce", "Coalesce", _bool, bool),
    )



@record
class ForceLeaveRequest(Body):
    node: str
    prune: bool = False
    FIELDS = (_f("node", "Node", _str, str), _f("prune", "Prune", _bool, bool))


@record
class JoinRequest(Body):
    existing: list[str]
    replay: bool = False
    FIELDS = (_f("existing", "Existing", _str_list, list), _f("replay", "Replay", _bool, bool))


@record
class MembersFilteredRequest(Body):
    tags: dict[str, str] = field(factory=dict)
    status: str = ""
    name: str = ""
    FIELDS = (
        _f("tags", "Tags", _str_map, dict),
        _f("status", "Status", _str, str),
        _f("name", "Name", _str, str),
    )


@record
class KeyRequest(Body):
    key: str
    FIELDS = (_f("key", "Key", _str, str),)


@record
class MonitorRequest(Body):
    log_level: str
    FIELDS = (_f("log_level", "LogLevel", _str, str),)


@record
class StreamRequest(Body):
    type: str
    FIELDS = (_f("type", "Type", _str, str),)


@record
class StopRequest(Body):
    stop: int
    FIELDS = (_f("stop", "Stop", U64, int),)


@record
class TagsRequest(Body):
    tags: dict[str, str] = field(factory=dict)
    delete_tags: list[str] = field(factory=list)
    FIELDS = (
        _f("tags", "Tags", _str_map, dict),
        _f("delete_tags", "DeleteTags", _str_list, list, True),
    )


@record
class QueryRequest(Body):
    name: str
    payload: bytes = b""
    filter_nodes: list[str] = field(factory=list)
    filter_tags: dict[str, str] = field(factory=dict)
    request_ack: bool = False
    relay_factor: int = 0
    #: time.Duration: nanoseconds, 0 = the agent's default
    timeout_ns: int = 0
    FIELDS = (
        _f("filter_nodes", "FilterNodes", _str_list, list, True),
        _f("filter_tags", "FilterTags", _str_map, dict),
        _f("request_ack", "RequestAck", _bool, bool),
        _f("relay_factor", "RelayFactor", U8, int),
        _f("timeout_ns", "Timeout", I64, int),
        _f("name", "Name", _str, str),
        _f("payload", "Payload", _bytes, bytes, True),
    )


@record
class RespondRequest(Body):
    id: int
    payload: bytes = b""
    FIELDS = (_f("id", "ID", U64, int), _f("payload", "Payload", _bytes, bytes, True))


# -- response bodies and stream records ----------------------------------------------


@record
class JoinResponse(Body):
    num: int
    FIELDS = (_f("num", "Num", I32, int),)


@record
class WireMember(Body):
    """``agent.Member``: ``addr`` is the raw IP (4 or 16 bytes), as Go's net.IP."""

    name: str
    addr: bytes
    port: int
    tags: dict[str, str] = field(factory=dict)
    status: str = "alive"
    protocol_min: int = 1
    protocol_max: int = 5
    protocol_cur: int = 2
    delegate_min: int = 2
    delegate_max: int = 5
    delegate_cur: int = 5
    FIELDS = (
        _f("name", "Name", _str, str),
        _f("addr", "Addr", _bytes, bytes),
        _f("port", "Port", U16, int),
        _f("tags", "Tags", _str_map, dict),
        _f("status", "Status", _str, str),
        _f("protocol_min", "ProtocolMin", U8, int),
        _f("protocol_max", "ProtocolMax", U8, int),
        _f("protocol_cur", "ProtocolCur", U8, int),
        _f("delegate_min", "DelegateMin", U8, int),
        _f("delegate_max", "DelegateMax", U8, int),
        _f("delegate_cur", "DelegateCur", U8, int),
    )

    @property
    def address(self) -> str:
        """``IP:port`` as Go's ``net.TCPAddr.String()`` prints it."""
        return format_tcp_addr(self.addr, self.port)


def _members(value: Any) -> list[WireMember]:
    if isinstance(value, list):
        return [WireMember.from_wire(v) for v in value]
    raise _type_error("[]Member", value)


@record
class MembersResponse(Body):
    members: list[WireMember] = field(factory=list)
    FIELDS = (_f("members", "Members", _members, list),)


@record
class KeyResponse(Body):
    messages: dict[str, str] = field(factory=dict)
    keys: dict[str, int] = field(factory=dict)
    num_nodes: int = 0
    num_err: int = 0
    num_resp: int = 0
    FIELDS = (
        _f("messages", "Messages", _str_map, dict),
        _f("keys", "Keys", _int_map, dict, True),
        _f("num_nodes", "NumNodes", INT, int),
        _f("num_err", "NumErr", INT, int),
        _f("num_resp", "NumResp", INT, int),
    )


@record
class QueryRecord(Body):
    type: str
    from_node: str = ""
    payload: bytes = b""
    FIELDS = (
        _f("type", "Type", _str, str),
        _f("from_node", "From", _str, str),
        _f("payload", "Payload", _bytes, bytes, True),
    )



@record
class LogRecord(Body):
    log: str
    FIELDS = (_f("log", "Log", _str, str),)


@record
class UserEventRecord(Body):
    event: str
    ltime: int
    name: str
    payload: bytes = b""
    coalesce: bool = False
    FIELDS = (
        _f("event", "Event", _str, str),
        _f("ltime", "LTime", U64, int),
        _f("name", "Name", _str, str),
        _f("payload", "Payload", _bytes, bytes, True),
        _f("coalesce", "Coalesce", _bool, bool),
    )


@record
class QueryEventRecord(Body):
    event: str
    id: int
    ltime: int
    name: str
    payload: bytes = b""
    FIELDS = (
        _f("event", "Event", _str, str),
        _f("id", "ID", U64, int),
        _f("ltime", "LTime", U64, int),
        _f("name", "Name", _str, str),
        _f("payload", "Payload", _bytes, bytes, True),
    )


@record
class MemberEventRecord(Body):
    event: str
    members: list[WireMember] = field(factory=list)
    FIELDS = (_f("event", "Event", _str, str), _f("members", "Members", _members, list))


@record
class Coordinate(Body):
    """Vivaldi coordinate (``coordinate.Coordinate``); all zero when unknown."""

    vec: list[float] = field(factory=list)
    error: float = 0.0
    adjustment: float = 0.0
    height: float = 0.0
    FIELDS = (
        _f("vec", "Vec", _float_list, list, True),
        _f("error", "Error", _float, float),
        _f("adjustment", "Adjustment", _float, float),
        _f("height", "Height", _float, float),
    )



def _coordinate(value: Any) -> Coordinate:
    return Coordinate.from_wire(value)


@record
class CoordinateResponse(Body):
    coord: Coordinate = field(factory=Coordinate)
    ok: bool = False
    FIELDS = (_f("coord", "Coord", _coordinate, Coordinate), _f("ok", "Ok", _bool, bool))


def decode_stats(obj: Any) -> dict[str, dict[str, str]]:
    """The ``stats`` body: ``map[string]map[string]string``."""
    return {} if obj is None else _stats_map(obj)


#: Request body class per command (None: no body).
REQUEST_BODIES: Final[Mapping[str, type[Body] | None]] = {
    Command.HANDSHAKE: HandshakeRequest,
    Command.AUTH: AuthRequest,
    Command.EVENT: EventRequest,
    Command.FORCE_LEAVE: ForceLeaveRequest,
    Command.JOIN: JoinRequest,
    Command.MEMBERS: None,
    Command.MEMBERS_FILTERED: MembersFilteredRequest,
    Command.STREAM: StreamRequest,
    Command.STOP: StopRequest,
    Command.MONITOR: MonitorRequest,
    Command.LEAVE: None,
    Command.INSTALL_KEY: KeyRequest,
    Command.USE_KEY: KeyRequest,
    Command.REMOVE_KEY: KeyRequest,
    Command.LIST_KEYS: None,
    Command.TAGS: TagsRequest,
    Command.QUERY: QueryRequest,
    Command.RESPOND: RespondRequest,
    Command.STATS: None,
    Command.GET_COORDINATE: CoordinateRequest,
}


# -- addresses ---------------------------------------------------------------------


def ip_bytes(addr: str) -> bytes:
    """Raw IP bytes for ``Member.Addr`` (4 for IPv4, 16 for IPv6, empty if not an IP)."""
    try:
        return ipaddress.ip_address(addr.split("%", 1)[0]).packed
    except ValueError:
        return b""


def format_ip(raw: bytes) -> str:
    """Go's ``net.IP.String()``: dotted quad (also for v4-mapped), RFC 5952 for v6."""
    if len(raw) == 0:
        return ""
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    if len(raw) == 16:
        v6 = ipaddress.IPv6Address(raw)
        return str(v6.ipv4_mapped) if v6.ipv4_mapped is not None else str(v6)
    return "?" + raw.hex()


def format_tcp_addr(raw: bytes, port: int) -> str:
    """Go's ``net.TCPAddr{IP, Port}.String()``."""
    ip = format_ip(raw)
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
