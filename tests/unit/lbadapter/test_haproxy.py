"""Parsing HAProxy 2.6 CLI answers (recorded verbatim) and the socket exchange itself."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import anyio
import anyio.abc
import pytest

from lbadapter.haproxy import (
    CLIUnavailable,
    HAProxyNotFound,
    RuntimeClient,
    UnexpectedAnswer,
    cli_exchange,
    find_haproxy,
    parse_proc,
    parse_servers_state,
    parse_stat_csv,
    up_servers,
)

SERVERS_STATE = (
    "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
    "srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health "
    "srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord "
    "srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n"
    "3 app 1 b1 127.0.0.1 2 0 1 1 12 6 3 4 6 0 0 0 - 19811 - 0 0 - - 0\n"
    "3 app 2 n1 127.0.0.2 0 8 1 1 0 8 2 0 6 0 0 0 - 19813 - 0 0 - - 0\n"
    "3 app 3 n2 ::1 0 1 1 1 0 1 0 0 2 0 0 0 - 19899 - 0 0 - - 0\n\n")

SHOW_PROC = (
    "#<PID>          <type>          <reloads>       <uptime>        <version>      \n"
    "8172            master          1 [failed: 0]   0d00h00m02s     2.6.12-1+deb12u4\n"
    "# workers\n8284            worker          0               0d00h00m01s     2.6.12\n"
    "# old workers\n8175            worker          1               0d00h00m02s     2.6.12\n"
    "# programs\n\n")

STAT_CSV = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,status,check_status\n"
    "fe,FRONTEND,,,0,0,4096,0,OPEN,\n"
    "app,b1,0,0,2,1,,3,UP,L4OK\n"
    "app,b2,0,0,0,0,,0,UP 1/2,L4OK\n"
    "app,b3,0,0,0,0,,0,DOWN,L4CON\n"
    "app,b4,0,0,0,0,,0,DRAIN,L4OK\n"
    "app,b5,0,0,0,0,,0,MAINT,\n"
    "app,BACKEND,0,0,2,1,410,3,UP,\n"
    "other,x1,0,0,0,0,,0,UP,L4OK\n\n")


def test_servers_state():
    rows = parse_servers_state(SERVERS_STATE)
    assert [(r.name, r.addr, r.port, r.admin_name) for r in rows] == [
        ("b1", "127.0.0.1", 19811, "ready"), ("n1", "127.0.0.2", 19813, "drain"),
        ("n2", "::1", 19899, "maint")]
    assert rows[0].op_state == 2 and rows[0].backend == "app"


def test_servers_state_empty_backend():
    header = SERVERS_STATE.splitlines()[1]
    assert parse_servers_state(f"1\n{header}\n\n") == []


@pytest.mark.parametrize("bad", ["Can't find backend.\n\n", "", "1\n", "1\n# a b\nx y\n",
                                 SERVERS_STATE.replace(" 19811 ", " port ")])
def test_servers_state_unexpected(bad):
    with pytest.raises(UnexpectedAnswer):
        parse_servers_state(bad)


def test_stat_csv_and_up_servers():
    rows = parse_stat_csv(STAT_CSV)
    assert rows[1]["svname"] == "b1" and rows[1]["scur"] == "2"
    assert up_servers(rows, "app") == {"b1", "b2"}
    assert up_servers(rows, "other") == {"x1"}
    with pytest.raises(UnexpectedAnswer):
        parse_stat_csv("Unknown command\n")


def test_show_proc():
    info = parse_proc(SHOW_PROC)
    assert (info.master_pid, info.reloads, info.failed) == (8172, 1, 0)
    assert info.workers == (8284,) and info.old_workers == (8175,)
    failed = parse_proc(SHOW_PROC.replace("[failed: 0]", "[failed: 1]"))
    assert failed.failed == 1
    with pytest.raises(UnexpectedAnswer):
        parse_proc("Unknown command.\n")


def test_find_haproxy(tmp_path, monkeypatch):
    exe = tmp_path / "haproxy"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    assert find_haproxy(str(exe)) == str(exe)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_haproxy("haproxy") == str(exe)
    assert find_haproxy() in (str(exe), "/usr/sbin/haproxy")
    with pytest.raises(HAProxyNotFound, match="not an executable"):
        find_haproxy(str(tmp_path / "missing"))
    (tmp_path / "plain").write_text("")
    with pytest.raises(HAProxyNotFound, match="not an executable"):
        find_haproxy(str(tmp_path / "plain"))


def test_find_haproxy_missing_everywhere(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    if os.path.exists("/usr/sbin/haproxy"):
        pytest.skip("/usr/sbin/haproxy exists")
    with pytest.raises(HAProxyNotFound, match="apt-get install haproxy"):
        find_haproxy()


async def _serve_once(path: Path, answer: bytes, seen: list[bytes], *,
                      task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                      ) -> None:
    """A unix socket that, like HAProxy's master CLI, answers only after EOF."""
    async with await anyio.create_unix_listener(path) as listener:
        task_status.started()
        async with await listener.accept() as conn:
            data = b""
            with contextlib.suppress(anyio.EndOfStream):
                while True:
                    data += await conn.receive()
            seen.append(data)
            await conn.send(answer)


async def test_exchange_half_closes_and_reads_to_eof(tmp_path):
    path = tmp_path / "m.sock"
    seen: list[bytes] = []
    async with anyio.create_task_group() as tg:
        await tg.start(_serve_once, path, b"New server registered.\n\n", seen)
        answer = await cli_exchange(path, "add server app/x 1.2.3.4:5")
    assert seen == [b"add server app/x 1.2.3.4:5\n"]
    assert answer == "New server registered.\n\n"


async def test_exchange_errors(tmp_path):
    with pytest.raises(CLIUnavailable):
        await cli_exchange(tmp_path / "none.sock", "show info")
    with pytest.raises(ValueError, match="newline"):
        await cli_exchange(tmp_path / "none.sock", "show info\nshutdown sessions")

    # accepts (the backlog does), never answers
    async with await anyio.create_unix_listener(tmp_path / "mute.sock"):
        with pytest.raises(CLIUnavailable, match="no answer"):
            await cli_exchange(tmp_path / "mute.sock", "show info", timeout=0.2)


def test_exchange_under_asyncio(tmp_path):
    """The socket exchange, its timeout and its errors on asyncio too."""
    async def main() -> None:
        await test_exchange_half_closes_and_reads_to_eof(tmp_path)
        await test_exchange_errors(tmp_path)

    anyio.run(main, backend="asyncio")


async def test_client_rejects_unsafe_tokens():
    client = RuntimeClient(Path("/nonexistent"))
    with pytest.raises(ValueError):
        await client.set_state("app", "x; shutdown", "maint")
    with pytest.raises(ValueError):
        await client.add_server("app", "x", "1.2.3.4:5", "check; del server app/y")
    with pytest.raises(ValueError):
        await client.set_state("app", "x", "halfway")
