"""Network coordinates across implementations: ``serf rtt`` and ``swimlib rtt`` in a
mixed cluster of real ``serf agent`` processes and swimlib agents on loopback.

An agent answers ``get-coordinate`` for itself and for every member it has
probed directly (Serf's coordinate cache), so once each agent has been
around its probe list, every pair has an estimate on every agent. Loopback
RTTs are tens of microseconds; the estimates must be positive and small.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import netns
from .procs import SERF, Proc, Procs, needs_serf, wait_for

pytestmark = [needs_serf, pytest.mark.slow]

ESTIMATE = re.compile(r"Estimated (\S+) <-> (\S+) rtt: (\d+\.\d{3}) ms\n")


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    group = Procs(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


def rtt(cli: str, agent: Proc, a: str, b: str) -> subprocess.CompletedProcess[str]:
    argv = ([SERF, "rtt", f"-rpc-addr={agent.rpc}"] if cli == "serf" else
            [sys.executable, "-m", "swimlib.cli", "rtt", "--rpc-addr", agent.rpc])
    return subprocess.run([*argv, a, b], capture_output=True, text=True, timeout=30)


def estimate(out: subprocess.CompletedProcess[str], a: str, b: str) -> float:
    match = ESTIMATE.fullmatch(out.stdout)
    assert out.returncode == 0 and match, (out.returncode, out.stdout, out.stderr)
    assert match.group(1, 2) == (a, b)
    return float(match.group(3))


def test_rtt_estimates_for_every_pair_in_a_mixed_cluster(procs: Procs, tmp_path: Path) -> None:
    off = tmp_path / "off.json"
    off.write_text(json.dumps({"disable_coordinates": True}))
    gos = [procs.serf("go0")]
    gos += [procs.serf(f"go{i}", join=gos[0].gossip) for i in (1, 2)]
    pys = [procs.swimlib(f"py{i}", join=gos[0].gossip) for i in range(3)]
    pyoff = procs.swimlib("pyoff", f"-config-file={off}", join=gos[0].gossip)
    names = [p.name for p in gos + pys]
    for viewer in (gos[0], pys[0]):
        wait_for(lambda v=viewer: len(procs.members(v, cli="swimlib")) == 7, 20,
                 what=f"{viewer.name} to see 7 members")

    pairs = list(itertools.combinations(names, 2))
    viewers = (gos[0], pys[0])  # a serf agent's RPC and a swimlib agent's RPC
    pending = {(v.name, a, b) for v in viewers for a, b in pairs}
    seen: dict[tuple[str, str, str], float] = {}
    by_name = {v.name: v for v in viewers}
    started = time.monotonic()

    def all_answered() -> bool:
        for key in sorted(pending):
            out = rtt("serf", by_name[key[0]], key[1], key[2])
            if out.returncode == 0:
                seen[key] = estimate(out, key[1], key[2])
                pending.discard(key)
        return not pending

    wait_for(all_answered, 90, interval=1.0, what=f"estimates for every pair ({pending})")
    print(f"\nevery pair estimated on go0 and py0 after {time.monotonic() - started:.1f} s")
    for v in viewers:
        print(f"serf rtt on {v.name}: " + ", ".join(
            f"{a}-{b} {seen[(v.name, a, b)]:.3f}" for a, b in pairs))
    assert all(0.0 < ms < 50.0 for ms in seen.values()), seen

    # Our CLI, against both agents' RPC, prints serf's line for every pair.
    for viewer in viewers:
        for a, b in pairs:
            ours = estimate(rtt("swimlib", viewer, a, b), a, b)
            assert 0.0 < ours < 50.0

    # One name: the second is the agent's own (a swimlib agent answering serf's CLI).
    mine = subprocess.run([SERF, "rtt", f"-rpc-addr={pys[0].rpc}", "go1"],
                          capture_output=True, text=True, timeout=30)
    assert estimate(mine, "go1", "py0") > 0.0

    # The agent with coordinates off: nobody has one for it, it has none at all.
    for viewer in (gos[0], pys[0]):
        out = rtt("serf", viewer, "pyoff", "go1")
        assert (out.returncode, out.stdout) == (1, 'Could not find a coordinate for node "pyoff"\n')
    out = rtt("serf", pyoff, "pyoff", "go1")
    assert (out.returncode, out.stdout) == (1, 'Could not find a coordinate for node "pyoff"\n')

    info = subprocess.run([sys.executable, "-m", "swimlib.cli", "info", "--rpc-addr",
                           pys[0].rpc, "--format", "json"], capture_output=True, text=True,
                          timeout=30)
    stats = json.loads(info.stdout)
    assert stats["serf"]["coordinate_resets"] == "0"
    assert not [k for k in stats["drops"] if "coordinate" in k], stats["drops"]
    info = subprocess.run([SERF, "info", f"-rpc-addr={pyoff.rpc}", "-format=json"],
                          capture_output=True, text=True, timeout=30)
    assert "coordinate_resets" not in json.loads(info.stdout)["serf"]


#: The delay on one host, as ``tc qdisc add dev eth0 root netem delay 20ms`` would add.
DELAY = 0.020


def test_a_delayed_host_raises_the_estimates_involving_it(tmp_path: Path) -> None:
    """Two hosts (namespaces); one serf and one swimlib agent on the second, whose
    frames are then delayed by 20 ms (tests/integration/delay_relay.py: the kernel
    here has no netem). Every estimate involving those two rises by about 20 ms,
    on a serf agent's RPC and a swimlib agent's alike; the others stay put."""
    with netns.open_lan(2) as lan:
        procs = Procs(tmp_path)
        try:
            near, far = lan.names

            def where(ns: str) -> dict[str, object]:
                return {"host": lan.ip(ns), "prefix": tuple(lan.exec_prefix(ns))}

            go0 = procs.serf("go0", **where(near))  # type: ignore[arg-type]
            agents = [go0, procs.serf("go1", join=go0.gossip, **where(near)),  # type: ignore[arg-type]
                      procs.swimlib("py0", join=go0.gossip, **where(near)),  # type: ignore[arg-type]
                      procs.serf("go2", join=go0.gossip, **where(far)),  # type: ignore[arg-type]
                      procs.swimlib("py2", join=go0.gossip, **where(far))]  # type: ignore[arg-type]
            viewers = {"serf": agents[0], "swimlib": agents[2]}
            names = [a.name for a in agents]
            delayed = {"go2", "py2"}
            pairs = list(itertools.combinations(names, 2))

            def estimates(viewer: Proc) -> dict[tuple[str, str], float] | None:
                found = {}
                for a, b in pairs:
                    out = rtt("serf", viewer, a, b)
                    if out.returncode != 0:
                        return None
                    found[(a, b)] = estimate(out, a, b)
                return found

            last: dict[str, dict[tuple[str, str], float] | None] = {}

            def settled(low: float, high: float) -> dict[str, dict[tuple[str, str], float]] | None:
                """Estimates on both viewers, once those involving the far agents are in
                [low, high] ms and the others under 5 ms."""
                seen = {}
                for kind, viewer in viewers.items():
                    found = estimates(viewer)
                    # go2 and py2 share the far host: only pairs across the cable slow down.
                    if found is None or not all(
                            low <= ms <= high if len(delayed & {a, b}) == 1 else ms < 5.0
                            for (a, b), ms in found.items()):
                        last[kind] = found
                        return None
                    seen[kind] = found
                return seen

            before = wait_for(lambda: settled(0.0, 5.0), 90, interval=2.0,
                              what="estimates for every pair before the delay")
            lan.delay(far, DELAY)
            started = time.monotonic()
            last.clear()
            try:
                after = wait_for(lambda: settled(DELAY * 1000 * 0.7, DELAY * 1000 * 1.5), 180,
                                 interval=2.0, what="estimates to follow the 20 ms delay")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; last seen: {last}") from None
            print(f"\nestimates settled {time.monotonic() - started:.0f} s after the delay began")
            for kind in viewers:
                for (a, b), ms in after[kind].items():
                    print(f"{kind} viewer: {a}-{b} {before[kind][(a, b)]:.3f} -> {ms:.3f} ms")
        finally:
            procs.stop_all()  # before the namespaces go
