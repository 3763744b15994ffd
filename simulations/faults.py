"""The fault menu: crash, graceful leave, slow node, restart, partition and heal.

Each fault is a function of the simulation "now", records itself in the trace
(so the replay hash covers the fault schedule too) and tells the listeners.
Timing of a fault is the scenario's business; these only apply one.
"""

from __future__ import annotations

from collections.abc import Sequence

from simulations.engine import CRASHED, LEFT, Lifecycle, Simulation

#: memberlist's LeavePropagateDelay: how long a leaving node keeps gossiping.
LEAVE_PROPAGATE_DELAY = 1.0
#: Lag range (seconds) added to everything a slow node processes.
SLOW_LAG = (1.0, 3.0)


def crash(sim: Simulation, i: int) -> None:
    """Node ``i`` stops dead: no more processing, nothing sent, its inbound traffic lost."""
    sim.stop(i, CRASHED)


def leave(sim: Simulation, i: int, propagate: float = LEAVE_PROPAGATE_DELAY) -> None:
    """Graceful leave: announce it, keep the node running ``propagate`` s, then stop it."""
    slot = sim.slots[i]
    gen = slot.gen
    sim.leave(i)

    def finish() -> None:
        if slot.gen == gen:  # not restarted meanwhile
            sim.stop(i, LEFT)

    sim.call_at(sim.now + propagate, finish)


def slow(sim: Simulation, i: int, lag: tuple[float, float] = SLOW_LAG) -> None:
    """Make node ``i`` process every delivery and timer late by ``uniform(*lag)`` seconds.

    This is the Lifeguard case: a member that is alive but starved (CPU, GC,
    a full socket buffer) answers late and judges its peers by its own delays.
    """
    sim.slots[i].slow = lag
    sim.notify(i, Lifecycle("slow", f"{lag[0]}-{lag[1]}"))


def heal_slow(sim: Simulation, i: int) -> None:
    """Undo :func:`slow` (already delayed messages still arrive late)."""
    sim.slots[i].slow = None
    sim.notify(i, Lifecycle("fast"))


def restart(sim: Simulation, i: int, via: int) -> None:
    """Bring a stopped node back as a fresh instance with the same name and address.

    It rejoins through node ``via`` and has to refute its own death with a
    higher incarnation, as a real restarted agent does.
    """
    sim.restart(i)
    sim.join(i, [via])


def partition(
    sim: Simulation, side_a: Sequence[int], side_b: Sequence[int], one_way: bool = False
) -> tuple[int, ...]:
    """Cut traffic from ``side_a`` to ``side_b`` (and back unless ``one_way``). Returns rule ids."""
    net = sim.net
    rules: tuple[int, ...]
    rules = (net.block(side_a, side_b),) if one_way else net.partition(side_a, side_b)
    kind = "partition-one-way" if one_way else "partition"
    detail = f"{len(side_a)}|{len(side_b)} rules={','.join(map(str, rules))}"
    sim.notify(side_a[0] if side_a else 0, Lifecycle(kind, detail))
    return rules


def heal(sim: Simulation, rules: Sequence[int] | None = None) -> None:
    """Remove the given partition rules (all of them by default)."""
    sim.net.heal(rules)
    detail = "all" if rules is None else ",".join(map(str, rules))
    sim.notify(0, Lifecycle("heal", detail))
