"""swimlib.transport.datagrams: batched reads on a real loopback UDP socket, both backends."""

from __future__ import annotations

import socket
import sys

import anyio
import pytest

from swimlib.transport.datagrams import DatagramSocket
from tests.backends import both_backends  # noqa: F401


async def test_ready_datagrams_come_back_in_one_batch_in_order() -> None:
    udp = await DatagramSocket.bind("127.0.0.1", 0)
    try:
        dest = udp.getsockname()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind(("127.0.0.1", 0))
            for i in range(10):
                peer.sendto(bytes([i]) * (i + 1), dest)
            with anyio.fail_after(5):
                batch = await udp.receive_batch(limit=64)
            assert [data for data, _ in batch] == [bytes([i]) * (i + 1) for i in range(10)]
            assert {source for _, source in batch} == {peer.getsockname()}
            # A batch is bounded: the rest waits for the next call.
            for _ in range(5):
                peer.sendto(b"x", dest)
            with anyio.fail_after(5):
                first = await udp.receive_batch(limit=3)
                rest = await udp.receive_batch(limit=3)
            assert len(first) == 3 and len(rest) == 2
    finally:
        udp.close()


async def test_send_reaches_the_peer_and_waiting_is_cancellable() -> None:
    udp = await DatagramSocket.bind("127.0.0.1", 0)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind(("127.0.0.1", 0))
            peer.settimeout(5)
            await udp.send(b"hello", peer.getsockname())
            assert peer.recvfrom(100) == (b"hello", udp.getsockname())
        with anyio.move_on_after(0.05) as scope:
            await udp.receive_batch()
        assert scope.cancelled_caught
    finally:
        udp.close()


async def test_a_failed_send_raises_and_the_socket_keeps_working() -> None:
    # The runtime counts send errors (udp.send_error); the socket must survive them.
    udp = await DatagramSocket.bind("127.0.0.1", 0)
    try:
        with pytest.raises(OSError):
            await udp.send(b"x" * 70_000, udp.getsockname())  # over the UDP maximum
        await udp.send(b"small", udp.getsockname())
        with anyio.fail_after(5):
            batch = await udp.receive_batch()
        assert [data for data, _ in batch] == [b"small"]
    finally:
        udp.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="IP_RECVERR is Linux's")
async def test_port_unreachable_is_reported_with_our_datagram_and_sends_go_on() -> None:
    udp = await DatagramSocket.bind("127.0.0.1", 0)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
            gone.bind(("127.0.0.1", 0))
            closed = gone.getsockname()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind(("127.0.0.1", 0))
            peer.settimeout(5)
            await udp.send(b"ping-to-the-dead", closed)
            await anyio.sleep(0.05)  # the ICMP error is queued by now
            # The kernel reports it on this send and drops the datagram: sent again.
            await udp.send(b"to-a-live-peer", peer.getsockname())
            assert peer.recvfrom(100)[0] == b"to-a-live-peer"
        with anyio.fail_after(5):
            batch = await udp.receive_batch()
        assert batch == []
        assert udp.take_unreachable() == [(closed, b"ping-to-the-dead")]
        assert udp.counters["udp.send_retry"] == 1
        assert udp.take_unreachable() == []
    finally:
        udp.close()
