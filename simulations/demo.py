"""``python -m simulations demo``: watch a crash being detected, in simulated time.

A seeded 50-node LAN cluster runs quietly; one node crashes; the demo prints
each suspicion and death declaration as it happens, and one line per
simulated second with the traffic and how many live nodes already see the
victim dead. It takes a second or two of wall time.
"""

from __future__ import annotations

import time
from typing import Any

from simulations import faults
from simulations.metrics import converged
from simulations.scenarios import Options, Run
from swimlib.membership.types import (
    DeathDeclared,
    EventKind,
    MemberState,
    NodeEvent,
    Refuted,
    SuspicionRaised,
)

CRASH_AT_S = 2.0
MAX_S = 60.0


def demo(nodes: int = 50, seed: int = 1, out: Any = print) -> None:
    wall0 = time.perf_counter()
    run = Run(Options(scenario="crash", nodes=nodes, seed=seed))
    run.converged_start()
    sim = run.sim
    t0 = run.t0
    victim = run.rng.randrange(nodes)
    vname = sim.slots[victim].name
    counts = {"suspect": 0, "declared": 0, "refuted": 0, "saw_dead": 0}
    saw_dead: set[int] = set()
    last_msgs = [0]

    def stamp() -> str:
        return f"t={sim.now - t0:7.3f}s"

    def on_event(now: float, i: int, effect: Any) -> None:
        who = sim.slots[i].name
        t = type(effect)
        if t is SuspicionRaised:
            counts["suspect"] += 1
            out(f"{stamp()}  {who} suspects {effect.node} (its probe failed)")
        elif t is DeathDeclared:
            counts["declared"] += 1
            out(f"{stamp()}  {who} declares {effect.node} DEAD "
                f"(suspicion expired, {effect.confirmations} confirmations)")
        elif t is Refuted:
            counts["refuted"] += 1
            out(f"{stamp()}  {who} refutes a suspicion (incarnation {effect.incarnation})")
        elif (t is NodeEvent and effect.kind is EventKind.LEAVE
              and effect.member.name == vname and effect.member.state is MemberState.DEAD):
            saw_dead.add(i)

    sim.listeners.append(on_event)
    out(f"swimlib simulator demo: {nodes} nodes, LAN profile, seed {seed}; times are simulated")
    out(f"{stamp()}  cluster converged: every node lists {nodes} alive members")

    def second() -> None:
        msgs = sum(sim.net.msgs_sent)
        live = len(sim.live_indices())
        seen = len(saw_dead & set(sim.live_indices()))
        out(f"{stamp()}  | {msgs - last_msgs[0]:5d} msgs this second, "
            f"suspicions {counts['suspect']}, declarations {counts['declared']}, "
            f"refutations {counts['refuted']}, {seen}/{live} live nodes see {vname} dead")
        last_msgs[0] = msgs

    t = t0 + 1.0
    crashed = False
    while sim.now < t0 + MAX_S:
        if not crashed and t >= t0 + CRASH_AT_S:
            sim.run_until(t0 + CRASH_AT_S)
            faults.crash(sim, victim)
            crashed = True
            out(f"{stamp()}  CRASH {vname}: it stops answering; nobody is told")
        sim.run_until(t)
        second()
        t += 1.0
        if crashed and saw_dead >= set(sim.live_indices()):
            break
    for _ in range(2):  # a little tail, to show the cluster settle
        sim.run_until(t)
        second()
        t += 1.0
    out(f"{stamp()}  converged: {converged(sim)}; "
        f"wall time {time.perf_counter() - wall0:.2f} s for {sim.now:.1f} simulated s")
