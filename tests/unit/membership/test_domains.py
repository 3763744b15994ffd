"""The membership core's value domains (swimlib.membership.domains), rule by rule,
then as the node applies them to well-formed but hostile messages."""

from __future__ import annotations

import random

import pytest

from swimlib.config import Config
from swimlib.errors import ConfigError
from swimlib.membership import domains
from swimlib.membership.node import Node
from swimlib.membership.prober import MAX_PENDING_RELAYS
from swimlib.membership.types import MemberState, OpenStream, Refuted, SendPacket
from swimlib.wire import codec
from swimlib.wire.messages import (
    Alive,
    Dead,
    IndirectPing,
    Ping,
    PushNodeState,
    PushPull,
    Suspect,
)

SRC = ("127.0.0.9", 7946)
TOP = domains.INCARNATION_MAX
FREE = domains.INCARNATION_FREE_LIMIT
#: Past this, a claim may only step from what we know.
HIGH = FREE + domains.NEW_MEMBER_SLACK


def make_node(name: str = "me", **cfg) -> Node:
    config = Config.lan(enable_compression=False, **cfg)
    return Node(name, "127.0.0.1", 7946, config, random.Random(1), 0.0)


def feed(node: Node, *msgs, now: float = 0.0) -> None:
    for m in msgs:
        node.handle_packet(codec.encode(m), SRC, now)


# ---------------------------------------------------------------- rules


class TestIncarnationRules:
    def test_anything_up_to_the_free_limit_is_plausible(self):
        assert domains.plausible_incarnation(None, 0)
        assert domains.plausible_incarnation(None, FREE)
        assert domains.plausible_incarnation(1, FREE)

    def test_above_the_free_limit_only_a_step_from_what_we_know(self):
        slack = domains.NEW_MEMBER_SLACK
        assert domains.plausible_incarnation(5, FREE + slack + 1)
        assert not domains.plausible_incarnation(5, FREE + slack + 2)
        # Whatever a node that does not know the member accepts, so do we.
        assert domains.plausible_incarnation(5, FREE + slack)
        high = FREE + slack + 100
        assert domains.plausible_incarnation(high, high + domains.INCARNATION_STEP)
        assert not domains.plausible_incarnation(high, high + 2)
        assert not domains.plausible_incarnation(TOP - 1, TOP + 1)

    def test_a_member_we_do_not_know_may_start_past_the_limit(self):
        """A node joining after an attack walked a member past the limit still learns it."""
        assert domains.plausible_incarnation(None, FREE + domains.NEW_MEMBER_SLACK)
        assert not domains.plausible_incarnation(None, FREE + domains.NEW_MEMBER_SLACK + 1)
        assert not domains.plausible_incarnation(None, TOP)

    def test_top_of_range_reachable_only_one_step_at_a_time(self):
        # From the free limit, exhausting uint32 takes this many accepted claims.
        assert (TOP - FREE) // domains.INCARNATION_STEP >= 2**30

    def test_refutation_out_bids_and_never_overflows(self):
        assert domains.refutation_incarnation(3, 1) == 4
        assert domains.refutation_incarnation(3, 7) == 8
        assert domains.refutation_incarnation(TOP - 1, 0) == TOP
        assert domains.refutation_incarnation(TOP, 0) is None
        assert domains.refutation_incarnation(0, TOP) is None


class TestNameRules:
    @pytest.mark.parametrize("name", ["web-1", "node.example.com", "ünïcode", "a b", "x" * 512])
    def test_ordinary_names_pass(self, name):
        assert domains.name_problem(name) is None

    @pytest.mark.parametrize(("name", "reason"), [
        ("", "name_empty"),
        ("x" * 513, "name_long"),
        ("é" * 257, "name_long"),  # 514 bytes
        ("a\nb", "name_control"),
        ("tab\there", "name_control"),
        ("nul\x00", "name_control"),
        ("del\x7f", "name_control"),
        (b"bad\xff".decode("utf-8", "surrogateescape"), "name_utf8"),
    ])
    def test_hostile_names_refused_with_reason(self, name, reason):
        assert domains.name_problem(name) == reason

    def test_strict_names_as_serf_validate_node_names(self):
        assert domains.strict_name_problem("web-1.dc1") is None
        assert domains.strict_name_problem("web_1") == "name_invalid"
        assert domains.strict_name_problem("a b") == "name_invalid"
        assert domains.strict_name_problem("x" * 129) == "name_long"


class TestAddressRules:
    @pytest.mark.parametrize("addr", ["127.0.0.1", "10.1.2.3", "::1", "fe80::1"])
    def test_usable(self, addr):
        assert domains.address_problem(addr, 7946) is None

    @pytest.mark.parametrize(("addr", "port", "reason"), [
        ("127.0.0.1", 0, "addr_port_zero"),
        ("", 7946, "addr_missing"),
        ("0.0.0.0", 7946, "addr_unusable"),
        ("::", 7946, "addr_unusable"),
        ("224.0.0.1", 7946, "addr_unusable"),
        ("255.255.255.255", 7946, "addr_unusable"),
        ("not-an-ip", 7946, "addr_invalid"),
    ])
    def test_unusable(self, addr, port, reason):
        assert domains.address_problem(addr, port) == reason

    def test_verification_rate_limited(self):
        assert domains.may_verify(None, 0.0)
        assert not domains.may_verify(5.0, 5.0 + domains.VERIFY_INTERVAL - 0.1)
        assert domains.may_verify(5.0, 5.0 + domains.VERIFY_INTERVAL)


# ---------------------------------------------------------------- applied by the node


class TestAccusations:
    def test_suspicion_at_top_of_range_cannot_make_us_unrefutable(self):
        node = make_node()
        feed(node, Suspect(TOP, "me", "x"), Dead(TOP, "me", "x"), Suspect(TOP - 1, "me", "x"))
        assert node.incarnation == 1
        assert node.stats["drop.suspect_incarnation_implausible"] == 2
        assert not [e for e in node.take_effects() if isinstance(e, Refuted)]

    def test_accusation_at_free_limit_is_refuted_as_memberlist_does(self):
        # A restarted node adopts the cluster's memory of its previous life.
        node = make_node()
        feed(node, Suspect(FREE, "me", "x"))
        assert node.incarnation == FREE + 1

    def test_walking_the_range_needs_one_refutation_per_step(self):
        node = make_node()
        feed(node, Suspect(HIGH, "me", "x"))
        for _ in range(50):
            feed(node, Suspect(node.incarnation + 5, "me", "x"))  # too far: refused
            feed(node, Suspect(node.incarnation + 1, "me", "x"))  # one step: refuted
        assert node.incarnation == HIGH + 1 + 50 * 2

    def test_third_party_accusation_far_ahead_is_refused_and_verified(self):
        node = make_node()
        feed(node, Alive(FREE, "x", "127.0.0.9", 7946))
        node.take_effects()
        feed(node, Dead(TOP, "x", "y"), now=1.0)
        assert node.state_of("x") == MemberState.ALIVE
        assert node.stats["drop.dead_incarnation_implausible"] == 1
        syncs = [e for e in node.take_effects() if isinstance(e, OpenStream)]
        assert [s.dest for s in syncs] == [("127.0.0.9", 7946)]
        # A second refusal soon after does not open another stream.
        feed(node, Suspect(TOP, "x", "y"), now=2.0)
        assert not [e for e in node.take_effects() if isinstance(e, OpenStream)]

    def test_members_own_row_from_our_sync_may_jump(self):
        node = make_node()
        feed(node, Alive(HIGH, "x", "127.0.0.9", 7946))
        feed(node, Alive(HIGH + 10, "x", "127.0.0.9", 7946, b"new"), now=1.0)
        assert node.member("x").incarnation == HIGH
        sync = [e for e in node.take_effects() if isinstance(e, OpenStream)][-1]
        reply = PushPull(False, (
            PushNodeState("x", "127.0.0.9", 7946, b"new", HIGH + 10, 0),
            PushNodeState("z", "127.0.0.7", 7946, b"", TOP, 0),  # someone else's word: no
        ))
        node.handle_stream_reply(sync.request_id, codec.encode_push_pull(reply), 2.0)
        assert node.member("x").incarnation == HIGH + 10
        assert node.member("x").meta == b"new"
        assert node.member("z") is None

    def test_the_same_row_pushed_to_us_is_not_the_members_word(self):
        node = make_node()
        feed(node, Alive(FREE, "x", "127.0.0.9", 7946))
        remote = PushPull(False, (PushNodeState("x", "127.0.0.9", 7946, b"", TOP, 0),))
        node.handle_stream(codec.encode_push_pull(remote), ("127.0.0.9", 50000), 1.0)
        assert node.member("x").incarnation == FREE

    def test_forged_alive_at_top_for_a_known_member_is_refused(self):
        node = make_node()
        feed(node, Alive(3, "x", "127.0.0.9", 7946))
        feed(node, Alive(TOP, "x", "127.0.0.9", 7946, b"evil"))
        assert node.member("x").incarnation == 3
        assert node.member("x").meta == b""
        feed(node, Alive(TOP, "me", "127.0.0.1", 7946, b"evil"))
        assert node.incarnation == 1
        assert node.stats["drop.alive_incarnation_implausible"] == 2

    def test_new_member_near_the_top_is_refused(self):
        node = make_node()
        feed(node, Alive(TOP - 5, "x", "127.0.0.9", 7946))
        assert node.member("x") is None
        feed(node, Alive(FREE + 1000, "y", "127.0.0.8", 7946))
        assert node.member("y").incarnation == FREE + 1000

    def test_accuser_with_control_characters_is_refused(self):
        node = make_node()
        feed(node, Alive(1, "x", "127.0.0.9", 7946))
        feed(node, Suspect(1, "x", "evil\nline"), Dead(1, "x", ""))
        assert node.state_of("x") == MemberState.ALIVE
        assert node.stats["drop.suspect_from_name_control"] == 1
        assert node.stats["drop.dead_from_name_empty"] == 1


class TestMemberDomains:
    @pytest.mark.parametrize(("alive", "counter"), [
        (Alive(1, "", "127.0.0.9", 7946), "drop.alive_name_empty"),
        (Alive(1, "a\tb", "127.0.0.9", 7946), "drop.alive_name_control"),
        (Alive(1, "x", "", 7946), "drop.alive_addr_missing"),
        (Alive(1, "x", "0.0.0.0", 7946), "drop.alive_addr_unusable"),
        (Alive(1, "x", "127.0.0.9", 0), "drop.alive_addr_port_zero"),
    ])
    def test_alive_outside_domain_is_refused(self, alive, counter):
        node = make_node()
        feed(node, alive)
        assert len(node.members()) == 1
        assert node.stats[counter] == 1

    def test_strict_names_only_when_asked(self):
        lax, strict = make_node(), make_node(validate_node_names=True)
        for node in (lax, strict):
            feed(node, Alive(1, "under_score", "127.0.0.9", 7946))
        assert lax.member("under_score") is not None
        assert strict.member("under_score") is None
        assert strict.stats["drop.alive_name_invalid"] == 1

    def test_own_name_outside_domain_is_a_config_error(self):
        with pytest.raises(ConfigError, match="name_control"):
            make_node("bad\nname")
        with pytest.raises(ConfigError, match="name_invalid"):
            make_node("under_score", validate_node_names=True)

    def test_ping_with_unusable_source_is_answered_at_its_real_source(self):
        node = make_node()
        feed(node, Ping(7, "me", "0.0.0.0", 0, "x"))
        sent = [e for e in node.take_effects() if isinstance(e, SendPacket)]
        assert [s.dest for s in sent] == [SRC]

    def test_indirect_ping_to_unusable_target_is_refused(self):
        node = make_node()
        feed(node, IndirectPing(7, "224.0.0.1", 7946, "y", True))
        assert not [e for e in node.take_effects() if isinstance(e, SendPacket)]
        assert node.stats["drop.indirect_ping_addr_unusable"] == 1

    def test_indirect_ping_flood_is_bounded(self):
        node = make_node()
        for seq in range(MAX_PENDING_RELAYS + 10):
            feed(node, IndirectPing(seq, "127.0.0.5", 7946, "y", True))
        assert node.stats["drop.indirect_ping_too_many"] == 10
        node.tick(node.config.probe_timeout + 0.1)  # relays expire: room again
        feed(node, IndirectPing(1, "127.0.0.5", 7946, "y", True), now=1.0)
        assert node.stats["drop.indirect_ping_too_many"] == 10


def test_table_admits_members_within_its_byte_budget(monkeypatch):
    monkeypatch.setattr(domains, "MAX_TABLE_BYTES", 3 * (domains.ROW_OVERHEAD + 8))
    node = make_node()  # "me": 2 bytes + overhead
    for i in range(4):
        feed(node, Alive(1, f"member{i}", f"127.0.0.{10 + i}", 7946))
    assert len(node.members()) == 3
    assert node.stats["drop.alive_table_full"] == 2


def test_row_cost_bounds_the_encoded_row():
    from swimlib.wire.messages import PushNodeState

    for name, meta in (("", b""), ("x" * 512, b"m" * 512), ("é" * 100, b"")):
        row = codec.encode_node_state(PushNodeState(name, "2001:db8::1", 65535, meta,
                                                    TOP, 3, bytes(6)))
        assert len(row) <= domains.row_cost(name, meta)


class TestProtocolVersions:
    SERF = bytes([1, 5, 2, 2, 5, 5])

    @pytest.mark.parametrize("theirs", [
        bytes([1, 5, 2, 2, 5, 5]),  # Serf 0.9.4
        bytes([1, 5, 2, 2, 5, 4]),  # serf -protocol=4
        bytes([1, 5, 5, 2, 5, 2]),  # speaking memberlist 5, Serf 2
    ])
    def test_serf_agents_of_any_protocol_are_compatible(self, theirs):
        assert domains.vsn_compatible(self.SERF, theirs)

    @pytest.mark.parametrize("theirs", [
        bytes([1, 1, 1, 2, 5, 5]),  # cannot understand our memberlist 2
        bytes([3, 5, 3, 2, 5, 5]),  # needs memberlist >= 3
        bytes([1, 5, 2, 2, 4, 4]),  # cannot understand our Serf 5
        bytes([1, 5, 2, 2, 5, 1]),  # speaks a Serf we cannot
    ])
    def test_a_member_outside_our_ranges_is_refused(self, theirs):
        assert not domains.vsn_compatible(self.SERF, theirs)
        node = make_node()
        feed(node, Alive(1, "odd", "127.0.0.9", 7946, b"", theirs))
        assert node.member("odd") is None
        assert node.stats["drop.alive_incompatible_vsn"] == 1

    def test_one_refused_member_cannot_stop_push_pull(self):
        node = make_node()
        feed(node, Alive(1, "odd", "127.0.0.9", 7946, b"", bytes([1, 1, 1, 2, 5, 5])))
        remote = PushPull(False, (PushNodeState("z", "127.0.0.7", 7946, b"", 1, 0),))
        node.handle_stream(codec.encode_push_pull(remote), SRC, 1.0)
        assert node.member("z") is not None
        assert node.stats["drop.push_pull.protocol"] == 0
