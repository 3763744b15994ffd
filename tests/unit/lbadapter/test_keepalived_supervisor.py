"""Supervising keepalived, with a stand-in binary (no root, no VRRP): the command line,
state changes read from its log, restart after an exit, SIGTERM on cancel with its
last words logged, an orphan from an earlier run stopped, HAProxy's health fed."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from lbadapter.keepalived import HealthFile, Keepalived, track_haproxy

#: Behaves like ``keepalived -n -l``: timestamped lines, a VRRP state, SIGTERM handled.
FAKE = f"""#!{sys.executable}
import os, signal, sys, time
here = os.path.dirname(os.path.abspath(sys.argv[0]))
with open(os.path.join(here, "argv"), "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
pid_file = sys.argv[sys.argv.index("-p") + 1]
with open(pid_file, "w") as f:
    f.write(f"{{os.getpid()}}\\n")
def say(text):
    print(time.strftime("%a %b %e %H:%M:%S %Y: ") + text, flush=True)
def stop(*_):
    say("Stopping")
    say("(lbadapter) sent 0 priority")
    say("(lbadapter) removing VIPs.")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
say("Starting Keepalived v2.2.7 (fake)")
say("(lbadapter) entering FAULT state")
if os.path.exists(os.path.join(here, "crash-once")):
    os.unlink(os.path.join(here, "crash-once"))
    sys.exit(3)
say("(lbadapter) Entering BACKUP STATE (init)")
time.sleep(0.05)
say("(lbadapter) Entering MASTER STATE")
for _ in range(600):
    time.sleep(0.1)
"""


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    path = tmp_path / "keepalived"
    path.write_text(FAKE)
    path.chmod(0o755)
    return path


async def wait_state(k: Keepalived, state: str, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while k.state != state:
            await k.state_changed.wait()


async def test_runs_restarts_and_stops(fake: Path, tmp_path: Path,
                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "lbadapter.keepalived")
    (tmp_path / "crash-once").touch()
    k = Keepalived(str(fake), tmp_path / "keepalived.conf", tmp_path / "keepalived.pid")
    async with anyio.create_task_group() as tg:
        await tg.start(k.run)
        await wait_state(k, "MASTER")  # after one crash and a restart
        assert k.starts == 2
        pid = k.pid
        assert pid is not None and Path(f"/proc/{pid}").exists()
        tg.cancel_scope.cancel()
    assert k.state == "STOPPED" and not _running(pid)
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[0] == (f"-n -l -G -D -P -B -f {tmp_path}/keepalived.conf -p "
                       f"{tmp_path}/keepalived.pid -r {tmp_path}/keepalived-vrrp.pid")
    text = caplog.text
    assert "keepalived exited with code 3" in text
    assert "keepalived: (lbadapter) Entering MASTER STATE" in text
    assert not re.search(r"\d{4}: \(lbadapter\)", text)  # keepalived's own time stamps cut
    # what it says while stopping is logged too (the address released)
    assert "keepalived: (lbadapter) removing VIPs." in text.split("stopping keepalived")[-1]


async def test_an_orphan_from_an_earlier_run_is_stopped(fake: Path, tmp_path: Path) -> None:
    conf, pid_file = tmp_path / "keepalived.conf", tmp_path / "keepalived.pid"
    orphan = subprocess.Popen([str(fake), "-n", "-f", str(conf), "-p", str(pid_file)],
                              stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        with anyio.fail_after(10):
            while not pid_file.exists() or pid_file.read_text().strip() != str(orphan.pid):
                await anyio.sleep(0.02)
        k = Keepalived(str(fake), conf, pid_file)
        async with anyio.create_task_group() as tg:
            await tg.start(k.run)  # returns once the orphan is gone
            assert orphan.poll() is not None
            await wait_state(k, "MASTER")
            tg.cancel_scope.cancel()
    finally:
        if orphan.poll() is None:
            orphan.kill()
        orphan.wait(10)


async def test_a_pid_file_naming_another_program_is_left_alone(fake: Path,
                                                              tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             start_new_session=True)
    try:
        (tmp_path / "keepalived.pid").write_text(f"{other.pid}\n")
        k = Keepalived(str(fake), tmp_path / "keepalived.conf", tmp_path / "keepalived.pid")
        async with anyio.create_task_group() as tg:
            await tg.start(k.run)
            await wait_state(k, "MASTER")
            tg.cancel_scope.cancel()
        assert other.poll() is None
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait(10)


class FakeHAProxy:
    """What :func:`track_haproxy` reads of :class:`lbadapter.supervisor.Supervisor`."""

    def __init__(self, admin_socket: Path) -> None:
        self.ready = False
        self.admin_socket = admin_socket


async def test_health_follows_haproxy(tmp_path: Path) -> None:
    sock_path = tmp_path / "admin.sock"
    answers = {"count": 0, "answer": True}

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()
            answers["count"] += 1
            if answers["answer"]:
                await stream.send(b"Name: HAProxy\nPid: 42\n")

    listener = await anyio.create_unix_listener(sock_path)
    haproxy = FakeHAProxy(sock_path)
    health = HealthFile(tmp_path / "haproxy-fault")

    async def until(value: str) -> None:
        with anyio.fail_after(10):
            while not health.path.exists() or health.path.read_text() != value:
                await anyio.sleep(0.02)

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        tg.start_soon(track_haproxy, haproxy, health, 0.02)
        await until("1\n")  # not ready yet
        haproxy.ready = True
        await until("0\n")
        answers["answer"] = False  # answers without "Pid:": unhealthy after a few polls
        seen = answers["count"]
        await until("1\n")
        assert answers["count"] - seen >= 4
        answers["answer"] = True
        await until("0\n")
        haproxy.ready = False  # the master exited: at once
        await until("1\n")
        tg.cancel_scope.cancel()
    await listener.aclose()


def _running(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and os.path.exists(f"/proc/{pid}")
