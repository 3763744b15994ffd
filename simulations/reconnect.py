"""Serf's reconnect loop, emulated, because the membership layer alone never heals a split.

memberlist forgets a dead member after GossipToTheDeadTime and only
push-pulls with members it believes alive, so two halves that declared each
other dead stay apart for good. Serf repairs that (serf.go ``reconnect``):
every ReconnectInterval (30 s) each agent, with probability
``failed / alive``, joins one random member it has seen fail. Until
``swimlib.cluster`` provides this, scenarios run this emulation so they
measure what an agent does; ``--no-reconnect`` shows bare memberlist.
"""

from __future__ import annotations

import random
from typing import Any

from simulations.engine import Lifecycle, Simulation
from swimlib.membership.types import Address, EventKind, MemberState, NodeEvent

#: Serf's ReconnectInterval.
RECONNECT_INTERVAL = 30.0


class Reconnector:
    """Per node: remember members seen failing; periodically try to rejoin one."""

    def __init__(self, sim: Simulation, interval: float = RECONNECT_INTERVAL) -> None:
        self.sim = sim
        self.interval = interval
        self.rng = random.Random(f"{sim.seed}:reconnect")
        #: Per node index: failed member name -> address (insertion order = deterministic).
        self.failed: list[dict[str, Address]] = [{} for _ in sim.slots]
        self.attempts = 0
        sim.listeners.append(self._on_event)
        for slot in sim.slots:
            self._arm(slot.index, sim.now + self.rng.random() * interval)

    def _arm(self, i: int, when: float) -> None:
        gen = self.sim.slots[i].gen
        self.sim.call_at(when, lambda: self._fire(i, gen))

    def _on_event(self, now: float, i: int, effect: Any) -> None:
        t = type(effect)
        if t is NodeEvent:
            m = effect.member
            if m.name == self.sim.slots[i].name:
                return
            failed = self.failed[i]
            if effect.kind is EventKind.LEAVE and m.state is MemberState.DEAD:
                failed[m.name] = m.address
            else:
                failed.pop(m.name, None)
        elif t is Lifecycle and effect.kind == "restart":
            self.failed[i] = {}
            self._arm(i, now + self.rng.random() * self.interval)

    def _fire(self, i: int, gen: int) -> None:
        slot = self.sim.slots[i]
        if slot.gen != gen or not slot.running:
            return
        self._arm(i, self.sim.now + self.interval)
        failed = self.failed[i]
        if not slot.live or not failed:
            return
        node: Any = slot.node
        alive_count = getattr(node, "alive_count", None)
        alive = (alive_count() if alive_count is not None else
                 sum(1 for m in node.members() if m.state is MemberState.ALIVE)) - 1
        if self.rng.random() > len(failed) / max(1, alive):
            return
        addr = list(failed.values())[self.rng.randrange(len(failed))]
        self.attempts += 1
        self.sim.join_addresses(i, [addr])
