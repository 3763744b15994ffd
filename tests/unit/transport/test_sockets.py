"""listen_tcp: an address literal is bound here, a name through anyio's resolver."""

from __future__ import annotations

import socket

import anyio
import pytest
from anyio.abc import SocketAttribute

from swimlib.testing import free_port
from swimlib.transport.sockets import listen_tcp
from tests.backends import both_backends  # noqa: F401


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost",
                                  pytest.param("::1", marks=pytest.mark.skipif(
                                      not _has_ipv6_loopback(), reason="no IPv6 loopback"))])
async def test_listen_tcp_accepts_on_the_address_asked(host: str) -> None:
    port = free_port()
    multi = await listen_tcp(host, port)
    async with multi:
        bound = {lst.extra(SocketAttribute.local_address)[:2] for lst in multi.listeners}
        assert all(p == port for _, p in bound)
        addr = multi.listeners[0].extra(SocketAttribute.local_address)[0]

        async def accept_one() -> bytes:
            async with await multi.listeners[0].accept() as conn:
                return await conn.receive()

        async with anyio.create_task_group() as tg:
            result: list[bytes] = []

            async def run() -> None:
                result.append(await accept_one())

            tg.start_soon(run)
            async with await anyio.connect_tcp(addr, port) as client:
                await client.send(b"hello")
        assert result == [b"hello"]


async def test_a_port_in_use_is_an_os_error() -> None:
    port = free_port()
    async with await listen_tcp("127.0.0.1", port):
        with pytest.raises(OSError):
            await listen_tcp("127.0.0.1", port)
