"""End to end: ``lbadapter run`` as a real process, backends joined by real swimlib agents.

Each test runs once per event loop (``SWIMLIB_BACKEND=asyncio`` and ``trio``).

Everything on 127.0.0.1 with free ports; every process (adapter, agents,
HTTP backends) is started here and stopped here by PID, and HAProxy (the
adapter's child) must be gone once the adapter exits.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lbadapter.haproxy import up_servers
from lbadapter.testing import Processes, fetch, free_port, short_state_dir, stats_rows
from tests.integration.procs import Procs, wait_for

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
pytestmark = pytest.mark.skipif(not os.path.exists(HAPROXY),
                                reason="haproxy is not installed (apt-get install haproxy)")


@pytest.fixture
def state_dir() -> Iterator[Path]:
    path = short_state_dir("lbe2e")
    try:
        yield path
    finally:
        _kill_orphaned_haproxy(path)
        shutil.rmtree(path, ignore_errors=True)


def _kill_orphaned_haproxy(path: Path) -> None:
    """If the adapter died without stopping HAProxy, stop its master by PID."""
    try:
        pid = json.loads((path / "state.json").read_text())["haproxy"]["master_pid"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    try:
        ours = str(path) in Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return
    if ours and _alive(pid):  # the PID is still our HAProxy, not a reused one
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def procs(state_dir: Path) -> Iterator[Processes]:
    started = Processes(state_dir)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def agents(state_dir: Path) -> Iterator[Procs]:
    started = Procs(state_dir)
    try:
        yield started
    finally:
        started.stop_all()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _ready(state_dir: Path) -> bool:
    try:
        return bool(json.loads((state_dir / "state.json").read_text())["haproxy"]["ready"])
    except (OSError, ValueError, KeyError):
        return False


#: ``lbadapter run`` on each event loop (``SWIMLIB_BACKEND``).
LOOPS = pytest.mark.parametrize("loop", ["asyncio", "trio"])


@pytest.mark.slow
@LOOPS
def test_run_with_two_swimlib_backends(state_dir: Path, procs: Processes,
                                       agents: Procs, loop: str) -> None:
    gossip, fe, stats = free_port(), free_port(), ("127.0.0.1", free_port())
    adapter = procs.start("lbadapter", [
        sys.executable, "-m", "lbadapter.cli", "run", "--node", "lb",
        "--bind", f"127.0.0.1:{gossip}", "--listen", f"127.0.0.1:{fe}",
        "--stats", f"127.0.0.1:{stats[1]}", "--state-dir", str(state_dir),
        "--haproxy", HAPROXY, "--profile", "local", "--log-level", "debug"],
        env={"SWIMLIB_BACKEND": loop})

    def adapter_log() -> str:
        return procs.log("lbadapter")[-4000:]

    try:
        wait_for(lambda: adapter.poll() is None and stats_rows(stats) and _ready(state_dir),
                 20, what=f"HAProxy started by lbadapter run; log:\n{adapter_log()}")
        state = json.loads((state_dir / "state.json").read_text())
        master = state["haproxy"]["master_pid"]
        assert master and _alive(master)
        assert f"event loop: {loop} " in procs.log("lbadapter")

        joined_at = time.monotonic()
        http = {}
        for name in ("web-1", "web-2"):
            port = free_port()
            http[name] = procs.backend(f"http-{name}", port)
            wait_for(lambda p=port: _accepts(p), 10, what=f"http-{name} listening")
            agents.swimlib(name, "--tag", "role=backend", "--tag", f"port={port}",
                           "--profile", "local", join=f"127.0.0.1:{gossip}")
        wait_for(lambda: up_servers(stats_rows(stats), "app") >= {"web-1", "web-2"}, 15,
                 what=f"both backends UP; adapter log:\n{adapter_log()}")
        took = time.monotonic() - joined_at
        assert took < 10, f"backends took {took:.1f} s to be UP"
        bodies = {fetch(f"http://127.0.0.1:{fe}/")[1].strip() for _ in range(6)}
        assert bodies == {"http-web-1", "http-web-2"}

        status = subprocess.run([sys.executable, "-m", "lbadapter.cli", "status",
                                 "--state-dir", str(state_dir), "--json"],
                                capture_output=True, text=True, timeout=30)
        assert status.returncode == 0, status.stderr
        rows = {r["server"]: r for r in json.loads(status.stdout)["servers"]}
        assert rows["web-1"]["want"] == "ready" and rows["web-1"]["status"].startswith("UP")
        assert rows["web-2"]["admin"] == "ready"

        # graceful leave: drained, then removed from HAProxy
        web1 = next(p for p in agents.procs if p.name == "web-1")
        assert agents.stop(web1) == 0
        wait_for(lambda: "web-1" not in {r.get("svname") for r in stats_rows(stats)}, 15,
                 what=f"web-1 removed after its leave; adapter log:\n{adapter_log()}")
        assert "reconcile: drain app/web-1" in procs.log("lbadapter")
        assert fetch(f"http://127.0.0.1:{fe}/")[1].strip() == "http-web-2"

        # crash of the whole node (agent and its HTTP server): HAProxy's checks take it
        # out of rotation within seconds, membership (failed) then puts it in maintenance
        web2 = next(p for p in agents.procs if p.name == "web-2")
        agents.kill(web2)
        procs.stop(http["web-2"], signal.SIGKILL)
        # HAProxy's own checks stop sending it traffic long before gossip declares it failed
        wait_for(lambda: "web-2" not in up_servers(stats_rows(stats), "app"), 4,
                 what="web-2 DOWN by health checks")
        wait_for(lambda: "maint app/web-2" in procs.log("lbadapter"), 30,
                 what=f"web-2 in maintenance after failing; adapter log:\n{adapter_log()}")
    finally:
        code = procs.stop(adapter, signal.SIGTERM, timeout=20)
    assert code == 0, adapter_log()
    wait_for(lambda: not _alive(master), 10, what="HAProxy master to exit with the adapter")
    assert "caught SIGTERM" in procs.log("lbadapter")


@LOOPS
def test_run_start_errors_are_one_clear_line(state_dir: Path, loop: str) -> None:
    env = {**os.environ, "SWIMLIB_BACKEND": loop}
    base = [sys.executable, "-m", "lbadapter.cli", "run", "--listen",
            f"127.0.0.1:{free_port()}", "--stats", f"127.0.0.1:{free_port()}",
            "--state-dir", str(state_dir), "--haproxy", HAPROXY]
    template = state_dir / "t.j2"
    template.write_text("global\n    maxconn {{ nope }}\n")
    out = subprocess.run([*base, "--bind", f"127.0.0.1:{free_port()}", "--template",
                          str(template)], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1] == (
        f"lbadapter: error: no valid HAProxy config to start with: template {template}:2: "
        "UndefinedError: 'nope' is undefined")
    assert "Traceback" not in out.stderr

    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", port))
        out = subprocess.run([*base, "--bind", f"127.0.0.1:{port}"], capture_output=True,
                             text=True, timeout=60, env=env)
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1].startswith(
        f"lbadapter: error: cannot bind the gossip address 127.0.0.1:{port}")
