"""Run swimlib's Serf layer (``swimlib.cluster.serf.Serf``) under the engine.

``--layer serf`` simulates what an agent runs: membership plus Serf's intents,
reaping and, above all, its reconnect loop, instead of the bare membership
node with the emulated reconnect of :mod:`simulations.reconnect`.

Serf turns its node's member events into its own; the metrics need the
originals, so the adapter asks Serf to hand them out too
(``report_node_events``) and puts them first in each batch.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from swimlib.config import Config
from swimlib.membership.rows import RowCache
from swimlib.membership.types import Address, Effect, Member, MemberState, NodeEvent

if TYPE_CHECKING:
    from swimlib.wire.crypto import Keyring


class SerfNode:
    """The engine's node API over one :class:`~swimlib.cluster.serf.Serf`."""

    def __init__(self, name: str, addr: str, port: int, config: Config, rng: random.Random,
                 now: float, row_cache: RowCache | None = None,
                 keyring: Keyring | None = None) -> None:
        from swimlib.cluster.serf import (
            Emit,
            KeyringChanged,
            LeaveFinished,
            QueryDone,
            QueryReply,
            Serf,
        )

        self._leave_type = LeaveFinished
        self._app_types = (Emit, QueryReply, QueryDone, KeyringChanged)
        self.name = name
        self.leave_finished = False
        #: Serf-level events emitted (member join/leave/failed/..., user events).
        self.app_events = 0
        #: When a list, every application effect (Emit, QueryReply, QueryDone) is kept
        #: in it too, in order, for tests that check what the application saw
        #: (tests/sim/test_hostile_state_machine.py). Off by default: scenarios run
        #: long and only count.
        self.app_log: list[Any] | None = None
        self.serf = Serf(name, addr, port, config, rng, now, row_cache=row_cache,
                         keyring=keyring, report_node_events=True)

    @property
    def incarnation(self) -> int:
        return self.serf.node.incarnation

    def handle_packet(self, data: bytes, source: Address, now: float) -> None:
        self.serf.handle_packet(data, source, now)

    def handle_unreachable(self, dest: Address, sent: bytes, now: float) -> None:
        self.serf.handle_unreachable(dest, sent, now)

    def handle_stream(self, data: bytes, source: Address, now: float) -> bytes | None:
        return self.serf.handle_stream(data, source, now)

    def handle_stream_reply(self, request_id: int, data: bytes | None, now: float) -> None:
        self.serf.handle_stream_reply(request_id, data, now)

    def tick(self, now: float) -> None:
        self.serf.tick(now)

    def next_deadline(self, skip_idle: bool = False) -> float | None:
        return self.serf.next_deadline(skip_idle)

    def join(self, addrs: Sequence[Address], now: float) -> object:
        return self.serf.join(addrs, now)

    def leave(self, now: float) -> None:
        self.serf.leave(now)

    def take_effects(self) -> list[Effect]:
        member_events: list[Effect] = []
        out: list[Effect] = []
        for e in self.serf.take_effects():
            if type(e) is NodeEvent:
                member_events.append(e)
            elif isinstance(e, self._leave_type):
                self.leave_finished = True
            elif isinstance(e, self._app_types):
                self.app_events += 1
                if self.app_log is not None:
                    self.app_log.append(e)
            else:
                out.append(e)
        return member_events + out

    def members(self) -> list[Member]:
        return self.serf.node.members()

    def state_of(self, name: str) -> MemberState | None:
        return self.serf.node.state_of(name)

    def alive_count(self) -> int:
        return self.serf.node.alive_count()


def serf_factory(keyrings: Callable[[str], Any] | None = None) -> Callable[..., Any]:
    r"""A factory of :class:`SerfNode`\ s sharing one row cache (one per simulated
    cluster), each with the keyring ``keyrings`` gives its name (None: plaintext)."""
    cache = RowCache()

    def make(name: str, addr: str, port: int, config: Config, rng: random.Random,
             now: float) -> Any:
        keyring = keyrings(name) if keyrings is not None else None
        return SerfNode(name, addr, port, config, rng, now, row_cache=cache, keyring=keyring)

    return make
