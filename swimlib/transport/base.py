"""What the agent's runtime needs from a network: the transport seam.

memberlist's layout is one UDP socket and one TCP listener on the same port:
datagrams for probes and gossip, one short TCP exchange per push-pull or
join. The runtime asks no more of a network than this :class:`Transport`,
so the same agent runs on real sockets
(:class:`~swimlib.transport.sockets.SocketTransport`) and on a seeded
in-memory network under a virtual clock
(:class:`~swimlib.transport.memory.MemoryNetwork`), where its own tests run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from anyio.abc import ByteStream

Address = tuple[str, int]

#: Serves one inbound stream: ``handler(stream, peer_address)``.
StreamHandler = Callable[[ByteStream, Address], Coroutine[Any, Any, None]]


class Transport(Protocol):
    """Datagrams and streams at one address (memberlist: UDP and TCP on one port)."""

    #: Transport-level counters merged into ``Agent.statistics()`` (``udp.send_retry`` ...).
    counters: Counter[str]

    @property
    def local_address(self) -> Address:
        """The address we are bound to (the port is the one peers reach us at)."""

    async def receive_datagrams(self) -> list[tuple[bytes, Address]]:
        """Wait, then return the datagrams ready, in order; empty when only
        :meth:`take_unreachable` has news."""

    def take_unreachable(self) -> list[tuple[Address, bytes]]:
        """(destination, our datagram) pairs that met a closed port since the last call."""

    async def send_datagram(self, data: bytes, dest: Address) -> None:
        """Send one datagram; an OSError says it could not leave."""

    async def connect(self, dest: Address) -> ByteStream:
        """Open a stream to ``dest``; an OSError says no one answered."""

    async def serve_streams(self, handler: StreamHandler) -> None:
        """Run ``handler`` for every inbound stream, each in its own task, until cancelled."""

    async def aclose(self) -> None:
        """Stop receiving; peers see a closed port from now on."""
