"""Agent processes for benchmarks: real ``serf`` and swimlib agents on loopback.

Why not ``tests/integration/procs.py``: benchmarks must time events from the
agents' own logs, so every agent's stdout is piped to a reader thread that
stamps each line on arrival (``time.monotonic()``), parses the Serf log lines
that mark membership changes, and wakes waiters through one shared condition.
Waiting is therefore event-driven (no polling of ``serf members``), and every
wait is bounded. Every process is remembered by PID and killed by PID.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from swimlib.testing import send_signal, spawn

SERF = shutil.which("serf") or "/usr/bin/serf"

#: ``serf: EventMemberJoin: n2 127.0.0.1`` and memberlist's failure lines -> kind.
_EVENT_RE = re.compile(r"\bserf: EventMember(Join|Leave|Failed|Update|Reap): (\S+)")
_SUSPECT_RE = re.compile(r"\bmemberlist: Suspect (\S+) has failed")
_DEAD_RE = re.compile(r"\bmemberlist: Marking (\S+) as failed")
_READY_RE = re.compile(r"^==> (?:Serf|swimlib) agent running!")
_KINDS = {"Join": "join", "Leave": "leave", "Failed": "failed", "Update": "update",
          "Reap": "reap"}


def parse_line(line: str) -> tuple[str, str] | None:
    """(kind, subject) for a log line that marks a membership change, else None.

    Kinds: join, leave, failed, update, reap (``serf: EventMember*``), suspect
    and dead (memberlist's ``Suspect X has failed`` / ``Marking X as failed``),
    and ready (the agent's ``==> ... agent running!`` banner, subject "").
    """
    m = _EVENT_RE.search(line)
    if m:
        return _KINDS[m.group(1)], m.group(2)
    m = _SUSPECT_RE.search(line)
    if m:
        return "suspect", m.group(1)
    m = _DEAD_RE.search(line)
    if m:
        return "dead", m.group(1)
    if _READY_RE.match(line):
        return "ready", ""
    return None


def precompile() -> None:
    """Write swimlib's bytecode before agents start, so none compiles its sources.

    A pip-installed swimlib comes compiled; a source checkout under
    ``PYTHONDONTWRITEBYTECODE=1`` (set on this project's machines) would have
    every agent compile ~30 modules, a third of its start-up CPU, and fifty at
    once keep two cores busy for seconds. compileall writes regardless.
    """
    import compileall

    import lbadapter
    import swimlib

    for package in (swimlib, lbadapter):
        compileall.compile_dir(str(Path(package.__file__ or "").parent), quiet=2)


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid``, in ns resolution (/proc/PID/task/*/schedstat).

    /proc/PID/stat counts 10 ms ticks: coarser than serf's whole start-up,
    and than an idle agent's CPU over a 20 s window.
    """
    total_ns = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total_ns += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total_ns / 1e9


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when both UDP and TCP can bind ``port`` right now."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            if kind == socket.SOCK_STREAM:  # as the agents' listeners: TIME_WAIT is no obstacle
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


@dataclass
class Impl:
    """How to start one implementation's agent (argv builder) and make it leave."""

    name: str
    #: (node, gossip port, rpc port, join address or None, tags) -> argv
    argv: Callable[[str, int, int, str | None, dict[str, str]], list[str]]
    env: dict[str, str] = field(default_factory=dict)


def serf_argv(node: str, port: int, rpc: int, join: str | None,
              tags: dict[str, str]) -> list[str]:
    """The anchor's command line (serf-anchor.md), without the event handler."""
    argv = [SERF, "agent", f"-node={node}", f"-bind=127.0.0.1:{port}",
            f"-rpc-addr=127.0.0.1:{rpc}", "-log-level=info", "-profile=lan"]
    argv += [f"-tag={k}={v}" for k, v in tags.items()]
    if join:
        argv.append(f"-join={join}")
    return argv


def _swimlib_command() -> list[str]:
    """The ``swimlib`` command as installed (a console script: what operators
    run, and 3 ms of ``runpy`` cheaper to start than ``python -m``)."""
    script = Path(sys.executable).with_name("swimlib")
    return [sys.executable, str(script)] if script.is_file() else [sys.executable, "-m",
                                                                  "swimlib.cli"]


#: How benchmarks start the CLI: ``SWIMLIB_COMMAND + ["agent", ...]``.
SWIMLIB_COMMAND: list[str] = _swimlib_command()


def swimlib_argv(node: str, port: int, rpc: int, join: str | None,
                 tags: dict[str, str]) -> list[str]:
    """``swimlib agent`` with the same settings as the serf agents."""
    argv = [*SWIMLIB_COMMAND, "agent", "--node", node,
            "--bind", f"127.0.0.1:{port}", "--rpc-addr", f"127.0.0.1:{rpc}",
            "--log-level", "info", "--profile", "lan"]
    for k, v in tags.items():
        argv += ["--tag", f"{k}={v}"]
    if join:
        argv += ["--join", join]
    return argv


#: Runs ``swimlib.cli`` with cProfile (CPU clock) armed by SIGUSR1 and dumped on SIGUSR2,
#: so a profile covers only an idle window: argv = [python, -c, this, PATH, agent, ...].
PROFILE_WRAPPER = """
import cProfile, runpy, signal, sys, time
path = sys.argv.pop(1)
prof = cProfile.Profile(time.process_time)
def start(*_):
    prof.enable()
def stop(*_):
    prof.disable()
    prof.dump_stats(path)
signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, stop)
runpy.run_module("swimlib.cli", run_name="__main__", alter_sys=True)
"""


def profiled_argv(argv: list[str], path: Path) -> list[str]:
    """Wrap a :data:`SWIMLIB_COMMAND` argv in :data:`PROFILE_WRAPPER`."""
    assert argv[:len(SWIMLIB_COMMAND)] == SWIMLIB_COMMAND, argv
    return [argv[0], "-c", PROFILE_WRAPPER, str(path), *argv[len(SWIMLIB_COMMAND):]]


SERF_IMPL = Impl("serf", serf_argv)
SWIMLIB_IMPL = Impl("swimlib", swimlib_argv, env={"PYTHONUNBUFFERED": "1"})


class AgentProc:
    """One agent process plus the stamped membership events its log showed.

    ``times[(kind, subject)]`` is the sorted list of arrival stamps; the
    reader thread appends under ``cond`` and bumps ``version`` so waiters
    only re-examine agents whose log changed.
    """

    def __init__(self, node: str, port: int, rpc: int, cond: threading.Condition,
                 logfile: IO[str]) -> None:
        self.node = node
        self.port = port
        self.rpc = rpc
        self.cond = cond
        self.logfile = logfile
        self.popen: subprocess.Popen[str] | None = None
        self.started = 0.0
        self.exited_at: float | None = None
        self.version = 0
        self.times: dict[tuple[str, str], list[float]] = {}
        self.tail: list[tuple[float, str]] = []  # last lines, for crash excerpts
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        """Spawn (a fresh process each time: restarts keep the same name and ports)."""
        self.popen = spawn(argv, log=None, env=env, cwd=cwd)  # a line pipe, own session
        self.started = time.monotonic()
        self.exited_at = None
        stream = self.popen.stdout
        assert stream is not None
        self._reader = threading.Thread(target=self._read, args=(stream, self.popen),
                                        name=f"log-{self.node}", daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str], popen: subprocess.Popen[str]) -> None:
        for line in stream:
            now = time.monotonic()
            parsed = parse_line(line)
            with self.cond:
                with contextlib.suppress(ValueError):
                    self.logfile.write(f"{now:.3f} {self.node}[{popen.pid}] {line}")
                self.tail.append((now, line.rstrip("\n")))
                del self.tail[:-60]
                if parsed is not None:
                    self.times.setdefault(parsed, []).append(now)
                self.version += 1
                self.cond.notify_all()
        with self.cond:
            if popen is self.popen:
                self.exited_at = time.monotonic()
            self.version += 1
            self.cond.notify_all()

    def first(self, kind: str, subject: str, after: float) -> float | None:
        """Stamp of the first ``kind`` line about ``subject`` at or after ``after``."""
        stamps = self.times.get((kind, subject))
        if not stamps:
            return None
        i = bisect.bisect_left(stamps, after)
        return stamps[i] if i < len(stamps) else None

    def join_complete(self, names: Iterable[str], after: float) -> float | None:
        """When this agent's log had shown EventMemberJoin for every name (since ``after``)."""
        latest = after
        for name in names:
            t = self.first("join", name, after)
            if t is None:
                return None
            latest = max(latest, t)
        return latest

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen is not None:
            send_signal(self.popen, sig)

    def reap(self, timeout: float = 5.0) -> None:
        """SIGKILL by PID and wait (bounded); the reader thread ends at EOF."""
        if self.popen is None:
            return
        self.kill(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)
        if self._reader is not None:
            self._reader.join(timeout)


class Cluster:
    """N agents of one implementation: gossip ports base+i, RPC ports base+100+i."""

    def __init__(self, impl: Impl, n: int, base_port: int, workdir: Path,
                 profile: tuple[int, Path] | None = None) -> None:
        if n > 100:
            raise ValueError("at most 100 agents per cluster (port layout)")
        self.impl = impl
        self.n = n
        self.base = base_port
        self.workdir = workdir
        self.cond = threading.Condition()
        workdir.mkdir(parents=True, exist_ok=True)
        self.logfile: IO[str] = open(workdir / f"{impl.name}-n{n}.log", "w")  # noqa: SIM115
        self.agents = [AgentProc(f"n{i}", base_port + i, base_port + 100 + i, self.cond,
                                 self.logfile) for i in range(n)]
        self.extra_pids: list[subprocess.Popen[bytes]] = []
        #: (agent index, stats path): that agent runs under PROFILE_WRAPPER (swimlib only).
        self.profile = profile

    @property
    def names(self) -> list[str]:
        return [a.node for a in self.agents]

    @property
    def seed_addr(self) -> str:
        return f"127.0.0.1:{self.base}"

    def ports_free(self) -> bool:
        return all(port_free(a.port) and port_free(a.rpc) for a in self.agents)

    def start(self, i: int, join: bool = True) -> AgentProc:
        """Start agent i; with ``join`` (and i > 0) it joins n0 on the command line."""
        a = self.agents[i]
        tags = {"role": "balancer" if i == 0 else "backend"}
        seed = self.seed_addr if join and i > 0 else None
        argv = self.impl.argv(a.node, a.port, a.rpc, seed, tags)
        if self.profile is not None and self.profile[0] == i:
            argv = profiled_argv(argv, self.profile[1])
        a.start(argv, self.impl.env, self.workdir)
        return a

    def wait_agents(self, agents: Iterable[AgentProc],
                    done: Callable[[AgentProc], object], timeout: float) -> bool:
        """Block until ``done(agent)`` is truthy for every agent, woken by log lines.

        ``done`` runs under the shared lock, only for agents whose log changed.
        Returns False at the timeout (and when an agent we wait for has exited).
        """
        pending = list(agents)
        seen: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                still = []
                for a in pending:
                    if seen.get(id(a)) == a.version:
                        still.append(a)
                        continue
                    seen[id(a)] = a.version
                    if not done(a):
                        still.append(a)
                pending = still
                if not pending:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(min(remaining, 1.0))

    def run_cli(self, argv: list[str]) -> subprocess.Popen[bytes]:
        """A short-lived client process (e.g. ``serf leave``), remembered for cleanup."""
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        self.extra_pids.append(p)
        return p

    def excerpt(self, agent: AgentProc, lines: int = 8) -> list[str]:
        with self.cond:
            return [line for _, line in agent.tail[-lines:]]

    def stop_all(self) -> None:
        """Kill every process this cluster started, by PID; bounded waits."""
        for a in self.agents:
            a.kill(signal.SIGKILL)
        for p in self.extra_pids:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
        for a in self.agents:
            a.reap()
        for p in self.extra_pids:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
        with self.cond:
            self.logfile.close()
