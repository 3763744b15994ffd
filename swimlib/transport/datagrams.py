"""The gossip UDP socket, read in batches.

An async framework's socket methods make every ``recvfrom`` and ``sendto`` a
scheduling point: a datagram costs a trip through the event loop even when
the kernel has it ready. An agent lives on datagrams (two a second at rest, dozens a
second per agent while a cluster churns, tens of thousands under a flood),
so this socket waits with :func:`anyio.wait_readable` once and then
drains what the kernel holds, a bounded batch at a time; sends go straight
to the kernel and wait only if its buffer is full.

On Linux it also asks for ICMP errors (``IP_RECVERR``): when a datagram of
ours reaches a host where nothing listens on the port, the kernel queues the
"port unreachable" with our datagram, and :meth:`take_unreachable` hands them
to the protocol, which stops waiting for an agent that is gone (see
``Node.handle_unreachable``). With ``IP_RECVERR`` the kernel also reports such
an error once on the next send, whichever its destination, and drops that
send: :meth:`send` sends again.

It runs under asyncio (a selector loop: the default on Unix, and uvloop) and
trio alike.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
from collections import Counter

import anyio

from swimlib.membership.types import Address
from swimlib.transport.resolve import resolve

#: Datagrams are read into buffers this large (memberlist: 64 KiB).
READ_SIZE = 65536
#: Receive buffer requested (memberlist: 2 MiB); bursts happen.
RCVBUF = 2 * 1024 * 1024
#: Datagrams taken per wake-up before other tasks get a turn.
BATCH = 64
#: ICMP errors taken per wake-up.
ERROR_BATCH = 64

# Linux <linux/in.h>, <linux/in6.h>, <linux/errqueue.h>; Python 3.11 names none but MSG_ERRQUEUE.
_LINUX = sys.platform.startswith("linux")
_IP_RECVERR, _IPV6_RECVERR = 11, 25
_MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
_SOCK_EXTENDED_ERR = struct.Struct("=IBBBBII")  # errno, origin, type, code, pad, info, data
#: (origin, ICMP type, code) of "port unreachable", for IPv4 and IPv6.
_PORT_UNREACHABLE = {(2, 3, 3), (3, 1, 4)}


class DatagramSocket:
    """A non-blocking UDP socket with batched receive; create with :meth:`bind`."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        #: ``udp.recv_error``: receive errors (an ICMP error also fails one read, once);
        #: ``udp.send_retry``: sends refused for an earlier datagram's ICMP error (resent).
        self.counters: Counter[str] = Counter()
        self._unreachable: list[tuple[Address, bytes]] = []
        self._errqueue = _LINUX and self._ask_for_icmp_errors(sock)

    @staticmethod
    def _ask_for_icmp_errors(sock: socket.socket) -> bool:
        v6 = sock.family == socket.AF_INET6
        level, option = (socket.IPPROTO_IPV6, _IPV6_RECVERR) if v6 else (socket.IPPROTO_IP,
                                                                         _IP_RECVERR)
        try:
            sock.setsockopt(level, option, 1)
        except OSError:
            return False
        return True

    @classmethod
    async def bind(cls, host: str, port: int) -> DatagramSocket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        infos = await resolve(host or "0.0.0.0", port, family=family, kind=socket.SOCK_DGRAM)
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
        while not batch and not self._unreachable:
            await anyio.wait_readable(self._sock)
            failed = False
            for _ in range(limit):
                try:
                    data, source = self._sock.recvfrom(READ_SIZE)
                except BlockingIOError:
                    break
                except OSError:
                    self.counters["udp.recv_error"] += 1
                    failed = True
                    continue
                batch.append((data, (source[0], source[1])))
            # Woken with nothing to read, or told of an error: ICMP errors wait in
            # the error queue (and keep the socket "readable" until taken).
            if self._errqueue and (failed or not batch):
                self._read_errors()
        return batch

    def take_unreachable(self) -> list[tuple[Address, bytes]]:
        """(destination, our datagram) pairs that came back "port unreachable"."""
        out, self._unreachable = self._unreachable, []
        return out

    def _read_errors(self) -> None:
        for _ in range(ERROR_BATCH):
            try:
                sent, ancillary, _flags, dest = self._sock.recvmsg(READ_SIZE, 512, _MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.counters["udp.recv_error"] += 1
                return
            for _level, _kind, raw in ancillary:
                if len(raw) < _SOCK_EXTENDED_ERR.size:
                    continue
                _errno, origin, icmp_type, code, *_ = _SOCK_EXTENDED_ERR.unpack_from(raw)
                if (origin, icmp_type, code) in _PORT_UNREACHABLE and dest:
                    self._unreachable.append(((dest[0], dest[1]), sent))

    async def send(self, data: bytes, dest: Address) -> None:
        """Send one datagram; OSError (no route, too large ...) propagates."""
        for _ in range(3):
            try:
                self._sock.sendto(data, dest)
                return
            except ConnectionRefusedError:
                # An earlier datagram's "port unreachable", reported here once; ours
                # was not sent. The details wait in the error queue.
                self.counters["udp.send_retry"] += 1
            except BlockingIOError:
                await anyio.wait_writable(self._sock)
        self._sock.sendto(data, dest)

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            anyio.notify_closing(self._sock)
        self._sock.close()
