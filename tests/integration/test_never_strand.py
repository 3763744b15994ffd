"""A cluster that never strands (issue 11): power cycles and moved members, real agents.

- Power cycle: agents with snapshots, all SIGKILLed, restarted at once in random
  order with no ``-join``. Started together, they all find nobody up at first;
  Serf gives up then and comes back as islands. swimlib keeps rejoining the
  peers its snapshot remembers (swimlib.agent.rejoin) until it sees them all.
- A member restarted under its name on a new address is seen there by everyone.
- In network namespaces (root only): a half-against-half partition heals by
  itself, and a power cycle during a network outage (each side comes back
  as an island) is whole soon after the network returns. Real serf agents
  run beside them through the same cuts, for comparison.

Timings are printed (``-s``) for the notes; bounds are the issue's.
"""

from __future__ import annotations

import ipaddress
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from swimlib.rpc.client import RPCClient
from swimlib.testing import free_port
from tests.integration import netns
from tests.integration.procs import Proc, Procs, wait_for

#: memberlist's LAN push-pull interval, the issue's unit of "soon".
PUSH_PULL_INTERVAL = 30.0


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    group = Procs(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


def alive_view(proc: Proc) -> dict[str, tuple[str, int]]:
    """Name -> (ip, port) of the members ``proc`` sees alive; {} if it does not answer."""
    try:
        with RPCClient(proc.rpc, timeout=2.0) as client:
            members = client.members()
    except OSError:
        return {}
    return {m.name: (str(ipaddress.ip_address(m.addr)), m.port)
            for m in members if m.status == "alive"}


def whole(agents: list[Proc], names: set[str]) -> bool:
    return all(set(alive_view(a)) == names for a in agents)


def test_power_cycle_comes_back_whole_without_join(procs: Procs, tmp_path: Path) -> None:
    count = 10
    names = [f"pc-{i}" for i in range(count)]
    ports = {n: (free_port(), free_port()) for n in names}

    def start(name: str, join: str | None = None, wait: bool = True) -> Proc:
        port, rpc_port = ports[name]
        return procs.swimlib(name, "--snapshot", str(tmp_path / f"{name}.snapshot"),
                             join=join, port=port, rpc_port=rpc_port, wait=wait)

    first = start(names[0])
    agents = [first] + [start(n, join=first.gossip) for n in names[1:]]
    wait_for(lambda: whole(agents, set(names)), 60, interval=0.5, what="the first boot")
    # Snapshots are flushed within 0.5 s of a change; wait until each remembers everyone.
    wait_for(lambda: all(
        sum(f"alive: {n} " in (tmp_path / f"{a.name}.snapshot").read_text() for n in names)
        >= count - 1 for a in agents), 20, interval=0.2, what="snapshots")
    for agent in agents:
        procs.kill(agent, signal.SIGKILL)
    for agent in agents:
        agent.popen.wait(timeout=10)

    order = names[:]
    random.Random(11).shuffle(order)
    restarted = [start(n, wait=False) for n in order]  # all at once: nobody up at first
    last_start = time.monotonic()
    for agent in restarted:
        wait_for(lambda a=agent: procs.rpc_ready(a), 30, what=f"{agent.name} RPC")
    wait_for(lambda: whole(restarted, set(names)), 2 * PUSH_PULL_INTERVAL, interval=0.5,
             what="the cluster whole again after the power cycle")
    print(f"\npower cycle: {count} agents whole {time.monotonic() - last_start:.1f} s "
          "after the last restart")


def test_member_restarted_on_a_new_address_is_seen_there_by_everyone(procs: Procs) -> None:
    names = [f"mv-{i}" for i in range(5)]
    first = procs.swimlib(names[0])
    agents = [first] + [procs.swimlib(n, join=first.gossip) for n in names[1:]]
    wait_for(lambda: whole(agents, set(names)), 30, interval=0.25, what="the cluster")
    moved = agents[-1]
    procs.kill(moved, signal.SIGKILL)
    moved.popen.wait(timeout=10)
    new_port = free_port()
    # Straight back, before anyone has noticed the old one is gone.
    restarted = procs.swimlib(moved.name, join=first.gossip, port=new_port)
    started = time.monotonic()
    others = agents[:-1]

    def everyone_sees_the_new_address() -> bool:
        return all(alive_view(a).get(moved.name) == ("127.0.0.1", new_port) for a in others)

    wait_for(everyone_sees_the_new_address, 5.0, interval=0.1,
             what=f"{moved.name} alive at its new address everywhere")
    print(f"\nmoved member seen at its new address by all in {time.monotonic() - started:.2f} s")
    assert set(alive_view(restarted)) == set(names)


# ----------------------------------------------------------------------------- namespaces

#: The issue's partition length.
PARTITION = 60.0


@pytest.fixture
def lan() -> Iterator[netns.Lan]:
    with netns.open_lan(2) as network:
        yield network


@pytest.fixture
def lan_procs(lan: netns.Lan, tmp_path: Path) -> Iterator[Procs]:
    """Agents in the namespaces: stopped before the namespaces go."""
    group = Procs(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


class TwoSides:
    """Three swimlib and three serf agents on each of two hosts (namespaces)."""

    def __init__(self, lan: netns.Lan, procs: Procs, tmp_path: Path,
                 snapshots: bool = False) -> None:
        self.lan, self.procs, self.tmp_path = lan, procs, tmp_path
        self.snapshots = snapshots
        self.ports = {f"{kind}-{side}{i}": (free_port(), free_port())
                      for kind in ("sw", "sf") for side in "ab" for i in range(3)}
        self.agents: dict[str, Proc] = {}

    def host(self, name: str) -> str:
        return self.lan.names[0 if name[3] == "a" else 1]

    def names(self, kind: str) -> set[str]:
        return {n for n in self.ports if n.startswith(kind)}

    def start(self, name: str, join: str | None = None, wait: bool = True) -> Proc:
        ns = self.host(name)
        port, rpc_port = self.ports[name]
        snapshot = str(self.tmp_path / f"{name}.snapshot")
        common = {"join": join, "port": port, "rpc_port": rpc_port,
                  "host": self.lan.ip(ns), "prefix": tuple(self.lan.exec_prefix(ns))}
        if name.startswith("sw"):
            extra = ("--snapshot", snapshot) if self.snapshots else ()
            proc = self.procs.swimlib(name, *extra, wait=wait, **common)  # type: ignore[arg-type]
        else:
            extra = (f"-snapshot={snapshot}",) if self.snapshots else ()
            proc = self.procs.serf(name, *extra, **common)  # type: ignore[arg-type]
        self.agents[name] = proc
        return proc

    def boot(self) -> None:
        for kind in ("sw", "sf"):
            seed = self.start(f"{kind}-a0")
            for name in sorted(self.names(kind) - {seed.name}):
                self.start(name, join=seed.gossip)
        wait_for(lambda: self.whole("sw") and self.whole("sf"), 60, interval=0.5,
                 what="both clusters formed")

    def whole(self, kind: str) -> bool:
        names = self.names(kind)
        return all(set(alive_view(self.agents[n])) == names for n in names)

    def islands(self, kind: str) -> bool:
        """Each side sees exactly itself alive."""
        names = self.names(kind)
        return all(set(alive_view(self.agents[n])) == {m for m in names if m[3] == n[3]}
                   for n in names)

    def cut(self) -> None:
        self.lan.partition([self.lan.names[0]], [self.lan.names[1]])

    def wait_healed(self, limit: float, serf_limit: float) -> dict[str, float | None]:
        """Seconds until each cluster is whole (None: not within its limit)."""
        start = time.monotonic()
        healed: dict[str, float | None] = {"sw": None, "sf": None}
        limits = {"sw": limit, "sf": serf_limit}
        for _ in range(int(max(limit, serf_limit) / 0.5) + 2):
            elapsed = time.monotonic() - start
            for kind in healed:
                if healed[kind] is None and elapsed <= limits[kind] and self.whole(kind):
                    healed[kind] = time.monotonic() - start
            if all(healed[k] is not None or elapsed > limits[k] for k in healed):
                break
            time.sleep(0.5)
        return healed


def _report(what: str, healed: dict[str, float | None], serf_limit: float) -> None:
    def show(v: float | None) -> str:
        return f"{v:.1f} s" if v is not None else f"not within {serf_limit:.0f} s"
    print(f"\n{what}: swimlib whole {show(healed['sw'])}, serf {show(healed['sf'])} "
          "after the network returned")


def test_partition_heals_by_itself(lan: netns.Lan, lan_procs: Procs, tmp_path: Path) -> None:
    sides = TwoSides(lan, lan_procs, tmp_path)
    sides.boot()
    cut_at = time.monotonic()
    sides.cut()
    wait_for(lambda: sides.islands("sw") and sides.islands("sf"), PARTITION, interval=0.5,
             what="both sides to see the other failed")
    time.sleep(max(0.0, PARTITION - (time.monotonic() - cut_at)))  # the outage itself
    lan.heal()
    healed = sides.wait_healed(2 * PUSH_PULL_INTERVAL, 2 * PUSH_PULL_INTERVAL)
    _report(f"{PARTITION:.0f} s partition", healed, 2 * PUSH_PULL_INTERVAL)
    assert healed["sw"] is not None, "swimlib did not heal within 2 push-pull intervals"


def test_power_cycle_during_an_outage_comes_back_whole(
        lan: netns.Lan, lan_procs: Procs, tmp_path: Path) -> None:
    """Every agent SIGKILLed; they restart while the network is cut, so each side
    comes back as an island of its own; then the network returns."""
    sides = TwoSides(lan, lan_procs, tmp_path, snapshots=True)
    sides.boot()

    def remembered() -> bool:
        # serf writes a buffered line only with the next one, 0.5 s later: nudge it.
        with RPCClient(sides.agents["sf-a0"].rpc, timeout=2.0) as client:
            client.user_event("nudge", coalesce=False)
        return all((tmp_path / f"{n}.snapshot").exists()
                   and (tmp_path / f"{n}.snapshot").read_text().count("alive: ") >= 6
                   for n in sides.ports)

    wait_for(remembered, 30, interval=0.7, what="snapshots")
    for proc in list(sides.agents.values()):
        lan_procs.kill(proc, signal.SIGKILL)
        proc.popen.wait(timeout=10)
    sides.cut()
    cut_at = time.monotonic()
    order = sorted(sides.ports)
    random.Random(5).shuffle(order)
    for name in order:
        sides.start(name, wait=False)
    for name in order:
        wait_for(lambda n=name: lan_procs.rpc_ready(sides.agents[n]), 30, what=f"{name} RPC")
    wait_for(lambda: sides.islands("sw") and sides.islands("sf"), PARTITION, interval=0.5,
             what="each side whole on its own")
    # The outage outlasts the start-up rejoin (serf: each remembered peer once, 10 s
    # per silent one), as a real one does.
    time.sleep(max(0.0, PARTITION - (time.monotonic() - cut_at)))
    lan.heal()
    healed = sides.wait_healed(2 * PUSH_PULL_INTERVAL, 2 * PUSH_PULL_INTERVAL)
    _report("power cycle in an outage", healed, 2 * PUSH_PULL_INTERVAL)
    assert healed["sw"] is not None, "swimlib did not heal within 2 push-pull intervals"
