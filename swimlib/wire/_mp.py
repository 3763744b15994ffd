"""go-msgpack 0.5.5 dialect helpers shared by the memberlist and Serf codecs.

Encoding: maps with keys in sorted order (Go writes struct fields sorted), the
old raw family for strings and bytes (``use_bin_type=False``), ``None`` (nil)
for empty slices. Decoding: any key order, missing keys zero-filled (as Go
does), unknown keys skipped, str8/bin/array-of-bytes accepted; every failure
is a :class:`~swimlib.errors.DecodeError`, never a msgpack or Python error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgpack

from swimlib.errors import DecodeError

U8, U16, U32, U64 = 0xFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1

_packer = msgpack.Packer(use_bin_type=False, autoreset=True)
#: Pack one object in Go's dialect. Callers must pass maps already key-sorted.
pack: Callable[[Any], bytes] = _packer.pack

#: What msgpack raises on malformed input (all ValueError/TypeError subclasses,
#: plus deep nesting).
MSGPACK_ERRORS = (ValueError, TypeError, msgpack.UnpackException, RecursionError, MemoryError)


def name_bytes(name: str) -> bytes:
    """A Go string from a Python one; ``surrogateescape`` round-trips any bytes."""
    return name.encode("utf-8", "surrogateescape")


def text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def check_uint(what: str, value: int, limit: int) -> int:
    """Encoder-side range check: we never send a value Go would reject."""
    if type(value) is not int or not 0 <= value <= limit:
        raise ValueError(f"{what} must be an int in 0..{limit}, got {value!r}")
    return value


def check_int64(what: str, value: int) -> int:
    if type(value) is not int or not I64_MIN <= value <= I64_MAX:
        raise ValueError(f"{what} must be a signed 64-bit int, got {value!r}")
    return value


def unpack_one(data: bytes | memoryview) -> Any:
    """Decode exactly one msgpack object from the start of ``data``; trailing bytes ignored."""
    try:
        return msgpack.unpackb(data, raw=True, strict_map_key=False, use_list=True)
    except msgpack.ExtraData as extra:
        return extra.unpacked
    except MSGPACK_ERRORS as exc:
        raise DecodeError("msgpack", str(exc)[:80]) from None


def as_map(obj: Any, what: str = "message") -> dict[bytes, Any]:
    if not isinstance(obj, dict):
        raise DecodeError("schema", f"{what} is not a map")
    return obj


def get_uint(m: dict[bytes, Any], key: bytes, limit: int) -> int:
    v = m.get(key)
    if v is None:
        return 0
    if type(v) is not int or not 0 <= v <= limit:
        raise DecodeError("schema", f"{key.decode()} is not an unsigned int <= {limit}")
    return v


def get_int(m: dict[bytes, Any], key: bytes) -> int:
    v = m.get(key)
    if v is None:
        return 0
    if type(v) is not int or not I64_MIN <= v <= I64_MAX:
        raise DecodeError("schema", f"{key.decode()} is not an int")
    return v


def get_bool(m: dict[bytes, Any], key: bytes) -> bool:
    v = m.get(key)
    if v is None:
        return False
    if type(v) is not bool:
        raise DecodeError("schema", f"{key.decode()} is not a bool")
    return v


def to_raw(v: Any, what: str) -> bytes:
    """A Go ``[]byte``: raw/bin, nil, or (as Go also accepts) an array of small ints."""
    if v is None:
        return b""
    if isinstance(v, bytes):
        return v
    if isinstance(v, list):
        if not all(type(b) is int and 0 <= b <= 255 for b in v):
            raise DecodeError("schema", f"{what} is not a byte array")
        return bytes(v)
    raise DecodeError("schema", f"{what} is not bytes")


def get_raw(m: dict[bytes, Any], key: bytes) -> bytes:
    return to_raw(m.get(key), key.decode())


def to_str(v: Any, what: str) -> str:
    if v is None:
        return ""
    if not isinstance(v, bytes):
        raise DecodeError("schema", f"{what} is not a string")
    return text(v)


def get_str(m: dict[bytes, Any], key: bytes) -> str:
    return to_str(m.get(key), key.decode())


def get_list(m: dict[bytes, Any], key: bytes) -> list[Any]:
    """A Go slice: an array, or nil for an empty one."""
    v = m.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise DecodeError("schema", f"{key.decode()} is not an array")
    return v


def get_str_list(m: dict[bytes, Any], key: bytes) -> tuple[str, ...]:
    what = key.decode()
    return tuple(to_str(v, what) for v in get_list(m, key))


def get_str_map(m: dict[bytes, Any], key: bytes) -> dict[str, str]:
    """A Go ``map[string]string``: a map or nil."""
    return to_str_map(m.get(key), key.decode())


def to_str_map(v: Any, what: str) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise DecodeError("schema", f"{what} is not a map")
    return {to_str(k, what): to_str(val, what) for k, val in v.items()}


def sorted_str_map(d: Mapping[str, str]) -> dict[bytes, bytes]:
    """A ``map[string]string`` ready to pack, keys sorted bytewise so our bytes are stable."""
    return dict(sorted((name_bytes(k), name_bytes(v)) for k, v in d.items()))
