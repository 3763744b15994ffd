"""Encrypted clusters in the simulator: the core seals and opens its own bytes."""

from __future__ import annotations

import random
from typing import Any

import pytest

from simulations.scenarios import SIM_KEY, Options, run_scenario
from swimlib.config import Config
from swimlib.membership.node import Node
from swimlib.membership.types import OpenStream, SendPacket
from swimlib.wire import codec
from swimlib.wire.crypto import Keyring
from swimlib.wire.envelope import ENCRYPT_OVERHEAD


def run(**kw: Any) -> dict[str, Any]:
    return run_scenario(Options(nodes=16, seed=5, encrypt=True, **kw))


@pytest.mark.parametrize("layer", ["membership", "serf"])
@pytest.mark.parametrize("scenario", ["crash", "churn"])
def test_an_encrypted_cluster_replays_and_converges(scenario: str, layer: str) -> None:
    first = run(scenario=scenario, layer=layer)
    again = run(scenario=scenario, layer=layer)
    assert first["converged"]
    assert first["false_positives"] == 0
    for field in ("trace_sha256", "messages", "bytes", "events"):
        assert first[field] == again[field], field
    plain = run_scenario(Options(scenario=scenario, layer=layer, nodes=16, seed=5))
    assert first["bytes"] > plain["bytes"]  # every datagram and stream carries the seal


def node(name: str, port: int, keyring: Keyring | None) -> Node:
    return Node(name, "127.0.0.1", port, Config.lan(), random.Random(port), 0.0,
                keyring=keyring)


def test_effects_carry_sealed_bytes_that_only_the_key_opens() -> None:
    a = node("a", 7001, Keyring([SIM_KEY]))
    b = node("b", 7002, Keyring([SIM_KEY]))
    a.join([("127.0.0.1", 7002)], 0.0)
    (stream,) = [e for e in a.take_effects() if isinstance(e, OpenStream)]
    reply = b.handle_stream(stream.data, ("127.0.0.1", 40000), 0.1)
    assert reply is not None
    a.handle_stream_reply(stream.request_id, reply, 0.2)
    assert {m.name for m in a.members()} == {"a", "b"}
    a.tick(5.0)
    packets = [e for e in a.take_effects() if isinstance(e, SendPacket)]
    assert packets
    for p in packets:
        sealed = codec.decode_packet(a.envelope.open_packet(p.data))
        try:
            garbled = codec.decode_packet(p.data)
        except codec.DecodeError:
            continue
        # About 1% of ciphertexts read as an indirect ping with default fields (the
        # version byte 1 is its type; an empty map is valid, as in Go): never as ours.
        assert garbled != sealed
    b.handle_packet(packets[0].data, ("127.0.0.1", 7001), 5.1)
    assert not any(k.startswith("drop.") for k in b.stats)
    plain = node("p", 7003, None)
    plain.handle_packet(packets[0].data, ("127.0.0.1", 7001), 5.1)
    assert sum(v for k, v in plain.stats.items() if k.startswith("drop.")) == 1
    stranger = node("s", 7004, Keyring([bytes(32)]))
    stranger.handle_packet(packets[0].data, ("127.0.0.1", 7001), 5.1)
    assert stranger.stats["drop.decrypt"] == 1
    assert stranger.handle_stream(stream.data, ("127.0.0.1", 40001), 5.2) is None


def test_plaintext_is_refused_when_encrypting() -> None:
    plain = node("p", 7005, None)
    plain.join([("127.0.0.1", 7006)], 0.0)
    (stream,) = [e for e in plain.take_effects() if isinstance(e, OpenStream)]
    secure = node("s", 7006, Keyring([SIM_KEY]))
    assert secure.handle_stream(stream.data, ("127.0.0.1", 40002), 0.1) is None
    assert secure.stats["drop.stream.plaintext"] == 1


def test_the_gossip_budget_leaves_room_for_the_seal() -> None:
    config = Config.lan()
    a = node("a", 7007, Keyring([SIM_KEY]))
    for i in range(200):  # far more news than one datagram holds
        sealed = a.envelope.seal_packet(codec.encode(codec_alive(f"m{i:03d}", 8000 + i)),
                                        crc=False)
        a.handle_packet(sealed, ("127.0.0.1", 8000 + i), 0.0)
    a.tick(10.0)
    sizes = [len(e.data) for e in a.take_effects() if isinstance(e, SendPacket)]
    assert sizes and max(sizes) <= config.udp_buffer_size
    assert max(sizes) > config.udp_buffer_size - 2 * ENCRYPT_OVERHEAD - 200


def codec_alive(name: str, port: int) -> Any:
    from swimlib.wire.messages import DEFAULT_VSN, Alive

    return Alive(1, name, "127.0.0.2", port, b"", DEFAULT_VSN)
