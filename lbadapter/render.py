"""The HAProxy config file: rendered from a Jinja2 template, validated, written atomically.

The file is not how membership changes reach HAProxy (the runtime API is);
it exists so that a restart or reload at any moment comes back with the
current members. So it is rewritten on every change, but only ever replaced
by a file that ``haproxy -c`` accepted; a rejected candidate is kept next to
it as ``<name>.rejected`` for inspection and the previous file as ``.bak``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import anyio
import jinja2

from lbadapter.config import Settings
from lbadapter.desired import Balancer, DesiredServer, Want, member_label
from swimlib.records import record

__all__ = ["DEFAULT_TEMPLATE", "PEERS_SECTION", "CheckResult", "ConfigCheckError",
           "ConfigWriter", "RenderError", "check_config", "file_options", "render_config",
           "render_context"]

DEFAULT_TEMPLATE = Path(__file__).parent / "templates" / "haproxy.cfg.j2"
#: ``haproxy -c`` never needs long; a hung check must not hang the adapter.
CHECK_TIMEOUT = 15.0


class RenderError(Exception):
    """The template could not be loaded or rendered; the message names file and line."""


class ConfigCheckError(Exception):
    """``haproxy -c`` rejected a rendered config; ``lines`` are HAProxy's own messages."""

    def __init__(self, message: str, lines: list[str]) -> None:
        super().__init__(message)
        self.lines = lines


def _endpoint(addr: tuple[str, int]) -> dict[str, Any]:
    host, port = addr
    shown = f"[{host}]" if ":" in host else host
    return {"host": host, "port": port, "address": f"{shown}:{port}"}


#: Name of the generated ``peers`` section.
PEERS_SECTION = "lbadapter"


def file_options(server: DesiredServer, settings: Settings) -> str:
    """A server line's options: ID and weight, then ``server_options``.

    The file is what a reload or restart comes back with, so it carries
    ``lb-state`` too: ``drain`` as weight 0 (HAProxy has no drain keyword;
    weight 0 takes no new sessions but keeps sticky ones, as drain does).
    A server in ``maint`` gets no line at all (see :func:`render_context`).
    The reconciler restores the exact state and weight right after a reload.
    """
    weight = 0 if server.state == "drain" else server.weight
    head = (f"id {server.sid} " if server.sid else "") + f"weight {weight}"
    return f"{head} {settings.server_options}"


def render_context(settings: Settings, servers: Iterable[DesiredServer],
                   peers: Sequence[Balancer] = ()) -> dict[str, Any]:
    """Template variables (documented at the top of the default template).

    Member data reaches the template only in forms :class:`DesiredServer`
    and :class:`Balancer` have checked (name, address, port, numbers) or
    escaped (``member`` is the label: no whitespace, ``#``, ``;``, quotes or
    line breaks), so no template can be made to write a line or directive a
    member chose. Peers are used only by ``sticky = "source"``.
    """
    # A server in lb-state maint is left out: HAProxy's ``disabled`` is a config
    # maintenance that ``set server ... state ready`` cannot lift; after a reload the
    # reconciler adds it back, in maintenance.
    ready = sorted((s for s in servers if s.want is Want.READY and s.state != "maint"),
                   key=lambda s: s.name)
    used_peers = list(peers) if settings.sticky == "source" else []
    local = [p.name for p in used_peers if p.local]
    if not local:
        used_peers = []  # HAProxy needs its own entry to take part
    return {
        "backend": settings.backend_name,
        "servers": [{"name": s.name, "member": s.label, "addr": s.addr, "port": s.port,
                     "address": s.address, "id": s.sid, "weight": s.weight,
                     "state": s.state, "options": file_options(s, settings)}
                    for s in ready],
        "server_options": settings.server_options,
        "sticky": settings.sticky,
        "cookie": {"name": settings.cookie_name, "key": settings.cookie_key},
        "stick_expire": settings.stick_expire,
        "peers": [{"name": p.name, "member": member_label(p.member), "address": p.address,
                   "local": p.local} for p in used_peers],
        "peers_section": PEERS_SECTION,
        "local_peer": local[0] if used_peers else None,
        "listen": _endpoint(settings.listen),
        "stats": _endpoint(settings.stats),
        "admin_socket": str(settings.admin_socket.absolute()),
        "state_dir": str(settings.state_dir.absolute()),
        "balance": settings.balance,
        "hard_stop_after": settings.hard_stop_after,
    }


def _template_line(exc: BaseException, filename: str) -> int | None:
    """The template line an exception was raised at (Jinja2 rewrites tracebacks)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render_config(settings: Settings, servers: Iterable[DesiredServer],
                  template: Path | None = None, peers: Sequence[Balancer] = ()) -> str:
    """Render the config for ``servers`` (only READY ones become ``server`` lines).

    The template is read from disk on every call, so edits take effect on
    the next change. Undefined variables are errors (StrictUndefined).
    """
    path = Path(template or settings.template or DEFAULT_TEMPLATE).absolute()
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(path.parent)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False, cache_size=0)
    try:
        tpl = env.get_template(path.name)
    except jinja2.TemplateNotFound:
        raise RenderError(f"template {path}: not found") from None
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"template {exc.filename or path}:{exc.lineno}: {exc.message}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RenderError(f"template {path}: {exc}") from None
    try:
        text = tpl.render(render_context(settings, servers, peers))
    except Exception as exc:  # any error raised by template code
        line = _template_line(exc, str(path))
        where = f"{path}:{line}" if line else str(path)
        raise RenderError(f"template {where}: {type(exc).__name__}: {exc}") from None
    return text if text.endswith("\n") else text + "\n"


@record
class CheckResult:
    ok: bool
    #: HAProxy's stdout and stderr lines (``[ALERT] ...``, ``Configuration file is valid``).
    lines: list[str]

    @property
    def problems(self) -> list[str]:
        """The ``[ALERT]``/``[WARNING]`` lines (everything but notices if there are none)."""
        picked = [ln for ln in self.lines if "[ALERT]" in ln or "[WARNING]" in ln]
        return picked or [ln for ln in self.lines if "[NOTICE]" not in ln]


async def check_config(haproxy: str, path: Path) -> CheckResult:
    """``haproxy -c -f path`` (not ``-q``: it would hide the error text)."""
    try:
        with anyio.fail_after(CHECK_TIMEOUT):  # (on timeout anyio kills haproxy -c)
            proc = await anyio.run_process([haproxy, "-c", "-f", str(path)], check=False,
                                           stdin=subprocess.DEVNULL)
    except TimeoutError:  # (an OSError subclass: keep it first)
        return CheckResult(False, [f"haproxy -c timed out after {CHECK_TIMEOUT:.0f} s"])
    except OSError as exc:
        return CheckResult(False, [f"cannot run {haproxy}: {exc}"])
    out = (proc.stdout or b"").decode(errors="replace") + (proc.stderr or b"").decode(
        errors="replace")
    return CheckResult(proc.returncode == 0, [ln for ln in out.splitlines() if ln.strip()])


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ConfigWriter:
    """Atomically replaces ``path`` with validated configs (one writer per path)."""

    def __init__(self, path: Path, haproxy: str) -> None:
        self.path = path
        self.haproxy = haproxy
        self.backup = path.with_name(path.name + ".bak")
        self.rejected = path.with_name(path.name + ".rejected")

    def current(self) -> str | None:
        try:
            return self.path.read_text()
        except (OSError, UnicodeDecodeError):
            return None

    async def write(self, text: str) -> bool:
        """Install ``text`` if it differs from the file; True if the file changed.

        Raises :class:`ConfigCheckError` (file untouched) if HAProxy rejects it.
        """
        if self.current() == text:
            return False
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.",
                                        suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            result = await check_config(self.haproxy, tmp)
            if not result.ok:
                os.replace(tmp, self.rejected)
                lines = [ln.replace(str(tmp), str(self.rejected)) for ln in result.problems]
                raise ConfigCheckError(f"haproxy -c rejected the new config (kept the old "
                                       f"{self.path}; candidate saved as {self.rejected})",
                                       lines)
            if self.path.exists():
                bak_tmp = self.backup.with_name(self.backup.name + ".tmp")
                shutil.copyfile(self.path, bak_tmp)
                os.replace(bak_tmp, self.backup)
            os.replace(tmp, self.path)
            _fsync_dir(directory)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return True
