"""serf's ``-discover`` without I/O: when to ask, what to answer, whom to join.

Serf (``cmd/serf/command/agent/mdns.go`` over hashicorp/mdns) advertises each
agent as an instance of ``_serf_<cluster>._tcp.local.``: a PTR to
``<node>._serf_<cluster>._tcp.local.``, an SRV with the gossip port and the
host name, the host's A (or AAAA) record with the advertised address, and a
TXT ``Serf '<cluster>' cluster``. Every 60 s it asks for the service, and
joins every new address it hears of once 100 ms pass with nothing new.
:class:`Discovery` does the same, fed packets and the time by its shell
(:mod:`swimlib.agent.mdns`), and answers as hashicorp/mdns answers.

What it adds, because anyone on the LAN can speak mDNS: answers count only
within :data:`QUERY_WINDOW` of our own question; at most
:data:`MAX_JOINS_PER_POLL` new addresses are joined per poll; addresses no
peer can have (unspecified, multicast, link-local, loopback unless we are on
loopback ourselves) and our own advert are skipped; answers to queries are
rate-limited (a spoofed source would otherwise make us a reflector); and
every refused packet is counted under ``drop.mdns.<reason>``.
"""

from __future__ import annotations

import ipaddress
import random
from collections import Counter, OrderedDict
from collections.abc import Collection, Iterator
from typing import Final

from swimlib.mdns import codec
from swimlib.mdns.codec import (
    CLASS_IN,
    FLAG_AUTHORITATIVE,
    FLAG_RESPONSE,
    FLAG_TRUNCATED,
    TOP_BIT,
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    TYPE_PTR,
    TYPE_SRV,
    TYPE_TXT,
    DnsError,
    Message,
    Name,
    Question,
    ResourceRecord,
    Srv,
    folded,
)
from swimlib.records import record

MDNS_PORT: Final = 5353
MDNS_GROUP_V4: Final = ("224.0.0.251", MDNS_PORT)
#: serf's mdnsPollInterval and mdnsQuietInterval.
POLL_INTERVAL: Final = 60.0
QUIET_INTERVAL: Final = 0.1
#: hashicorp/mdns's query timeout: an answer later than this is not to our question.
QUERY_WINDOW: Final = 1.0
#: hashicorp/mdns's record TTL, and its SRV priority and weight.
TTL: Final = 120
SRV_PRIORITY, SRV_WEIGHT = 10, 1
#: New addresses joined per poll at most (serf: no limit); the rest are counted.
MAX_JOINS_PER_POLL: Final = 8
#: Addresses remembered as joined (serf: all, for ever); the oldest are forgotten.
SEEN_LIMIT: Final = 1024
#: Answers we send: a burst, then this many a second.
ANSWER_BURST: Final = 20
ANSWER_RATE: Final = 10.0


def service_name(cluster: str) -> str:
    """serf's ``mdnsName``."""
    return f"_serf_{cluster}._tcp"


@record
class Send:
    """A datagram for the shell to send."""

    data: bytes
    dest: tuple[str, int]


@record
class Join:
    """Addresses (``host:port``) for the agent to join, in one call."""

    addrs: tuple[str, ...]


@record
class Entry:
    """One peer an answer told of."""

    instance: Name
    addr: str
    port: int


class Advert:
    """What we answer for: hashicorp/mdns's ``MDNSService`` zone."""

    def __init__(self, cluster: str, node: str, host: str, addr: str, port: int) -> None:
        """``ValueError`` if ``node`` or ``host`` cannot be a DNS name."""
        self.service = codec.name_from_text(service_name(cluster) + ".local.")
        self.instance = codec.name_from_text(node) + self.service
        codec.check_name(self.instance)
        self.enum = codec.name_from_text("_services._dns-sd._udp.local.")
        self.host = codec.name_from_text(host)
        self.addr = addr
        self.port = port
        self.txt = (f"Serf '{cluster}' cluster".encode("utf-8", "surrogateescape"),)

    def records(self, q: Question) -> list[ResourceRecord]:
        """hashicorp/mdns ``Records``: the answer to one question (maybe none)."""
        name = folded(q.name)
        if name == folded(self.enum) and q.qtype in (TYPE_PTR, TYPE_ANY):
            return [self._rr(self.enum, TYPE_PTR, self.service)]
        if name == folded(self.service) and q.qtype in (TYPE_PTR, TYPE_ANY):
            return [self._rr(self.service, TYPE_PTR, self.instance), *self._instance(TYPE_ANY)]
        if name == folded(self.instance):
            return self._instance(q.qtype)
        if name == folded(self.host) and q.qtype in (TYPE_A, TYPE_AAAA):
            return self._instance(q.qtype)
        return []

    def _instance(self, qtype: int) -> list[ResourceRecord]:
        version = ipaddress.ip_address(self.addr).version
        a = [self._rr(self.host, TYPE_A, self.addr)] if version == 4 else []
        aaaa = [self._rr(self.host, TYPE_AAAA, self.addr)] if version == 6 else []
        srv = self._rr(self.instance, TYPE_SRV, Srv(SRV_PRIORITY, SRV_WEIGHT, self.port,
                                                     self.host))
        txt = self._rr(self.instance, TYPE_TXT, self.txt)
        return {TYPE_ANY: [srv, *a, *aaaa, txt], TYPE_SRV: [srv, *a, *aaaa], TYPE_TXT: [txt],
                TYPE_A: a, TYPE_AAAA: aaaa}.get(qtype, [])

    @staticmethod
    def _rr(name: Name, rtype: int, data: codec.RData) -> ResourceRecord:
        return ResourceRecord(name, rtype, data, TTL, CLASS_IN)


def entries(msg: Message, service: Name) -> Iterator[Entry]:
    """The peers one response describes under ``service``: an SRV for an instance
    of it, and an address for the SRV's target in the same message (IPv4
    first). Records for any other name are ignored (hashicorp/mdns takes any)."""
    svc = folded(service)
    records = (*msg.answers, *msg.additionals)
    hosts: dict[Name, list[str]] = {}
    for rr in records:
        if rr.rtype in (TYPE_A, TYPE_AAAA) and isinstance(rr.data, str):
            hosts.setdefault(folded(rr.name), []).append(rr.data)
    done: set[Name] = set()
    for rr in records:
        name = folded(rr.name)
        if (rr.rtype != TYPE_SRV or not isinstance(rr.data, Srv) or name in done
                or len(name) <= len(svc) or name[-len(svc):] != svc):
            continue
        done.add(name)
        found = hosts.get(folded(rr.data.target), [])
        addr = next((a for a in found if ":" not in a), found[0] if found else "")
        yield Entry(rr.name, addr, rr.data.port)


def join_address(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


class Discovery:
    """One agent's mDNS: its advert, its polls, the peers it will join."""

    def __init__(self, cluster: str, advert: Advert | None, own: tuple[str, int], now: float,
                 *, stats: Counter[str], rng: random.Random | None = None) -> None:
        """``advert`` None: ask, never answer (our name cannot be a DNS name).
        ``own``: our advertised address, never joined; loopback peers are
        joined only when it is loopback too (an agent on ``127.0.0.1``)."""
        self.service = codec.name_from_text(service_name(cluster) + ".local.")
        self.advert = advert
        self._own = own
        self._allow_loopback = _is_loopback(own[0])
        self.stats = stats
        self._rng = rng or random.Random()
        self._next_poll = now
        self._window_end = -1.0
        self._joins_this_poll = 0
        self._pending: list[str] = []
        self._quiet_at: float | None = None
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._tokens = float(ANSWER_BURST)
        self._tokens_at = now

    def next_deadline(self) -> float:
        quiet = self._quiet_at
        return self._next_poll if quiet is None else min(self._next_poll, quiet)

    def tick(self, now: float, known: Collection[str] = ()) -> list[Send | Join]:
        """Due work: our question every :data:`POLL_INTERVAL` (the first at once),
        and, :data:`QUIET_INTERVAL` after the last new peer, one join of them all
        (less those in ``known``, addresses already members)."""
        out: list[Send | Join] = []
        if now >= self._next_poll:
            self._next_poll = now + POLL_INTERVAL
            self._window_end = now + QUERY_WINDOW
            self._joins_this_poll = 0
            question = Question(self.service, TYPE_PTR, CLASS_IN)
            query = Message(self._rng.getrandbits(16), 0, (question,))
            out.append(Send(codec.encode(query), MDNS_GROUP_V4))
            self.stats["mdns.queries_sent"] += 1
        if self._quiet_at is not None and now >= self._quiet_at:
            addrs = tuple(a for a in self._pending if a not in known)
            self.joined([a for a in self._pending if a in known], ok=True)
            self._pending, self._quiet_at = [], None
            if addrs:
                out.append(Join(addrs))
        return out

    def joined(self, addrs: Collection[str], ok: bool) -> None:
        """The join of ``addrs`` ended. Joined ones are not joined again (serf
        marks them even when the join failed; we try those at the next poll)."""
        if not ok:
            return
        for addr in addrs:
            self._seen[addr] = None
            self._seen.move_to_end(addr)
        while len(self._seen) > SEEN_LIMIT:
            self._seen.popitem(last=False)

    def on_packet(self, data: bytes, source: tuple[str, int], now: float) -> list[Send]:
        """A datagram on an mDNS socket: a query is answered (maybe), a response
        read for peers. Never raises for what the packet holds."""
        if len(data) > 2 and data[2] & 0x80 and now > self._window_end:
            return self._drop("unsolicited")  # a response (QR) nobody here asked for: unread
        try:
            msg = codec.decode(data)
        except DnsError as exc:
            return self._drop(exc.reason)
        if msg.opcode != 0 or msg.rcode != 0:  # RFC 6762 18.3, 18.11: silently ignored
            return self._drop("opcode")
        if msg.is_response:
            self._on_response(msg, now)
            return []
        return self._on_query(msg, source, now)

    def _drop(self, reason: str) -> list[Send]:
        self.stats[f"drop.mdns.{reason}"] += 1
        return []

    def _on_query(self, msg: Message, source: tuple[str, int], now: float) -> list[Send]:
        if self.advert is None or not msg.questions:
            return []
        if msg.flags & FLAG_TRUNCATED:  # known answers follow; hashicorp/mdns ignores these too
            return self._drop("truncated_query")
        answers: list[ResourceRecord] = []
        asked: list[Question] = []
        for q in msg.questions:
            found = self.advert.records(q)
            if found:
                asked.append(q)
            answers.extend(rr for rr in found if rr not in answers)
        if not answers:
            return []
        if not self._take_token(now):
            return self._drop("answer_rate")
        self.stats["mdns.answers_sent"] += 1
        flags = FLAG_RESPONSE | FLAG_AUTHORITATIVE
        legacy = source[1] != MDNS_PORT  # a one-shot querier (hashicorp/mdns is one)
        if legacy or any(q.qclass & TOP_BIT for q in asked):
            # RFC 6762 6.7: to the source, with its id and the questions we answer.
            reply = Message(msg.id, flags, tuple(asked) if legacy else (), tuple(answers))
            return [Send(codec.encode(reply), source)]
        return [Send(codec.encode(Message(0, flags, (), tuple(answers))), MDNS_GROUP_V4)]

    def _take_token(self, now: float) -> bool:
        elapsed = max(0.0, now - self._tokens_at)
        self._tokens = min(float(ANSWER_BURST), self._tokens + elapsed * ANSWER_RATE)
        self._tokens_at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _on_response(self, msg: Message, now: float) -> None:
        self.stats["mdns.responses"] += 1
        for entry in entries(msg, self.service):
            self._consider(entry, now)

    def _consider(self, entry: Entry, now: float) -> None:
        if (entry.addr, entry.port) == self._own:
            self.stats["mdns.self"] += 1  # our own advert, looped back
            return
        if not entry.addr:
            self._drop("no_address")
            return
        if entry.port == 0 or not _usable(entry.addr, self._allow_loopback):
            self._drop("bad_address")
            return
        addr = join_address(entry.addr, entry.port)
        if addr in self._seen or addr in self._pending:
            return
        if self._joins_this_poll >= MAX_JOINS_PER_POLL:
            self._drop("join_cap")
            return
        self._joins_this_poll += 1
        self._pending.append(addr)
        self._quiet_at = now + QUIET_INTERVAL


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def _usable(addr: str, allow_loopback: bool) -> bool:
    """An address a peer could hold: not unspecified, multicast, broadcast or
    reserved, not IPv6 link-local (it needs a zone the record cannot carry),
    and loopback only when we are on loopback too."""
    ip = ipaddress.ip_address(addr)
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return False
    if ip.version == 4 and ip == ipaddress.IPv4Address("255.255.255.255"):
        return False
    if ip.version == 6 and ip.is_link_local:
        return False
    return allow_loopback or not ip.is_loopback
