"""Codec benchmark: encode/decode operations per second for the wire layer.

``run(argv)`` measures ping, ack, alive, a compound of gossip, a 100-node
push-pull (with Serf user state), LZW on 10 KB and AES-GCM seal/open of a
full 1400-byte datagram; prints a table and returns a JSON-serialisable dict.
Options: ``--duration SECONDS`` per measurement (default 0.3), ``--case NAME``
(repeatable) to run a subset.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from typing import Any

from swimlib.wire import codec, lzw, serf
from swimlib.wire.crypto import Keyring
from swimlib.wire.messages import (
    Ack,
    Alive,
    Message,
    Ping,
    PushNodeState,
    PushPull,
    Suspect,
)


def _ops_per_second(fn: Callable[[], object], duration: float) -> float:
    """Calls per second, timed in batches so the clock is not the bottleneck."""
    fn()  # warm caches (lru_cache'd addresses, AESGCM objects)
    batch = 1
    calls = 0
    start = time.perf_counter()
    while True:
        for _ in range(batch):
            fn()
        calls += batch
        elapsed = time.perf_counter() - start
        if elapsed >= duration:
            return calls / elapsed
        batch = min(batch * 2, 4096)


def _cases() -> dict[str, tuple[int, Callable[[], object], Callable[[], object]]]:
    """name -> (wire size, encode, decode)."""
    tags = serf.encode_tags({"role": "web", "dc": "eu-1"})
    ping = Ping(42, "node-17", "10.0.0.1", 7946, "node-3")
    ack = Ack(42, b"\x01" + bytes(120))
    alive = Alive(7, "node-17", "10.0.0.17", 7946, tags)
    ping_b, ack_b, alive_b = codec.encode(ping), codec.encode(ack), codec.encode(alive)

    gossip: list[Message] = [Alive(i, f"node-{i}", f"10.0.0.{i}", 7946, tags)
                             for i in range(1, 9)]
    gossip += [Suspect(i, f"node-{i}", "node-1") for i in range(9, 13)]

    def encode_compound() -> bytes:
        parts = [codec.encode(ping)] + [codec.encode(m) for m in gossip]
        return codec.encode_compound(parts)

    compound_b = encode_compound()

    nodes = tuple(PushNodeState(f"node-{i}", f"10.0.{i // 250}.{i % 250 + 1}", 7946, tags, i, 0)
                  for i in range(100))
    user_state = serf.encode_serf(serf.SerfPushPull(
        100, {n.name: 3 for n in nodes}, (), 5, (None,) * serf.EVENT_BUFFER_SIZE, 2))
    pp = PushPull(False, nodes, user_state)
    pp_b = codec.encode_push_pull(pp)

    text = b" ".join(codec.encode(m) for m in gossip[:8]) * 20
    lzw_in = text[:10_240]
    lzw_b = lzw.compress(lzw_in)

    ring = Keyring([bytes(range(32))])
    plain = bytes(range(256)) * 5 + bytes(1400 - 1280 - 29)
    sealed = ring.encrypt_packet(plain)

    return {
        "ping": (len(ping_b), lambda: codec.encode(ping), lambda: codec.decode_packet(ping_b)),
        "ack": (len(ack_b), lambda: codec.encode(ack), lambda: codec.decode_packet(ack_b)),
        "alive": (len(alive_b), lambda: codec.encode(alive),
                  lambda: codec.decode_packet(alive_b)),
        "compound_13": (len(compound_b), encode_compound,
                        lambda: codec.decode_packet(compound_b)),
        "push_pull_100": (len(pp_b), lambda: codec.encode_push_pull(pp),
                          lambda: codec.decode_stream(pp_b)),
        "lzw_10k": (len(lzw_b), lambda: lzw.compress(lzw_in),
                    lambda: lzw.decompress(lzw_b, len(lzw_in))),
        "aes_gcm_1400": (len(sealed), lambda: ring.encrypt_packet(plain),
                         lambda: ring.decrypt_packet(sealed)),
    }


def run(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="benchmarks codec", description=__doc__)
    parser.add_argument("--duration", type=float, default=0.3,
                        help="seconds per measurement (default 0.3)")
    parser.add_argument("--case", action="append", default=[],
                        help="run only this case (repeatable)")
    args, _unknown = parser.parse_known_args(argv)

    cases = _cases()
    selected = args.case or list(cases)
    for name in selected:
        if name not in cases:
            parser.error(f"unknown case {name!r}; choose from {', '.join(cases)}")

    results = []
    for name in selected:
        size, encode, decode = cases[name]
        results.append({
            "case": name,
            "wire_bytes": size,
            "encode_ops_per_s": round(_ops_per_second(encode, args.duration), 1),
            "decode_ops_per_s": round(_ops_per_second(decode, args.duration), 1),
        })

    print(f"{'case':<16}{'bytes':>8}{'encode/s':>14}{'decode/s':>14}")
    for r in results:
        print(f"{r['case']:<16}{r['wire_bytes']:>8}{r['encode_ops_per_s']:>14,.0f}"
              f"{r['decode_ops_per_s']:>14,.0f}")
    return {
        "suite": "codec",
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "duration_per_measurement_s": args.duration,
        "results": results,
    }
