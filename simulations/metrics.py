"""What a run measures: convergence, detection times, false positives, traffic.

Two listeners watch the effects nodes report:

* :class:`ViewTracker` keeps, per observer, which other hosts it currently
  believes are members (from join/leave events), with running counts, so
  "has the cluster converged?" costs O(n) instead of O(n^2) snapshots. Its
  answer is confirmed with :func:`converged` (exact, from member states)
  before a convergence time is reported, because suspicion produces no event.
* :class:`Metrics` counts suspicions, false positives (a death declared about
  a host that was running and had not left), and times how long it takes
  every live node to mark a crashed host dead or a departed host left.

:func:`report` lays the numbers out with exactly the fields of DESIGN.md 3.2.
Counts cover the measured phase only (setup excluded): ``events`` is the
number of discrete events the engine processed (deliveries, wake-ups,
scheduled actions); ``messages``/``bytes`` are datagrams plus stream requests
and replies *sent*, lost ones included; ``false_positives`` counts death
declarations about hosts that were running and had not left (the extra field
``false_positive_nodes`` counts distinct such hosts). ``wall_seconds`` is the
whole run, setup included (``setup_wall_seconds`` says how much was setup).
"""

from __future__ import annotations

import resource
import sys
from typing import Any

from simulations.engine import Lifecycle, Simulation
from swimlib.membership.types import (
    DeathDeclared,
    EventKind,
    MemberState,
    NodeEvent,
    Refuted,
    SuspicionRaised,
)

#: The JSON fields, in order (DESIGN.md 3.2). Extra fields may follow.
FIELDS = (
    "scenario",
    "nodes",
    "seed",
    "profile",
    "loss",
    "sim_seconds",
    "wall_seconds",
    "events",
    "messages",
    "bytes",
    "converged",
    "false_positives",
    "suspicions",
    "detection_first_s",
    "detection_all_s",
    "leave_all_s",
    "convergence_s",
    "msgs_per_node_per_s",
    "bytes_per_node_per_s",
    "peak_rss_mb",
    "trace_sha256",
)


class ViewTracker:
    """Incremental "who does each node think is a member" bookkeeping."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        n = len(sim.slots)
        self._view = [bytearray(n) for _ in range(n)]
        self._live = bytearray(1 if s.live else 0 for s in sim.slots)
        self._good = [0] * n  # live hosts (other than itself) each observer counts as members
        self._bad = [0] * n  # hosts it counts as members that are not live
        sim.listeners.append(self._on_event)

    def assume_full_view(self) -> None:
        """Every node knows every node (after seeding member tables directly)."""
        n = len(self._view)
        live_total = sum(self._live)
        for o in range(n):
            row = self._view[o]
            row[:] = b"\x01" * n
            row[o] = 0
            self._good[o] = live_total - (1 if self._live[o] else 0)
            self._bad[o] = (n - 1) - self._good[o]

    def _set(self, o: int, j: int, value: int) -> None:
        row = self._view[o]
        if row[j] == value:
            return
        row[j] = value
        delta = 1 if value else -1
        if self._live[j]:
            self._good[o] += delta
        else:
            self._bad[o] += delta

    def _on_event(self, now: float, i: int, effect: Any) -> None:
        t = type(effect)
        if t is NodeEvent:
            j = self.sim.by_name.get(effect.member.name)
            if j is None or j == i:
                return
            if effect.kind is EventKind.JOIN:
                self._set(i, j, 1)
            elif effect.kind is EventKind.LEAVE:
                self._set(i, j, 0)
        elif t is Lifecycle:
            self._liveness_changed(i, effect.kind == "restart")

    def _liveness_changed(self, j: int, restarted: bool) -> None:
        if restarted:  # a fresh instance knows nobody yet
            self._view[j][:] = bytes(len(self._view))
            self._good[j] = self._bad[j] = 0
        now_live = 1 if self.sim.slots[j].live else 0
        if now_live == self._live[j]:
            return
        self._live[j] = now_live
        sign = 1 if now_live else -1
        for o, row in enumerate(self._view):
            if row[j]:
                self._good[o] += sign
                self._bad[o] -= sign

    def looks_converged(self) -> bool:
        """Cheap test from events only (suspects still count as members here)."""
        live = self._live
        expected = sum(live) - 1
        good, bad = self._good, self._bad
        return all(good[o] == expected and bad[o] == 0 for o in range(len(live)) if live[o])


def converged(sim: Simulation) -> bool:
    """Exact check: every live node sees exactly the live nodes as ALIVE."""
    live = [s for s in sim.slots if s.live]
    names = {s.name for s in live}
    for s in live:
        node: Any = s.node
        state_of = getattr(node, "state_of", None)
        alive_count = getattr(node, "alive_count", None)
        if state_of is not None and alive_count is not None:  # fast path, no snapshots
            if alive_count() != len(names):
                return False
            if any(state_of(name) is not MemberState.ALIVE for name in names):
                return False
        else:
            seen = {m.name for m in node.members() if m.state is MemberState.ALIVE}
            if seen != names:
                return False
    return True


class _Watch:
    __slots__ = ("all", "first", "kind", "observers", "start", "state")

    def __init__(self, kind: str, state: MemberState, start: float) -> None:
        self.kind = kind
        self.state = state
        self.start = start
        self.observers: set[int] = set()
        self.first: float | None = None
        self.all: float | None = None


class Metrics:
    """Counters and timers for the measured phase of a run."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.suspicions = 0
        self.false_positives = 0
        self.refutations = 0
        self.deaths_declared = 0
        #: (time, declarer, target) of each false positive, for reports and debugging.
        self.fp_log: list[tuple[float, str, str]] = []
        #: Distinct hosts wrongly declared dead.
        self.fp_targets: set[str] = set()
        self._watches: dict[int, _Watch] = {}
        self.stop_when_detected = False
        sim.listeners.append(self._on_event)

    def reset(self) -> None:
        """Start the measured phase: forget everything counted during setup."""
        self.suspicions = self.false_positives = self.refutations = self.deaths_declared = 0
        self.fp_log.clear()
        self.fp_targets.clear()

    def watch(self, target: int, kind: str) -> None:
        """Time how long until every live node marks ``target`` dead (crash) or left (leave)."""
        state = MemberState.DEAD if kind == "crash" else MemberState.LEFT
        self._watches[target] = _Watch(kind, state, self.sim.now)

    def detection(self, target: int) -> tuple[float | None, float | None]:
        w = self._watches.get(target)
        return (None, None) if w is None else (w.first, w.all)

    @property
    def all_detected(self) -> bool:
        return bool(self._watches) and all(w.all is not None for w in self._watches.values())

    def _on_event(self, now: float, i: int, effect: Any) -> None:
        t = type(effect)
        if t is NodeEvent:
            if effect.kind is EventKind.LEAVE and self._watches:
                self._on_leave_event(now, i, effect)
            return
        if t is DeathDeclared:
            self.deaths_declared += 1
            j = self.sim.by_name.get(effect.node)
            if j is not None and self._is_false_positive(j, effect.incarnation):
                self.false_positives += 1
                self.fp_targets.add(effect.node)
                if len(self.fp_log) < 1000:
                    self.fp_log.append((now, self.sim.slots[i].name, effect.node))
        elif t is SuspicionRaised:
            self.suspicions += 1
        elif t is Refuted:
            self.refutations += 1

    def _is_false_positive(self, j: int, incarnation: int) -> bool:
        slot = self.sim.slots[j]
        if not slot.live:
            return False
        # A restarted host: a verdict about its previous life is not a mistake.
        return not (slot.gen > 0 and incarnation <= slot.last_incarnation)

    def _on_leave_event(self, now: float, i: int, effect: NodeEvent) -> None:
        j = self.sim.by_name.get(effect.member.name)
        if j is None:
            return
        w = self._watches.get(j)
        if w is None or effect.member.state is not w.state or not self.sim.slots[i].live:
            return
        w.observers.add(i)
        if w.first is None:
            w.first = now - w.start
        if w.all is None and len(w.observers) >= self._live_count() - 1:
            others = [s.index for s in self.sim.slots if s.live and s.index != j]
            if all(o in w.observers for o in others):
                w.all = now - w.start
                if self.stop_when_detected and self.all_detected:
                    self.sim.request_stop()

    def _live_count(self) -> int:
        return sum(1 for s in self.sim.slots if s.live)


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return round(rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024, 1)


def report(
    *,
    scenario: str,
    nodes: int,
    seed: int,
    profile: str,
    loss: float,
    sim_seconds: float,
    wall_seconds: float,
    events: int,
    messages: int,
    bytes_: int,
    converged: bool,
    false_positives: int,
    suspicions: int,
    detection_first_s: float | None = None,
    detection_all_s: float | None = None,
    leave_all_s: float | None = None,
    convergence_s: float | None = None,
    trace_sha256: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The DESIGN.md 3.2 result object (field order fixed), plus ``extra`` fields after."""

    def r(x: float | None, nd: int = 3) -> float | None:
        return None if x is None else round(x, nd)

    per = nodes * sim_seconds if nodes and sim_seconds > 0 else 0.0
    out: dict[str, Any] = {
        "scenario": scenario,
        "nodes": nodes,
        "seed": seed,
        "profile": profile,
        "loss": loss,
        "sim_seconds": r(sim_seconds),
        "wall_seconds": r(wall_seconds),
        "events": events,
        "messages": messages,
        "bytes": bytes_,
        "converged": converged,
        "false_positives": false_positives,
        "suspicions": suspicions,
        "detection_first_s": r(detection_first_s),
        "detection_all_s": r(detection_all_s),
        "leave_all_s": r(leave_all_s),
        "convergence_s": r(convergence_s),
        "msgs_per_node_per_s": r(messages / per if per else 0.0),
        "bytes_per_node_per_s": r(bytes_ / per if per else 0.0, 1),
        "peak_rss_mb": peak_rss_mb(),
        "trace_sha256": trace_sha256,
    }
    assert tuple(out) == FIELDS
    if extra:
        for key, value in extra.items():
            if key not in out:
                out[key] = value
    return out
