"""scripts/container_node.py: how a lab container finds its node name (no Docker needed).

Docker's DNS answers a reverse lookup of a container's address with the
container's name; Compose names replicas ``<project>_<service>_<N>``.
"""

from __future__ import annotations

import importlib.util
import socket
import struct
import sys
import threading
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("container_node",
                                                  REPO / "scripts" / "container_node.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["container_node"] = module
    spec.loader.exec_module(module)
    return module


cn = _load()

#: Docker 20.10's embedded DNS answering PTR 10.232.0.3 for container x_s_1 on network
#: swlexp (captured; the answer repeats the name instead of a compression pointer).
CAPTURED = (b"\xfc\x98\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x013\x010\x03232\x0210"
            b"\x07in-addr\x04arpa\x00\x00\x0c\x00\x01\x013\x010\x03232\x0210\x07in-addr"
            b"\x04arpa\x00\x00\x0c\x00\x01\x00\x00\x02X\x00\x0e\x05x_s_1\x06swlexp\x00")


@pytest.mark.parametrize(("container", "node"), [
    ("swimlab_s_3.swimlab_lab", "s3"),   # Compose v1
    ("swimlab-s-12.swimlab_lab", "s12"),  # Compose v2
    ("my_project_web_2", "web2"),
    ("s5", "s5"),                         # docker run --name s5
    ("web", "web"),
])
def test_node_name_from_container_name(container: str, node: str) -> None:
    assert cn.name_from_container(container) == node


def test_parses_dockers_captured_answer() -> None:
    assert cn.parse_ptr(CAPTURED, 0xFC98) == "x_s_1.swlexp"
    assert cn.parse_ptr(CAPTURED, 0x1234) is None  # not our query


def compressed_answer(qid: int, qname: str, target: str, rcode: int = 0) -> bytes:
    head = struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, 1 if rcode == 0 else 0, 0, 0)
    question = cn.encode_name(qname) + struct.pack("!HH", 12, 1)
    if rcode:
        return head + question
    rdata = cn.encode_name(target)
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 12, 1, 600, len(rdata)) + rdata
    return head + question + answer


def test_follows_compression_pointers_and_refuses_loops() -> None:
    msg = compressed_answer(7, "3.0.232.10.in-addr.arpa", "swimlab_s_1.swimlab_lab")
    assert cn.parse_ptr(msg, 7) == "swimlab_s_1.swimlab_lab"
    loop = b"\x00" * 12 + b"\xc0\x0c"
    with pytest.raises(ValueError):
        cn.read_name(loop, 12)


def test_reverse_lookup_against_a_resolver_on_loopback() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(5.0)
    queries: list[str] = []

    def answer(count: int) -> None:
        for _ in range(count):
            try:
                query, peer = server.recvfrom(512)
            except OSError:
                return
            qid = struct.unpack("!H", query[:2])[0]
            qname = cn.read_name(query, 12)[0]
            queries.append(qname)
            rcode = 3 if qname.startswith("9.") else 0  # NXDOMAIN for 10.0.0.9
            server.sendto(compressed_answer(qid, qname, "lab_s_4.lab_net", rcode), peer)

    thread = threading.Thread(target=answer, args=(1 + 2,), daemon=True)
    thread.start()
    try:
        port = server.getsockname()[1]
        assert cn.reverse_lookup("10.232.0.7", "127.0.0.1", port) == "lab_s_4.lab_net"
        assert cn.reverse_lookup("10.0.0.9", "127.0.0.1", port, tries=2, timeout=1.0) is None
        thread.join(5.0)
    finally:
        server.close()
    assert queries == ["7.0.232.10.in-addr.arpa"] + ["9.0.0.10.in-addr.arpa"] * 2
