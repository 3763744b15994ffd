"""Running HAProxy: the master-worker process as our child, restarted if it dies.

HAProxy runs as ``haproxy -W -S master.sock,mode,600 -f haproxy.cfg`` in its own
session (a terminal's Ctrl-C reaches only us; we decide when it stops). If
the master exits (it does when its worker dies: ``exit-on-failure``), it is
started again with backoff from the file on disk, which always holds the
current members. Reloads are confirmed by a new worker PID in ``show proc``,
never by the (resettable) ``[failed: N]`` counter alone.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.abc

from lbadapter.child import read_lines, restart_forever, spawn, stop_child, stop_pid
from lbadapter.haproxy import CLIError, MasterClient, ProcInfo, cli_exchange

__all__ = ["ReloadFailed", "Supervisor"]

log = logging.getLogger("lbadapter.haproxy")

#: How long a fresh master may take until both CLIs answer.
READY_TIMEOUT = 15.0
#: How long a reload may take until a new worker shows up.
RELOAD_TIMEOUT = 15.0


class ReloadFailed(Exception):
    """HAProxy did not come up with a new worker (the old one keeps serving)."""


def _log_line(line: str) -> None:
    if "[ALERT]" in line or "Loading failure" in line:
        log.error("haproxy: %s", line)
    elif "[WARNING]" in line:
        log.warning("haproxy: %s", line)
    else:
        log.info("haproxy: %s", line)


class Supervisor:
    """Owns the HAProxy master process for the lifetime of :meth:`run`."""

    def __init__(self, haproxy: str, config_path: Path, master_socket: Path,
                 admin_socket: Path, on_spawn: Callable[[], None] = lambda: None,
                 on_ready: Callable[[], None] = lambda: None) -> None:
        self.haproxy = haproxy
        self.config_path = config_path.absolute()
        self.master_socket = master_socket.absolute()
        self.admin_socket = admin_socket.absolute()
        self.master = MasterClient(self.master_socket)
        self._on_spawn = on_spawn
        self._on_ready = on_ready
        self._process: anyio.abc.Process | None = None
        #: True while a master runs and both sockets answered since its start.
        self.ready = False
        #: Masters started so far; reloads confirmed and failed.
        self.starts = 0
        self.reloads = 0
        self.reload_failures = 0
        self.last_proc: ProcInfo | None = None
        self._ready_event = anyio.Event()

    @property
    def argv(self) -> list[str]:
        # The master CLI can reload and stop everything: owner-only, like the admin socket.
        return [self.haproxy, "-W", "-S", f"{self.master_socket},mode,600", "-f",
                str(self.config_path)]

    @property
    def master_pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def wait_ready(self) -> None:
        await self._ready_event.wait()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """Run HAProxy until cancelled (then SIGTERM; SIGKILL after 5 s)."""
        await self._stop_stale()
        task_status.started()
        await restart_forever("haproxy master", self._run_once, log)

    async def _stop_stale(self) -> None:
        """Stop a master left over from an earlier run (we were SIGKILLed): it still
        listens on our ports (SO_REUSEPORT) with stale servers."""
        try:
            info = await self.master.show_proc()
        except CLIError:
            return
        pid = info.master_pid
        log.warning("an earlier haproxy master (pid %d) still answers on %s; stopping it",
                    pid, self.master_socket)
        await stop_pid(pid, "haproxy", log)

    async def _run_once(self) -> int | None:
        self._on_spawn()
        self.starts += 1
        proc = await spawn(self.argv, "haproxy master", log)
        if proc is None:
            return None
        self._process = proc
        try:
            async with anyio.create_task_group() as tg:
                if proc.stdout is not None:
                    tg.start_soon(self._pump, proc.stdout)
                tg.start_soon(self._become_ready)
                await proc.wait()
                tg.cancel_scope.cancel()
        finally:
            self.ready = False
            self._ready_event = anyio.Event()
            with anyio.CancelScope(shield=True):  # cancelled or not, the master goes with us
                await stop_child(proc, "haproxy master", log)
                await proc.aclose()  # closes our end of its output pipe
        return proc.returncode

    async def _pump(self, stream: anyio.abc.ByteReceiveStream) -> None:
        """HAProxy's stdout/stderr, line by line, into our log."""
        await read_lines(stream, _log_line)

    async def _become_ready(self) -> None:
        """Poll both CLIs (bounded) until they answer; then tell the adapter."""
        deadline = anyio.current_time() + READY_TIMEOUT
        warned = False
        while True:
            try:
                self.last_proc = await self.master.show_proc()
                info = await cli_exchange(self.admin_socket, "show info")
                if self.last_proc.workers and "Pid:" in info:
                    break
            except CLIError:
                pass
            if anyio.current_time() > deadline and not warned:
                warned = True
                log.error("haproxy started but %s or %s does not answer; does the template "
                          "declare 'stats socket {{ admin_socket }} level admin'?",
                          self.master_socket, self.admin_socket)
            await anyio.sleep(0.1 if not warned else 2.0)
        self.ready = True
        self._ready_event.set()
        log.info("haproxy ready: master %d, worker(s) %s", self.last_proc.master_pid,
                 ",".join(map(str, self.last_proc.workers)))
        self._on_ready()

    async def _show_proc_retrying(self, deadline: float) -> ProcInfo:
        """``show proc`` with backoff: the master CLI resets while it re-execs."""
        delay = 0.05
        while True:
            try:
                info = await self.master.show_proc()
                self.last_proc = info
                return info
            except CLIError as exc:
                if anyio.current_time() + delay > deadline:
                    raise ReloadFailed(f"master CLI unavailable: {exc}") from None
            await anyio.sleep(delay)
            delay = min(1.0, delay * 2)

    async def reload(self) -> ProcInfo:
        """Reload (SIGUSR2) and wait for a new worker; raises :class:`ReloadFailed`."""
        proc = self._process
        if proc is None or proc.returncode is not None:
            raise ReloadFailed("haproxy is not running")
        deadline = anyio.current_time() + RELOAD_TIMEOUT
        before = await self._show_proc_retrying(deadline)
        try:
            proc.send_signal(signal.SIGUSR2)
        except ProcessLookupError:  # exited meanwhile (the run loop restarts it)
            raise ReloadFailed("haproxy is not running") from None
        delay = 0.05
        while anyio.current_time() < deadline:
            await anyio.sleep(delay)
            delay = min(1.0, delay * 1.5)
            try:
                info = await self._show_proc_retrying(deadline)
            except ReloadFailed:
                break
            if set(info.workers) - set(before.workers):
                self.reloads += 1
                log.info("haproxy reloaded: worker(s) %s (was %s)",
                         ",".join(map(str, info.workers)), ",".join(map(str, before.workers)))
                return info
            if info.failed > before.failed:
                self.reload_failures += 1
                raise ReloadFailed("haproxy reported 'Loading failure!': the old worker "
                                   "keeps serving (see the [ALERT] lines above)")
        self.reload_failures += 1
        raise ReloadFailed(f"no new worker within {RELOAD_TIMEOUT:.0f} s")
