"""memberlist codec: CRC, compound, compress, push-pull, streams, addresses, and
the inputs that crash Go peers (refused on decode, impossible to encode)."""

from __future__ import annotations

import struct
import zlib

import pytest

from swimlib.errors import DecodeError
from swimlib.wire import codec, lzw
from swimlib.wire._mp import pack
from swimlib.wire.messages import (
    DEFAULT_VSN,
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

PING = Ping(1, "b", "10.0.0.1", 7946, "a")
ALIVE = Alive(3, "a", "10.0.0.1", 7946, b"\xff\x80")


def reason(data: bytes, fn: object = codec.decode_packet) -> str:
    with pytest.raises(DecodeError) as info:
        fn(data)  # type: ignore[operator]
    return info.value.reason


# --------------------------------------------------------------------------- messages


@pytest.mark.parametrize("msg", [
    PING, Ping(0, ""), IndirectPing(5, "10.0.0.2", 7946, "c", True),
    IndirectPing(5, "::1", 1, "c", False, "::2", 2, "d"), Ack(7), Ack(7, b"\x01\x02"),
    Nack(9), Suspect(1, "x", "y"), Dead(1, "x", "x"), ALIVE, ErrResp("nope"),
    UserMsg(b"\x01serf"), UserMsg(b""),
])
def test_message_round_trip(msg: codec.Message) -> None:
    assert codec.decode_packet(codec.encode(msg)) == [msg]
    assert codec.decode_message(codec.encode(msg)) == msg


def test_decoder_tolerates_missing_unknown_and_reordered_keys() -> None:
    body = pack({"Zzz": [1, 2], "SeqNo": 4})
    assert codec.decode_message(b"\x00" + body) == Ping(4, "")
    body = pack({"Payload": b"", "SeqNo": 1})
    assert codec.decode_message(b"\x02" + body) == Ack(1)


def test_decoder_accepts_str8_bin_and_byte_arrays() -> None:
    import msgpack

    body = msgpack.packb({"SeqNo": 1, "Node": "x" * 40, "SourceAddr": bytes([127, 0, 0, 1])},
                         use_bin_type=True)  # str8 + bin, which Go never sends
    assert codec.decode_message(b"\x00" + body) == Ping(1, "x" * 40, "127.0.0.1")
    alive = pack({"Incarnation": 1, "Node": b"n", "Addr": [10, 0, 0, 1], "Port": 1,
                  "Vsn": list(DEFAULT_VSN)})
    assert codec.decode_message(b"\x04" + alive) == Alive(1, "n", "10.0.0.1", 1)


def test_non_utf8_names_round_trip() -> None:
    raw = b"node-\xff\xfe"
    msg = codec.decode_message(b"\x05" + pack({"Node": raw, "From": raw, "Incarnation": 1}))
    assert isinstance(msg, Dead)
    assert codec.encode(msg) == b"\x05" + pack({"From": raw, "Incarnation": 1, "Node": raw})


@pytest.mark.parametrize(("body", "why"), [
    ({"SeqNo": -1}, "schema"),
    ({"SeqNo": 1 << 32}, "schema"),
    ({"SeqNo": "1"}, "schema"),
    ({"SeqNo": True}, "schema"),
    ({"SeqNo": 1.0}, "schema"),
    ({"Node": 5}, "schema"),
    ({"SourceAddr": b"\x01\x02\x03"}, "addr"),
    ({"SourcePort": 70000}, "schema"),
])
def test_bad_field_types(body: dict[str, object], why: str) -> None:
    assert reason(b"\x00" + pack(body)) == why


def test_unknown_type_and_non_map_body() -> None:
    assert reason(b"\x63") == "type"
    assert reason(b"\x00\x93\x01\x02\x03") == "schema"
    assert reason(b"\x00") == "msgpack"
    assert reason(b"") == "empty"


# --------------------------------------------------------------------------- Go crash inputs


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7])
def test_alive_vsn_of_wrong_length_refused(n: int) -> None:
    body = pack({"Incarnation": 1, "Node": b"n", "Vsn": bytes(n)})
    assert reason(b"\x04" + body) == "vsn"
    with pytest.raises(ValueError):
        codec.encode(Alive(1, "n", "10.0.0.1", 1, vsn=bytes(n)))


def test_empty_vsn_is_read_but_never_sent() -> None:
    body = pack({"Incarnation": 1, "Node": b"n"})
    assert codec.decode_message(b"\x04" + body) == Alive(1, "n", "", 0, b"", b"")
    with pytest.raises(ValueError):
        codec.encode(Alive(1, "n", "10.0.0.1", 1, vsn=b""))
    with pytest.raises(ValueError):
        codec.encode_push_pull(PushPull(False, (PushNodeState("n", "", 0, b"", 1, 0, b""),)))


def test_push_node_state_short_vsn_refused_both_ways() -> None:
    with pytest.raises(ValueError):
        codec.encode_push_pull(PushPull(False, (PushNodeState("n", "", 0, b"", 1, 0, b"\x01"),)))
    node = pack({"Name": b"n", "Vsn": b"\x01\x02"})
    data = b"\x06" + pack({"Nodes": 1, "UserStateLen": 0, "Join": False}) + node
    assert reason(data, codec.decode_stream) == "vsn"


def test_meta_limit() -> None:
    with pytest.raises(ValueError):
        codec.encode(Alive(1, "n", "10.0.0.1", 1, b"x" * 513))
    codec.encode(Alive(1, "n", "10.0.0.1", 1, b"x" * 512))
    assert reason(b"\x04" + pack({"Meta": b"x" * 513})) == "meta"


@pytest.mark.parametrize(("msg", "field"), [
    (Ping(1 << 32, "n"), "SeqNo"),
    (Alive(-1, "n", "10.0.0.1", 1), "Incarnation"),
    (Alive(1, "n", "10.0.0.1", 65536), "Port"),
    (IndirectPing(1, "10.0.0.1", 1, "n", source_port=70000), "SourcePort"),
])
def test_encoder_range_checks(msg: codec.Message, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        codec.encode(msg)


# --------------------------------------------------------------------------- CRC


def test_crc_round_trip_and_mismatch() -> None:
    body = codec.encode(PING)
    packet = codec.add_crc(body)
    assert packet[:5] == b"\x0c" + struct.pack(">I", zlib.crc32(body))
    assert codec.decode_packet(packet) == [PING]
    corrupt = bytearray(packet)
    corrupt[-1] ^= 1
    assert reason(bytes(corrupt)) == "crc"
    assert reason(b"\x0c\x00\x00") == "crc"


def test_crc_around_compound_and_compress() -> None:
    inner = codec.maybe_compress(codec.encode_compound([codec.encode(PING)] * 20))
    assert inner[0] == 9
    assert codec.decode_packet(codec.add_crc(inner)) == [PING] * 20


# --------------------------------------------------------------------------- compound


def test_compound_round_trip() -> None:
    parts = [codec.encode(PING), codec.encode(ALIVE), codec.encode(Nack(3))]
    packet = codec.encode_compound(parts)
    assert packet[:2] == b"\x07\x03"
    assert codec.split_compound(packet) == (parts, False)
    assert codec.decode_packet(packet) == [PING, ALIVE, Nack(3)]


def test_compound_truncated_tail_is_dropped() -> None:
    parts = [codec.encode(PING), codec.encode(ALIVE), codec.encode(Nack(3))]
    packet = codec.encode_compound(parts)
    cut = packet[:-2]
    assert codec.split_compound(cut) == (parts[:2], True)
    assert codec.decode_packet(cut) == [PING, ALIVE]
    # Even everything truncated is not an error, just nothing.
    header_only = packet[:2 + 2 * 3]
    assert codec.decode_packet(header_only) == []


def test_compound_127_ok_128_refused() -> None:
    part = codec.encode(Nack(1))
    assert len(codec.decode_packet(codec.encode_compound([part] * 127))) == 127
    with pytest.raises(ValueError):
        codec.encode_compound([part] * 128)
    forged = b"\x07\x80" + struct.pack(">128H", *[len(part)] * 128) + part * 128
    assert reason(forged) == "compound"
    for n in (128, 130, 255):
        assert reason(b"\x07" + bytes((n,)) + bytes(2 * n)) == "compound"


def test_compound_empty_part_refused_both_ways() -> None:
    with pytest.raises(ValueError):
        codec.encode_compound([codec.encode(PING), b""])
    forged = b"\x07\x02" + struct.pack(">HH", 0, 3) + codec.encode(Nack(1))
    assert reason(forged) == "compound"


@pytest.mark.parametrize("data", [b"\x07", b"\x07\x00", b"\x07\x02\x00"])
def test_compound_malformed_headers(data: bytes) -> None:
    assert reason(data) == "compound"


def test_compound_too_deep_refused() -> None:
    data = codec.encode(PING)
    for _ in range(codec.MAX_NESTING + 1):
        data = codec.encode_compound([data])
    assert reason(data) == "nesting"


# --------------------------------------------------------------------------- compress


def test_compress_round_trip_and_policy() -> None:
    big = codec.encode(Ack(1, b"a" * 500))
    packed = codec.maybe_compress(big)
    assert packed[0] == 9 and len(packed) < len(big)
    assert codec.decode_packet(packed) == [Ack(1, b"a" * 500)]
    small = codec.encode(Nack(1))
    assert codec.maybe_compress(small) == small  # only when it helps


def test_compress_refuses_empty_both_ways() -> None:
    with pytest.raises(ValueError):
        codec.encode_compress(b"")
    assert codec.maybe_compress(b"") == b""
    forged = b"\x09" + pack({"Algo": 0, "Buf": lzw.compress(b"")})
    assert reason(forged) == "compress"


def test_compress_bad_algo_buf_and_lzw() -> None:
    buf = lzw.compress(codec.encode(PING))
    assert reason(b"\x09" + pack({"Algo": 1, "Buf": buf})) == "compress"
    assert reason(b"\x09" + pack({"Algo": 0, "Buf": 5})) == "compress"
    assert reason(b"\x09" + pack({"Algo": 0})) == "compress"
    assert reason(b"\x09" + pack({"Algo": 0, "Buf": buf[:-2]})) == "lzw"  # no end code


def test_compress_bomb_refused() -> None:
    bomb = codec.encode_compress(b"\x08" + bytes(codec.MAX_INFLATED_PACKET + 1))
    assert len(bomb) < 10_000
    assert reason(bomb) == "lzw"


def test_oversized_datagram_refused() -> None:
    assert reason(codec.encode(UserMsg(bytes(codec.MAX_PACKET_SIZE)))) == "size"


# --------------------------------------------------------------------------- push-pull and streams

NODES = (
    PushNodeState("a", "10.0.0.1", 7946, b"\xff\x80", 1, 0),
    PushNodeState("b", "fd00::2", 7946, b"", 5, 1),
    PushNodeState("c", "10.0.0.3", 7946, b"", 2, 2),
    PushNodeState("d", "10.0.0.4", 7946, b"", 9, 3),
)


@pytest.mark.parametrize("user_state", [b"", b"\x02serf state", bytes(range(256)) * 100])
def test_push_pull_round_trip(user_state: bytes) -> None:
    pp = PushPull(True, NODES, user_state)
    wire = codec.encode_stream(pp)
    assert codec.decode_stream(wire) == pp
    assert codec.decode_stream(codec.encode_compress(wire)) == pp
    assert codec.stream_message_length(wire) == len(wire)
    assert codec.decode_stream(wire + b"trailing") == pp


def test_push_pull_lying_counts_refused() -> None:
    def stream(header: dict[str, object], rest: bytes = b"") -> bytes:
        return b"\x06" + pack(header) + rest

    assert reason(stream({"Nodes": -1, "UserStateLen": 0}), codec.decode_stream) == "length"
    assert reason(stream({"Nodes": 0, "UserStateLen": -5}), codec.decode_stream) == "length"
    assert reason(stream({"Nodes": 1 << 40, "UserStateLen": 0}), codec.decode_stream) == "length"
    assert reason(stream({"Nodes": 0, "UserStateLen": 1 << 31}), codec.decode_stream) == "length"
    assert reason(stream({"Nodes": 3, "UserStateLen": 0}), codec.decode_stream) == "truncated"
    assert reason(stream({"Nodes": 0, "UserStateLen": 4}, b"ab"),
                  codec.decode_stream) == "truncated"
    assert reason(stream({"Nodes": 1, "UserStateLen": 0}, pack({"State": 4})),
                  codec.decode_stream) == "schema"
    for huge in (codec.MAX_STREAM_SIZE + 1, -1):
        with pytest.raises(DecodeError):
            codec.stream_message_length(stream({"Nodes": 0, "UserStateLen": huge}))


def test_stream_user_message() -> None:
    wire = codec.encode_stream(UserMsg(b"hello"))
    assert codec.decode_stream(wire) == UserMsg(b"hello")
    assert codec.stream_message_length(wire) == len(wire)
    assert codec.stream_message_length(wire[:-1]) == len(wire)  # known before it all arrived
    lying = b"\x08" + pack({"UserMsgLen": 1 << 40})
    assert reason(lying, codec.decode_stream) == "length"
    with pytest.raises(DecodeError):
        codec.stream_message_length(lying)
    assert reason(b"\x08" + pack({"UserMsgLen": 9}) + b"abc", codec.decode_stream) == "truncated"


@pytest.mark.parametrize("msg", [Ping(1, "n", "10.0.0.1", 5, "m"), Ack(1), ErrResp("x")])
def test_stream_ping_ack_err(msg: codec.StreamMessage) -> None:
    wire = codec.encode_stream(msg)
    assert codec.decode_stream(wire) == msg
    assert codec.stream_message_length(wire) == len(wire)


def test_stream_refusals() -> None:
    assert reason(b"", codec.decode_stream) == "empty"
    assert reason(b"\x04" + codec.encode(ALIVE)[1:], codec.decode_stream) == "type"
    assert reason(b"\x0a\x00\x00\x00\x20", codec.decode_stream) == "encrypted"
    twice = codec.encode_compress(codec.encode_compress(codec.encode_stream(Ack(1))))
    assert reason(twice, codec.decode_stream) == "nesting"
    with pytest.raises(DecodeError):
        codec.stream_message_length(b"\x04\x80")


def test_stream_framer_byte_by_byte() -> None:
    wire = codec.encode_stream(PushPull(False, NODES, b"\x02" + bytes(50)))
    framer = codec.StreamFramer()
    results = [framer.feed(wire[i:i + 1]) for i in range(len(wire))]
    first = next(i for i, r in enumerate(results) if r is not None)
    assert results[first] == len(wire)
    assert first == len(wire) - 52  # known as soon as the last node state arrived
    assert framer.length == len(wire)
    assert all(r is None for r in results[:first])


def test_stream_framer_encrypted_and_limits() -> None:
    framer = codec.StreamFramer()
    assert framer.feed(b"\x0a\x00\x00") is None
    assert framer.feed(b"\x01\x00") == 5 + 256
    with pytest.raises(DecodeError):
        codec.StreamFramer().feed(b"\x0a\x7f\xff\xff\xff")
    small = codec.StreamFramer(limit=100)
    with pytest.raises(DecodeError):
        small.feed(codec.encode_stream(UserMsg(bytes(200))))
    assert codec.stream_message_length(b"") is None


# --------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(("text", "raw"), [
    ("127.0.0.1", bytes([127, 0, 0, 1])),
    ("10.1.2.3", bytes([10, 1, 2, 3])),
    ("::1", bytes(15) + b"\x01"),
    ("fd00::2", b"\xfd" + bytes(14) + b"\x02"),
    ("", b""),
])
def test_ip_round_trip(text: str, raw: bytes) -> None:
    assert codec.ip_to_bytes(text) == raw
    assert codec.ip_from_bytes(raw) == text


def test_v4_mapped_addresses_are_unmapped() -> None:
    mapped = bytes(10) + b"\xff\xff" + bytes([192, 168, 1, 9])
    assert codec.ip_from_bytes(mapped) == "192.168.1.9"
    body = pack({"Incarnation": 1, "Node": b"n", "Addr": mapped, "Port": 1,
                 "Vsn": DEFAULT_VSN})
    [alive] = codec.decode_packet(b"\x04" + body)
    assert isinstance(alive, Alive) and alive.addr == "192.168.1.9"
    assert codec.encode(alive) == b"\x04" + pack({
        "Addr": bytes([192, 168, 1, 9]), "Incarnation": 1, "Meta": None, "Node": b"n",
        "Port": 1, "Vsn": DEFAULT_VSN})


@pytest.mark.parametrize("text", ["localhost", "1.2.3", "fe80::1%eth0", "::g"])
def test_bad_ip_text_refused(text: str) -> None:
    with pytest.raises(ValueError):
        codec.ip_to_bytes(text)


@pytest.mark.parametrize("n", [1, 3, 5, 15, 17])
def test_bad_ip_lengths_refused(n: int) -> None:
    with pytest.raises(DecodeError):
        codec.ip_from_bytes(bytes(n))


def test_push_pull_node_count_capped_as_memberlist():
    header = codec.pack({"Join": False, "Nodes": codec.MAX_PUSH_NODES + 1, "UserStateLen": 0})
    data = b"\x06" + header + b"\xc0" * (codec.MAX_PUSH_NODES + 2)
    with pytest.raises(DecodeError) as info:
        codec.StreamFramer().feed(data)
    assert info.value.reason == "length"
    with pytest.raises(DecodeError) as info:
        codec.decode_stream(data)
    assert info.value.reason == "length"
