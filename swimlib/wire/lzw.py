"""LZW exactly as Go's ``compress/lzw`` with LSB bit order and 8-bit literals.

memberlist compresses with it (reference section 6). Codes: 256 = clear,
257 = end, dynamic codes from 258; widths 9..12 bits. The writer starts with a
clear code and emits another (resetting the table) when the next code would be
4095; it always ends with the end code and pads to a byte. The reader refuses
input with no end code, as Go does; once the table is full and no clear code
comes, it keeps decoding at 12 bits without adding entries, as Go does. Both
behaviours are pinned by fixtures made with Go's own package
(tests/data/wire/lzw).
"""

from __future__ import annotations

from swimlib.errors import DecodeError

_CLEAR = 256
_EOF = 257
_MAX_CODE = 4095
_START_WIDTH = 9
_MAX_WIDTH = 12
#: Default cap on inflated output, so a small hostile input cannot exhaust memory.
DEFAULT_LIMIT = 40 * 1024 * 1024


def compress(data: bytes) -> bytes:
    """Compress ``data``; byte-identical to Go's ``lzw.NewWriter(w, lzw.LSB, 8)``."""
    out = bytearray()
    bits = 0
    nbits = 0
    width = _START_WIDTH

    def emit(code: int) -> None:
        nonlocal bits, nbits
        bits |= code << nbits
        nbits += width
        while nbits >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            nbits -= 8

    emit(_CLEAR)
    table: dict[int, int] = {}
    hi = _EOF
    overflow = 1 << _START_WIDTH

    def inc_hi() -> None:
        """Advance the next implied code; reset the table when codes run out."""
        nonlocal hi, overflow, width
        hi += 1
        if hi == overflow:
            width += 1
            overflow <<= 1
        if hi == _MAX_CODE:
            emit(_CLEAR)
            width = _START_WIDTH
            hi = _EOF
            overflow = 1 << _START_WIDTH
            table.clear()

    if data:
        code = data[0]
        for literal in data[1:]:
            key = (code << 8) | literal
            found = table.get(key)
            if found is not None:
                code = found
                continue
            emit(code)
            code = literal
            before = hi
            inc_hi()
            if hi > before:  # no reset happened: remember the new string
                table[key] = hi
        emit(code)
        inc_hi()
    emit(_EOF)
    if nbits > 0:
        out.append(bits & 0xFF)
    return bytes(out)


def decompress(data: bytes, limit: int = DEFAULT_LIMIT) -> bytes:
    """Inflate Go-LZW ``data``; refuse output over ``limit`` bytes or a missing end code."""
    out = bytearray()
    entries: list[bytes] = [bytes((i,)) for i in range(256)] + [b""] * (_MAX_CODE + 1 - 256)
    width = _START_WIDTH
    hi = _EOF
    overflow = 1 << width
    last = -1
    bits = 0
    nbits = 0
    pos = 0
    size = len(data)
    while True:
        while nbits < width:
            if pos >= size:
                raise DecodeError("lzw", "missing end code")
            bits |= data[pos] << nbits
            pos += 1
            nbits += 8
        code = bits & ((1 << width) - 1)
        bits >>= width
        nbits -= width
        if code == _CLEAR:
            width = _START_WIDTH
            hi = _EOF
            overflow = 1 << width
            last = -1
            continue
        if code == _EOF:
            return bytes(out)
        if code < _CLEAR:
            chunk = entries[code]
        elif code <= hi:
            if code == hi and last != -1:
                prev = entries[last]
                chunk = prev + prev[:1]
            else:
                chunk = entries[code]
                if not chunk:
                    raise DecodeError("lzw", "reference to an undefined code")
        else:
            raise DecodeError("lzw", "invalid code")
        out += chunk
        if len(out) > limit:
            raise DecodeError("lzw", f"inflates beyond {limit} bytes")
        if last != -1:
            entries[hi] = entries[last] + chunk[:1]
        last = code
        hi += 1
        if hi >= overflow:
            if width == _MAX_WIDTH:
                # Table full and the writer sent no clear: keep decoding at 12
                # bits but add no more entries (Go's reader does the same).
                last = -1
                hi -= 1
            else:
                width += 1
                overflow = 1 << width
