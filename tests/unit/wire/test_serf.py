"""Serf messages: round trips, framing inside memberlist, filters, tags, refusals."""

from __future__ import annotations

import pytest

from swimlib.errors import DecodeError
from swimlib.wire import codec, serf
from swimlib.wire._mp import pack
from swimlib.wire.messages import UserMsg

SLOTS: list[serf.EventSlot | None] = [None] * serf.EVENT_BUFFER_SIZE
SLOTS[7] = serf.EventSlot(7, (serf.EventRecord("deploy", b"v1"), serf.EventRecord("noop")))

RESPONSE = serf.QueryResponse(12, 99, "web-1", payload=b"ok")
MESSAGES: list[serf.SerfMessage] = [
    serf.JoinIntent(1, "a"),
    serf.JoinIntent(2**64 - 1, "x" * 300),
    serf.LeaveIntent(5, "a"),
    serf.LeaveIntent(6, "a", prune=True),
    serf.SerfPushPull(3),
    serf.SerfPushPull(10, {"a": 3, "b": 9}, ("c", "d"), 7, tuple(SLOTS), 4),
    serf.UserEvent(1, "deploy"),
    serf.UserEvent(2, "deploy", b"\x00payload", cc=True),
    serf.Query(1, 2, "10.0.0.1", 7946, "src", "q"),
    serf.Query(1, 2**32 - 1, "fd00::1", 65535, "src", "q", b"body",
               (serf.NodeFilter(("a", "b")), serf.NodeFilter(()), serf.TagFilter("role", "web.*"),
                serf.UnknownFilter(b"\x07what")), 3, 255, 15_000_000_000),
    serf.Query(1, 2, "", 0, "", "no address"),
    serf.QueryResponse(1, 2, "me"),
    serf.QueryResponse(1, 2, "me", serf.QUERY_FLAG_ACK),
    RESPONSE,
    serf.ConflictResponse(None),
    serf.ConflictResponse(serf.SerfMember("n", "10.0.0.9", 7946, {"role": "db", "dc": "1"},
                                          serf.MemberStatus.FAILED, 1, 5, 2, 2, 5, 5)),
    serf.ConflictResponse(serf.SerfMember("n", "::1", 1)),
    serf.KeyRequest(),
    serf.KeyRequest(bytes(16)),
    serf.KeyResponse(False, "boom"),
    serf.KeyResponse(True, "", ("a==", "b=="), "a=="),
    serf.relay_response("10.0.0.1", 7946, "origin", RESPONSE),
    serf.Relay("fe80::1", 7946, "origin", b"\x05raw", dest_zone="eth0"),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: serf.SerfMessage) -> None:
    wire = serf.encode_serf(msg)
    assert wire[0] == serf._TYPE_OF[type(msg)]
    assert serf.decode_serf(wire) == msg


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_inside_memberlist_user_message(msg: serf.SerfMessage) -> None:
    datagram = codec.encode(serf.serf_user_msg(msg))
    assert datagram[0] == 8
    [user] = codec.decode_packet(codec.add_crc(datagram))
    assert isinstance(user, UserMsg)
    assert serf.decode_serf(user.payload) == msg


def test_push_pull_as_memberlist_user_state() -> None:
    from swimlib.wire.messages import PushNodeState, PushPull

    state = serf.encode_serf(serf.SerfPushPull(4, {"a": 1}, (), 2, (None,) * 512, 3))
    assert state[0] == 2
    pp = PushPull(True, (PushNodeState("a", "10.0.0.1", 7946, serf.encode_tags({}), 1, 0),),
                  state)
    back = codec.decode_stream(codec.encode_compress(codec.encode_stream(pp)))
    assert isinstance(back, PushPull)
    assert serf.decode_serf(back.user_state) == serf.decode_serf(state)


def test_query_flags() -> None:
    q = serf.Query(1, 2, "", 0, "", "q", flags=3)
    assert q.ack and q.no_broadcast
    assert not serf.Query(1, 2, "", 0, "", "q").ack
    assert serf.QueryResponse(1, 2, "x", 1).ack


def test_nested_payloads_in_queries() -> None:
    req = serf.Query(1, 2, "10.0.0.1", 1, "a", "_serf_install-key",
                     serf.encode_serf(serf.KeyRequest(bytes(32))))
    decoded = serf.decode_serf(serf.encode_serf(req))
    assert isinstance(decoded, serf.Query)
    assert serf.decode_serf(decoded.payload) == serf.KeyRequest(bytes(32))
    conflict = serf.QueryResponse(1, 2, "b", payload=serf.encode_serf(serf.ConflictResponse(None)))
    assert conflict.payload == b"\x06\xc0"


# --------------------------------------------------------------------------- filters


def test_empty_filter_refused_both_ways() -> None:
    with pytest.raises(ValueError):
        serf.encode_serf(serf.Query(1, 2, "", 0, "", "q", filters=(serf.UnknownFilter(b""),)))
    body = pack({"Filters": [b"\x00" + pack([b"a"]), b""], "Name": b"q"})
    with pytest.raises(DecodeError) as info:
        serf.decode_serf(b"\x04" + body)
    assert info.value.reason == "filter"


@pytest.mark.parametrize(("data", "expected"), [
    (b"\x00" + pack([b"a", b"b"]), serf.NodeFilter(("a", "b"))),
    (b"\x00\xc0", serf.NodeFilter(())),
    (b"\x01" + pack({"Tag": b"role", "Expr": b"^w"}), serf.TagFilter("role", "^w")),
    (b"\x01" + pack({}), serf.TagFilter("", "")),
    (b"\x00\x05", serf.UnknownFilter(b"\x00\x05")),  # undecodable: Go skips the query
    (b"\x00", serf.UnknownFilter(b"\x00")),
    (b"\x01" + pack([1]), serf.UnknownFilter(b"\x01" + pack([1]))),
    (b"\x02" + pack([b"a"]), serf.UnknownFilter(b"\x02" + pack([b"a"]))),
])
def test_decode_filter(data: bytes, expected: serf.Filter) -> None:
    assert serf.decode_filter(data) == expected


# --------------------------------------------------------------------------- tags


def test_tags_round_trip_and_sorted() -> None:
    tags = {"role": "web", "dc": "eu", "zz": ""}
    meta = serf.encode_tags(tags)
    assert meta[0] == 0xFF
    assert meta == b"\xff" + pack({b"dc": b"eu", b"role": b"web", b"zz": b""})
    assert serf.decode_tags(meta) == tags
    assert serf.encode_tags({}) == b"\xff\x80"


@pytest.mark.parametrize(("meta", "tags"), [
    (b"", {"role": ""}),
    (b"web", {"role": "web"}),
    (b"\xfe\x80", {"role": "\udcfe\udc80"}),
    (b"\xff\xc0", {}),
    (b"\xff\x81\xa1a\xa1b trailing", {"a": "b"}),
])
def test_decode_tags_compat(meta: bytes, tags: dict[str, str]) -> None:
    assert serf.decode_tags(meta) == tags


@pytest.mark.parametrize("meta", [b"\xff", b"\xff\x01", b"\xff\x81\xa1a\x01", b"\xff\x91\xa1a"])
def test_decode_tags_refusals(meta: bytes) -> None:
    with pytest.raises(DecodeError):
        serf.decode_tags(meta)


def test_tags_size_limit() -> None:
    serf.encode_tags({"k": "v" * 400})
    with pytest.raises(ValueError):
        serf.encode_tags({"k": "v" * 600})


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("data", "why"), [
    (b"", "empty"),
    (b"\x0a\x80", "serf-type"),
    (b"\xff", "serf-type"),
    (b"\x01", "msgpack"),
    (b"\x01\x93\x01\x02\x03", "schema"),
    (b"\x01" + pack({"LTime": -1}), "schema"),
    (b"\x03" + pack({"CC": 1}), "schema"),
    (b"\x04" + pack({"Filters": b"x"}), "schema"),
    (b"\x04" + pack({"Filters": [1]}), "schema"),
    (b"\x04" + pack({"RelayFactor": 256}), "schema"),
    (b"\x04" + pack({"Addr": b"\x01\x02"}), "addr"),
    (b"\x02" + pack({"StatusLTimes": [1]}), "schema"),
    (b"\x02" + pack({"StatusLTimes": {b"a": -1}}), "schema"),
    (b"\x02" + pack({"Events": [1]}), "schema"),
    (b"\x02" + pack({"Events": [{"Events": [5]}]}), "schema"),
    (b"\x02" + pack({"LeftMembers": [1]}), "schema"),
    (b"\x06\x01", "schema"),
    (b"\x06" + pack({"Tags": {b"a": 1}}), "schema"),
    (b"\x08" + pack({"Keys": [1]}), "schema"),
    (b"\x09", "truncated"),
    (b"\x09" + pack({"DestName": b"x"}), "relay"),
    (b"\x09" + pack({"DestAddr": 5}) + b"\x05", "schema"),
    (b"\x09" + pack({"DestAddr": {"Port": 70000}}) + b"\x05", "schema"),
])
def test_refusals(data: bytes, why: str) -> None:
    with pytest.raises(DecodeError) as info:
        serf.decode_serf(data)
    assert info.value.reason == why


@pytest.mark.parametrize("msg", [
    serf.JoinIntent(-1, "a"),
    serf.Query(1, 2**32, "", 0, "", "q"),
    serf.Query(1, 1, "", 0, "", "q", relay_factor=256),
    serf.Query(1, 1, "", 0, "", "q", timeout_ns=2**63),
    serf.Relay("10.0.0.1", 1, "x", b""),
    serf.SerfPushPull(1, {"a": -1}),
])
def test_encoder_refusals(msg: serf.SerfMessage) -> None:
    with pytest.raises(ValueError):
        serf.encode_serf(msg)


# --------------------------------------------------------------------------- coordinates

#: The ack payload of a ``serf agent`` (0.8.2) that had just started: the origin,
#: error 1.5, height 10e-6. Live capture.
FRESH_SERF_ACK_PAYLOAD = bytes.fromhex(
    "0184aa41646a7573746d656e74cb0000000000000000a54572726f72cb3ff8000000000000a648656967"
    "6874cb3ee4f8b588e368f1a356656398" + "cb0000000000000000" * 8)


def test_fresh_coordinate_is_serfs_byte_for_byte() -> None:
    from swimlib.cluster.coordinates import new_coordinate

    assert serf.encode_ping_payload(new_coordinate()) == FRESH_SERF_ACK_PAYLOAD
    assert serf.decode_ping_payload(FRESH_SERF_ACK_PAYLOAD) == new_coordinate()
    assert len(FRESH_SERF_ACK_PAYLOAD) == 130


def test_coordinate_decoding_is_lenient_like_go() -> None:
    # Missing keys are zero, unknown keys skipped, integers and nil taken as numbers.
    data = b"\x01" + pack({"Vec": [1, None, 2.5], "Extra": b"x", "Height": 3})
    assert serf.decode_ping_payload(data) == serf.Coordinate((1.0, 0.0, 2.5), 0.0, 0.0, 3.0)


@pytest.mark.parametrize(("data", "why"), [
    (b"", "empty"),
    (b"\x00" + pack({"Vec": None}), "ping_version"),
    (b"\x01", "msgpack"),
    (b"\x01\xc1", "msgpack"),
    (b"\x01\x93\x01\x02\x03", "schema"),
    (b"\x01" + pack({"Vec": b"raw"}), "schema"),
    (b"\x01" + pack({"Vec": [True]}), "schema"),
    (b"\x01" + pack({"Error": "1.5"}), "schema"),
    (b"\x01" + pack({"Vec": [0.0] * (serf.MAX_COORDINATE_DIMENSIONS + 1)}), "schema"),
])
def test_ping_payload_refusals(data: bytes, why: str) -> None:
    with pytest.raises(DecodeError) as info:
        serf.decode_ping_payload(data)
    assert info.value.reason == why
