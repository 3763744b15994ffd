"""Ports for agents that tests, demos and benchmarks start on loopback.

Not imported by the agent itself.

Why ports are not taken from the kernel with ``bind(port 0)``: such a port
comes from the ephemeral range, and between releasing it and the agent
binding it, any outgoing connection on the machine (a serf push-pull, an RPC
client) may take it as its source port: the agent then dies with "address
already in use". Ports handed out here lie below the ephemeral range, are
never handed out twice by one process, and start at a per-process offset so
that concurrent test processes rarely meet.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator

__all__ = ["free_port"]

_DEFAULT_EPHEMERAL = (32768, 60999)
_LOWEST = 10000


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            low, high = (int(x) for x in f.read().split())
        return low, high
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL


def _candidates() -> Iterator[int]:
    """Every port outside the ephemeral range, once each, from a per-process offset."""
    low, high = _ephemeral_range()
    pool = [p for p in range(_LOWEST, 65536) if not low <= p <= high]
    start = (os.getpid() * 7919) % len(pool)
    return itertools.cycle(pool[start:] + pool[:start])


_NEXT = _candidates()


def _bindable(host: str, port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port that nothing holds for TCP or UDP right now and that no outgoing
    connection will pick as its source port.

    Checked by binding without SO_REUSEADDR, so a port another process holds
    with SO_REUSEPORT (HAProxy does) is not mistaken for free.
    """
    for _ in range(1000):
        port = next(_NEXT)
        if _bindable(host, port):
            return port
    raise RuntimeError("no free port below the ephemeral range")
