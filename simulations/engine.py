"""Deterministic discrete-event engine that drives sans-IO nodes on a virtual clock.

Everything that could vary between two runs is owned here: the clock (a
float that only moves when the next event is popped), the order of events (a
heap of ``(time, seq, ...)`` tuples; ``seq`` breaks ties in insertion order),
and randomness (one ``random.Random`` per node, per network and per fault
injector, each derived from the scenario seed by name, so adding a node does
not shift anyone else's stream). Nothing reads the wall clock or the global
``random`` module, and nothing iterates a set or a str-keyed hash order.

Speed matters (thousands of nodes in one process), so the hot loop works on
plain tuples and small-int event kinds, and each node has at most one live
wake-up in the heap: after feeding a node anything we read its
``next_deadline()`` and push a new wake-up only when it is earlier than the
one already scheduled. Superseded wake-ups stay in the heap and are skipped
when popped (their ``seq`` no longer matches the node's).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

from simulations.network import Network
from simulations.trace import Trace, describe
from swimlib.config import Config
from swimlib.core import Core
from swimlib.membership.types import Address, Member, OpenStream, SendPacket

#: Port every simulated node binds (addresses differ, ports do not).
PORT = 7946

# Event kinds. Layouts (after ``time, seq, kind``):
#   WAKE:   idx, gen                          run due timers
#   PACKET: idx, data, source                 a datagram arrives at whoever is bound at idx
#   SREQ:   idx, opener, opener_gen, request_id, data, deadline   a stream request arrives
#   SREP:   idx, gen, request_id, data|None   a stream reply (or failure) reaches its opener
#   CALL:   fn, None                          scenario / fault action at a given time
_WAKE, _PACKET, _SREQ, _SREP, _CALL = range(5)

# Node lifecycle.
RUNNING = "running"  # live: counted for convergence and false positives
LEAVING = "leaving"  # announced its leave, still ticking until the leave propagates
LEFT = "left"  # stopped after a graceful leave
CRASHED = "crashed"  # stopped without warning


class SimNode(Core, Protocol):
    """A :class:`swimlib.core.Core` (what the engine drives) with the views the
    metrics read."""

    @property
    def incarnation(self) -> int: ...

    def members(self) -> list[Member]: ...


#: ``factory(name, addr, port, config, rng, now) -> node``
NodeFactory = Callable[[str, str, int, Config, random.Random, float], SimNode]


class Lifecycle(NamedTuple):
    """A fault or lifecycle change, reported to listeners like an effect."""

    kind: str  # "start", "crash", "leave", "stop", "restart", "slow", "fast", ...
    detail: str = ""


#: ``listener(now, node_index, effect_or_lifecycle)``
Listener = Callable[[float, int, Any], None]


def address_of(i: int) -> Address:
    """The virtual address of node ``i`` (the address plan; no sockets behind it)."""
    return (f"127.0.{i // 250}.{i % 250 + 1}", PORT)


def name_of(i: int) -> str:
    return f"node-{i:04d}"


class Slot:
    """What the engine knows about one simulated host (survives restarts)."""

    __slots__ = (
        "addr",
        "gen",
        "index",
        "last_incarnation",
        "name",
        "node",
        "slow",
        "state",
        "wake_deadline",
        "wake_seq",
    )

    def __init__(self, index: int, name: str, addr: Address, node: SimNode) -> None:
        self.index = index
        self.name = name
        self.addr = addr
        self.node = node
        self.gen = 0
        self.state = RUNNING
        #: Extra processing lag range (lo, hi) in seconds; None = healthy.
        self.slow: tuple[float, float] | None = None
        self.wake_deadline: float | None = None
        self.wake_seq = -1
        #: Incarnation of the previous instance when it stopped (restart bookkeeping).
        self.last_incarnation = -1

    @property
    def running(self) -> bool:
        return self.state is RUNNING or self.state is LEAVING

    @property
    def live(self) -> bool:
        return self.state is RUNNING


class Simulation:
    """A cluster of sans-IO nodes on one virtual clock and one simulated network."""

    def __init__(
        self,
        config: Config,
        seed: int,
        network: Network,
        factory: NodeFactory,
        keep_trace: bool = False,
    ) -> None:
        self.config = config
        self.seed = seed
        self.net = network
        self.factory = factory
        self.now = 0.0
        self.slots: list[Slot] = []
        self.by_addr: dict[Address, int] = {}
        self.by_name: dict[str, int] = {}
        self.trace = Trace(keep=keep_trace)
        self.listeners: list[Listener] = []
        #: Randomness for fault timing and slow-node lag (not the network's).
        self.fault_rng = random.Random(f"{seed}:faults")
        #: Discrete events processed so far.
        self.events = 0
        self._heap: list[tuple[Any, ...]] = []
        self._seq = 0
        self._stop = False

    # -- building ------------------------------------------------------------

    def node_rng(self, name: str, gen: int) -> random.Random:
        # str seeds are hashed with SHA-512 by random.seed: stable across processes.
        return random.Random(f"{self.seed}:{name}:{gen}")

    def add_node(self, name: str | None = None) -> int:
        """Create and start the next node (index ``len(slots)``); returns its index."""
        i = len(self.slots)
        name = name or name_of(i)
        addr = address_of(i)
        node = self.factory(name, addr[0], addr[1], self.config, self.node_rng(name, 0), self.now)
        slot = Slot(i, name, addr, node)
        self.slots.append(slot)
        self.by_addr[addr] = i
        self.by_name[name] = i
        self.net.grow(i + 1)
        self._notify(i, Lifecycle("start"))
        self._drain(slot)
        return i

    def restart(self, i: int) -> SimNode:
        """Replace a stopped node with a fresh instance under the same name and address."""
        slot = self.slots[i]
        if slot.running:
            raise ValueError(f"{slot.name} is still running")
        slot.gen += 1
        slot.node = self.factory(
            slot.name, slot.addr[0], slot.addr[1], self.config,
            self.node_rng(slot.name, slot.gen), self.now,
        )
        slot.state = RUNNING
        slot.wake_deadline = None
        slot.wake_seq = -1
        self._notify(i, Lifecycle("restart", f"gen={slot.gen}"))
        self._drain(slot)
        return slot.node

    def stop(self, i: int, state: str) -> None:
        """Stop node ``i`` for good (``CRASHED`` or ``LEFT``): it processes nothing more."""
        slot = self.slots[i]
        if not slot.running:
            return
        slot.last_incarnation = slot.node.incarnation
        slot.state = state
        slot.wake_deadline = None
        slot.wake_seq = -1  # any pending wake-up is now stale
        self._notify(i, Lifecycle("crash" if state is CRASHED else "stop"))

    # -- commands into nodes ---------------------------------------------------

    def join(self, i: int, targets: Sequence[int]) -> object:
        """Have node ``i`` push-pull join the given nodes now; returns the node's join id."""
        return self.join_addresses(i, [self.slots[t].addr for t in targets])

    def join_addresses(self, i: int, addrs: Sequence[Address]) -> object:
        """Have node ``i`` push-pull join whatever listens at ``addrs``."""
        slot = self.slots[i]
        join_id = slot.node.join(addrs, self.now)
        self._drain(slot)
        return join_id

    def leave(self, i: int) -> None:
        """Start a graceful leave; the node keeps running until :meth:`stop`."""
        slot = self.slots[i]
        slot.state = LEAVING
        self._notify(i, Lifecycle("leave"))
        slot.node.leave(self.now)
        self._drain(slot)

    def poke(self, i: int) -> None:
        """Collect effects and deadlines after touching a node directly (e.g. seeding)."""
        self._drain(self.slots[i])

    def notify(self, i: int, event: Lifecycle) -> None:
        """Record a fault or other scenario event in the trace and for listeners."""
        self._notify(i, event)

    # -- scheduling ----------------------------------------------------------

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        """Run ``fn()`` at virtual time ``when`` (scenario actions, faults, checks)."""
        self._seq += 1
        heapq.heappush(self._heap, (max(when, self.now), self._seq, _CALL, fn, None))

    def request_stop(self) -> None:
        """Make the current :meth:`run_until` return after the event being processed."""
        self._stop = True

    def _lag(self, slot: Slot) -> float:
        lo_hi = slot.slow
        if lo_hi is None:
            return 0.0
        return self.fault_rng.uniform(lo_hi[0], lo_hi[1])

    def _notify(self, i: int, effect: Any) -> None:
        name = self.slots[i].name
        if isinstance(effect, Lifecycle):
            self.trace.record(self.now, name, f"fault {effect.kind} {effect.detail}".rstrip())
        else:
            self.trace.record(self.now, name, describe(effect))
        for listener in tuple(self.listeners):  # listeners may remove themselves
            listener(self.now, i, effect)

    def _drain(self, slot: Slot) -> None:
        """Turn a node's pending effects into events; re-arm its wake-up if earlier."""
        node = slot.node
        effects = node.take_effects()
        if effects:
            i = slot.index
            for e in effects:
                t = type(e)
                if t is SendPacket:
                    self._send(slot, e)  # type: ignore[arg-type]
                elif t is OpenStream:
                    self._open(slot, e)  # type: ignore[arg-type]
                else:
                    self._notify(i, e)
        if not slot.running:  # e.g. a listener stopped it
            return
        d = node.next_deadline()
        if d is not None and (slot.wake_deadline is None or d < slot.wake_deadline):
            slot.wake_deadline = d
            when = d if d > self.now else self.now
            if slot.slow is not None:
                when += self._lag(slot)
            self._seq += 1
            slot.wake_seq = self._seq
            heapq.heappush(self._heap, (when, self._seq, _WAKE, slot.index, slot.gen))

    def _send(self, slot: Slot, e: SendPacket) -> None:
        dst = self.by_addr.get(e.dest)
        net = self.net
        if dst is None:  # nobody at that address: count it and drop it
            net.msgs_sent[slot.index] += 1
            net.bytes_sent[slot.index] += len(e.data)
            return
        delay = net.datagram(slot.index, dst, len(e.data))
        if delay is None:
            return
        dslot = self.slots[dst]
        if dslot.slow is not None:
            delay += self._lag(dslot)
        self._seq += 1
        heapq.heappush(self._heap, (self.now + delay, self._seq, _PACKET, dst, e.data, slot.addr))

    def _open(self, slot: Slot, e: OpenStream) -> None:
        i = slot.index
        dst = self.by_addr.get(e.dest)
        deadline = self.now + e.timeout
        net = self.net
        net.msgs_sent[i] += 1
        net.bytes_sent[i] += len(e.data)
        self._seq += 1
        if dst is None or not net.reachable(i, dst):
            # No route: the connect hangs until the opener's timeout.
            heapq.heappush(
                self._heap, (deadline, self._seq, _SREP, i, slot.gen, e.request_id, None)
            )
            return
        dslot = self.slots[dst]
        if not dslot.running:
            # The host answers but no process listens: connection refused (SYN, RST).
            heapq.heappush(self._heap, (
                min(self.now + net.refused_delay(), deadline), self._seq, _SREP, i, slot.gen,
                e.request_id, None,
            ))
            return
        net.msgs_recv[dst] += 1
        net.bytes_recv[dst] += len(e.data)
        delay = net.stream_request_delay()
        if dslot.slow is not None:
            delay += self._lag(dslot)
        heapq.heappush(
            self._heap,
            (self.now + delay, self._seq, _SREQ, dst, i, slot.gen, e.request_id, e.data, deadline),
        )

    def _reply(self, opener: int, gen: int, rid: int, data: bytes | None, when: float) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, _SREP, opener, gen, rid, data))

    # -- running ---------------------------------------------------------------

    def run_until(self, t_end: float) -> None:
        """Process every event up to and including ``t_end`` (or until a stop request)."""
        heap = self._heap
        slots = self.slots
        pop = heapq.heappop
        net = self.net
        self._stop = False
        processed = 0
        while heap and heap[0][0] <= t_end:
            ev = pop(heap)
            now = ev[0]
            self.now = now
            kind = ev[2]
            processed += 1
            if kind == _WAKE:
                slot = slots[ev[3]]
                if ev[1] != slot.wake_seq or ev[4] != slot.gen or not slot.running:
                    processed -= 1  # a superseded wake-up is not an event
                    continue
                slot.wake_deadline = None
                slot.node.tick(now)
                self._drain(slot)
            elif kind == _PACKET:
                slot = slots[ev[3]]
                if not slot.running:
                    continue
                slot.node.handle_packet(ev[4], ev[5], now)
                self._drain(slot)
            elif kind == _SREQ:
                slot = slots[ev[3]]
                opener, ogen, rid, deadline = ev[4], ev[5], ev[6], ev[8]
                if not slot.running:
                    # It died while we were connecting: the reset comes back.
                    self._reply(opener, ogen, rid, None, min(now + net.delay(), deadline))
                    continue
                reply = slot.node.handle_stream(ev[7], slots[opener].addr, now)
                self._drain(slot)
                if not net.reachable(slot.index, opener):
                    self._reply(opener, ogen, rid, None, deadline)
                    continue
                if reply is not None:
                    net.stream_payload(slot.index, opener, len(reply))
                when = now + net.stream_reply_delay()
                oslot = slots[opener]
                if oslot.slow is not None:
                    when += self._lag(oslot)
                if when > deadline:
                    self._reply(opener, ogen, rid, None, deadline)
                else:
                    self._reply(opener, ogen, rid, reply, when)
            elif kind == _SREP:
                slot = slots[ev[3]]
                if ev[4] != slot.gen or not slot.running:
                    continue
                slot.node.handle_stream_reply(ev[5], ev[6], now)
                self._drain(slot)
            else:
                ev[3]()
            if self._stop:
                break
        else:
            if t_end > self.now:
                self.now = t_end
        self.events += processed

    def next_event_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    # -- views -----------------------------------------------------------------

    def live_indices(self) -> list[int]:
        return [s.index for s in self.slots if s.state is RUNNING]
