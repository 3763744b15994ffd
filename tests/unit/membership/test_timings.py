"""What the cores record for metrics: probe and push-pull durations, memberlist's
and Serf's counters. Over the 1 ms in-memory network of ``harness.py``."""

from __future__ import annotations

import pytest

from swimlib.cluster.serf import Serf
from swimlib.config import Config
from swimlib.membership.timings import Timing

from ..harness import LATENCY, Net


def test_timing_keeps_count_total_and_the_newest_samples() -> None:
    timing = Timing(keep=3)
    for i in range(5):
        timing.add(10.0 + i, 10.0 + i - 0.002 * (i + 1))
    assert timing.count == 5
    assert timing.total == pytest.approx(2 + 4 + 6 + 8 + 10)
    assert [round(ms) for _, ms in timing.recent] == [6, 8, 10]
    assert [round(ms) for ms in timing.since(3)] == [8, 10]
    assert [round(ms) for ms in timing.since(0)] == [6, 8, 10]  # only what is kept
    assert timing.since(5) == []
    assert [round(ms) for ms in timing.window(14.0, 1.5)] == [8, 10]


def test_a_probe_lasts_a_round_trip_and_a_failed_one_its_whole_period() -> None:
    net = Net(Config.lan(enable_compression=False))
    a, b = net.add("a"), net.add("b")
    net.run(10)
    probes = a.timings.probe
    assert probes.count >= 5
    assert all(ms == pytest.approx(2 * LATENCY * 1000) for _, ms in probes.recent)
    assert a.stats["msg.alive"] >= 1  # b's alive, applied
    net.down.add(net.addr_of(b))
    count = probes.count
    net.run(3)
    failed = probes.since(count)
    assert failed and max(failed) == pytest.approx(a.config.probe_interval * 1000, rel=0.01)
    assert a.stats["msg.suspect"] == 1
    net.run(60)
    assert a.stats["msg.dead"] == 1


def test_push_pulls_are_timed_joins_included() -> None:
    net = Net(Config.lan(enable_compression=False, push_pull_interval=5.0))
    a = net.add("a")
    b = net.add("b")  # joins a: one push-pull out
    net.run(0.1)
    assert b.timings.push_pull.count == 1
    assert b.timings.push_pull.recent[0][1] == pytest.approx(2 * LATENCY * 1000)
    net.run(20)
    assert a.timings.push_pull.count >= 2 and b.timings.push_pull.count >= 3


def test_serf_counts_member_events_user_events_queries_and_messages() -> None:
    net = Net(Config.lan(enable_compression=False), factory=Serf)
    a, b, c = net.add("a"), net.add("b"), net.add("c")
    net.run(5)
    assert a.stats["member.join"] == 3  # itself, b, c
    b.set_tags({"role": "web"}, net.now)
    b.user_event("deploy", b"v1", False, net.now)
    handle = c.query("ping", b"", net.now, request_ack=True)
    net.run(5)
    assert handle > 0
    assert a.stats["member.update"] == 1
    assert a.stats["serf.events"] == 1 and b.stats["serf.events"] == 1
    assert a.stats["serf.queries"] == 1
    assert c.stats["query.acks"] >= 2
    assert b.stats["serf.msgs.sent"] >= 1 and b.stats["serf.msgs.sent_bytes"] > 0
    assert a.stats["serf.msgs.received"] >= 3
    net.down.add(net.addr_of(c))
    net.run(20)
    assert a.stats["member.failed"] == 1
    net.down.discard(net.addr_of(c))
    net.rejoin(c, through=a)  # back well inside the 60 s flap window
    net.run(10)
    assert a.stats["member.join"] == 4
    assert a.stats["member.flap"] == 1
