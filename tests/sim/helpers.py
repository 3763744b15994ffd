"""Shared builders for the simulator tests."""

from __future__ import annotations

import random
from typing import Any

from simulations.engine import NodeFactory, SimNode, Simulation
from simulations.network import Network
from swimlib.config import Config
from tests.sim.fakenode import FakeNode


def fake_factory(
    name: str, addr: str, port: int, config: Config, rng: random.Random, now: float
) -> SimNode:
    return FakeNode(name, addr, port, config, rng, now)


def make_sim(
    n: int,
    seed: int = 1,
    factory: NodeFactory = fake_factory,
    latency: float = 0.001,
    loss: float = 0.0,
    keep_trace: bool = True,
) -> Simulation:
    net = Network(0, random.Random(f"{seed}:network"), latency, loss)
    sim = Simulation(Config.lan(), seed, net, factory, keep_trace=keep_trace)
    for _ in range(n):
        sim.add_node()
    return sim


def seed_all(sim: Simulation) -> None:
    """Give every fake node the full table (what scenarios do with real nodes)."""
    from swimlib.membership.types import Member, MemberState

    members = [Member(s.name, s.addr[0], s.addr[1], b"", 1, MemberState.ALIVE)
               for s in sim.slots]
    for s in sim.slots:
        node: Any = s.node
        node.seed_members(members, sim.now)
        sim.poke(s.index)
