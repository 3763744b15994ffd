"""Bytes <-> memberlist messages, in go-msgpack 0.5.5's dialect.

Encoding reproduces Go's bytes: struct maps with keys in sorted order, the old
"raw" family for both strings and byte slices (``use_bin_type=False``), nil
for empty byte slices. Decoding is tolerant of what Go may send (any key
order, missing keys, str8/bin, 16-byte IPs) and strict about what would crash
a peer (short Vsn, empty compound parts, compress that inflates to nothing,
unterminated LZW, lying lengths). Every decode failure is a
:class:`~swimlib.errors.DecodeError` with a stable ``reason``; the encoders
raise ``ValueError`` rather than produce bytes that crash a Go peer.
"""

from __future__ import annotations

import ipaddress
import struct
import zlib
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import msgpack

from swimlib.errors import DecodeError
from swimlib.wire import lzw
from swimlib.wire._mp import (
    MSGPACK_ERRORS,
    U8,
    U16,
    U32,
    as_map,
    check_uint,
    get_bool,
    get_int,
    get_raw,
    get_str,
    get_uint,
    name_bytes,
    pack,
    unpack_one,
)
from swimlib.wire.messages import (
    Ack,
    Alive,
    Dead,
    ErrResp,
    IndirectPing,
    Message,
    MessageType,
    Nack,
    Ping,
    PushNodeState,
    PushPull,
    StreamMessage,
    Suspect,
    UserMsg,
)

#: Compound messages carry at most this many parts (Go 0.2.2 mis-parses >= 128).
MAX_COMPOUND_PARTS = 127
#: Go reads datagrams into 64 KiB buffers.
MAX_PACKET_SIZE = 65536
#: A decompressed datagram may not exceed this (defends against LZW bombs).
MAX_INFLATED_PACKET = 1 << 20
#: Push-pull streams larger than this are refused (memberlist's own limit).
MAX_STREAM_SIZE = 20 * 1024 * 1024
#: Decompressed streams larger than this are refused (memberlist master).
MAX_INFLATED_STREAM = 40 * 1024 * 1024
#: Node states a push-pull may announce (memberlist >= 0.6: maxPushStateNodes).
MAX_PUSH_NODES = 1024 * 1024
#: Nesting of compound/compress/crc wrappers we follow before refusing.
MAX_NESTING = 4
#: memberlist's limit on node meta.
MAX_META_SIZE = 512
#: The only valid Vsn length; 1-5 bytes panic Go 0.2.2, and so does an empty
#: one in a push-pull merge with a merge delegate.
VSN_SIZE = 6

_V4_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"

# Kept for callers of the old private names.
_pack = pack
_unpack_one = unpack_one


# --------------------------------------------------------------------------- addresses


@lru_cache(maxsize=65536)
def ip_to_bytes(ip: str) -> bytes:
    """Text IP -> 4 raw bytes (IPv4) or 16 (IPv6); ``""`` -> ``b""``.

    Raises ``ValueError`` for anything else (including ``%zone`` suffixes,
    which have no place in memberlist's raw IP fields).
    """
    if not ip:
        return b""
    if "%" in ip:
        raise ValueError(f"scoped IP addresses cannot be sent: {ip!r}")
    try:
        return ipaddress.ip_address(ip).packed
    except ValueError:
        raise ValueError(f"not an IP address: {ip!r}") from None


@lru_cache(maxsize=65536)
def ip_from_bytes(raw: bytes) -> str:
    """Raw 4/16-byte IP -> text, un-mapping v4-mapped IPv6 addresses."""
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    if len(raw) == 16:
        if raw.startswith(_V4_MAPPED_PREFIX):
            return str(ipaddress.IPv4Address(raw[12:]))
        return str(ipaddress.IPv6Address(raw))
    if not raw:
        return ""
    raise DecodeError("addr", f"IP must be 4 or 16 bytes, got {len(raw)}")


_name_bytes = name_bytes


# --------------------------------------------------------------------------- encode


def _check_vsn(vsn: bytes) -> bytes:
    if len(vsn) != VSN_SIZE:
        raise ValueError("Vsn must be exactly 6 bytes (other lengths crash Go peers)")
    return vsn


def _check_meta(meta: bytes) -> bytes | None:
    if len(meta) > MAX_META_SIZE:
        raise ValueError(f"meta is {len(meta)} bytes; the limit is {MAX_META_SIZE}")
    return meta or None


def _node_state_map(s: PushNodeState) -> dict[str, Any]:
    if not 0 <= s.state <= 3:
        raise ValueError(f"node state must be 0..3, got {s.state}")
    return {
        "Addr": ip_to_bytes(s.addr),
        "Incarnation": check_uint("Incarnation", s.incarnation, U32),
        "Meta": _check_meta(s.meta),
        "Name": name_bytes(s.name),
        "Port": check_uint("Port", s.port, U16),
        "State": s.state,
        "Vsn": _check_vsn(s.vsn),
    }


def _sources(m: dict[str, Any], addr: str, port: int, node: str) -> dict[str, Any]:
    # omitempty on the Source* fields; Go writes sorted keys.
    if addr:
        m["SourceAddr"] = ip_to_bytes(addr)
    if node:
        m["SourceNode"] = name_bytes(node)
    if port:
        m["SourcePort"] = check_uint("SourcePort", port, U16)
    return dict(sorted(m.items()))


def encode_body(msg: Message) -> dict[str, Any] | bytes:
    """The msgpack map (or raw bytes, for user messages) of one message."""
    if isinstance(msg, Ping):
        return _sources({"Node": name_bytes(msg.node),
                         "SeqNo": check_uint("SeqNo", msg.seq_no, U32)},
                        msg.source_addr, msg.source_port, msg.source_node)
    if isinstance(msg, IndirectPing):
        return _sources(
            {"Nack": bool(msg.nack), "Node": name_bytes(msg.node),
             "Port": check_uint("Port", msg.port, U16),
             "SeqNo": check_uint("SeqNo", msg.seq_no, U32), "Target": ip_to_bytes(msg.target)},
            msg.source_addr, msg.source_port, msg.source_node)
    if isinstance(msg, Ack):
        return {"Payload": msg.payload or None, "SeqNo": check_uint("SeqNo", msg.seq_no, U32)}
    if isinstance(msg, Nack):
        return {"SeqNo": check_uint("SeqNo", msg.seq_no, U32)}
    if isinstance(msg, (Suspect, Dead)):
        return {"From": name_bytes(msg.from_),
                "Incarnation": check_uint("Incarnation", msg.incarnation, U32),
                "Node": name_bytes(msg.node)}
    if isinstance(msg, Alive):
        return {"Addr": ip_to_bytes(msg.addr),
                "Incarnation": check_uint("Incarnation", msg.incarnation, U32),
                "Meta": _check_meta(msg.meta), "Node": name_bytes(msg.node),
                "Port": check_uint("Port", msg.port, U16), "Vsn": _check_vsn(msg.vsn)}
    if isinstance(msg, ErrResp):
        return {"Error": name_bytes(msg.error)}
    if isinstance(msg, UserMsg):
        return msg.payload
    raise TypeError(f"cannot encode {type(msg).__name__}")


_TYPE_OF: dict[type, MessageType] = {
    Ping: MessageType.PING,
    IndirectPing: MessageType.INDIRECT_PING,
    Ack: MessageType.ACK,
    Nack: MessageType.NACK,
    Suspect: MessageType.SUSPECT,
    Alive: MessageType.ALIVE,
    Dead: MessageType.DEAD,
    UserMsg: MessageType.USER,
    ErrResp: MessageType.ERR,
}


def encode(msg: Message) -> bytes:
    """One message as a datagram body: type byte + msgpack (or raw user bytes)."""
    body = encode_body(msg)
    head = bytes((_TYPE_OF[type(msg)],))
    if isinstance(body, bytes):
        return head + body
    return head + pack(body)


def encode_compound(parts: list[bytes]) -> bytes:
    """Several encoded messages in one datagram (type 7)."""
    if not 0 < len(parts) <= MAX_COMPOUND_PARTS:
        raise ValueError(f"a compound holds 1..{MAX_COMPOUND_PARTS} parts, got {len(parts)}")
    if any(not p for p in parts):
        raise ValueError("compound parts must not be empty (an empty part crashes Go peers)")
    if any(len(p) > U16 for p in parts):
        raise ValueError("compound part longer than 65535 bytes")
    header = bytes((MessageType.COMPOUND, len(parts))) + struct.pack(
        f">{len(parts)}H", *(len(p) for p in parts))
    return header + b"".join(parts)


def encode_compress(data: bytes) -> bytes:
    """Wrap a message in LZW compression (type 9).

    Empty input is refused: Go indexes the first inflated byte unchecked.
    """
    if not data:
        raise ValueError("cannot compress an empty message (it crashes Go peers)")
    return bytes((MessageType.COMPRESS,)) + pack({"Algo": 0, "Buf": lzw.compress(data)})


#: Bytes a compress message adds around the LZW output, besides the output's
#: own msgpack length header (at least 1): type, map, "Algo": 0, "Buf".
_COMPRESS_WRAPPER = 12


def maybe_compress(data: bytes) -> bytes:
    """Compress only if that makes the datagram smaller (memberlist's UDP policy)."""
    if len(data) <= _COMPRESS_WRAPPER + 1:
        return data
    buf = lzw.compress_below(data, len(data) - _COMPRESS_WRAPPER - 1)
    if buf is None:  # already too long to help: stopped early
        return data
    packed = bytes((MessageType.COMPRESS,)) + pack({"Algo": 0, "Buf": buf})
    return packed if len(packed) < len(data) else data


def add_crc(data: bytes) -> bytes:
    """Prefix the CRC-32 header (type 12), understood by peers with protocol >= 5."""
    return bytes((MessageType.HAS_CRC,)) + struct.pack(">I", zlib.crc32(data)) + data


def encode_node_state(state: PushNodeState) -> bytes:
    """One push-pull node-state row; callers may cache it until the row changes."""
    return pack(_node_state_map(state))


def encode_push_pull_rows(join: bool, rows: Sequence[bytes], user_state: bytes) -> bytes:
    """A push-pull payload from already-encoded rows (see :func:`encode_node_state`).

    Full syncs repeat the same rows over and over; encoding each row once and
    reusing its bytes is what keeps thousand-node push-pulls cheap.
    """
    out = [bytes((MessageType.PUSH_PULL,)),
           pack({"Join": bool(join), "Nodes": len(rows), "UserStateLen": len(user_state)})]
    out.extend(rows)
    out.append(user_state)
    data = b"".join(out)
    if len(data) > MAX_STREAM_SIZE:
        raise ValueError(f"push-pull of {len(data)} bytes exceeds {MAX_STREAM_SIZE}")
    return data


def encode_push_pull(pp: PushPull) -> bytes:
    """A push-pull stream payload: type 6, header, node states, raw user state."""
    return encode_push_pull_rows(pp.join, [encode_node_state(s) for s in pp.nodes],
                                 pp.user_state)


def encode_stream(msg: StreamMessage) -> bytes:
    """A message as sent on a TCP stream (push-pull, fallback ping/ack, user, err)."""
    if isinstance(msg, PushPull):
        return encode_push_pull(msg)
    if isinstance(msg, UserMsg):
        if len(msg.payload) > MAX_STREAM_SIZE:
            raise ValueError("user message too large for a stream")
        return bytes((MessageType.USER,)) + pack({"UserMsgLen": len(msg.payload)}) + msg.payload
    return encode(msg)


# --------------------------------------------------------------------------- decode helpers


def _ip(m: dict[bytes, Any], key: bytes) -> str:
    return ip_from_bytes(get_raw(m, key))


def _vsn(m: dict[bytes, Any]) -> bytes:
    vsn = get_raw(m, b"Vsn")
    if len(vsn) not in (0, VSN_SIZE):
        raise DecodeError("vsn", f"Vsn must be 6 bytes, got {len(vsn)}")
    return vsn


def _meta(m: dict[bytes, Any]) -> bytes:
    meta = get_raw(m, b"Meta")
    if len(meta) > MAX_META_SIZE:
        raise DecodeError("meta", f"meta is {len(meta)} bytes")
    return meta


# --------------------------------------------------------------------------- decode messages


def _decode_ping(m: dict[bytes, Any]) -> Ping:
    return Ping(get_uint(m, b"SeqNo", U32), get_str(m, b"Node"), _ip(m, b"SourceAddr"),
                get_uint(m, b"SourcePort", U16), get_str(m, b"SourceNode"))


def _decode_indirect(m: dict[bytes, Any]) -> IndirectPing:
    return IndirectPing(get_uint(m, b"SeqNo", U32), _ip(m, b"Target"),
                        get_uint(m, b"Port", U16), get_str(m, b"Node"), get_bool(m, b"Nack"),
                        _ip(m, b"SourceAddr"), get_uint(m, b"SourcePort", U16),
                        get_str(m, b"SourceNode"))


def _decode_alive(m: dict[bytes, Any]) -> Alive:
    return Alive(get_uint(m, b"Incarnation", U32), get_str(m, b"Node"), _ip(m, b"Addr"),
                 get_uint(m, b"Port", U16), _meta(m), _vsn(m))


_BODY_DECODERS: dict[int, Callable[[dict[bytes, Any]], Message]] = {
    MessageType.PING: _decode_ping,
    MessageType.INDIRECT_PING: _decode_indirect,
    MessageType.ACK: lambda m: Ack(get_uint(m, b"SeqNo", U32), get_raw(m, b"Payload")),
    MessageType.NACK: lambda m: Nack(get_uint(m, b"SeqNo", U32)),
    MessageType.SUSPECT: lambda m: Suspect(get_uint(m, b"Incarnation", U32),
                                           get_str(m, b"Node"), get_str(m, b"From")),
    MessageType.ALIVE: _decode_alive,
    MessageType.DEAD: lambda m: Dead(get_uint(m, b"Incarnation", U32), get_str(m, b"Node"),
                                     get_str(m, b"From")),
    MessageType.ERR: lambda m: ErrResp(get_str(m, b"Error")),
}


def decode_message(data: bytes) -> Message:
    """Decode one non-wrapper message (type byte + body)."""
    if not data:
        raise DecodeError("empty", "empty message")
    data = bytes(data)
    kind = data[0]
    if kind == MessageType.USER:
        return UserMsg(data[1:])
    decoder = _BODY_DECODERS.get(kind)
    if decoder is None:
        raise DecodeError("type", f"unexpected message type {kind}")
    return decoder(as_map(unpack_one(data[1:])))


def _decompress_body(data: bytes, limit: int) -> bytes:
    m = as_map(unpack_one(data[1:]), "compress")
    if get_uint(m, b"Algo", U8) != 0:
        raise DecodeError("compress", "unknown compression algorithm")
    buf = m.get(b"Buf")
    if not isinstance(buf, bytes):
        raise DecodeError("compress", "Buf is not bytes")
    inflated = lzw.decompress(buf, limit)
    if not inflated:
        raise DecodeError("compress", "decompressed to nothing")
    return inflated


def split_compound(data: bytes) -> tuple[list[bytes], bool]:
    """Parts of a compound datagram, and whether a truncated tail was dropped.

    Refuses 0 or >= 128 parts (Go 0.2.2 mis-parses the latter) and empty parts
    (which crash Go), so a forwarded part is always safe.
    """
    if len(data) < 2:
        raise DecodeError("compound", "missing part count")
    n = data[1]
    if n == 0 or n > MAX_COMPOUND_PARTS:
        raise DecodeError("compound", f"{n} parts (allowed 1..{MAX_COMPOUND_PARTS})")
    if len(data) < 2 + 2 * n:
        raise DecodeError("compound", "truncated length table")
    lengths = struct.unpack_from(f">{n}H", data, 2)
    offset = 2 + 2 * n
    parts: list[bytes] = []
    for length in lengths:
        if length == 0:
            raise DecodeError("compound", "empty part")
        if offset + length > len(data):
            return parts, True
        parts.append(bytes(data[offset:offset + length]))
        offset += length
    return parts, False


def decode_packet(data: bytes) -> list[Message]:
    """Every message in one (already decrypted) datagram, unwrapping CRC/compress/compound.

    Raises :class:`DecodeError` if any layer is malformed; a compound whose
    tail is truncated yields the complete parts (as Go does).
    """
    if len(data) > MAX_PACKET_SIZE:
        raise DecodeError("size", f"datagram of {len(data)} bytes")
    out: list[Message] = []
    _decode_into(bytes(data), out, 0)
    return out


def _decode_into(data: bytes, out: list[Message], depth: int) -> None:
    if depth > MAX_NESTING:
        raise DecodeError("nesting", "too many nested wrappers")
    if not data:
        raise DecodeError("empty", "empty message")
    kind = data[0]
    if kind == MessageType.HAS_CRC:
        if len(data) < 5:
            raise DecodeError("crc", "short CRC header")
        (crc,) = struct.unpack_from(">I", data, 1)
        if zlib.crc32(data[5:]) != crc:
            raise DecodeError("crc", "checksum mismatch")
        _decode_into(data[5:], out, depth + 1)
    elif kind == MessageType.COMPOUND:
        parts, _truncated = split_compound(data)
        for part in parts:
            _decode_into(part, out, depth + 1)
    elif kind == MessageType.COMPRESS:
        _decode_into(_decompress_body(data, MAX_INFLATED_PACKET), out, depth + 1)
    else:
        out.append(decode_message(data))


# --------------------------------------------------------------------------- streams


def decode_stream(data: bytes) -> StreamMessage:
    """Decode one complete (already decrypted) stream payload.

    Handles a compress wrapper, push-pull, fallback ping/ack, user and err.
    Bytes after the message are ignored. An incomplete message raises
    ``DecodeError`` with reason ``"truncated"`` (see :func:`stream_message_length`
    to know when a message is complete).
    """
    if len(data) > MAX_STREAM_SIZE:
        raise DecodeError("size", f"stream of {len(data)} bytes")
    if not data:
        raise DecodeError("empty", "empty stream")
    data = bytes(data)
    if data[0] == MessageType.COMPRESS:
        data = _decompress_body(data, MAX_INFLATED_STREAM)
        if data[0] == MessageType.COMPRESS:
            raise DecodeError("nesting", "compressed twice")
    kind = data[0]
    if kind == MessageType.PUSH_PULL:
        return _decode_push_pull(data)
    if kind == MessageType.USER:
        return _decode_stream_user(data)
    if kind == MessageType.PING:
        return _decode_ping(as_map(unpack_one(data[1:])))
    if kind == MessageType.ACK:
        m = as_map(unpack_one(data[1:]))
        return Ack(get_uint(m, b"SeqNo", U32), get_raw(m, b"Payload"))
    if kind == MessageType.ERR:
        return ErrResp(get_str(as_map(unpack_one(data[1:])), b"Error"))
    if kind == MessageType.ENCRYPT:
        raise DecodeError("encrypted", "stream is encrypted; decrypt it first")
    raise DecodeError("type", f"unexpected stream message type {kind}")


def _stream_unpacker(data: bytes | memoryview, max_size: int) -> msgpack.Unpacker:
    unpacker = msgpack.Unpacker(raw=True, strict_map_key=False, use_list=True,
                                max_buffer_size=max(max_size, 1))
    unpacker.feed(data)
    return unpacker


def _next(unpacker: msgpack.Unpacker) -> Any:
    try:
        return unpacker.unpack()
    except msgpack.OutOfData:
        raise DecodeError("truncated", "stream ended early") from None
    except MSGPACK_ERRORS as exc:
        raise DecodeError("msgpack", str(exc)[:80]) from None


def _header_count(header: dict[bytes, Any], key: bytes, limit: int) -> int:
    # Go sizes a slice/buffer from these ints before reading: a negative count
    # panics it and a huge one exhausts memory, so both are refused here.
    value = get_int(header, key)
    if not 0 <= value <= limit:
        raise DecodeError("length", f"{key.decode()} {value} out of range")
    return value


#: Decoded push-pull rows by their bytes (values are immutable, so sharing is safe).
_ROW_CACHE: dict[bytes, PushNodeState] = {}
_ROW_CACHE_SIZE = 1 << 15


def _decode_node_state(row: bytes) -> PushNodeState:
    m = as_map(unpack_one(row), "node state")
    state = get_int(m, b"State")
    if not 0 <= state <= 3:
        raise DecodeError("schema", f"unknown node state {state}")
    return PushNodeState(get_str(m, b"Name"), _ip(m, b"Addr"), get_uint(m, b"Port", U16),
                         _meta(m), get_uint(m, b"Incarnation", U32), state, _vsn(m))


def _decode_push_pull(data: bytes) -> PushPull:
    unpacker = _stream_unpacker(data[1:], len(data))
    header = as_map(_next(unpacker), "push-pull header")
    # Every node state takes at least one byte, so a count beyond the payload is a lie.
    count = _header_count(header, b"Nodes", min(len(data), MAX_PUSH_NODES))
    user_len = _header_count(header, b"UserStateLen", len(data))
    nodes = []
    cache = _ROW_CACHE
    start = unpacker.tell()
    for _ in range(count):
        # Rows repeat across a cluster's syncs: decode each distinct row once.
        try:
            unpacker.skip()
        except msgpack.OutOfData:
            raise DecodeError("truncated", "stream ended early") from None
        except MSGPACK_ERRORS as exc:
            raise DecodeError("msgpack", str(exc)[:80]) from None
        end = unpacker.tell()
        row = data[1 + start:1 + end]
        start = end
        node = cache.get(row)
        if node is None:
            node = _decode_node_state(row)
            if len(cache) >= _ROW_CACHE_SIZE:
                cache.clear()
            cache[row] = node
        nodes.append(node)
    start = 1 + unpacker.tell()
    user_state = data[start:start + user_len]
    if len(user_state) != user_len:
        raise DecodeError("truncated", "user state shorter than announced")
    return PushPull(get_bool(header, b"Join"), tuple(nodes), user_state)


def _decode_stream_user(data: bytes) -> UserMsg:
    unpacker = _stream_unpacker(data[1:], len(data))
    header = as_map(_next(unpacker), "user message header")
    length = _header_count(header, b"UserMsgLen", len(data))
    start = 1 + unpacker.tell()
    payload = data[start:start + length]
    if len(payload) != length:
        raise DecodeError("truncated", "user message shorter than announced")
    return UserMsg(payload)


_STREAM_KINDS = frozenset((MessageType.PUSH_PULL, MessageType.USER, MessageType.COMPRESS,
                           MessageType.PING, MessageType.ACK, MessageType.ERR))


#: memberlist's ``hasLabelMsg`` (see swimlib/wire/envelope.py, which checks the label).
_HAS_LABEL = 244


class StreamFramer:
    """Finds, incrementally, where the one message on a stream ends.

    Unencrypted streams carry no length prefix and the peer keeps the
    connection open for our reply, so a reader must parse as bytes arrive to
    know when a message (push-pull, compress wrapper, user, ping, ack, err) is
    complete; an encrypted frame (``0a | L | ...``) is sized by its header.
    Feed each chunk as it arrives; :meth:`feed` returns the total length of the
    message once it is known (it may exceed what has arrived so far, e.g. the
    raw user state of a push-pull still to come). A cluster label header
    (``f4 | len | label``, memberlist >= 0.3) before the first message is
    counted in the length and left for the envelope to check. Raises
    :class:`DecodeError` when the bytes can never become a valid message or
    exceed the size limit.
    """

    def __init__(self, limit: int = MAX_STREAM_SIZE) -> None:
        self._limit = limit
        self._kind = -1
        self._unpacker: msgpack.Unpacker | None = None
        self._head = bytearray()  # only for the 5-byte encrypted header
        self._received = 0
        self._header_done = False  # the first msgpack object (header, or the only one)
        self._objects_left = 0  # node states still to come after a push-pull header
        self._extra = 0  # raw bytes after the last msgpack object
        self._length: int | None = None
        #: Label header: bytes of it still to skip (-1: not seen the first byte yet,
        #: -2: waiting for its length byte), and its whole size.
        self._label_left = -1
        self._label_size = 0

    @property
    def length(self) -> int | None:
        """The total message length, once known."""
        return self._length

    def feed(self, chunk: bytes | bytearray | memoryview) -> int | None:
        if self._length is not None or not chunk:
            return self._length
        view = memoryview(chunk)
        if self._label_left != 0:
            view = self._skip_label(view)
            if not view:
                return None
        if self._kind < 0:
            self._kind = view[0]
            if self._kind != MessageType.ENCRYPT and self._kind not in _STREAM_KINDS:
                raise DecodeError("type", f"unexpected stream message type {self._kind}")
            if self._kind != MessageType.ENCRYPT:
                self._unpacker = _stream_unpacker(b"", self._limit)
            view = view[1:]
        self._received += len(view)
        if self._kind == MessageType.ENCRYPT:
            self._head += view[: 4 - len(self._head)]
            if len(self._head) == 4:
                (size,) = struct.unpack(">I", self._head)
                if size > self._limit:
                    raise DecodeError("size", f"encrypted stream of {size} bytes")
                self._length = self._label_size + 5 + size
            return self._length
        if self._received > self._limit:
            raise DecodeError("size", "stream message exceeds the size limit")
        assert self._unpacker is not None
        try:
            self._unpacker.feed(view)
        except msgpack.BufferFull:
            raise DecodeError("size", "stream message exceeds the size limit") from None
        while not self._header_done or self._objects_left:
            try:
                obj = self._unpacker.unpack()
            except msgpack.OutOfData:
                return None
            except MSGPACK_ERRORS as exc:
                raise DecodeError("msgpack", str(exc)[:80]) from None
            if self._header_done:
                self._objects_left -= 1
            else:
                self._header_done = True
                self._on_header(obj)
        total: int = 1 + self._unpacker.tell() + self._extra
        if total > self._limit:
            raise DecodeError("size", f"stream message of {total} bytes")
        self._length = self._label_size + total
        return self._length

    def _skip_label(self, view: memoryview) -> memoryview:
        """Step over a label header, if the stream starts with one."""
        if self._label_left == -1:
            if view[0] != _HAS_LABEL:
                self._label_left = 0
                return view
            self._label_left, self._label_size, view = -2, 1, view[1:]
            if not view:
                return view
        if self._label_left == -2:
            if view[0] == 0:
                raise DecodeError("label", "label header cannot be empty when present")
            self._label_left = view[0]
            self._label_size += 1 + view[0]
            view = view[1:]
        take = min(len(view), self._label_left)
        self._label_left -= take
        return view[take:]

    def _on_header(self, header: Any) -> None:
        if self._kind == MessageType.PUSH_PULL:
            header = as_map(header, "push-pull header")
            self._objects_left = _header_count(header, b"Nodes",
                                               min(self._limit, MAX_PUSH_NODES))
            self._extra = _header_count(header, b"UserStateLen", self._limit)
        elif self._kind == MessageType.USER:
            self._extra = _header_count(as_map(header, "user message header"), b"UserMsgLen",
                                        self._limit)


def stream_message_length(buf: bytes | bytearray | memoryview) -> int | None:
    """Total length of the stream message at the start of ``buf``, or None if not yet known.

    The one-shot form of :class:`StreamFramer` (see there).
    """
    return StreamFramer().feed(buf)
