"""Hypothesis strategies for *well-formed* hostile memberlist 0.2 and Serf messages.

Why this exists: the decoder fuzz tests (tests/property/test_wire_fuzz.py)
show that malformed bytes are refused with a ``DecodeError``. Issue 7 ("one
packet must never stop, split or silence a cluster") asks the next question:
what happens to bytes that the decoders *accept*, but that carry values no
honest peer would send? Those reach the SWIM core, the Serf layer, its
Lamport clocks, dedup rings, broadcast queues and timers. Every strategy here
therefore builds bytes swimlib's decoders accept (``test_strategies_decode``
in tests/sim/test_hostile_state_machine.py checks it) and fills them with
values an attacker or a broken peer would pick:

* integers at 0, 1, max-1 and max of their *wire* type (uint32 incarnations
  and sequence numbers, uint64 Lamport times, int64 query timeouts, uint8
  relay factor, uint16 ports) as well as small values that collide with real
  clocks and sequence numbers;
* names that are empty, huge, full of control characters or not UTF-8,
  the receiving node's own name, other members' names and unknown ones;
* addresses of other members (reflection), 0.0.0.0, empty, 16-byte
  (v4-mapped and real IPv6), nobody's;
* wrong-but-decodable encodings: integers in wider msgpack forms than Go
  would use, strings as str8 or bin, ``[]byte`` as arrays of ints, nil for
  zero values, missing keys, unknown keys, duplicate keys, shuffled keys,
  trailing bytes after stream messages.

swimlib's encoders range-check (they refuse to *send* what a Go peer would
choke on), so messages are packed by hand here in go-msgpack 0.5.5's dialect
(see swimlib/wire/_mp.py) by :func:`gopack`.

Everything is parametrised by a :class:`Cluster` -- the members' names and
addresses, which member receives, and which input classes to avoid -- so a
message can name the receiver, impersonate a member or point at a real
address. Entry points: :func:`hostile_datagrams` and :func:`hostile_streams`
draw among every kind; each kind also has its own strategy (``pings``,
``alives``, ``queries``, ``serf_push_pulls``, ...) and Serf-level strategies
return the Serf bytes (``serfType | msgpack``) that :func:`user_datagram`
wraps in a memberlist user message.

Besides single messages: compounds (up to 127 parts), LZW and CRC wrappers
nested up to three deep, and *floods* -- one datagram of up to 127 near-copies
differing in one field (query IDs, event names, fake members, intents), for
whatever state grows per message. ``Cluster.attacker`` is an address fake
members are often announced at; the state machine puts a host there that
answers the cluster's push-pulls with :func:`push_pulls` / :func:`hostile_streams`
bytes, so the same strategies also serve as hostile stream *replies*.

Known-bug input classes (the ``HAZARD_*`` constants): an input class that
currently breaks swimlib can be left out by listing it in ``Cluster.avoid``,
so the state machine stays green while the bug is open and is re-armed by
deleting one line once it is fixed. Each hazard is the *narrowest* class that
triggers its bug; everything else about the messages stays hostile. Hazards
whose bugs have been fixed stay as switches (nothing avoids them).
"""

from __future__ import annotations

import functools
import math
import struct
import zlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from hypothesis import strategies as st

from swimlib.cluster import domains as _serf_domains
from swimlib.errors import DecodeError
from swimlib.records import record
from swimlib.wire import codec, lzw
from swimlib.wire import serf as sw
from swimlib.wire._mp import I64_MAX, I64_MIN, U8, U16, U32, U64
from swimlib.wire.messages import MessageType, PushPull, UserMsg

Address = tuple[str, int]

# --------------------------------------------------------------------------- hazards
# One constant per input class that triggers an open bug; see tests/unit/test_hostile_repros.py.

#: Lamport times from just below the plausibility edge up (:data:`LTIME_EDGE`,
#: the highest time a node with a low clock witnesses): a clock moved past it
#: (by witnessing it, or by a few increments after) sends times its peers, or a
#: node with a fresh clock, refuse.
HAZARD_LTIME_PAST_HALF = "ltime-past-half"
#: Incarnations within 2**16 of 2**32-1 about a member: it can no longer out-bid them.
HAZARD_INCARNATION_NEAR_MAX = "incarnation-near-max"
#: Tag-filter regexes that backtrack exponentially/polynomially (seconds to hours per query).
HAZARD_REGEX_REDOS = "regex-redos"
#: Tag-filter regexes Python's ``re`` rejects with something other than ``re.error``.
HAZARD_REGEX_CRASH = "regex-crash"
#: Leave intents (gossiped, or derived from a push-pull's LeftMembers) naming
#: members that are alive: one the member misses leaves it "leaving" for good.
#: Also memberlist's own "left" (dead with From == Node, push-pull rows in
#: state 3) about members: peers then list the member in LeftMembers.
HAZARD_LEAVE_LIVE_MEMBER = "leave-live-member"
#: alive / push-pull rows for the empty name (the one name any member acks pings for).
HAZARD_EMPTY_NAME_ALIVE = "empty-name-alive"
#: Gossiped Serf messages (intents, user events, queries) larger than a gossip
#: datagram: accepted, then queued for a re-gossip that can never happen.
HAZARD_OVERSIZED_GOSSIP = "oversized-gossip"
#: Vsn whose current versions fall outside the cluster's ranges (push-pull merges refused).
HAZARD_INCOMPATIBLE_VSN = "incompatible-vsn"

#: Serf push-pull state whose EventLTime or ring slots move the receiver's event
#: clock, and user events too big to gossip (applied by the receiver alone):
#: nobody else's clock moves, and a member that joins through the receiver
#: then ignores the others' events as older than its join.
HAZARD_EVENT_CLOCK_SKEW = "event-clock-skew"

ALL_HAZARDS = frozenset({
    HAZARD_EVENT_CLOCK_SKEW,
    HAZARD_LTIME_PAST_HALF, HAZARD_INCARNATION_NEAR_MAX, HAZARD_REGEX_REDOS, HAZARD_REGEX_CRASH,
    HAZARD_LEAVE_LIVE_MEMBER, HAZARD_EMPTY_NAME_ALIVE,
    HAZARD_OVERSIZED_GOSSIP, HAZARD_INCOMPATIBLE_VSN,
})

#: The highest Lamport time a node with a low clock may witness: 2**63 + 2**32
#: since 4b463cc (2**63 before); read from swimlib so the band follows the rule.
LTIME_EDGE: int = (getattr(_serf_domains, "LTIME_FREE_LIMIT", 1 << 63)
                   + getattr(_serf_domains, "LTIME_STEP", 0))
#: Lower edges of the hazardous bands above.
LTIME_HAZARD_FLOOR = LTIME_EDGE - (1 << 20)
INCARNATION_HAZARD_FLOOR = U32 - (1 << 16)

#: With HAZARD_OVERSIZED_GOSSIP avoided, gossiped Serf messages stay this small
#: (a LAN gossip datagram carries 1,400 bytes, compound framing included).
GOSSIP_SAFE_SIZE = 1300

# --------------------------------------------------------------------------- the target


@record
class Cluster:
    """Who is out there: names and addresses of the members, who receives, what to avoid.

    ``receiver`` indexes ``names``/``addrs``: the node the message is injected
    into, so "own name" and "own address" messages are possible. ``avoid`` is a
    set of ``HAZARD_*`` input classes not to generate. ``max_fakes`` caps the
    fake members one flood datagram announces: each costs the cluster a few
    simulated seconds of probing to clear, which a long run cannot always pay.
    ``attacker`` is an address where the attacker answers streams: fake
    members are announced there often, so the cluster opens push-pulls to it.
    ``loopback_only`` keeps every drawn address on loopback (127.0.0.0/8, ::,
    ::1 and their v4-mapped forms): live agents act on the addresses they
    accept, and a test must not make them reach past the machine.
    """

    names: tuple[str, ...]
    addrs: tuple[Address, ...]
    receiver: int = 0
    avoid: frozenset[str] = frozenset()
    max_fakes: int = codec.MAX_COMPOUND_PARTS
    attacker: Address = ("127.0.0.200", 7946)
    loopback_only: bool = False

    @property
    def own_name(self) -> bytes:
        return self.names[self.receiver].encode("utf-8", "surrogateescape")

    @property
    def own_addr(self) -> Address:
        return self.addrs[self.receiver]

    def member_names(self) -> list[bytes]:
        return [n.encode("utf-8", "surrogateescape") for n in self.names]

    def avoids(self, hazard: str) -> bool:
        return hazard in self.avoid


# --------------------------------------------------------------------------- Go's msgpack, by hand


@record
class Int:
    """An integer in a chosen msgpack width (``code`` 0xcc-0xd3).

    Go writes the smallest form; its decoder (and swimlib's) accepts any width
    that fits, so a wider form is the canonical "wrong but decodable" integer.
    """

    value: int
    code: int


@record
class Str8:
    """Bytes as msgpack str8 (``d9``): accepted by Go and swimlib, never sent by Go."""

    data: bytes


@record
class Bin:
    """Bytes as msgpack bin (``c4``-``c6``): swimlib accepts it even in string fields."""

    data: bytes


@record
class Map:
    """A msgpack map with keys in exactly this order (duplicates allowed: last wins)."""

    pairs: tuple[tuple[Any, Any], ...]


_INT_RANGES = {
    0xCC: (0, U8), 0xCD: (0, U16), 0xCE: (0, U32), 0xCF: (0, U64),
    0xD0: (-(1 << 7), (1 << 7) - 1), 0xD1: (-(1 << 15), (1 << 15) - 1),
    0xD2: (-(1 << 31), (1 << 31) - 1), 0xD3: (I64_MIN, I64_MAX),
}
_INT_FORMATS = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q",
                0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q"}


def gopack(obj: Any) -> bytes:
    """Pack ``obj`` as go-msgpack 0.5.5 would, with no range checks.

    ``str``/``bytes`` use the old raw family (``a0``-``bf``, ``da``, ``db``);
    ints the smallest form unless wrapped in :class:`Int`; ``dict`` keeps its
    insertion order (use :class:`Map` for duplicates).
    """
    out = bytearray()
    _pack(obj, out)
    return bytes(out)


def _pack_int(v: int, out: bytearray) -> None:
    if 0 <= v < 0x80:
        out.append(v)
    elif -32 <= v < 0:
        out.append(v & 0xFF)
    elif v >= 0:
        code = next(c for c in (0xCC, 0xCD, 0xCE, 0xCF) if v <= _INT_RANGES[c][1])
        out.append(code)
        out += struct.pack(_INT_FORMATS[code], v)
    else:
        code = next(c for c in (0xD0, 0xD1, 0xD2, 0xD3) if v >= _INT_RANGES[c][0])
        out.append(code)
        out += struct.pack(_INT_FORMATS[code], v)


def _pack_raw(b: bytes, out: bytearray) -> None:
    n = len(b)
    if n < 32:
        out.append(0xA0 | n)
    elif n <= U16:
        out += b"\xda" + struct.pack(">H", n)
    else:
        out += b"\xdb" + struct.pack(">I", n)
    out += b


def _pack_len(n: int, small: int, small_max: int, c16: int, out: bytearray) -> None:
    if n <= small_max:
        out.append(small | n)
    elif n <= U16:
        out.append(c16)
        out += struct.pack(">H", n)
    else:
        out.append(c16 + 1)
        out += struct.pack(">I", n)


def _pack(o: Any, out: bytearray) -> None:
    if o is None:
        out.append(0xC0)
    elif o is True:
        out.append(0xC3)
    elif o is False:
        out.append(0xC2)
    elif isinstance(o, Int):
        lo, hi = _INT_RANGES[o.code]
        assert lo <= o.value <= hi, o
        out.append(o.code)
        out += struct.pack(_INT_FORMATS[o.code], o.value)
    elif isinstance(o, int):
        _pack_int(o, out)
    elif isinstance(o, float):
        out += b"\xcb" + struct.pack(">d", o)
    elif isinstance(o, str):
        _pack_raw(o.encode("utf-8", "surrogateescape"), out)
    elif isinstance(o, bytes):
        _pack_raw(o, out)
    elif isinstance(o, Str8):
        assert len(o.data) <= U8
        out += bytes((0xD9, len(o.data))) + o.data
    elif isinstance(o, Bin):
        n = len(o.data)
        if n <= U8:
            out += bytes((0xC4, n))
        elif n <= U16:
            out += b"\xc5" + struct.pack(">H", n)
        else:
            out += b"\xc6" + struct.pack(">I", n)
        out += o.data
    elif isinstance(o, (list, tuple)):
        _pack_len(len(o), 0x90, 15, 0xDC, out)
        for item in o:
            _pack(item, out)
    elif isinstance(o, (Map, dict)):
        pairs = o.pairs if isinstance(o, Map) else tuple(o.items())
        _pack_len(len(pairs), 0x80, 15, 0xDE, out)
        for k, v in pairs:
            _pack(k, out)
            _pack(v, out)
    else:
        raise TypeError(f"cannot pack {type(o).__name__}")


# --------------------------------------------------------------------------- helpers

Draw = Callable[[st.SearchStrategy[Any]], Any]

F = TypeVar("F", bound=Callable[..., Any])


def _per_cluster(fn: F) -> F:
    """Build each strategy once per (Cluster, args): Hypothesis validates every new
    strategy object (reading the source of composites), which otherwise costs more
    than drawing from it."""
    return functools.lru_cache(maxsize=None)(fn)  # type: ignore[return-value]


def weighted(draw: Draw, choices: Sequence[tuple[int, st.SearchStrategy[Any]]]) -> Any:
    """Draw from one of ``choices``, picked with the given integer weights.

    ``st.one_of`` weighs its branches equally; the pools below want "mostly
    real members, sometimes garbage".
    """
    total = sum(w for w, _ in choices)
    pick = draw(st.integers(0, total - 1))
    for w, strategy in choices:
        if pick < w:
            return draw(strategy)
        pick -= w
    raise AssertionError("unreachable")


def _ip4(text: str) -> bytes:
    return bytes(int(p) for p in text.split("."))


def _v4_mapped(raw4: bytes) -> bytes:
    return b"\x00" * 10 + b"\xff\xff" + raw4


# --------------------------------------------------------------------------- scalar pools


@functools.cache
def uints(limit: int, *near: int) -> st.SearchStrategy[int]:
    """0, 1, 2, max-1, max of an unsigned wire type, plus ``near`` values and anything."""
    special = sorted({0, 1, 2, limit - 1, limit, *near})
    return st.one_of(st.sampled_from(special), st.integers(0, limit))


@_per_cluster
def ltimes(c: Cluster) -> st.SearchStrategy[int]:
    """uint64 Lamport times: near the real clocks (small), far future, extremes."""
    top = LTIME_HAZARD_FLOOR - 1 if c.avoids(HAZARD_LTIME_PAST_HALF) else U64
    special = [v for v in (0, 1, 2, 3, 1 << 31, 1 << 32, (1 << 63) - 2, (1 << 63) - 1, 1 << 63,
                           (1 << 63) + 1, LTIME_HAZARD_FLOOR - 1, LTIME_EDGE - 1, LTIME_EDGE,
                           LTIME_EDGE + 1, U64 - 2, U64 - 1, U64)
               if v <= top]
    return st.one_of(st.integers(0, 64), st.sampled_from(special), st.integers(0, top))


@_per_cluster
def incarnations(c: Cluster) -> st.SearchStrategy[int]:
    """uint32 incarnations: around the real ones (small), far ahead, extremes."""
    top = INCARNATION_HAZARD_FLOOR - 1 if c.avoids(HAZARD_INCARNATION_NEAR_MAX) else U32
    special = [v for v in (0, 1, 2, 3, 1 << 31, INCARNATION_HAZARD_FLOOR - 1, U32 - 2, U32 - 1,
                           U32) if v <= top]
    return st.one_of(st.integers(0, 16), st.sampled_from(special), st.integers(0, top))


@functools.cache
def seq_nos() -> st.SearchStrategy[int]:
    """uint32 sequence numbers; small ones collide with real probes (they start at 1)."""
    return st.one_of(st.integers(0, 64), uints(U32))


@functools.cache
def ports() -> st.SearchStrategy[int]:
    """uint16 ports; the cluster's own (7946) often, so fakes are reachable."""
    return st.one_of(st.just(7946), uints(U16, 7946, 1 << 15))


@functools.cache
def timeouts() -> st.SearchStrategy[int]:
    """int64 nanosecond query timeouts: zero, negative, huge, plausible."""
    special = [0, 1, -1, I64_MIN, I64_MIN + 1, I64_MAX - 1, I64_MAX, 3 * 10**9, 15 * 10**9,
               10**18]
    return st.one_of(st.sampled_from(special), st.integers(I64_MIN, I64_MAX))


@functools.cache
def relay_factors() -> st.SearchStrategy[int]:
    return st.one_of(st.integers(0, 5), uints(U8))


@functools.cache
def query_flags() -> st.SearchStrategy[int]:
    return st.one_of(st.integers(0, 3), uints(U32))


#: Names no honest Serf would use: empty, blank, control characters, ANSI
#: escapes, invalid UTF-8 (lone bytes, surrogates, overlong), bidi overrides,
#: path and format-string bait, Serf's internal prefix.
HOSTILE_NAMES: tuple[bytes, ...] = (
    b"", b" ", b"\x00", b"\x00x", b"a\nb", b"\r\n", b"\t", b"\x7f", b"\x1b[31mred\x1b[0m",
    b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80",
    "ñødé".encode(), "\u202enode".encode(), "💥".encode(), "\ufeff".encode(),
    b"_serf_", b"../../etc/passwd", b"%s%n%x", b"*", b".", b"'; DROP",
)


def _name_variants(name: bytes) -> list[bytes]:
    """Near-misses of a real member name: padding, NULs, case, truncation."""
    return [name + b" ", b" " + name, name + b"\x00", name.upper(), name[:-1], name + b"\n"]


@_per_cluster
def huge_names(c: Cluster) -> st.SearchStrategy[bytes]:
    """Long names: around the 512-byte member-name and 1,024-byte event-name limits,
    a datagram's worth, Serf's 9 KiB event limit."""
    sizes = [64, 255, 256, 511, 512, 513, 1000, 1024, 1025, 1399, 1400, 1500, 4096, 9000]
    return st.builds(lambda n, tag: b"huge%d-" % tag + b"x" * n,
                     st.sampled_from(sizes), st.integers(0, 3))


@functools.cache
def ghost_names() -> st.SearchStrategy[bytes]:
    """Unknown but recurring names, so alive/dead/intents can pile onto the same ghost."""
    return st.integers(0, 15).map(lambda i: b"ghost-%d" % i)


@_per_cluster
def names(c: Cluster, *, allow_empty: bool = True) -> st.SearchStrategy[bytes]:
    """A node name (raw bytes): a member, the receiver itself, a ghost, junk, huge."""
    members = c.member_names()
    variants = [v for n in members for v in _name_variants(n)]
    hostile = [n for n in HOSTILE_NAMES if allow_empty or n]

    @st.composite
    def pick(draw: st.DrawFn) -> bytes:
        name: bytes = weighted(draw, [
            (35, st.sampled_from(members)),
            (15, st.just(c.own_name)),
            (15, ghost_names()),
            (12, st.sampled_from(hostile)),
            (5, st.sampled_from(variants)),
            (4, huge_names(c)),
            (4, st.text(max_size=12).map(lambda s: s.encode("utf-8", "surrogatepass"))),
            (3, st.binary(min_size=0 if allow_empty else 1, max_size=12)),
        ])
        return name

    return pick()


@_per_cluster
def not_member_names(c: Cluster) -> st.SearchStrategy[bytes]:
    """Names that are not the cluster's: ghosts, junk, near-misses of members."""
    members = c.member_names()  # a list: a set's order would vary with PYTHONHASHSEED
    return st.one_of(ghost_names(), st.sampled_from(
        [n for n in HOSTILE_NAMES if n not in members]
        + [v for n in members for v in _name_variants(n)]))


@_per_cluster
def node_names(c: Cluster) -> st.SearchStrategy[bytes]:
    """Names for the subject of alive messages and push-pull rows (hazards applied)."""
    return names(c, allow_empty=not c.avoids(HAZARD_EMPTY_NAME_ALIVE))


@_per_cluster
def ip_raws(c: Cluster) -> st.SearchStrategy[bytes]:
    """Raw IP field values that decode: members' (4 and 16 bytes), ours, empty, odd ones."""
    member4 = [_ip4(a) for a, _ in c.addrs]
    member16 = [_v4_mapped(r) for r in member4]
    attacker = _ip4(c.attacker[0])
    odd = [b"", _ip4("0.0.0.0"), _ip4("255.255.255.255"), _ip4("127.0.0.201"),
           _ip4("224.0.0.1"), b"\x00" * 16, b"\x00" * 15 + b"\x01",
           bytes.fromhex("fd000000000000000000000000000002"), _v4_mapped(attacker)]
    any4: st.SearchStrategy[bytes] = st.binary(min_size=4, max_size=4)
    any16: st.SearchStrategy[bytes] = st.binary(min_size=16, max_size=16)
    if c.loopback_only:
        odd = [raw for raw in odd if len(raw) != 4 or raw in (_ip4("0.0.0.0"), _ip4("127.0.0.201"))]
        odd = [raw for raw in odd if len(raw) != 16 or raw[:10] == b"\x00" * 10]
        any4 = st.binary(min_size=3, max_size=3).map(lambda low: b"\x7f" + low)
        any16 = any4.map(_v4_mapped)
    return st.one_of(
        st.sampled_from(member4), st.just(_ip4(c.own_addr[0])), st.sampled_from(member16),
        st.just(attacker), st.just(attacker), st.sampled_from(odd), any4, any16)


@_per_cluster
def sources(c: Cluster) -> st.SearchStrategy[Address]:
    """Where an injected datagram claims to come from (the UDP source address)."""
    return st.one_of(
        st.sampled_from(c.addrs), st.just(c.own_addr),
        st.sampled_from([c.attacker, ("0.0.0.0", 0), ("::1", 7946),
                         ("255.255.255.255", 65535)]))


#: Tag-filter regexes: plain, anchored, empty, invalid in every way Python's
#: ``re`` reports with ``re.error``, RE2-only and Python-only syntax.
PLAIN_REGEXES: tuple[str, ...] = (
    "web", "^web$", ".*", "", "^$", "eu-.*", "(", "[", "\\", "a{2,1}", "(?P<x>a)(?P=x)",
    "\\p{L}", "[[:alpha:]]", "(?i)WEB", "(?<=a+)b", "\x00", "\udcff", "a" * 1000, "(a|b)*c",
)
#: Regexes that backtrack for seconds to hours on a short tag value (RE2 is linear).
REDOS_REGEXES: tuple[str, ...] = (".*" * 40 + "X", "(?:.*)" * 30 + "!", "(a*)*(a*)*(a*)*$")
#: Regexes that make ``re`` raise OverflowError / RecursionError, not ``re.error``.
CRASH_REGEXES: tuple[str, ...] = ("a{4294967296}", "x{99999999999999999999}",
                                  "(" * 3000 + ")" * 3000)


@_per_cluster
def regexes(c: Cluster) -> st.SearchStrategy[str]:
    pool = list(PLAIN_REGEXES)
    if not c.avoids(HAZARD_REGEX_REDOS):
        pool += REDOS_REGEXES
    if not c.avoids(HAZARD_REGEX_CRASH):
        pool += CRASH_REGEXES
    return st.one_of(st.sampled_from(pool), st.text(max_size=8))


@functools.cache
def payloads(max_huge: int = 9000) -> st.SearchStrategy[bytes]:
    """Opaque payloads: empty, short, exactly-at-limit sizes, big zeros."""
    return st.one_of(
        st.binary(max_size=24),
        st.sampled_from([0, 511, 512, 1024, 9 * 1024, 9 * 1024 + 1, max_huge]).map(
            lambda n: b"\x00" * n))


@functools.cache
def tag_strings() -> st.SearchStrategy[bytes]:
    return st.one_of(st.sampled_from([b"role", b"web", b"", b"\x00", b"\xff", b"\x1b[0m",
                                      b"_serf_", b"lb-state", b"drain"]),
                     st.binary(max_size=10))


@_per_cluster
@st.composite
def metas(draw: st.DrawFn, c: Cluster) -> bytes:
    """Node meta (<= 512 bytes, else the decoder refuses it): Serf tags and everything else."""
    kind = draw(st.integers(0, 5))
    if kind == 0:  # ff + tag map with hostile keys and values
        tags = draw(st.lists(st.tuples(tag_strings(), tag_strings()), max_size=6))
        meta = b"\xff" + gopack(Map(tuple(tags)))
    elif kind == 1:  # legacy role-only meta, including empty
        meta = draw(st.one_of(st.just(b""), st.sampled_from(HOSTILE_NAMES), st.binary(max_size=40)))
    elif kind == 2:  # ff + something that is not a string map
        meta = b"\xff" + draw(st.sampled_from([
            b"", b"\xc0", b"\x80", b"\x01", gopack([1, 2]), gopack({b"k": 5}),
            gopack({5: b"v"}), gopack({b"k": {b"n": b"x"}}), b"\xff\xff"]))
    elif kind == 3:  # exactly at the limit
        meta = b"\xff" + gopack({b"pad": b"p" * (512 - 1 - 1 - 4 - 3)})
    else:  # what a real member would send
        meta = sw.encode_tags(draw(st.sampled_from([{}, {"role": "web"}, {"role": "db"}])))
    assert len(meta) <= codec.MAX_META_SIZE, len(meta)
    return meta


#: Protocol ranges a real Serf 0.9 member advertises.
DEFAULT_VSN = bytes((1, 5, 2, 2, 5, 5))


@_per_cluster
def vsns(c: Cluster) -> st.SearchStrategy[Any]:
    """Vsn fields: real, empty (dropped), zero/inverted ranges (dropped), odd currents.

    ``HAZARD_INCOMPATIBLE_VSN`` covers a Vsn that passes the alive checks but
    whose current versions are outside the ranges of the others: while such a
    member is alive, every push-pull merge fails the protocol check.
    """
    ok = [DEFAULT_VSN, bytes((1, 5, 5, 2, 5, 5)), bytes((2, 5, 2, 2, 5, 5)),
          bytes((1, 5, 2, 2, 5, 2)), b"", bytes(6), bytes((5, 1, 2, 2, 5, 5)),
          bytes((0, 5, 2, 2, 5, 5))]
    odd = [bytes((3, 3, 3, 2, 5, 5)), bytes((255,) * 6), bytes((1, 1, 1, 1, 1, 1)),
           bytes((1, 5, 9, 2, 5, 5)), bytes((1, 5, 2, 9, 9, 9))]
    pool = ok if c.avoids(HAZARD_INCOMPATIBLE_VSN) else ok + odd
    raw = st.sampled_from(pool)
    return st.one_of(raw, raw, raw.map(list), raw.map(Bin))


# --------------------------------------------------------------------------- field styles


def _widths(v: int) -> list[int]:
    return [code for code, (lo, hi) in _INT_RANGES.items() if lo <= v <= hi]


def style_uint(draw: st.DrawFn, v: int) -> Any:
    """An unsigned field: usually plain, sometimes a wider (even signed) form, nil for 0."""
    k = draw(st.integers(0, 19))
    if k < 3:
        return Int(v, draw(st.sampled_from(_widths(v))))
    if k == 3 and v == 0:
        return None
    return v


def style_str(draw: st.DrawFn, b: bytes) -> Any:
    """A Go string field: raw (Go's form), str8, bin, or nil when empty."""
    k = draw(st.integers(0, 19))
    if k == 0 and len(b) <= U8:
        return Str8(b)
    if k == 1:
        return Bin(b)
    if k == 2 and not b:
        return None
    return b


def style_raw(draw: st.DrawFn, b: bytes) -> Any:
    """A Go ``[]byte`` field: raw, str8, bin, an array of ints, or nil when empty."""
    k = draw(st.integers(0, 19))
    if k == 0 and len(b) <= U8:
        return Str8(b)
    if k == 1:
        return Bin(b)
    if k == 2 and len(b) <= 64:
        return list(b)
    if k == 3 and not b:
        return None
    return b


def style_bool(draw: st.DrawFn, v: bool) -> Any:
    return None if not v and draw(st.integers(0, 4)) == 0 else v


_JUNK_VALUES: tuple[Any, ...] = (None, 0, -1, U64, 1.5, b"", b"junk", [1, b"x", None],
                                 {b"a": {b"b": [None]}}, True)


def struct_map(draw: st.DrawFn, fields: Sequence[tuple[bytes, Any]]) -> Map:
    """A Go struct as a msgpack map, keys sorted like Go's -- or not.

    Zero values may be omitted (Go zero-fills), unknown keys added (Go skips
    them), a key repeated with a junk value first (the last one wins), the
    order shuffled (Go ignores it).
    """
    pairs = list(fields)
    k = draw(st.integers(0, 19))
    if k == 0:
        pairs = [(key, v) for key, v in pairs if v not in (0, b"", False, None, [])]
    elif k == 1:
        extra = draw(st.lists(st.tuples(st.sampled_from([b"Unknown", b"", b"\xff", b"node"]),
                                        st.sampled_from(_JUNK_VALUES)), min_size=1, max_size=3))
        pairs = [*pairs, *extra]
    elif k == 2 and pairs:
        key, _ = draw(st.sampled_from(pairs))
        if key not in (b"Filters", b"Events", b"LeftMembers", b"StatusLTimes", b"DestAddr"):
            pairs.insert(0, (key, None))
    elif k == 3:
        pairs = draw(st.permutations(pairs))
    return Map(tuple(pairs))


# --------------------------------------------------------------------------- memberlist messages


def _msg(kind: int, body: Any) -> bytes:
    return bytes((kind,)) + gopack(body)


@_per_cluster
@st.composite
def _source_fields(draw: st.DrawFn, c: Cluster) -> list[tuple[bytes, Any]]:
    """The omitempty ``Source*`` fields of ping and indirect ping."""
    out: list[tuple[bytes, Any]] = []
    if draw(st.booleans()):
        out.append((b"SourceAddr", style_raw(draw, draw(ip_raws(c)))))
    if draw(st.booleans()):
        out.append((b"SourceNode", style_str(draw, draw(names(c)))))
    if draw(st.booleans()):
        out.append((b"SourcePort", style_uint(draw, draw(ports()))))
    return out


@_per_cluster
@st.composite
def pings(draw: st.DrawFn, c: Cluster) -> bytes:
    """``00 ping``: for us, for someone else, from anywhere (reflection via Source*)."""
    fields = [(b"Node", style_str(draw, draw(names(c)))),
              (b"SeqNo", style_uint(draw, draw(seq_nos()))), *draw(_source_fields(c))]
    return _msg(MessageType.PING, struct_map(draw, sorted(fields)))


@_per_cluster
@st.composite
def indirect_pings(draw: st.DrawFn, c: Cluster) -> bytes:
    """``01 indirectPingReq``: make us ping any address, maybe nack a requester."""
    fields = [(b"Nack", style_bool(draw, draw(st.booleans()))),
              (b"Node", style_str(draw, draw(names(c)))),
              (b"Port", style_uint(draw, draw(ports()))),
              (b"SeqNo", style_uint(draw, draw(seq_nos()))),
              (b"Target", style_raw(draw, draw(ip_raws(c)))), *draw(_source_fields(c))]
    return _msg(MessageType.INDIRECT_PING, struct_map(draw, sorted(fields)))


@functools.cache
def coordinate_numbers() -> st.SearchStrategy[Any]:
    """Values for a coordinate's float64 fields: the edges of our domain (100 s),
    overflow, NaN, infinities, subnormals, negatives, integers, nil."""
    return st.one_of(
        st.sampled_from([0.0, -0.0, 5e-324, 1e-6, 1e-5, 1.5, 100.0, 100.00000000000001,
                         -100.0, -100.00000000000001, 1e154, 1e308, -1e308, math.nan,
                         math.inf, -math.inf, 0, 1, -1, U64, None]),
        st.floats(-200.0, 200.0, allow_nan=False))


@st.composite
def coordinate_payloads(draw: st.DrawFn) -> bytes:
    """Serf's ack payload, ``01`` + ``{Adjustment, Error, Height, Vec}``, with hostile
    values: every field at the edges, too few or too many dimensions, another version."""
    n = draw(st.sampled_from([8, 8, 8, 8, 0, 1, 7, 9, 64, 65]))
    vec = [draw(coordinate_numbers()) for _ in range(n)] if n < 9 else [
        draw(coordinate_numbers())] * n
    fields = [(b"Adjustment", draw(coordinate_numbers())),
              (b"Error", draw(coordinate_numbers())),
              (b"Height", draw(coordinate_numbers())),
              (b"Vec", vec or None)]
    version = draw(st.sampled_from([1, 1, 1, 1, 0, 2, 255]))
    return bytes((version,)) + gopack(struct_map(draw, fields))


@_per_cluster
@st.composite
def acks(draw: st.DrawFn, c: Cluster) -> bytes:
    """``02 ackResp``: spoofed acks for guessable sequence numbers, odd payloads,
    hostile Vivaldi coordinates (a spoofed ack for the probe in flight is a sample)."""
    payload = draw(st.one_of(payloads(4000), coordinate_payloads()))
    fields = [(b"Payload", style_raw(draw, payload)),
              (b"SeqNo", style_uint(draw, draw(seq_nos())))]
    return _msg(MessageType.ACK, struct_map(draw, fields))


@_per_cluster
@st.composite
def nacks(draw: st.DrawFn, c: Cluster) -> bytes:
    return _msg(MessageType.NACK,
                struct_map(draw, [(b"SeqNo", style_uint(draw, draw(seq_nos())))]))


@_per_cluster
@st.composite
def _accusation(draw: st.DrawFn, c: Cluster, kind: int) -> bytes:
    node = draw(names(c))
    # From == Node on a dead means "left gracefully": make that common.
    from_ = node if draw(st.integers(0, 3)) == 0 else draw(names(c))
    if (kind == MessageType.DEAD and from_ == node and node in c.member_names()
            and c.avoids(HAZARD_LEAVE_LIVE_MEMBER)):
        from_ = b"ghost-0"  # a failure, not a leave
    fields = [(b"From", style_str(draw, from_)),
              (b"Incarnation", style_uint(draw, draw(incarnations(c)))),
              (b"Node", style_str(draw, node))]
    return _msg(kind, struct_map(draw, fields))


@_per_cluster
def suspects(c: Cluster) -> st.SearchStrategy[bytes]:
    """``03 suspect`` about anyone (us included), at any incarnation."""
    return _accusation(c, MessageType.SUSPECT)


@_per_cluster
def deads(c: Cluster) -> st.SearchStrategy[bytes]:
    """``05 dead`` about anyone, as a failure or (From == Node) a leave."""
    return _accusation(c, MessageType.DEAD)


@_per_cluster
@st.composite
def alive_fields(draw: st.DrawFn, c: Cluster) -> list[tuple[bytes, Any]]:
    """The fields of an alive / push-pull row: a member's or a ghost's, real or forged."""
    return [(b"Addr", style_raw(draw, draw(ip_raws(c)))),
            (b"Incarnation", style_uint(draw, draw(incarnations(c)))),
            (b"Meta", style_raw(draw, draw(metas(c)))),
            (b"Node", style_str(draw, draw(node_names(c)))),
            (b"Port", style_uint(draw, draw(ports()))),
            (b"Vsn", draw(vsns(c)))]


@_per_cluster
@st.composite
def alives(draw: st.DrawFn, c: Cluster) -> bytes:
    """``04 alive``: ghosts, impersonations (own name, members' names), forged tags."""
    return _msg(MessageType.ALIVE, struct_map(draw, draw(alive_fields(c))))


@_per_cluster
@st.composite
def errs(draw: st.DrawFn, c: Cluster) -> bytes:
    """``0d errResp``, which nobody should send us on UDP."""
    return _msg(MessageType.ERR,
                struct_map(draw, [(b"Error", style_str(draw, draw(names(c))))]))


# --------------------------------------------------------------------------- Serf messages


def _serf(kind: int, body: Any) -> bytes:
    return bytes((kind,)) + gopack(body)


def _gossip_sized(c: Cluster, kind: int, body: Map, shrink: dict[bytes, Any],
                  hazards: tuple[str, ...] = (HAZARD_OVERSIZED_GOSSIP,)) -> bytes:
    """``kind | body``, with the ``shrink`` fields swapped in when the message would
    exceed :data:`GOSSIP_SAFE_SIZE` and any of ``hazards`` is avoided."""
    out = _serf(kind, body)
    if len(out) <= GOSSIP_SAFE_SIZE or not any(map(c.avoids, hazards)):
        return out
    out = _serf(kind, Map(tuple((k, shrink.get(k, v)) for k, v in body.pairs)))
    assert len(out) <= GOSSIP_SAFE_SIZE, len(out)
    return out


@_per_cluster
@st.composite
def join_intents(draw: st.DrawFn, c: Cluster) -> bytes:
    """Serf ``01 join``: for anyone, at any Lamport time."""
    return _gossip_sized(c, sw.SerfMessageType.JOIN, struct_map(draw, [
        (b"LTime", style_uint(draw, draw(ltimes(c)))),
        (b"Node", style_str(draw, draw(names(c))))]), {b"Node": b"ghost-0"})


@_per_cluster
@st.composite
def leave_intents(draw: st.DrawFn, c: Cluster) -> bytes:
    """Serf ``00 leave``: forged leaves, with and without Prune."""
    node = draw(not_member_names(c) if c.avoids(HAZARD_LEAVE_LIVE_MEMBER) else names(c))
    prune = draw(st.booleans())
    return _gossip_sized(c, sw.SerfMessageType.LEAVE, struct_map(draw, [
        (b"LTime", style_uint(draw, draw(ltimes(c)))),
        (b"Node", style_str(draw, node)),
        (b"Prune", style_bool(draw, prune))]), {b"Node": b"ghost-0"})


#: User event names: real-looking, empty, hostile.
@_per_cluster
def event_names(c: Cluster) -> st.SearchStrategy[bytes]:
    return st.one_of(st.sampled_from([b"deploy", b"", b"hostile-check"]),
                     st.sampled_from(HOSTILE_NAMES), huge_names(c),
                     st.binary(max_size=8))


@_per_cluster
@st.composite
def user_events(draw: st.DrawFn, c: Cluster) -> bytes:
    """Serf ``03 userEvent``: any LTime, names and payloads past Serf's send limits."""
    return _gossip_sized(c, sw.SerfMessageType.USER_EVENT, struct_map(draw, [
        (b"CC", style_bool(draw, draw(st.booleans()))),
        (b"LTime", style_uint(draw, draw(ltimes(c)))),
        (b"Name", style_str(draw, draw(event_names(c)))),
        (b"Payload", style_raw(draw, draw(payloads())))]), {b"Name": b"big", b"Payload": None},
        # Too big to gossip, an event is applied (its time witnessed) by the
        # receiver alone: that is a clock skew too.
        (HAZARD_OVERSIZED_GOSSIP, HAZARD_EVENT_CLOCK_SKEW))


@_per_cluster
@st.composite
def filters(draw: st.DrawFn, c: Cluster) -> bytes:
    """One query filter (never empty: that one the decoder refuses)."""
    kind = draw(st.integers(0, 5))
    if kind <= 1:  # node filter: us, members, strangers, nobody (nil)
        listed = draw(st.one_of(st.none(), st.lists(names(c), max_size=4)))
        return b"\x00" + gopack(listed)
    if kind <= 3:
        return b"\x01" + gopack(struct_map(draw, [
            (b"Expr", style_str(draw, draw(regexes(c)).encode("utf-8", "surrogateescape"))),
            (b"Tag", style_str(draw, draw(tag_strings())))]))
    # Unknown filter types and bodies Go cannot decode (they never match).
    return draw(st.sampled_from([b"\x02", b"\x00\x01", b"\x01\x90", b"\xff junk", b"\x00\xc1"]))


INTERNAL_QUERIES = ("_serf_ping", "_serf_conflict", "_serf_install-key", "_serf_use-key",
                    "_serf_remove-key", "_serf_list-keys", "_serf_", "_serf_unknown")


@functools.cache
@st.composite
def key_requests(draw: st.DrawFn) -> bytes:
    """Serf ``07 keyRequest`` (the payload of the key queries)."""
    key = draw(st.one_of(st.sampled_from([b"", bytes(16), bytes(24), bytes(32)]),
                         st.binary(max_size=40)))
    return _serf(sw.SerfMessageType.KEY_REQUEST, struct_map(draw, [(b"Key", style_raw(draw, key))]))


@_per_cluster
@st.composite
def queries(draw: st.DrawFn, c: Cluster) -> bytes:
    """Serf ``04 query``: every field hostile -- reply address, filters, flags,
    relay factor, timeout, internal query names with fitting payloads."""
    name = draw(st.one_of(st.sampled_from(INTERNAL_QUERIES).map(str.encode), event_names(c)))
    if name == b"_serf_conflict":
        payload = draw(names(c))
    elif name.startswith(b"_serf_") and name.endswith((b"-key", b"-keys")):
        payload = draw(st.one_of(key_requests(), payloads()))
    else:
        payload = draw(payloads())
    flist = draw(st.lists(filters(c), max_size=3))
    return _gossip_sized(c, sw.SerfMessageType.QUERY, struct_map(draw, [
        (b"Addr", style_raw(draw, draw(ip_raws(c)))),
        (b"Filters", flist or None),
        (b"Flags", style_uint(draw, draw(query_flags()))),
        (b"ID", style_uint(draw, draw(uints(U32)))),
        (b"LTime", style_uint(draw, draw(ltimes(c)))),
        (b"Name", style_str(draw, name)),
        (b"Payload", style_raw(draw, payload)),
        (b"Port", style_uint(draw, draw(ports()))),
        (b"RelayFactor", style_uint(draw, draw(relay_factors()))),
        (b"SourceNode", style_str(draw, draw(names(c)))),
        (b"Timeout", draw(timeouts()))]),
        {b"Filters": None, b"Name": b"big", b"Payload": None, b"SourceNode": b"ghost-0"})


@_per_cluster
@st.composite
def query_responses(draw: st.DrawFn, c: Cluster) -> bytes:
    """Serf ``05 queryResponse``: small LTimes hit real outbound queries; From anyone."""
    return _serf(sw.SerfMessageType.QUERY_RESPONSE, struct_map(draw, [
        (b"Flags", style_uint(draw, draw(query_flags()))),
        (b"From", style_str(draw, draw(names(c)))),
        (b"ID", style_uint(draw, draw(uints(U32)))),
        (b"LTime", style_uint(draw, draw(ltimes(c)))),
        (b"Payload", style_raw(draw, draw(payloads())))]))


@_per_cluster
@st.composite
def conflict_responses(draw: st.DrawFn, c: Cluster) -> bytes:
    """Serf ``06`` conflict response: nil or a Member struct with odd values."""
    if draw(st.booleans()):
        return _serf(sw.SerfMessageType.CONFLICT_RESPONSE, None)
    u8 = uints(U8)
    return _serf(sw.SerfMessageType.CONFLICT_RESPONSE, struct_map(draw, [
        (b"Addr", draw(ip_raws(c))), (b"DelegateCur", draw(u8)), (b"DelegateMax", draw(u8)),
        (b"DelegateMin", draw(u8)), (b"Name", draw(names(c))), (b"Port", draw(ports())),
        (b"ProtocolCur", draw(u8)), (b"ProtocolMax", draw(u8)), (b"ProtocolMin", draw(u8)),
        (b"Status", draw(st.sampled_from([0, 1, 4, -1, I64_MAX, I64_MIN]))),
        (b"Tags", {b"role": b"web"})]))


@_per_cluster
@st.composite
def key_responses(draw: st.DrawFn, c: Cluster) -> bytes:
    return _serf(sw.SerfMessageType.KEY_RESPONSE, struct_map(draw, [
        (b"Keys", draw(st.lists(st.binary(max_size=44), max_size=3)) or None),
        (b"Message", draw(names(c))), (b"PrimaryKey", b""),
        (b"Result", draw(st.booleans()))]))


@_per_cluster
@st.composite
def relays(draw: st.DrawFn, c: Cluster, depth: int = 0) -> bytes:
    """Serf ``09`` relay: make us forward anything (a response, a query, another
    relay) to any address -- members, ourselves, nowhere."""
    dest = struct_map(draw, [(b"IP", style_raw(draw, draw(ip_raws(c)))),
                             (b"Port", style_uint(draw, draw(ports()))),
                             (b"Zone", style_str(draw, draw(st.sampled_from([b"", b"eth0",
                                                                               b"\x00"]))))])
    header = struct_map(draw, [(b"DestAddr", dest), (b"DestName", style_str(draw, draw(names(c))))])
    inner: list[st.SearchStrategy[bytes]] = [query_responses(c), user_events(c), queries(c),
                                             leave_intents(c), st.binary(min_size=1, max_size=8)]
    if depth < 2:
        inner.append(relays(c, depth + 1))
    message = draw(st.one_of(inner))
    return bytes((sw.SerfMessageType.RELAY,)) + gopack(header) + message


@_per_cluster
def _state_event_ltimes(c: Cluster) -> st.SearchStrategy[int]:
    """Event times in a Serf push-pull state: 0 or 1 (moving no clock) when
    ``HAZARD_EVENT_CLOCK_SKEW`` is avoided."""
    return st.integers(0, 1) if c.avoids(HAZARD_EVENT_CLOCK_SKEW) else ltimes(c)


@_per_cluster
@st.composite
def _event_slot(draw: st.DrawFn, c: Cluster) -> Any:
    if draw(st.integers(0, 2)) == 0:
        return None
    events = draw(st.lists(st.builds(lambda n, p: {b"Name": n, b"Payload": p or None},
                                     event_names(c), st.binary(max_size=16)), max_size=3))
    return struct_map(draw, [(b"Events", events or None),
                             (b"LTime", style_uint(draw, draw(_state_event_ltimes(c))))])


@_per_cluster
@st.composite
def serf_push_pulls(draw: st.DrawFn, c: Cluster) -> bytes:
    """Serf ``02 pushPull`` user state: clocks, status times, left members, the event ring.

    ``HAZARD_LEAVE_LIVE_MEMBER`` keeps members out of LeftMembers.
    """
    left_pool = not_member_names(c) if c.avoids(HAZARD_LEAVE_LIVE_MEMBER) else names(c)
    left = draw(st.lists(left_pool, max_size=4))
    status = draw(st.lists(st.tuples(names(c), ltimes(c)), max_size=5))
    ring_len = draw(st.sampled_from([0, 1, 3, 8, 512, 600]))
    events: list[Any] = []
    if ring_len:
        filled = draw(st.lists(_event_slot(c), max_size=min(ring_len, 6)))
        events = [None] * ring_len
        for i, slot in enumerate(filled):
            events[(i * 97) % ring_len] = slot
    return _serf(sw.SerfMessageType.PUSH_PULL, struct_map(draw, [
        (b"EventLTime", style_uint(draw, draw(_state_event_ltimes(c)))),
        (b"Events", events or None),
        (b"LTime", style_uint(draw, draw(ltimes(c)))),
        (b"LeftMembers", left),
        (b"QueryLTime", style_uint(draw, draw(ltimes(c)))),
        (b"StatusLTimes", Map(tuple(status)))]))


@_per_cluster
def serf_messages(c: Cluster) -> st.SearchStrategy[bytes]:
    """Any Serf message, as ``serfType | msgpack`` bytes."""
    return st.one_of(
        join_intents(c), leave_intents(c), user_events(c), queries(c), queries(c),
        query_responses(c), relays(c), serf_push_pulls(c), key_requests(),
        conflict_responses(c), key_responses(c),
        # Unknown Serf types: logged and ignored.
        st.builds(lambda t, b: bytes((t,)) + b, st.integers(10, 255), st.binary(max_size=8)))


def user_datagram(serf_bytes: bytes) -> bytes:
    """A memberlist user message (``08``) carrying Serf bytes, as on UDP."""
    return bytes((MessageType.USER,)) + serf_bytes


# --------------------------------------------------------------------------- datagrams


@_per_cluster
def single_messages(c: Cluster) -> st.SearchStrategy[bytes]:
    """One non-wrapper datagram message of any kind (Serf ones twice as likely)."""
    serf_msgs = serf_messages(c).map(user_datagram)
    return st.one_of(pings(c), indirect_pings(c), acks(c), nacks(c), suspects(c), alives(c),
                     deads(c), errs(c), serf_msgs, serf_msgs, serf_msgs)


def compound(parts: Sequence[bytes]) -> bytes:
    """``07``: n, n big-endian u16 lengths, the parts (swimlib refuses 0 or >127 parts)."""
    assert 0 < len(parts) <= codec.MAX_COMPOUND_PARTS and all(parts)
    return (bytes((MessageType.COMPOUND, len(parts)))
            + struct.pack(f">{len(parts)}H", *map(len, parts)) + b"".join(parts))


def compress(inner: bytes) -> bytes:
    """``09``: LZW (Go's compress/lzw, LSB, 8) of a non-empty message."""
    return bytes((MessageType.COMPRESS,)) + gopack({b"Algo": 0, b"Buf": lzw.compress(inner)})


def crc(inner: bytes) -> bytes:
    """``0c``: CRC-32/IEEE of the rest, then the rest."""
    return bytes((MessageType.HAS_CRC,)) + struct.pack(">I", zlib.crc32(inner)) + inner


@_per_cluster
@st.composite
def floods(draw: st.DrawFn, c: Cluster) -> bytes:
    """A compound of up to 127 near-identical messages that differ in one field.

    One datagram, up to 127 *distinct* queries (IDs), user events (names at
    one LTime), ghosts (names) or intents: what grows per-message state.
    """
    kind = draw(st.integers(0, 3))
    n = draw(st.sampled_from([2, 16, 64, codec.MAX_COMPOUND_PARTS]))
    if kind == 2:
        n = min(n, c.max_fakes)
    ltime = draw(ltimes(c))
    timeout = draw(timeouts())
    parts: list[bytes] = []
    for i in range(n):
        if kind == 0:
            body = _serf(sw.SerfMessageType.QUERY, {
                b"Addr": _ip4(c.own_addr[0]), b"Filters": None, b"Flags": 2, b"ID": i,
                b"LTime": ltime, b"Name": b"flood", b"Payload": None, b"Port": 7946,
                b"RelayFactor": 0, b"SourceNode": b"ghost-0", b"Timeout": timeout})
            part = user_datagram(body)
        elif kind == 1:
            part = user_datagram(_serf(sw.SerfMessageType.USER_EVENT, {
                b"CC": False, b"LTime": ltime, b"Name": b"flood-%d" % i, b"Payload": None}))
        elif kind == 2:
            part = _msg(MessageType.ALIVE, {
                b"Addr": _ip4(c.attacker[0]), b"Incarnation": 1, b"Meta": None,
                b"Node": b"flood-%d" % i, b"Port": 7946, b"Vsn": DEFAULT_VSN})
        else:
            part = user_datagram(_serf(sw.SerfMessageType.JOIN,
                                       {b"LTime": ltime, b"Node": b"flood-%d" % i}))
        parts.append(part)
    return compound(parts)


@_per_cluster
@st.composite
def hostile_datagrams(draw: st.DrawFn, c: Cluster) -> bytes:
    """Any datagram: one message, or up to three layers of compound/compress/CRC
    around messages, or a flood. Always <= 64 KiB and accepted by ``decode_packet``."""
    shape = draw(st.integers(0, 9))
    if shape == 9:
        data = draw(floods(c))
    elif shape >= 5:
        data = draw(single_messages(c))
    else:
        parts = draw(st.lists(single_messages(c), min_size=1, max_size=4))
        # Repeat them to reach large part counts cheaply (duplicates are normal on the wire).
        count = draw(st.sampled_from([len(parts), len(parts), 20, codec.MAX_COMPOUND_PARTS]))
        parts = [parts[i % len(parts)] for i in range(count)]
        while sum(map(len, parts)) + 2 * len(parts) + 2 > codec.MAX_PACKET_SIZE - 64:
            parts.pop()
        data = compound(parts) if parts else draw(pings(c))
    for _ in range(draw(st.integers(0, 2))):
        wrap = draw(st.sampled_from([compress, crc, lambda d: compound([d])]))
        wrapped = wrap(data)
        if len(wrapped) <= codec.MAX_PACKET_SIZE:
            data = wrapped
    return data


# --------------------------------------------------------------------------- streams


@_per_cluster
@st.composite
def push_pull_rows(draw: st.DrawFn, c: Cluster) -> Map:
    """One push-pull node state: an alive message's fields plus a ``State`` 0-3."""
    fields = draw(alive_fields(c))
    state = draw(st.sampled_from([0, 0, 1, 2, 3]))
    node = dict(fields)[b"Node"]
    if (state == 3 and c.avoids(HAZARD_LEAVE_LIVE_MEMBER)
            and _raw_of(node) in c.member_names()):
        state = 2  # dead, not left: merged as a suspicion
    fields.insert(5, (b"State", style_uint(draw, state)))
    return struct_map(draw, fields)


def _raw_of(value: Any) -> bytes | None:
    """The bytes of a (possibly restyled) string field."""
    if isinstance(value, (Str8, Bin)):
        return value.data
    return value if isinstance(value, bytes) else None


@_per_cluster
@st.composite
def push_pulls(draw: st.DrawFn, c: Cluster) -> bytes:
    """``06`` push-pull: header, rows about anyone, and a Serf user state (or not)."""
    rows = draw(st.lists(push_pull_rows(c), max_size=4))
    user = draw(st.one_of(serf_push_pulls(c), serf_push_pulls(c), st.just(b""),
                          serf_messages(c), st.binary(max_size=8)))
    header = struct_map(draw, [(b"Join", style_bool(draw, draw(st.booleans()))),
                               (b"Nodes", style_uint(draw, len(rows))),
                               (b"UserStateLen", style_uint(draw, len(user)))])
    return (bytes((MessageType.PUSH_PULL,)) + gopack(header)
            + b"".join(gopack(r) for r in rows) + user)


@_per_cluster
@st.composite
def stream_pings(draw: st.DrawFn, c: Cluster) -> bytes:
    """The fallback TCP ping (``00 ping`` on a stream), answered with an ack or an err."""
    return draw(pings(c))


@_per_cluster
@st.composite
def stream_user_messages(draw: st.DrawFn, c: Cluster) -> bytes:
    """``08 userMsgHeader bytes``: a reliable user message (Serf never sends one)."""
    payload = draw(st.one_of(serf_messages(c), st.binary(max_size=8)))
    header = struct_map(draw, [(b"UserMsgLen", style_uint(draw, len(payload)))])
    return bytes((MessageType.USER,)) + gopack(header) + payload


@_per_cluster
@st.composite
def hostile_streams(draw: st.DrawFn, c: Cluster) -> bytes:
    """Any inbound stream payload: push-pull (most), fallback ping, user message,
    ack/err nobody asked for, any of them compressed, with trailing junk."""
    data: bytes = draw(st.one_of(push_pulls(c), push_pulls(c), push_pulls(c), stream_pings(c),
                                 stream_user_messages(c), acks(c), errs(c)))
    if draw(st.integers(0, 5)) == 0:
        data = compress(data)
    if draw(st.integers(0, 7)) == 0:
        data += draw(st.binary(min_size=1, max_size=8))
    return data


# --------------------------------------------------------------------------- reading them back


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"...<{len(text)} chars>"


def describe_serf(data: bytes) -> str:
    try:
        return _short(sw.decode_serf(data))
    except DecodeError as exc:
        return f"<serf {exc.reason}: {data[:16].hex()}>"


def describe_datagram(data: bytes) -> str:
    """The decoded messages of a datagram, Serf ones decoded too (for failure notes)."""
    try:
        msgs = codec.decode_packet(data)
    except DecodeError as exc:
        return f"<undecodable {exc.reason}>"
    out = []
    for m in msgs[:8]:
        out.append(describe_serf(m.payload) if isinstance(m, UserMsg) else _short(m))
    if len(msgs) > 8:
        out.append(f"... {len(msgs)} messages")
    return "; ".join(out)


def describe_stream(data: bytes) -> str:
    try:
        msg = codec.decode_stream(data)
    except DecodeError as exc:
        return f"<undecodable {exc.reason}>"
    if isinstance(msg, PushPull):
        return f"PushPull(join={msg.join}, nodes={_short(msg.nodes)}, user={describe_serf(msg.user_state) if msg.user_state else 'none'})"  # noqa: E501
    if isinstance(msg, UserMsg):
        return "stream user " + describe_serf(msg.payload)
    return _short(msg)
