"""RuntimeClient, MasterClient and Supervisor against a real HAProxy 2.6 on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from lbadapter import settings_from_mapping
from lbadapter.desired import DesiredServer, Want
from lbadapter.haproxy import AddResult, DelResult, RuntimeClient, UnexpectedAnswer, up_servers
from lbadapter.render import render_config
from lbadapter.supervisor import ReloadFailed, Supervisor
from lbadapter.testing import (
    Processes,
    free_port,
    short_state_dir,
    stats_rows,
    wait_port,
    wait_until,
)

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
pytestmark = pytest.mark.skipif(not os.path.exists(HAPROXY),
                                reason="haproxy is not installed (apt-get install haproxy)")
OPTS = "check inter 1s fall 2 rise 1"


@pytest.fixture
def state_dir() -> Iterator[Path]:
    path = short_state_dir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def procs(state_dir: Path) -> Iterator[Processes]:
    """Backends started by a test; all stopped by PID at the end."""
    started = Processes(state_dir)
    try:
        yield started
    finally:
        started.stop_all()


@asynccontextmanager
async def haproxy(state_dir: Path, servers: list[DesiredServer] | None = None
                  ) -> AsyncIterator[tuple[Supervisor, RuntimeClient, tuple[str, int]]]:
    stats = ("127.0.0.1", free_port())
    settings = settings_from_mapping({"state_dir": str(state_dir),
                                      "listen": f"127.0.0.1:{free_port()}",
                                      "stats": f"127.0.0.1:{stats[1]}",
                                      "server_options": OPTS})
    settings.config_path.write_text(render_config(settings, servers or []))
    sup = Supervisor(HAPROXY, settings.config_path, settings.master_socket,
                     settings.admin_socket)
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        with anyio.fail_after(15):
            await sup.wait_ready()
        try:
            yield sup, RuntimeClient(settings.admin_socket), stats
        finally:
            tg.cancel_scope.cancel()
    assert sup.master_pid is not None
    await wait_until(lambda: _gone(sup.master_pid), 10, "haproxy master to exit")


async def _gone(pid: int | None) -> bool:
    try:
        os.kill(pid or 0, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


async def test_runtime_commands_full_cycle(state_dir: Path, procs: Processes) -> None:
    port = free_port()
    procs.backend("web-1", port)
    await wait_port(port)
    async with haproxy(state_dir) as (_, cli, stats):
        assert await cli.show_servers_state("app") == []
        assert await cli.add_server("app", "n1", f"127.0.0.1:{port}", OPTS) is AddResult.ADDED
        assert await cli.add_server("app", "n1", f"127.0.0.1:{port}", OPTS) is AddResult.EXISTS
        (row,) = await cli.show_servers_state("app")
        assert (row.name, row.port, row.admin_name) == ("n1", port, "maint")  # starts in MAINT
        await cli.enable_health("app", "n1")
        await cli.set_ready_health_down("app", "n1")
        rows = await cli.show_stat("app")
        status = {r["svname"]: r["status"] for r in rows}
        assert status["n1"].startswith("DOWN")  # not UP before its first good check
        await wait_until(lambda: _up(stats, "n1"), 4, "n1 UP after its check")

        await cli.set_state("app", "n1", "drain")
        assert (await cli.show_servers_state("app"))[0].admin_name == "drain"
        assert await cli.del_server("app", "n1") is DelResult.NOT_IN_MAINT
        await cli.set_addr("app", "n1", "127.0.0.1", port)  # "no need to change" is fine
        await cli.set_state("app", "n1", "maint")
        assert (await cli.show_servers_state("app"))[0].admin_name == "maint"
        assert await cli.del_server("app", "n1") is DelResult.DELETED
        assert await cli.del_server("app", "n1") is DelResult.NO_SUCH_SERVER
        assert await cli.show_servers_state("app") == []


async def _up(stats: tuple[str, int], name: str) -> bool:
    rows = await anyio.to_thread.run_sync(stats_rows, stats)
    return name in up_servers(rows, "app")


async def test_unexpected_answers_are_reported_verbatim(state_dir: Path) -> None:
    async with haproxy(state_dir) as (_, cli, _stats):
        with pytest.raises(UnexpectedAnswer, match="No such server"):
            await cli.set_state("app", "ghost", "maint")
        with pytest.raises(UnexpectedAnswer, match="No such server"):
            await cli.set_addr("app", "ghost", "127.0.0.1", 80)
        with pytest.raises(UnexpectedAnswer, match="Can't find backend"):
            await cli.show_servers_state("nope")
        with pytest.raises(UnexpectedAnswer, match="unknown keyword 'bogus'"):
            await cli.add_server("app", "x", "127.0.0.1:1", "bogus")
        await cli.add_server("app", "nocheck", "127.0.0.1:1", "")
        with pytest.raises(UnexpectedAnswer, match="Health check was not configured"):
            await cli.enable_health("app", "nocheck")


async def test_config_servers_stats_csv_and_show_proc(state_dir: Path, procs: Processes
                                                      ) -> None:
    port = free_port()
    procs.backend("web-1", port)
    await wait_port(port)
    servers = [DesiredServer("web-1", "web-1", "127.0.0.1", port, Want.READY)]
    async with haproxy(state_dir, servers) as (sup, cli, stats):
        (row,) = await cli.show_servers_state("app")
        assert (row.name, row.addr, row.port, row.admin_name) == ("web-1", "127.0.0.1", port,
                                                                   "ready")
        await wait_until(lambda: _up(stats, "web-1"), 4, "web-1 UP")
        rows = await anyio.to_thread.run_sync(stats_rows, stats)
        assert {r["pxname"] for r in rows} >= {"fe", "app", "stats"}
        info = await sup.master.show_proc()
        assert info.master_pid == sup.master_pid and len(info.workers) == 1
        # a reload is confirmed by a new worker PID
        after = await sup.reload()
        assert after.workers != info.workers and sup.reloads == 1


async def test_failed_reload_keeps_the_old_worker(state_dir: Path) -> None:
    async with haproxy(state_dir) as (sup, cli, _stats):
        before = (await sup.master.show_proc()).workers
        cfg = state_dir / "haproxy.cfg"
        cfg.write_text(cfg.read_text().replace("balance roundrobin", "balance bogus"))
        with pytest.raises(ReloadFailed, match="Loading failure"):
            await sup.reload()
        assert (await sup.master.show_proc()).workers == before
        assert await cli.show_servers_state("app") == []  # the old worker still answers


def test_supervisor_and_runtime_api_under_asyncio(state_dir: Path, procs: Processes) -> None:
    """The tests above on asyncio: HAProxy as an asyncio subprocess (started, reloaded by
    signal, stopped by SIGTERM when cancelled), both CLIs over asyncio unix sockets."""
    async def main() -> None:
        await test_runtime_commands_full_cycle(state_dir, procs)
        await test_unexpected_answers_are_reported_verbatim(state_dir)
        await test_config_servers_stats_csv_and_show_proc(state_dir, procs)
        await test_failed_reload_keeps_the_old_worker(state_dir)

    anyio.run(main, backend="asyncio")
