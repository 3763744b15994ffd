"""The Serf layer's value domains (swimlib.cluster.domains), rule by rule, then
applied by :class:`Serf` to well-formed but hostile messages."""

from __future__ import annotations

import time
from typing import Any

import pytest

from swimlib.cluster import domains as dom
from swimlib.cluster.clocks import LamportClock
from swimlib.cluster.events import QueryEvent, UserEvent
from swimlib.cluster.serf import Emit, QueryReply, Serf
from swimlib.membership.types import SendPacket
from swimlib.wire import codec
from swimlib.wire import serf as sw
from swimlib.wire.messages import PushNodeState, PushPull

from .test_serf import act, emitted, serf_net, statuses

TOP = dom.LTIME_MAX
FREE = dom.LTIME_FREE_LIMIT
ATTACKER = ("127.0.0.200", 7946)


# ---------------------------------------------------------------- rules


class TestLamportRules:
    def test_free_region_and_step(self):
        assert dom.plausible_ltime(1, FREE)
        assert dom.plausible_ltime(1, FREE + dom.LTIME_STEP)  # a low clock follows the limit
        assert not dom.plausible_ltime(1, FREE + dom.LTIME_STEP + 1)
        assert dom.plausible_ltime(FREE + 10, FREE + 10 + dom.LTIME_STEP)
        assert not dom.plausible_ltime(FREE + 10, FREE + 11 + dom.LTIME_STEP)
        assert not dom.plausible_ltime(1, TOP)

    def test_clock_saturates_instead_of_wrapping(self):
        clock = LamportClock()
        clock.witness(TOP - 1)
        assert clock.time() == TOP
        assert clock.increment() == TOP
        clock.witness(TOP)
        assert clock.time() == TOP

    def test_ring_verdict_by_slot(self):
        assert dom.ring_verdict(None, 5) is dom.Seen.NEW_SLOT
        assert dom.ring_verdict(3, 5) is dom.Seen.NEW_SLOT
        assert dom.ring_verdict(5, 5) is dom.Seen.SAME_SLOT
        assert dom.ring_verdict(5 + 512, 5) is dom.Seen.TOO_OLD

    def test_query_timeouts(self):
        assert dom.query_timeout_problem(-1) == "query_timeout"
        assert dom.query_timeout_problem(0) is None
        assert dom.query_timeout_seconds(2_000_000_000) == 2.0
        assert dom.query_timeout_seconds(2**63 - 1) == dom.QUERY_TIMEOUT_MAX

    @pytest.mark.parametrize(("name", "problem"), [
        ("deploy", None), ("with space", None), ("", None),
        ("a\nb", "event_name_control"), ("x" * 1025, "event_name_long"),
    ])
    def test_event_names(self, name, problem):
        assert dom.event_name_problem(name) == problem


class TestTagFilters:
    def test_go_semantics_unanchored_search(self):
        assert dom.tag_filter_matches("^web", "web-1")
        assert dom.tag_filter_matches("eb", "web")
        assert not dom.tag_filter_matches("^db$", "web")

    def test_catastrophic_backtracking_pattern_is_linear(self):
        started = time.process_time()
        for n in range(20, 40):
            assert not dom.tag_filter_matches("(a+)+$", "a" * n + "!")
        assert time.process_time() - started < 1.0  # Python's re: hours

    def test_patterns_re2_cannot_compile_never_match(self):
        assert not dom.tag_filter_matches("(?<=a)b", "ab")  # lookbehind: not RE2
        assert not dom.tag_filter_matches("(", "(")

    def test_non_utf8_patterns_and_values_do_not_raise(self):
        odd = b"\xff\xfe".decode("utf-8", "surrogateescape")
        assert not dom.tag_filter_matches(odd, "web")
        assert dom.tag_filter_matches("w", "w" + odd)


# ---------------------------------------------------------------- applied by Serf


def inject(net: Any, node: Serf, msg: sw.SerfMessage) -> None:
    node.handle_packet(b"\x08" + sw.encode_serf(msg), ATTACKER, net.now)
    net._flush(node)


def query_msg(net: Any, sender: Serf, ltime: int, **kw: Any) -> sw.Query:
    values: dict[str, Any] = dict(ltime=ltime, id=7, addr=sender.addr, port=sender.port,
                                  source_node=sender.name, name="q", timeout_ns=5 * 10**9)
    values.update(kw)
    return sw.Query(**values)


def everyone_gets_event_and_query(net: Any) -> None:
    act(net, net.node("n1"), "user_event", "after", b"", False)
    handle = act(net, net.node("n1"), "query", "after-q", b"")
    net.run(3)
    for node in net.live():
        assert ("after", b"") in [(e.name, e.payload) for e in emitted(net, node.name, UserEvent)]
        assert "after-q" in [e.name for e in emitted(net, node.name, QueryEvent)]
    acks = {e.from_node for _, e in net.effects["n1"]
            if isinstance(e, QueryReply) and e.handle == handle}
    assert acks == set()  # nobody responded (no handlers here); delivery is what counts


class TestHeadlineRepro:
    def test_query_at_top_ltime_neither_crashes_nor_silences(self):
        """Issue 7: one query with LTime 2^64-1 used to end every agent at its next push-pull."""
        net = serf_net(4)
        n0 = net.node("n0")
        inject(net, n0, query_msg(net, net.node("n2"), TOP))
        assert n0.stats["drop.serf.query_ltime_implausible"] == 1
        for node in net.live():
            assert node.node.sync_now(net.now)  # push-pull encodes our clocks
            net._flush(node)
        net.run(3)
        for node in net.live():
            assert set(statuses(net, node.name).values()) == {"alive"}
        everyone_gets_event_and_query(net)

    def test_user_event_at_top_ltime_refused(self):
        net = serf_net(3)
        inject(net, net.node("n0"), sw.UserEvent(TOP, "evil"))
        assert net.node("n0").event_clock.time() < 100
        everyone_gets_event_and_query(net)


class TestClockJumps:
    def test_jump_to_free_limit_propagates_and_honest_events_still_flow(self):
        net = serf_net(3)
        inject(net, net.node("n0"), sw.UserEvent(FREE, "jump"))
        net.run(2)
        assert all(n.event_clock.time() > FREE for n in net.live())
        everyone_gets_event_and_query(net)

    def test_query_clock_jump_on_one_node_does_not_deafen_it(self):
        """A no-broadcast query moves one node's query clock; Serf would then
        drop every other node's queries there as too old until push-pull."""
        net = serf_net(3)
        n0 = net.node("n0")
        inject(net, n0, query_msg(net, net.node("n2"), FREE,
                                  flags=sw.QUERY_FLAG_NO_BROADCAST))
        assert n0.query_clock.time() == FREE + 1
        assert net.node("n1").query_clock.time() < 100
        act(net, net.node("n1"), "query", "honest", b"")
        net.run(2)
        assert "honest" in [e.name for e in emitted(net, "n0", QueryEvent)]

    def test_leave_intent_for_live_member_at_free_limit_is_refuted(self):
        net = serf_net(3)
        inject(net, net.node("n0"), sw.LeaveIntent(FREE, "n1"))
        net.run(3)
        for node in net.live():
            assert statuses(net, node.name)["n1"] == "alive"

    def test_push_pull_state_with_top_clocks_refused_whole(self):
        net = serf_net(2)
        n0 = net.node("n0")
        before = (n0.clock.time(), n0.event_clock.time(), n0.query_clock.time())
        user = sw.encode_serf(sw.SerfPushPull(TOP, {"ghost": TOP}, (), TOP, (), TOP))
        stream = codec.encode_push_pull(PushPull(False, (
            PushNodeState("n1", net.node("n1").addr, net.node("n1").port, b"", 1, 0),), user))
        n0.handle_stream(stream, ATTACKER, net.now)
        assert (n0.clock.time(), n0.event_clock.time(), n0.query_clock.time()) == before
        assert n0.stats["drop.serf.push_pull_ltime_implausible"] == 1
        assert "ghost" not in n0._members._recent_intents


class TestQueries:
    def test_negative_timeout_dropped(self):
        net = serf_net(2)
        inject(net, net.node("n0"), query_msg(net, net.node("n1"), 5, timeout_ns=-1))
        assert net.node("n0").stats["drop.serf.query_timeout"] == 1

    def test_huge_timeout_capped(self):
        net = serf_net(2)
        inject(net, net.node("n0"), query_msg(net, net.node("n1"), 5, timeout_ns=2**63 - 1))
        (event,) = [e for e in emitted(net, "n0", QueryEvent) if e.name == "q"]
        assert event.deadline <= net.now + dom.QUERY_TIMEOUT_MAX

    def test_reply_address_must_be_the_senders(self):
        """A query naming a member but replying elsewhere would make the cluster
        flood a third party: refused, and no ack sent."""
        net = serf_net(2)
        n0 = net.node("n0")
        n0.take_effects()
        inject(net, n0, query_msg(net, net.node("n1"), 5, addr="127.0.0.250",
                                  flags=sw.QUERY_FLAG_ACK))
        assert n0.stats["drop.serf.query_addr_mismatch"] == 1
        assert not [e for _, e in net.effects["n0"] if isinstance(e, SendPacket)
                    and e.dest[0] == "127.0.0.250"]

    def test_relay_factor_capped(self):
        net = serf_net(8)
        n0 = net.node("n0")
        inject(net, n0, query_msg(net, net.node("n1"), 5, relay_factor=255,
                                  flags=sw.QUERY_FLAG_ACK))
        assert n0.stats["query.relay_factor_capped"] == 1
        relays = [e for _, e in net.effects["n0"] if isinstance(e, SendPacket)
                  and e.data[:2] == b"\x08\x09"]
        assert 0 < len(relays) <= dom.RELAY_FACTOR_MAX

    def test_pending_queries_bounded(self):
        net = serf_net(2)
        n0 = net.node("n0")
        for i in range(dom.MAX_PENDING_QUERIES + 5):
            inject(net, n0, query_msg(net, net.node("n1"), 10 + i, id=i))
        assert len(n0._queries._inbound) == dom.MAX_PENDING_QUERIES
        assert n0.stats["query.pending_evicted"] == 5

    def test_relay_only_responses_to_live_members(self):
        net = serf_net(2)
        n0, n1 = net.node("n0"), net.node("n1")
        resp = sw.encode_serf(sw.QueryResponse(5, 1, "n1"))
        inject(net, n0, sw.Relay("127.0.0.250", 7946, "", resp))
        inject(net, n0, sw.Relay(n1.addr, n1.port, "", sw.encode_serf(sw.UserEvent(9, "x"))))
        inject(net, n0, sw.Relay(n1.addr, n1.port, "", resp))
        assert n0.stats["drop.serf.relay_unknown_dest"] == 1
        assert n0.stats["drop.serf.relay_payload"] == 1
        assert n0.stats["relay.forwarded"] == 1


class TestBoundedState:
    def test_intents_about_unknown_members_bounded(self):
        net = serf_net(2)
        n0 = net.node("n0")
        for i in range(dom.MAX_RECENT_INTENTS + 3):
            inject(net, n0, sw.JoinIntent(5, f"ghost{i}"))
        assert len(n0._members._recent_intents) == dom.MAX_RECENT_INTENTS
        assert n0.stats["intent.evicted"] == 3

    def test_events_per_ring_slot_bounded_oldest_forgotten(self):
        net = serf_net(2)
        n0 = net.node("n0")
        for i in range(dom.MAX_EVENTS_PER_SLOT + 4):
            inject(net, n0, sw.UserEvent(50, f"e{i}"))
        assert n0.stats["event.records_forgotten"] == 4
        # Nothing is silenced: every distinct event was handed on once.
        assert len([e for e in emitted(net, "n0", UserEvent)
                    if e.ltime == 50]) == dom.MAX_EVENTS_PER_SLOT + 4
        slot = next(s for s in n0._events.ring.slots() if s is not None and s[0] == 50)
        assert len(slot[1]) == dom.MAX_EVENTS_PER_SLOT

    def test_user_event_over_serfs_hard_limit_refused(self):
        net = serf_net(2)
        inject(net, net.node("n0"), sw.UserEvent(5, "big", b"x" * dom.MAX_USER_EVENT_BYTES))
        assert net.node("n0").stats["drop.serf.event_too_large"] == 1

    def test_gone_members_capped_oldest_reaped_first(self, monkeypatch):
        monkeypatch.setattr(dom, "MAX_GONE_MEMBERS", 2)
        net = serf_net(5)
        for name in ("n1", "n2", "n3"):
            net.down.add(net.addr_of(net.node(name)))
            net.run(20)
        n0 = net.node("n0")
        assert sorted(m.name for m in n0.members()) == ["n0", "n2", "n3", "n4"]
        assert n0.stats["gone.forgotten"] == 1

    @pytest.mark.parametrize(("msg", "counter"), [
        (sw.JoinIntent(5, "bad\nname"), "drop.serf.intent_name_control"),
        (sw.LeaveIntent(5, ""), "drop.serf.intent_name_empty"),
        (sw.UserEvent(5, "evil\r\nname"), "drop.serf.event_name_control"),
        (sw.QueryResponse(5, 1, "x\x00"), "drop.serf.response_from_name_control"),
    ])
    def test_names_outside_domain(self, msg, counter):
        net = serf_net(2)
        inject(net, net.node("n0"), msg)
        assert net.node("n0").stats[counter] == 1
        assert not [e for _, e in net.effects["n0"] if isinstance(e, Emit)
                    and isinstance(e.event, UserEvent) and "evil" in e.event.name]


def test_forged_prune_of_a_live_member_is_refuted_and_not_erased():
    """A leave intent with Prune for a live member: it refutes, and the prune
    that Serf would still carry out later must not erase it from our table."""
    net = serf_net(3)
    inject(net, net.node("n0"), sw.LeaveIntent(1000, "n1", prune=True))
    net.run(15)
    for node in net.live():
        assert statuses(net, node.name) == {"n0": "alive", "n1": "alive", "n2": "alive"}
    assert net.node("n0").stats["prune.cancelled"] == 1


def test_local_names_outside_the_domain_are_clear_errors():
    from swimlib.errors import SwimError

    net = serf_net(1)
    with pytest.raises(SwimError, match="event_name_control"):
        net.node("n0").user_event("a\nb", b"", True, net.now)
    with pytest.raises(SwimError, match="event_name_control"):
        net.node("n0").query("a\rb", b"", net.now)


def test_a_fresh_node_follows_a_cluster_moved_past_the_limit():
    """An attack moved the cluster's event clock just past 2^63; a node joining
    afterwards (clock 1) must still take the cluster's clock and its events."""
    net = serf_net(2)
    inject(net, net.node("n0"), sw.UserEvent(FREE, "jump"))
    net.run(2)
    act(net, net.node("n1"), "user_event", "honest", b"", False)
    net.run(2)
    net.add("late")
    net.run(5)
    late = net.node("late")
    assert late.event_clock.time() > FREE
    act(net, net.node("n0"), "user_event", "after", b"", False)
    net.run(3)
    assert "after" in [e.name for e in emitted(net, "late", UserEvent)]


def test_push_pull_calling_a_live_member_left_is_gossiped_and_refuted():
    """Serf applies a peer's LeftMembers quietly: a live member listed there stays
    "leaving" in that view for good. We gossip the intent; the member refutes it."""
    net = serf_net(3)
    n0, n1 = net.node("n0"), net.node("n1")
    user = sw.encode_serf(sw.SerfPushPull(5, {"n1": 50}, ("n1",), 1, (), 1))
    stream = codec.encode_push_pull(PushPull(False, (), user))
    n0.handle_stream(stream, ATTACKER, net.now)
    net._flush(n0)
    assert statuses(net, "n0")["n1"] == "leaving"
    net.run(3)
    for node in net.live():
        assert statuses(net, node.name)["n1"] == "alive"
    assert n0.stats["intent.regossiped_from_push_pull"] == 1
    assert n1.clock.time() > 51


def test_message_too_big_for_gossip_is_applied_not_queued():
    net = serf_net(2)
    n0 = net.node("n0")
    inject(net, n0, sw.UserEvent(9, "big", b"x" * 2000))
    assert "big" in [e.name for e in emitted(net, "n0", UserEvent)]
    assert n0.stats["gossip.too_large"] == 1
    assert not n0.has_broadcasts()
