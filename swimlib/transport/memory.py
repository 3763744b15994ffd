"""A seeded in-memory network, for running real agents on virtual time.

Every agent gets a :class:`MemoryTransport` from one :class:`MemoryNetwork`;
datagrams and streams move between them through memory channels, with a
seeded chance of loss, a fixed latency, and partitions. Nothing touches the
operating system, so under trio's ``MockClock(autojump_threshold=0)`` a
minute of cluster life runs in a fraction of a second, identically every
time: this is where the runtime's own tests live (tests/unit/agent/).

What it models is what the runtime reacts to: a datagram to a closed
address comes back "port unreachable" (the kernel's ICMP error on loopback,
which the socket transport reports too); a stream to a closed address is
refused; across a partition, datagrams vanish and a stream never connects
(the caller's timeout ends it, as a lost SYN would).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable

import anyio
from anyio.abc import ByteStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from swimlib.transport.base import Address, StreamHandler

#: Datagrams queued at a receiver before more are dropped (a socket buffer).
INBOX_SIZE = 4096
#: Datagrams handed over per receive, like the socket transport's batch.
BATCH = 64
#: Connections waiting to be served before more are refused (a listen backlog).
BACKLOG = 128
#: Source ports of outbound streams start here (an ephemeral range of our own).
_FIRST_STREAM_PORT = 40000

# Inbox items: (deliver_at, data, source); data None only wakes the receiver.
_Item = tuple[float, bytes | None, Address]


class MemoryNetwork:
    """Transports that reach each other in memory; ``seed`` fixes every loss draw."""

    def __init__(self, seed: int = 0, *, loss: float = 0.0, latency: float = 0.0) -> None:
        if not 0.0 <= loss <= 1.0 or latency < 0.0:
            raise ValueError("loss must be in [0, 1] and latency at least 0")
        self.loss = loss
        self.latency = latency
        self._rng = random.Random(seed)
        self._hosts: dict[Address, MemoryTransport] = {}
        self._groups: dict[str, int] = {}
        self._next_port: dict[str, int] = {}
        #: ``delivered``, ``lost``, ``unreachable``, ``partitioned``, ``overflow``, ``streams``.
        self.counters: Counter[str] = Counter()

    def open_transport(self, host: str, port: int = 7946) -> MemoryTransport:
        """A transport at ``host:port`` (port 0: the next free one from 7946)."""
        if port == 0:
            port = self._next_port.get(host, 7946)
            while (host, port) in self._hosts:
                port += 1
            self._next_port[host] = port + 1
        if (host, port) in self._hosts:
            raise OSError(f"address in use: {host}:{port}")
        transport = MemoryTransport(self, (host, port))
        self._hosts[(host, port)] = transport
        return transport

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut the network between groups of hosts (by IP); hosts in no group see all."""
        self._groups = {host: index for index, group in enumerate(groups) for host in group}

    def heal(self) -> None:
        self._groups = {}

    def _cut(self, a: str, b: str) -> bool:
        ga, gb = self._groups.get(a), self._groups.get(b)
        return ga is not None and gb is not None and ga != gb

    def _close(self, address: Address) -> None:
        self._hosts.pop(address, None)

    def _send(self, source: MemoryTransport, data: bytes, dest: Address) -> None:
        if self._cut(source.local_address[0], dest[0]):
            self.counters["partitioned"] += 1
            return
        target = self._hosts.get(dest)
        if target is None:
            self.counters["unreachable"] += 1
            source._unreachable_from(dest, data)
            return
        if self.loss and self._rng.random() < self.loss:
            self.counters["lost"] += 1
            return
        if target._deliver((anyio.current_time() + self.latency, data, source.local_address)):
            self.counters["delivered"] += 1
        else:
            self.counters["overflow"] += 1

    async def _connect(self, source: MemoryTransport, dest: Address) -> ByteStream:
        if self._cut(source.local_address[0], dest[0]):
            await anyio.sleep_forever()  # a lost SYN: the caller's timeout ends it
        target = self._hosts.get(dest)
        if target is None:
            raise ConnectionRefusedError(f"connection refused: {dest[0]}:{dest[1]}")
        if self.latency:
            await anyio.sleep(self.latency)
        ours, theirs = memory_stream_pair()
        peer = (source.local_address[0], source._stream_port())
        try:
            target._accept.send_nowait((theirs, peer))
        except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise ConnectionRefusedError(f"connection refused: {dest[0]}:{dest[1]}") from None
        self.counters["streams"] += 1
        return ours


class MemoryTransport:
    """One agent's end of a :class:`MemoryNetwork`."""

    def __init__(self, network: MemoryNetwork, address: Address) -> None:
        self._network = network
        self._address = address
        self.counters: Counter[str] = Counter()
        self._inbox_send, self._inbox = anyio.create_memory_object_stream[_Item](INBOX_SIZE)
        self._held: _Item | None = None
        self._unreachable: list[tuple[Address, bytes]] = []
        # The backlog of a bound listener: connections wait here until served.
        self._accept, self._backlog = anyio.create_memory_object_stream[
            tuple[ByteStream, Address]](BACKLOG)
        self._last_stream_port = _FIRST_STREAM_PORT

    @property
    def local_address(self) -> Address:
        return self._address

    async def receive_datagrams(self) -> list[tuple[bytes, Address]]:
        first, self._held = self._held or await self._inbox.receive(), None
        if first[0] > anyio.current_time():  # one fixed latency: the queue stays in order
            await anyio.sleep(first[0] - anyio.current_time())
        items = [first]
        while len(items) < BATCH:
            try:
                item = self._inbox.receive_nowait()
            except anyio.WouldBlock:
                break
            if item[0] > anyio.current_time():
                self._held = item  # not due yet: first of the next call
                break
            items.append(item)
        return [(data, source) for _, data, source in items if data is not None]

    def take_unreachable(self) -> list[tuple[Address, bytes]]:
        out, self._unreachable = self._unreachable, []
        return out

    async def send_datagram(self, data: bytes, dest: Address) -> None:
        await anyio.lowlevel.checkpoint()
        self._network._send(self, bytes(data), dest)

    async def connect(self, dest: Address) -> ByteStream:
        return await self._network._connect(self, dest)

    async def serve_streams(self, handler: StreamHandler) -> None:
        async with anyio.create_task_group() as tg:
            async for stream, peer in self._backlog:
                tg.start_soon(handler, stream, peer)

    async def aclose(self) -> None:
        self._network._close(self._address)
        self._inbox_send.close()
        self._accept.close()
        self._backlog.close()
        await anyio.lowlevel.checkpoint()

    def _deliver(self, item: _Item) -> bool:
        try:
            self._inbox_send.send_nowait(item)
        except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False
        return True

    def _unreachable_from(self, dest: Address, data: bytes) -> None:
        self._unreachable.append((dest, data))
        self._deliver((0.0, None, dest))  # wake the receiver to take it

    def _stream_port(self) -> int:
        self._last_stream_port += 1
        if self._last_stream_port > 65535:
            self._last_stream_port = _FIRST_STREAM_PORT
        return self._last_stream_port


class MemoryByteStream(ByteStream):
    """One end of an in-memory byte stream (see :func:`memory_stream_pair`)."""

    def __init__(self, send: MemoryObjectSendStream[bytes],
                 receive: MemoryObjectReceiveStream[bytes]) -> None:
        self._send = send
        self._receive = receive
        self._pending = b""

    async def send(self, item: bytes) -> None:
        try:
            await self._send.send(bytes(item))
        except anyio.ClosedResourceError:
            raise anyio.BrokenResourceError("stream closed") from None

    async def send_eof(self) -> None:
        await self._send.aclose()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self._pending:
            self._pending = await self._receive.receive()  # EndOfStream when closed
        chunk, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return chunk

    async def aclose(self) -> None:
        self._send.close()
        self._receive.close()
        await anyio.lowlevel.checkpoint()


def memory_stream_pair() -> tuple[MemoryByteStream, MemoryByteStream]:
    """Two connected ends: what one sends, the other receives."""
    a_send, b_receive = anyio.create_memory_object_stream[bytes](math.inf)
    b_send, a_receive = anyio.create_memory_object_stream[bytes](math.inf)
    return MemoryByteStream(a_send, a_receive), MemoryByteStream(b_send, b_receive)
