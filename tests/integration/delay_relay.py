"""A cable with a delay, where the kernel has no netem: copy Ethernet frames
between two interfaces, holding those from the first to the second for a
fixed time (what ``tc qdisc add dev eth0 root netem delay 20ms`` does to a
host's egress). Run as root in the namespace that holds both interfaces::

    python delay_relay.py IFACE_FROM_HOST IFACE_TO_LAN SECONDS [LIFETIME]

Frames are copied unchanged (ARP included), so the host behind it keeps its
address and MAC. Each is read and written with its virtio-net header
(``PACKET_VNET_HDR``): a veth hands over checksums not computed yet and
unsegmented offload batches, and the header tells the kernel to finish them
on the way out (without it, every UDP datagram arrived with a bad checksum).
The loop ends after LIFETIME seconds (default 900) if nobody stops it first.
"""

from __future__ import annotations

import contextlib
import heapq
import select
import socket
import sys
import time

_ETH_P_ALL = 0x0003
_PACKET_OUTGOING = 4
_SOL_PACKET = 263
_PACKET_VNET_HDR = 15


def _open(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
    sock.setsockopt(_SOL_PACKET, _PACKET_VNET_HDR, 1)
    sock.bind((ifname, 0))
    sock.setblocking(False)
    return sock


def relay(host_side: str, lan_side: str, delay: float, lifetime: float) -> int:
    """Copy frames both ways, delaying host -> LAN by ``delay``; returns frames relayed."""
    host, lan = _open(host_side), _open(lan_side)
    pending: list[tuple[float, int, bytes]] = []  # (due, seq, frame) for the LAN side
    seq = 0
    deadline = time.monotonic() + lifetime
    while time.monotonic() < deadline:
        wait = max(0.0, pending[0][0] - time.monotonic()) if pending else 0.5
        readable, _, _ = select.select([host, lan], [], [], wait)
        for sock in readable:
            for _ in range(256):  # drain what is there, bounded
                try:
                    frame, addr = sock.recvfrom(65535)
                except BlockingIOError:
                    break
                if addr[2] == _PACKET_OUTGOING:
                    continue  # our own copy of what we sent
                if sock is host:
                    heapq.heappush(pending, (time.monotonic() + delay, seq, frame))
                    seq += 1
                else:
                    _send(host, frame)
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            _send(lan, heapq.heappop(pending)[2])
    return seq


def _send(sock: socket.socket, frame: bytes) -> None:
    with contextlib.suppress(OSError):  # a full queue drops the frame, as a busy link would
        sock.send(frame)


if __name__ == "__main__":
    lifetime = float(sys.argv[4]) if len(sys.argv) > 4 else 900.0
    print(f"relayed {relay(sys.argv[1], sys.argv[2], float(sys.argv[3]), lifetime)}",
          flush=True)
