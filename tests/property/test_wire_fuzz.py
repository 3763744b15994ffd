"""Decoding hostile bytes raises nothing but DecodeError, at every entry point.

Each entry point gets 10,000 examples drawn from random bytes and from valid
encodings (Go's own bytes and ours) mutated by bit flips, truncations,
insertions, deletions, interesting-byte overwrites and splices; for packets
the mutation also happens *inside* CRC/compress/compound wrappers so it reaches
the inner decoders. Whatever decodes must re-encode to something that decodes
to the same value (or be refused by the encoder as unsendable).
"""

from __future__ import annotations

import json
import pathlib
import random
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swimlib.cluster.coordinates import CoordinateClient, coordinate_problem, new_coordinate
from swimlib.errors import DecodeError
from swimlib.wire import codec, crypto, lzw, serf
from swimlib.wire.crypto import Keyring
from swimlib.wire.messages import (
    Ack,
    Alive,
    Dead,
    ErrResp,
    IndirectPing,
    Nack,
    Ping,
    PushNodeState,
    PushPull,
    Suspect,
    UserMsg,
)

pytestmark = pytest.mark.slow

FUZZ = settings(max_examples=10_000, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "wire"
GO = json.loads((DATA / "go_vectors.json").read_text())
KEYS = [bytes(range(16)), bytes(range(3, 27)), bytes(range(7, 39))]
RING = Keyring(KEYS, nonce_source=lambda n: bytes(range(n)))

# --------------------------------------------------------------------------- corpus

META = serf.encode_tags({"role": "web", "dc": "eu-1"})
MESSAGES: list[codec.Message] = [
    Ping(7, "goA", "127.0.0.1", 7950, "py1"), Ping(1, "n"),
    IndirectPing(300, "10.0.0.7", 7946, "b", True, "fd00::2", 7946, "a"),
    Ack(9), Ack(5, b"\x01coordinate"), Nack(4), Suspect(3, "x", "y"), Dead(7, "x", "x"),
    Alive(1, "goA", "127.0.0.1", 7946, META), Alive(2, "v6", "2001:db8::1", 1, b"web"),
    ErrResp("boom"), UserMsg(b"\x01" + b"\x82\xa5LTime\x03\xa4Node\xa3goB"),
]
SERF: list[serf.SerfMessage] = [
    serf.JoinIntent(3, "goB"), serf.LeaveIntent(9, "n1", True),
    serf.UserEvent(1, "deploy", b"v42", True),
    serf.Query(5, 77, "127.0.0.1", 7946, "goA", "ping", b"hi",
               (serf.NodeFilter(("a", "b")), serf.TagFilter("role", "^web$")), 3, 2, 3 * 10**9),
    serf.QueryResponse(5, 77, "goA", 1, b"resp"),
    serf.SerfPushPull(10, {"a": 3, "b": 4}, ("c",), 4,
                      (None, serf.EventSlot(2, (serf.EventRecord("e", b"p"),)), None), 7),
    serf.ConflictResponse(serf.SerfMember("n", "10.0.0.1", 7946, {"role": "web"}, 1,
                                          1, 5, 2, 2, 5, 5)),
    serf.ConflictResponse(None), serf.KeyRequest(bytes(32)), serf.KeyRequest(),
    serf.KeyResponse(True, "m", ("a", "b"), "a"),
    serf.relay_response("127.0.0.1", 7946, "goA", serf.QueryResponse(1, 2, "x")),
]
PUSH_PULL = PushPull(True, (
    PushNodeState("a", "127.0.0.1", 7946, META, 1, 0),
    PushNodeState("b", "fd00::2", 7947, b"", 9, 3),
), serf.encode_serf(SERF[5]))

MSG_BYTES = [codec.encode(m) for m in MESSAGES] + [codec.encode(serf.serf_user_msg(s))
                                                   for s in SERF]
MSG_BYTES += [bytes.fromhex(v) for k, v in GO["memberlist"].items()
              if k not in ("push_pull", "user_stream")]
PACKET_CORPUS = [
    *MSG_BYTES,
    codec.encode_compound(MSG_BYTES[:5]),
    codec.encode_compound(MSG_BYTES[5:12]),
    codec.add_crc(codec.encode_compound(MSG_BYTES[:3])),
    codec.encode_compress(codec.encode_compound(MSG_BYTES[:8])),
    codec.add_crc(codec.encode_compress(MSG_BYTES[8])),
    codec.encode_compound([codec.add_crc(MSG_BYTES[0]), codec.encode_compress(MSG_BYTES[1])]),
]
STREAM_CORPUS = [
    codec.encode_stream(PUSH_PULL), codec.encode_compress(codec.encode_stream(PUSH_PULL)),
    codec.encode_stream(PushPull(False, ())), codec.encode_stream(UserMsg(b"\x03user")),
    codec.encode_stream(Ping(1, "n")), codec.encode_stream(Ack(1)),
    codec.encode_stream(ErrResp("x")), bytes.fromhex(GO["memberlist"]["push_pull"]),
    bytes.fromhex(GO["memberlist"]["user_stream"]),
    RING.encrypt_stream(codec.encode_stream(Ping(1, "n"))),
]
SERF_CORPUS = [serf.encode_serf(s) for s in SERF] + [
    bytes.fromhex(v) for k, v in GO["serf"].items() if not k.startswith("tags")]
TAGS_CORPUS = [META, serf.encode_tags({}), b"web", b"", bytes.fromhex(GO["serf"]["tags_role_web"])]
LZW_CORPUS = [lzw.compress(b) for b in MSG_BYTES[:10]] + [
    lzw.compress(b"a" * 600), lzw.compress(bytes(range(256)) * 3), lzw.compress(b""),
    (DATA / "lzw" / "classic.lzw").read_bytes(), (DATA / "lzw" / "words_10k.lzw").read_bytes(),
]
CRYPTO_PACKETS = [RING.encrypt_packet(b, version=v) for b in MSG_BYTES[:6] for v in (0, 1)]
CRYPTO_STREAMS = [RING.encrypt_stream(b, version=v) for b in STREAM_CORPUS[:4] for v in (0, 1)]

INTERESTING = [0x00, 0x01, 0x7F, 0x80, 0xC0, 0xC2, 0xC3, 0xCC, 0xCD, 0xCE, 0xCF, 0xD0, 0xD9,
               0xDA, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0x90, 0x9F, 0xFF, 0x06, 0x07, 0x08, 0x09,
               0x0A, 0x0C]


@st.composite
def mutated(draw: st.DrawFn, corpus: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(corpus)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 6))
        at = draw(st.integers(0, len(data)))
        if op == 0 and data:  # bit flip
            i = min(at, len(data) - 1)
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == 1:  # truncate
            del data[at:]
        elif op == 2:  # insert random bytes
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == 3:  # delete a range
            del data[at:at + draw(st.integers(1, 16))]
        elif op == 4 and data:  # overwrite with an interesting byte
            data[min(at, len(data) - 1)] = draw(st.sampled_from(INTERESTING))
        elif op == 5:  # splice in a piece of another valid encoding
            other = draw(st.sampled_from(corpus))
            start = draw(st.integers(0, len(other)))
            data[at:at] = other[start:start + draw(st.integers(1, 64))]
        elif op == 6 and len(data) >= 4:  # overwrite a big-endian length-ish field
            i = min(at, len(data) - 4)
            data[i:i + 4] = struct.pack(">I", draw(st.sampled_from(
                [0, 1, 0x7F, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 20 * 1024 * 1024 + 1])))
    return bytes(data)


@st.composite
def wrapped(draw: st.DrawFn) -> bytes:
    """A mutated message inside valid wrappers, so the mutation reaches inner decoders."""
    inner = draw(mutated(MSG_BYTES)) or b"\x00"
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.integers(0, 2))
        if how == 0:
            inner = codec.add_crc(inner)
        elif how == 1:
            inner = codec.encode_compress(inner)
        elif len(inner) <= 0xFFFF:
            extra = draw(st.lists(st.sampled_from(MSG_BYTES), max_size=3))
            inner = codec.encode_compound([inner, *extra])
    return inner


def hostile(corpus: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=300), mutated(corpus), st.sampled_from(corpus))


def only_decode_errors(fn: Callable[[bytes], Any], data: bytes) -> Any:
    try:
        return fn(data)
    except DecodeError:
        return None


# --------------------------------------------------------------------------- entry points


@FUZZ
@given(st.one_of(hostile(PACKET_CORPUS), wrapped()))
def test_decode_packet(data: bytes) -> None:
    msgs = only_decode_errors(codec.decode_packet, data)
    for msg in msgs or ():
        try:
            again = codec.encode(msg)
        except ValueError:
            continue  # e.g. an empty Vsn: readable, but never sent
        assert codec.decode_message(again) == msg


@FUZZ
@given(hostile(MSG_BYTES))
def test_decode_message(data: bytes) -> None:
    only_decode_errors(codec.decode_message, data)


@FUZZ
@given(hostile(STREAM_CORPUS))
def test_decode_stream(data: bytes) -> None:
    msg = only_decode_errors(codec.decode_stream, data)
    if msg is not None:
        try:
            again = codec.encode_stream(msg)
        except ValueError:
            return
        assert codec.decode_stream(again) == msg


@FUZZ
@given(hostile(STREAM_CORPUS), st.integers(1, 50))
def test_stream_framing(data: bytes, chunk: int) -> None:
    whole = only_decode_errors(codec.stream_message_length, data)
    framer = codec.StreamFramer()
    try:
        for i in range(0, len(data), chunk):
            if framer.feed(data[i:i + chunk]) is not None:
                break
    except DecodeError:
        return
    if whole is not None:
        assert framer.length == whole
    only_decode_errors(crypto.stream_frame_length, data)


@FUZZ
@given(hostile(SERF_CORPUS))
def test_decode_serf(data: bytes) -> None:
    msg = only_decode_errors(serf.decode_serf, data)
    if msg is not None:
        assert serf.decode_serf(serf.encode_serf(msg)) == msg
    if data:
        only_decode_errors(serf.decode_filter, data)


@FUZZ
@given(hostile(TAGS_CORPUS + SERF_CORPUS[:3]))
def test_decode_tags(data: bytes) -> None:
    only_decode_errors(serf.decode_tags, data)


PING_CORPUS = [
    serf.encode_ping_payload(new_coordinate()),
    serf.encode_ping_payload(serf.Coordinate((1e-4, -2e-5, 0.0, 3.5, -1e300, 0.0, 7.0, -0.5),
                                             1.2, -3e-5, 2e-4)),
    b"\x01" + codec.pack({"Error": 1, "Vec": [0, 1, None]}),
]


@FUZZ
@given(hostile(PING_CORPUS))
def test_decode_ping_payload_and_update(data: bytes) -> None:
    """An ack payload decodes or is refused; a decoded one updates us or is refused,
    and our coordinate stays in its domain either way."""
    coord = only_decode_errors(serf.decode_ping_payload, data)
    if coord is None:
        return
    again = serf.encode_ping_payload(coord)
    assert serf.encode_ping_payload(serf.decode_ping_payload(again)) == again
    client = CoordinateClient(random.Random(0))
    assert client.update("peer", coord, 0.002) in (None, "coordinate_dimension",
                                                    "coordinate_invalid", "coordinate_domain",
                                                    "coordinate_diverged")
    assert coordinate_problem(client.coordinate) is None


@FUZZ
@given(hostile(CRYPTO_PACKETS))
def test_decrypt_packet(data: bytes) -> None:
    only_decode_errors(RING.decrypt_packet, data)


@FUZZ
@given(hostile(CRYPTO_STREAMS))
def test_decrypt_stream(data: bytes) -> None:
    only_decode_errors(RING.decrypt_stream, data)


@FUZZ
@given(hostile(LZW_CORPUS))
def test_lzw_decompress(data: bytes) -> None:
    only_decode_errors(lambda d: lzw.decompress(d, 1 << 20), data)
