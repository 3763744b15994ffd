"""Vivaldi coordinates in a simulated Serf cluster: estimates follow the network.

The simulator has no per-link latency, but it has slow nodes: a constant lag
on everything node X receives (and on its timers) adds exactly that lag to
every round trip through X, as ``tc netem delay`` on X's interface would.
With 20 ms on X, the estimates of the pairs involving X rise by about 20 ms
and the others stay put. Figures for seeds 1, 2, 3 (8 nodes, LAN latency,
RTT ~1 ms): X's pairs +19.81..+20.07 ms, the other pairs within +-0.23 ms.
"""

from __future__ import annotations

import itertools
import statistics

import pytest

from simulations import faults
from simulations.scenarios import Options, Run
from swimlib.cluster.coordinates import coordinate_problem, distance_seconds

DELAY_S = 0.020


def estimates_ms(run: Run) -> dict[tuple[str, str], float]:
    """Every pair's estimated RTT, from the coordinates the nodes hold of themselves."""
    coords = {s.name: s.node.serf.get_coordinate() for s in run.sim.slots}
    assert all(coordinate_problem(c) is None for c in coords.values())
    return {(a, b): distance_seconds(coords[a], coords[b]) * 1000.0
            for a, b in itertools.combinations(sorted(coords), 2)}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_delay_on_one_node_shows_in_its_estimates_only(seed: int) -> None:
    run = Run(Options(scenario="steady", nodes=8, seed=seed, layer="serf"))
    run.build()
    run.seed_converged()
    sim = run.sim
    sim.run_until(sim.now + 60.0)
    before = estimates_ms(run)
    # LAN profile: 0.5 ms each way (+-20 %), so RTTs of about 1 ms.
    assert 0.7 < statistics.mean(before.values()) < 1.3

    slow = sim.slots[3].name
    faults.slow(sim, 3, (DELAY_S, DELAY_S))
    sim.run_until(sim.now + 120.0)
    after = estimates_ms(run)

    rise = {pair: after[pair] - before[pair] for pair in before}
    involved = [d for pair, d in rise.items() if slow in pair]
    others = [d for pair, d in rise.items() if slow not in pair]
    assert len(involved) == 7
    assert all(19.0 < d < 21.0 for d in involved), involved
    assert all(abs(d) < 1.0 for d in others), others
    for slot in sim.slots:
        assert slot.node.serf.coordinate_resets == 0
        assert not [k for k in slot.node.serf.stats if k.startswith("drop.serf.coordinate")]
