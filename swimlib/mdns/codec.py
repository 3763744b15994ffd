"""DNS messages, as far as mDNS service discovery needs them (RFC 1035, 6762, 6763).

What hashicorp/mdns (serf's ``-discover``) sends and reads: questions, and
PTR, SRV, TXT, A and AAAA records; any other record type is kept as raw
bytes. Names are tuples of labels (bytes), so a label holding a dot or any
other byte round-trips exactly and cannot be confused with a separator.

mDNS is unauthenticated and anyone on the link can send it, so decoding is
built for hostile input: :func:`decode` raises only :class:`DnsError`, whose
``reason`` is what the caller counts. A packet over 9000 bytes (RFC 6762's
limit), a header that claims more than :data:`MAX_RECORDS` records,
compression pointers that do not point strictly backwards (no loops are
possible then, and :data:`MAX_POINTERS` bounds the work anyway), a name over
255 bytes, rdata that does not fill its length exactly, or bytes after the
last record: each is a drop, never an exception or unbounded work.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Final

from swimlib.records import record

TYPE_A: Final = 1
TYPE_PTR: Final = 12
TYPE_TXT: Final = 16
TYPE_AAAA: Final = 28
TYPE_SRV: Final = 33
TYPE_ANY: Final = 255
CLASS_IN: Final = 1
#: Top bit of a question's class: a unicast reply is wanted (RFC 6762 section 5.4);
#: of a record's class: cache-flush.
TOP_BIT: Final = 0x8000

FLAG_RESPONSE: Final = 0x8000
FLAG_AUTHORITATIVE: Final = 0x0400
FLAG_TRUNCATED: Final = 0x0200

#: RFC 6762 section 17: no mDNS message is larger.
MAX_PACKET: Final = 9000
#: Questions, and records over all sections, one message may hold; more is a drop
#: (serf's answer for one node is 4 records; a flood of fakes stops here).
MAX_QUESTIONS: Final = 16
MAX_RECORDS: Final = 64
#: Compression pointers followed for one name.
MAX_POINTERS: Final = 32
MAX_NAME: Final = 255
MAX_LABEL: Final = 63
#: Strings in one TXT record.
MAX_TXT_STRINGS: Final = 64

_HEADER: Final = struct.Struct("!6H")
_QUESTION: Final = struct.Struct("!HH")
_RR: Final = struct.Struct("!HHIH")
_SRV: Final = struct.Struct("!HHH")

#: A domain name: its labels, without the empty root label.
Name = tuple[bytes, ...]


class DnsError(ValueError):
    """A packet refused; ``reason`` names why (the drop counter's suffix)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@record
class Question:
    name: Name
    qtype: int
    #: With the unicast-response bit (:data:`TOP_BIT`), if set.
    qclass: int = CLASS_IN


@record
class Srv:
    priority: int
    weight: int
    port: int
    target: Name


#: A record's data: a name (PTR), :class:`Srv`, TXT strings, an address as text
#: (A, AAAA), or the raw bytes of any other type.
RData = Name | Srv | tuple[bytes, ...] | str | bytes


@record
class ResourceRecord:
    name: Name
    rtype: int
    data: RData
    ttl: int = 120
    rclass: int = CLASS_IN


@record
class Message:
    id: int = 0
    flags: int = 0
    questions: tuple[Question, ...] = ()
    answers: tuple[ResourceRecord, ...] = ()
    authorities: tuple[ResourceRecord, ...] = ()
    additionals: tuple[ResourceRecord, ...] = ()

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_RESPONSE)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def rcode(self) -> int:
        return self.flags & 0xF


# --------------------------------------------------------------------------- names


def name_from_text(text: str) -> Name:
    """``"web-1._serf_lab._tcp.local."`` as labels (dots separate, as in Go's
    hashicorp/mdns); ``ValueError`` for an empty label, one over 63 bytes, or a
    name over 255."""
    labels = tuple(part.encode("utf-8", "surrogateescape") for part in text.rstrip(".").split("."))
    if labels == (b"",):
        labels = ()
    check_name(labels)
    return labels


def check_name(name: Name) -> None:
    if any(not 0 < len(label) <= MAX_LABEL for label in name):
        raise ValueError("a DNS label must be 1 to 63 bytes")
    if sum(len(label) + 1 for label in name) + 1 > MAX_NAME:
        raise ValueError("a DNS name must be at most 255 bytes")


def name_text(name: Name) -> str:
    """For logs: labels joined by dots; a dot, backslash or unprintable byte
    inside a label is escaped as ``\\DDD`` (so names from the wire cannot forge
    log lines or look like other names)."""
    def label(raw: bytes) -> str:
        return "".join(chr(b) if 0x21 <= b <= 0x7E and b not in (0x2E, 0x5C) else f"\\{b:03d}"
                       for b in raw)
    return ".".join(label(part) for part in name) + "."


def folded(name: Name) -> Name:
    """The name in lower case (DNS names compare case-insensitively, ASCII only)."""
    return tuple(label.lower() for label in name)


# --------------------------------------------------------------------------- decode


def decode(data: bytes) -> Message:
    """One DNS message; raises :class:`DnsError` (only) for anything malformed."""
    if len(data) > MAX_PACKET:
        raise DnsError("too_big", f"{len(data)} bytes")
    if len(data) < _HEADER.size:
        raise DnsError("short", f"{len(data)} bytes")
    ident, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    if qd > MAX_QUESTIONS or an + ns + ar > MAX_RECORDS:
        raise DnsError("too_many_records", f"{qd} questions, {an + ns + ar} records")
    try:
        pos = _HEADER.size
        questions = []
        for _ in range(qd):
            name, pos = _read_name(data, pos)
            qtype, qclass = _unpack(_QUESTION, data, pos)
            pos += _QUESTION.size
            questions.append(Question(name, qtype, qclass))
        sections: list[tuple[ResourceRecord, ...]] = []
        for count in (an, ns, ar):
            records = []
            for _ in range(count):
                rr, pos = _read_record(data, pos)
                records.append(rr)
            sections.append(tuple(records))
    except (IndexError, struct.error, ValueError) as exc:  # a backstop: the checks come first
        if isinstance(exc, DnsError):
            raise
        raise DnsError("malformed", str(exc)) from None
    if pos != len(data):
        raise DnsError("trailing", f"{len(data) - pos} bytes after the last record")
    return Message(ident, flags, tuple(questions), *sections)


def _unpack(fmt: struct.Struct, data: bytes, pos: int) -> tuple[int, ...]:
    if pos + fmt.size > len(data):
        raise DnsError("truncated")
    return fmt.unpack_from(data, pos)


def _read_name(data: bytes, pos: int) -> tuple[Name, int]:
    """A possibly compressed name at ``pos``; returns it and the offset after it.

    Every pointer must point before the start of the labels it ends (where a
    compressor could only have written the name it refers to), so the places
    jumped to strictly decrease: a loop cannot be written."""
    labels: list[bytes] = []
    size = 1
    end = -1
    pointers = 0
    floor = pos
    while True:
        if pos >= len(data):
            raise DnsError("truncated", "name")
        length = data[pos]
        if length >= 0xC0:
            if pos + 1 >= len(data):
                raise DnsError("truncated", "pointer")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            pointers += 1
            if target >= floor or pointers > MAX_POINTERS:
                raise DnsError("bad_pointer", f"at {pos} to {target}")
            if end < 0:
                end = pos + 2
            pos = floor = target
            continue
        if length > MAX_LABEL:  # 0x40 and 0x80: extended label types, never in mDNS
            raise DnsError("bad_label", f"length byte {length:#x}")
        if length == 0:
            return tuple(labels), end if end >= 0 else pos + 1
        if pos + 1 + length > len(data):
            raise DnsError("truncated", "label")
        size += length + 1
        if size > MAX_NAME:
            raise DnsError("name_too_long")
        labels.append(bytes(data[pos + 1:pos + 1 + length]))
        pos += 1 + length


def _read_record(data: bytes, pos: int) -> tuple[ResourceRecord, int]:
    name, pos = _read_name(data, pos)
    rtype, rclass, ttl, rdlength = _unpack(_RR, data, pos)
    start = pos + _RR.size
    end = start + rdlength
    if end > len(data):
        raise DnsError("truncated", "rdata")
    return ResourceRecord(name, rtype, _read_rdata(data, rtype, start, end), ttl, rclass), end


def _read_rdata(data: bytes, rtype: int, start: int, end: int) -> RData:
    size = end - start
    if rtype in (TYPE_A, TYPE_AAAA):
        if size != (4 if rtype == TYPE_A else 16):
            raise DnsError("bad_rdata", f"address of {size} bytes")
        raw = bytes(data[start:end])
        return str(ipaddress.IPv4Address(raw) if size == 4 else ipaddress.IPv6Address(raw))
    if rtype == TYPE_PTR:
        target, after = _read_name(data, start)
        if after != end:
            raise DnsError("bad_rdata", "PTR name does not fill its rdata")
        return target
    if rtype == TYPE_SRV:
        if size < _SRV.size + 1:
            raise DnsError("bad_rdata", "SRV too short")
        priority, weight, port = _SRV.unpack_from(data, start)
        target, after = _read_name(data, start + _SRV.size)
        if after != end:
            raise DnsError("bad_rdata", "SRV target does not fill its rdata")
        return Srv(priority, weight, port, target)
    if rtype == TYPE_TXT:
        strings: list[bytes] = []
        pos = start
        while pos < end:
            length = data[pos]
            if pos + 1 + length > end or len(strings) >= MAX_TXT_STRINGS:
                raise DnsError("bad_rdata", "TXT strings")
            strings.append(bytes(data[pos + 1:pos + 1 + length]))
            pos += 1 + length
        return tuple(strings)
    return bytes(data[start:end])


# --------------------------------------------------------------------------- encode


def encode(msg: Message) -> bytes:
    """The message on the wire, names compressed (not SRV targets: RFC 2782,
    and what hashicorp/mdns sends). ``ValueError`` for a name that cannot be
    written or a message over :data:`MAX_PACKET`."""
    records = (*msg.answers, *msg.authorities, *msg.additionals)
    out = bytearray(_HEADER.pack(msg.id, msg.flags, len(msg.questions), len(msg.answers),
                                 len(msg.authorities), len(msg.additionals)))
    table: dict[Name, int] = {}
    for q in msg.questions:
        _write_name(out, q.name, table)
        out += _QUESTION.pack(q.qtype, q.qclass)
    for rr in records:
        _write_name(out, rr.name, table)
        out += _RR.pack(rr.rtype, rr.rclass, rr.ttl, 0)
        start = len(out)
        _write_rdata(out, rr, table)
        struct.pack_into("!H", out, start - 2, len(out) - start)
    if len(out) > MAX_PACKET:
        raise ValueError(f"message of {len(out)} bytes; mDNS allows {MAX_PACKET}")
    return bytes(out)


def _write_name(out: bytearray, name: Name, table: dict[Name, int],
                compress: bool = True) -> None:
    """Labels, ending in a pointer to an earlier copy of the rest where there
    is one; every suffix written becomes a target for later names (an SRV
    target too, though it is itself written whole, as Go's miekg/dns does)."""
    check_name(name)
    for i in range(len(name)):
        suffix = folded(name[i:])
        if compress and suffix in table:
            out += struct.pack("!H", 0xC000 | table[suffix])
            return
        if len(out) < 0x3FFF:
            table.setdefault(suffix, len(out))
        out.append(len(name[i]))
        out += name[i]
    out.append(0)


def _write_rdata(out: bytearray, rr: ResourceRecord, table: dict[Name, int]) -> None:
    data = rr.data
    if rr.rtype in (TYPE_A, TYPE_AAAA):
        assert isinstance(data, str)
        out += ipaddress.ip_address(data).packed
    elif rr.rtype == TYPE_PTR:
        assert isinstance(data, tuple)
        _write_name(out, data, table)
    elif rr.rtype == TYPE_SRV:
        assert isinstance(data, Srv)
        out += _SRV.pack(data.priority, data.weight, data.port)
        _write_name(out, data.target, table, compress=False)
    elif rr.rtype == TYPE_TXT:
        assert isinstance(data, tuple)
        for text in data or (b"",):  # RFC 6763 6.1: never empty
            assert isinstance(text, bytes)
            if len(text) > 255:
                raise ValueError("a TXT string must be at most 255 bytes")
            out.append(len(text))
            out += text
    else:
        assert isinstance(data, bytes)
        out += data
