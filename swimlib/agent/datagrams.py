"""The gossip UDP socket, read in batches.

trio's socket methods make every ``recvfrom`` and ``sendto`` a scheduling
point: a datagram costs a trip through trio's run loop even when the kernel
has it ready. An agent lives on datagrams (two a second at rest, dozens a
second per agent while a cluster churns, tens of thousands under a flood),
so this socket waits with :func:`trio.lowlevel.wait_readable` once and then
drains what the kernel holds, a bounded batch at a time; sends go straight
to the kernel and wait only if its buffer is full.
"""

from __future__ import annotations

import contextlib
import socket

import trio

from swimlib.membership.types import Address

#: Datagrams are read into buffers this large (memberlist: 64 KiB).
READ_SIZE = 65536
#: Receive buffer requested (memberlist: 2 MiB); bursts happen.
RCVBUF = 2 * 1024 * 1024
#: Datagrams taken per wake-up before other tasks get a turn.
BATCH = 64


class DatagramSocket:
    """A non-blocking UDP socket with batched receive; create with :meth:`bind`."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        #: Receive errors seen (ICMP errors surface on Linux as failed reads).
        self.recv_errors = 0

    @classmethod
    async def bind(cls, host: str, port: int) -> DatagramSocket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        infos = await trio.socket.getaddrinfo(host or "0.0.0.0", port, family, socket.SOCK_DGRAM)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            sock.bind(infos[0][4])
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def getsockname(self) -> Address:
        host, port = self._sock.getsockname()[:2]
        return host, port

    async def receive_batch(self, limit: int = BATCH) -> list[tuple[bytes, Address]]:
        """Wait for datagrams, then return every one ready, up to ``limit`` (at least one)."""
        batch: list[tuple[bytes, Address]] = []
        while not batch:
            await trio.lowlevel.wait_readable(self._sock)
            for _ in range(limit):
                try:
                    data, source = self._sock.recvfrom(READ_SIZE)
                except BlockingIOError:
                    break
                except OSError:
                    self.recv_errors += 1
                    continue
                batch.append((data, (source[0], source[1])))
        return batch

    async def send(self, data: bytes, dest: Address) -> None:
        """Send one datagram; OSError (unreachable, too large ...) propagates."""
        try:
            self._sock.sendto(data, dest)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(self._sock)
            self._sock.sendto(data, dest)

    def close(self) -> None:
        trio.lowlevel.notify_closing(self._sock)
        self._sock.close()
