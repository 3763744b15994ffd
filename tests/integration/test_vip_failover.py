"""The floating address (issue 10, item 3): two balancers, keepalived, a host that dies.

Network namespaces on a test bridge (:mod:`tests.integration.netns`): two
balancers, each ``lbadapter run --vip ... --vip-interface eth0`` (embedded
agent, HAProxy and keepalived as its children), and two backends
(``backend_app`` + ``swimlib agent``). The test process, on the bridge in the
host namespace, is the client of the VIP.

The active balancer's host dies: every process in its namespace is
SIGKILLed and its cable pulled in the same instant. Both, because a
namespace whose processes are dead still has a live kernel: it would keep
answering ARP for the address and resetting connections, which a dead host
does not do (``test_vip_moves_when_only_the_processes_die`` covers that case).

Measured (printed with ``-s``): the time from the kill until the VIP
answers again (a probe opening a new connection every few ms with a short
timeout), and the requests that failed among those of four clients sending
back to back, each request on a new connection. Only requests in flight at
the kill may fail; requests sent while the address moves wait in TCP's SYN
retransmission and are answered by the standby.
"""

from __future__ import annotations

import http.client
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lbadapter.testing import short_state_dir
from swimlib.testing import ProcessGroup
from tests.integration import netns
from tests.integration.procs import wait_for

REPO = Path(__file__).resolve().parents[2]
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"
APP_PORT = 3000
#: The acceptance bound: the VIP answers from the standby within this long of the kill.
FAILOVER_BOUND = 3.0
CLIENTS = 4
#: Long enough for a request sent while the address moves to get through on a SYN
#: retransmission (1 s, 3 s, 7 s after it was sent).
REQUEST_TIMEOUT = 8.0

pytestmark = pytest.mark.slow


def _why_not() -> str | None:
    why = netns.why_not()
    if why:
        return why
    if not Path(HAPROXY).exists():
        return "haproxy is not installed (make test installs it when run as root)"
    if not Path(KEEPALIVED).exists():
        return "keepalived is not installed (make test installs it when run as root)"
    return None


# ------------------------------------------------------------------ the cluster


class Cluster:
    """Two balancers holding one VIP and two backends, in namespaces of one LAN."""

    def __init__(self, lan: netns.Lan, group: ProcessGroup, state: Path) -> None:
        self.lan, self.group = lan, group
        self.balancers = lan.names[:2]
        self.backends = lan.names[2:]
        self.vip = f"{lan.subnet}.200"
        self.state_dirs = {ns: state / f"lb{i}" for i, ns in enumerate(self.balancers)}
        self.adapters: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, unicast: bool = False) -> None:
        """Start everything; ``unicast``: VRRP to the other balancer's address
        (``vip_unicast_peers``) instead of multicast."""
        py = sys.executable
        env = {"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        first = self.lan.ip(self.balancers[0])
        for i, ns in enumerate(self.backends):
            ip = self.lan.ip(ns)
            self.group.start(f"app{i}", [*self.lan.exec_prefix(ns), py, "-m",
                                         "lbadapter.backend_app", "--name", f"b{i}",
                                         "--listen", f"0.0.0.0:{APP_PORT}"], env=env)
            self.group.start(f"agent{i}", [*self.lan.exec_prefix(ns), py, "-m", "swimlib.cli",
                                           "agent", "--node", f"b{i}", "--bind", f"{ip}:7946",
                                           "--tag", "role=backend", "--join", first], env=env)
        for i, ns in enumerate(self.balancers):
            other = self.lan.ip(self.balancers[1 - i])
            settings = self.group.workdir / f"lb{i}.toml"
            settings.write_text(f'vip_unicast_peers = ["{other}"]\n' if unicast else "")
            child = self.group.start(f"lb{i}", [
                *self.lan.exec_prefix(ns), py, "-m", "lbadapter.cli", "run",
                "--node", f"ha{i}", "--bind", f"{self.lan.ip(ns)}:7946", "--join", other,
                "--backend-port", str(APP_PORT), "--listen", "0.0.0.0:80",
                "--stats", "0.0.0.0:1936", "--state-dir", str(self.state_dirs[ns]),
                "--vip", f"{self.vip}/24", "--vip-interface", "eth0", "--sticky", "cookie",
                "--config", str(settings)], env=env)
            self.adapters[ns] = child.popen

    def holders(self) -> list[str]:
        """Balancers whose eth0 carries the VIP."""
        return [ns for ns in self.balancers
                if f"inet {self.vip}/" in subprocess.run(
                    ["ip", "-n", ns, "-o", "-4", "addr", "show", "dev", "eth0"],
                    capture_output=True, text=True, timeout=10, check=False).stdout]

    def healthy(self, ns: str) -> bool:
        """The balancer's HAProxy serves both backends and lbadapter told keepalived so."""
        fault = self.state_dirs[ns] / "haproxy-fault"
        if not fault.exists() or fault.read_text().strip() != "0":
            return False
        want = {f"b{i}" for i in range(len(self.backends))}
        return served_by(self.lan.ip(ns), 8) == want

    def log(self, name: str) -> str:
        path = self.group.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""


def get(host: str, timeout: float, jar: dict[str, str] | None = None) -> str:
    """One request on a new connection: the backend's name; raises OSError on failure.
    ``jar``: a sticky client's cookie (sent, and kept from ``Set-Cookie``)."""
    conn = http.client.HTTPConnection(host, 80, timeout=timeout)
    headers = {"Connection": "close"}
    if jar:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
    try:
        conn.request("GET", "/", headers=headers)
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace").strip()
        if resp.status != 200:
            raise OSError(f"HTTP {resp.status}")
        if jar is not None:
            for header in resp.headers.get_all("Set-Cookie") or ():
                name, _, rest = header.partition("=")
                jar[name.strip()] = rest.split(";", 1)[0]
        return body
    except (http.client.HTTPException, ValueError) as exc:
        raise OSError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        conn.close()


def served_by(host: str, count: int) -> set[str]:
    seen = set()
    for _ in range(count):
        try:
            seen.add(get(host, 2.0))
        except OSError:
            seen.add("error")
    return seen


# ------------------------------------------------------------------ the clients


@dataclass
class Request:
    started: float
    ended: float
    ok: bool
    answer: str
    client: int = 0


@dataclass
class Load:
    """``CLIENTS`` threads sending requests back to back, each on a new connection."""

    host: str
    requests: list[Request] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def _client(self, client: int) -> None:
        """A sticky client: it keeps the cookie HAProxy gives it (``--sticky cookie``)."""
        jar: dict[str, str] = {}
        for _ in range(1_000_000):  # bounded: stopped by the test long before
            if self.stop.is_set():
                return
            started = time.monotonic()
            try:
                answer, ok = get(self.host, REQUEST_TIMEOUT, jar), True
            except OSError as exc:
                answer, ok = f"{type(exc).__name__}: {exc}", False
            self.requests.append(Request(started, time.monotonic(), ok, answer, client))
            time.sleep(0.005)

    def __enter__(self) -> Load:
        for client in range(CLIENTS):
            thread = threading.Thread(target=self._client, args=(client,), daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(REQUEST_TIMEOUT + 2)


def first_answer_after(host: str, since: float, limit: float) -> float | None:
    """Seconds from ``since`` until a new connection to ``host`` is answered (polled with
    a short connect timeout, so the figure is not TCP's SYN backoff); None after ``limit``."""
    deadline = since + limit
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, 80), timeout=0.1) as sock:
                sock.settimeout(1.0)
                sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
                if sock.recv(64).split(b" ")[1:2] == [b"200"]:
                    return time.monotonic() - since
        except OSError:
            time.sleep(0.005)
    return None


# ------------------------------------------------------------------ fixtures


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    why = _why_not()
    if why:
        pytest.skip(why)
    state = short_state_dir("vip")  # HAProxy's unix socket paths are limited
    group = ProcessGroup(tmp_path)
    lan = netns.Lan(4)
    try:
        c = Cluster(lan, group, state)
        c.start(unicast=request.node.get_closest_marker("unicast") is not None)
        yield c
    finally:
        group.stop_all(grace=15.0)
        lan.close()
        shutil.rmtree(state, ignore_errors=True)


def ready(c: Cluster) -> tuple[str, str]:
    """Wait until both balancers serve both backends and one holds the VIP: (active, standby)."""
    try:
        wait_for(lambda: all(c.healthy(ns) for ns in c.balancers), 60, interval=0.5,
                 what="both balancers serving both backends")
        wait_for(lambda: len(c.holders()) == 1, 20, interval=0.2, what="one VIP holder")
        wait_for(lambda: served_by(c.vip, 6) == {"b0", "b1"}, 10, interval=0.2,
                 what="the VIP reaching both backends")
    except AssertionError:
        raise AssertionError("cluster not ready; logs:\n"
                             + "\n".join(c.log(f"lb{i}") for i in range(2))) from None
    active = c.holders()[0]
    standby = next(ns for ns in c.balancers if ns != active)
    return active, standby


# ------------------------------------------------------------------ tests


@dataclass
class Failover:
    recovered: float
    killed: list[int]
    requests: list[Request]
    #: When the kill began, and when the host was cut off (``ip link`` takes a few ms).
    killed_at: float
    cut_at: float

    def split(self) -> tuple[list[Request], list[Request], list[Request], list[Request]]:
        """(done before the kill, in flight at it, sent after it, failed); a request
        sent while the cable was being pulled may have reached the host: in flight."""
        return ([r for r in self.requests if r.ended < self.killed_at],
                [r for r in self.requests if r.started < self.cut_at
                 and r.ended >= self.killed_at],
                [r for r in self.requests if r.started >= self.cut_at],
                [r for r in self.requests if not r.ok])

    def kept_backend(self) -> list[bool]:
        """Per sticky client: whether every answer after the move came from the backend
        it was pinned to before the kill."""
        before, _, after, _ = self.split()
        kept = []
        for client in sorted({r.client for r in self.requests}):
            pinned = {r.answer for r in before if r.client == client and r.ok}
            later = {r.answer for r in after if r.client == client and r.ok}
            kept.append(len(pinned) == 1 and later <= pinned and bool(later))
        return kept

    def report(self, title: str) -> None:
        before, in_flight, after, failed = self.split()
        gap = [r for r in after if r.started < self.killed_at + self.recovered]
        cut = (f" (cable pulled in {(self.cut_at - self.killed_at) * 1000:.0f} ms)"
               if self.cut_at > self.killed_at else "")
        print(f"\n{title}: killed {len(self.killed)} processes of the active balancer{cut}; "
              f"the VIP answered from the standby {self.recovered:.2f} s later")
        print(f"  requests: {len(self.requests)} ({len(before)} before the kill, "
              f"{len(in_flight)} in flight at the kill, {len(after)} after); failed: "
              f"{len(failed)} ({sum(not r.ok for r in in_flight)} of those in flight)")
        print(f"  sent while the address moved: {len(gap)}, {sum(r.ok for r in gap)} answered, "
              f"slowest {max((r.ended - r.started for r in gap), default=0):.2f} s")
        kept = self.kept_backend()
        print(f"  sticky clients that kept their backend across the move: "
              f"{sum(kept)} of {len(kept)}")
        for r in failed[:10]:
            print(f"  failed: sent {r.started - self.killed_at:+.3f} s, after "
                  f"{r.ended - r.started:.2f} s: {r.answer}")


def kill_active(c: Cluster, active: str, unplug: bool) -> Failover:
    """Kill the active balancer under load; measure until the standby has served a while."""
    with Load(c.vip) as load:
        wait_for(lambda: sum(r.ok for r in load.requests) >= 100, 20, what="warm-up traffic")
        killed_at = time.monotonic()
        if unplug:
            c.lan.unplug(active)  # first: a dead host sends nothing more (no VRRP goodbye)
        cut_at = time.monotonic() if unplug else killed_at
        killed = c.lan.kill_all(active)
        recovered = first_answer_after(c.vip, killed_at, 10.0)
        assert recovered is not None, "the VIP did not answer within 10 s of the kill"
        # keep the load on the standby a while: nothing may fail after the move, and
        # every client is heard from (one whose request was cut at the kill waits for
        # TCP's reset, seconds after the others are being served)

        def served_after_the_move() -> bool:
            after = [r for r in load.requests if r.ok and r.started > killed_at + recovered]
            return len(after) >= 300 and all(
                sum(r.client == client for r in after) >= 10 for client in range(CLIENTS))

        wait_for(served_after_the_move, 30, what="traffic after the move, from every client")
    return Failover(recovered, killed, list(load.requests), killed_at, cut_at)


def test_vip_moves_to_the_standby_when_the_active_host_dies(cluster: Cluster) -> None:
    c = cluster
    active, standby = ready(c)
    result = kill_active(c, active, unplug=True)
    result.report("VIP failover, host death")
    before, in_flight, after, failed = result.split()
    assert result.recovered <= FAILOVER_BOUND, f"the VIP took {result.recovered:.2f} s to move"
    assert standby in c.holders()  # (the dead host keeps its stale copy, unplugged)
    assert not [r for r in before if not r.ok], "requests failed before the kill"
    assert all(r in in_flight for r in failed), "only requests in flight at the kill may fail"
    assert len(failed) <= CLIENTS
    # Both balancers give a backend the same cookie: every sticky client keeps its own.
    assert all(result.kept_backend()), "a sticky client changed backend with the VIP"
    assert {r.answer for r in after if r.ok} <= {"b0", "b1"}

    # Stopping lbadapter stops keepalived, which gives the address back.
    keepalived_pid = int((c.state_dirs[standby] / "keepalived.pid").read_text().split()[0])
    c.adapters[standby].send_signal(signal.SIGTERM)
    assert c.adapters[standby].wait(30) == 0
    assert standby not in c.holders()
    assert not Path(f"/proc/{keepalived_pid}").exists()


@pytest.mark.unicast
def test_vip_moves_when_only_the_processes_die(cluster: Cluster) -> None:
    """The namespace's kernel lives on: it still holds the address (keepalived had no
    time to remove it) and refuses connections until the standby's gratuitous ARPs
    reach the client. Those refusals are the failures here, all before the move.
    This pair speaks VRRP by unicast (``vip_unicast_peers``), the other by multicast."""
    c = cluster
    active, standby = ready(c)
    result = kill_active(c, active, unplug=False)
    result.report("VIP failover, processes killed, kernel alive")
    before, _, after, failed = result.split()
    assert result.recovered <= FAILOVER_BOUND, f"the VIP took {result.recovered:.2f} s to move"
    assert standby in c.holders()
    assert not [r for r in before if not r.ok], "requests failed before the kill"
    late = [r for r in failed if r.started > result.killed_at + result.recovered]
    assert not late, "requests failed after the VIP moved"
    assert {r.answer for r in after if r.ok} == {"b0", "b1"}
