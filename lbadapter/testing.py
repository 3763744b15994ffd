"""Helpers for tests and benchmarks driving a real HAProxy on loopback.

Every process started here is remembered by PID and stopped by PID
(:meth:`Processes.stop_all`); every wait is bounded in time and count.
The async helpers use anyio only, so they run under asyncio and trio alike.
Nothing here is used by ``lbadapter run`` itself.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.to_thread

from lbadapter.haproxy import parse_stat_csv, up_servers
from swimlib.testing import ProcessGroup, free_port, stop_process

if TYPE_CHECKING:
    from lbadapter.adapter import Adapter

__all__ = ["BACKEND_SCRIPT", "Processes", "adapter_running", "fetch", "free_port",
           "short_state_dir", "stats_rows", "up_in_stats", "wait_port", "wait_until"]

T = TypeVar("T")

#: A tiny HTTP backend: ``GET /`` answers its name, ``GET /slow?s=N`` holds the
#: connection N seconds first (to keep a session attached to a server).
BACKEND_SCRIPT = r"""
import sys, time, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
name, port = sys.argv[1], int(sys.argv[2])
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        q = urllib.parse.urlparse(self.path)
        if q.path == "/slow":
            time.sleep(float(urllib.parse.parse_qs(q.query).get("s", ["5"])[0]))
        body = name.encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def short_state_dir(prefix: str = "lb") -> Path:
    """A state directory with a short path (unix socket paths are limited to ~107 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


#: Loopback URLs must never go through an ``http_proxy`` from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(url: str, timeout: float = 3.0) -> tuple[int, str]:
    """GET ``url``: (status, body); status 0 on a connection error."""
    try:
        with _DIRECT.open(url, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), ""
    except OSError:
        return 0, ""


def stats_rows(stats: tuple[str, int]) -> list[dict[str, str]]:
    """The stats page CSV (``/;csv;norefresh``) as rows; [] if it does not answer."""
    status, body = fetch(f"http://{stats[0]}:{stats[1]}/;csv;norefresh")
    return parse_stat_csv(body) if status == 200 else []


async def up_in_stats(stats: tuple[str, int], backend: str) -> set[str]:
    return up_servers(await anyio.to_thread.run_sync(stats_rows, stats), backend)


async def wait_until(predicate: Callable[[], Awaitable[T]], timeout: float,
                     what: str, interval: float = 0.1) -> T:
    """Poll ``predicate`` until truthy; AssertionError after ``timeout`` seconds."""
    last: T | None = None
    with anyio.move_on_after(timeout):
        for _ in range(int(timeout / interval) + 2):
            last = await predicate()
            if last:
                return last
            await anyio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


class Processes:
    """Starts processes in their own sessions and stops them by PID
    (over :class:`swimlib.testing.ProcessGroup`)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.group = ProcessGroup(workdir)

    def start(self, name: str, argv: list[str], env: Mapping[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        """Start ``argv`` (``env``: variables added to ours); output to ``<name>.log``."""
        popen: subprocess.Popen[bytes] = self.group.start(name, argv, env=env,
                                                          append=True).popen
        return popen

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def backend(self, name: str, port: int) -> subprocess.Popen[bytes]:
        """Start a tiny HTTP backend on 127.0.0.1:port."""
        return self.start(name, [sys.executable, "-c", BACKEND_SCRIPT, name, str(port)])

    @staticmethod
    def stop(popen: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
             timeout: float = 10.0) -> int:
        """Signal by PID, wait; SIGKILL after ``timeout``. Returns the exit code."""
        code = stop_process(popen, timeout, sig)
        return popen.wait(5) if code is None else code

    def stop_all(self, grace: float = 10.0) -> None:
        """SIGTERM everything still running (an adapter then stops its HAProxy), wait up to
        ``grace`` seconds in total, SIGKILL what is left."""
        self.group.stop_all(grace)


async def wait_port(port: int, timeout: float = 10.0) -> None:
    """Until something accepts on 127.0.0.1:port."""
    async def accepting() -> bool:
        try:
            stream = await anyio.connect_tcp("127.0.0.1", port)
        except OSError:
            return False
        await stream.aclose()
        return True

    await wait_until(accepting, timeout, f"127.0.0.1:{port} to accept")


@asynccontextmanager
async def adapter_running(adapter: Adapter, timeout: float = 15.0) -> AsyncIterator[Adapter]:
    """Run ``adapter`` (and so HAProxy) for the block; HAProxy is stopped on exit."""
    async with anyio.create_task_group() as tg:
        await tg.start(adapter.run)
        with anyio.fail_after(timeout):
            await adapter.supervisor.wait_ready()
        try:
            yield adapter
        finally:
            tg.cancel_scope.cancel()
