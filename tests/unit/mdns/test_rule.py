"""The sans-IO mDNS rule: what it answers, when it asks, whom it joins (time is an input)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from swimlib.mdns import codec as c
from swimlib.mdns import rule as r

from .vectors import SERF_ANSWER, SERF_QUERY

QUERIER = ("10.251.7.9", 53957)  # hashicorp/mdns asks from an ephemeral port
OWN = ("10.251.7.3", 7950)


def _rule(now: float = 0.0, own: tuple[str, int] = OWN, cluster: str = "lab",
          node: str = "w1") -> r.Discovery:
    advert = r.Advert(cluster, node, "vm.", own[0], own[1])
    return r.Discovery(cluster, advert, own, now, stats=Counter(), rng=random.Random(1))


def _answer(entries: list[tuple[str, str, int]], cluster: str = "lab") -> bytes:
    """A response like serf's, one PTR/SRV/A/TXT set per (node, addr, port)."""
    records: list[c.ResourceRecord] = []
    for i, (node, addr, port) in enumerate(entries):
        advert = r.Advert(cluster, node, f"host{i}.", addr, port)
        records += advert.records(c.Question(advert.service, c.TYPE_PTR))
    return c.encode(c.Message(0, 0x8400, (), tuple(records)))


def _joins(actions: list[r.Send | r.Join]) -> list[tuple[str, ...]]:
    return [a.addrs for a in actions if isinstance(a, r.Join)]


def _polled(rule: r.Discovery, now: float = 0.0) -> None:
    sent = rule.tick(now)
    assert [type(a) for a in sent] == [r.Send]


# --------------------------------------------------------------------------- answering


def test_our_answer_is_serfs_answer_for_the_same_node_and_address() -> None:
    advert = r.Advert("lab", "capt", "vm.", "10.251.7.2", 7946)
    question = c.decode(SERF_QUERY).questions[0]
    answer = c.Message(0, c.FLAG_RESPONSE | c.FLAG_AUTHORITATIVE, (),
                       tuple(advert.records(question)))
    assert c.encode(answer) == SERF_ANSWER


def test_serfs_query_is_answered_to_its_source_with_its_id_and_question() -> None:
    rule = _rule()
    (send,) = rule.on_packet(SERF_QUERY, QUERIER, 0.0)
    assert send.dest == QUERIER  # RFC 6762 6.7 "legacy unicast", as hashicorp/mdns replies
    reply = c.decode(send.data)
    assert reply.id == 0x07F5 and reply.is_response
    assert reply.questions == c.decode(SERF_QUERY).questions
    assert [rr.rtype for rr in reply.answers] == [c.TYPE_PTR, c.TYPE_SRV, c.TYPE_A, c.TYPE_TXT]
    entries = list(r.entries(reply, rule.service))
    assert entries == [r.Entry((b"w1", b"_serf_lab", b"_tcp", b"local"), *OWN)]
    assert rule.stats["mdns.answers_sent"] == 1


def test_a_full_mdns_querier_on_port_5353_gets_a_multicast_answer_unless_it_asks_unicast() -> None:
    rule = _rule()
    service = rule.service
    ask = c.encode(c.Message(9, 0, (c.Question(service, c.TYPE_PTR),)))
    (send,) = rule.on_packet(ask, ("10.251.7.9", 5353), 0.0)
    assert send.dest == r.MDNS_GROUP_V4 and c.decode(send.data).id == 0
    ask_unicast = c.encode(c.Message(9, 0, (c.Question(service, c.TYPE_PTR,
                                                       c.CLASS_IN | c.TOP_BIT),)))
    (send,) = rule.on_packet(ask_unicast, ("10.251.7.9", 5353), 0.0)
    assert send.dest == ("10.251.7.9", 5353) and c.decode(send.data).id == 9


@pytest.mark.parametrize(("name", "qtype", "types"), [
    ("_services._dns-sd._udp.local.", c.TYPE_PTR, [c.TYPE_PTR]),
    ("w1._serf_lab._tcp.local.", c.TYPE_ANY, [c.TYPE_SRV, c.TYPE_A, c.TYPE_TXT]),
    ("W1._SERF_LAB._tcp.local.", c.TYPE_SRV, [c.TYPE_SRV, c.TYPE_A]),  # names ignore case
    ("w1._serf_lab._tcp.local.", c.TYPE_TXT, [c.TYPE_TXT]),
    ("w1._serf_lab._tcp.local.", c.TYPE_AAAA, []),
    ("vm.", c.TYPE_A, [c.TYPE_A]),
    ("vm.", c.TYPE_TXT, []),
    ("_serf_other._tcp.local.", c.TYPE_PTR, []),
    ("_serf_lab._tcp.local.", c.TYPE_SRV, []),
])
def test_the_zone_answers_what_hashicorp_mdns_answers(name: str, qtype: int,
                                                      types: list[int]) -> None:
    advert = r.Advert("lab", "w1", "vm.", *OWN)
    assert [rr.rtype for rr in advert.records(c.Question(c.name_from_text(name), qtype))] == types


def test_an_ipv6_advert_has_an_aaaa_record() -> None:
    advert = r.Advert("lab", "w1", "vm.", "fd00::3", 7950)
    got = advert.records(c.Question(advert.service, c.TYPE_PTR))
    assert [rr.rtype for rr in got] == [c.TYPE_PTR, c.TYPE_SRV, c.TYPE_AAAA, c.TYPE_TXT]
    entries = list(r.entries(c.Message(0, 0x8400, (), tuple(got)), advert.service))
    assert r.join_address(entries[0].addr, entries[0].port) == "[fd00::3]:7950"


def test_questions_we_do_not_hold_or_may_not_answer_get_nothing() -> None:
    rule = _rule()
    other = c.encode(c.Message(1, 0, (c.Question(c.name_from_text("x.local."), c.TYPE_A),)))
    assert rule.on_packet(other, QUERIER, 0.0) == []
    truncated = bytearray(SERF_QUERY)
    truncated[2] |= 0x02  # TC: known answers follow (hashicorp/mdns ignores these too)
    assert rule.on_packet(bytes(truncated), QUERIER, 0.0) == []
    opcode = bytearray(SERF_QUERY)
    opcode[2] |= 0x10  # opcode 2: RFC 6762 18.3, silently ignored
    assert rule.on_packet(bytes(opcode), QUERIER, 0.0) == []
    assert rule.stats["drop.mdns.truncated_query"] == 1 and rule.stats["drop.mdns.opcode"] == 1
    asker = r.Discovery("lab", None, OWN, 0.0, stats=Counter())  # no advert: never answers
    assert asker.on_packet(SERF_QUERY, QUERIER, 0.0) == []


def test_answers_are_rate_limited_so_we_are_no_reflector() -> None:
    rule = _rule()
    sent = sum(len(rule.on_packet(SERF_QUERY, QUERIER, i / 1000)) for i in range(1000))
    # a burst of 20, then 10 a second over the one second of the flood
    assert 20 <= sent <= 31
    assert rule.stats["drop.mdns.answer_rate"] == 1000 - sent
    assert len(rule.on_packet(SERF_QUERY, QUERIER, 10.0)) == 1  # and it refills


# --------------------------------------------------------------------------- asking


def test_it_asks_at_once_then_every_poll_interval() -> None:
    rule = _rule(now=5.0)
    assert rule.next_deadline() == 5.0
    (send,) = rule.tick(5.0)
    assert isinstance(send, r.Send) and send.dest == r.MDNS_GROUP_V4
    query = c.decode(send.data)
    assert query.questions == (c.Question(rule.service, c.TYPE_PTR, c.CLASS_IN),)
    assert not query.is_response and query.flags == 0
    assert rule.tick(6.0) == [] and rule.next_deadline() == 5.0 + r.POLL_INTERVAL
    assert len(rule.tick(5.0 + r.POLL_INTERVAL)) == 1


def test_serfs_answer_is_joined_after_the_quiet_interval() -> None:
    rule = _rule()
    _polled(rule)
    assert rule.on_packet(SERF_ANSWER, ("10.251.7.2", 5353), 0.2) == []
    assert rule.next_deadline() == pytest.approx(0.2 + r.QUIET_INTERVAL)
    assert rule.tick(0.25) == []
    assert _joins(rule.tick(0.31)) == [("10.251.7.2:7946",)]


def test_peers_arriving_together_are_joined_in_one_call_once() -> None:
    rule = _rule()
    _polled(rule)
    rule.on_packet(_answer([("a", "10.0.0.1", 7946)]), QUERIER, 0.1)
    rule.on_packet(_answer([("b", "10.0.0.2", 7946), ("a", "10.0.0.1", 7946)]), QUERIER, 0.15)
    (join,) = _joins(rule.tick(0.3))
    assert join == ("10.0.0.1:7946", "10.0.0.2:7946")
    rule.joined(join, ok=True)
    _polled(rule, r.POLL_INTERVAL)
    rule.on_packet(_answer([("a", "10.0.0.1", 7946)]), QUERIER, r.POLL_INTERVAL + 0.1)
    assert _joins(rule.tick(r.POLL_INTERVAL + 1.0)) == []  # joined once, as serf's "seen"


def test_a_failed_join_is_tried_again_at_the_next_poll() -> None:
    rule = _rule()
    _polled(rule)
    rule.on_packet(_answer([("a", "10.0.0.1", 7946)]), QUERIER, 0.1)
    (join,) = _joins(rule.tick(0.3))
    rule.joined(join, ok=False)
    _polled(rule, r.POLL_INTERVAL)
    rule.on_packet(_answer([("a", "10.0.0.1", 7946)]), QUERIER, r.POLL_INTERVAL + 0.1)
    assert _joins(rule.tick(r.POLL_INTERVAL + 0.3)) == [("10.0.0.1:7946",)]


def test_members_already_known_are_not_joined_again() -> None:
    rule = _rule()
    _polled(rule)
    rule.on_packet(_answer([("a", "10.0.0.1", 7946), ("b", "10.0.0.2", 7946)]), QUERIER, 0.1)
    assert _joins(rule.tick(0.3, known={"10.0.0.1:7946"})) == [("10.0.0.2:7946",)]


def test_our_own_advert_looped_back_is_ignored() -> None:
    rule = _rule()
    (query,) = rule.tick(0.0)
    assert isinstance(query, r.Send)
    (answer,) = rule.on_packet(query.data, QUERIER, 0.01)
    rule.on_packet(answer.data, ("10.251.7.3", 5353), 0.02)
    assert _joins(rule.tick(0.5)) == [] and rule.stats["mdns.self"] == 1


def test_answers_outside_our_question_window_are_dropped() -> None:
    rule = _rule()
    rule.on_packet(SERF_ANSWER, QUERIER, 0.0)  # before we asked
    _polled(rule, 1.0)
    rule.on_packet(SERF_ANSWER, QUERIER, 1.0 + r.QUERY_WINDOW + 0.01)  # too late
    assert _joins(rule.tick(5.0)) == []
    assert rule.stats["drop.mdns.unsolicited"] == 2
    rule.on_packet(b"\xff" * 9001, QUERIER, 5.0)  # a response out of time is not even read
    assert rule.stats["drop.mdns.unsolicited"] == 3 and rule.stats["drop.mdns.too_big"] == 0


def test_another_clusters_answers_are_not_ours() -> None:
    rule = _rule()
    _polled(rule)
    rule.on_packet(_answer([("a", "10.0.0.1", 7946)], cluster="prod"), QUERIER, 0.1)
    assert _joins(rule.tick(0.5)) == []


@pytest.mark.parametrize("addr", ["0.0.0.0", "224.0.0.251", "255.255.255.255", "127.0.0.1",
                                  "240.0.0.1", "fe80::1", "::"])
def test_addresses_no_peer_can_hold_are_not_joined(addr: str) -> None:
    rule = _rule()
    _polled(rule)
    rule.on_packet(_answer([("a", addr, 7946)]), QUERIER, 0.1)
    assert _joins(rule.tick(0.5)) == [] and rule.stats["drop.mdns.bad_address"] == 1


def test_loopback_peers_are_joined_by_an_agent_on_loopback() -> None:
    rule = _rule(own=("127.0.0.1", 7950))
    _polled(rule)
    rule.on_packet(_answer([("a", "127.0.0.1", 7946)]), QUERIER, 0.1)
    assert _joins(rule.tick(0.5)) == [("127.0.0.1:7946",)]


def test_an_srv_without_an_address_is_dropped() -> None:
    rule = _rule()
    _polled(rule)
    advert = r.Advert("lab", "a", "h.", "10.0.0.1", 7946)
    srv = [rr for rr in advert.records(c.Question(advert.service, c.TYPE_PTR))
           if rr.rtype != c.TYPE_A]
    rule.on_packet(c.encode(c.Message(0, 0x8400, (), tuple(srv))), QUERIER, 0.1)
    assert _joins(rule.tick(0.5)) == [] and rule.stats["drop.mdns.no_address"] == 1


def test_a_flood_of_fake_peers_is_capped_per_poll() -> None:
    rule = _rule()
    _polled(rule)
    for batch in range(40):  # 40 packets of 10 peers each (40 records: within the limit)
        fakes = [(f"f{batch}-{i}", f"10.1.{batch}.{i + 1}", 7946) for i in range(10)]
        rule.on_packet(_answer(fakes), QUERIER, 0.1 + batch / 1000)
    (join,) = _joins(rule.tick(0.5))
    assert len(join) == r.MAX_JOINS_PER_POLL
    assert rule.stats["drop.mdns.join_cap"] == 400 - r.MAX_JOINS_PER_POLL
    _polled(rule, r.POLL_INTERVAL)  # the next poll gets a new allowance, no more
    fakes = [(f"g{i}", f"10.2.0.{i + 1}", 7946) for i in range(10)]
    rule.on_packet(_answer(fakes), QUERIER, r.POLL_INTERVAL + 0.1)
    assert [len(j) for j in _joins(rule.tick(r.POLL_INTERVAL + 0.5))] == [8]


def test_what_was_joined_is_remembered_within_a_bound() -> None:
    rule = _rule()
    rule.joined([f"10.3.{i // 250}.{i % 250 + 1}:7946" for i in range(r.SEEN_LIMIT + 10)],
                ok=True)
    assert len(rule._seen) == r.SEEN_LIMIT
    assert "10.3.0.1:7946" not in rule._seen  # the oldest forgotten first


def test_hostile_packets_are_counted_drops_never_exceptions() -> None:
    rule = _rule()
    _polled(rule)
    ten_thousand = b"\0\0\x84\0\0\0" + (10_000).to_bytes(2, "big") + b"\0\0\0\0"
    loop = b"\0\0\x84\0\0\0\0\x01\0\0\0\0" + b"\x01a\xc0\x0c" + b"\0\x01\0\x01\0\0\0\x78\0\0"
    for packet in (ten_thousand, loop, b"", b"\xff" * 9001, SERF_ANSWER[:-3]):
        assert rule.on_packet(packet, QUERIER, 0.1) == []
    assert rule.stats["drop.mdns.too_many_records"] == 1
    assert rule.stats["drop.mdns.bad_pointer"] == 1
    assert rule.stats["drop.mdns.short"] == 1 and rule.stats["drop.mdns.too_big"] == 1
    assert rule.stats["drop.mdns.truncated"] == 1
    assert _joins(rule.tick(0.5)) == []


def test_a_node_name_that_is_no_dns_label_cannot_be_advertised() -> None:
    with pytest.raises(ValueError):
        r.Advert("lab", "x" * 64, "vm.", *OWN)
    with pytest.raises(ValueError):
        r.Advert("lab", "a..b", "vm.", *OWN)
    dotted = r.Advert("lab", "web.1", "vm.", *OWN)  # as Go's: a dot separates labels
    assert dotted.instance[:2] == (b"web", b"1")
