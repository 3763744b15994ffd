"""keepalived next to HAProxy: the floating address moves to a healthy balancer.

``lbadapter run --vip ADDR/PREFIX --vip-interface IFACE`` renders
``keepalived.conf`` from its settings only (:mod:`lbadapter.vrrp` parsed every
value; nothing comes from members), checks it with ``keepalived -t`` before
anything starts, and runs keepalived as its child the way HAProxy is run
(:mod:`lbadapter.supervisor`): in its own session, in the foreground
(``-n``), logging to us (``-l -G``), pid files in the state directory,
restarted with backoff when it exits, SIGTERM when we stop (keepalived then
sends a priority-0 advert and removes the address: the standby takes over
at once, while our HAProxy still serves what is in flight).

What "healthy" means, and how keepalived learns it:

* HAProxy runs and its admin socket answers: lbadapter writes 0 (healthy)
  or 1 into ``haproxy-fault``, a keepalived ``track_file`` of weight 0
  (non-zero is FAULT). keepalived watches it with inotify, so a dead
  HAProxy gives the address away within one poll (:data:`HEALTH_INTERVAL`).
* lbadapter itself runs: a ``vrrp_script`` checks ``/proc/<our pid>`` every
  second, so an lbadapter that was SIGKILLed (its HAProxy no longer follows
  the cluster) gives the address away too; the next start stops that
  orphaned keepalived by its pid file.

VRRP version 3 (RFC 5798) because it allows sub-second adverts: with the
default 0.5 s the standby takes over about 1.8 s after the active balancer's
host dies. Version 3 has no authentication (RFC 5798 dropped version 2's
clear-text password, which was no protection); the group is the virtual
router id derived from the VIP (:func:`lbadapter.vrrp.router_id_for`), and
keepalived ignores adverts whose addresses differ from its own.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import anyio
import anyio.abc

from lbadapter.child import (
    KILL_TIMEOUT,
    STOP_TIMEOUT,
    read_lines,
    restart_forever,
    spawn,
    stop_child,
    stop_pid,
)
from lbadapter.config import Settings
from lbadapter.haproxy import CLIError, cli_exchange
from lbadapter.supervisor import Supervisor
from lbadapter.vrrp import router_id_for

__all__ = ["HealthFile", "Keepalived", "KeepalivedError", "Vip", "check_config",
           "find_keepalived", "preflight", "render_keepalived"]

log = logging.getLogger("lbadapter.keepalived")

#: Restart backoff: first wait, factor, ceiling; reset after this long up.
CHECK_TIMEOUT = 15.0
#: How often HAProxy's health is polled; how many failed admin-socket answers in a
#: row make it unhealthy (one may fail while a reload hands the socket over).
HEALTH_INTERVAL = 0.25
HEALTH_FALL = 4
#: How long one admin-socket probe may take.
PROBE_TIMEOUT = 1.0
INSTANCE = "lbadapter"

_STAMP = re.compile(r"^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}: ")
_STATE = re.compile(r"^\(([^)]*)\) [Ee]ntering (\w+) (?:STATE|state)")


class KeepalivedError(Exception):
    """keepalived cannot run here (missing binary, interface, privileges, bad config)."""


def find_keepalived(path: str | None = None) -> str:
    if path:
        found = shutil.which(path) if os.sep not in path else path
        if not found or not os.path.isfile(found) or not os.access(found, os.X_OK):
            raise KeepalivedError(f"keepalived {path}: not an executable file")
        return os.path.abspath(found)
    found = shutil.which("keepalived") or "/usr/sbin/keepalived"
    if not os.path.isfile(found) or not os.access(found, os.X_OK):
        raise KeepalivedError("--vip needs keepalived, not found in PATH or "
                              "/usr/sbin/keepalived (apt-get install keepalived, or set the "
                              "keepalived key to its path)")
    return os.path.abspath(found)


def preflight(settings: Settings) -> str:
    """Everything that can be known before starting: the binary, root, the interface."""
    binary = find_keepalived(settings.keepalived)
    if os.geteuid() != 0:
        raise KeepalivedError("--vip: keepalived adds addresses and sends VRRP (raw IP) "
                              "packets, which needs root")
    assert settings.vip_interface is not None
    try:
        socket.if_nametoindex(settings.vip_interface)
    except OSError:
        raise KeepalivedError(f"--vip-interface {settings.vip_interface}: no such interface "
                              "in this network namespace") from None
    return binary


# ---------------------------------------------------------------------- files


def conf_path(settings: Settings) -> Path:
    return settings.state_dir.absolute() / "keepalived.conf"


def pid_path(settings: Settings) -> Path:
    return settings.state_dir.absolute() / "keepalived.pid"


def fault_path(settings: Settings) -> Path:
    return settings.state_dir.absolute() / "haproxy-fault"


def render_keepalived(settings: Settings, adapter_pid: int,
                      test_binary: str = "/usr/bin/test") -> str:
    """keepalived.conf for ``settings`` (every value parsed by :mod:`lbadapter.vrrp`)."""
    vip, iface = settings.vip, settings.vip_interface
    assert vip is not None and iface is not None
    peers = ""
    if settings.vip_unicast_peers:
        peers = ("    unicast_peer {\n"
                 + "".join(f"        {p}\n" for p in settings.vip_unicast_peers) + "    }\n")
    return f"""\
# Generated by lbadapter from its settings; edits are overwritten.
global_defs {{
    vrrp_version 3
    enable_script_security
    script_user root
}}

# 0: HAProxy runs and answers; anything else: FAULT (written by lbadapter).
track_file lbadapter_haproxy {{
    file "{fault_path(settings)}"
}}

# lbadapter itself runs (pid {adapter_pid}); if it was killed, give the address away.
vrrp_script lbadapter_alive {{
    script "{test_binary} -d /proc/{adapter_pid}"
    interval 1
    timeout 1
    fall 1
    rise 1
}}

vrrp_instance {INSTANCE} {{
    state BACKUP
    interface {iface}
    virtual_router_id {router_id_for(vip, settings.vip_router_id)}
    priority {settings.vip_priority}
    advert_int {settings.vip_advert_interval:g}
{peers}    virtual_ipaddress {{
        {vip.with_prefixlen} dev {iface}
    }}
    track_file {{
        lbadapter_haproxy weight 0
    }}
    track_script {{
        lbadapter_alive
    }}
}}
"""


async def check_config(binary: str, path: Path) -> None:
    """``keepalived -t -f path``; :class:`KeepalivedError` with its messages if rejected."""
    with anyio.fail_after(CHECK_TIMEOUT):
        result = await anyio.run_process([binary, "-t", "-f", str(path)], check=False,
                                          stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        lines = (result.stderr + result.stdout).decode(errors="replace").strip().splitlines()
        raise KeepalivedError(f"keepalived -t rejected {path}: " + "; ".join(
            dict.fromkeys(line.strip() for line in lines if line.strip())))


class HealthFile:
    """The ``track_file``: 0 healthy, 1 not; replaced atomically, written on change only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.healthy: bool | None = None

    def set(self, healthy: bool) -> None:
        if healthy == self.healthy:
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("0\n" if healthy else "1\n")
        os.replace(tmp, self.path)
        if self.healthy is not None or not healthy:
            log.log(logging.INFO if healthy else logging.WARNING,
                    "haproxy %s: told keepalived (%s)",
                    "healthy" if healthy else "NOT healthy", self.path)
        self.healthy = healthy


async def track_haproxy(haproxy: Supervisor, health: HealthFile,
                        interval: float = HEALTH_INTERVAL) -> None:
    """Forever: healthy while the master runs, was ready, and the admin socket answers."""
    failures = 0
    while True:
        if not haproxy.ready:
            failures = HEALTH_FALL
        else:
            try:
                with anyio.fail_after(PROBE_TIMEOUT):
                    answer = await cli_exchange(haproxy.admin_socket, "show info",
                                                PROBE_TIMEOUT)
                failures = 0 if "Pid:" in answer else failures + 1
            except (CLIError, OSError, TimeoutError):
                failures += 1
        health.set(failures < HEALTH_FALL)
        await anyio.sleep(interval)


class Keepalived:
    """Owns the keepalived parent process for the lifetime of :meth:`run`."""

    def __init__(self, binary: str, conf: Path, pid_file: Path) -> None:
        self.binary = binary
        self.conf = conf
        self.pid_file = pid_file
        self.vrrp_pid_file = pid_file.with_name("keepalived-vrrp.pid")
        self._process: anyio.abc.Process | None = None
        #: Starts so far; the last VRRP state keepalived reported (MASTER, BACKUP, FAULT).
        self.starts = 0
        self.state = "INIT"
        self.state_changed = anyio.Event()

    @property
    def argv(self) -> list[str]:
        # -P: VRRP only (no LVS checker), -B: no BFD, -n: foreground, -l -G: log to us.
        return [self.binary, "-n", "-l", "-G", "-D", "-P", "-B", "-f", str(self.conf),
                "-p", str(self.pid_file), "-r", str(self.vrrp_pid_file)]

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """Run keepalived until cancelled (then SIGTERM, which releases the
        address within ~1 s; SIGKILL after 5 s)."""
        await self._stop_stale()
        task_status.started()
        await restart_forever("keepalived", self._run_once, log)

    async def _stop_stale(self) -> None:
        """Stop a keepalived left by an earlier lbadapter that was SIGKILLed (it would
        refuse to start while that one holds the pid file)."""
        try:
            pid = int(self.pid_file.read_text().split()[0])
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            return
        if comm != Path(self.binary).name[:15] or str(self.conf).encode() not in cmdline:
            return  # a recycled pid, not ours
        log.warning("an earlier keepalived (pid %d) still runs with %s; stopping it",
                    pid, self.conf)
        await stop_pid(pid, "keepalived", log)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.set()
            self.state_changed = anyio.Event()

    async def _run_once(self) -> int | None:
        self.starts += 1
        proc = await spawn(self.argv, "keepalived", log)
        if proc is None:
            return None
        self._process = proc
        # The output is read shielded, so what keepalived says while it stops (the
        # address released) is logged too; bounded once it has exited.
        pump = anyio.CancelScope(shield=True)
        try:
            async with anyio.create_task_group() as tg:
                if proc.stdout is not None:
                    tg.start_soon(self._pump, proc.stdout, pump)
                try:
                    await proc.wait()
                finally:
                    with anyio.CancelScope(shield=True):  # cancelled or not, it goes with us
                        await stop_child(proc, "keepalived", log)
                        self._set_state("STOPPED")
                        pump.deadline = anyio.current_time() + 1.0
        finally:
            with anyio.CancelScope(shield=True):
                await proc.aclose()
        return proc.returncode

    async def _pump(self, stream: anyio.abc.ByteReceiveStream, scope: anyio.CancelScope
                    ) -> None:
        """keepalived's output into our log (until EOF or ``scope`` ends); VRRP state
        changes are noted."""
        with scope:
            await self._read_lines(stream)

    async def _read_lines(self, stream: anyio.abc.ByteReceiveStream) -> None:
        await read_lines(stream, self._on_line)

    def _on_line(self, line: str) -> None:
        line = _STAMP.sub("", line)
        if not line.strip():
            return
        match = _STATE.match(line)
        if match:
            self._set_state(match.group(2))
            log.warning("keepalived: %s", line)
        elif "gratuitous ARP on" in line:
            log.debug("keepalived: %s", line)
        else:
            log.info("keepalived: %s", line)


class Vip:
    """keepalived and the health feed, for ``lbadapter run``; :meth:`stop` hands over."""

    def __init__(self, settings: Settings, haproxy: Supervisor,
                 adapter_pid: int | None = None) -> None:
        self.settings = settings
        self.haproxy = haproxy
        self.binary = find_keepalived(settings.keepalived)
        self.adapter_pid = adapter_pid if adapter_pid is not None else os.getpid()
        self.conf = conf_path(settings)
        self.health = HealthFile(fault_path(settings))
        self.keepalived = Keepalived(self.binary, self.conf, pid_path(settings))
        self._scope: anyio.CancelScope | None = None
        self._done = anyio.Event()

    async def prepare(self) -> None:
        """Write and check keepalived.conf; the address stays away until HAProxy is ready."""
        test = shutil.which("test") or "/usr/bin/test"
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.conf.with_name(".keepalived.conf.tmp")
        tmp.write_text(render_keepalived(self.settings, self.adapter_pid, test))
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.conf)
        self.health.set(False)
        await check_config(self.binary, self.conf)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """keepalived plus the HAProxy health feed, until cancelled or :meth:`stop`."""
        try:
            with anyio.CancelScope() as self._scope:
                async with anyio.create_task_group() as tg:
                    await tg.start(self.keepalived.run)
                    tg.start_soon(track_haproxy, self.haproxy, self.health)
                    task_status.started()
        finally:
            self._done.set()

    async def stop(self) -> None:
        """Stop keepalived (the standby takes the address over) and wait for it."""
        if self._scope is not None:
            self._scope.cancel()
            with anyio.move_on_after(STOP_TIMEOUT + KILL_TIMEOUT + 3):
                await self._done.wait()
