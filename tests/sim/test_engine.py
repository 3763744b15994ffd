"""The engine: ordering, wake-ups, packet and stream routing, determinism."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest

from simulations.engine import CRASHED, SimNode, address_of
from simulations.metrics import converged
from swimlib.config import Config
from swimlib.membership.types import Address, Effect, Member, OpenStream, SendPacket
from tests.sim.helpers import make_sim, seed_all


class Scripted:
    """A node that does exactly what the test tells it and records what it gets."""

    def __init__(self, name: str, addr: str, port: int, config: Config,
                 rng: random.Random, now: float) -> None:
        self.name = name
        self.effects: list[Effect] = []
        self.deadlines: list[float] = []
        self.ticks: list[float] = []
        self.packets: list[tuple[float, bytes, Address]] = []
        self.streams: list[tuple[float, bytes]] = []
        self.replies: list[tuple[float, int, bytes | None]] = []
        self.reply: bytes | None = b"pong"

    incarnation = 1

    def handle_packet(self, data: bytes, source: Address, now: float) -> None:
        self.packets.append((now, data, source))

    def handle_stream(self, data: bytes, source: Address, now: float) -> bytes | None:
        self.streams.append((now, data))
        return self.reply

    def handle_stream_reply(self, request_id: int, data: bytes | None, now: float) -> None:
        self.replies.append((now, request_id, data))

    def tick(self, now: float) -> None:
        self.ticks.append(now)
        while self.deadlines and self.deadlines[0] <= now:
            self.deadlines.pop(0)

    def next_deadline(self) -> float | None:
        return self.deadlines[0] if self.deadlines else None

    def join(self, addrs: Sequence[Address], now: float) -> None:
        pass

    def leave(self, now: float) -> None:
        pass

    def take_effects(self) -> list[Effect]:
        out, self.effects = self.effects, []
        return out

    def members(self) -> list[Member]:
        return []


def scripted(name: str, addr: str, port: int, config: Config, rng: random.Random,
             now: float) -> SimNode:
    return Scripted(name, addr, port, config, rng, now)


def node(sim: Any, i: int) -> Scripted:
    n = sim.slots[i].node
    assert isinstance(n, Scripted)
    return n


def test_address_plan() -> None:
    assert address_of(0) == ("127.0.0.1", 7946)
    assert address_of(249) == ("127.0.0.250", 7946)
    assert address_of(250) == ("127.0.1.1", 7946)


def test_ticks_at_deadlines_and_only_earliest_wakeup_counts() -> None:
    sim = make_sim(1, factory=scripted, latency=0.0)
    n = node(sim, 0)
    n.deadlines = [5.0]
    sim.poke(0)
    n.deadlines = [2.0, 5.0]  # an earlier deadline appears: re-armed, the 5.0 one stays valid
    sim.poke(0)
    sim.run_until(10.0)
    assert n.ticks == [2.0, 5.0]
    assert sim.now == 10.0


def test_packets_arrive_after_latency_and_crashed_nodes_get_nothing() -> None:
    sim = make_sim(3, factory=scripted, latency=0.010)
    node(sim, 0).effects = [SendPacket(address_of(1), b"a"), SendPacket(address_of(2), b"b")]
    sim.stop(2, CRASHED)
    sim.poke(0)
    sim.run_until(1.0)
    (t, data, src), = node(sim, 1).packets
    assert data == b"a" and src == address_of(0)
    assert 0.008 <= t <= 0.012  # 10 ms +- 20 %
    assert node(sim, 2).packets == []
    assert sim.net.msgs_sent[0] == 2 and sim.net.bytes_sent[0] == 2


def test_stream_round_trip_refused_and_partitioned() -> None:
    sim = make_sim(4, factory=scripted, latency=0.010)
    sim.stop(2, CRASHED)
    sim.net.block([0], [3])
    node(sim, 0).effects = [
        OpenStream(1, address_of(1), b"ping", 10.0),
        OpenStream(2, address_of(2), b"ping", 10.0),  # host down, path up: refused quickly
        OpenStream(3, address_of(3), b"ping", 10.0),  # no route: times out
    ]
    sim.poke(0)
    sim.run_until(20.0)
    replies = {rid: (t, data) for t, rid, data in node(sim, 0).replies}
    assert replies[1][1] == b"pong" and replies[1][0] < 0.05
    assert replies[2][1] is None and replies[2][0] < 0.05
    assert replies[3] == (10.0, None)
    assert node(sim, 1).streams[0][1] == b"ping"


def test_one_way_partition_breaks_stream_replies() -> None:
    sim = make_sim(2, factory=scripted, latency=0.001)
    sim.net.block([1], [0])  # requests get through, replies do not
    node(sim, 0).effects = [OpenStream(7, address_of(1), b"x", 3.0)]
    sim.poke(0)
    sim.run_until(5.0)
    assert len(node(sim, 1).streams) == 1
    assert node(sim, 0).replies == [(3.0, 7, None)]


def test_stale_replies_do_not_reach_a_restarted_node() -> None:
    sim = make_sim(2, factory=scripted, latency=0.010)
    node(sim, 0).effects = [OpenStream(1, address_of(1), b"x", 10.0)]
    sim.poke(0)
    sim.stop(0, CRASHED)
    sim.restart(0)
    sim.run_until(1.0)
    assert node(sim, 0).replies == []


def _fake_run(seed: int) -> str:
    sim = make_sim(12, seed=seed, latency=0.002, loss=0.05)
    seed_all(sim)
    sim.run_until(5.0)
    sim.stop(3, CRASHED)
    sim.run_until(30.0)
    return sim.trace.hexdigest()


def test_same_seed_same_trace_different_seed_different_trace() -> None:
    assert _fake_run(1) == _fake_run(1)
    assert _fake_run(1) != _fake_run(2)


def test_fake_cluster_detects_a_crash_and_converges() -> None:
    sim = make_sim(8, latency=0.001)
    seed_all(sim)
    sim.run_until(3.0)
    sim.stop(5, CRASHED)
    sim.run_until(20.0)
    assert converged(sim)
    assert sim.trace.lines is not None
    texts = [text for _, _, text in sim.trace.lines]
    assert "fault crash" in texts
    assert any(t.startswith("declare-dead node-0005") for t in texts)


def test_restart_requires_a_stopped_node() -> None:
    sim = make_sim(2)
    with pytest.raises(ValueError):
        sim.restart(0)
