"""Several balancers, one truth: two real ``lbadapter run`` on one cluster.

* ``--sticky source``: the balancers find each other through membership
  (tag ``role=balancer``, ``lb-peer-port``), each generates a ``peers``
  section naming both (a reload, coalesced and checked, with clients
  running: none fails), and HAProxy replicates the stick table: a client
  (its own address on 127.0.0.0/8) lands on the same backend through either
  balancer, across a reload of one and a restart of the other.
* ``--sticky cookie``: server names, IDs and cookies are the same on both
  balancers, and stay the same when a balancer restarts and when a backend
  leaves and joins again; a cookie given by one balancer works on the other.

Every process is started here and stopped by PID; waits are bounded.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lbadapter.haproxy import parse_proc, parse_servers_state, parse_stat_csv
from lbadapter.testing import Processes, free_port, short_state_dir, stats_rows
from tests.integration.procs import Proc, Procs, wait_for

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(HAPROXY),
                                 reason="haproxy is not installed (apt-get install haproxy)")]


@dataclass
class LB:
    name: str
    state_dir: Path
    gossip: int
    frontend: int
    stats: int
    peer: int
    argv: list[str] = field(default_factory=list)

    def admin(self, line: str) -> str:
        """One runtime API command on this balancer's admin socket."""
        return unix_exchange(self.state_dir / "admin.sock", line)

    def servers(self) -> dict[str, tuple[int, str, str]]:
        """Name -> (ID, cookie, status) of the managed backend's servers (not in MAINT)."""
        # (the admin socket: the stats page leaves the cookie column empty)
        rows = {r["svname"]: r for r in parse_stat_csv(self.admin("show stat app 4 -1"))
                if r.get("svname") not in ("FRONTEND", "BACKEND")}
        state = {s.name: s for s in parse_servers_state(self.admin("show servers state app"))}
        return {n: (state[n].sid, r.get("cookie", ""), r.get("status", ""))
                for n, r in rows.items() if n in state and not state[n].in_maint}

    def stuck(self) -> dict[str, str]:
        """Stick table entries of :data:`CLIENTS`: client address -> server name."""
        out = {}
        for line in self.admin("show table app").splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            if "key" in fields and "server_key" in fields:
                out[fields["key"].removeprefix("::ffff:")] = fields["server_key"]
        return {c: out[c] for c in CLIENTS if c in out}

    def workers(self) -> tuple[int, ...]:
        """Current worker PIDs from the master CLI's ``show proc`` (() while it re-execs)."""
        text = master_cli(self, "show proc")
        return parse_proc(text).workers if text else ()

    def config(self) -> str:
        return (self.state_dir / "haproxy.cfg").read_text()


def unix_exchange(path: Path, line: str) -> str:
    """Send one command line to an HAProxy CLI socket; its whole answer."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(path))
        s.sendall(line.encode() + b"\n")
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def master_cli(lb: LB, line: str) -> str | None:
    """One master CLI command (None if the master refuses: it does while it re-execs)."""
    try:
        return unix_exchange(lb.state_dir / "master.sock", line)
    except OSError:
        return None


class Lab:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs = Processes(workdir)
        self.agents = Procs(workdir)
        self.running: dict[str, object] = {}
        self.backends: dict[str, Proc] = {}
        self.ports: dict[str, int] = {}

    def balancer(self, name: str, sticky: str, join: LB | None = None) -> LB:
        lb = LB(name, short_state_dir(f"lb{name}"), free_port(), free_port(), free_port(),
                free_port())
        lb.argv = [sys.executable, "-m", "lbadapter.cli", "run", "--node", name,
                   "--profile", "local", "--bind", f"127.0.0.1:{lb.gossip}",
                   "--listen", f"127.0.0.1:{lb.frontend}", "--stats", f"127.0.0.1:{lb.stats}",
                   "--state-dir", str(lb.state_dir), "--haproxy", HAPROXY, "--sticky", sticky,
                   "--peer-port", str(lb.peer), "--log-level", "debug"]
        if join is not None:
            lb.argv += ["--join", f"127.0.0.1:{join.gossip}"]
        self.start(lb)
        return lb

    def start(self, lb: LB) -> None:
        self.running[lb.name] = self.procs.start(lb.name, lb.argv)
        wait_for(lambda: stats_rows(("127.0.0.1", lb.stats)), 30,
                 what=f"{lb.name} up; log:\n{self.log(lb)}")

    def stop(self, lb: LB) -> None:
        popen = self.running.pop(lb.name)
        assert self.procs.stop(popen) == 0, self.log(lb)  # type: ignore[arg-type]

    def log(self, lb: LB) -> str:
        return self.procs.log(lb.name)[-5000:]

    def backend(self, name: str, join: LB) -> None:
        port = self.ports.setdefault(name, free_port())  # a re-join keeps its address
        self.procs.backend(name, port)  # answers its name
        self.backends[name] = self.agents.swimlib(
            name, "--tag", "role=backend", "--tag", f"port={port}", "--profile", "local",
            join=f"127.0.0.1:{join.gossip}")

    def close(self) -> None:
        self.agents.stop_all()
        self.procs.stop_all()


@pytest.fixture
def lab() -> Iterator[Lab]:
    workdir = short_state_dir("lbpair")
    lab = Lab(workdir)
    try:
        yield lab
    finally:
        lab.close()
        shutil.rmtree(workdir, ignore_errors=True)


def ask(lb: LB, source: str, cookie: str | None = None) -> tuple[str, str | None]:
    """One request from ``source`` (a 127.0.0.0/8 address): (backend or error, set cookie)."""
    conn = http.client.HTTPConnection("127.0.0.1", lb.frontend, timeout=5,
                                      source_address=(source, 0))
    try:
        conn.request("GET", "/", headers={"Cookie": cookie} if cookie else {})
        resp = conn.getresponse()
        body = resp.read().decode().strip()
        set_cookie = resp.getheader("Set-Cookie")
        return (body if resp.status == 200 else f"http-{resp.status}",
                set_cookie.split(";")[0] if set_cookie else None)
    except (OSError, http.client.HTTPException) as exc:
        return (f"error {type(exc).__name__}", None)
    finally:
        conn.close()


class Background:
    """A client sending through ``lb`` until stopped: counts answers and failures."""

    def __init__(self, lb: LB) -> None:
        self.lb = lb
        self.seen: Counter[str] = Counter()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for _ in range(100_000):
            if self.stopping.wait(0.01):
                return
            answer, _ = ask(self.lb, "127.0.0.99")
            self.seen["ok" if answer.startswith("s") else answer] += 1

    def __enter__(self) -> Background:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(10)


CLIENTS = [f"127.0.0.{i}" for i in range(10, 26)]


def test_source_stickiness_is_replicated_between_peers(lab: Lab) -> None:
    lb1 = lab.balancer("lb1", "source")
    for name in ("s1", "s2", "s3"):
        lab.backend(name, lb1)
    wait_for(lambda: len(lb1.servers()) == 3 and all(
        v[2].startswith("UP") for v in lb1.servers().values()), 20, what="3 backends UP")
    assert f"peer lb1 127.0.0.1:{lb1.peer}" in lb1.config()
    with Background(lb1) as traffic:  # the peers change reloads lb1: nobody may notice
        lb2 = lab.balancer("lb2", "source", join=lb1)
        for lb, other in ((lb1, lb2), (lb2, lb1)):
            wait_for(lambda lb=lb, other=other: f"peer {other.name} 127.0.0.1:{other.peer}"
                     in lb.config(), 15, what=f"{other.name} in {lb.name}'s peers")
        wait_for(lambda: '"reloads": 1' in (lb1.state_dir / "state.json").read_text(), 15,
                 what=f"lb1 reloaded for its new peer; log:\n{lab.log(lb1)}")
        wait_for(lambda: traffic.seen["ok"] > 20, 10,
                 what=f"traffic through the reload: {traffic.seen}")
    assert set(traffic.seen) == {"ok"}, traffic.seen
    assert "reloading haproxy: non-server config changed" in lab.log(lb1)
    wait_for(lambda: lb2.servers().keys() == lb1.servers().keys() and all(
        v[2].startswith("UP") for v in lb2.servers().values()), 20, what="lb2 has the servers")
    assert {n: v[0] for n, v in lb1.servers().items()} == \
        {n: v[0] for n, v in lb2.servers().items()}  # the same IDs

    first = {c: ask(lb1, c)[0] for c in CLIENTS}
    assert set(first.values()) <= {"s1", "s2", "s3"} and len(set(first.values())) > 1, first
    wait_for(lambda: lb2.stuck() == first, 10,
             what=f"lb1's stick table replicated to lb2 ({lb2.stuck()} vs {first})")
    assert {c: ask(lb2, c)[0] for c in CLIENTS} == first

    lab.stop(lb2)  # a restart: its HAProxy learns the table back from lb1
    lab.start(lb2)
    wait_for(lambda: lb2.stuck() == first, 15,
             what=f"lb2's table back after its restart; log:\n{lab.log(lb2)}")
    wait_for(lambda: all(v[2].startswith("UP") for v in lb2.servers().values())
             and len(lb2.servers()) == 3, 20, what="lb2's servers UP again")
    assert {c: ask(lb2, c)[0] for c in CLIENTS} == first

    # a reload of lb1's HAProxy (master CLI) keeps its table (the old worker hands it over)
    workers = wait_for(lb1.workers, 10, what="lb1's worker")
    wait_for(lambda: master_cli(lb1, "reload") is not None, 10, what="the reload sent once")
    wait_for(lambda: lb1.workers() not in ((), workers), 15, what="a new worker")
    wait_for(lambda: lb1.stuck() == first and len(lb1.servers()) == 3 and all(
        v[2].startswith("UP") for v in lb1.servers().values()), 15,
             what="lb1 back after a reload with its table and its servers UP")
    got = {c: ask(lb1, c)[0] for c in CLIENTS}
    assert got == first, (lb1.admin("show table app"), lb1.admin("show servers state app"),
                          lb1.admin("show stat app 4 -1"))


def test_cookie_names_ids_and_cookies_agree_across_restarts_and_rejoins(lab: Lab) -> None:
    lb1 = lab.balancer("lb1", "cookie")
    lb2 = lab.balancer("lb2", "cookie", join=lb1)
    for name in ("s1", "s2"):
        lab.backend(name, lb1)

    def agreed() -> dict[str, tuple[int, str, str]] | None:
        one, two = lb1.servers(), lb2.servers()
        ready = len(one) == 2 and all(v[2].startswith("UP") for v in [*one.values(),
                                                                       *two.values()])
        return one if ready and {n: v[:2] for n, v in one.items()} == \
            {n: v[:2] for n, v in two.items()} else None

    before = wait_for(agreed, 20, what=f"the same servers on both: {lb1.servers()} / "
                                       f"{lb2.servers()}")
    assert all(len(cookie) == 16 for _, cookie, _ in before.values()), before
    backend, cookie = ask(lb1, "127.0.0.10")
    assert cookie is not None and cookie.startswith("SRVID=")
    assert [ask(lb2, "127.0.0.11", cookie)[0] for _ in range(10)] == [backend] * 10

    lab.stop(lb2)
    lab.start(lb2)
    after = wait_for(agreed, 20, what="the same servers after lb2's restart")
    assert {n: v[:2] for n, v in after.items()} == {n: v[:2] for n, v in before.items()}
    assert [ask(lb2, "127.0.0.12", cookie)[0] for _ in range(10)] == [backend] * 10

    other = "s2" if backend == "s1" else "s1"  # a backend leaves and joins again
    assert lab.agents.stop(lab.backends[other]) == 0
    wait_for(lambda: other not in lb1.servers() and other not in lb2.servers(), 20,
             what=f"{other} gone from both")
    lab.backend(other, lb2)
    rejoined = wait_for(agreed, 20, what=f"{other} back on both")
    assert {n: v[:2] for n, v in rejoined.items()} == {n: v[:2] for n, v in before.items()}
