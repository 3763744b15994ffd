"""keepalived's life under ``lbadapter run --vip`` (one balancer in a test namespace).

What an operator relies on: the address is held only while HAProxy serves
and lbadapter runs; keepalived is restarted when it dies; a restarted
lbadapter takes over what a killed one left; stopping lbadapter releases
the address; a bad interface is a clear error before anything starts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lbadapter.testing import short_state_dir
from swimlib.testing import ProcessGroup
from tests.integration import netns
from tests.integration.procs import wait_for
from tests.integration.test_vip_failover import _why_not

REPO = Path(__file__).resolve().parents[2]
ENV = {"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}

pytestmark = pytest.mark.slow


class Balancer:
    """One ``lbadapter run --vip`` in a namespace of its own."""

    def __init__(self, lan: netns.Lan, group: ProcessGroup, state: Path) -> None:
        self.lan, self.group, self.state = lan, group, state
        self.ns = lan.names[0]
        self.vip = f"{lan.subnet}.200"
        self.runs = 0

    def argv(self, interface: str = "eth0") -> list[str]:
        return [*self.lan.exec_prefix(self.ns), sys.executable, "-m", "lbadapter.cli", "run",
                "--node", "lb", "--bind", f"{self.lan.ip(self.ns)}:7946", "--listen",
                "0.0.0.0:80", "--stats", "0.0.0.0:1936", "--state-dir", str(self.state),
                "--vip", f"{self.vip}/24", "--vip-interface", interface]

    def start(self) -> subprocess.Popen[bytes]:
        self.runs += 1
        return self.group.start("lb", self.argv(), env=ENV, log_name=f"lb{self.runs}").popen

    def holds_vip(self) -> bool:
        out = subprocess.run(["ip", "-n", self.ns, "-o", "-4", "addr", "show", "dev", "eth0"],
                             capture_output=True, text=True, timeout=10, check=False).stdout
        return f"inet {self.vip}/" in out

    def pid(self, name: str) -> int | None:
        """PID from a pid file in the state dir, if that process runs."""
        try:
            pid = int((self.state / name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

    def haproxy_pids(self) -> list[int]:
        """HAProxy processes in the namespace (master and workers)."""
        return [pid for pid in self.lan.pids(self.ns)
                if Path(f"/proc/{pid}/comm").read_text().strip() == "haproxy"]

    def log(self) -> str:
        path = self.group.workdir / f"lb{self.runs}.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def balancer(tmp_path: Path) -> Iterator[Balancer]:
    why = _why_not()
    if why:
        pytest.skip(why)
    state = short_state_dir("vipl")
    group = ProcessGroup(tmp_path)
    lan = netns.Lan(1)
    try:
        yield Balancer(lan, group, state)
    finally:
        group.stop_all(grace=15.0)
        lan.close()  # also SIGKILLs, by PID, what a killed lbadapter left in the namespace
        shutil.rmtree(state, ignore_errors=True)


def test_the_address_follows_haproxy_keepalived_and_lbadapter(balancer: Balancer) -> None:
    b = balancer
    adapter = b.start()
    wait_for(b.holds_vip, 30, interval=0.1, what="the VIP")
    keepalived = b.pid("keepalived.pid")
    assert keepalived is not None

    # HAProxy dies: the address goes at once, and comes back with the restarted HAProxy.
    for pid in b.haproxy_pids():
        with_signal(pid, signal.SIGKILL)
    wait_for(lambda: not b.holds_vip(), 5, interval=0.05, what="the VIP released")
    wait_for(b.holds_vip, 30, interval=0.1, what="the VIP back after HAProxy's restart")
    assert "haproxy NOT healthy" in b.log() and "Entering FAULT STATE" in b.log()

    # keepalived dies: lbadapter starts it again.
    with_signal(keepalived, signal.SIGKILL)
    wait_for(lambda: b.pid("keepalived.pid") not in (None, keepalived), 15, interval=0.1,
             what="a new keepalived")
    wait_for(b.holds_vip, 30, interval=0.1, what="the VIP back after keepalived's restart")
    keepalived = b.pid("keepalived.pid")
    assert "keepalived exited" in b.log()

    # lbadapter alone is killed: its keepalived gives the address away (vrrp_script).
    adapter.send_signal(signal.SIGKILL)
    adapter.wait(10)
    wait_for(lambda: not b.holds_vip(), 10, interval=0.1, what="the VIP released")
    assert b.pid("keepalived.pid") == keepalived  # orphaned, in FAULT

    # A new lbadapter stops the orphan and holds the address again.
    adapter = b.start()
    wait_for(lambda: b.pid("keepalived.pid") not in (None, keepalived), 20, interval=0.1,
             what="a new keepalived")
    assert not Path(f"/proc/{keepalived}").exists() or _zombie(keepalived)
    wait_for(b.holds_vip, 30, interval=0.1, what="the VIP held by the new lbadapter")
    assert "an earlier keepalived" in b.log()

    # SIGTERM: keepalived stops and the address is released.
    keepalived = b.pid("keepalived.pid")
    adapter.send_signal(signal.SIGTERM)
    assert adapter.wait(30) == 0
    assert not b.holds_vip()
    assert keepalived is not None and not Path(f"/proc/{keepalived}").exists()
    assert b.lan.pids(b.ns) == []


def test_missing_interface_is_a_clear_error(balancer: Balancer) -> None:
    b = balancer
    child = b.group.start("bad", b.argv(interface="eth9"), env=ENV)
    assert child.popen.wait(30) == 1
    out = (b.group.workdir / "bad.log").read_text()
    assert out == ("lbadapter: error: --vip-interface eth9: no such interface in this network "
                   "namespace\n"), out
    assert not b.state.joinpath("keepalived.conf").exists() and b.lan.pids(b.ns) == []


def with_signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
