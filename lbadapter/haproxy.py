"""Talking to HAProxy 2.6: the admin stats socket (runtime API) and the master CLI.

One command line per connection, half-closed after sending, answer read
until EOF (the master CLI only answers after the half-close). Answers are
free text, so each command is matched against the strings HAProxy 2.6 is
known to print (haproxy.md section 3); anything else raises
:class:`UnexpectedAnswer` carrying the answer verbatim.
"""

from __future__ import annotations

import csv
import enum
import io
import os
import re
import shutil
from pathlib import Path

import anyio

from swimlib.records import record

__all__ = ["AddResult", "CLIError", "CLIUnavailable", "DelResult", "HAProxyNotFound",
           "MasterClient", "ProcInfo", "RuntimeClient", "ServerState", "UnexpectedAnswer",
           "find_haproxy", "parse_proc", "parse_servers_state", "parse_stat_csv", "up_servers"]

#: Per-command limit: the CLI answers in milliseconds; a hung socket must not hang us.
COMMAND_TIMEOUT = 5.0
_MAX_ANSWER = 16 * 1024 * 1024
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_.:\-\[\]]+")

# admin_state bits (src/server.h): forced/inherited/config/resolution/hostname maint, drain.
_ADMF_MAINT = 0x01 | 0x02 | 0x04 | 0x20 | 0x40
_ADMF_DRAIN = 0x08 | 0x10


class HAProxyNotFound(FileNotFoundError):
    """No usable haproxy binary."""


def find_haproxy(path: str | None = None) -> str:
    """Absolute path of the haproxy binary (the master re-execs ``argv[0]``)."""
    if path:
        found = shutil.which(path) if os.sep not in path else path
        if not found or not os.path.isfile(found) or not os.access(found, os.X_OK):
            raise HAProxyNotFound(f"--haproxy {path}: not an executable file")
        return os.path.abspath(found)
    found = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not os.path.isfile(found) or not os.access(found, os.X_OK):
        raise HAProxyNotFound("haproxy not found in PATH or /usr/sbin/haproxy "
                              "(apt-get install haproxy, or pass --haproxy PATH)")
    return os.path.abspath(found)


class CLIError(Exception):
    """A runtime API exchange failed."""


class CLIUnavailable(CLIError):
    """The socket refused, reset or timed out (HAProxy down or reloading)."""


class UnexpectedAnswer(CLIError):
    """HAProxy answered something we do not know how to interpret."""

    def __init__(self, command: str, answer: str) -> None:
        super().__init__(f"{command!r}: unexpected answer {answer.strip()!r}")
        self.command = command
        self.answer = answer


async def cli_exchange(socket_path: Path, line: str, timeout: float = COMMAND_TIMEOUT) -> str:
    """Send one command line, half-close, return everything until EOF."""
    if any(c in line for c in "\n\r\0"):  # HAProxy ends a command at each (NUL splits words)
        raise ValueError(f"command contains a newline, carriage return or NUL: {line!r}")
    chunks: list[bytes] = []
    try:
        with anyio.fail_after(timeout):
            stream = await anyio.connect_unix(str(socket_path))
            async with stream:
                await stream.send(line.encode() + b"\n")
                await stream.send_eof()
                size = 0
                while True:
                    try:
                        chunk = await stream.receive(65536)
                    except anyio.EndOfStream:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > _MAX_ANSWER:
                        raise CLIError(f"{line!r}: answer larger than {_MAX_ANSWER} bytes")
    except TimeoutError:  # (an OSError subclass: keep it first)
        raise CLIUnavailable(f"{socket_path}: no answer to {line!r} within {timeout} s") from None
    except (OSError, anyio.BrokenResourceError) as exc:
        raise CLIUnavailable(f"{socket_path}: {_describe(exc)}") from None
    return b"".join(chunks).decode(errors="replace")


def _describe(exc: BaseException) -> str:
    """``exc``'s text; anyio's BrokenResourceError has none, its cause (a reset...) has."""
    cause = exc.__cause__ or exc.__context__
    return str(exc) or (str(cause) if cause is not None else "") or type(exc).__name__


def _token(value: str) -> str:
    """``value`` if it is one plain word of the CLI grammar (a second line of defence:
    :class:`~lbadapter.desired.DesiredServer` already refuses anything else)."""
    if not isinstance(value, str) or not _SAFE_TOKEN.fullmatch(value):
        raise ValueError(f"unsafe name or address for the HAProxy CLI: {value!r}")
    return value


# ------------------------------------------------------------------ parsing

@record
class ServerState:
    """One row of ``show servers state``."""

    backend: str
    name: str
    addr: str
    port: int
    op_state: int  # 0 stopped/DOWN, 1 starting, 2 running/UP, 3 stopping
    admin_state: int  # bit field: maint 0x67, drain 0x18
    weight: int  # the user weight (``set server weight``), not the effective one
    sid: int = 0  # the server's ID (``id N``)

    @property
    def in_maint(self) -> bool:
        return bool(self.admin_state & _ADMF_MAINT)

    @property
    def draining(self) -> bool:
        return bool(self.admin_state & _ADMF_DRAIN) and not self.in_maint

    @property
    def admin_name(self) -> str:
        return "maint" if self.in_maint else "drain" if self.draining else "ready"


def parse_servers_state(text: str) -> list[ServerState]:
    """Rows of ``show servers state [be]`` (version line ``1``, ``#`` header, rows)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0].strip() != "1" or len(lines) < 2 or not lines[1].startswith("# "):
        raise UnexpectedAnswer("show servers state", text)
    header = lines[1][2:].split()
    rows: list[ServerState] = []
    for ln in lines[2:]:
        fields = dict(zip(header, ln.split(), strict=False))
        try:
            rows.append(ServerState(backend=fields["be_name"], name=fields["srv_name"],
                                    addr=fields["srv_addr"], port=int(fields["srv_port"]),
                                    op_state=int(fields["srv_op_state"]),
                                    admin_state=int(fields["srv_admin_state"]),
                                    weight=int(fields["srv_uweight"]),
                                    sid=int(fields.get("srv_id", "0"))))
        except (KeyError, ValueError):
            raise UnexpectedAnswer("show servers state", text) from None
    return rows


def parse_stat_csv(text: str) -> list[dict[str, str]]:
    """``show stat`` / ``/;csv`` output as dicts keyed by the header (``pxname``, ``status``...)."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise UnexpectedAnswer("show stat", text)
    body = "\n".join([lines[0][2:], *[ln for ln in lines[1:] if ln.strip()]])
    return [dict(row) for row in csv.DictReader(io.StringIO(body))]


def up_servers(rows: list[dict[str, str]], backend: str) -> set[str]:
    """Servers of ``backend`` whose status starts with ``UP`` (``UP 1/2`` included)."""
    return {r["svname"] for r in rows
            if r.get("pxname") == backend and r.get("svname") not in ("FRONTEND", "BACKEND")
            and r.get("status", "").startswith("UP")}


@record
class ProcInfo:
    """``show proc`` on the master CLI."""

    master_pid: int
    reloads: int
    failed: int
    workers: tuple[int, ...]  # current workers
    old_workers: tuple[int, ...] = ()


_FAILED = re.compile(r"\[failed:\s*(\d+)\]")


def parse_proc(text: str) -> ProcInfo:
    master = reloads = failed = -1
    workers: list[int] = []
    old: list[int] = []
    section = "master"
    for ln in text.splitlines():
        if ln.startswith("#"):
            low = ln.lower()
            section = ("old" if "old" in low else "workers" if "worker" in low
                       else "programs" if "program" in low else section)
            continue
        parts = ln.split()
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        pid = int(parts[0])
        if parts[1] == "master":
            master, reloads = pid, int(parts[2]) if parts[2].isdigit() else 0
            m = _FAILED.search(ln)
            failed = int(m.group(1)) if m else 0
        elif parts[1] == "worker":
            (old if section == "old" else workers).append(pid)
    if master < 0:
        raise UnexpectedAnswer("show proc", text)
    return ProcInfo(master, reloads, failed, tuple(workers), tuple(old))


# ------------------------------------------------------------------ clients

class AddResult(enum.Enum):
    ADDED = "added"
    EXISTS = "exists"


class DelResult(enum.Enum):
    DELETED = "deleted"
    NO_SUCH_SERVER = "no-such-server"
    NOT_IN_MAINT = "not-in-maint"
    BUSY = "busy"  # connections attached (often idle pooled ones; haproxy.md section 3)


_DEL_ANSWERS = {
    "Server deleted.": DelResult.DELETED,
    "No such server.": DelResult.NO_SUCH_SERVER,
    "Only servers in maintenance mode can be deleted.": DelResult.NOT_IN_MAINT,
    "Server still has connections attached to it, cannot remove it.": DelResult.BUSY,
}


class RuntimeClient:
    """The admin stats socket (``stats socket ... level admin``)."""

    def __init__(self, socket_path: Path, timeout: float = COMMAND_TIMEOUT) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    async def command(self, line: str) -> str:
        return await cli_exchange(self.socket_path, line, self.timeout)

    async def _expect_empty(self, line: str) -> None:
        answer = await self.command(line)
        if answer.strip():
            raise UnexpectedAnswer(line, answer)

    async def show_servers_state(self, backend: str) -> list[ServerState]:
        line = f"show servers state {_token(backend)}"
        return parse_servers_state(await self.command(line))

    async def show_stat(self, backend: str | None = None) -> list[dict[str, str]]:
        line = f"show stat {_token(backend)} 4 -1" if backend else "show stat"
        return parse_stat_csv(await self.command(line))

    async def add_server(self, backend: str, name: str, address: str, options: str) -> AddResult:
        """``add server`` (the server starts in MAINT; checks need :meth:`enable_health`)."""
        if any(c in options for c in ";\n\r#"):
            raise ValueError(f"unsafe server options: {options!r}")
        line = f"add server {_token(backend)}/{_token(name)} {_token(address)} {options}".strip()
        answer = (await self.command(line)).strip()
        if answer == "New server registered.":
            return AddResult.ADDED
        if answer.startswith("Already exists a server with the same name"):
            return AddResult.EXISTS
        raise UnexpectedAnswer(line, answer)

    async def enable_health(self, backend: str, name: str) -> None:
        await self._expect_empty(f"enable health {_token(backend)}/{_token(name)}")

    async def set_ready_health_down(self, backend: str, name: str, state: str = "ready"
                                    ) -> None:
        """Ready (or drain), but DOWN until the first good check: one line, so no request
        slips in."""
        if state not in ("ready", "drain"):
            raise ValueError(f"bad server state {state!r}")
        srv = f"{_token(backend)}/{_token(name)}"
        await self._expect_empty(f"set server {srv} state {state}; set server {srv} health down")

    async def set_weight(self, backend: str, name: str, weight: int) -> None:
        """``set server be/name weight N`` (absolute, 0..256; empty answer on success)."""
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 256:
            raise ValueError(f"bad weight {weight!r}")
        await self._expect_empty(f"set server {_token(backend)}/{_token(name)} weight {weight}")

    async def enable_dynamic_cookie(self, backend: str) -> None:
        """(Re)compute the dynamic cookie of every server of ``backend``.

        HAProxy 2.6 refuses ``cookie`` in ``add server`` and gives a dynamic
        server no dynamic cookie of its own; this command computes them all
        (a server's cookie is a hash of the key, its address and port, so the
        ones already set do not change).
        """
        await self._expect_empty(f"enable dynamic-cookie backend {_token(backend)}")

    async def set_state(self, backend: str, name: str, state: str) -> None:
        if state not in ("ready", "drain", "maint"):
            raise ValueError(f"bad server state {state!r}")
        await self._expect_empty(f"set server {_token(backend)}/{_token(name)} state {state}")

    async def set_addr(self, backend: str, name: str, addr: str, port: int) -> None:
        line = (f"set server {_token(backend)}/{_token(name)} addr {_token(addr)} "
                f"port {int(port)}")
        answer = (await self.command(line)).strip()
        if "changed from" not in answer and not answer.startswith("no need to change"):
            raise UnexpectedAnswer(line, answer)

    async def del_server(self, backend: str, name: str) -> DelResult:
        line = f"del server {_token(backend)}/{_token(name)}"
        answer = (await self.command(line)).strip()
        try:
            return _DEL_ANSWERS[answer]
        except KeyError:
            raise UnexpectedAnswer(line, answer) from None


class MasterClient:
    """The master CLI (``-S master.sock``)."""

    def __init__(self, socket_path: Path, timeout: float = COMMAND_TIMEOUT) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    async def show_proc(self) -> ProcInfo:
        return parse_proc(await cli_exchange(self.socket_path, "show proc", self.timeout))

    async def reload(self) -> None:
        """Ask for a reload (2.6 answers nothing and reloads asynchronously)."""
        answer = await cli_exchange(self.socket_path, "reload", self.timeout)
        if answer.strip():
            raise UnexpectedAnswer("reload", answer)
