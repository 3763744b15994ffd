"""A hostile mDNS responder for tests/integration/test_mdns_discover.py (run in a
namespace): it waits for a question for ``_serf_<cluster>._tcp.local.`` and
answers it with a flood of fake peers and malformed packets, then exits.

argv: CLUSTER INTERFACE_ADDR SUBNET_PREFIX (``10.241.5``); bounded: it gives up
after 30 s.
"""

from __future__ import annotations

import socket
import struct
import sys
import time

from swimlib.mdns import codec, rule


def fake_answers(cluster: str, prefix: str) -> list[bytes]:
    """40 packets of 10 fake peers (nobody at those addresses), 400 in all."""
    packets = []
    for batch in range(40):
        records: list[codec.ResourceRecord] = []
        for i in range(10):
            advert = rule.Advert(cluster, f"fake-{batch}-{i}", f"fake{batch}x{i}.",
                                 f"{prefix}.{100 + batch}", 7000 + i)
            records += advert.records(codec.Question(advert.service, codec.TYPE_PTR))
        packets.append(codec.encode(codec.Message(0, 0x8400, (), tuple(records))))
    return packets


def malformed() -> list[bytes]:
    ten_thousand = struct.pack("!6H", 0, 0x8400, 0, 10_000, 0, 0)
    loop = (struct.pack("!6H", 0, 0x8400, 0, 1, 0, 0) + b"\x01a\xc0\x0c"
            + struct.pack("!HHIH", codec.TYPE_A, 1, 120, 4) + b"\x0a\0\0\x01")
    return [ten_thousand, loop]


def main() -> int:
    cluster, iface, prefix = sys.argv[1:4]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("0.0.0.0", rule.MDNS_PORT))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                    socket.inet_aton(rule.MDNS_GROUP_V4[0]) + socket.inet_aton(iface))
    sock.settimeout(0.5)
    wanted = codec.folded(codec.name_from_text(rule.service_name(cluster) + ".local."))
    print("listening", flush=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            data, source = sock.recvfrom(9000)
        except TimeoutError:
            continue
        try:
            msg = codec.decode(data)
        except codec.DnsError:
            continue
        if msg.is_response or not any(codec.folded(q.name) == wanted for q in msg.questions):
            continue
        for packet in (*malformed(), *fake_answers(cluster, prefix)):
            sock.sendto(packet, source)
        print(f"flooded {source[0]}:{source[1]}", flush=True)
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
