"""The named scenarios of DESIGN.md 3.2, each a short script over the engine.

Every scenario except ``bootstrap`` starts from an already converged cluster
(member tables seeded directly, then a short warm-up so the initial
self-announcements drain); that setup is excluded from the measured numbers,
and ``sim_seconds`` covers only the measured phase. Random choices (victims,
halves, slow nodes, churn actions) come from one scenario RNG derived from the
seed, so a scenario is as replayable as the engine under it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from simulations import faults
from simulations.engine import NodeFactory, SimNode, Simulation
from simulations.metrics import Metrics, ViewTracker, converged, report
from simulations.network import DEFAULT_LATENCY_S, Network
from simulations.reconnect import Reconnector
from swimlib.config import Config
from swimlib.membership.types import Member, MemberState
from swimlib.records import record

SCENARIOS = ("steady", "crash", "leave", "partition", "bootstrap", "flaky", "churn")

#: Measured duration (simulated seconds) when ``--duration`` is not given, for a
#: 1 s probe interval; scaled by the profile's probe interval (WAN: x5).
DEFAULT_DURATION = {
    "steady": 60.0,
    "crash": 60.0,
    "leave": 30.0,
    "partition": 150.0,  # 30 s split, then up to 120 s to heal
    "bootstrap": 300.0,
    "flaky": 120.0,
    "churn": 180.0,
}
#: Settling time after seeding, excluded from measurement.
WARMUP_S = 5.0
#: The crash / leave happens this long into the measured phase.
FAULT_AT_S = 1.0
#: How long the partition scenario keeps the halves apart.
PARTITION_S = 30.0
#: Fraction of nodes made slow in the flaky scenario (at least one).
FLAKY_FRACTION = 0.05
#: Churn: one action every this many seconds, during the first 2/3 of the run.
CHURN_EVERY_S = 5.0
#: Period of convergence checks while waiting for convergence.
CHECK_EVERY_S = 0.5


@record(kw_only=True)
class Options:
    """One run's parameters (the CLI flags)."""

    scenario: str
    nodes: int
    seed: int
    profile: str = "lan"
    loss: float = 0.0
    latency_ms: float | None = None
    duration: float | None = None
    lifeguard: bool = True
    #: Emulate Serf's reconnect loop (see simulations.reconnect); membership layer only.
    reconnect: bool = True
    #: What each simulated host runs: the membership Node, or the Serf layer over it.
    layer: str = "membership"
    #: Every node encrypts with one shared key (the envelope in the core).
    encrypt: bool = False
    #: Lag range (s) of the slow nodes in the flaky scenario.
    slow_lag: tuple[float, float] = faults.SLOW_LAG

    def config(self) -> Config:
        # Streams go uncompressed: LZW in pure Python would triple the wall time,
        # and the byte figures have always counted streams uncompressed.
        config = Config.for_profile(self.profile, compress_streams=False)
        return config if self.lifeguard else config.evolve(lifeguard=False)

    @property
    def latency_s(self) -> float:
        if self.latency_ms is None:
            return DEFAULT_LATENCY_S[self.profile]
        return self.latency_ms / 1000.0

    @property
    def measured_duration(self) -> float:
        if self.duration is not None:
            return self.duration
        return DEFAULT_DURATION[self.scenario] * self.config().probe_interval


LAYERS = ("membership", "serf")
#: Cap on the join-based setup (layers that cannot be seeded).
SETUP_CAP_S = 300.0


def factory_for(layer: str, encrypt: bool = False) -> NodeFactory:
    keyrings = cluster_keyrings(encrypt)
    if layer == "serf":
        from simulations.serfnode import serf_factory

        return serf_factory(keyrings)
    if layer != "membership":
        raise ValueError(f"unknown layer {layer!r}")
    return real_node_factory(keyrings)


#: The simulated cluster's one key (a simulation: no secret to keep).
SIM_KEY = bytes(range(32))


def cluster_keyrings(encrypt: bool) -> Callable[[str], Any] | None:
    """Each node's keyring when the cluster encrypts: one shared key, and nonces
    drawn from a generator seeded by the node's name, so runs replay exactly."""
    if not encrypt:
        return None
    from swimlib.wire.crypto import Keyring

    def keyring_for(name: str) -> Keyring:
        return Keyring([SIM_KEY], nonce_source=random.Random(name))

    return keyring_for


def real_node_factory(keyrings: Callable[[str], Any] | None = None) -> NodeFactory:
    """swimlib's Node (imported late so the engine can be tested without it).

    The nodes of one factory share one row cache: a simulated cluster holds
    the same encoded row in every table.
    """
    from swimlib.membership.node import Node
    from swimlib.membership.rows import RowCache

    cache = RowCache()

    def make(
        name: str, addr: str, port: int, config: Config, rng: random.Random, now: float
    ) -> SimNode:
        keyring = keyrings(name) if keyrings is not None else None
        return Node(name, addr, port, config, rng, now, row_cache=cache, keyring=keyring)

    return make


class Run:
    """One scenario run: builds the cluster, applies the script, collects the result."""

    def __init__(
        self, opts: Options, factory: NodeFactory | None = None, keep_trace: bool = False
    ) -> None:
        if opts.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {opts.scenario!r}")
        if opts.nodes < 2:
            raise ValueError("a cluster needs at least 2 nodes")
        self.opts = opts
        seed = opts.seed
        net = Network(0, random.Random(f"{seed}:network"), opts.latency_s, opts.loss)
        self.sim = Simulation(
            opts.config(), seed, net, factory or factory_for(opts.layer, opts.encrypt),
            keep_trace=keep_trace,
        )
        self.rng = random.Random(f"{seed}:scenario")
        self.tracker: ViewTracker | None = None
        self.metrics: Metrics | None = None
        self.reconnector: Reconnector | None = None
        self.t0 = 0.0
        self._events0 = 0
        self._trace0 = 0
        self._wall0 = time.perf_counter()
        self._setup_wall = 0.0
        self.extra: dict[str, Any] = {}
        #: Hooks for the demo: called as ``hook(run)`` once the measured phase starts.
        self.on_measure: list[Callable[[Run], None]] = []

    # -- building blocks ---------------------------------------------------

    def build(self) -> None:
        """Create every node (not yet knowing each other) and the listeners."""
        sim = self.sim
        for _ in range(self.opts.nodes):
            sim.add_node()
        self.tracker = ViewTracker(sim)
        self.metrics = Metrics(sim)
        if self.opts.reconnect and self.opts.layer == "membership":
            self.reconnector = Reconnector(sim)

    def join_all(self) -> None:
        """Everyone joins the first node at a random moment within the first second."""
        sim = self.sim

        def joiner(i: int) -> Callable[[], None]:
            def join() -> None:
                sim.join(i, [0])

            return join

        for i in range(1, len(sim.slots)):
            sim.call_at(sim.now + self.rng.random(), joiner(i))

    def seed_converged(self) -> None:
        """Give every node the full member table, then let the start-up gossip drain.

        Nodes without ``seed_members`` (the Serf layer, which must learn members
        from events) get there the realistic way: joins, then wait to converge.
        """
        sim = self.sim
        assert self.tracker is not None
        if not hasattr(sim.slots[0].node, "seed_members"):
            self.join_all()
            done = self.run_until_converged(sim.now + SETUP_CAP_S)
            self.extra["setup_converged"] = done is not None
            sim.run_until(sim.now + WARMUP_S)
            return
        members = [
            Member(s.name, s.addr[0], s.addr[1], b"", s.node.incarnation, MemberState.ALIVE)
            for s in sim.slots
        ]
        for s in sim.slots:
            seed = getattr(s.node, "seed_members", None)
            if seed is None:
                raise TypeError("the node type has no seed_members(); use a bootstrap setup")
            seed(members, sim.now)
            sim.poke(s.index)
        self.tracker.assume_full_view()
        sim.run_until(sim.now + WARMUP_S)

    def begin_measure(self) -> None:
        """Forget setup traffic and counters; the measured phase starts now."""
        sim = self.sim
        assert self.metrics is not None
        self.t0 = sim.now
        sim.net.reset_counters()
        self.metrics.reset()
        self._events0 = sim.events
        self._trace0 = sim.trace.count
        self._setup_wall = time.perf_counter() - self._wall0
        for hook in self.on_measure:
            hook(self)

    def run_until_converged(self, t_cap: float) -> float | None:
        """Advance until the cluster converges (checked every 0.5 s) or ``t_cap``."""
        sim = self.sim
        assert self.tracker is not None
        while sim.now < t_cap:
            sim.run_until(min(sim.now + CHECK_EVERY_S, t_cap))
            if self.tracker.looks_converged() and converged(sim):
                return sim.now
        return None

    def finish(self, **fields: Any) -> dict[str, Any]:
        """The result object for this run."""
        sim = self.sim
        assert self.metrics is not None
        opts = self.opts
        net = sim.net
        wall = time.perf_counter() - self._wall0
        extra: dict[str, Any] = {
            "lifeguard": opts.lifeguard,
            "layer": opts.layer,
            "reconnect": "serf" if opts.layer == "serf" else opts.reconnect,
            "latency_ms": round(opts.latency_s * 1000.0, 3),
            "setup_sim_seconds": round(self.t0, 3),
            "setup_wall_seconds": round(self._setup_wall, 3),
            "trace_events": sim.trace.count - self._trace0,
            "refutations": self.metrics.refutations,
            "deaths_declared": self.metrics.deaths_declared,
            "false_positive_nodes": len(self.metrics.fp_targets),
            "dropped_loss": net.dropped_loss,
            "dropped_partition": net.dropped_partition,
        }
        if self.reconnector is not None:
            extra["reconnect_attempts"] = self.reconnector.attempts
        extra.update(self.extra)
        if self.metrics.fp_log:
            extra["false_positive_examples"] = [
                [round(t - self.t0, 3), who, whom] for t, who, whom in self.metrics.fp_log[:5]
            ]
        fields.setdefault("converged", converged(sim))
        return report(
            scenario=opts.scenario,
            nodes=opts.nodes,
            seed=opts.seed,
            profile=opts.profile,
            loss=opts.loss,
            sim_seconds=sim.now - self.t0,
            wall_seconds=wall,
            events=sim.events - self._events0,
            messages=sum(net.msgs_sent),
            bytes_=sum(net.bytes_sent),
            false_positives=self.metrics.false_positives,
            suspicions=self.metrics.suspicions,
            trace_sha256=sim.trace.hexdigest(),
            extra=extra,
            **fields,
        )

    def converged_start(self) -> None:
        self.build()
        self.seed_converged()
        self.begin_measure()

    # -- the scenarios ---------------------------------------------------------

    def steady(self) -> dict[str, Any]:
        self.converged_start()
        self.sim.run_until(self.t0 + self.opts.measured_duration)
        return self.finish()

    def _fault_and_wait(self, kind: str) -> dict[str, Any]:
        self.converged_start()
        sim, metrics = self.sim, self.metrics
        assert metrics is not None
        victim = self.rng.randrange(self.opts.nodes)
        self.extra["victim"] = sim.slots[victim].name
        sim.run_until(self.t0 + FAULT_AT_S)
        if kind == "crash":
            faults.crash(sim, victim)
        else:
            faults.leave(sim, victim)
        metrics.watch(victim, kind)
        metrics.stop_when_detected = True
        sim.run_until(self.t0 + self.opts.measured_duration)
        first, every = metrics.detection(victim)
        if kind == "crash":
            return self.finish(detection_first_s=first, detection_all_s=every)
        # The leaver keeps gossiping for LeavePropagateDelay; make sure it has stopped.
        sim.run_until(max(sim.now, self.t0 + FAULT_AT_S + faults.LEAVE_PROPAGATE_DELAY))
        return self.finish(leave_all_s=every)

    def crash(self) -> dict[str, Any]:
        return self._fault_and_wait("crash")

    def leave(self) -> dict[str, Any]:
        return self._fault_and_wait("leave")

    def partition(self) -> dict[str, Any]:
        self.converged_start()
        sim = self.sim
        order = list(range(self.opts.nodes))
        self.rng.shuffle(order)
        half = len(order) // 2
        side_a, side_b = sorted(order[:half]), sorted(order[half:])
        split_for = min(PARTITION_S, self.opts.measured_duration / 2)
        rules = faults.partition(sim, side_a, side_b)
        sim.run_until(self.t0 + split_for)
        faults.heal(sim, rules)
        healed_at = sim.now
        done = self.run_until_converged(self.t0 + self.opts.measured_duration)
        self.extra["partition_s"] = split_for
        return self.finish(convergence_s=None if done is None else done - healed_at)

    def bootstrap(self) -> dict[str, Any]:
        self.build()
        self.begin_measure()
        self.join_all()
        done = self.run_until_converged(self.opts.measured_duration)
        return self.finish(convergence_s=done)

    def flaky(self) -> dict[str, Any]:
        self.converged_start()
        sim = self.sim
        count = max(1, round(self.opts.nodes * FLAKY_FRACTION))
        slow = sorted(self.rng.sample(range(self.opts.nodes), count))
        for i in slow:
            faults.slow(sim, i, self.opts.slow_lag)
        self.extra["slow_nodes"] = [sim.slots[i].name for i in slow]
        sim.run_until(self.t0 + self.opts.measured_duration)
        return self.finish()

    def churn(self) -> dict[str, Any]:
        """Crash, leave and restart nodes every few seconds, then let the cluster settle."""
        self.converged_start()
        sim, rng = self.sim, self.rng
        n = self.opts.nodes
        max_down = max(1, n // 10)
        churn_until = self.t0 + self.opts.measured_duration * 2 / 3
        actions: dict[str, int] = {"crash": 0, "leave": 0, "restart": 0}
        last_fault = self.t0
        t = self.t0 + CHURN_EVERY_S
        while t < churn_until:
            sim.run_until(t)
            live = sim.live_indices()
            down = [s.index for s in sim.slots if not s.running]
            if down and (len(down) >= max_down or rng.random() < 0.4):
                faults.restart(sim, rng.choice(down), rng.choice(live))
                actions["restart"] += 1
            elif len(live) > 2:
                victim = rng.choice(live)
                if rng.random() < 0.5:
                    faults.crash(sim, victim)
                    actions["crash"] += 1
                else:
                    faults.leave(sim, victim)
                    actions["leave"] += 1
            last_fault = sim.now
            t += CHURN_EVERY_S
        done = self.run_until_converged(self.t0 + self.opts.measured_duration)
        self.extra["churn_actions"] = actions
        return self.finish(convergence_s=None if done is None else done - last_fault)

    def run(self) -> dict[str, Any]:
        result: dict[str, Any] = getattr(self, self.opts.scenario)()
        return result


def run_scenario(
    opts: Options, factory: NodeFactory | None = None, keep_trace: bool = False
) -> dict[str, Any]:
    """Run one scenario and return its DESIGN.md 3.2 result object."""
    return Run(opts, factory, keep_trace).run()
