"""Hypothesis round trips: decode(encode(m)) == m for every memberlist and Serf
message, through every wrapper (CRC, compound, compress, encryption)."""

from __future__ import annotations

import ipaddress
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swimlib.wire import codec, lzw, serf
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

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

u8 = st.integers(0, 2**8 - 1)
u16 = st.integers(0, 2**16 - 1)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
# Any Go string: valid text, or arbitrary bytes carried with surrogateescape.
names = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=40),
    st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape")),
)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).filter(
    lambda a: isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is None).map(str)
ips = st.one_of(ipv4, ipv6)
maybe_ip = st.one_of(st.just(""), ips)
payloads = st.binary(max_size=300)
vsn = st.binary(min_size=6, max_size=6)
meta = st.binary(max_size=codec.MAX_META_SIZE)

pings = st.builds(Ping, u32, names, maybe_ip, u16, names)
indirect = st.builds(IndirectPing, u32, maybe_ip, u16, names, st.booleans(), maybe_ip, u16,
                     names)
acks = st.builds(Ack, u32, payloads)
nacks = st.builds(Nack, u32)
suspects = st.builds(Suspect, u32, names, names)
deads = st.builds(Dead, u32, names, names)
alives = st.builds(Alive, u32, names, maybe_ip, u16, meta, vsn)
errs = st.builds(ErrResp, names)
user_msgs = st.builds(UserMsg, payloads)
messages = st.one_of(pings, indirect, acks, nacks, suspects, deads, alives, errs, user_msgs)
node_states = st.builds(PushNodeState, names, maybe_ip, u16, meta, u32, st.integers(0, 3), vsn)
push_pulls = st.builds(PushPull, st.booleans(), st.lists(node_states, max_size=6).map(tuple),
                       st.binary(max_size=2000))

# --------------------------------------------------------------------------- Serf

filters = st.one_of(
    st.builds(serf.NodeFilter, st.lists(names, max_size=4).map(tuple)),
    st.builds(serf.TagFilter, names, names),
    # Unknown filter types (>= 2) survive as raw bytes.
    st.builds(lambda t, rest: serf.UnknownFilter(bytes((t,)) + rest), st.integers(2, 255),
              st.binary(max_size=20)),
)
event_slots = st.one_of(st.none(), st.builds(
    serf.EventSlot, u64, st.lists(st.builds(serf.EventRecord, names, payloads),
                                  max_size=3).map(tuple)))
members = st.builds(serf.SerfMember, names, maybe_ip, u16,
                    st.dictionaries(names, names, max_size=4), i64, u8, u8, u8, u8, u8, u8)
serf_messages = st.one_of(
    st.builds(serf.JoinIntent, u64, names),
    st.builds(serf.LeaveIntent, u64, names, st.booleans()),
    st.builds(serf.SerfPushPull, u64, st.dictionaries(names, u64, max_size=5),
              st.lists(names, max_size=5).map(tuple), u64,
              st.lists(event_slots, max_size=20).map(tuple), u64),
    st.builds(serf.UserEvent, u64, names, payloads, st.booleans()),
    st.builds(serf.Query, u64, u32, maybe_ip, u16, names, names, payloads,
              st.lists(filters, max_size=4).map(tuple), u32, u8, i64),
    st.builds(serf.QueryResponse, u64, u32, names, u32, payloads),
    st.builds(serf.ConflictResponse, st.one_of(st.none(), members)),
    st.builds(serf.KeyRequest, st.binary(max_size=32)),
    st.builds(serf.KeyResponse, st.booleans(), names, st.lists(names, max_size=4).map(tuple),
              names),
    st.builds(serf.Relay, maybe_ip, u16, names, st.binary(min_size=1, max_size=100), names),
)


@SETTINGS
@given(messages)
def test_message_round_trip(msg: codec.Message) -> None:
    wire = codec.encode(msg)
    assert codec.decode_message(wire) == msg
    assert codec.decode_packet(wire) == [msg]
    assert codec.decode_packet(codec.add_crc(wire)) == [msg]
    assert codec.decode_packet(codec.encode_compress(wire)) == [msg]


@SETTINGS
@given(st.lists(messages, min_size=1, max_size=codec.MAX_COMPOUND_PARTS), st.booleans(),
       st.booleans())
def test_compound_round_trip(msgs: list[codec.Message], compress: bool, crc: bool) -> None:
    wire = codec.encode_compound([codec.encode(m) for m in msgs])
    if compress:
        wire = codec.maybe_compress(wire)
    if crc:
        wire = codec.add_crc(wire)
    if len(wire) <= codec.MAX_PACKET_SIZE:
        assert codec.decode_packet(wire) == msgs


@SETTINGS
@given(st.lists(messages, min_size=1, max_size=10), st.data())
def test_compound_truncation_keeps_whole_parts(msgs: list[codec.Message],
                                               data: st.DataObject) -> None:
    parts = [codec.encode(m) for m in msgs]
    wire = codec.encode_compound(parts)
    cut = data.draw(st.integers(2 + 2 * len(parts), len(wire)))
    got, truncated = codec.split_compound(wire[:cut])
    assert got == parts[:len(got)]
    assert truncated == (len(got) < len(parts))


@SETTINGS
@given(push_pulls, st.booleans())
def test_push_pull_round_trip(pp: PushPull, compress: bool) -> None:
    wire = codec.encode_stream(pp)
    assert codec.stream_message_length(wire) == len(wire)
    if compress:
        wire = codec.encode_compress(wire)
        assert codec.stream_message_length(wire) == len(wire)
    assert codec.decode_stream(wire) == pp


@SETTINGS
@given(push_pulls, st.lists(st.integers(1, 64), min_size=1))
def test_stream_framer_any_chunking(pp: PushPull, sizes: list[int]) -> None:
    wire = codec.encode_stream(pp)
    framer = codec.StreamFramer()
    pos, length, i = 0, None, 0
    while pos < len(wire) and length is None:
        step = sizes[i % len(sizes)]
        length = framer.feed(wire[pos:pos + step])
        pos += step
        i += 1
    assert length == len(wire)


@SETTINGS
@given(st.one_of(pings, acks, errs, user_msgs))
def test_other_stream_messages_round_trip(msg: codec.StreamMessage) -> None:
    wire = codec.encode_stream(msg)
    assert codec.decode_stream(wire) == msg
    assert codec.stream_message_length(wire) == len(wire)


@SETTINGS
@given(serf_messages)
def test_serf_round_trip(msg: serf.SerfMessage) -> None:
    wire = serf.encode_serf(msg)
    assert serf.decode_serf(wire) == msg
    [user] = codec.decode_packet(codec.encode(serf.serf_user_msg(msg)))
    assert user == UserMsg(wire)


@SETTINGS
@given(st.dictionaries(names, names, max_size=10))
def test_tags_round_trip(tags: dict[str, str]) -> None:
    try:
        meta = serf.encode_tags(tags)
    except ValueError:
        return  # over the 512-byte limit
    assert serf.decode_tags(meta) == tags


@SETTINGS
@given(st.binary(max_size=100).filter(lambda b: not b or b[0] != 0xFF))
def test_legacy_role_meta(meta: bytes) -> None:
    assert serf.decode_tags(meta) == {"role": meta.decode("utf-8", "surrogateescape")}


@SETTINGS
@given(st.one_of(st.binary(max_size=5000),
                 st.lists(st.sampled_from([b"a", b"b", b"ab", b"\x00"]), max_size=3000)
                 .map(b"".join)))
def test_lzw_round_trip(data: bytes) -> None:
    assert lzw.decompress(lzw.compress(data), max(len(data), 1)) == data


@SETTINGS
@given(st.binary(min_size=1, max_size=2000), st.sampled_from([16, 24, 32]),
       st.sampled_from([0, 1]), st.randoms(use_true_random=False), st.integers(0, 3))
def test_crypto_round_trip(plain: bytes, size: int, version: int, rng: random.Random,
                           position: int) -> None:
    keys = [rng.randbytes(size) for _ in range(4)]
    sender = Keyring([keys[position]], nonce_source=rng)
    receiver = Keyring(keys)
    assert receiver.decrypt_packet(sender.encrypt_packet(plain, version=version)) == plain
    frame = sender.encrypt_stream(plain, version=version)
    assert codec.stream_message_length(frame) == len(frame)
    assert receiver.decrypt_stream(frame) == plain
