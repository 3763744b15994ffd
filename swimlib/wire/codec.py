"""Bytes <-> memberlist messages, in go-msgpack 0.5.5's dialect.

Encoding reproduces Go's bytes: struct maps with keys in sorted order, the old
"raw" family for both strings and byte slices (``use_bin_type=False``), nil
for empty byte slices. Decoding is tolerant of what Go may send (any key
order, missing keys, str8/bin, 16-byte IPs) and strict about what would crash
a peer (short Vsn, empty compound parts, unterminated LZW). Every failure is a
:class:`~swimlib.errors.DecodeError` with a stable ``reason``.
"""

from __future__ import annotations

import socket
import struct
import zlib
from functools import lru_cache
from typing import Any, Callable

import msgpack

from swimlib.errors import DecodeError
from swimlib.wire import lzw
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
#: Nesting of compound/compress/crc wrappers we follow before refusing.
MAX_NESTING = 4
#: memberlist's limit on node meta.
MAX_META_SIZE = 512

_U8, _U16, _U32, _U64 = 0xFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF
_V4_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"

_packer = msgpack.Packer(use_bin_type=False, autoreset=True)
_pack: Callable[[Any], bytes] = _packer.pack


# --------------------------------------------------------------------------- addresses


@lru_cache(maxsize=65536)
def ip_to_bytes(ip: str) -> bytes:
    """Text IP -> 4 raw bytes (IPv4) or 16 (IPv6); ``""`` -> ``b""``."""
    if not ip:
        return b""
    try:
        return socket.inet_pton(socket.AF_INET, ip)
    except OSError:
        pass
    try:
        return socket.inet_pton(socket.AF_INET6, ip)
    except OSError as exc:
        raise ValueError(f"not an IP address: {ip!r}") from exc


@lru_cache(maxsize=65536)
def ip_from_bytes(raw: bytes) -> str:
    """Raw 4/16-byte IP -> text, un-mapping v4-mapped IPv6 addresses."""
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    if len(raw) == 16:
        if raw.startswith(_V4_MAPPED_PREFIX):
            return socket.inet_ntop(socket.AF_INET, raw[12:])
        return socket.inet_ntop(socket.AF_INET6, raw)
    if not raw:
        return ""
    raise DecodeError("addr", f"IP must be 4 or 16 bytes, got {len(raw)}")


def _name_bytes(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------- encode


def _node_state_map(s: PushNodeState) -> dict[str, Any]:
    return {
        "Addr": ip_to_bytes(s.addr),
        "Incarnation": s.incarnation,
        "Meta": s.meta or None,
        "Name": _name_bytes(s.name),
        "Port": s.port,
        "State": s.state,
        "Vsn": s.vsn,
    }


def _sources(m: dict[str, Any], addr: str, port: int, node: str) -> dict[str, Any]:
    # omitempty on the Source* fields; Go writes sorted keys.
    if addr:
        m["SourceAddr"] = ip_to_bytes(addr)
    if node:
        m["SourceNode"] = _name_bytes(node)
    if port:
        m["SourcePort"] = port
    return dict(sorted(m.items()))


def encode_body(msg: Message) -> dict[str, Any] | bytes:
    """The msgpack map (or raw bytes, for user messages) of one message."""
    if isinstance(msg, Ping):
        return _sources({"Node": _name_bytes(msg.node), "SeqNo": msg.seq_no},
                        msg.source_addr, msg.source_port, msg.source_node)
    if isinstance(msg, IndirectPing):
        return _sources(
            {"Nack": msg.nack, "Node": _name_bytes(msg.node), "Port": msg.port,
             "SeqNo": msg.seq_no, "Target": ip_to_bytes(msg.target)},
            msg.source_addr, msg.source_port, msg.source_node)
    if isinstance(msg, Ack):
        return {"Payload": msg.payload or None, "SeqNo": msg.seq_no}
    if isinstance(msg, Nack):
        return {"SeqNo": msg.seq_no}
    if isinstance(msg, (Suspect, Dead)):
        return {"From": _name_bytes(msg.from_), "Incarnation": msg.incarnation,
                "Node": _name_bytes(msg.node)}
    if isinstance(msg, Alive):
        if len(msg.vsn) != 6:
            raise ValueError("Vsn must be exactly 6 bytes (shorter ones crash Go peers)")
        if len(msg.meta) > MAX_META_SIZE:
            raise ValueError(f"meta is {len(msg.meta)} bytes; the limit is {MAX_META_SIZE}")
        return {"Addr": ip_to_bytes(msg.addr), "Incarnation": msg.incarnation,
                "Meta": msg.meta or None, "Node": _name_bytes(msg.node),
                "Port": msg.port, "Vsn": msg.vsn}
    if isinstance(msg, ErrResp):
        return {"Error": _name_bytes(msg.error)}
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
    return head + _pack(body)


def encode_compound(parts: list[bytes]) -> bytes:
    """Several encoded messages in one datagram (type 7)."""
    if not 0 < len(parts) <= MAX_COMPOUND_PARTS:
        raise ValueError(f"a compound holds 1..{MAX_COMPOUND_PARTS} parts, got {len(parts)}")
    if any(not p for p in parts):
        raise ValueError("compound parts must not be empty (an empty part crashes Go peers)")
    if any(len(p) > _U16 for p in parts):
        raise ValueError("compound part longer than 65535 bytes")
    header = bytes((MessageType.COMPOUND, len(parts))) + struct.pack(
        f">{len(parts)}H", *(len(p) for p in parts))
    return header + b"".join(parts)


def encode_compress(data: bytes) -> bytes:
    """Wrap a message in LZW compression (type 9)."""
    return bytes((MessageType.COMPRESS,)) + _pack({"Algo": 0, "Buf": lzw.compress(data)})


def maybe_compress(data: bytes) -> bytes:
    """Compress only if that makes the datagram smaller (memberlist's UDP policy)."""
    packed = encode_compress(data)
    return packed if len(packed) < len(data) else data


def add_crc(data: bytes) -> bytes:
    """Prefix the CRC-32 header (type 12), understood by peers with protocol >= 5."""
    return bytes((MessageType.HAS_CRC,)) + struct.pack(">I", zlib.crc32(data)) + data


def encode_push_pull(pp: PushPull) -> bytes:
    """A push-pull stream payload: type 6, header, node states, raw user state."""
    out = [bytes((MessageType.PUSH_PULL,)),
           _pack({"Join": pp.join, "Nodes": len(pp.nodes), "UserStateLen": len(pp.user_state)})]
    out.extend(_pack(_node_state_map(s)) for s in pp.nodes)
    out.append(pp.user_state)
    return b"".join(out)


def encode_stream(msg: StreamMessage) -> bytes:
    """A message as sent on a TCP stream (push-pull, fallback ping/ack, user, err)."""
    if isinstance(msg, PushPull):
        return encode_push_pull(msg)
    if isinstance(msg, UserMsg):
        return bytes((MessageType.USER,)) + _pack({"UserMsgLen": len(msg.payload)}) + msg.payload
    return encode(msg)


# --------------------------------------------------------------------------- decode helpers


def _unpack_one(data: bytes | memoryview) -> Any:
    """Decode exactly one msgpack object from the start of ``data``; trailing bytes ignored."""
    try:
        return msgpack.unpackb(data, raw=True, strict_map_key=False, use_list=True)
    except msgpack.ExtraData as extra:
        return extra.unpacked
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise DecodeError("msgpack", str(exc)[:80]) from None


def _as_map(obj: Any) -> dict[bytes, Any]:
    if not isinstance(obj, dict):
        raise DecodeError("schema", "expected a map")
    return obj


def _uint(m: dict[bytes, Any], key: bytes, limit: int) -> int:
    v = m.get(key)
    if v is None:
        return 0
    if type(v) is not int or not 0 <= v <= limit:
        raise DecodeError("schema", f"{key.decode()} is not an unsigned int <= {limit}")
    return v


def _int(m: dict[bytes, Any], key: bytes) -> int:
    v = m.get(key)
    if v is None:
        return 0
    if type(v) is not int or not -(1 << 63) <= v < (1 << 63):
        raise DecodeError("schema", f"{key.decode()} is not an int")
    return v


def _bool(m: dict[bytes, Any], key: bytes) -> bool:
    v = m.get(key)
    if v is None:
        return False
    if type(v) is not bool:
        raise DecodeError("schema", f"{key.decode()} is not a bool")
    return v


def _raw(m: dict[bytes, Any], key: bytes) -> bytes:
    v = m.get(key)
    if v is None:
        return b""
    if isinstance(v, list):  # Go also accepts []uint8 as an array of small ints
        if not all(type(b) is int and 0 <= b <= 255 for b in v):
            raise DecodeError("schema", f"{key.decode()} is not a byte array")
        return bytes(v)
    if not isinstance(v, bytes):
        raise DecodeError("schema", f"{key.decode()} is not bytes")
    return v


def _str(m: dict[bytes, Any], key: bytes) -> str:
    v = m.get(key)
    if v is None:
        return ""
    if not isinstance(v, bytes):
        raise DecodeError("schema", f"{key.decode()} is not a string")
    return v.decode("utf-8", "surrogateescape")


def _ip(m: dict[bytes, Any], key: bytes) -> str:
    return ip_from_bytes(_raw(m, key))


def _vsn(m: dict[bytes, Any]) -> bytes:
    vsn = _raw(m, b"Vsn")
    if len(vsn) not in (0, 6):
        raise DecodeError("vsn", f"Vsn must be 6 bytes, got {len(vsn)}")
    return vsn


def _meta(m: dict[bytes, Any]) -> bytes:
    meta = _raw(m, b"Meta")
    if len(meta) > MAX_META_SIZE:
        raise DecodeError("meta", f"meta is {len(meta)} bytes")
    return meta


# --------------------------------------------------------------------------- decode messages


def _decode_ping(m: dict[bytes, Any]) -> Ping:
    return Ping(_uint(m, b"SeqNo", _U32), _str(m, b"Node"), _ip(m, b"SourceAddr"),
                _uint(m, b"SourcePort", _U16), _str(m, b"SourceNode"))


def _decode_indirect(m: dict[bytes, Any]) -> IndirectPing:
    return IndirectPing(_uint(m, b"SeqNo", _U32), _ip(m, b"Target"), _uint(m, b"Port", _U16),
                        _str(m, b"Node"), _bool(m, b"Nack"), _ip(m, b"SourceAddr"),
                        _uint(m, b"SourcePort", _U16), _str(m, b"SourceNode"))


def _decode_alive(m: dict[bytes, Any]) -> Alive:
    return Alive(_uint(m, b"Incarnation", _U32), _str(m, b"Node"), _ip(m, b"Addr"),
                 _uint(m, b"Port", _U16), _meta(m), _vsn(m))


_BODY_DECODERS: dict[int, Callable[[dict[bytes, Any]], Message]] = {
    MessageType.PING: _decode_ping,
    MessageType.INDIRECT_PING: _decode_indirect,
    MessageType.ACK: lambda m: Ack(_uint(m, b"SeqNo", _U32), _raw(m, b"Payload")),
    MessageType.NACK: lambda m: Nack(_uint(m, b"SeqNo", _U32)),
    MessageType.SUSPECT: lambda m: Suspect(_uint(m, b"Incarnation", _U32), _str(m, b"Node"),
                                           _str(m, b"From")),
    MessageType.ALIVE: _decode_alive,
    MessageType.DEAD: lambda m: Dead(_uint(m, b"Incarnation", _U32), _str(m, b"Node"),
                                     _str(m, b"From")),
    MessageType.ERR: lambda m: ErrResp(_str(m, b"Error")),
}


def decode_message(data: bytes) -> Message:
    """Decode one non-wrapper message (type byte + body)."""
    if not data:
        raise DecodeError("empty", "empty message")
    kind = data[0]
    if kind == MessageType.USER:
        return UserMsg(bytes(data[1:]))
    decoder = _BODY_DECODERS.get(kind)
    if decoder is None:
        raise DecodeError("type", f"unexpected message type {kind}")
    return decoder(_as_map(_unpack_one(data[1:])))


def _decompress_body(data: bytes, limit: int) -> bytes:
    m = _as_map(_unpack_one(data[1:]))
    if _uint(m, b"Algo", _U8) != 0:
        raise DecodeError("compress", "unknown compression algorithm")
    buf = m.get(b"Buf")
    if not isinstance(buf, bytes):
        raise DecodeError("compress", "Buf is not bytes")
    inflated = lzw.decompress(buf, limit)
    if not inflated:
        raise DecodeError("compress", "decompressed to nothing")
    return inflated


def split_compound(data: bytes) -> tuple[list[bytes], bool]:
    """Parts of a compound datagram, and whether a truncated tail was dropped."""
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
        parts.append(data[offset:offset + length])
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
    """
    if len(data) > MAX_STREAM_SIZE:
        raise DecodeError("size", f"stream of {len(data)} bytes")
    if not data:
        raise DecodeError("empty", "empty stream")
    if data[0] == MessageType.COMPRESS:
        data = _decompress_body(data, MAX_INFLATED_STREAM)
        if data[0] == MessageType.COMPRESS:
            raise DecodeError("nesting", "compressed twice")
    kind = data[0]
    if kind == MessageType.PUSH_PULL:
        return _decode_push_pull(data)
    if kind == MessageType.USER:
        return _decode_stream_user(data)
    if kind in (MessageType.PING, MessageType.ACK, MessageType.ERR):
        msg = decode_message(data)
        assert isinstance(msg, (Ping, Ack, ErrResp))
        return msg
    raise DecodeError("type", f"unexpected stream message type {kind}")


def _stream_unpacker(data: bytes) -> msgpack.Unpacker:
    unpacker = msgpack.Unpacker(raw=True, strict_map_key=False, use_list=True,
                                max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    return unpacker


def _next(unpacker: msgpack.Unpacker) -> Any:
    try:
        return unpacker.unpack()
    except msgpack.OutOfData:
        raise DecodeError("truncated", "stream ended early") from None
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise DecodeError("msgpack", str(exc)[:80]) from None


def _decode_push_pull(data: bytes) -> PushPull:
    unpacker = _stream_unpacker(data[1:])
    header = _as_map(_next(unpacker))
    count = _int(header, b"Nodes")
    user_len = _int(header, b"UserStateLen")
    # Every node state takes at least one byte, so a count beyond the payload is a lie.
    if not 0 <= count <= len(data) or not 0 <= user_len <= len(data):
        raise DecodeError("schema", "push-pull header counts out of range")
    nodes = []
    for _ in range(count):
        m = _as_map(_next(unpacker))
        state = _int(m, b"State")
        if not 0 <= state <= 3:
            raise DecodeError("schema", f"unknown node state {state}")
        nodes.append(PushNodeState(_str(m, b"Name"), _ip(m, b"Addr"), _uint(m, b"Port", _U16),
                                   _meta(m), _uint(m, b"Incarnation", _U32), state, _vsn(m)))
    start = 1 + unpacker.tell()
    user_state = data[start:start + user_len]
    if len(user_state) != user_len:
        raise DecodeError("truncated", "user state shorter than announced")
    return PushPull(_bool(header, b"Join"), tuple(nodes), user_state)


def _decode_stream_user(data: bytes) -> UserMsg:
    unpacker = _stream_unpacker(data[1:])
    header = _as_map(_next(unpacker))
    length = _int(header, b"UserMsgLen")
    start = 1 + unpacker.tell()
    payload = data[start:start + length]
    if length < 0 or len(payload) != length:
        raise DecodeError("truncated", "user message shorter than announced")
    return UserMsg(payload)
