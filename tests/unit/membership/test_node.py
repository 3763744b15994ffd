"""Behaviour of one membership node: precedence rules, probing, suspicion, leave.

Driven through the real wire codec over the tiny in-memory network in
``harness.py`` (fixed 1 ms latency), or by feeding messages directly.
"""

from __future__ import annotations

import random
from typing import ClassVar

import pytest

from swimlib.config import Config
from swimlib.errors import ConfigError
from swimlib.membership.node import Node
from swimlib.membership.suspicion import suspicion_min_timeout
from swimlib.membership.types import (
    DeathDeclared,
    EventKind,
    JoinFinished,
    MemberState,
    NodeEvent,
    OpenStream,
    Refuted,
    SendPacket,
    SuspicionRaised,
)
from swimlib.wire import codec
from swimlib.wire.messages import (
    Ack,
    Alive,
    Dead,
    IndirectPing,
    Nack,
    Ping,
    PushNodeState,
    PushPull,
    Suspect,
)

from ..harness import Net

SRC = ("127.0.0.9", 7946)


def make_node(name: str = "me", **cfg) -> Node:
    config = Config.lan(enable_compression=False, **cfg)
    return Node(name, "127.0.0.1", 7946, config, random.Random(1), 0.0)


def feed(node: Node, *msgs, now: float = 0.0) -> None:
    for m in msgs:
        node.handle_packet(codec.encode(m), SRC, now)


def cluster(n: int, seed: int = 0, **cfg) -> Net:
    net = Net(Config.lan(enable_compression=False, **cfg), seed=seed)
    for i in range(n):
        net.add(f"n{i}")
    net.run(3)
    for node in net.live():
        assert set(net.view(node.name).values()) == {MemberState.ALIVE}
        assert len(net.view(node.name)) == n
    return net


# ----------------------------------------------------------------------------- precedence


class TestAlive:
    def test_new_member_joins_and_newer_incarnation_updates_meta(self):
        node = make_node()
        feed(node, Alive(1, "x", "127.0.0.9", 7946, b"m1"))
        feed(node, Alive(2, "x", "127.0.0.9", 7946, b"m2"))
        events = [e for e in node.take_effects() if isinstance(e, NodeEvent)]
        assert [(e.kind, e.member.name) for e in events][-2:] == [
            (EventKind.JOIN, "x"), (EventKind.UPDATE, "x")]
        assert node.member("x").meta == b"m2"

    def test_equal_or_older_incarnation_is_ignored(self):
        node = make_node()
        feed(node, Alive(5, "x", "127.0.0.9", 7946, b"a"))
        feed(node, Alive(5, "x", "127.0.0.9", 7946, b"b"), Alive(4, "x", "127.0.0.9", 7946, b"c"))
        assert node.member("x").meta == b"a"

    def test_conflicting_address_for_live_member_is_refused(self):
        node = make_node()
        feed(node, Alive(1, "x", "127.0.0.9", 7946))
        feed(node, Alive(9, "x", "127.0.0.10", 7946))
        assert node.member("x").addr == "127.0.0.9"
        assert node.stats["conflict.address"] == 1

    @staticmethod
    def _claim_from_new_address(node: Node, now: float) -> list[Ping]:
        """x, alive at 127.0.0.9, vouches for 127.0.0.10:7000 itself; the pings that follow."""
        feed(node, Alive(3, "x", "127.0.0.9", 7946))
        feed(node, Alive(1, "x", "127.0.0.10", 7000), now=now)  # hearsay: check the new one
        (check,) = [e for e in node.take_effects() if isinstance(e, OpenStream)]
        there = PushPull(False, (PushNodeState("x", "127.0.0.10", 7000, b"", 1, 0),))
        node.handle_stream_reply(check.request_id, codec.encode_push_pull(there), now + 0.01)
        return [m for e in node.take_effects() if isinstance(e, SendPacket)
                and e.dest == ("127.0.0.9", 7946)
                for m in codec.decode_packet(e.data) if isinstance(m, Ping)]

    def test_member_restarted_elsewhere_moves_once_its_old_address_is_silent(self):
        """memberlist#157: a restart on a new address waited for the old row to die."""
        node = make_node()
        (ping,) = self._claim_from_new_address(node, 1.0)
        assert ping.node == "x" and node.member("x").addr == "127.0.0.9"
        node.tick(1.6)  # a second ping: one lost datagram is not a departure
        node.tick(2.05)
        m = node.member("x")
        assert (m.state, m.addr, m.port) == (MemberState.ALIVE, "127.0.0.10", 7000)
        moved = [e for e in node.take_effects() if isinstance(e, NodeEvent)]
        assert [(e.kind, e.member.name) for e in moved] == [(EventKind.UPDATE, "x")]

    def test_a_live_holder_keeps_its_name(self):
        node = make_node()
        (ping,) = self._claim_from_new_address(node, 1.0)
        feed(node, Ack(ping.seq_no), now=1.1)
        node.tick(5.0)
        assert node.member("x").addr == "127.0.0.9"
        assert node.stats["conflict.holder_alive"] == 1

    @pytest.mark.parametrize("gone", ["left", "dead"])
    def test_member_that_left_or_died_comes_back_at_a_new_address_on_its_own_word(self, gone):
        node = make_node()
        feed(node, Alive(1, "x", "127.0.0.9", 7946), Dead(1, "x", "x" if gone == "left" else "y"))
        node.take_effects()
        # Anyone may claim it moved: nothing changes, we ask the new address.
        feed(node, Alive(2, "x", "127.0.0.10", 7000), now=1.0)
        assert node.member("x").addr == "127.0.0.9"
        (check,) = [e for e in node.take_effects() if isinstance(e, OpenStream)]
        assert check.dest == ("127.0.0.10", 7000)
        # Whoever answers there speaks for the member living there.
        there = PushPull(False, (PushNodeState("x", "127.0.0.10", 7000, b"", 2, 0),))
        node.handle_stream_reply(check.request_id, codec.encode_push_pull(there), 1.1)
        m = node.member("x")
        assert (m.state, m.addr, m.port) == (MemberState.ALIVE, "127.0.0.10", 7000)
        assert node.stats["address.moved"] == 1

    def test_claimed_new_address_where_nobody_answers_moves_nothing(self):
        """A forged leave then a forged alive moved a live member to where
        nobody answers; its refutations from its real address then conflicted."""
        node = make_node()
        feed(node, Alive(1, "x", "127.0.0.9", 7946), Dead(1, "x", "x"))
        for i in range(40):  # one check per member per 10 s, sixteen in flight at most
            feed(node, Alive(2 + i, "x", "127.0.0.200", 7946), now=i * 0.5)
        checks = [e for e in node.take_effects() if isinstance(e, OpenStream)]
        assert [c.dest for c in checks] == [("127.0.0.200", 7946)] * 2
        for c in checks:
            node.handle_stream_reply(c.request_id, None, 20.0)
        assert node.member("x").addr == "127.0.0.9"
        # The member itself refutes its leave from where it lives.
        feed(node, Alive(3, "x", "127.0.0.9", 7946), now=21.0)
        assert node.state_of("x") == MemberState.ALIVE
        assert node.stats["address.unverified"] == 40

    def test_address_checks_in_flight_are_capped(self):
        node = make_node()
        for i in range(40):
            feed(node, Alive(1, f"x{i}", "127.0.0.9", 7000 + i), Dead(1, f"x{i}", f"x{i}"))
            feed(node, Alive(2, f"x{i}", "127.0.0.200", 7946))
        checks = [e for e in node.take_effects() if isinstance(e, OpenStream)]
        assert len(checks) == 16

    def test_bad_protocol_versions_are_ignored(self):
        node = make_node()
        feed(node, Alive(1, "x", "127.0.0.9", 7946, b"", bytes([3, 2, 2, 2, 5, 5])))
        assert node.member("x") is None
        assert node.stats["drop.alive_bad_vsn"] == 1


class TestSuspectAndDead:
    def test_suspect_needs_current_incarnation_and_live_member(self):
        node = make_node()
        feed(node, Alive(3, "x", "127.0.0.9", 7946))
        feed(node, Suspect(2, "x", "y"))
        assert node.state_of("x") == MemberState.ALIVE
        feed(node, Suspect(3, "x", "y"))
        assert node.state_of("x") == MemberState.SUSPECT

    def test_alive_with_higher_incarnation_clears_suspicion(self):
        node = make_node()
        feed(node, Alive(1, "x", "127.0.0.9", 7946), Suspect(1, "x", "y"))
        feed(node, Alive(2, "x", "127.0.0.9", 7946))
        assert node.state_of("x") == MemberState.ALIVE
        node.tick(1000.0)  # the old suspicion timer must not fire
        assert node.state_of("x") == MemberState.ALIVE

    def test_suspicion_expires_into_dead_with_lifeguard_max_timeout(self):
        node = make_node()
        for i in range(8):
            feed(node, Alive(1, f"x{i}", f"127.0.1.{i}", 7946))
        feed(node, Suspect(1, "x0", "y"))
        minimum = suspicion_min_timeout(4, node.num_nodes, 1.0)  # n = 9: 4 s
        assert minimum == 4.0
        node.tick(6 * minimum - 0.01)
        assert node.state_of("x0") == MemberState.SUSPECT
        node.tick(6 * minimum + 0.001)
        assert node.state_of("x0") == MemberState.DEAD
        declared = [e for e in node.take_effects() if isinstance(e, DeathDeclared)]
        assert declared == [DeathDeclared("x0", 1, 0)]

    def test_independent_confirmations_shorten_the_timer(self):
        node = make_node()
        for i in range(8):
            feed(node, Alive(1, f"x{i}", f"127.0.1.{i}", 7946))
        feed(node, Suspect(1, "x0", "a"), Suspect(1, "x0", "b"), Suspect(1, "x0", "c"))
        node.tick(4.001)  # min for n=9 is 4 s
        assert node.state_of("x0") == MemberState.DEAD

    def test_without_lifeguard_timeout_is_the_minimum(self):
        node = make_node(lifeguard=False)
        for i in range(8):
            feed(node, Alive(1, f"x{i}", f"127.0.1.{i}", 7946))
        feed(node, Suspect(1, "x0", "a"))
        node.tick(4.001)
        assert node.state_of("x0") == MemberState.DEAD

    def test_dead_from_the_node_itself_means_left(self):
        node = make_node()
        feed(node, Alive(1, "x", "127.0.0.9", 7946), Dead(1, "x", "x"))
        assert node.state_of("x") == MemberState.LEFT
        feed(node, Alive(1, "y", "127.0.0.8", 7946), Dead(1, "y", "z"))
        assert node.state_of("y") == MemberState.DEAD

    def test_old_dead_is_ignored(self):
        node = make_node()
        feed(node, Alive(4, "x", "127.0.0.9", 7946), Dead(3, "x", "z"))
        assert node.state_of("x") == MemberState.ALIVE


class TestRefutation:
    @pytest.mark.parametrize("msg", [Suspect(7, "me", "x"), Dead(7, "me", "x")])
    def test_accusation_about_self_is_refuted_with_higher_incarnation(self, msg):
        node = make_node()
        feed(node, msg)
        assert node.incarnation == 8
        assert node.state_of("me") == MemberState.ALIVE
        kind = "suspect" if isinstance(msg, Suspect) else "dead"
        assert Refuted(8, kind, "x") in node.take_effects()
        assert node.health_score == 1  # Lifeguard: refuting costs health

    def test_refutation_takes_mine_plus_one_when_accusation_is_old(self):
        node = make_node()
        node.set_meta(b"x", 0.0)
        node.set_meta(b"y", 0.0)  # incarnation 3
        feed(node, Suspect(3, "me", "x"))
        assert node.incarnation == 4

    def test_stale_alive_about_self_with_other_meta_is_refuted(self):
        node = make_node()
        feed(node, Alive(1, "me", "127.0.0.1", 7946, b"from-before-restart"))
        assert node.incarnation == 2
        feed(node, Alive(2, "me", "127.0.0.1", 7946, b""))
        assert node.incarnation == 2  # identical: nothing to refute

    def test_after_leave_no_refutation(self):
        node = make_node()
        feed(node, Alive(1, "x", "127.0.0.9", 7946))
        node.leave(0.0)
        assert node.state_of("me") == MemberState.LEFT
        feed(node, Dead(5, "me", "x"), Alive(9, "me", "127.0.0.1", 7946))
        assert node.state_of("me") == MemberState.LEFT
        assert not [e for e in node.take_effects() if isinstance(e, Refuted)]


class TestHostileInput:
    def test_accusation_at_max_incarnation_is_refused_not_refuted(self):
        node = make_node()
        feed(node, Suspect(0xFFFFFFFF, "me", "x"), Dead(0xFFFFFFFF, "me", "x"))
        assert node.incarnation == 1
        assert node.state_of("me") == MemberState.ALIVE
        assert node.stats["drop.suspect_incarnation_implausible"] == 1
        assert node.stats["drop.dead_incarnation_implausible"] == 1
        node.tick(10.0)  # still able to encode and send everything it queued

    def test_alive_without_vsn_is_dropped_not_regossiped(self):
        node = make_node()
        node.handle_packet(b"\x04" + codec.pack({"Addr": b"\x7f\0\0\x09", "Incarnation": 1,
                                                   "Node": b"x", "Port": 7946}), SRC, 0.0)
        assert node.member("x") is None
        assert node.stats["drop.alive_no_vsn"] == 1

    def test_oversized_meta_is_a_config_error(self):
        node = make_node()
        with pytest.raises(ConfigError):
            node.set_meta(b"x" * 513, 0.0)


class TestPushPull:
    def test_merge_turns_remote_dead_into_suspect_and_left_into_left(self):
        node = make_node()
        feed(node, Alive(1, "x", "127.0.0.9", 7946), Alive(1, "y", "127.0.0.8", 7946))
        remote = PushPull(False, (
            PushNodeState("x", "127.0.0.9", 7946, b"", 1, int(MemberState.DEAD)),
            PushNodeState("y", "127.0.0.8", 7946, b"", 1, int(MemberState.LEFT)),
            PushNodeState("z", "127.0.0.7", 7946, b"", 3, int(MemberState.ALIVE)),
        ))
        reply = node.handle_stream(codec.encode_push_pull(remote), SRC, 1.0)
        assert node.state_of("x") == MemberState.SUSPECT
        assert node.state_of("y") == MemberState.LEFT
        assert node.member("z").incarnation == 3
        # The reply is our state from *before* the merge.
        sent = codec.decode_stream(reply)
        assert {s.name: s.state for s in sent.nodes} == {"me": 0, "x": 0, "y": 0}

    def test_incompatible_protocol_versions_are_not_merged(self):
        node = make_node()
        remote = PushPull(False, (PushNodeState("z", "127.0.0.7", 7946, b"", 1, 0,
                                                bytes([3, 5, 3, 2, 5, 5])),))
        node.handle_stream(codec.encode_push_pull(remote), SRC, 1.0)
        assert node.member("z") is None
        assert node.stats["drop.push_pull.protocol"] == 1

    def test_garbage_stream_gets_an_error_reply_and_is_counted(self):
        node = make_node()
        reply = node.handle_stream(b"\x06\xc1", SRC, 0.0)
        assert reply is not None and reply[0] == 13
        assert node.stats["drop.stream.msgpack"] == 1

    def test_tcp_ping_is_answered(self):
        node = make_node()
        reply = node.handle_stream(codec.encode(Ping(9, "me")), SRC, 0.0)
        assert codec.decode_stream(reply) == Ack(9)

    def test_join_reports_contacted_and_failed(self):
        node = make_node()
        join_id = node.join([("127.0.0.2", 7946), ("127.0.0.3", 7946)], 0.0)
        opens = [e for e in node.take_effects() if isinstance(e, OpenStream)]
        assert len(opens) == 2 and all(codec.decode_stream(o.data).join for o in opens)
        peer = PushPull(True, (PushNodeState("p", "127.0.0.2", 7946, b"", 1, 0),))
        node.handle_stream_reply(opens[0].request_id, codec.encode_push_pull(peer), 0.1)
        node.handle_stream_reply(opens[1].request_id, None, 0.2)
        assert node.take_effects()[-1] == JoinFinished(1, (("127.0.0.3", 7946),), join_id)
        assert node.state_of("p") == MemberState.ALIVE


class TestPacketHandling:
    def test_ping_for_another_name_is_ignored(self):
        node = make_node()
        node.take_effects()
        feed(node, Ping(1, "someone-else"))
        assert not node.take_effects()
        assert node.stats["drop.ping_wrong_node"] == 1

    def test_ping_is_acked_to_the_source_fields(self):
        node = make_node()
        node.take_effects()
        feed(node, Ping(5, "me", "127.0.0.20", 9000, "x"))
        (send,) = node.take_effects()
        assert send.dest == ("127.0.0.20", 9000)
        assert Ack(5) in codec.decode_packet(send.data)

    def test_malformed_datagram_is_counted_not_raised(self):
        node = make_node()
        node.handle_packet(b"\x07\x01\x00\x00", SRC, 0.0)  # empty compound part
        node.handle_packet(b"\x04\x81\xa3Vsn\xa3abc", SRC, 0.0)  # short Vsn
        assert node.stats["drop.compound"] == 1
        assert node.stats["drop.vsn"] == 1

    def test_indirect_ping_relays_ack_or_sends_nack(self):
        node = make_node()
        node.take_effects()
        feed(node, IndirectPing(77, "127.0.0.30", 7946, "t", True, "127.0.0.40", 7946, "req"))
        (ping_send,) = node.take_effects()
        # Our own queued alive rides along (piggybacking); pick the ping out.
        (ping,) = [m for m in codec.decode_packet(ping_send.data) if isinstance(m, Ping)]
        assert ping_send.dest == ("127.0.0.30", 7946) and ping.node == "t"
        feed(node, Ack(ping.seq_no), now=0.1)
        (relay,) = node.take_effects()
        assert relay.dest == ("127.0.0.40", 7946)
        assert Ack(77) in codec.decode_packet(relay.data)
        # A second request whose target never answers gets a nack at ProbeTimeout.
        feed(node, IndirectPing(78, "127.0.0.30", 7946, "t", True, "127.0.0.40", 7946, "req"))
        node.take_effects()
        node.tick(0.6)
        nacks = [e for e in node.take_effects() if isinstance(e, SendPacket)
                 and Nack(78) in codec.decode_packet(e.data)]
        assert [n.dest for n in nacks] == [("127.0.0.40", 7946)]


def tick_until_probe(node: Node) -> tuple[float, Ping, SendPacket]:
    """Tick ``node`` until it pings a peer: (when, the ping, the datagram)."""
    now = 0.0
    for _ in range(100):
        when = node.next_deadline()
        assert when is not None
        now = when
        node.tick(now)
        for eff in node.take_effects():
            if isinstance(eff, SendPacket):
                pings = [m for m in codec.decode_packet(eff.data) if isinstance(m, Ping)]
                if pings:
                    return now, pings[0], eff
    raise AssertionError("no probe in 100 ticks")


class TestIdleWakeUps:
    def _probe_started(self, node: Node) -> tuple[float, Ping]:
        started, ping, _ = tick_until_probe(node)
        return started, ping

    def test_an_answered_probe_needs_no_wake_up_until_the_next_probe(self):
        node = make_node()
        feed(node, Alive(1, "x", "127.0.0.9", 7946, b""))
        started, ping = self._probe_started(node)
        config = node.config
        # Unanswered: the probe timeout (indirect probes) is the next work to do.
        assert node.next_deadline(skip_idle=True) == pytest.approx(
            started + config.probe_timeout)
        feed(node, Ack(ping.seq_no), now=started + 0.01)
        # Answered: timeout and deadline would do nothing; the next probe is the work.
        lazy = node.next_deadline(skip_idle=True)
        assert lazy == pytest.approx(started + config.probe_interval)
        assert node.next_deadline() is not None and node.next_deadline() < lazy
        # Firing the skipped timers late changes nothing.
        node.tick(lazy)
        assert node.stats["probe.failed"] == 0
        assert not any(isinstance(e, SuspicionRaised) for e in node.take_effects())


# ----------------------------------------------------------------------------- whole-protocol


def first_time(net: Net, name: str, pred) -> float | None:
    times = [t for t, e in net.effects[name] if pred(e)]
    return min(times) if times else None


def test_crash_is_detected_by_everyone_within_bounds():
    net = cluster(10)
    victim = net.node("n3")
    net.down.add(net.addr_of(victim))
    t0 = net.now
    net.run(30)
    for node in net.live():
        t = first_time(net, node.name, lambda e: isinstance(e, NodeEvent)
                       and e.member.name == "n3" and e.member.state == MemberState.DEAD)
        assert t is not None, node.name
        # Probe wait (<= ~2 rounds of 1 s) + suspicion (>= min 4 s, usually min thanks to
        # Lifeguard confirmations) + gossip.
        assert 4.0 < t - t0 < 15.0
    suspects = sum(len(net.events(n.name, SuspicionRaised)) for n in net.live())
    assert suspects >= 1


def test_no_false_positives_in_a_healthy_cluster():
    net = cluster(12)
    net.run(60)
    for node in net.live():
        assert not net.events(node.name, DeathDeclared)
        assert not net.events(node.name, SuspicionRaised)
        assert all(s == MemberState.ALIVE for s in net.view(node.name).values())


def test_graceful_leave_is_left_everywhere_never_dead():
    net = cluster(8)
    leaver = net.node("n5")
    leaver.leave(net.now)
    net._flush(leaver)
    net.run(1.0)
    assert leaver.leave_broadcast_sent
    net.down.add(net.addr_of(leaver))
    net.run(20)
    for node in net.live():
        assert net.view(node.name)["n5"] == MemberState.LEFT
        assert not any(e.node == "n5" for _, e in net.events(node.name, DeathDeclared))


def test_indirect_probe_saves_a_node_with_a_broken_direct_path():
    net = cluster(6)
    a, b = net.addr_of(net.node("n0")), net.addr_of(net.node("n1"))
    net.drop = lambda src, dst: {src, dst} == {a, b}
    net.run(40)
    assert net.view("n0")["n1"] == MemberState.ALIVE
    assert net.node("n0").stats["probe.indirect"] >= 1
    assert not net.events("n0", DeathDeclared)


def test_tcp_fallback_prevents_suspicion_when_udp_to_target_fails():
    net = cluster(4)
    b = net.addr_of(net.node("n1"))
    net.drop = lambda src, dst: dst == b or src == b
    net.run(10)
    n0 = net.node("n0")
    assert n0.stats["probe.tcp_only"] >= 1
    assert not [e for _, e in net.events("n0", SuspicionRaised) if e.node == "n1"]


def test_suspect_member_gets_buddy_suspect_and_refutes():
    net = cluster(5)
    n0, n2 = net.node("n0"), net.node("n2")
    n0.handle_packet(codec.encode(Suspect(1, "n2", "n4")), SRC, net.now)
    net._flush(n0)
    net.run(8)
    assert n2.incarnation >= 2
    assert net.events("n2", Refuted)
    assert net.view("n0")["n2"] == MemberState.ALIVE


def test_awareness_rises_when_nacks_do_not_come_back():
    net = cluster(6)
    me = net.addr_of(net.node("n0"))
    # n0 hears nothing back: every probe fails and no nack arrives.
    net.drop = lambda src, dst: dst == me
    net.drop_tcp = lambda src, dst: src == me
    net.run(6)
    assert net.node("n0").health_score >= 3


def test_same_seed_same_effects():
    def run(seed: int) -> list[str]:
        net = cluster(6, seed=seed)
        net.down.add(net.addr_of(net.node("n2")))
        net.run(15)
        return [f"{t:.6f}{e!r}" for n in sorted(net.effects) for t, e in net.effects[n]
                if not isinstance(e, SendPacket)]

    assert run(3) == run(3)
    assert run(3) != run(4)


class TestDatagramCompression:
    @staticmethod
    def _gossip_datagram(config: Config) -> bytes:
        """A gossip datagram full of alive messages (LZW shrinks these well)."""
        node = Node("me", "127.0.0.1", 7946, config, random.Random(1), 0.0)
        for i in range(12):
            feed(node, Alive(1, f"node-{i:03d}", "127.0.0.9", 7000 + i, b"role=backend"))
        node.take_effects()
        node.tick(config.gossip_interval * 2)
        sends = [e for e in node.take_effects() if isinstance(e, SendPacket)]
        assert sends
        data = max((e.data for e in sends), key=len)
        return data[5:] if data[0] == 12 else data  # past the CRC header

    def test_lan_sends_datagrams_plain_and_wan_compresses_them(self):
        plain = self._gossip_datagram(Config.lan())
        packed = self._gossip_datagram(Config.wan())
        assert plain[0] == 7  # compound, as is
        assert packed[0] == 9  # compress wrapper
        assert len(packed) < len(plain) // 2
        # Either way the receiver gets the same messages.
        assert {type(m) for m in codec.decode_packet(packed)} == {Alive}
        assert codec.decode_packet(packed) == codec.decode_packet(plain)

    def test_compression_off_wins_over_compress_datagrams(self):
        config = Config.wan(enable_compression=False)
        assert self._gossip_datagram(config)[0] == 7


class TestPortUnreachable:
    """ICMP "port unreachable" shortens the waits of a probe, never its verdict."""

    PEERS: ClassVar[dict[str, str]] = {f"t{i}": f"127.0.0.{20 + i}" for i in range(1, 5)}

    def _probing(self) -> tuple[Node, float, Ping, SendPacket]:
        node = make_node()
        for name, addr in self.PEERS.items():
            feed(node, Alive(1, name, addr, 7946, b""))
        node.take_effects()
        started, ping, sent = tick_until_probe(node)
        return node, started, ping, sent

    def test_every_path_failed_suspects_at_once(self):
        node, started, ping, sent = self._probing()
        at = started + 0.001
        node.handle_unreachable(sent.dest, sent.data, at)
        effects = node.take_effects()
        # Helpers are asked now, not after probe_timeout, and TCP is tried.
        asks = [e for e in effects if isinstance(e, SendPacket)
                and any(isinstance(m, IndirectPing) for m in codec.decode_packet(e.data))]
        (tcp,) = [e for e in effects if isinstance(e, OpenStream)]
        assert asks and tcp.dest == sent.dest
        for _ in asks:
            feed(node, Nack(ping.seq_no), now=at + 0.002)
            assert not any(isinstance(e, SuspicionRaised) for e in node.take_effects())
        node.handle_stream_reply(tcp.request_id, None, at + 0.003)  # refused
        raised = [e for e in node.take_effects() if isinstance(e, SuspicionRaised)]
        assert [r.node for r in raised] == [ping.node]
        assert node.stats["probe.ended_early"] == 1

    def test_a_silent_helper_keeps_memberlist_timing(self):
        node, started, ping, sent = self._probing()
        node.handle_unreachable(sent.dest, sent.data, started + 0.001)
        effects = node.take_effects()
        tcp = next(e for e in effects if isinstance(e, OpenStream))
        asked = sum(1 for e in effects if isinstance(e, SendPacket)
                    and any(isinstance(m, IndirectPing) for m in codec.decode_packet(e.data)))
        for _ in range(asked - 1):  # the last helper never answers
            feed(node, Nack(ping.seq_no), now=started + 0.002)
        node.handle_stream_reply(tcp.request_id, None, started + 0.003)
        node.tick(started + node.config.probe_interval - 0.01)
        assert not any(isinstance(e, SuspicionRaised) for e in node.take_effects())
        node.tick(started + node.config.probe_interval)
        assert any(isinstance(e, SuspicionRaised) for e in node.take_effects())
        assert node.stats["probe.ended_early"] == 0

    def test_an_ack_after_the_icmp_still_wins(self):
        node, started, ping, sent = self._probing()
        node.handle_unreachable(sent.dest, sent.data, started + 0.001)
        node.take_effects()
        feed(node, Ack(ping.seq_no), now=started + 0.002)  # e.g. through a helper
        node.tick(started + node.config.probe_interval)
        assert not any(isinstance(e, SuspicionRaised) for e in node.take_effects())
        assert node.stats["probe.failed"] == 0

    def test_a_helper_nacks_at_once_for_an_unreachable_target(self):
        node = make_node()
        node.take_effects()
        feed(node, IndirectPing(77, "127.0.0.30", 7946, "t", True, "127.0.0.40", 7946, "req"))
        (ping_send,) = node.take_effects()
        node.handle_unreachable(("127.0.0.30", 7946), ping_send.data, 0.01)
        (nack,) = node.take_effects()
        assert nack.dest == ("127.0.0.40", 7946)
        assert Nack(77) in codec.decode_packet(nack.data)
        node.tick(1.0)  # the relay timer has nothing left to nack
        assert not [e for e in node.take_effects() if isinstance(e, SendPacket)
                    and Nack(77) in codec.decode_packet(e.data)]


class TestClusterLabel:
    def test_members_of_another_cluster_are_refused_and_counted(self):
        ours = Node("a", "127.0.0.1", 7946, Config.lan(label="prod"), random.Random(1), 0.0)
        theirs = Node("b", "127.0.0.2", 7946, Config.lan(label="staging"), random.Random(2), 0.0)
        unlabelled = Node("c", "127.0.0.3", 7946, Config.lan(), random.Random(3), 0.0)
        for node in (ours, theirs, unlabelled):
            node.take_effects()
        ours.join([("127.0.0.2", 7946)], 0.0)
        (stream,) = [e for e in ours.take_effects() if isinstance(e, OpenStream)]
        assert theirs.handle_stream(stream.data, ("127.0.0.1", 40000), 0.0) is None
        assert unlabelled.handle_stream(stream.data, ("127.0.0.1", 40000), 0.0) is None
        assert theirs.stats["drop.stream.label"] == unlabelled.stats["drop.stream.label"] == 1
        assert theirs.member("a") is None and unlabelled.member("a") is None
        feed(theirs, Alive(1, "x", "127.0.0.9", 7946))  # plain datagram: no label
        assert theirs.member("x") is None and theirs.stats["drop.label"] == 1

    def test_same_label_joins(self):
        ours = Node("a", "127.0.0.1", 7946, Config.lan(label="prod"), random.Random(1), 0.0)
        peer = Node("b", "127.0.0.2", 7946, Config.lan(label="prod"), random.Random(2), 0.0)
        ours.take_effects()
        ours.join([("127.0.0.2", 7946)], 0.0)
        (stream,) = [e for e in ours.take_effects() if isinstance(e, OpenStream)]
        reply = peer.handle_stream(stream.data, ("127.0.0.1", 40000), 0.0)
        assert reply is not None and not reply.startswith(b"\xf4")  # replies carry no label
        ours.handle_stream_reply(stream.request_id, reply, 0.01)
        assert ours.member("b") is not None and peer.member("a") is not None
