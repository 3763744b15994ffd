"""The contract between a sans-IO core and whatever drives it.

A core -- the membership :class:`~swimlib.membership.node.Node`, or the Serf
layer :class:`~swimlib.cluster.serf.Serf` over it -- is a state machine. Its
driver hands it what arrives (datagrams and streams, exactly as they came
off the wire: the core opens its own envelope), lets time pass with
:meth:`Core.tick`, and carries out what :meth:`Core.take_effects` returns
(send these bytes, open this stream, deliver this event), waking again at
:meth:`Core.next_deadline`. Three drivers exist: the agent's runtime (real
sockets, real time), the simulator (a virtual network and clock, thousands
of cores in one process) and the unit tests' in-memory harness. None calls
anything else on the protocol path, and the core never calls back into them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

Address = tuple[str, int]


class Core(Protocol):
    """What every driver may call (see the module docstring)."""

    name: str

    def handle_packet(self, data: bytes, source: Address, now: float) -> None:
        """One datagram from ``source``."""

    def handle_unreachable(self, dest: Address, sent: bytes, now: float) -> None:
        """Our datagram ``sent`` to ``dest`` met a closed port (ICMP)."""

    def handle_stream(self, data: bytes, source: Address, now: float) -> bytes | None:
        """One inbound stream message; the reply to send, or None to close."""

    def handle_stream_reply(self, request_id: int, data: bytes | None, now: float) -> None:
        """The reply to a stream the core asked to open (None: it failed)."""

    def tick(self, now: float) -> None:
        """Run every timer due by ``now``."""

    def next_deadline(self, skip_idle: bool = False) -> float | None:
        """When :meth:`tick` next has work (None: nothing scheduled)."""

    def take_effects(self) -> Sequence[object]:
        """What the core wants done since the last call, in order."""

    def join(self, addrs: Sequence[Address], now: float) -> int:
        """Start joining through ``addrs``; a JoinFinished with this id follows."""

    def leave(self, now: float) -> None:
        """Leave gracefully."""
