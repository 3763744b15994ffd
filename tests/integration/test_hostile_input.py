"""A live agent under a storm of random and mutated datagrams and malformed streams.

Real Serf 0.9.4 dies on a single such packet (a 3-byte Vsn, an empty compound
part). swimlib must stay up, keep a correct member list, and count every
drop by reason (visible in ``swimlib info``).
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from swimlib.wire import codec
from swimlib.wire.messages import Ack, Dead, IndirectPing, Nack, Ping, Suspect

from .procs import Procs, needs_serf, wait_for

pytestmark = [pytest.mark.slow]

DATAGRAMS = 100_000
STREAMS = 1_000


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    group = Procs(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


def seeds() -> list[bytes]:
    """Valid encodings that cannot add members, plus Serf's known crash inputs."""
    base = [
        codec.encode(Ping(1, "py1", "127.0.0.1", 9, "attacker")),
        codec.encode(Ack(7, b"payload")),
        codec.encode(Nack(9)),
        codec.encode(IndirectPing(3, "127.0.0.1", 9, "nobody", True)),
        codec.encode(Suspect(5, "ghost", "attacker")),
        codec.encode(Dead(5, "ghost", "attacker")),
        b"\x08\x03\x84\xa2CC\xc3\xa5LTime\x01\xa4Name\xa1x\xa7Payload\xa0",  # serf user event
        # Known crash inputs for Go memberlist 0.2.2:
        b"\x04\x86\xa4Addr\xa4\x7f\x00\x00\x01\xabIncarnation\x01\xa4Meta\xc0"
        b"\xa4Node\xa5ghost\xa4Port\xcd\x1f\x0a\xa3Vsn\xa3\x01\x05\x02",  # 3-byte Vsn
        b"\x07\x02\x00\x00\x00\x03abc",  # empty compound part
        b"\x07\x80" + b"\x00\x01" * 128 + b"x" * 128,  # 128 parts
        b"\x09\x82\xa4Algo\x00\xa3Buf\xa3\x00\x01\x02",  # LZW without end code
    ]
    base.append(codec.encode_compound(base[:4]))
    base.append(codec.add_crc(base[0]))
    base.append(codec.encode_compress(base[1]))
    return base


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        if op == 0 and buf:
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            del buf[rng.randrange(len(buf)):]
        elif op == 2:
            buf.insert(rng.randrange(len(buf) + 1), rng.randrange(256))
        else:
            buf[rng.randrange(len(buf) + 1):] = rng.randbytes(rng.randrange(8))
    return bytes(buf)


def hostile_datagrams(n: int, seed: int = 7) -> Iterator[bytes]:
    rng = random.Random(seed)
    base = seeds()
    for i in range(n):
        if i % 3 == 0:
            yield rng.randbytes(rng.randrange(1, 200))
        elif i % 3 == 1:
            yield nonempty(mutate(rng, rng.choice(base)))
        else:
            yield rng.choice(base)


def nonempty(data: bytes) -> bytes:
    return data or b"\x00"


def hostile_streams(n: int, seed: int = 8) -> Iterator[bytes]:
    rng = random.Random(seed)
    header = b"\x06\x83\xa4Join\xc2\xa5Nodes\xce\x7f\xff\xff\xff\xacUserStateLen\x00"
    kinds = [
        lambda: rng.randbytes(rng.randrange(1, 300)),
        lambda: header,  # claims 2^31 nodes
        lambda: b"\x0a" + struct.pack(">I", 0x7FFFFFFF) + b"x" * 10,  # huge encrypted frame
        lambda: b"\x06" + rng.randbytes(50),
        lambda: b"",  # connect and close
        lambda: mutate(rng, codec.encode(Ping(1, "py1"))),
    ]
    for _ in range(n):
        yield rng.choice(kinds)()


def statuses(procs: Procs, viewer, cli: str = "swimlib") -> dict[str, str]:
    return {name: m["status"] for name, m in procs.members(viewer, cli=cli).items()}


@needs_serf
def test_agent_survives_hostile_datagrams_and_streams(procs: Procs) -> None:
    go = procs.serf("go0")
    target = procs.swimlib("py1", join=go.gossip)
    other = procs.swimlib("py2", join=go.gossip)
    healthy = {"go0": "alive", "py1": "alive", "py2": "alive"}
    wait_for(lambda: statuses(procs, target) == healthy, 15, what="cluster formed")
    host, port = target.gossip.split(":")
    addr = (host, int(port))

    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for i, datagram in enumerate(hostile_datagrams(DATAGRAMS)):
            udp.sendto(datagram, addr)
            sent += 1
            if i % 200 == 199:
                time.sleep(0.005)  # pace, so the agent reads them rather than the kernel dropping
    assert sent == DATAGRAMS

    refused = 0
    for payload in hostile_streams(STREAMS):
        try:
            with socket.create_connection(addr, timeout=2) as tcp:
                tcp.settimeout(2)
                if payload:
                    tcp.sendall(payload)
                tcp.shutdown(socket.SHUT_WR)
                with contextlib.suppress(TimeoutError, OSError):
                    tcp.recv(4096)
        except OSError:
            refused += 1
    assert refused < STREAMS // 10

    assert target.alive(), target.output()[-3000:]
    # Membership is still correct everywhere, including on the real serf agent.
    wait_for(lambda: statuses(procs, target) == healthy, 20, what="target view healthy")
    wait_for(lambda: statuses(procs, other) == healthy, 20, what="other view healthy")
    wait_for(lambda: statuses(procs, go, cli="serf") == healthy, 20, what="serf view healthy")

    info = subprocess.run([sys.executable, "-m", "swimlib.cli", "info", "--rpc-addr",
                           target.rpc, "--format", "json"], capture_output=True, text=True,
                          timeout=30)
    drops = {k: int(v) for k, v in json.loads(info.stdout)["drops"].items()}
    print("drops by reason:", drops)
    datagram_drops = sum(v for k, v in drops.items() if not k.startswith("stream."))
    stream_drops = sum(v for k, v in drops.items() if k.startswith("stream."))
    # A third are pure noise and most mutations are invalid; valid seeds are not drops.
    assert datagram_drops >= DATAGRAMS // 2, drops
    assert stream_drops >= STREAMS // 2, drops
    for reason in ("msgpack", "compound", "vsn", "lzw"):
        assert drops.get(reason, 0) > 0, (reason, drops)
