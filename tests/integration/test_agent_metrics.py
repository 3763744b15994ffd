"""Metrics of real agents on loopback: ``--metrics-addr`` scraped and parsed with
prometheus_client's parser while the cluster changes, ``statsd_addr`` received on a
real UDP socket (side by side with a real serf agent's), hostile HTTP clients, and
what an agent without metrics does not load."""

from __future__ import annotations

import contextlib
import json
import math
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from swimlib.testing import free_port

from .procs import Proc, Procs, needs_serf, wait_for


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    yield p
    p.stop_all()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """``/metrics``, parsed: (sample name, labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), math.nan)


def metrics_agent(procs: Procs, name: str, *extra: str, join: str | None = None) -> tuple[
        Proc, int]:
    port = free_port()
    proc = procs.swimlib(name, "--metrics-addr", f"127.0.0.1:{port}", "--profile", "local",
                         *extra, join=join)
    wait_for(lambda: "Serving Prometheus metrics" in proc.output(), 10, what="metrics up")
    return proc, port


def test_metrics_move_as_the_cluster_changes(procs: Procs) -> None:
    a, a_port = metrics_agent(procs, "a")
    b, b_port = metrics_agent(procs, "b", join=a.gossip)
    members = "swimlib_members"
    instances = "serf_agent_memberlist_node_instances"
    wait_for(lambda: get(scrape(a_port), members, status="alive") == 2, 20, what="a sees b")
    m = wait_for(lambda: (s := scrape(a_port))["serf_agent_memberlist_probeNode_count", ()]
                 >= 2 and s, 20, what="a's probes")
    assert get(m, instances, node_state="alive") == 2
    assert get(m, instances, node_state="dead") == 0
    assert 0 < get(m, "serf_agent_memberlist_probeNode", quantile="0.5") < 1000  # ms
    assert get(m, "serf_agent_memberlist_udp_sent_total") > get(
        m, "swimlib_udp_packets_sent_total") > 0  # bytes, as memberlist counts them
    assert get(m, "serf_agent_memberlist_udp_received_total") > 0
    assert get(m, "serf_agent_serf_member_join_total") == 2
    assert get(m, "serf_agent_memberlist_health_score") == 0
    # b joined with a push-pull, and timed it.
    mb = scrape(b_port)
    assert get(mb, "serf_agent_memberlist_pushPullNode_count") >= 1
    assert get(mb, "serf_agent_memberlist_pushPullNode_sum") > 0
    assert get(mb, "serf_agent_memberlist_tcp_connect_total") >= 1

    # A member joins.
    c = procs.swimlib("c", "--profile", "local", join=a.gossip)
    m = wait_for(lambda: (s := scrape(a_port)) and get(s, members, status="alive") == 3 and s,
                 20, what="a sees c")
    assert get(m, instances, node_state="alive") == 3
    assert get(m, "serf_agent_serf_member_join_total") == 3
    sent_before = get(m, "serf_agent_memberlist_udp_sent_total")

    # A hostile datagram is dropped and counted by its reason.
    host, port = a.gossip.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"\xffnot a memberlist message", (host, int(port)))
    wait_for(lambda: get(scrape(a_port), "swimlib_drops_total", reason="type") == 1, 10,
             what="the drop counted")

    # A member is killed: suspected, then failed.
    procs.kill(c, signal.SIGKILL)
    m = wait_for(lambda: (s := scrape(a_port)) and get(s, members, status="failed") == 1 and s,
                 40, what="a marks c failed")
    assert get(m, members, status="alive") == 2
    assert get(m, instances, node_state="dead") == 1
    assert get(m, "serf_agent_memberlist_msg_suspect_total") >= 1
    assert get(m, "serf_agent_serf_member_failed_total") == 1
    assert get(m, "serf_agent_memberlist_udp_sent_total") > sent_before
    assert not [k for k in m if k[0] == "swimlib_internal_errors_total"]
    assert procs.stop(a) == 0 and procs.stop(b) == 0


# ---------------------------------------------------------------- statsd


_LINE = re.compile(r"^[\w.\-]+:-?\d+\.\d{6}\|(c|g|ms)(\|@[0-9.e\-]+)?$")


class Receiver:
    """A UDP socket collecting statsd lines."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.settimeout(0.2)
        self.lines: list[str] = []

    def drain(self) -> list[str]:
        for _ in range(1000):
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            assert len(data) <= 1400
            self.lines.extend(data.decode().splitlines())
        return self.lines

    def names(self) -> set[str]:
        """Each line's key and kind, the host name in gauges made ``HOST``."""
        out = set()
        for line in self.drain():
            assert _LINE.match(line), line
            key, rest = line.split(":", 1)
            out.add(key.replace(f".{socket.gethostname()}.", ".HOST.") + "|" +
                    rest.split("|")[1])
        return out

    def close(self) -> None:
        self.sock.close()


def _config(tmp_path: Path, name: str, **keys: Any) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(keys))
    return f"-config-file={path}"


#: What both a serf agent and a swimlib agent send in their first seconds in a cluster.
COMMON = {"serf-agent.memberlist.udp.sent|c", "serf-agent.memberlist.udp.received|c",
          "serf-agent.memberlist.probeNode|ms", "serf-agent.memberlist.msg.alive|c",
          "serf-agent.serf.member.join|c", "serf-agent.serf.msgs.sent|ms",
          "serf-agent.serf.msgs.received|ms"}


def test_statsd_gets_go_metrics_lines(procs: Procs, tmp_path: Path) -> None:
    rx = Receiver()
    try:
        a = procs.swimlib("a", "--profile", "local",
                          _config(tmp_path, "a", statsd_addr=f"127.0.0.1:{rx.port}"))
        procs.swimlib("b", "--profile", "local", join=a.gossip)
        wanted = COMMON | {"serf-agent.HOST.memberlist.health.score|g",
                           "serf-agent.HOST.memberlist.node.instances.alive|g",
                           "serf-agent.HOST.swimlib.members.alive|g",
                           "serf-agent.memberlist.tcp.accept|c"}
        wait_for(lambda: wanted <= rx.names(), 20, interval=0.01, what=f"lines {wanted}")
        alive = [line for line in rx.lines if ".memberlist.node.instances.alive:" in line]
        assert alive[-1].endswith(":2.000000|g")
        assert a.alive()
    finally:
        rx.close()


def test_statsd_with_nothing_listening_costs_the_agent_nothing(procs: Procs,
                                                              tmp_path: Path) -> None:
    nobody = free_port()
    a = procs.swimlib("a", "--profile", "local",
                      _config(tmp_path, "a", statsd_addr=f"127.0.0.1:{nobody}",
                              statsite_addr=f"127.0.0.1:{nobody}"))
    b = procs.swimlib("b", "--profile", "local", join=a.gossip)
    wait_for(lambda: "Error connecting to statsite" in a.output(), 15, what="statsite refused")
    wait_for(lambda: "Error writing to statsd" in a.output(), 15, what="statsd refused")
    assert procs.members(b, cli="swimlib").get("a", {}).get("status") == "alive"
    assert a.output().count("Error writing to statsd") == 1  # said once, not every 5 s
    assert procs.stop(a) == 0


@needs_serf
def test_statsd_lines_are_named_as_a_serf_agents(procs: Procs, tmp_path: Path) -> None:
    """A serf agent and a swimlib agent in one cluster, each with its statsd socket."""
    serf_rx, ours_rx = Receiver(), Receiver()
    try:
        seed = procs.serf("seed", _config(tmp_path, "seed", statsd_addr=f"127.0.0.1:"
                                                                        f"{serf_rx.port}"))
        procs.swimlib("ours", "--profile", "lan",
                      _config(tmp_path, "ours", statsd_addr=f"127.0.0.1:{ours_rx.port}"),
                      join=seed.gossip)
        wait_for(lambda: serf_rx.names() >= COMMON, 30, interval=0.01, what="serf's lines")
        wait_for(lambda: ours_rx.names() >= COMMON, 30, interval=0.01, what="our lines")
        # Whatever else serf sent, we send too, but for what swimlib has no part of
        # (Go's runtime, the gossip function's duration, network coordinates) and what
        # depends on the run (a degraded probe, a suspicion).
        time.sleep(1)
        theirs = {n for n in serf_rx.names() if not re.search(
            r"\.runtime\.|memberlist\.gossip\||serf\.coordinate\.|degraded|\.msg\.(suspect|dead)"
            r"|memberlist\.tcp\.", n)}  # and TCP: who connects to whom is up to chance
        ours = ours_rx.names()
        assert theirs - ours == set(), (theirs - ours, ours)
    finally:
        serf_rx.close()
        ours_rx.close()


# ---------------------------------------------------------------- hostile HTTP


def _raw(port: int, data: bytes) -> bytes:
    """Send ``data`` (the server may stop reading it), then read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        out = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out


def test_hostile_http_clients_do_not_hurt_the_agent(procs: Procs) -> None:
    a, port = metrics_agent(procs, "a")
    b = procs.swimlib("b", "--profile", "local", join=a.gossip)
    assert _raw(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n").startswith(
        b"HTTP/1.1 400 ")
    assert _raw(port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 1_000_000).startswith(
        b"HTTP/1.1 431 ")
    assert _raw(port, b"GET /\xff\xfe HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404 ")
    assert _raw(port, b"DELETE /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    # Slow and silent clients, more of them than are served at once: the agent
    # gossips and answers RPC all the while, and a scrape works once they are gone.
    slow = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(24)]
    try:
        for sock in slow[:12]:
            sock.sendall(b"GET /metr")
        assert procs.members(b, cli="swimlib")["a"]["status"] == "alive"
        assert procs.members(a, cli="swimlib")["b"]["status"] == "alive"
    finally:
        for sock in slow:
            sock.close()
    m = wait_for(lambda: _scrape_or_none(port), 15, what="scrapes again")
    assert get(m, "swimlib_drops_total", reason="metrics_http.bad_request") == 1
    assert get(m, "swimlib_drops_total", reason="metrics_http.too_large") == 1
    assert get(m, "swimlib_drops_total", reason="metrics_http.bad_method") == 1
    assert get(m, "swimlib_drops_total", reason="metrics_http.too_many") >= 1
    assert not [k for k in m if k[0] == "swimlib_internal_errors_total"]
    assert a.alive() and procs.stop(a) == 0


def _scrape_or_none(port: int) -> Samples | None:
    try:
        return scrape(port)
    except OSError:
        return None


# ---------------------------------------------------------------- what is loaded


@pytest.mark.parametrize("metrics", [False, True])
def test_prometheus_client_is_loaded_only_for_metrics_addr(procs: Procs, metrics: bool) -> None:
    extra = ["--metrics-addr", f"127.0.0.1:{free_port()}"] if metrics else []
    agent = procs.swimlib("a", *extra, env={"PYTHONPROFILEIMPORTTIME": "1"})
    wait_for(lambda: "agent running" in agent.output(), 15, what="agent start-up")
    imported = {line.rsplit("|", 1)[-1].strip() for line in agent.output().splitlines()
                if line.startswith("import time:")}
    assert "swimlib.agent.command" in imported  # the profile is there
    assert ("prometheus_client" in imported) is metrics
    assert ("swimlib.agent.metrics" in imported) is metrics
    assert "swimlib.agent.statsd" not in imported
    assert procs.stop(agent) == 0


def test_metrics_addr_without_prometheus_client_exits_1_before_binding(tmp_path: Path) -> None:
    port, rpc, metrics = free_port(), free_port(), free_port()
    code = ("import sys; sys.modules['prometheus_client'] = None\n"
            "from swimlib.cli import main; sys.exit(main(sys.argv[1:]))")
    out = subprocess.run([sys.executable, "-c", code, "agent", "-node=a",
                          f"-bind=127.0.0.1:{port}", f"-rpc-addr=127.0.0.1:{rpc}",
                          f"-metrics-addr=127.0.0.1:{metrics}"],
                         capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert out.returncode == 1, out
    assert "prometheus_client" in out.stderr and "swimlib[metrics]" in out.stderr
    assert "Starting swimlib agent" not in out.stdout
