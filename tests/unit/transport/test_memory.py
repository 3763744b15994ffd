"""swimlib.transport.memory: the seeded in-memory network, on virtual time."""

from __future__ import annotations

import anyio
import pytest

from swimlib.transport.base import Address
from swimlib.transport.memory import MemoryNetwork, memory_stream_pair
from tests.backends import virtual_time  # noqa: F401


async def test_datagrams_arrive_in_order_after_the_latency() -> None:
    network = MemoryNetwork(seed=1, latency=0.25)
    a, b = network.open_transport("10.0.0.1"), network.open_transport("10.0.0.2")
    start = anyio.current_time()
    for i in range(3):
        await a.send_datagram(bytes([i]), b.local_address)
    got = await b.receive_datagrams()
    assert anyio.current_time() - start == pytest.approx(0.25)
    assert got == [(bytes([i]), ("10.0.0.1", 7946)) for i in range(3)]
    assert network.counters["delivered"] == 3


async def test_a_closed_address_answers_port_unreachable_and_refuses_streams() -> None:
    network = MemoryNetwork(seed=2)
    a, gone = network.open_transport("10.0.0.1"), network.open_transport("10.0.0.9")
    await gone.aclose()
    await a.send_datagram(b"ping", gone.local_address)
    assert await a.receive_datagrams() == []  # woken for the error only
    assert a.take_unreachable() == [(("10.0.0.9", 7946), b"ping")]
    with pytest.raises(ConnectionRefusedError):
        await a.connect(gone.local_address)


async def test_loss_is_seeded_and_partitions_drop_everything_across() -> None:
    def losses(seed: int) -> int:
        network = MemoryNetwork(seed=seed, loss=0.3)
        a, b = network.open_transport("10.0.0.1"), network.open_transport("10.0.0.2")
        for _ in range(200):
            network._send(a, b"x", b.local_address)
        return network.counters["lost"]

    assert losses(3) == losses(3) and 30 < losses(3) < 90
    network = MemoryNetwork(seed=4)
    a, b = network.open_transport("10.0.0.1"), network.open_transport("10.0.0.2")
    network.partition(["10.0.0.1"], ["10.0.0.2"])
    await a.send_datagram(b"x", b.local_address)
    with anyio.move_on_after(5) as scope:
        await a.connect(b.local_address)  # a lost SYN: only the caller's timeout ends it
    assert scope.cancelled_caught and network.counters["partitioned"] == 1
    network.heal()
    await a.send_datagram(b"y", b.local_address)
    assert await b.receive_datagrams() == [(b"y", ("10.0.0.1", 7946))]


async def test_a_stream_exchange_reaches_the_serving_side_with_the_peer_address() -> None:
    network = MemoryNetwork(seed=5)
    client, server = network.open_transport("10.0.0.1"), network.open_transport("10.0.0.2")
    peers: list[Address] = []

    async def echo(stream: anyio.abc.ByteStream, peer: Address) -> None:
        peers.append(peer)
        async with stream:
            await stream.send((await stream.receive()).upper())

    # Connected before anyone serves: it waits in the backlog, as with a bound listener.
    stream = await client.connect(server.local_address)
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(server.serve_streams, echo)
        await stream.send(b"hello")
        assert await stream.receive() == b"HELLO"
        with pytest.raises(anyio.EndOfStream):
            await stream.receive()
        await stream.aclose()
        task_group.cancel_scope.cancel()
    assert peers[0][0] == "10.0.0.1" and peers[0][1] >= 40000


async def test_stream_pairs_split_reads_at_max_bytes() -> None:
    left, right = memory_stream_pair()
    await left.send(b"abcdef")
    assert await right.receive(4) == b"abcd"
    assert await right.receive(4) == b"ef"
    await left.send_eof()
    with pytest.raises(anyio.EndOfStream):
        await right.receive()


async def test_ports_are_assigned_and_addresses_are_exclusive() -> None:
    network = MemoryNetwork()
    first = network.open_transport("10.0.0.1", 0)
    second = network.open_transport("10.0.0.1", 0)
    assert first.local_address != second.local_address
    with pytest.raises(OSError, match="in use"):
        network.open_transport(*first.local_address)
    with pytest.raises(ValueError):
        MemoryNetwork(loss=1.5)
