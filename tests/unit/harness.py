"""A minimal in-memory network for unit tests of the cores (Node, Serf).

It drives the :class:`swimlib.core.Core` contract, as the agent's runtime
and the simulator do. Deliberately tiny (the real simulator lives in ``simulations/``): fixed
latency, optional drop filter, whole-stream delivery, bounded run loops.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any

from swimlib.config import Config
from swimlib.core import Core
from swimlib.membership.node import Node
from swimlib.membership.types import Address, Effect, OpenStream, SendPacket

LATENCY = 0.001


class Net:
    def __init__(self, config: Config | None = None, seed: int = 0,
                 factory: Callable[..., Any] | None = None) -> None:
        #: Builds a member: (name, addr, port, config, rng, now) -> a Core.
        self.factory: Callable[..., Core] = factory or Node
        self.config = config or Config.lan(enable_compression=False)
        self.seed = seed
        self.now = 0.0
        self.nodes: dict[Address, Any] = {}
        self.down: set[Address] = set()
        #: Drop UDP datagrams src -> dst when this returns True.
        self.drop: Callable[[Address, Address], bool] = lambda src, dst: False
        #: Refuse TCP streams src -> dst when this returns True.
        self.drop_tcp: Callable[[Address, Address], bool] = lambda src, dst: False
        #: Every effect each node produced, with the time it was produced.
        self.effects: dict[str, list[tuple[float, Effect]]] = {}
        self._queue: list[tuple[float, int, Any]] = []
        self._seq = 0

    def add(self, name: str, join: bool = True, **kwargs: Any) -> Any:
        i = len(self.nodes)
        addr = (f"127.0.0.{i + 1}", 7946)
        node = self.factory(name, addr[0], addr[1], self.config,
                            random.Random(f"{self.seed}:{name}"), self.now, **kwargs)
        first = next(iter(self.nodes), None)
        self.nodes[addr] = node
        self.effects[name] = []
        if join and first is not None:
            node.join([first], self.now)
        self._flush(node)
        return node

    def rejoin(self, node: Any, through: Any) -> None:
        """``node`` joins again through ``through`` (a member back after a failure)."""
        node.join([self.addr_of(through)], self.now)
        self._flush(node)

    def node(self, name: str) -> Any:
        return next(n for n in self.nodes.values() if n.name == name)

    def addr_of(self, node: Any) -> Address:
        return (node.addr, node.port)

    def _push(self, when: float, item: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, item))

    def _flush(self, node: Any) -> None:
        src = self.addr_of(node)
        for eff in node.take_effects():
            self.effects[node.name].append((self.now, eff))
            if isinstance(eff, SendPacket):
                if src in self.down or self.drop(src, eff.dest):
                    continue
                self._push(self.now + LATENCY, ("pkt", src, eff.dest, eff.data))
            elif isinstance(eff, OpenStream):
                self._push(self.now + LATENCY, ("stream", src, eff))
        deadline = node.next_deadline()
        if deadline is not None:
            self._push(deadline, ("tick", src))

    def run(self, seconds: float, max_events: int = 2_000_000) -> None:
        end = self.now + seconds
        for _ in range(max_events):
            if not self._queue or self._queue[0][0] > end:
                break
            when, _, item = heapq.heappop(self._queue)
            self.now = when
            kind = item[0]
            if kind == "tick":
                node = self.nodes[item[1]]
                if item[1] in self.down or (node.next_deadline() or end + 1) > when:
                    continue
                node.tick(when)
                self._flush(node)
            elif kind == "pkt":
                _, src, dst, data = item
                target = self.nodes.get(dst)
                if target is None or dst in self.down:
                    continue
                target.handle_packet(data, src, when)
                self._flush(target)
            elif kind == "stream":
                _, src, eff = item
                target = self.nodes.get(eff.dest)
                ok = (target is not None and eff.dest not in self.down
                      and not self.drop_tcp(src, eff.dest))
                reply = target.handle_stream(eff.data, src, when) if ok and target else None
                if target is not None and ok:
                    self._flush(target)
                self._push(when + LATENCY, ("reply", src, eff.request_id, reply))
            elif kind == "reply":
                _, src, rid, reply = item
                if src in self.down:
                    continue
                node = self.nodes[src]
                node.handle_stream_reply(rid, reply, when)
                self._flush(node)
        else:
            raise AssertionError("event budget exhausted")
        self.now = end

    def view(self, name: str) -> dict[str, Any]:
        """name -> state (a Node's MemberState, or a Serf member's status)."""
        return {m.name: m.state if hasattr(m, "state") else m.status
                for m in self.node(name).members()}

    def events(self, name: str, kind: type) -> list[tuple[float, Any]]:
        return [(t, e) for t, e in self.effects[name] if isinstance(e, kind)]

    def live(self) -> list[Any]:
        def left(n: Any) -> bool:
            return bool(getattr(n, "has_left", False) or getattr(n, "state", "") in (
                "leaving", "left"))
        return [n for a, n in self.nodes.items() if a not in self.down and not left(n)]
