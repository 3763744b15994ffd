"""Deterministic inputs for the Go ``compress/lzw`` fixtures in ``lzw/``.

Only Go's compressed output is stored; the inputs are rebuilt from here (the
tests import this file). To regenerate the fixtures with a Go toolchain::

    python tests/data/wire/lzw_inputs.py   # writes lzw/*.lzw and lzw/manifest.json

The pseudo-random source is a fixed xorshift64*, so the inputs never depend on
Python's ``random`` implementation.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator

HERE = pathlib.Path(__file__).resolve().parent
FIXTURES = HERE / "lzw"

#: A length of random bytes whose last code lands exactly on the 12-bit reset
#: (found with an instrumented encoder; Go's output is the judge).
RESET_EDGE = 3937


def _xorshift(seed: int) -> Iterator[int]:
    state = seed or 0x9E3779B97F4A7C15
    while True:
        state ^= (state >> 12) & 0xFFFFFFFFFFFFFFFF
        state ^= (state << 25) & 0xFFFFFFFFFFFFFFFF
        state ^= (state >> 27) & 0xFFFFFFFFFFFFFFFF
        yield ((state * 0x2545F4914F6CDD1D) & 0xFFFFFFFFFFFFFFFF) >> 56


def random_bytes(seed: int, n: int) -> bytes:
    gen = _xorshift(seed)
    return bytes(next(gen) for _ in range(n))


_TEXT = (
    "alive suspect dead left node incarnation meta vsn port addr serf member "
    "gossip probe ack nack ping push pull state join leave event query tag role "
    "web db cache lb 127.0.0.1 10.0.0.7 fd00::2 backend frontend"
)
_WORDS = [w.encode() for w in _TEXT.split()]


def words(seed: int, n: int) -> bytes:
    """Low-entropy text, the shape of a push-pull: compresses well, many resets when long."""
    gen = _xorshift(seed)
    out = bytearray()
    while len(out) < n:
        out += _WORDS[next(gen) % len(_WORDS)]
        out += b" " if next(gen) % 8 else b"\n"
    return bytes(out[:n])


INPUTS: dict[str, Callable[[], bytes]] = {
    "empty": lambda: b"",
    "one_byte": lambda: b"a",
    "classic": lambda: b"TOBEORNOTTOBEORTOBEORNOT#",
    "run_a_1000": lambda: b"a" * 1000,
    "abab_999": lambda: b"ab" * 499 + b"a",
    "all_bytes": lambda: bytes(range(256)) * 4,
    "zeros_100k": lambda: bytes(100_000),
    "random_edge_minus1": lambda: random_bytes(7, RESET_EDGE - 1),
    "random_edge": lambda: random_bytes(7, RESET_EDGE),
    "random_edge_plus1": lambda: random_bytes(7, RESET_EDGE + 1),
    "random_16k": lambda: random_bytes(11, 16_384),
    "words_10k": lambda: words(3, 10_240),
    "words_70k": lambda: words(5, 70_000),
    "words_200k": lambda: words(9, 200_000),
}


class CodeWriter:
    """Writes an arbitrary LSB code stream, tracking the width as a Go reader would."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.bits = 0
        self.nbits = 0
        self.width = 9
        self.hi = 257

    def code(self, code: int) -> CodeWriter:
        self.bits |= code << self.nbits
        self.nbits += self.width
        while self.nbits >= 8:
            self.out.append(self.bits & 0xFF)
            self.bits >>= 8
            self.nbits -= 8
        if code == 256:
            self.width, self.hi = 9, 257
        elif code != 257:
            self.hi += 1
            if self.hi >= 1 << self.width:
                if self.width == 12:
                    self.hi -= 1
                else:
                    self.width += 1
        return self

    def done(self) -> bytes:
        if self.nbits:
            self.out.append(self.bits & 0xFF)
        return bytes(self.out)


def _full_table_no_clear() -> bytes:
    """Fill all 4096 codes, then keep going at 12 bits without a clear code."""
    w = CodeWriter().code(256)
    gen = _xorshift(13)
    while w.hi < 4095:
        w.code(next(gen))
    for c in (4095, 65, 4095, 300, 4000, 66, 258, 4095):
        w.code(c)
    return w.code(257).done()


#: Hand-made code streams that Go's reader decodes (or rejects) as a reference
#: for ours: *.z inputs, *.dec / *.err outputs.
STREAMS: dict[str, Callable[[], bytes]] = {
    "s_empty": lambda: b"",
    "s_clear_eof": lambda: CodeWriter().code(256).code(257).done(),
    "s_no_leading_clear": lambda: CodeWriter().code(97).code(98).code(258).code(257).done(),
    "s_kwkwk": lambda: CodeWriter().code(256).code(97).code(258).code(259).code(257).done(),
    "s_missing_eof": lambda: CodeWriter().code(256).code(104).code(105).done(),
    "s_invalid_code": lambda: CodeWriter().code(256).code(97).code(300).code(257).done(),
    "s_hi_after_clear": lambda: CodeWriter().code(256).code(258).code(257).done(),
    "s_clear_mid": lambda: CodeWriter().code(256).code(97).code(98).code(256).code(99)
    .code(258).code(257).done(),
    "s_trailing_garbage": lambda: CodeWriter().code(256).code(120).code(257).done()
    + b"\xff\xff\xff",
    "s_full_table_no_clear": _full_table_no_clear,
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def regenerate() -> None:
    """Write every input, compress it with Go, keep only Go's output and a manifest."""
    go = shutil.which("go")
    if go is None:
        sys.exit("needs a Go toolchain (apt-get install golang-go)")
    FIXTURES.mkdir(exist_ok=True)
    manifest = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in INPUTS.items():
            data = make()
            (pathlib.Path(tmp) / f"{name}.bin").write_bytes(data)
            manifest[name] = {"input_len": len(data), "input_sha256": sha256(data)}
        for name, make in STREAMS.items():
            (pathlib.Path(tmp) / f"{name}.z").write_bytes(make())
        subprocess.run([go, "run", str(HERE / "gen_lzw.go"), tmp], check=True)
        for name in INPUTS:
            out = (pathlib.Path(tmp) / f"{name}.lzw").read_bytes()
            (FIXTURES / f"{name}.lzw").write_bytes(out)
            manifest[name]["output_sha256"] = sha256(out)
        for name in STREAMS:
            dec = pathlib.Path(tmp) / f"{name}.dec"
            if dec.exists():
                out = dec.read_bytes()
                manifest[name] = {"go_output_len": len(out), "go_output_sha256": sha256(out)}
            else:
                err = (pathlib.Path(tmp) / f"{name}.err").read_text()
                manifest[name] = {"go_error": err}
    (FIXTURES / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    regenerate()
