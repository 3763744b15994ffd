"""Backends steer themselves through their tags: ``lb-weight`` and ``lb-state``.

A real ``lbadapter run --sticky cookie`` (HAProxy 2.6 as its child), two tiny
HTTP backends and their swimlib agents on 127.0.0.1. The backends change
their own tags with ``swimlib tags``; the test checks what clients see and
that HAProxy never reloaded (its worker PID is the same at the end). It
also scrapes ``--metrics-addr``. Every process is stopped by PID.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lbadapter.testing import Processes, fetch, free_port, short_state_dir, stats_rows
from tests.integration.procs import Proc, Procs, wait_for

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(HAPROXY),
                                 reason="haproxy is not installed (apt-get install haproxy)")]


@dataclass
class Cluster:
    state_dir: Path
    procs: Processes
    agents: Procs
    frontend: int
    stats: tuple[str, int]
    metrics: int
    backends: dict[str, Proc]

    def log(self) -> str:
        return self.procs.log("lbadapter")[-4000:]

    def tags(self, name: str, *args: str) -> None:
        out = subprocess.run([sys.executable, "-m", "swimlib.cli", "tags", "--rpc-addr",
                              self.backends[name].rpc, *args],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr

    def status(self, name: str) -> str:
        for row in stats_rows(self.stats):
            if row.get("pxname") == "app" and row.get("svname") == name:
                return f"{row.get('status')} w{row.get('uweight') or row.get('weight')}"
        return "-"

    def state(self) -> dict:
        return json.loads((self.state_dir / "state.json").read_text())

    def workers(self) -> list[int]:
        return list(self.state()["haproxy"]["workers"])


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    state_dir = short_state_dir("lbsteer")
    procs, agents = Processes(state_dir), Procs(state_dir)
    try:
        gossip, fe, stats, metrics = free_port(), free_port(), free_port(), free_port()
        procs.start("lbadapter", [
            sys.executable, "-m", "lbadapter.cli", "run", "--node", "lb", "--profile", "local",
            "--bind", f"127.0.0.1:{gossip}", "--listen", f"127.0.0.1:{fe}",
            "--stats", f"127.0.0.1:{stats}", "--state-dir", str(state_dir),
            "--haproxy", HAPROXY, "--sticky", "cookie", "--metrics-addr",
            f"127.0.0.1:{metrics}"])
        c = Cluster(state_dir, procs, agents, fe, ("127.0.0.1", stats), metrics, {})
        wait_for(lambda: stats_rows(c.stats), 30, what=f"HAProxy up; log:\n{c.log()}")
        for name in ("s1", "s2"):
            port = free_port()
            procs.backend(name, port)
            c.backends[name] = agents.swimlib(name, "--tag", "role=backend", "--tag",
                                              f"port={port}", "--profile", "local",
                                              join=f"127.0.0.1:{gossip}")
        wait_for(lambda: all(c.status(n).startswith("UP") for n in c.backends), 20,
                 what=f"both backends UP; log:\n{c.log()}")
        yield c
    finally:
        agents.stop_all()
        procs.stop_all()  # SIGTERM: the adapter stops its HAProxy
        shutil.rmtree(state_dir, ignore_errors=True)


def spread(port: int, count: int, cookie: str | None = None) -> Counter[str]:
    """``count`` requests on one keep-alive connection; which backend answered (or errors)."""
    seen: Counter[str] = Counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    headers = {"Cookie": cookie} if cookie else {}
    try:
        for _ in range(count):
            try:
                conn.request("GET", "/", headers=headers)
                resp = conn.getresponse()
                body = resp.read().decode().strip()
                seen[body if resp.status == 200 else f"http-{resp.status}"] += 1
            except (OSError, http.client.HTTPException):
                seen["error"] += 1
                conn.close()
    finally:
        conn.close()
    return seen


def cookie_of(port: int, backend: str) -> str:
    """A ``SRVID=...`` cookie HAProxy gives for ``backend`` (bounded tries)."""
    for _ in range(50):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/")
            resp = conn.getresponse()
            body = resp.read().decode().strip()
            cookie = resp.getheader("Set-Cookie") or ""
        finally:
            conn.close()
        if body == backend and cookie.startswith("SRVID="):
            return cookie.split(";")[0]
    raise AssertionError(f"no cookie for {backend}")


def test_weights_set_by_tags_share_the_traffic_without_a_reload(cluster: Cluster) -> None:
    workers = cluster.workers()
    cluster.tags("s2", "--set", "lb-weight=3")
    wait_for(lambda: cluster.status("s2") == "UP w3", 10,
             what=f"s2 at weight 3; log:\n{cluster.log()}")
    seen = spread(cluster.frontend, 2000)
    assert seen["error"] == 0 and sum(seen.values()) == 2000, seen
    share = seen["s2"] / 2000
    print(f"weights 1:3 over 2000 requests: {dict(seen)} (s2 {share:.1%})")
    assert abs(share - 0.75) <= 0.075, seen  # within 10 % of 75/25
    cluster.tags("s2", "--set", "lb-weight=1e9")  # refused: counted, logged, weight default
    wait_for(lambda: cluster.status("s2") == "UP w1", 10, what="s2 back at weight 1")
    wait_for(lambda: "bad lb-weight tag 1e9 (expected 0..256); using 1" in cluster.log(), 5,
             what="the bad tag logged")
    wait_for(lambda: cluster.state()["member_problems"] == {"weight_invalid": 1}, 5,
             what="the bad tag counted in state.json")
    assert cluster.workers() == workers and cluster.state()["haproxy"]["reloads"] == 0

    status, text = fetch(f"http://127.0.0.1:{cluster.metrics}/metrics")
    assert status == 200
    metrics = {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1])
               for ln in text.splitlines() if ln and not ln.startswith("#")}
    assert metrics['lbadapter_members{role="backend",status="alive"}'] == 2
    assert metrics['lbadapter_members{role="balancer",status="alive"}'] == 1
    assert metrics['lbadapter_servers{state="up"}'] == 2
    assert metrics['lbadapter_runtime_api_operations_total{operation="add"}'] == 2
    assert metrics['lbadapter_runtime_api_operations_total{operation="weight"}'] == 2
    assert metrics["lbadapter_reloads_total"] == 0
    assert metrics["lbadapter_reconcile_errors_total"] == 0
    assert metrics['lbadapter_member_problems{reason="weight_invalid"}'] == 1
    assert 0 < metrics["lbadapter_last_reconcile_seconds"] < 5
    assert metrics["lbadapter_haproxy_up"] == 1
    assert "serf_agent_memberlist_udp_sent" in text  # the embedded agent's own metrics


def test_drain_then_maint_then_ready_through_tags(cluster: Cluster) -> None:
    workers = cluster.workers()
    s1_cookie = cookie_of(cluster.frontend, "s1")
    slow: dict[str, object] = {}

    def slow_request() -> None:  # a session open on s1 when it starts draining
        conn = http.client.HTTPConnection("127.0.0.1", cluster.frontend, timeout=15)
        try:
            conn.request("GET", "/slow?s=3", headers={"Cookie": s1_cookie})
            resp = conn.getresponse()
            slow["answer"] = (resp.status, resp.read().decode().strip())
        except (OSError, http.client.HTTPException) as exc:
            slow["answer"] = exc
        finally:
            conn.close()

    thread = threading.Thread(target=slow_request)
    thread.start()
    wait_for(lambda: _scur(cluster, "s1") >= 1, 5, what="the slow session on s1")
    started = time.monotonic()
    cluster.tags("s1", "--set", "lb-state=drain")
    wait_for(lambda: cluster.status("s1").startswith("DRAIN"), 5,
             what=f"s1 draining; log:\n{cluster.log()}")
    took = time.monotonic() - started
    print(f"lb-state=drain applied in {took:.2f} s (swimlib tags to DRAIN on the stats page)")
    assert took < 2.0, f"drain took {took:.2f} s"
    assert spread(cluster.frontend, 40) == Counter({"s2": 40})  # no new session on s1
    assert spread(cluster.frontend, 10, s1_cookie) == Counter({"s1": 10})  # sticky ones stay
    thread.join(15)
    assert slow["answer"] == (200, "s1")  # the open session finished on s1

    cluster.tags("s1", "--set", "lb-state=maint")
    wait_for(lambda: cluster.status("s1").startswith("MAINT"), 5, what="s1 in maintenance")
    assert spread(cluster.frontend, 10, s1_cookie) == Counter({"s2": 10})  # moved, no error

    cluster.tags("s1", "--delete", "lb-state")
    wait_for(lambda: cluster.status("s1").startswith("UP"), 10, what="s1 back UP")
    assert spread(cluster.frontend, 40) == Counter({"s1": 20, "s2": 20})
    assert cluster.workers() == workers and cluster.state()["haproxy"]["reloads"] == 0
    assert "reconcile: drain app/s1 (lb-state)" in cluster.log()


def _scur(cluster: Cluster, name: str) -> int:
    for row in stats_rows(cluster.stats):
        if row.get("pxname") == "app" and row.get("svname") == name:
            return int(row.get("scur") or 0)
    return 0

