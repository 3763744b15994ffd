"""Processes that tests, benchmarks and scripts start, and how they are stopped.

One rule set for every harness in the repository: each process runs in its
own session (so a signal to our own process group never reaches it, and
what it starts in turn can be found by session), its output goes to a log
file (or a pipe, for a reader that stamps lines as they come), it is
stopped by PID -- SIGTERM, then SIGKILL after a bounded grace -- and every
wait is bounded. :class:`ProcessGroup` keeps the processes of one test or
run and stops them all at the end, their children included.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Seconds a process gets after SIGKILL before we stop waiting for it.
_REAP_TIMEOUT = 5.0


def spawn(argv: list[str], *, log: Path | None, env: Mapping[str, str] | None = None,
          cwd: Path | None = None, append: bool = False) -> subprocess.Popen[Any]:
    """Start ``argv`` in its own session; output to ``log`` (appended if asked),
    or to a text pipe when ``log`` is None."""
    full_env = {**os.environ, **(env or {})}
    if log is None:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=cwd, env=full_env, text=True,
                                errors="replace", bufsize=1, start_new_session=True)
    with open(log, "ab" if append else "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=cwd, env=full_env,
                                start_new_session=True)


def send_signal(popen: subprocess.Popen[Any], sig: int) -> None:
    """Signal a process by PID if it is still running."""
    if popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(popen.pid, sig)


def stop_process(popen: subprocess.Popen[Any], timeout: float = 10.0,
                 sig: int = signal.SIGTERM) -> int | None:
    """``sig`` (SIGTERM), wait up to ``timeout``, then SIGKILL: gone when this returns
    (None only if even SIGKILL did not end it in time). Returns the exit code."""
    send_signal(popen, sig)
    try:
        return popen.wait(timeout)
    except subprocess.TimeoutExpired:
        send_signal(popen, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        return popen.wait(_REAP_TIMEOUT)
    return None


def session_pids(sid: int) -> list[int]:
    """PIDs in session ``sid`` other than its leader: what a process we started
    in its own session started in turn (HAProxy under lbadapter)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 3 and int(fields[3]) == sid and int(entry) != sid:
            pids.append(int(entry))
    return pids


class Child:
    """One process of a :class:`ProcessGroup`."""

    def __init__(self, name: str, popen: subprocess.Popen[Any], log: Path | None) -> None:
        self.name = name
        self.popen = popen
        self.log = log

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        """Everything it wrote so far (its log file)."""
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_text(errors="replace")


class ProcessGroup:
    """Every process one test, benchmark run or demo starts; :meth:`stop_all` ends them."""

    def __init__(self, workdir: Path, env: Mapping[str, str] | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self._env = dict(env or {})
        self.children: list[Child] = []

    def start(self, name: str, argv: list[str], *, env: Mapping[str, str] | None = None,
              log_name: str | None = None, append: bool = False, pipe: bool = False,
              cwd: Path | None = None) -> Child:
        """Start ``argv``; its output goes to ``<workdir>/<log_name or name>.log``
        (or a text pipe with ``pipe``)."""
        log = None if pipe else self.workdir / f"{log_name or name}.log"
        popen = spawn(argv, log=log, env={**self._env, **(env or {})},
                      cwd=cwd or self.workdir, append=append)
        child = Child(name, popen, log)
        self.children.append(child)
        return child

    def stop(self, child: Child, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        return stop_process(child.popen, timeout, sig)

    def stop_all(self, grace: float = 10.0) -> None:
        """SIGTERM everything still running (newest first: an adapter then stops its
        HAProxy), wait up to ``grace`` in total, SIGKILL what is left, then every
        process left in their sessions."""
        running = [c.popen for c in reversed(self.children) if c.popen.poll() is None]
        for popen in running:
            send_signal(popen, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for popen in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(max(0.1, deadline - time.monotonic()))
            send_signal(popen, signal.SIGKILL)
        for child in self.children:
            for pid in session_pids(child.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for child in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(_REAP_TIMEOUT)
