"""Serf RPC codec: Go's bytes, Go's field names, Go's lenient decoding, garbage."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swimlib.cluster.events import ClusterMember, MemberStatus
from swimlib.errors import DecodeError
from swimlib.rpc import protocol as p
from swimlib.rpc.server import wire_member

# Encoded by hashicorp/go-msgpack with the agent's handle
# (MsgpackHandle{RawToString: true, WriteExt: true}) from structs with the
# field names of client/const.go; go 1.19, GOPATH=/usr/share/gocode.
GO_VECTORS = {
    # requestHeader{Command: "members-filtered", Seq: 300}
    "header": "82a7436f6d6d616e64b06d656d626572732d66696c7465726564a3536571cd012c",
    # responseHeader{Seq: 1}
    "response": "82a54572726f72a0a353657101",
    # eventRequest{Name: 40 x "x" (a str8), Payload: "v42", Coalesce: true}
    "event": "83a8436f616c65736365c3a44e616d65d928" + "78" * 40 + "a75061796c6f6164c403763432",
    # queryRequest{FilterTags: {}, RequestAck: true, Timeout: time.Second,
    #              Name: "ping", Payload: "hi"} (FilterNodes nil)
    "query": "87ab46696c7465724e6f646573c0aa46696c7465725461677380a44e616d65a470696e67a7"
    "5061796c6f6164c4026869ab52656c6179466163746f7200aa5265717565737441636bc3a754696d656f"
    "7574ce3b9aca00",
    # membersResponse{Members: [{n0 127.0.0.1:7946 role=web alive 1/5/2 2/5/5}]}
    "members": "81a74d656d62657273918ba441646472c4047f000001ab44656c656761746543757205ab4465"
    "6c65676174654d617805ab44656c65676174654d696e02a44e616d65a26e30a4506f7274cd1f0aab5072"
    "6f746f636f6c43757202ab50726f746f636f6c4d617805ab50726f746f636f6c4d696e01a65374617475"
    "73a5616c697665a45461677381a4726f6c65a3776562",
}


def _hex(*objs: object) -> str:
    return p.encode(*objs).hex()


def test_headers_are_byte_identical_to_go():
    assert _hex(p.RequestHeader("members-filtered", 300).to_wire()) == GO_VECTORS["header"]
    assert _hex(p.ResponseHeader(1).to_wire()) == GO_VECTORS["response"]


def test_bodies_are_byte_identical_to_go():
    assert _hex(p.EventRequest("x" * 40, b"v42", True).to_wire()) == GO_VECTORS["event"]
    query = p.QueryRequest(name="ping", payload=b"hi", request_ack=True, timeout_ns=10**9)
    assert _hex(query.to_wire()) == GO_VECTORS["query"]
    member = ClusterMember("n0", "127.0.0.1", 7946, {"role": "web"})
    assert _hex(p.MembersResponse([wire_member(member)]).to_wire()) == GO_VECTORS["members"]


def test_go_vectors_decode_to_the_same_values():
    def obj(name: str) -> object:
        return msgpack.unpackb(bytes.fromhex(GO_VECTORS[name]), raw=False)

    assert p.RequestHeader.from_wire(obj("header")) == p.RequestHeader("members-filtered", 300)
    assert p.EventRequest.from_wire(obj("event")) == p.EventRequest("x" * 40, b"v42", True)
    query = p.QueryRequest.from_wire(obj("query"))
    assert (query.name, query.payload, query.timeout_ns, query.filter_nodes) == (
        "ping", b"hi", 10**9, [])
    (m,) = p.MembersResponse.from_wire(obj("members")).members
    assert (m.name, m.addr, m.port, m.tags, m.address) == (
        "n0", b"\x7f\x00\x00\x01", 7946, {"role": "web"}, "127.0.0.1:7946")


def test_strings_use_str8_and_bytes_use_bin():
    wire = p.encode(p.LogRecord("y" * 200).to_wire())
    assert b"\xd9\xc8" in wire  # str8, which the gossip dialect never sends
    assert p.encode(b"\x00\x01")[:2] == b"\xc4\x02"


@pytest.mark.parametrize(
    ("cls", "go_names"),
    [
        (p.HandshakeRequest, ["Version"]),
        (p.AuthRequest, ["AuthKey"]),
        (p.EventRequest, ["Coalesce", "Name", "Payload"]),
        (p.ForceLeaveRequest, ["Node", "Prune"]),
        (p.JoinRequest, ["Existing", "Replay"]),
        (p.JoinResponse, ["Num"]),
        (p.MembersFilteredRequest, ["Name", "Status", "Tags"]),
        (p.TagsRequest, ["DeleteTags", "Tags"]),
        (p.KeyRequest, ["Key"]),
        (p.KeyResponse, ["Keys", "Messages", "NumErr", "NumNodes", "NumResp"]),
        (p.QueryRequest, ["FilterNodes", "FilterTags", "Name", "Payload", "RelayFactor",
                          "RequestAck", "Timeout"]),
        (p.QueryRecord, ["From", "Payload", "Type"]),
        (p.RespondRequest, ["ID", "Payload"]),
        (p.StreamRequest, ["Type"]),
        (p.MonitorRequest, ["LogLevel"]),
        (p.LogRecord, ["Log"]),
        (p.StopRequest, ["Stop"]),
        (p.UserEventRecord, ["Coalesce", "Event", "LTime", "Name", "Payload"]),
        (p.QueryEventRecord, ["Event", "ID", "LTime", "Name", "Payload"]),
        (p.MemberEventRecord, ["Event", "Members"]),
        (p.WireMember, ["Addr", "DelegateCur", "DelegateMax", "DelegateMin", "Name", "Port",
                        "ProtocolCur", "ProtocolMax", "ProtocolMin", "Status", "Tags"]),
        (p.CoordinateRequest, ["Node"]),
        (p.CoordinateResponse, ["Coord", "Ok"]),
    ],
)
def test_go_field_names_in_go_order(cls, go_names):
    empty = cls.from_wire({})
    assert list(empty.to_wire()) == go_names


def test_every_command_has_a_body_rule():
    assert set(p.REQUEST_BODIES) == set(p.Command)
    assert {c for c, body in p.REQUEST_BODIES.items() if body is None} == p.BODYLESS_REQUESTS


def test_decoding_is_lenient_like_go():
    # missing keys are zero values, unknown keys skipped, nil is zero
    req = p.QueryRequest.from_wire({"Name": "q", "Extra": [1, 2], "Payload": None})
    assert req == p.QueryRequest(name="q")
    # older clients send []byte as str, and strings as bin
    assert p.EventRequest.from_wire({"Name": b"deploy", "Payload": "v1"}) == p.EventRequest(
        "deploy", b"v1")
    assert p.RequestHeader.from_wire(None) == p.RequestHeader("", 0)


@pytest.mark.parametrize(
    ("cls", "obj"),
    [
        (p.RequestHeader, [1, 2]),
        (p.RequestHeader, {"Command": 5}),
        (p.RequestHeader, {"Seq": -1}),
        (p.RequestHeader, {"Seq": "1"}),
        (p.HandshakeRequest, {"Version": 1 << 40}),
        (p.EventRequest, {"Coalesce": 1}),
        (p.QueryRequest, {"RelayFactor": 256}),
        (p.QueryRequest, {"FilterTags": ["a"]}),
        (p.JoinRequest, {"Existing": "host"}),
        (p.TagsRequest, {"Tags": {"k": 1}}),
        (p.MembersResponse, {"Members": [{"Port": 70000}]}),
    ],
)
def test_wrong_types_are_protocol_errors(cls, obj):
    with pytest.raises(p.ProtocolError):
        cls.from_wire(obj)


def test_reader_reassembles_split_objects():
    data = p.encode({"Command": "handshake", "Seq": 1}, {"Version": 1})
    reader = p.ObjectReader()
    seen = []
    for i in range(len(data)):
        reader.feed(data[i : i + 1])
        while (obj := reader.next_object()) is not p.NEED_DATA:
            seen.append(obj)
    assert seen == [{"Command": "handshake", "Seq": 1}, {"Version": 1}]


def test_reader_rejects_garbage_and_oversized_input():
    reader = p.ObjectReader()
    reader.feed(b"\xc1garbage")  # 0xc1 is never used by msgpack
    with pytest.raises(p.ProtocolError):
        reader.next_object()
    small = p.ObjectReader(max_buffer=1024)
    with pytest.raises(p.ProtocolError):
        small.feed(b"\xc6" + (1 << 20).to_bytes(4, "big") + b"x" * 2000)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=256))
def test_garbage_never_raises_anything_but_decode_error(data):
    reader = p.ObjectReader(max_buffer=4096)
    with contextlib.suppress(DecodeError):
        reader.feed(data)
        for _ in range(64):
            obj = reader.next_object()
            if obj is p.NEED_DATA:
                break
            for cls in (p.RequestHeader, p.QueryRequest, p.MembersResponse, p.KeyResponse):
                with contextlib.suppress(DecodeError):
                    cls.from_wire(obj)


_names = st.text(max_size=20)
_tags = st.dictionaries(_names, _names, max_size=4)


@settings(max_examples=200, deadline=None)
@given(
    name=_names,
    payload=st.binary(max_size=64),
    nodes=st.lists(_names, max_size=3),
    tags=_tags,
    ack=st.booleans(),
    relay=st.integers(0, 255),
    timeout=st.integers(0, (1 << 63) - 1),
)
def test_query_request_round_trip(name, payload, nodes, tags, ack, relay, timeout):
    req = p.QueryRequest(name, payload, nodes, tags, ack, relay, timeout)
    obj = msgpack.unpackb(p.encode(req.to_wire()), raw=False)
    assert p.QueryRequest.from_wire(obj) == req


@settings(max_examples=200, deadline=None)
@given(
    name=_names,
    ip=st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
    port=st.integers(0, 65535),
    tags=_tags,
    status=st.sampled_from(list(MemberStatus)),
)
def test_member_round_trip(name, ip, port, tags, status):
    member = ClusterMember(name, str(ip), port, tags, status=status)
    wire = wire_member(member)
    obj = msgpack.unpackb(p.encode(wire.to_wire()), raw=False)
    back = p.WireMember.from_wire(obj)
    assert back == wire
    assert back.status == member.status_name
    mapped = getattr(ip, "ipv4_mapped", None)  # Go prints v4-mapped addresses dotted
    assert p.format_ip(back.addr) == str(mapped or ip)


def test_surrogate_escaped_strings_round_trip():
    odd = b"node-\xff".decode("utf-8", "surrogateescape")
    obj = msgpack.unpackb(
        p.encode(p.RequestHeader(odd, 1).to_wire()), raw=False, unicode_errors="surrogateescape"
    )
    assert p.RequestHeader.from_wire(obj).command == odd


@pytest.mark.parametrize(
    ("raw", "port", "text"),
    [
        (b"\x7f\x00\x00\x01", 7946, "127.0.0.1:7946"),
        (bytes(10) + b"\xff\xff\x0a\x00\x00\x01", 1, "10.0.0.1:1"),  # v4-mapped
        (b"\x00" * 15 + b"\x01", 7373, "[::1]:7373"),
        (b"", 80, ":80"),
        (b"\x01\x02", 80, "?0102:80"),
    ],
)
def test_addresses_print_like_go(raw, port, text):
    assert p.format_tcp_addr(raw, port) == text


def test_ip_bytes():
    assert p.ip_bytes("10.1.2.3") == b"\x0a\x01\x02\x03"
    assert len(p.ip_bytes("fe80::1%eth0")) == 16
    assert p.ip_bytes("not-an-ip") == b""


def test_a_body_is_a_frozen_record():
    a = p.QueryRequest("deploy", b"v1", request_ack=True)
    assert a == p.QueryRequest(name="deploy", payload=b"v1", request_ack=True)
    assert a != p.QueryRequest("deploy")
    assert (a.filter_nodes, a.filter_tags, a.timeout_ns) == ([], {}, 0)
    assert repr(p.JoinResponse(3)) == "JoinResponse(num=3)"
    assert hash(p.JoinResponse(3)) == hash(p.JoinResponse(num=3))
    assert p.JoinResponse(3) != p.HandshakeRequest(3)  # same values, different struct
    b = p.QueryRequest("other")
    b.filter_nodes.append("n1")  # each instance has its own mutable default
    assert p.QueryRequest("other").filter_nodes == []
    with pytest.raises(AttributeError, match="frozen"):
        a.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'name'"):
        p.QueryRequest()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple values for argument 'name'"):
        p.QueryRequest("x", name="y")  # type: ignore[misc]
    with pytest.raises(TypeError, match="takes from 2 to 3 positional arguments"):
        p.RespondRequest(1, b"", 3)  # type: ignore[call-arg]


def test_a_body_whose_fields_and_wire_names_disagree_is_refused_at_definition():
    with pytest.raises(TypeError, match="FIELDS and the declared fields differ"):
        class Broken(p.Body):
            name: str
            FIELDS = (p._f("other", "Other", p._str, str),)
