"""The fault menu: crash, graceful leave, slow node, restart, partition and heal.

Each fault is a function of the simulation "now", records itself in the trace
(so the replay hash covers the fault schedule too) and tells the listeners.
Timing of a fault is the scenario's business; these only apply one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from simulations.engine import CRASHED, LEFT, Lifecycle, Simulation
from swimlib.membership.types import JoinFinished

#: memberlist's LeavePropagateDelay: how long a leaving node keeps gossiping.
LEAVE_PROPAGATE_DELAY = 1.0
#: Lag range (seconds) added to everything a slow node processes.
SLOW_LAG = (1.0, 3.0)
#: Serf's retry_interval: a restarted agent whose join failed tries again this often.
RETRY_JOIN_S = 30.0


def crash(sim: Simulation, i: int) -> None:
    """Node ``i`` stops dead: no more processing, nothing sent, its inbound traffic lost."""
    sim.stop(i, CRASHED)


def leave(sim: Simulation, i: int, propagate: float = LEAVE_PROPAGATE_DELAY) -> None:
    """Graceful leave: announce it, keep the node running ``propagate`` s, then stop it.

    A node that reports its own completion (``leave_finished``, the Serf layer:
    intent, memberlist leave, then its own propagation delay) runs until then,
    polled every 0.1 s, for at most 30 s.
    """
    slot = sim.slots[i]
    gen = slot.gen
    sim.leave(i)
    give_up = sim.now + 30.0

    def finish() -> None:
        if slot.gen != gen:  # restarted meanwhile
            return
        if getattr(slot.node, "leave_finished", True) or sim.now >= give_up:
            sim.stop(i, LEFT)
        else:
            sim.call_at(sim.now + 0.1, finish)

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


def restart(sim: Simulation, i: int, via: int, retry_every: float = RETRY_JOIN_S) -> None:
    """Bring a stopped node back as a fresh instance; it (re)joins through ``via``."""
    sim.restart(i)
    restart_join(sim, i, via, retry_every)


def restart_join(sim: Simulation, i: int, via: int, retry_every: float = RETRY_JOIN_S) -> None:
    """Have node ``i`` join through ``via`` the way a (re)started agent does.

    A restarted node must then refute its own death with a higher
    incarnation, as a real restarted agent does. Like ``serf agent
    -retry-join`` given the cluster's address list, it tries again every
    ``retry_every`` seconds, through another random running node, until a
    join reaches somebody (through a partition, or via a node that has
    crashed since, the first attempt may not).
    """
    gen = sim.slots[i].gen
    target = [via]
    pending: list[object] = [None]

    def on_event(now: float, j: int, effect: Any) -> None:
        if j != i:
            return
        if sim.slots[i].gen != gen:  # this instance is gone; so is its join
            sim.listeners.remove(on_event)
        elif type(effect) is JoinFinished and (
            not isinstance(pending[0], int) or effect.join_id == pending[0]
        ):
            sim.listeners.remove(on_event)
            if effect.contacted == 0:
                others = [s.index for s in sim.slots if s.running and s.index != i]
                if others:
                    target[0] = sim.fault_rng.choice(others)
                sim.call_at(now + retry_every, attempt)

    def attempt() -> None:
        slot = sim.slots[i]
        if slot.gen == gen and slot.live:
            sim.listeners.append(on_event)
            pending[0] = None  # until join() returns, accept any JoinFinished
            pending[0] = sim.join_addresses(i, [sim.slots[target[0]].addr])

    attempt()


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
