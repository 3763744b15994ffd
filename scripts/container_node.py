"""A lab backend inside a container: the web app and a swimlib agent, as one node.

The image's ``lab-node`` command (Dockerfile, docker-compose.yml)::

    lab-node backend [--join ha] [--port 3000] [--node NAME]
    lab-node name                 # print the node name this container would use

``backend`` starts ``python3 -m lbadapter.backend_app`` on 0.0.0.0:PORT and
``swimlib agent --tag role=backend --retry-join ha --retry-interval 1s``
(gossip on 0.0.0.0:7946, advertising the container's address; Serf's RPC on
127.0.0.1:7373, so ``docker exec <container> swimlib members`` works; a
backend started before ``ha`` listens joins a second later), and supervises
both. On
SIGTERM or SIGINT (``docker stop``) it stops them in the order a careful
operator would: the agent first (a graceful leave, so HAProxy drains the
server), then the app. If either dies on its own, the other is stopped too
and the container exits 1.

The node name is ``--node``, else ``$NODE``, else derived from the container's
name, which Docker's DNS (127.0.0.11) gives for a reverse lookup of the
container's own address: Compose names replicas ``<project>_<service>_<N>``
(``-`` with Compose v2), so replica 3 of service ``s`` is node ``s3``, as in
the original lab. Any other container name is used as it is; with no DNS
answer, the hostname.

Standard library only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

#: Compose's replica names: ``<project>_<service>_<N>`` (v1) or ``<project>-<service>-<N>`` (v2).
REPLICA_RE = re.compile(r"(?:^|[-_])([A-Za-z][A-Za-z0-9]*)[-_]([0-9]+)$")
#: Seconds each process gets after SIGTERM before SIGKILL (a leave takes 1-2 s).
STOP_TIMEOUT = 8.0
GOSSIP_PORT = 7946
RPC_ADDR = "127.0.0.1:7373"


def encode_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\0"


def read_name(msg: bytes, pos: int) -> tuple[str, int]:
    """A domain name at ``pos`` (compression pointers followed, bounded); and the next offset."""
    labels: list[str] = []
    end = -1
    for _ in range(128):
        length = msg[pos]
        if length >= 0xC0:  # pointer
            if end < 0:
                end = pos + 2
            pos = ((length & 0x3F) << 8) | msg[pos + 1]
            continue
        if length == 0:
            return ".".join(labels), (end if end >= 0 else pos + 1)
        labels.append(msg[pos + 1:pos + 1 + length].decode(errors="replace"))
        pos += 1 + length
    raise ValueError("name too long or a pointer loop")


def parse_ptr(msg: bytes, qid: int) -> str | None:
    """The first PTR answer of DNS response ``msg`` to query ``qid``."""
    rid, flags, qdcount, ancount = struct.unpack("!HHHH", msg[:8])
    if rid != qid or not flags & 0x8000 or flags & 0x000F:
        return None
    pos = 12
    for _ in range(qdcount):
        pos = read_name(msg, pos)[1] + 4
    for _ in range(ancount):
        pos = read_name(msg, pos)[1]
        rtype, _rclass, _ttl, rdlength = struct.unpack("!HHIH", msg[pos:pos + 10])
        pos += 10
        if rtype == 12:
            return read_name(msg, pos)[0]
        pos += rdlength
    return None


def nameserver() -> str:
    try:
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "nameserver":
                return fields[1]
    except OSError:
        pass
    return "127.0.0.11"


def reverse_lookup(ip: str, server: str, port: int = 53, tries: int = 3,
                   timeout: float = 1.0) -> str | None:
    """Ask ``server`` (not /etc/hosts, which maps the address to the container ID) for
    the PTR record of ``ip``."""
    qname = ".".join(reversed(ip.split("."))) + ".in-addr.arpa"
    for _ in range(tries):
        qid = random.randrange(1 << 16)
        query = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + encode_name(qname)
        query += struct.pack("!HH", 12, 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.sendto(query, (server, port))
                answer = parse_ptr(sock.recv(4096), qid)
            except (OSError, ValueError, struct.error, IndexError):
                continue
        if answer:
            return answer
    return None


def name_from_container(container: str) -> str:
    """``lab_s_3.lab_net`` -> ``s3``; ``web`` -> ``web``."""
    first = container.split(".", 1)[0]
    match = REPLICA_RE.search(first)
    return f"{match.group(1)}{match.group(2)}" if match else first


def node_name() -> str:
    if os.environ.get("NODE"):
        return os.environ["NODE"]
    host = socket.gethostname()
    try:
        ip = socket.gethostbyname(host)
    except OSError:
        return host
    found = reverse_lookup(ip, nameserver())
    return name_from_container(found) if found else host


def stop(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int | None:
    """SIGTERM, then SIGKILL after ``timeout``; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
    try:
        return proc.wait(5.0)
    except subprocess.TimeoutExpired:
        return None


def backend(name: str, join: str, port: int) -> int:
    """Run the app and the agent until a signal (exit 0) or one of them dies (exit 1)."""
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        print(f"lab-node {name}: {signal.Signals(signum).name}: agent leaves, then the app "
              "stops", flush=True)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    py = sys.executable
    app = subprocess.Popen([py, "-m", "lbadapter.backend_app", "--name", name,
                            "--listen", f"0.0.0.0:{port}"])
    agent = subprocess.Popen([py, "-m", "swimlib.cli", "agent", "--node", name,
                              "--bind", f"0.0.0.0:{GOSSIP_PORT}", "--rpc-addr", RPC_ADDR,
                              "--tag", "role=backend", "--retry-join", join,
                              "--retry-interval", "1s"])
    print(f"lab-node {name}: app pid {app.pid} on :{port}, agent pid {agent.pid} "
          f"(--retry-join {join})", flush=True)
    while not stopping.wait(0.5):
        if app.poll() is not None or agent.poll() is not None:
            break
    failed = not stopping.is_set()
    codes = (stop(agent), stop(app))
    print(f"lab-node {name}: agent exited {codes[0]}, app exited {codes[1]}", flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab-node", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("backend", help="the web app and a swimlib agent tagged role=backend")
    b.add_argument("--join", default="ha", help="address to (retry-)join (default ha)")
    b.add_argument("--port", type=int, default=3000, help="app port (default 3000)")
    b.add_argument("--node", help="node name (default: $NODE, else from the container name)")
    sub.add_parser("name", help="print this container's node name")
    args = parser.parse_args(argv)
    if args.command == "name":
        print(node_name())
        return 0
    return backend(args.node or node_name(), args.join, args.port)


if __name__ == "__main__":
    sys.exit(main())
