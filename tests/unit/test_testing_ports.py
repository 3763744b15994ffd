"""swimlib.testing.free_port: ports that outgoing connections cannot steal."""

import socket

from swimlib.testing.ports import _bindable, _ephemeral_range, free_port


def test_ports_are_distinct_bindable_and_outside_the_ephemeral_range() -> None:
    low, high = _ephemeral_range()
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == 200
    assert all(not low <= p <= high and p >= 1024 for p in ports)
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind(("127.0.0.1", ports[0]))


def test_a_port_held_for_udp_only_is_not_free() -> None:
    port = free_port()
    assert _bindable("127.0.0.1", port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", port))
        assert not _bindable("127.0.0.1", port)
