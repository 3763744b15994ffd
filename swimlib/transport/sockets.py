"""The real transport: a UDP socket and a TCP listener on one port."""

from __future__ import annotations

import socket
from collections import Counter

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketListener, SocketStream
from anyio.streams.stapled import MultiListener

from swimlib.errors import SwimError
from swimlib.transport.base import Address, StreamHandler
from swimlib.transport.datagrams import DatagramSocket

#: Attempts at a UDP and TCP pair on one free port when asked for port 0.
_BIND_ATTEMPTS = 20
#: anyio's listen backlog (the kernel caps it at net.core.somaxconn).
_BACKLOG = 65536


def _literal_family(host: str) -> int | None:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family
    return None


async def listen_tcp(host: str | None, port: int) -> MultiListener[SocketStream]:
    """``anyio.create_tcp_listener(local_host=host or None, local_port=port)``.

    For an address literal the socket is made here, as anyio makes it:
    anyio resolves even a literal on a resolver thread, which would start a
    thread pool in every agent (1-2 ms of its start-up) for nothing.
    """
    family = _literal_family(host) if host else None
    if family is None:
        return await anyio.create_tcp_listener(local_host=host or None, local_port=port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(_BACKLOG)
        return MultiListener([await SocketListener.from_socket(sock)])
    except BaseException:
        sock.close()
        raise


class SocketTransport:
    """UDP and TCP on the same port (memberlist's layout); create with :meth:`bind`."""

    def __init__(self, udp: DatagramSocket, listener: anyio.abc.Listener[SocketStream]) -> None:
        self._udp = udp
        self._listener = listener
        self.counters: Counter[str] = udp.counters

    @classmethod
    async def bind(cls, host: str, port: int) -> SocketTransport:
        """Bind both; with port 0, retry until UDP and TCP get the same port."""
        for _ in range(_BIND_ATTEMPTS):
            udp = await DatagramSocket.bind(host, port)
            try:
                chosen = udp.getsockname()[1]
                listener = await listen_tcp(host, chosen)
                return cls(udp, listener)
            except OSError:
                udp.close()
                if port != 0:
                    raise
        raise SwimError("could not bind UDP and TCP to the same port")

    @property
    def local_address(self) -> Address:
        return self._udp.getsockname()

    async def receive_datagrams(self) -> list[tuple[bytes, Address]]:
        return await self._udp.receive_batch()

    def take_unreachable(self) -> list[tuple[Address, bytes]]:
        return self._udp.take_unreachable()

    async def send_datagram(self, data: bytes, dest: Address) -> None:
        await self._udp.send(data, dest)

    async def connect(self, dest: Address) -> ByteStream:
        return await anyio.connect_tcp(dest[0], dest[1])

    async def serve_streams(self, handler: StreamHandler) -> None:
        async def serve_one(stream: SocketStream) -> None:
            peer = stream.extra(SocketAttribute.remote_address)
            host, port = (peer[0], peer[1]) if isinstance(peer, tuple) else (str(peer), 0)
            await handler(stream, (str(host), int(port)))

        await self._listener.serve(serve_one)

    async def aclose(self) -> None:
        self._udp.close()
        await self._listener.aclose()
