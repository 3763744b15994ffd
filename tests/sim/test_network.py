"""Network model: loss only for datagrams, directed partitions, heal, counters."""

from __future__ import annotations

import random

import pytest

from simulations.network import Network


def test_loss_rate_is_close_to_requested_and_seeded() -> None:
    def drops(seed: int) -> int:
        net = Network(2, random.Random(seed), 0.001, loss=0.1)
        return sum(net.datagram(0, 1, 10) is None for _ in range(20_000))

    assert drops(1) == drops(1)
    assert 1_800 < drops(1) < 2_200


def test_no_loss_means_every_datagram_arrives_with_jittered_latency() -> None:
    net = Network(2, random.Random(1), 0.010)
    delays = [net.datagram(0, 1, 5) for _ in range(1000)]
    assert all(d is not None and 0.008 <= d <= 0.012 for d in delays)
    assert net.msgs_sent[0] == 1000 and net.bytes_sent[0] == 5000 and net.msgs_recv[1] == 1000


def test_partitions_are_directed_stack_and_heal() -> None:
    net = Network(4, random.Random(1), 0.001)
    one_way = net.block([0], [1])
    assert not net.reachable(0, 1) and net.reachable(1, 0)
    both = net.partition([2], [3])
    assert not net.reachable(2, 3) and not net.reachable(3, 2)
    assert net.datagram(0, 1, 1) is None and net.dropped_partition == 1
    net.heal([one_way])
    assert net.reachable(0, 1) and not net.reachable(2, 3)
    net.heal(both)
    assert not net.partitioned


def test_grow_extends_existing_rules() -> None:
    net = Network(2, random.Random(1), 0.001)
    net.block([0], [1])
    net.grow(5)
    assert net.reachable(0, 4) and len(net.msgs_sent) == 5


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        Network(1, random.Random(1), 0.001, loss=1.0)
    with pytest.raises(ValueError):
        Network(1, random.Random(1), -1.0)


def test_streams_are_never_lost_but_loss_costs_retransmission_timeouts() -> None:
    clean = Network(2, random.Random(1), 0.001)
    assert all(0.0024 <= clean.stream_request_delay() <= 0.0036 for _ in range(100))
    lossy = Network(2, random.Random(1), 0.001, loss=0.3)
    delays = [lossy.stream_request_delay() for _ in range(2000)]
    slow = sum(d >= 1.0 for d in delays) / len(delays)  # the SYN was lost at least once
    assert 0.25 < slow < 0.35
    assert min(delays) < 0.004
    assert all(lossy.stream_reply_delay() < 100 for _ in range(100))
