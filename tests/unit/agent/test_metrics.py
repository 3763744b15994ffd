"""The metrics mapping (:mod:`swimlib.agent.metrics`) and its two renderings:
Prometheus's text format (parsed back with prometheus_client's parser) and
go-metrics' statsd lines. The agents run on an in-memory network on virtual time."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from swimlib import Config, MemberStatus, MemoryNetwork, __version__, open_agent
from swimlib.agent.metrics import Family, Kind, Summary, collect
from swimlib.agent.prometheus import make_registry
from swimlib.agent.runtime import Agent
from swimlib.agent.statsd import GAUGE_REFRESH, StatsdLines, packets
from swimlib.membership.timings import Timing
from tests.backends import virtual_time  # noqa: F401

LOCAL = Config.local()


def host(i: int) -> str:
    return f"10.0.0.{i + 1}"


@asynccontextmanager
async def cluster(network: MemoryNetwork, n: int) -> AsyncIterator[list[Agent]]:
    async with AsyncExitStack() as stack:
        agents = [await stack.enter_async_context(open_agent(
            f"n{i}", config=LOCAL, rng=random.Random(i),
            transport=network.open_transport(host(i)))) for i in range(n)]
        for agent in agents[1:]:
            assert await agent.join([f"{host(0)}:7946"]) == 1
        with anyio.fail_after(30):
            for agent in agents:
                for other in agents:
                    await agent.wait_member(other.name)
        yield agents


def scrape(agent: Agent) -> dict[str, Any]:
    """``/metrics`` as a scraper reads it: family name -> {(sample, labels): value}."""
    registry = make_registry(lambda now: collect(agent, now), anyio.current_time)
    text = generate_latest(registry).decode()
    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        out[family.name] = {"type": family.type, "samples": {
            (s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}}
    return out


def value(metrics: dict[str, Any], family: str, sample: str | None = None,
          **labels: str) -> float:
    return float(metrics[family]["samples"][(sample or family, tuple(sorted(labels.items())))])


# ---------------------------------------------------------------- names


def test_names_follow_go_metrics_sinks() -> None:
    sent = Family(("memberlist", "udp", "sent"), Kind.COUNTER, "")
    assert sent.prometheus_name == "serf_agent_memberlist_udp_sent"
    assert sent.statsd_key("vm") == "serf-agent.memberlist.udp.sent"  # no host on counters
    score = Family(("memberlist", "health", "score"), Kind.GAUGE, "")
    assert score.statsd_key("vm") == "serf-agent.vm.memberlist.health.score"
    instances = Family(("memberlist", "node", "instances"), Kind.GAUGE, "",
                       labels=("node_state",))
    assert instances.statsd_key("vm", ("alive",)) == "serf-agent.vm.memberlist.node.instances.alive"
    adjust = Family(("serf", "coordinate", "adjustment-ms"), Kind.SUMMARY, "")
    assert adjust.prometheus_name == "serf_agent_serf_coordinate_adjustment_ms"
    drops = Family(("swimlib", "drops"), Kind.COUNTER, "", go=False, labels=("reason",))
    assert drops.prometheus_name == "swimlib_drops"
    assert drops.statsd_key("vm", ("crc",)) == "serf-agent.swimlib.drops.crc"


def test_summary_quantiles_cover_the_last_ten_seconds() -> None:
    timing = Timing()
    for i in range(30):
        timing.add(float(i), float(i) - 0.001 * (i + 1))  # i + 1 ms, at second i
    q = Summary.of(timing).quantiles(now=29.0)
    assert q == {0.5: pytest.approx(25.0), 0.9: pytest.approx(29.0), 0.99: pytest.approx(30.0)}
    assert all(math.isnan(v) for v in Summary.of(Timing()).quantiles(now=1.0).values())


# ---------------------------------------------------------------- the agent's metrics


async def test_scraped_metrics_follow_the_cluster() -> None:
    network = MemoryNetwork(seed=3, latency=0.005)
    async with cluster(network, 3) as agents:
        a = agents[0]
        await anyio.sleep(5)
        m = scrape(a)
        alive = value(m, "serf_agent_memberlist_node_instances", node_state="alive")
        assert alive == 3
        assert value(m, "swimlib_members", status="alive") == 3
        assert value(m, "swimlib_members", status="failed") == 0
        assert m["serf_agent_memberlist_udp_sent"]["type"] == "counter"
        sent = value(m, "serf_agent_memberlist_udp_sent", "serf_agent_memberlist_udp_sent_total")
        received = value(m, "serf_agent_memberlist_udp_received",
                         "serf_agent_memberlist_udp_received_total")
        packets_sent = value(m, "swimlib_udp_packets_sent", "swimlib_udp_packets_sent_total")
        assert sent > packets_sent > 0  # bytes, as memberlist counts them
        assert received > 0
        probe = "serf_agent_memberlist_probeNode"
        assert m[probe]["type"] == "summary"
        assert value(m, probe, probe + "_count") >= 3
        assert value(m, probe, quantile="0.5") > 0  # virtual time: the network's latency
        assert value(m, "serf_agent_serf_member_join",
                     "serf_agent_serf_member_join_total") == 3
        assert value(m, "serf_agent_memberlist_health_score") == 0
        assert value(m, "swimlib_agent_info", node="n0", version=__version__,
                     encrypted="false") == 1
        # A member's join is a push-pull it timed.
        joined = scrape(agents[2])
        pp = "serf_agent_memberlist_pushPullNode"
        assert value(joined, pp, pp + "_count") >= 1

        # A hostile datagram is dropped, and counted by reason.
        stranger = network.open_transport("10.0.9.9")
        await stranger.send_datagram(b"\xffnot memberlist", (host(0), 7946))
        with anyio.fail_after(5):
            while a.statistics().drops.get("type", 0) < 1:
                await anyio.sleep(0.1)
        assert value(scrape(a), "swimlib_drops", "swimlib_drops_total", reason="type") == 1

        # n2 cut off: suspected, then failed.
        network.partition([host(0), host(1)], [host(2)])
        with anyio.fail_after(60):
            await a.wait_member("n2", MemberStatus.FAILED)
        m = scrape(a)
        assert value(m, "swimlib_members", status="failed") == 1
        assert value(m, "swimlib_members", status="alive") == 2
        assert value(m, "serf_agent_memberlist_node_instances", node_state="dead") == 1
        assert value(m, "serf_agent_memberlist_msg_suspect",
                     "serf_agent_memberlist_msg_suspect_total") >= 1
        assert value(m, "serf_agent_serf_member_failed",
                     "serf_agent_serf_member_failed_total") == 1
        assert value(m, "serf_agent_memberlist_udp_sent",
                     "serf_agent_memberlist_udp_sent_total") > sent


async def test_statsd_lines_from_the_agent() -> None:
    network = MemoryNetwork(seed=4, latency=0.005)
    async with cluster(network, 2) as agents:
        await anyio.sleep(1)
        lines = StatsdLines("vm")
        first = lines.lines(collect(agents[0], anyio.current_time()), anyio.current_time())
        keys = {line.split(":")[0]: line for line in first}
        assert keys["serf-agent.vm.memberlist.health.score"] == \
            "serf-agent.vm.memberlist.health.score:0.000000|g\n"
        assert keys["serf-agent.vm.memberlist.node.instances.alive"].endswith(":2.000000|g\n")
        assert keys["serf-agent.memberlist.udp.sent"].endswith("|c\n")
        await anyio.sleep(3)
        now = anyio.current_time()
        later = lines.lines(collect(agents[0], now), now)
        assert any(line.startswith("serf-agent.memberlist.probeNode:") and
                   line.endswith("|ms\n") for line in later)
        assert not any(".node.instances." in line for line in later)  # unchanged gauges wait
        assert all("swimlib.counters" not in line for line in first + later)


# ---------------------------------------------------------------- statsd, offline


def test_statsd_counters_are_deltas_gauges_change_or_refresh_timers_per_sample() -> None:
    timing = Timing()
    sent = Family(("memberlist", "udp", "sent"), Kind.COUNTER, "").add(100)
    score = Family(("memberlist", "health", "score"), Kind.GAUGE, "").add(0)
    probe = Family(("memberlist", "probeNode"), Kind.SUMMARY, "")
    size = Family(("serf", "msgs", "sent"), Kind.SUMMARY, "")

    def read(total: float, health: float, msgs: tuple[int, float]) -> list[Family]:
        sent.samples[()] = total
        score.samples[()] = health
        probe.summary = Summary.of(timing)
        size.summary = Summary(*msgs)
        return [sent, score, probe, size]

    s = StatsdLines("vm")
    timing.add(1.0, 0.9975)
    assert s.lines(read(100, 0, (1, 16)), 1.0) == [
        "serf-agent.memberlist.udp.sent:100.000000|c\n",
        "serf-agent.vm.memberlist.health.score:0.000000|g\n",
        "serf-agent.memberlist.probeNode:2.500000|ms\n",
        "serf-agent.serf.msgs.sent:16.000000|ms\n",
    ]
    assert s.lines(read(100, 0, (1, 16)), 1.1) == []  # nothing moved
    timing.add(2.0, 1.999)
    timing.add(3.0, 2.998)
    assert s.lines(read(148, 1, (5, 96)), 3.0) == [
        "serf-agent.memberlist.udp.sent:48.000000|c\n",
        "serf-agent.vm.memberlist.health.score:1.000000|g\n",
        "serf-agent.memberlist.probeNode:1.000000|ms\n",
        "serf-agent.memberlist.probeNode:2.000000|ms\n",
        "serf-agent.serf.msgs.sent:20.000000|ms|@0.25\n",  # 4 messages of 20 bytes on average
    ]
    assert s.lines(read(148, 1, (5, 96)), 1.0 + GAUGE_REFRESH) == [
        "serf-agent.vm.memberlist.health.score:1.000000|g\n"]


def test_statsd_packets_stay_under_1400_bytes() -> None:
    lines = [f"serf-agent.memberlist.udp.sent:{i}.000000|c\n" for i in range(200)]
    out = packets(lines)
    assert len(out) > 1 and all(len(p) <= 1400 for p in out)
    assert b"".join(out).decode() == "".join(lines)
    assert packets(["x" * 2000 + "\n", "y\n"]) == [b"x" * 2000 + b"\n", b"y\n"]
