"""Coordinates in the Serf layer: acks carry them, direct probes update them, the
cache follows the member list, hostile payloads are counted drops.

Everything runs over the in-memory network (1 ms each way, so every RTT is
exactly 2 ms); a hostile peer is a Serf whose ``ack_payload`` was replaced.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from swimlib.cluster import coordinates as co
from swimlib.cluster.serf import Serf
from swimlib.config import Config
from swimlib.membership.node import Node
from swimlib.membership.types import PingCompleted
from swimlib.wire import serf as sw
from swimlib.wire._mp import pack

from ..harness import LATENCY, Net


def serf_net(n: int, **cfg: Any) -> Net:
    disabled = cfg.pop("disabled", ())

    def factory(name, addr, port, config, rng, now, **kw):
        if name in disabled:
            config = config.evolve(disable_coordinates=True)
        return Serf(name, addr, port, config, rng, now, **kw)

    net = Net(Config.lan(enable_compression=False, **cfg), factory=factory)
    for i in range(n):
        net.add(f"n{i}")
    return net


def test_estimates_converge_to_the_measured_rtt():
    net = serf_net(4)
    net.run(40)
    for node in net.live():
        assert node.stats["coordinate.updates"] > 0
        assert not [k for k in node.stats if k.startswith("drop.serf.coordinate")]
        me = node.get_coordinate()
        assert node.get_cached_coordinate(node.name) == me
        for other in net.live():
            if other is node:
                continue
            theirs = node.get_cached_coordinate(other.name)
            assert theirs is not None
            assert abs(co.distance_seconds(me, theirs) - 2 * LATENCY) < 0.5e-3
        assert node.coordinate_resets == 0


def test_ack_payload_is_our_coordinate_and_follows_it():
    net = serf_net(2)
    node = net.node("n0")
    assert sw.decode_ping_payload(node.ack_payload()) == node.get_coordinate()
    net.run(10)
    assert node.get_coordinate() != co.new_coordinate()
    assert sw.decode_ping_payload(node.ack_payload()) == node.get_coordinate()


def test_disable_coordinates():
    net = serf_net(3, disabled=("n0",))
    net.run(20)
    off, on = net.node("n0"), net.node("n1")
    assert off.ack_payload() == b""
    assert off.get_coordinate() is None and off.coordinate_resets is None
    assert off.get_cached_coordinate("n0") is None and off.get_cached_coordinate("n1") is None
    # The others keep their coordinates; they learn none for n0 (it sends none).
    assert on.get_cached_coordinate("n2") is not None
    assert on.get_cached_coordinate("n0") is None
    assert {m.name for m in on.members()} == {"n0", "n1", "n2"}


def test_a_reaped_member_takes_its_coordinate_and_samples_along():
    net = serf_net(3, reconnect_timeout=5.0, reap_interval=1.0)
    net.run(20)
    node = net.node("n0")
    assert node.get_cached_coordinate("n2") is not None
    assert node._coords.tracked_nodes() == 2
    net.down.add(net.addr_of(net.node("n2")))
    net.run(60)
    assert "n2" not in {m.name for m in node.members()}
    assert node.get_cached_coordinate("n2") is None
    assert node._coords.tracked_nodes() == 1


def _coord_map(vec: list[Any], error: Any = 0.5, adjustment: Any = 0.0,
               height: Any = 1e-5) -> dict[str, Any]:
    return {"Adjustment": adjustment, "Error": error, "Height": height, "Vec": vec}


HOSTILE = {
    "ping_version": b"\x02" + pack(_coord_map([0.0] * 8)),
    "msgpack": b"\x01\xc1",
    "schema": b"\x01" + pack([1, 2, 3]),
    "schema ": b"\x01" + pack(_coord_map([b"x"] * 8)),
    "schema  ": b"\x01" + pack(_coord_map([0.0] * 65)),
    "schema   ": b"\x01" + pack(_coord_map([0.0] * 8, error=True)),
    "dimension": b"\x01" + pack(_coord_map([0.0] * 7)),
    "dimension ": b"\x01" + pack(_coord_map(None)),
    "invalid": b"\x01" + pack(_coord_map([math.nan] + [0.0] * 7)),
    "invalid ": b"\x01" + pack(_coord_map([0.0] * 8, height=math.inf)),
    "invalid  ": b"\x01" + pack(_coord_map([0.0] * 8, error=-math.inf)),
    "domain": b"\x01" + pack(_coord_map([1e308] * 8)),
    "domain ": b"\x01" + pack(_coord_map([0.0] * 8, height=-0.001)),
    "domain  ": b"\x01" + pack(_coord_map([0.0] * 8, error=-1.0)),
    "domain   ": b"\x01" + pack(_coord_map([0.0] * 8, adjustment=-1e9)),
    "domain    ": b"\x01" + pack(_coord_map([0.0] * 7 + [101.0])),
}


@pytest.mark.parametrize("reason", sorted(HOSTILE))
def test_hostile_ack_payload_is_a_counted_drop(reason):
    net = serf_net(2)
    net.run(5)
    victim, hostile = net.node("n0"), net.node("n1")
    before = victim.get_coordinate()
    probes = victim.node.stats["probe.sent"]
    hostile.ack_payload = lambda: HOSTILE[reason]
    net.run(5)
    assert victim.node.stats["probe.sent"] - probes >= 3
    assert victim.stats["drop.serf.coordinate_" + reason.strip()] >= 3
    assert victim.get_coordinate() == before
    assert co.coordinate_problem(victim.get_coordinate()) is None
    # Membership is untouched by a bad coordinate.
    assert {m.name: m.status_name for m in victim.members()} == {"n0": "alive", "n1": "alive"}


def test_odd_but_valid_payloads_are_accepted():
    net = serf_net(2)
    net.run(5)
    victim, peer = net.node("n0"), net.node("n1")
    # Integers where Go writes floats, and trailing bytes: Go's decoder takes both.
    peer.ack_payload = lambda: b"\x01" + pack(_coord_map([0] * 8, error=1, height=0)) + b"junk"
    updates = victim.stats["coordinate.updates"]
    net.run(5)
    assert victim.stats["coordinate.updates"] > updates
    assert victim.get_cached_coordinate("n1") == sw.Coordinate((0.0,) * 8, 1.0, 0.0, 0.0)
    # An empty payload (a plain memberlist peer) is neither an update nor a drop.
    peer.ack_payload = lambda: b""
    updates = victim.stats["coordinate.updates"]
    net.run(5)
    assert victim.stats["coordinate.updates"] == updates
    assert not [k for k in victim.stats if k.startswith("drop.serf.coordinate")]


def test_ping_completed_for_a_non_member_is_dropped():
    net = serf_net(2)
    node = net.node("n0")
    node.node._effects.append(PingCompleted("stranger", 0.002,
                                            sw.encode_ping_payload(co.new_coordinate())))
    node.tick(net.now)
    assert node.stats["drop.serf.coordinate_not_member"] == 1
    assert node.get_cached_coordinate("stranger") is None
    assert node._coords.tracked_nodes() == 0


def test_adversarial_in_domain_coordinates_never_poison_ours():
    """Any sequence of in-domain coordinates and RTTs leaves ours finite and in domain."""
    rng = random.Random(5)
    client = co.CoordinateClient(random.Random(1))
    limit = co.MAX_COORDINATE_SECONDS
    picks = (0.0, 1e-6, 1e-3, 1.0, limit, -limit, 5e-7)
    for i in range(3000):
        other = sw.Coordinate(
            tuple(rng.choice(picks) if rng.random() < 0.5 else rng.uniform(-limit, limit)
                  for _ in range(8)),
            rng.choice((0.0, 1e-9, 1.5, limit)), rng.uniform(-limit, limit),
            rng.choice((0.0, 1e-5, limit, rng.uniform(0, limit))))
        rtt = rng.choice((0.0, 1e-9, 0.5, co.MAX_RTT, rng.uniform(0, co.MAX_RTT)))
        client.update(f"n{i % 7}", other, rtt)
        assert co.coordinate_problem(client.coordinate) is None
    assert client.tracked_nodes() <= 7


class _Recorder:
    """A minimal delegate: the node then reports PingCompleted."""

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        return []

    def has_broadcasts(self) -> bool:
        return False

    def local_state(self, join: bool) -> bytes:
        return b""

    def ack_payload(self) -> bytes:
        return b"coord"


def test_only_direct_acks_to_our_probes_are_reported():
    net = Net(Config.lan(enable_compression=False),
              factory=lambda *a, **kw: Node(*a, delegate=_Recorder(), **kw))
    for i in range(3):
        net.add(f"n{i}")
    net.run(5)
    a, b = net.addr_of(net.node("n0")), net.addr_of(net.node("n1"))
    net.drop = lambda src, dst: {src, dst} == {a, b}  # n0 <-> n1 only through n2
    start = net.now
    net.run(30)
    pings = [(t, e) for t, e in net.events("n0", PingCompleted) if t > start]
    assert pings and {e.node for _, e in pings} == {"n2"}
    assert all(e.rtt == pytest.approx(2 * LATENCY) and e.payload == b"coord" for _, e in pings)
    assert net.node("n0").stats["probe.indirect"] > 0  # n1 was probed, via n2


def test_a_node_without_delegate_reports_nothing():
    net = Net(Config.lan(enable_compression=False))
    for i in range(2):
        net.add(f"n{i}")
    net.run(10)
    assert net.node("n0").stats["probe.sent"] > 0
    assert not net.events("n0", PingCompleted)
