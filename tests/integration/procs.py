"""Real processes for integration tests: serf agents and swimlib agents on loopback.

Every process is started through :class:`Procs` (over the repository's one
process manager, :class:`swimlib.testing.ProcessGroup`), remembered by PID and
stopped by the test (SIGTERM, then SIGKILL after a grace period). Ports come
from :func:`swimlib.testing.free_port` (below the ephemeral range). Every wait is
bounded in time and count.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from swimlib.testing import Child, ProcessGroup, free_port, stop_process

SERF = shutil.which("serf") or "/usr/bin/serf"
HAVE_SERF = os.path.exists(SERF)
needs_serf = pytest.mark.skipif(not HAVE_SERF, reason="Debian's serf is not installed "
                                "(make test installs it when run as root)")


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05,
              what: str = "condition") -> Any:
    """Poll ``predicate`` until truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            break
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Proc(Child):
    """An agent: its process, and the addresses it serves."""

    def __init__(self, child: Child, rpc: str, gossip: str) -> None:
        super().__init__(child.name, child.popen, child.log)
        self.rpc = rpc
        self.gossip = gossip


class Procs:
    """Starts agents and guarantees they are stopped (use as a fixture)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.group = ProcessGroup(workdir)
        self.procs: list[Proc] = []

    def _spawn(self, name: str, argv: list[str], rpc: str, gossip: str,
               env: dict[str, str] | None = None) -> Proc:
        child = self.group.start(name, argv, env=env, log_name=f"{name}-{len(self.procs)}")
        proc = Proc(child, rpc, gossip)
        self.procs.append(proc)
        return proc

    def serf(self, name: str, *extra: str, join: str | None = None,
             port: int | None = None, rpc_port: int | None = None,
             host: str = "127.0.0.1", prefix: tuple[str, ...] = ()) -> Proc:
        """A serf agent; ``prefix`` runs it through another command (``ip netns exec``)."""
        port = port or free_port()
        rpc_port = rpc_port or free_port()
        argv = [*prefix, SERF, "agent", f"-node={name}", f"-bind={host}:{port}",
                f"-rpc-addr={host}:{rpc_port}", "-log-level=debug", *extra]
        if join:
            argv.append(f"-join={join}")
        proc = self._spawn(name, argv, f"{host}:{rpc_port}", f"{host}:{port}")
        wait_for(lambda: self.rpc_ready(proc), 10, what=f"serf agent {name} RPC")
        return proc

    def swimlib(self, name: str, *extra: str, join: str | None = None,
                port: int | None = None, rpc_port: int | None = None,
                wait: bool = True, env: dict[str, str] | None = None,
                host: str = "127.0.0.1", prefix: tuple[str, ...] = ()) -> Proc:
        """A swimlib agent; ``prefix`` as in :meth:`serf`."""
        port = port or free_port()
        rpc_port = rpc_port or free_port()
        argv = [*prefix, sys.executable, "-m", "swimlib.cli", "agent", "--node", name,
                "--bind", f"{host}:{port}", "--rpc-addr", f"{host}:{rpc_port}",
                "--log-level", "debug", *extra]
        if join:
            argv += ["--join", join]
        proc = self._spawn(name, argv, f"{host}:{rpc_port}", f"{host}:{port}", env=env)
        if wait:
            wait_for(lambda: self.rpc_ready(proc), 15, what=f"swimlib agent {name} RPC")
        return proc

    def swimlib_flags(self, name: str, *flags: str, port: int, rpc_port: int,
                      wait: bool = True) -> Proc:
        """``swimlib agent`` with exactly ``flags`` (a unit file's command line);
        ``port`` and ``rpc_port`` are the ones the flags bind."""
        argv = [sys.executable, "-m", "swimlib.cli", "agent", *flags]
        proc = self._spawn(name, argv, f"127.0.0.1:{rpc_port}", f"127.0.0.1:{port}")
        if wait:
            wait_for(lambda: self.rpc_ready(proc), 15, what=f"swimlib agent {name} RPC")
        return proc

    def serf_flags(self, name: str, *flags: str, port: int, rpc_port: int) -> Proc:
        """``serf agent`` with exactly ``flags``, as :meth:`swimlib_flags`."""
        proc = self._spawn(name, [SERF, "agent", *flags], f"127.0.0.1:{rpc_port}",
                           f"127.0.0.1:{port}")
        wait_for(lambda: self.rpc_ready(proc), 10, what=f"serf agent {name} RPC")
        return proc

    def rpc_ready(self, proc: Proc) -> bool:
        if not proc.alive():
            raise AssertionError(f"{proc.name} exited:\n{proc.output()[-3000:]}")
        host, port = proc.rpc.rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=0.5):
                return True
        except OSError:
            return False

    def members(self, proc: Proc, cli: str = "serf") -> dict[str, dict[str, Any]]:
        """``serf members -format=json`` (or ``swimlib members``) as name -> member."""
        if cli == "serf":
            argv = [SERF, "members", f"-rpc-addr={proc.rpc}", "-format=json"]
        else:
            argv = [sys.executable, "-m", "swimlib.cli", "members", "--rpc-addr", proc.rpc,
                    "--format", "json"]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        if out.returncode != 0:
            return {}
        return {m["name"]: m for m in json.loads(out.stdout)["members"]}

    def kill(self, proc: Proc, sig: int = signal.SIGKILL) -> None:
        if proc.alive():
            os.kill(proc.pid, sig)

    def stop(self, proc: Proc, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, then SIGKILL: the process is gone when this returns."""
        return stop_process(proc.popen, timeout)

    def stop_all(self) -> None:
        self.group.stop_all(grace=0.0)
