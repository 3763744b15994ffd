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
_MASK48 = (1 << 48) - 1
_MAX_WIDTH = 12
#: Default cap on inflated output, so a small hostile input cannot exhaust memory.
DEFAULT_LIMIT = 40 * 1024 * 1024


def compress(data: bytes) -> bytes:
    """Compress ``data``; byte-identical to Go's ``lzw.NewWriter(w, lzw.LSB, 8)``."""
    out = compress_below(data, None)
    assert out is not None
    return out


def compress_below(data: bytes, give_up_at: int | None) -> bytes | None:
    """:func:`compress`, or None once the output reaches ``give_up_at`` bytes.

    A caller that only keeps smaller output (memberlist's rule for datagrams)
    stops early on the many small packets that never shrink. The bit writer
    and table step are inlined and bytes leave in 6-byte chunks: this runs
    for every datagram sent.
    """
    chunks: list[bytes] = []
    push = chunks.append
    limit = give_up_at if give_up_at is not None else 1 << 62
    limit_bits = limit * 8
    bits = _CLEAR
    nbits = _START_WIDTH
    total = _START_WIDTH  # bits emitted so far
    width = _START_WIDTH
    table: dict[int, int] = {}
    get = table.get
    hi = _EOF
    overflow = 1 << _START_WIDTH
    if data:
        it = iter(data)
        code = next(it)
        for literal in it:
            key = (code << 8) | literal
            found = get(key)
            if found is not None:
                code = found
                continue
            bits |= code << nbits
            nbits += width
            total += width
            if nbits >= 48:
                push((bits & _MASK48).to_bytes(6, "little"))
                bits >>= 48
                nbits -= 48
                if total >= limit_bits:
                    return None
            code = literal
            hi += 1
            if hi == overflow:
                width += 1
                overflow <<= 1
            if hi == _MAX_CODE:
                bits |= _CLEAR << nbits
                nbits += width
                total += width
                width = _START_WIDTH
                hi = _EOF
                overflow = 1 << _START_WIDTH
                table.clear()
            else:
                table[key] = hi
        bits |= code << nbits
        nbits += width
        total += width
        hi += 1
        if hi == overflow:
            width += 1
            overflow <<= 1
        if hi == _MAX_CODE:
            bits |= _CLEAR << nbits
            nbits += width
            total += width
            width = _START_WIDTH
    bits |= _EOF << nbits
    nbits += width
    total += width
    push(bits.to_bytes((nbits + 7) // 8, "little"))
    if (total + 7) // 8 >= limit:
        return None
    return b"".join(chunks)


#: The reader's table before any input: 256 literals, the rest undefined.
_INITIAL_ENTRIES: list[bytes] = [bytes((i,)) for i in range(256)] + [b""] * (_MAX_CODE + 1 - 256)


def decompress(data: bytes, limit: int = DEFAULT_LIMIT) -> bytes:
    """Inflate Go-LZW ``data``; refuse output over ``limit`` bytes or a missing end code."""
    out = bytearray()
    entries = _INITIAL_ENTRIES.copy()
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
