"""LZW: byte-identical to Go's compress/lzw (LSB, 8), against stored Go output.

The fixtures in tests/data/wire/lzw were produced by Go itself
(tests/data/wire/gen_lzw.go via lzw_inputs.py); inputs are rebuilt here from
lzw_inputs.py, so CI needs no Go toolchain.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import pathlib
import random
import types

import pytest

from swimlib.errors import DecodeError
from swimlib.wire import lzw

DATA = pathlib.Path(__file__).resolve().parents[2] / "data" / "wire"


def _load_inputs() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("wire_lzw_inputs", DATA / "lzw_inputs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


INPUTS = _load_inputs()
MANIFEST = json.loads((DATA / "lzw" / "manifest.json").read_text())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("name", sorted(INPUTS.INPUTS))
def test_compress_matches_go(name: str) -> None:
    data = INPUTS.INPUTS[name]()
    entry = MANIFEST[name]
    assert (len(data), sha(data)) == (entry["input_len"], entry["input_sha256"])
    go = (DATA / "lzw" / f"{name}.lzw").read_bytes()
    assert sha(go) == entry["output_sha256"]
    assert lzw.compress(data) == go
    assert lzw.decompress(go, len(data)) == data


def _codes(stream: bytes) -> list[int]:
    """The code sequence of an LSB LZW stream, tracking width as a reader does."""
    codes: list[int] = []
    bits = nbits = pos = 0
    width, hi = 9, 257
    while True:
        while nbits < width:
            bits |= stream[pos] << nbits
            pos += 1
            nbits += 8
        code = bits & ((1 << width) - 1)
        bits >>= width
        nbits -= width
        codes.append(code)
        if code == 257:
            return codes
        if code == 256:
            width, hi = 9, 257
            continue
        hi += 1
        if hi >= 1 << width and width < 12:
            width += 1


@pytest.mark.parametrize("name", ["words_70k", "words_200k", "random_16k", "random_edge"])
def test_large_fixtures_cross_the_code_reset(name: str) -> None:
    codes = _codes((DATA / "lzw" / f"{name}.lzw").read_bytes())
    assert codes[0] == 256
    assert 256 in codes[1:]  # Go's writer reset its table mid-stream
    assert len(INPUTS.INPUTS["words_70k"]()) > 60_000


def test_reset_lands_right_before_eof() -> None:
    # RESET_EDGE is the length whose last code exhausts the table on Close.
    codes = _codes((DATA / "lzw" / "random_edge.lzw").read_bytes())
    assert codes[-2:] == [256, 257]


@pytest.mark.parametrize("name", sorted(INPUTS.STREAMS))
def test_decoder_agrees_with_go_on_crafted_streams(name: str) -> None:
    stream = INPUTS.STREAMS[name]()
    entry = MANIFEST[name]
    if "go_error" in entry:
        with pytest.raises(DecodeError):
            lzw.decompress(stream)
    else:
        out = lzw.decompress(stream)
        assert (len(out), sha(out)) == (entry["go_output_len"], entry["go_output_sha256"])


@pytest.mark.parametrize("data", [
    b"", b"x", b"xy" * 3000, bytes(range(256)) * 50, b"abcabcabcabcabc",
    bytes(200_000),
])
def test_round_trip(data: bytes) -> None:
    assert lzw.decompress(lzw.compress(data), max(len(data), 1)) == data


def test_limit_is_enforced() -> None:
    packed = lzw.compress(bytes(10_000))
    assert lzw.decompress(packed, 10_000) == bytes(10_000)
    with pytest.raises(DecodeError):
        lzw.decompress(packed, 9_999)


def test_missing_end_code_refused() -> None:
    packed = lzw.compress(b"hello world, hello world")
    for cut in range(len(packed)):
        with pytest.raises(DecodeError):
            lzw.decompress(packed[:cut])


def test_compress_below_gives_up_once_the_output_reaches_the_cap() -> None:
    rng = random.Random(7)
    for _ in range(300):
        data = rng.randbytes(rng.randrange(1, 400)) if rng.random() < 0.5 else \
            bytes(rng.choice(b"ab") for _ in range(rng.randrange(1, 4000)))
        full = lzw.compress(data)
        cap = rng.randrange(1, len(full) + 10)
        got = lzw.compress_below(data, cap)
        assert got == (full if len(full) < cap else None)
