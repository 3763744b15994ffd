"""The real ``serf`` CLI (Debian's /usr/bin/serf) against our RPC server.

Our server runs in the test's event loop over a FakeAgent on a free loopback
port; every ``serf`` process is started with :func:`anyio.run_process` under
a deadline, so it is killed (by its PID) if it hangs. We check its output and
exit code, that the FakeAgent saw the call, and that our client sends the
same request bytes as Go's client. Tests open their server in their body (no
async fixtures), so they run under any anyio backend: the suite runs them
under trio and ``test_under_asyncio`` reruns a selection under asyncio.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream, SocketAttribute

from swimlib.cluster.events import ClusterMember
from swimlib.rpc.server import RPCServer, serve_rpc
from swimlib.rpc.testing import FakeAgent, default_members, serving

SERF = shutil.which("serf") or "/usr/bin/serf"
pytestmark = pytest.mark.skipif(
    not os.path.exists(SERF), reason="the real serf CLI (/usr/bin/serf, Debian package serf) "
    "is not installed")

TIMEOUT = 30


@asynccontextmanager
async def served(auth_key: str = "") -> AsyncIterator[tuple[FakeAgent, str]]:
    """A FakeAgent served on a free loopback port: (agent, "127.0.0.1:port")."""
    agent = FakeAgent()
    async with serving(agent, auth_key=auth_key) as port:
        yield agent, f"127.0.0.1:{port}"


async def serf(addr: str, command: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """``serf COMMAND -rpc-addr=ADDR ARGS...`` (Go stops parsing flags at a positional)."""
    with anyio.fail_after(TIMEOUT):
        return await anyio.run_process([SERF, command, f"-rpc-addr={addr}", *args],
                                       check=False)


def lines(proc: subprocess.CompletedProcess[bytes]) -> list[str]:
    return proc.stdout.decode().splitlines()


async def test_members():
    async with served() as (agent, addr):
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


async def test_members_detailed():
    async with served() as (_agent, addr):
        proc = await serf(addr, "members", "-detailed", "-name=n0")
        assert proc.stdout.decode() == (
            "n0  127.0.0.1:17200  alive  role=balancer  "
            "Protocol Version: 5  Available Protocol Range: [2, 5]\n")


async def test_members_json():
    async with served() as (_agent, addr):
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


async def test_members_filtered():
    async with served() as (_agent, addr):
        proc = await serf(addr, "members", "-status=alive", "-tag", "role=web")
        assert (proc.returncode, proc.stdout) == (0, b"n1  127.0.0.1:17201  alive  role=web\n")
        proc = await serf(addr, "members", "-status=left|failed")
        assert lines(proc)[0].startswith("n2  127.0.0.1:17202  failed  ")
        proc = await serf(addr, "members", "-name=(")
        assert proc.returncode == 1
        assert proc.stdout.decode().startswith("Error retrieving members: Failed to compile regex")


async def test_event():
    async with served() as (agent, addr):
        proc = await serf(addr, "event", "deploy", "v42")
        assert (proc.returncode, proc.stdout) == (
            0, b"Event 'deploy' dispatched! Coalescing enabled: true\n")
        proc = await serf(addr, "event", "-coalesce=false", "restart")
        assert proc.stdout == b"Event 'restart' dispatched! Coalescing enabled: false\n"
        assert [c for c in agent.calls if c[0] == "user_event"] == [
            ("user_event", "deploy", b"v42", True), ("user_event", "restart", b"", False)]


async def test_tags():
    async with served() as (agent, addr):
        proc = await serf(addr, "tags", "-set", "k=v", "-delete", "role")
        assert (proc.returncode, proc.stdout) == (0, b"Successfully updated agent tags\n")
        assert agent.calls[-1] == ("set_tags", {"k": "v"}, ["role"])
        assert lines(await serf(addr, "members", "-name=n0")) == ["n0  127.0.0.1:17200  alive  k=v"]


async def test_query():
    async with served() as (agent, addr):
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


async def test_info():
    async with served() as (_agent, addr):
        proc = await serf(addr, "info")
        assert proc.returncode == 0
        text = proc.stdout.decode()
        assert text.startswith("agent:\n\tname = n0\nevent_handlers:\nruntime:\n\tarch = amd64\n")
        assert text.endswith("tags:\n\trole = balancer\n")
        proc = await serf(addr, "info", "-format=json")
        assert json.loads(proc.stdout)["agent"] == {"name": "n0"}


async def test_join():
    async with served() as (agent, addr):
        proc = await serf(addr, "join", "127.0.0.1:1")
        assert proc.returncode == 1
        assert proc.stdout.decode().startswith("Error joining the cluster: 1 error(s) occurred:")
        proc = await serf(addr, "join", "-replay", "10.0.0.1", "10.0.0.2:7946")
        assert (proc.returncode, proc.stdout) == (
            0, b"Successfully joined cluster by contacting 2 nodes.\n")
        assert agent.calls[-2:] == [("join", ["127.0.0.1:1"], False),
                                    ("join", ["10.0.0.1", "10.0.0.2:7946"], True)]


async def test_leave():
    async with served() as (agent, addr):
        proc = await serf(addr, "leave")
        assert (proc.returncode, proc.stdout) == (0, b"Graceful leave complete\n")
        with anyio.fail_after(5):
            while not agent.shutdown_requested:
                await anyio.sleep(0.01)
        assert ("leave",) in agent.calls


async def test_force_leave_keys_reachability_rtt():
    async with served() as (agent, addr):
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
        # The FakeAgent's coordinates are two serf agents' own: serf said 0.569 ms then.
        proc = await serf(addr, "rtt", "n1")
        assert (proc.returncode, proc.stdout) == (0, b"Estimated n1 <-> n0 rtt: 0.569 ms\n")
        proc = await serf(addr, "rtt", "n1", "n2")
        assert (proc.returncode, proc.stdout) == (1, b'Could not find a coordinate for node "n2"\n')


async def test_monitor():
    async with served() as (agent, addr):
        agent.log("INFO", "agent: Serf agent starting")
        proc = await anyio.open_process(
            [SERF, "monitor", f"-rpc-addr={addr}", "-log-level=debug"], stdin=None, stderr=None)
        seen = b""
        event_lines = ['\tEvent: "user"', "\tLTime: 1", '\tName: "deploy"',
                       "\tPayload: []byte{0x76, 0x31}", "\tCoalesce: true"]
        try:
            assert proc.stdout is not None
            with anyio.fail_after(TIMEOUT):
                while agent.log_subscribers == 0:
                    await anyio.sleep(0.01)
                await agent.user_event("deploy", b"v1", True)
                agent.log("DEBUG", "memberlist: probe")
                # serf prints the event's fields in Go's random map order: wait for all of them.
                while b"probe" not in seen or not all(
                        f"\n{line}\n".encode() in seen for line in event_lines):
                    try:
                        seen += await proc.stdout.receive(4096)
                    except anyio.EndOfStream:
                        pytest.fail(f"serf monitor ended early: {seen!r}")
            proc.send_signal(signal.SIGINT)
            with anyio.fail_after(TIMEOUT):
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
            with anyio.move_on_after(5, shield=True):
                await proc.aclose()
        text = seen.decode()
        assert "[INFO] agent: Serf agent starting\n" in text
        assert "Event Info:\n" in text
        for line in event_lines:
            assert f"\n{line}\n" in text
        with anyio.fail_after(5):
            while agent.log_subscribers or agent.event_subscribers:
                await anyio.sleep(0.01)


async def test_auth():
    agent = FakeAgent()
    async with anyio.create_task_group() as tg:
        listeners = await tg.start(
            lambda task_status: serve_rpc(agent, "127.0.0.1", 0, auth_key="tok",
                                          task_status=task_status))
        addr = f"127.0.0.1:{listeners[0].extra(SocketAttribute.local_address)[1]}"
        proc = await serf(addr, "members", "-rpc-auth=tok", "-name=n1")
        assert (proc.returncode, proc.stdout) == (0, b"n1  127.0.0.1:17201  alive  role=web\n")
        proc = await serf(addr, "members", "-rpc-auth=nope")
        assert (proc.returncode, proc.stdout) == (
            1, b"Error connecting to Serf agent: Invalid authentication token\n")
        proc = await serf(addr, "members")
        assert (proc.returncode, proc.stdout) == (
            1, b"Error retrieving members: Authentication required\n")
        tg.cancel_scope.cancel()


class _Recorder(ByteStream):
    """A server-side stream that keeps every byte the client sent."""

    def __init__(self, inner: ByteStream, sink: list[bytes]) -> None:
        self.inner = inner
        self.sink = sink

    async def send(self, item: bytes) -> None:
        await self.inner.send(item)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = await self.inner.receive(max_bytes)
        self.sink.append(bytes(data))
        return bytes(data)

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.inner.extra_attributes  # the peer's address, for the server's log


async def swimlib_cli(*argv: str) -> subprocess.CompletedProcess[bytes]:
    with anyio.fail_after(TIMEOUT):
        return await anyio.run_process([sys.executable, "-m", "swimlib.cli", *argv],
                                       check=False)


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
async def test_our_client_sends_the_same_bytes_as_serf(argv: Sequence[str]):
    received: dict[str, list[bytes]] = {}
    # one tag per member: Go prints several in random (map) order
    agent = FakeAgent([ClusterMember(m.name, m.addr, m.port, m.tags[:1], status=m.status)
                       for m in default_members()])
    server = RPCServer(agent)

    async def handler(stream: ByteStream) -> None:
        await server.handle_connection(_Recorder(stream, received.setdefault(current, [])))

    async with (await anyio.create_tcp_listener(local_host="127.0.0.1") as listener,
                anyio.create_task_group() as tg):
        tg.start_soon(listener.serve, handler)
        addr = f"127.0.0.1:{listener.extra(SocketAttribute.local_address)[1]}"
        current = "serf"
        go = await serf(addr, argv[0], *argv[1:])
        current = "swimlib"
        ours = await swimlib_cli(argv[0], f"-rpc-addr={addr}", *argv[1:])
        tg.cancel_scope.cancel()
    assert go.returncode == ours.returncode == 0, (go, ours)
    assert b"".join(received["swimlib"]) == b"".join(received["serf"])
    if argv[0] == "query":  # Go prints acks and responses in random order
        assert sorted(ours.stdout.splitlines()) == sorted(go.stdout.splitlines())
    else:
        assert ours.stdout == go.stdout


#: Scenarios rerun under asyncio (the suite runs them under trio).
ASYNCIO_SCENARIOS = [
    test_members,
    test_members_json,
    test_event,
    test_query,
    test_leave,
    test_monitor,
    test_auth,
]


@pytest.mark.parametrize("scenario", ASYNCIO_SCENARIOS, ids=lambda f: f.__name__[5:])
def test_under_asyncio(scenario) -> None:
    anyio.run(scenario, backend="asyncio")


def test_same_bytes_under_asyncio() -> None:
    anyio.run(test_our_client_sends_the_same_bytes_as_serf,
              ["query", "-timeout=1s", "ping", "hi"], backend="asyncio")
