"""The mDNS message codec: serf's packets, compression, and hostile bytes."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swimlib.mdns import codec as c

from .vectors import SERF_ANSWER, SERF_QUERY

SERVICE = (b"_serf_lab", b"_tcp", b"local")
INSTANCE = (b"capt", *SERVICE)


def _header(qd: int = 0, an: int = 0, ns: int = 0, ar: int = 0, flags: int = 0x8400) -> bytes:
    return struct.pack("!6H", 0, flags, qd, an, ns, ar)


def _label_name(*labels: bytes) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


def test_serfs_query_decodes_and_encodes_back_to_the_same_bytes() -> None:
    msg = c.decode(SERF_QUERY)
    assert msg == c.Message(0x07F5, 0, (c.Question(SERVICE, c.TYPE_PTR, c.CLASS_IN),))
    assert not msg.is_response
    assert c.encode(msg) == SERF_QUERY


def test_serfs_answer_decodes_to_its_four_records_and_encodes_back_byte_for_byte() -> None:
    msg = c.decode(SERF_ANSWER)
    assert (msg.id, msg.is_response, msg.flags & c.FLAG_AUTHORITATIVE) == (0, True, 0x0400)
    assert msg.answers == (
        c.ResourceRecord(SERVICE, c.TYPE_PTR, INSTANCE),
        c.ResourceRecord(INSTANCE, c.TYPE_SRV, c.Srv(10, 1, 7946, (b"vm",))),
        c.ResourceRecord((b"vm",), c.TYPE_A, "10.251.7.2"),
        c.ResourceRecord(INSTANCE, c.TYPE_TXT, (b"Serf 'lab' cluster",)),
    )
    # Compressed as Go's miekg/dns compresses (the SRV target whole, then pointed at).
    assert c.encode(msg) == SERF_ANSWER


def test_names_are_compressed_case_insensitively_and_srv_targets_are_not() -> None:
    host = (b"Host", b"local")
    msg = c.Message(1, 0x8400, (), (
        c.ResourceRecord(INSTANCE, c.TYPE_SRV, c.Srv(1, 1, 80, host)),
        c.ResourceRecord((b"HOST", b"LOCAL"), c.TYPE_A, "10.0.0.1"),
        c.ResourceRecord(INSTANCE, c.TYPE_AAAA, "fd00::1"),
    ))
    data = c.encode(msg)
    assert data.count(b"\x04Host\x05local\x00") == 1  # the target, whole
    assert b"HOST" not in data and data.count(b"_serf_lab") == 1
    back = c.decode(data)
    assert back.answers[1].name == (b"Host", b"local")  # the first spelling, via the pointer
    assert back.answers[0] == msg.answers[0] and back.answers[2] == msg.answers[2]


def test_other_record_types_and_empty_txt_round_trip() -> None:
    msg = c.Message(7, 0x8400, (c.Question(SERVICE, c.TYPE_ANY, c.CLASS_IN | c.TOP_BIT),), (
        c.ResourceRecord(INSTANCE, 47, b"\x00\x01raw"),
        c.ResourceRecord(INSTANCE, c.TYPE_TXT, (b"a=1", b""), ttl=0, rclass=c.CLASS_IN | c.TOP_BIT),
    ), (), (c.ResourceRecord(INSTANCE, c.TYPE_TXT, ()),))
    back = c.decode(c.encode(msg))
    assert back.answers == msg.answers and back.questions == msg.questions
    assert back.additionals[0].data == (b"",)  # RFC 6763: a TXT record is never empty


@pytest.mark.parametrize("name", ["a" * 64 + ".local.", ".".join(["abcdefgh"] * 32), "a..b"])
def test_names_that_cannot_be_written_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        c.name_from_text(name)


def test_unwritable_values_are_refused_by_encode() -> None:
    with pytest.raises(ValueError, match="TXT string"):
        c.encode(c.Message(answers=(c.ResourceRecord(INSTANCE, c.TYPE_TXT, (b"x" * 256,)),)))
    with pytest.raises(ValueError, match="label"):
        c.encode(c.Message(questions=(c.Question((b"x" * 64,), c.TYPE_A),)))
    big = tuple(c.ResourceRecord((bytes([65 + i % 26]) * 60, b"x%d" % i), c.TYPE_TXT,
                                 (b"y" * 200,)) for i in range(40))
    with pytest.raises(ValueError, match="9000"):
        c.encode(c.Message(answers=big))


def test_name_text_escapes_what_could_forge_a_name_or_a_log_line() -> None:
    assert c.name_text(INSTANCE) == "capt._serf_lab._tcp.local."
    assert c.name_text((b"a.b\n\\", b"local")) == "a\\046b\\010\\092.local."
    assert c.name_text(()) == "."


# --------------------------------------------------------------------------- hostile


def _reason(data: bytes) -> str:
    with pytest.raises(c.DnsError) as caught:
        c.decode(data)
    return caught.value.reason


def test_a_header_claiming_ten_thousand_records_is_refused_before_any_parsing() -> None:
    assert _reason(_header(an=10_000)) == "too_many_records"
    assert _reason(_header(qd=17)) == "too_many_records"
    assert _reason(_header(an=30, ns=30, ar=5)) == "too_many_records"


def test_oversized_and_short_packets_are_refused() -> None:
    assert _reason(SERF_ANSWER + b"\0" * (9001 - len(SERF_ANSWER))) == "too_big"
    assert _reason(b"\0" * 11) == "short"


def test_every_truncation_of_serfs_answer_is_a_dns_error() -> None:
    for n in range(len(SERF_ANSWER)):
        with pytest.raises(c.DnsError):
            c.decode(SERF_ANSWER[:n])


def test_trailing_bytes_are_refused() -> None:
    assert _reason(SERF_QUERY + b"\0") == "trailing"


def test_a_pointer_to_itself_or_forwards_is_refused() -> None:
    assert _reason(_header(qd=1) + b"\xc0\x0c" + b"\0\x01\0\x01") == "bad_pointer"
    assert _reason(_header(qd=1) + b"\xc0\x0e\0" + b"\0\x01\0\x01") == "bad_pointer"


def test_a_compression_loop_is_refused() -> None:
    # Offset 12: label "a", then a pointer back to 12 (backwards, but into the same name).
    assert _reason(_header(qd=1) + b"\x01a\xc0\x0c" + b"\0\x01\0\x01") == "bad_pointer"
    # Two names that point at each other: the second at the first, the first at the second.
    first = b"\x01a\xc0\x14"  # offset 12, points at 20 (forwards)
    second = b"\x01b\xc0\x0c"  # offset 20
    packet = _header(qd=2) + first + b"\0\x01\0\x01" + second + b"\0\x01\0\x01"
    assert _reason(packet) == "bad_pointer"


def _chain(records: int, label: bytes) -> bytes:
    """Answers whose names are ``label`` + a pointer to the previous record's name
    (each pointer legal: backwards, to where an earlier name starts)."""
    body = bytearray(_header(an=records))
    previous = -1
    for _ in range(records):
        here = len(body)
        body += bytes([len(label)]) + label
        body += struct.pack("!H", 0xC000 | previous) if previous >= 0 else b"\0"
        body += struct.pack("!HHIH", 99, 1, 120, 0)
        previous = here
    return bytes(body)


def test_a_chain_of_pointers_is_bounded() -> None:
    assert len(c.decode(_chain(c.MAX_POINTERS + 1, b"y")).answers) == c.MAX_POINTERS + 1
    assert _reason(_chain(c.MAX_POINTERS + 2, b"y")) == "bad_pointer"


def test_a_name_over_255_bytes_is_refused_whether_written_or_pointed_at() -> None:
    assert len(c.decode(_chain(4, b"n" * 50)).answers) == 4
    assert _reason(_chain(6, b"n" * 50)) == "name_too_long"
    plain = _header(qd=1, flags=0) + _label_name(*[b"n" * 63] * 4) + b"\0\x01\0\x01"
    assert _reason(plain) == "name_too_long"


@pytest.mark.parametrize(("rtype", "rdata", "reason"), [
    (c.TYPE_A, b"\x01\x02\x03", "bad_rdata"),
    (c.TYPE_AAAA, b"\0" * 4, "bad_rdata"),
    (c.TYPE_PTR, _label_name(b"x") + b"junk", "bad_rdata"),
    (c.TYPE_SRV, b"\0\0\0\0", "bad_rdata"),
    (c.TYPE_SRV, b"\0\0\0\0\0\x50" + _label_name(b"h") + b"!", "bad_rdata"),
    (c.TYPE_TXT, b"\x05abc", "bad_rdata"),
    (c.TYPE_TXT, b"\0" * 65, "bad_rdata"),
])
def test_rdata_that_does_not_fill_its_length_exactly_is_refused(rtype: int, rdata: bytes,
                                                                reason: str) -> None:
    rr = _label_name(b"x") + struct.pack("!HHIH", rtype, 1, 120, len(rdata)) + rdata
    assert _reason(_header(an=1) + rr) == reason


def test_rdata_longer_than_the_packet_is_refused() -> None:
    rr = _label_name(b"x") + struct.pack("!HHIH", c.TYPE_A, 1, 120, 400) + b"\1\2\3\4"
    assert _reason(_header(an=1) + rr) == "truncated"


def test_extended_label_types_are_refused() -> None:
    assert _reason(_header(qd=1) + b"\x41abc\0" + b"\0\x01\0\x01") == "bad_label"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_raise_nothing_but_dns_error(data: bytes) -> None:
    with contextlib.suppress(c.DnsError):
        c.decode(data)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(SERF_ANSWER) - 1), st.integers(0, 255)),
                min_size=1, max_size=8))
def test_mutations_of_serfs_answer_raise_nothing_but_dns_error(
        edits: list[tuple[int, int]]) -> None:
    data = bytearray(SERF_ANSWER)
    for pos, value in edits:
        data[pos] = value
    try:
        msg = c.decode(bytes(data))
    except c.DnsError:
        return
    for rr in (*msg.answers, *msg.additionals):  # whatever decodes is within the limits
        assert sum(len(label) + 1 for label in rr.name) + 1 <= c.MAX_NAME
