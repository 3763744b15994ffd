"""``-discover=CLUSTER`` (mDNS) between real agents, each in its own network namespace
on one bridge: serf 0.8.2 and swimlib find each other and form one cluster with
no ``-join``, whichever starts first; two names make two clusters.

Port 5353 is mDNS's own, so every agent here runs in a namespace (never on the
host's network, never beside another test's). serf's mDNS sends by the routing
table, so its namespace gets a multicast route; swimlib's namespaces have
none: it picks the interface of its bind address itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import netns
from .procs import Proc, Procs, needs_serf, wait_for


@pytest.fixture
def lan() -> Iterator[netns.Lan]:
    with netns.open_lan(3) as network:
        yield network


@pytest.fixture
def procs(lan: netns.Lan, tmp_path: Path) -> Iterator[Procs]:
    """Agents in the namespaces: stopped before the namespaces go."""
    group = Procs(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


def _where(lan: netns.Lan, i: int) -> dict[str, Any]:
    ns = lan.names[i]
    return {"host": lan.ip(ns), "prefix": tuple(lan.exec_prefix(ns))}


def _serf_ready_namespace(lan: netns.Lan, i: int) -> None:
    """serf's mDNS sends by the routing table, on IPv4 and IPv6, and a failed send
    ends its poll (the next is a minute later): give it a route and a usable
    IPv6 link-local address before it starts."""
    lan.multicast_route(lan.names[i])
    wait_for(lambda: lan.ipv6_ready(lan.names[i]), 10, what="IPv6 DAD in the namespace")


def _serf_joins(serf: Proc) -> str:
    """serf's "agent: joining: [...]" lines (its mDNS joins itself too)."""
    return "\n".join(line for line in serf.output().splitlines() if "agent: joining: [" in line)


def _alive(procs: Procs, observer: Proc) -> set[str]:
    return {name for name, m in procs.members(observer).items() if m["status"] == "alive"}


def _no_multicast_route(lan: netns.Lan, i: int) -> bool:
    routes = subprocess.run(["ip", "-n", lan.names[i], "route"], capture_output=True,
                            text=True, timeout=10, check=True).stdout
    return "224.0.0.0" not in routes and "default" not in routes


@needs_serf
def test_serf_joins_a_swimlib_agent_it_finds_by_mdns(lan: netns.Lan, procs: Procs) -> None:
    """swimlib first: serf's poll at its start hears swimlib's answer and joins it."""
    _serf_ready_namespace(lan, 0)
    ours = procs.swimlib("swim-1", "-discover=lab", **_where(lan, 1))
    serf = procs.serf("serf-1", "-discover=lab", **_where(lan, 0))
    wait_for(lambda: _alive(procs, serf) == {"serf-1", "swim-1"}, 20, what="serf joins swim-1")
    wait_for(lambda: _alive(procs, ours) == {"serf-1", "swim-1"}, 20, what="swim-1 sees serf")
    assert ours.gossip in _serf_joins(serf)  # serf's own mDNS did it
    assert "agent.mdns: Joined" not in ours.output()  # (we asked before serf was up)
    assert "mDNS cluster: lab" in ours.output()
    assert _no_multicast_route(lan, 1)
    assert procs.stop(ours) == 0
    procs.stop(serf)  # (serf exits 1 on SIGTERM: it does not leave)


@needs_serf
def test_swimlib_joins_a_serf_agent_it_finds_by_mdns(lan: netns.Lan, procs: Procs) -> None:
    """serf first: swimlib's poll at its start hears serf's answer and joins it; a
    second swimlib agent then finds both."""
    _serf_ready_namespace(lan, 0)
    serf = procs.serf("serf-1", "-discover=lab", **_where(lan, 0))
    ours = procs.swimlib("swim-1", "-discover=lab", **_where(lan, 1))
    wait_for(lambda: _alive(procs, ours) == {"serf-1", "swim-1"}, 20, what="swim-1 joins serf")
    wait_for(lambda: _alive(procs, serf) == {"serf-1", "swim-1"}, 20, what="serf sees swim-1")
    wait_for(lambda: "agent.mdns: Joined 1 hosts" in ours.output(), 10, what="the join log")
    assert ours.gossip not in _serf_joins(serf)  # serf polls once a minute
    second = procs.swimlib("swim-2", "-discover=lab", **_where(lan, 2))
    everyone = {"serf-1", "swim-1", "swim-2"}
    for agent in (serf, ours, second):
        wait_for(lambda a=agent: _alive(procs, a) == everyone, 20, what=f"{agent.name}: all 3")
    assert _no_multicast_route(lan, 1) and _no_multicast_route(lan, 2)
    assert procs.stop(second) == 0 and procs.stop(ours) == 0
    procs.stop(serf)


def test_two_discover_names_make_two_clusters(lan: netns.Lan, procs: Procs) -> None:
    lab = procs.swimlib("lab-1", "-discover=lab", env={"PYTHONPROFILEIMPORTTIME": "1"},
                        **_where(lan, 0))
    # (the footprint test's method, seen to work: -discover loads the mDNS code)
    assert "swimlib.agent.mdns" in lab.output() and "swimlib.mdns.codec" in lab.output()
    prod = procs.swimlib("prod-1", "-discover=prod", **_where(lan, 1))
    lab2 = procs.swimlib("lab-2", "-discover=lab", "--backend", "trio", **_where(lan, 2))
    wait_for(lambda: _alive(procs, lab2) == {"lab-1", "lab-2"}, 20, what="lab-2 joins lab-1")
    wait_for(lambda: _alive(procs, lab) == {"lab-1", "lab-2"}, 20, what="lab-1 sees lab-2")
    assert _alive(procs, prod) == {"prod-1"}
    for agent in (lab2, prod, lab):
        assert procs.stop(agent) == 0


def _drops(agent: Proc) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-m", "swimlib.cli", "info", "--rpc-addr", agent.rpc,
                          "--format", "json"], capture_output=True, text=True, timeout=20)
    if out.returncode != 0:
        return {}
    return {k: int(v) for k, v in json.loads(out.stdout).get("drops", {}).items()}


def test_a_flood_of_fake_peers_and_malformed_answers_costs_one_bounded_join(
        lan: netns.Lan, procs: Procs) -> None:
    """A hostile responder on the LAN answers our question with 400 fake peers, a
    header claiming 10,000 records and a compression loop: the agent tries 8 of
    the peers, once, counts the rest, and carries on."""
    flooder = procs.group.start("flooder", [
        *lan.exec_prefix(lan.names[0]), sys.executable, str(Path(__file__).with_name(
            "mdns_flooder.py")), "lab", lan.ip(lan.names[0]), lan.subnet])
    wait_for(lambda: "listening" in flooder.output(), 15, what="the flooder")
    agent = procs.swimlib("target", "-discover=lab", **_where(lan, 1))
    wait_for(lambda: "flooded" in flooder.output(), 15, what="the flood")
    drops = wait_for(lambda: (d := _drops(agent)).get("mdns.join_cap") == 400 - 8 and d,
                     15, what="the flood counted")
    assert drops["mdns.too_many_records"] == 1 and drops["mdns.bad_pointer"] == 1
    failed = wait_for(lambda: [line for line in agent.output().splitlines()
                               if "agent.mdns: Failed to join" in line], 30,
                      what="the one join of the fakes to fail")
    assert len(failed) == 1 and failed[0].count(f"{lan.subnet}.") == 8, failed
    assert _alive(procs, agent) == {"target"}
    assert procs.group.stop(flooder) is not None
    assert procs.stop(agent) == 0
