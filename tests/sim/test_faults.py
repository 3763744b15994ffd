"""Faults: crash, leave (with propagate delay), slow, restart, partition."""

from __future__ import annotations

from simulations import faults
from simulations.engine import CRASHED, LEAVING, LEFT, RUNNING
from simulations.metrics import converged
from swimlib.membership.types import MemberState
from tests.sim.fakenode import FakeNode
from tests.sim.helpers import make_sim, seed_all


def test_crash_stops_all_processing() -> None:
    sim = make_sim(4)
    seed_all(sim)
    sim.run_until(2.0)
    node = sim.slots[1].node
    assert isinstance(node, FakeNode)
    ticks = len(node.ticks)
    faults.crash(sim, 1)
    sim.run_until(10.0)
    assert sim.slots[1].state is CRASHED
    assert len(node.ticks) == ticks


def test_leave_keeps_running_for_the_propagate_delay_then_stops() -> None:
    sim = make_sim(4)
    seed_all(sim)
    sim.run_until(2.0)
    faults.leave(sim, 2)
    assert sim.slots[2].state is LEAVING
    sim.run_until(2.0 + faults.LEAVE_PROPAGATE_DELAY - 0.01)
    assert sim.slots[2].state is LEAVING
    sim.run_until(2.0 + faults.LEAVE_PROPAGATE_DELAY)
    assert sim.slots[2].state is LEFT
    sim.run_until(5.0)
    for i in (0, 1, 3):
        assert sim.slots[i].node.members()[0] is not None
        states = {m.name: m.state for m in sim.slots[i].node.members()}
        assert states["node-0002"] is MemberState.LEFT


def test_slow_node_processes_late() -> None:
    sim = make_sim(2, latency=0.001)
    faults.slow(sim, 1)
    node = sim.slots[1].node
    assert isinstance(node, FakeNode)
    sim.poke(1)
    sim.run_until(30.0)
    # Every tick comes at least 1 s after the previous one was due (period 1 s + lag 1-3 s).
    gaps = [b - a for a, b in zip(node.ticks, node.ticks[1:], strict=False)]
    assert gaps and min(gaps) >= 1.0 and max(gaps) <= 4.0 + 1e-9
    faults.heal_slow(sim, 1)
    assert sim.slots[1].slow is None


def test_restart_rejoins_with_a_higher_incarnation() -> None:
    sim = make_sim(5)
    seed_all(sim)
    sim.run_until(2.0)
    faults.crash(sim, 4)
    sim.run_until(15.0)  # everyone has declared it dead
    faults.restart(sim, 4, via=0)
    assert sim.slots[4].state is RUNNING and sim.slots[4].gen == 1
    sim.run_until(30.0)
    assert sim.slots[4].node.incarnation > 1
    assert converged(sim)


def test_partition_then_heal_reconverges_the_fake_cluster() -> None:
    sim = make_sim(6)
    seed_all(sim)
    sim.run_until(2.0)
    rules = faults.partition(sim, [0, 1, 2], [3, 4, 5])
    sim.run_until(15.0)
    assert not converged(sim)
    faults.heal(sim, rules)
    assert not sim.net.partitioned
