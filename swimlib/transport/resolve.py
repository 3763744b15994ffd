"""Host names to socket addresses, without a thread for an address literal.

anyio (as asyncio's ``loop.getaddrinfo``) always resolves in a worker
thread. For ``127.0.0.1`` that is a thread hand-off under the GIL for
nothing, and on a loaded machine it is slow: in a 50-agent join storm on 2
cores each join waited tens of milliseconds for the thread's turn. A literal
is parsed here (``AI_NUMERICHOST``); only a name goes to the resolver thread.
"""

from __future__ import annotations

import socket
from typing import Any

import anyio


async def resolve(host: str, port: int, *, family: int = 0,
                  kind: int = socket.SOCK_STREAM) -> list[tuple[Any, ...]]:
    """``getaddrinfo(host, port, family, kind)``; a literal answers at once.

    An ASCII host goes as bytes: a ``str`` makes the C resolver call load the
    IDNA codec, 1 ms of every agent's start for a literal that needs none."""
    try:
        return list(socket.getaddrinfo(_host_bytes(host), port, family, kind, 0,
                                       socket.AI_NUMERICHOST))
    except socket.gaierror:
        return list(await anyio.getaddrinfo(host, port, family=family, type=kind))


def _host_bytes(host: str) -> bytes | str:
    try:
        return host.encode("ascii")
    except UnicodeEncodeError:
        return host
