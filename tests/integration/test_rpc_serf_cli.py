"""The real ``serf`` CLI (Debian's /usr/bin/serf) against our RPC server.

Our server runs in the test's trio loop over a FakeAgent on a free loopback
port; every ``serf`` process is started with :func:`trio.run_process` under
a deadline, so it is killed (by its PID) if it hangs. We check its output and
exit code, that the FakeAgent saw the call, and that our client sends the
same request bytes as Go's client.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import pytest
import trio

from swimlib.cluster.events import ClusterMember
from swimlib.rpc.server import RPCServer, serve_rpc
from swimlib.rpc.testing import FakeAgent, default_members

SERF = shutil.which("serf") or "/usr/bin/serf"
pytestmark = pytest.mark.skipif(
    not os.path.exists(SERF), reason="the real serf CLI (/usr/bin/serf, Debian package serf) "
    "is not installed")

TIMEOUT = 30


@pytest.fixture
async def served(nursery):
    agent = FakeAgent()
    listeners = await nursery.start(serve_rpc, agent, "127.0.0.1", 0)
    return agent, f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"


async def serf(addr: str, command: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """``serf COMMAND -rpc-addr=ADDR ARGS...`` (Go stops parsing flags at a positional)."""
    with trio.fail_after(TIMEOUT):
        return await trio.run_process(
            [SERF, command, f"-rpc-addr={addr}", *args],
            capture_stdout=True, capture_stderr=True, check=False,
        )


def lines(proc: subprocess.CompletedProcess[bytes]) -> list[str]:
    return proc.stdout.decode().splitlines()


async def test_members(served):
    agent, addr = served
    proc = await serf(addr, "members")
    assert proc.returncode == 0, proc
    # Go prints tags in map order, which is random
    assert proc.stdout.decode() in (
        "n0  127.0.0.1:17200  alive   role=balancer\n"
        "n1  127.0.0.1:17201  alive   role=web\n"
        f"n2  127.0.0.1:17202  failed  {tags}\n"
        for tags in ("role=web,weight=10", "weight=10,role=web")
    )
    assert ("members",) in agent.calls


async def test_members_detailed(served):
    _agent, addr = served
    proc = await serf(addr, "members", "-detailed", "-name=n0")
    assert proc.stdout.decode() == (
        "n0  127.0.0.1:17200  alive  role=balancer  "
        "Protocol Version: 5  Available Protocol Range: [2, 5]\n")


async def test_members_json(served):
    _agent, addr = served
    proc = await serf(addr, "members", "-format=json")
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert [m["name"] for m in doc["members"]] == ["n0", "n1", "n2"]
    assert doc["members"][2] == {
        "name": "n2", "addr": "127.0.0.1:17202", "port": 17202,
        "tags": {"role": "web", "weight": "10"}, "status": "failed",
        "protocol": {"max": 5, "min": 2, "version": 5},
    }
    # and our CLI prints the very same bytes
    ours = await swimlib_cli("members", f"-rpc-addr={addr}", "-format=json")
    assert ours.stdout == proc.stdout


async def test_members_filtered(served):
    _agent, addr = served
    proc = await serf(addr, "members", "-status=alive", "-tag", "role=web")
    assert (proc.returncode, proc.stdout) == (0, b"n1  127.0.0.1:17201  alive  role=web\n")
    proc = await serf(addr, "members", "-status=left|failed")
    assert lines(proc)[0].startswith("n2  127.0.0.1:17202  failed  ")
    proc = await serf(addr, "members", "-name=(")
    assert proc.returncode == 1
    assert proc.stdout.decode().startswith("Error retrieving members: Failed to compile regex")


async def test_event(served):
    agent, addr = served
    proc = await serf(addr, "event", "deploy", "v42")
    assert (proc.returncode, proc.stdout) == (
        0, b"Event 'deploy' dispatched! Coalescing enabled: true\n")
    proc = await serf(addr, "event", "-coalesce=false", "restart")
    assert proc.stdout == b"Event 'restart' dispatched! Coalescing enabled: false\n"
    assert [c for c in agent.calls if c[0] == "user_event"] == [
        ("user_event", "deploy", b"v42", True), ("user_event", "restart", b"", False)]


async def test_tags(served):
    agent, addr = served
    proc = await serf(addr, "tags", "-set", "k=v", "-delete", "role")
    assert (proc.returncode, proc.stdout) == (0, b"Successfully updated agent tags\n")
    assert agent.calls[-1] == ("set_tags", {"k": "v"}, ["role"])
    assert lines(await serf(addr, "members", "-name=n0")) == ["n0  127.0.0.1:17200  alive  k=v"]


async def test_query(served):
    agent, addr = served
    proc = await serf(addr, "query", "-timeout=1s", "ping", "hi")
    assert proc.returncode == 0, proc
    out = lines(proc)
    # Go's client reads acks and responses from two channels in random order
    assert out[0] == "Query 'ping' dispatched"
    assert sorted(out[1:5]) == ["Ack from 'n0'", "Ack from 'n1'",
                                "Response from 'n0': pong-from-n0",
                                "Response from 'n1': pong-from-n1"]
    assert out[5:] == ["Total Acks: 2", "Total Responses: 2"]
    assert agent.calls[-1] == ("query", "ping", b"hi", [], {}, True, 0, 1.0)
    proc = await serf(addr, "query", "-format=json", "-no-ack", "-node=n1", "-tag", "role=w.*",
                      "-relay-factor=3", "ping")
    assert json.loads(proc.stdout) == {"Acks": None, "Responses": {"n1": "pong-from-n1\n"}}
    assert agent.calls[-1] == ("query", "ping", b"", ["n1"], {"role": "w.*"}, False, 3, 0.0)


async def test_info(served):
    _agent, addr = served
    proc = await serf(addr, "info")
    assert proc.returncode == 0
    text = proc.stdout.decode()
    assert text.startswith("agent:\n\tname = n0\nevent_handlers:\nruntime:\n\tarch = amd64\n")
    assert text.endswith("tags:\n\trole = balancer\n")
    proc = await serf(addr, "info", "-format=json")
    assert json.loads(proc.stdout)["agent"] == {"name": "n0"}


async def test_join(served):
    agent, addr = served
    proc = await serf(addr, "join", "127.0.0.1:1")
    assert proc.returncode == 1
    assert proc.stdout.decode().startswith("Error joining the cluster: 1 error(s) occurred:")
    proc = await serf(addr, "join", "-replay", "10.0.0.1", "10.0.0.2:7946")
    assert (proc.returncode, proc.stdout) == (
        0, b"Successfully joined cluster by contacting 2 nodes.\n")
    assert agent.calls[-2:] == [("join", ["127.0.0.1:1"], False),
                                ("join", ["10.0.0.1", "10.0.0.2:7946"], True)]


async def test_leave(served):
    agent, addr = served
    proc = await serf(addr, "leave")
    assert (proc.returncode, proc.stdout) == (0, b"Graceful leave complete\n")
    with trio.fail_after(5):
        while not agent.shutdown_requested:
            await trio.sleep(0.01)
    assert ("leave",) in agent.calls


async def test_force_leave_keys_reachability_rtt(served):
    agent, addr = served
    proc = await serf(addr, "force-leave", "-prune", "n2")
    assert (proc.returncode, proc.stdout) == (0, b"")
    assert agent.calls[-1] == ("force_leave", "n2", True)
    proc = await serf(addr, "keys", "-install", "newkey")
    assert lines(proc) == ["==> Installing key on all members...",
                           "==> Successfully installed key!"]
    proc = await serf(addr, "keys", "-list")
    assert proc.returncode == 0 and f"{agent.keyring[0]}  [2/2]" in lines(proc)
    proc = await serf(addr, "keys", "-use", "nope")
    assert proc.returncode == 1
    assert "Error changing primary key: 2/2 nodes reported failure" in lines(proc)
    proc = await serf(addr, "reachability")
    assert lines(proc) == ["Total members: 2, live members: 2", "Starting reachability test...",
                           "Successfully contacted all live nodes"]
    proc = await serf(addr, "rtt", "n1")
    assert (proc.returncode, proc.stdout) == (1, b'Could not find a coordinate for node "n1"\n')


async def test_monitor(served):
    agent, addr = served
    agent.log("INFO", "agent: Serf agent starting")
    proc = await trio.lowlevel.open_process(
        [SERF, "monitor", f"-rpc-addr={addr}", "-log-level=debug"], stdout=subprocess.PIPE)
    seen = b""
    event_lines = ['\tEvent: "user"', "\tLTime: 1", '\tName: "deploy"',
                   "\tPayload: []byte{0x76, 0x31}", "\tCoalesce: true"]
    try:
        assert proc.stdout is not None
        with trio.fail_after(TIMEOUT):
            while agent.log_subscribers == 0:
                await trio.sleep(0.01)
            await agent.user_event("deploy", b"v1", True)
            agent.log("DEBUG", "memberlist: probe")
            # serf prints the event's fields in Go's random map order: wait for all of them.
            while b"probe" not in seen or not all(
                    f"\n{line}\n".encode() in seen for line in event_lines):
                chunk = await proc.stdout.receive_some(4096)
                assert chunk, seen
                seen += chunk
        proc.send_signal(signal.SIGINT)
        with trio.fail_after(TIMEOUT):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            with trio.move_on_after(5):
                await proc.wait()
    text = seen.decode()
    assert "[INFO] agent: Serf agent starting\n" in text
    assert "Event Info:\n" in text
    for line in event_lines:
        assert f"\n{line}\n" in text
    with trio.fail_after(5):
        while agent.log_subscribers or agent.event_subscribers:
            await trio.sleep(0.01)


async def test_auth(nursery):
    agent = FakeAgent()
    listeners = await nursery.start(
        lambda task_status: serve_rpc(agent, "127.0.0.1", 0, auth_key="tok",
                                      task_status=task_status))
    addr = f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"
    proc = await serf(addr, "members", "-rpc-auth=tok", "-name=n1")
    assert (proc.returncode, proc.stdout) == (0, b"n1  127.0.0.1:17201  alive  role=web\n")
    proc = await serf(addr, "members", "-rpc-auth=nope")
    assert (proc.returncode, proc.stdout) == (
        1, b"Error connecting to Serf agent: Invalid authentication token\n")
    proc = await serf(addr, "members")
    assert (proc.returncode, proc.stdout) == (
        1, b"Error retrieving members: Authentication required\n")


class _Recorder(trio.abc.Stream):
    """A server-side stream that keeps every byte the client sent."""

    def __init__(self, inner: trio.SocketStream, sink: list[bytes]) -> None:
        self.inner = inner
        self.sink = sink

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = await self.inner.receive_some(max_bytes)
        self.sink.append(bytes(data))
        return bytes(data)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def swimlib_cli(*argv: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(TIMEOUT):
        return await trio.run_process([sys.executable, "-m", "swimlib.cli", *argv],
                                      capture_stdout=True, capture_stderr=True, check=False)


@pytest.mark.parametrize(
    "argv",
    [
        ["members"],
        ["members", "-status=alive", "-tag", "role=web", "-name=n.*"],
        ["event", "deploy", "v42"],
        ["event", "-coalesce=false", "bare"],
        ["tags", "-set", "a=b", "-delete", "role"],
        ["join", "-replay", "10.0.0.1", "10.0.0.2:7946"],
        ["query", "-timeout=1s", "ping", "hi"],
        ["query", "-no-ack", "-node=n1", "-tag", "role=w.*", "-relay-factor=2", "ping"],
        ["force-leave", "-prune", "n2"],
        ["keys", "-install", "k"],
        ["keys", "-list"],
        ["info"],
        ["leave"],
    ],
)
async def test_our_client_sends_the_same_bytes_as_serf(nursery, argv: Sequence[str]):
    received: dict[str, list[bytes]] = {}
    # one tag per member: Go prints several in random (map) order
    agent = FakeAgent([ClusterMember(m.name, m.addr, m.port, m.tags[:1], status=m.status)
                       for m in default_members()])
    server = RPCServer(agent)

    async def handler(stream: Any) -> None:
        await server.handle_connection(_Recorder(stream, received.setdefault(current, [])))

    listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0,
                                                      host="127.0.0.1"))
    addr = f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"
    current = "serf"
    go = await serf(addr, argv[0], *argv[1:])
    current = "swimlib"
    ours = await swimlib_cli(argv[0], f"-rpc-addr={addr}", *argv[1:])
    assert go.returncode == ours.returncode == 0, (go, ours)
    assert b"".join(received["swimlib"]) == b"".join(received["serf"])
    if argv[0] == "query":  # Go prints acks and responses in random order
        assert sorted(ours.stdout.splitlines()) == sorted(go.stdout.splitlines())
    else:
        assert ours.stdout == go.stdout
