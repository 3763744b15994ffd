"""The Serf layer over the in-memory network: tags, status, intents, events, queries."""

from __future__ import annotations

from typing import Any

import pytest

from swimlib.cluster.catch_up import CATCH_UP_GOSSIP_ROUNDS
from swimlib.cluster.events import EventType, MemberEvent, QueryEvent, UserEvent
from swimlib.cluster.serf import Emit, LeaveFinished, QueryDone, QueryReply, Serf
from swimlib.config import Config
from swimlib.errors import SwimError
from swimlib.wire import serf as sw
from swimlib.wire.crypto import Keyring, encode_key

from ..harness import Net


def is_push_pull(data: bytes) -> bool:
    """Whether a stream we open is a push-pull (whatever its compression)."""
    from swimlib.wire import codec
    from swimlib.wire.messages import PushPull

    return isinstance(codec.decode_stream(data), PushPull)


def serf_net(n: int, seed: int = 0, tags: dict[str, dict[str, str]] | None = None,
             **cfg: Any) -> Net:
    tags = tags or {}

    def factory(name, addr, port, config, rng, now, **kw):
        return Serf(name, addr, port, config, rng, now,
                    tags=tags.get(name, {"role": "web"}), **kw)

    net = Net(Config.lan(enable_compression=False, **cfg), seed=seed, factory=factory)
    for i in range(n):
        net.add(f"n{i}")
    net.run(3)
    return net


def statuses(net: Net, name: str) -> dict[str, str]:
    return {m.name: m.status_name for m in net.node(name).members()}


def emitted(net: Net, name: str, kind: type) -> list[Any]:
    return [e.event for _, e in net.effects[name] if isinstance(e, Emit)
            and isinstance(e.event, kind)]


def act(net: Net, node: Serf, fn: str, *args: Any, **kw: Any) -> Any:
    result = getattr(node, fn)(*args, now=net.now, **kw)
    net._flush(node)
    return result


def test_members_converge_with_tags_and_join_events():
    net = serf_net(4, tags={"n2": {"role": "db", "dc": "x"}})
    for node in net.live():
        assert statuses(net, node.name) == dict.fromkeys(["n0", "n1", "n2", "n3"], "alive")
        assert {m.name: m.tag_map for m in node.members()}["n2"] == {"role": "db", "dc": "x"}
        joins = {m.name for e in emitted(net, node.name, MemberEvent)
                 if e.type == EventType.MEMBER_JOIN for m in e.members}
        assert joins == {"n0", "n1", "n2", "n3"}


def test_tag_update_reaches_everyone_as_member_update():
    net = serf_net(3)
    act(net, net.node("n1"), "set_tags", {"role": "web", "weight": "10"})
    net.run(2)
    for node in net.live():
        assert {m.name: m.tag_map for m in node.members()}["n1"]["weight"] == "10"
        assert any(e.type == EventType.MEMBER_UPDATE for e in emitted(net, node.name, MemberEvent))


def test_user_event_delivered_once_everywhere():
    net = serf_net(6)
    act(net, net.node("n2"), "user_event", "deploy", b"v42", True)
    net.run(3)
    for node in net.live():
        got = emitted(net, node.name, UserEvent)
        assert [(e.name, e.payload) for e in got] == [("deploy", b"v42")]


def test_user_event_size_limit():
    net = serf_net(2)
    with pytest.raises(SwimError, match="exceeds limit"):
        net.node("n0").user_event("big", b"x" * 600, True, net.now)


def test_query_acks_responses_and_done():
    net = serf_net(4)
    handle = act(net, net.node("n0"), "query", "ping", b"hi", request_ack=True, timeout=2.0)
    net.run(0.5)
    for node in net.live():
        (q,) = emitted(net, node.name, QueryEvent)
        assert (q.name, q.payload, q.source_node) == ("ping", b"hi", "n0")
        act(net, node, "respond", q.id, b"pong-" + node.name.encode())
    net.run(2)
    replies = [e for _, e in net.effects["n0"] if isinstance(e, QueryReply)]
    assert {r.from_node for r in replies if r.kind == "ack"} == {"n0", "n1", "n2", "n3"}
    assert {(r.from_node, r.payload) for r in replies if r.kind == "response"} == {
        (f"n{i}", f"pong-n{i}".encode()) for i in range(4)}
    assert QueryDone(handle) in [e for _, e in net.effects["n0"]]


def test_query_filters_by_node_and_tag_regex():
    net = serf_net(4, tags={"n1": {"role": "db"}, "n2": {"role": "dbx"}})
    act(net, net.node("n0"), "query", "q", b"", filter_tags={"role": "^db$"}, request_ack=True)
    act(net, net.node("n0"), "query", "q2", b"", filter_nodes=["n3"])
    net.run(2)
    assert [n.name for n in net.live() if emitted(net, n.name, QueryEvent)
            and emitted(net, n.name, QueryEvent)[0].name == "q"] == ["n1"]
    assert [n.name for n in net.live()
            if any(q.name == "q2" for q in emitted(net, n.name, QueryEvent))] == ["n3"]


def test_respond_twice_or_late_is_refused():
    net = serf_net(2)
    act(net, net.node("n0"), "query", "x", b"", timeout=1.0)
    net.run(0.2)
    (q,) = emitted(net, "n1", QueryEvent)
    act(net, net.node("n1"), "respond", q.id, b"a")
    with pytest.raises(SwimError):
        net.node("n1").respond(q.id, b"b", net.now)


def test_internal_ping_query_is_acked_not_delivered():
    net = serf_net(3)
    act(net, net.node("n0"), "query", "_serf_ping", b"", request_ack=True)
    net.run(1)
    assert not any(emitted(net, n.name, QueryEvent) for n in net.live())
    acks = {e.from_node for _, e in net.effects["n0"] if isinstance(e, QueryReply)}
    assert acks == {"n0", "n1", "n2"}


def test_graceful_leave_is_left_never_failed():
    net = serf_net(5)
    act(net, net.node("n3"), "leave")
    net.run(4)
    assert any(isinstance(e, LeaveFinished) for _, e in net.effects["n3"])
    net.down.add(net.addr_of(net.node("n3")))
    net.run(20)
    for node in net.live():
        assert statuses(net, node.name)["n3"] == "left"
        kinds = [e.type for e in emitted(net, node.name, MemberEvent)
                 if e.members[0].name == "n3"]
        assert EventType.MEMBER_FAILED not in kinds
        assert kinds[-1] == EventType.MEMBER_LEAVE


def test_crash_is_failed_then_force_leave_makes_it_left_then_reaped():
    net = serf_net(4, reap_interval=1.0, tombstone_timeout=30.0)
    net.down.add(net.addr_of(net.node("n2")))
    net.run(15)
    for node in net.live():
        assert statuses(net, node.name)["n2"] == "failed"
    act(net, net.node("n0"), "force_leave", "n2", False)
    net.run(2)
    for node in net.live():
        assert statuses(net, node.name)["n2"] == "left"
    net.run(30)  # the tombstone timeout counts from when it failed
    for node in net.live():
        assert "n2" not in statuses(net, node.name)
        assert any(e.type == EventType.MEMBER_REAP for e in emitted(net, node.name, MemberEvent))


def test_leave_intent_about_self_is_refuted():
    net = serf_net(3)
    n1 = net.node("n1")
    bogus = sw.LeaveIntent(n1.clock.time() + 5, "n1")
    net.node("n0").handle_user_message(sw.encode_serf(bogus), net.now)
    net._flush(net.node("n0"))
    net.run(3)
    for node in net.live():
        assert statuses(net, node.name)["n1"] == "alive"


def test_late_joiner_ignores_old_events_unless_replay():
    net = serf_net(3)
    act(net, net.node("n0"), "user_event", "old", b"1", False)
    net.run(2)
    late = net.add("late")
    net.run(2)
    assert not emitted(net, "late", UserEvent)
    replayer = net.add("replayer", join=False)
    act(net, replayer, "join", [net.addr_of(net.node("n0"))], ignore_old=False)
    net.run(2)
    assert [e.name for e in emitted(net, "replayer", UserEvent)] == ["old"]
    assert late.clock.time() > 1


def test_key_queries_change_every_keyring():
    keys = {}

    def factory(name, addr, port, config, rng, now, **kw):
        keys[name] = Keyring([b"k" * 16])
        return Serf(name, addr, port, config, rng, now, keyring=keys[name])

    net = Net(Config.lan(enable_compression=False), factory=factory)
    for i in range(3):
        net.add(f"n{i}")
    net.run(3)
    new = b"n" * 32
    payload = sw.encode_serf(sw.KeyRequest(new))
    act(net, net.node("n0"), "query", "_serf_install-key", payload)
    net.run(2)
    assert all(new in k for k in keys.values())
    act(net, net.node("n0"), "query", "_serf_list-keys", sw.encode_serf(sw.KeyRequest()))
    net.run(2)
    responses = [sw.decode_serf(e.payload) for _, e in net.effects["n0"]
                 if isinstance(e, QueryReply) and e.kind == "response"]
    listed = [r for r in responses if r.keys]
    assert len(listed) == 3
    assert all(set(r.keys) == {encode_key(b"k" * 16), encode_key(new)} for r in listed)


def test_idle_gossip_ticks_are_skipped_only_while_nothing_is_queued():
    net = serf_net(3)
    net.run(60)  # every join broadcast has used up its transmits
    node = net.node("n1")
    assert not node.node.has_broadcasts()
    eager, lazy = node.next_deadline(), node.next_deadline(skip_idle=True)
    assert eager is not None and lazy is not None
    # Without skipping, the next wake-up is at most one gossip interval away.
    assert eager - net.now <= node.config.gossip_interval + 1e-9
    assert lazy > eager  # the probe timer, not the idle gossip tick
    act(net, node, "user_event", "deploy", b"v42", False)
    assert node.node.has_broadcasts()
    assert node.next_deadline(skip_idle=True) == node.next_deadline()


class TestCatchUp:
    """A Serf join intent for a member memberlist never announced triggers a sync."""

    PEER = ("127.0.0.2", 7946)

    def _serf(self) -> Serf:
        import random

        from swimlib.wire import codec
        from swimlib.wire.messages import Alive

        # No periodic sync to confuse the count; no probe to suspect the silent peer.
        config = Config.lan(push_pull_interval=0, probe_interval=60.0)
        me = Serf("me", "127.0.0.1", 7946, config, random.Random(3), 0.0)
        me.handle_packet(codec.encode(Alive(1, "peer", *self.PEER, sw.encode_tags({}))),
                         self.PEER, 0.0)
        me.take_effects()
        return me

    @staticmethod
    def _intent(me: Serf, name: str, now: float) -> None:
        me.handle_packet(b"\x08" + sw.encode_serf(sw.JoinIntent(7, name)), TestCatchUp.PEER,
                         now)

    @staticmethod
    def _run(me: Serf, until: float) -> list[Any]:
        from swimlib.membership.types import OpenStream

        streams = []
        for _ in range(1000):
            when = me.next_deadline()
            if when is None or when > until:
                break
            me.tick(when)
            # Push-pull streams only (probes of the fake peer fall back to TCP pings).
            streams += [e for e in me.take_effects()
                        if isinstance(e, OpenStream) and is_push_pull(e.data)]
        return streams

    def test_intent_without_alive_syncs_with_a_live_member(self):
        me = self._serf()
        self._intent(me, "ghost", 1.0)
        delay = CATCH_UP_GOSSIP_ROUNDS * me.config.gossip_interval
        assert self._run(me, 1.0 + delay - 0.01) == []
        (sync,) = self._run(me, 1.0 + delay + 0.01)
        assert sync.dest == self.PEER
        assert me.stats["catch_up.sync"] == 1
        # Heard again (same intent): not news, no second sync.
        self._intent(me, "ghost", 3.0)
        assert self._run(me, 10.0) == []

    def test_no_sync_when_the_alive_arrives_in_time(self):
        from swimlib.wire import codec
        from swimlib.wire.messages import Alive

        me = self._serf()
        self._intent(me, "late", 1.0)
        me.handle_packet(codec.encode(Alive(1, "late", "127.0.0.3", 7946, sw.encode_tags({}))),
                         ("127.0.0.3", 7946), 1.5)
        assert "late" in {m.name for m in me.members()}
        assert self._run(me, 10.0) == []
        assert me.stats["catch_up.sync"] == 0

    def test_a_failed_member_heard_rejoining_but_not_seen_alive_triggers_a_sync(self):
        from swimlib.wire import codec
        from swimlib.wire.messages import Alive, Dead

        me = self._serf()
        back = ("127.0.0.4", 7946)
        me.handle_packet(codec.encode(Alive(1, "back", *back, sw.encode_tags({}))), back, 0.5)
        me.handle_packet(codec.encode(Dead(1, "back", "peer")), self.PEER, 0.6)
        assert {m.name: m.status_name for m in me.members()}["back"] == "failed"
        self._run(me, 0.9)
        # It restarted and rejoined; its join intent reached us, its alive did not.
        self._intent(me, "back", 1.0)
        (sync,) = self._run(me, 1.0 + CATCH_UP_GOSSIP_ROUNDS * me.config.gossip_interval + 0.01)
        assert sync.dest == self.PEER
        assert me.stats["catch_up.sync"] == 1


def test_a_join_is_followed_by_a_second_sync():
    import random

    from swimlib.membership.types import OpenStream

    config = Config.lan(push_pull_interval=0, probe_interval=60.0)
    seed = Serf("seed", "127.0.0.2", 7946, config, random.Random(1), 0.0)
    me = Serf("me", "127.0.0.1", 7946, config, random.Random(2), 0.0)
    seed.take_effects()
    me.take_effects()
    me.join([("127.0.0.2", 7946)], 0.0)
    (first,) = [e for e in me.take_effects() if isinstance(e, OpenStream)]
    reply = seed.handle_stream(first.data, ("127.0.0.1", 7946), 0.01)
    me.handle_stream_reply(first.request_id, reply, 0.02)
    assert {m.name for m in me.members()} == {"me", "seed"}
    me.take_effects()
    streams = []
    for _ in range(100):
        when = me.next_deadline()
        if when is None or when > 5.0:
            break
        me.tick(when)
        streams += [e for e in me.take_effects()
                    if isinstance(e, OpenStream) and is_push_pull(e.data)]
    (again,) = streams
    assert again.dest == ("127.0.0.2", 7946)
    assert me.stats["join.follow_up_sync"] == 1


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_the_serf_protocol_version_is_advertised_and_gates_what_serf_gates(protocol):
    net = serf_net(3, tags={"n1": {"role": "db", "dc": "x"}}, protocol_version=protocol)
    for node in net.live():
        members = {m.name: m for m in node.members()}
        assert {m.delegate_cur for m in members.values()} == {protocol}
        assert {(m.protocol_cur, m.delegate_min, m.delegate_max)
                for m in members.values()} == {(2, 2, 5)}
        # serf's encodeTags: below protocol 3 the meta is the role alone.
        expected = {"role": "db"} if protocol < 3 else {"role": "db", "dc": "x"}
        assert members["n1"].tag_map == expected
    if protocol < 4:  # serf's Query: FeatureNotSupported (key operations too)
        with pytest.raises(SwimError, match=r"^Feature not supported$"):
            net.node("n0").query("q", b"", net.now)
    else:
        act(net, net.node("n0"), "query", "q", b"", request_ack=True, timeout=1.0)
        net.run(1.5)
        acks = {e.from_node for _, e in net.effects["n0"]
                if isinstance(e, QueryReply) and e.kind == "ack"}
        assert acks == {"n0", "n1", "n2"}


def test_a_role_tag_too_long_for_the_meta_is_refused_at_protocol_2():
    with pytest.raises(ValueError, match="role tag is 513 bytes"):
        sw.encode_meta({"role": "x" * 513}, 2)
    assert sw.encode_meta({"role": "web", "dc": "x"}, 2) == b"web"
    assert sw.encode_meta({}, 2) == b""
    assert sw.decode_tags(sw.encode_meta({"role": "web"}, 2)) == {"role": "web"}
