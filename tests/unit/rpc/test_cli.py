"""``swimlib members|join|leave|...`` against an RPC server backed by FakeAgent.

Each test starts its server in its body (no async fixtures), so the tests run
under any anyio backend; ``test_under_asyncio`` reruns a selection under asyncio.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.to_thread
import pytest
from anyio.abc import SocketAttribute

from swimlib.cli import main
from swimlib.cluster.events import ClusterMember, MemberStatus
from swimlib.rpc.client import RPCClient, RPCConnectError, RPCError, split_host_port
from swimlib.rpc.server import serve_rpc
from swimlib.rpc.testing import FakeAgent, serving


@asynccontextmanager
async def served(agent: FakeAgent | None = None,
                 auth_key: str = "") -> AsyncIterator[tuple[FakeAgent, str]]:
    """A FakeAgent served on a free loopback port: (agent, "127.0.0.1:port")."""
    agent = FakeAgent() if agent is None else agent
    async with serving(agent, auth_key=auth_key) as port:
        yield agent, f"127.0.0.1:{port}"


async def cli(*argv: str) -> int:
    with anyio.fail_after(20):
        return await anyio.to_thread.run_sync(main, list(argv))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_members_text(capsys):
    async with served() as (_agent, addr):
        assert await cli("members", "--rpc-addr", addr) == 0
        assert capsys.readouterr().out == (
            "n0  127.0.0.1:17200  alive   role=balancer\n"
            "n1  127.0.0.1:17201  alive   role=web\n"
            "n2  127.0.0.1:17202  failed  role=web,weight=10\n"
        )


async def test_members_detailed_with_go_style_flags(capsys):
    async with served() as (_agent, addr):
        assert await cli("members", f"-rpc-addr={addr}", "-detailed", "-name=n0") == 0
        assert capsys.readouterr().out == (
            "n0  127.0.0.1:17200  alive  role=balancer  "
            "Protocol Version: 5  Available Protocol Range: [2, 5]\n"
        )


async def test_members_filters(capsys):
    async with served() as (_agent, addr):
        assert await cli("members", "-rpc-addr", addr, "-status=alive", "-tag", "role=web") == 0
        assert capsys.readouterr().out == "n1  127.0.0.1:17201  alive  role=web\n"
        assert await cli("members", "--rpc-addr", addr, "--status", "left|failed") == 0
        assert capsys.readouterr().out.startswith("n2  ")


async def test_members_json_matches_serf_shape(capsys):
    async with served() as (_agent, addr):
        assert await cli("members", "--rpc-addr", addr, "--format", "json", "--name", "n2") == 0
        text = capsys.readouterr().out
        assert text == """{
  "members": [
    {
      "name": "n2",
      "addr": "127.0.0.1:17202",
      "port": 17202,
      "tags": {
        "role": "web",
        "weight": "10"
      },
      "status": "failed",
      "protocol": {
        "max": 5,
        "min": 2,
        "version": 5
      }
    }
  ]
}
"""
        assert await cli("members", "--rpc-addr", addr, "--format=json", "--name", "nobody") == 0
        assert json.loads(capsys.readouterr().out) == {"members": None}


async def test_members_empty_and_no_tags(capsys):
    agent = FakeAgent([ClusterMember("solo", "::1", 7946, {}, status=MemberStatus.LEFT),
                       ClusterMember("b", "10.0.0.2", 1, {"k": "v"})])
    async with served(agent) as (_agent, addr):
        assert await cli("members", "--rpc-addr", addr) == 0
        # Go pads every column but the last, then trims only the whole output
        assert capsys.readouterr().out == (
            "solo  [::1]:7946  left   \nb     10.0.0.2:1  alive  k=v\n")
        assert await cli("members", "--rpc-addr", addr, "--name", "solo") == 0
        assert capsys.readouterr().out == "solo  [::1]:7946  left\n"
        assert await cli("members", "--rpc-addr", addr, "--name", "none") == 0
        assert capsys.readouterr().out == "\n"


async def test_rpc_address_from_environment(capsys, monkeypatch):
    async with served() as (_agent, addr):
        monkeypatch.setenv("SERF_RPC_ADDR", "127.0.0.1:1")
        monkeypatch.setenv("SWIMLIB_RPC_ADDR", addr)
        assert await cli("members", "--name", "n0") == 0
        assert capsys.readouterr().out.startswith("n0 ")
        monkeypatch.delenv("SWIMLIB_RPC_ADDR")
        monkeypatch.setenv("SERF_RPC_ADDR", addr)
        assert await cli("members", "--name", "n0") == 0


async def test_bad_tag_filter(capsys):
    async with served() as (_agent, addr):
        assert await cli("members", "--rpc-addr", addr, "--tag", "novalue") == 1
        assert capsys.readouterr().err == "Error: Invalid tag: 'novalue'\n"


async def test_bad_regex_is_reported(capsys):
    async with served() as (_agent, addr):
        assert await cli("members", "--rpc-addr", addr, "--name", "(") == 1
        assert capsys.readouterr().err.startswith(
            "Error retrieving members: Failed to compile regex")


async def test_event(capsys):
    async with served() as (agent, addr):
        assert await cli("event", "--rpc-addr", addr, "deploy", "v42") == 0
        assert capsys.readouterr().out == "Event 'deploy' dispatched! Coalescing enabled: true\n"
        assert await cli("event", "--rpc-addr", addr, "-coalesce=false", "restart") == 0
        assert capsys.readouterr().out == "Event 'restart' dispatched! Coalescing enabled: false\n"
        assert await cli("event", "--rpc-addr", addr, "--coalesce", "false", "x") == 0
        assert [c for c in agent.calls if c[0] == "user_event"] == [
            ("user_event", "deploy", b"v42", True),
            ("user_event", "restart", b"", False),
            ("user_event", "x", b"", False),
        ]


async def test_event_error(capsys):
    async with served() as (agent, addr):
        agent.fail["user_event"] = "user event exceeds limit of 512 bytes"
        assert await cli("event", "--rpc-addr", addr, "big") == 1
        assert capsys.readouterr().err == (
            "Error sending event: user event exceeds limit of 512 bytes\n")


async def test_tags(capsys):
    async with served() as (agent, addr):
        assert await cli("tags", "--rpc-addr", addr, "--set", "k=v", "-set", "a=b=c",
                         "--delete", "role") == 0
        assert capsys.readouterr().out == "Successfully updated agent tags\n"
        assert agent.calls[-1] == ("set_tags", {"k": "v", "a": "b=c"}, ["role"])
        assert await cli("tags", "--rpc-addr", addr) == 1
        assert "usage:" in capsys.readouterr().out


async def test_join(capsys):
    async with served() as (agent, addr):
        assert await cli("join", "--rpc-addr", addr, "--replay", "10.0.0.1", "10.0.0.2:7946") == 0
        assert capsys.readouterr().out == "Successfully joined cluster by contacting 2 nodes.\n"
        assert agent.calls[-1] == ("join", ["10.0.0.1", "10.0.0.2:7946"], True)
        assert await cli("join", "--rpc-addr", addr, "127.0.0.1:1") == 1
        assert capsys.readouterr().err.startswith("Error joining the cluster: 1 error(s) occurred")


async def test_leave_and_force_leave(capsys):
    async with served() as (agent, addr):
        assert await cli("force-leave", "--rpc-addr", addr, "-prune", "n2") == 0
        assert capsys.readouterr().out == ""
        assert await cli("leave", "--rpc-addr", addr) == 0
        assert capsys.readouterr().out == "Graceful leave complete\n"
        with anyio.fail_after(5):
            while not agent.shutdown_requested:  # requested just after the reply is sent
                await anyio.sleep(0.01)
        assert agent.calls[-3:] == [("force_leave", "n2", True), ("leave",), ("request_shutdown",)]
        agent.fail["force_leave"] = "no such member"
        assert await cli("force-leave", "--rpc-addr", addr, "n9") == 1
        assert capsys.readouterr().err == "Error force leaving: no such member\n"


async def test_query_text(capsys):
    async with served() as (agent, addr):
        assert await cli("query", "--rpc-addr", addr, "--timeout", "1s", "ping", "hi") == 0
        assert capsys.readouterr().out == (
            "Query 'ping' dispatched\n"
            "Ack from 'n0'\n"
            "Response from 'n0': pong-from-n0\n"
            "Ack from 'n1'\n"
            "Response from 'n1': pong-from-n1\n"
            "Total Acks: 2\n"
            "Total Responses: 2\n"
        )
        assert agent.calls[-1] == ("query", "ping", b"hi", [], {}, True, 0, 1.0)


async def test_query_options_and_json(capsys):
    async with served() as (agent, addr):
        argv = ["query", "--rpc-addr", addr, "-no-ack", "-node", "n1", "-tag", "role=w.*",
                "-relay-factor=2", "-timeout=1m30s", "-format=json", "ping"]
        assert await cli(*argv) == 0
        assert json.loads(capsys.readouterr().out) == {
            "Acks": None, "Responses": {"n1": "pong-from-n1\n"}}
        assert agent.calls[-1] == ("query", "ping", b"", ["n1"], {"role": "w.*"}, False, 2, 90.0)
        assert await cli("query", "--rpc-addr", addr, "--no-ack", "ping") == 0
        assert "Total Acks" not in capsys.readouterr().out


async def test_query_errors(capsys):
    async with served() as (agent, addr):
        assert await cli("query", "--rpc-addr", addr, "--relay-factor", "300", "q") == 1
        assert capsys.readouterr().err == "Relay factor must be between 0 and 255\n"
        agent.fail["query"] = "query exceeds limit of 1024 bytes"
        assert await cli("query", "--rpc-addr", addr, "q") == 1
        assert capsys.readouterr().err == "Error sending query: query exceeds limit of 1024 bytes\n"


async def test_keys(capsys):
    async with served() as (agent, addr):
        assert await cli("keys", "--rpc-addr", addr, "--install", "k2") == 0
        assert capsys.readouterr().out == (
            "==> Installing key on all members...\n==> Successfully installed key!\n")
        assert await cli("keys", "--rpc-addr", addr, "-list") == 0
        assert capsys.readouterr().out == (
            "==> Asking all members for installed keys...\n"
            "==> Keys gathered, listing cluster keys...\n\n"
            f"{agent.keyring[0]}  [3/3]\n"
            f"k2{' ' * (len(agent.keyring[0]) - 2)}  [3/3]\n"
        )
        assert await cli("keys", "--rpc-addr", addr, "--use", "nope") == 1
        captured = capsys.readouterr()
        assert captured.out == "==> Changing primary key on all members...\n"
        assert captured.err == (
            "failed:  n0  Requested key is not in the keyring\n"
            "failed:  n1  Requested key is not in the keyring\n"
            "failed:  n2  Requested key is not in the keyring\n"
            "\n"
            "Error changing primary key: 3/3 nodes reported failure\n"
        )
        assert await cli("keys", "--rpc-addr", addr, "--remove", "k2", "--list") == 1
        assert capsys.readouterr().err == "Only one of -install, -use, -remove, or -list allowed\n"


async def test_info(capsys):
    async with served() as (_agent, addr):
        assert await cli("info", "--rpc-addr", addr) == 0
        out = capsys.readouterr().out
        assert out.startswith("agent:\n\tname = n0\nevent_handlers:\nruntime:\n")
        assert out.endswith("tags:\n\trole = balancer\n")
        assert await cli("info", "--rpc-addr", addr, "-format=json") == 0
        assert json.loads(capsys.readouterr().out)["serf"]["members"] == "3"


async def test_reachability(capsys):
    async with served() as (agent, addr):
        assert await cli("reachability", "--rpc-addr", addr, "-verbose") == 0
        out = capsys.readouterr().out
        assert out.startswith("Total members: 3, live members: 2\nStarting reachability test...\n"
                              "\tAck from 'n0'\n\tAck from 'n1'\nQuery time: ")
        assert out.endswith("Successfully contacted all live nodes\n")
        assert agent.calls[-1][:2] == ("query", "_serf_ping")


async def test_rtt_as_serf_prints_it(capsys):
    async with served() as (agent, addr):
        # One name: the second is the agent's own (n0), from `stats`.
        assert await cli("rtt", "--rpc-addr", addr, "n1") == 0
        assert capsys.readouterr().out == "Estimated n1 <-> n0 rtt: 0.569 ms\n"
        assert agent.calls[-3:] == [("stats",), ("get_coordinate", "n1"),
                                    ("get_coordinate", "n0")]
        assert await cli("rtt", f"-rpc-addr={addr}", "n0", "n1") == 0
        assert capsys.readouterr().out == "Estimated n0 <-> n1 rtt: 0.569 ms\n"
        assert await cli("rtt", "--rpc-addr", addr, "n0", "n0") == 0
        assert capsys.readouterr().out == "Estimated n0 <-> n0 rtt: 0.310 ms\n"


async def test_rtt_failures(capsys):
    async with served() as (agent, addr):
        assert await cli("rtt", "--rpc-addr", addr, "n1", "n2") == 1
        assert capsys.readouterr().err == 'Could not find a coordinate for node "n2"\n'
        assert await cli("rtt", "--rpc-addr", addr, 'we"ird') == 1
        assert capsys.readouterr().err == 'Could not find a coordinate for node "we\\"ird"\n'
        for argv in ((), ("a", "b", "c")):
            assert await cli("rtt", "--rpc-addr", addr, *argv) == 1
            err = capsys.readouterr().err
            assert err.startswith("One or two node names must be specified\n\nusage: swimlib rtt")
        agent.fail["get_coordinate"] = "boom"
        assert await cli("rtt", "--rpc-addr", addr, "n1") == 1
        assert capsys.readouterr().err == "Error getting coordinates: boom\n"
        agent.fail["stats"] = "down"
        assert await cli("rtt", "--rpc-addr", addr, "n1") == 1
        assert capsys.readouterr().err == "Error querying agent: down\n"
        agent.coordinates["n2"] = agent.coordinates["n0"].__class__((0.0,) * 3, 1.5)
        del agent.fail["get_coordinate"]
        assert await cli("rtt", "--rpc-addr", addr, "n1", "n2") == 1
        assert capsys.readouterr().err == (
            "Error getting coordinates: coordinate dimensionality does not match\n")


async def test_monitor_streams_until_the_agent_goes_away(capsys):
    agent = FakeAgent()
    agent.log("INFO", "agent: Serf agent starting")
    result: list[int] = []
    seen = ""
    async with anyio.create_task_group() as tg:
        listeners = await tg.start(serve_rpc, agent, "127.0.0.1", 0)
        addr = f"127.0.0.1:{listeners[0].extra(SocketAttribute.local_address)[1]}"

        async def run_monitor() -> None:
            result.append(await cli("monitor", "--rpc-addr", addr, "-log-level=debug"))

        tg.start_soon(run_monitor)
        with anyio.fail_after(10):
            while agent.log_subscribers == 0:
                await anyio.sleep(0.01)
            await agent.user_event("deploy", b"v1", True)
            agent.log("DEBUG", "memberlist: probe")
            while "probe" not in seen:
                await anyio.sleep(0.01)
                seen += capsys.readouterr().out
        # The agent goes away: the server task is cancelled, connections close.
        await listeners[0].aclose()
        tg.cancel_scope.cancel()
    with anyio.fail_after(10):
        while not result:
            await anyio.sleep(0.01)
    seen += capsys.readouterr().out
    assert result == [1]
    assert "[INFO] agent: Serf agent starting\n" in seen
    assert "Event Info:\n" in seen
    for line in ['\tEvent: "user"', "\tLTime: 1", '\tName: "deploy"',
                 "\tPayload: []byte{0x76, 0x31}", "\tCoalesce: true"]:
        assert f"\n{line}\n" in seen
    assert seen.endswith("\nRemote side ended the monitor! This usually means that the\n"
                         "remote side has exited or crashed.\n")


async def test_monitor_bad_level(capsys):
    async with served() as (_agent, addr):
        assert await cli("monitor", "--rpc-addr", addr, "--log-level", "loud") == 1
        assert capsys.readouterr().err == "Error starting monitor: Unknown log level: LOUD\n"


async def test_auth(capsys, monkeypatch):
    async with served(auth_key="tok") as (_agent, addr):
        assert await cli("members", "--rpc-addr", addr, "--rpc-auth", "tok", "--name", "n0") == 0
        assert await cli("members", "--rpc-addr", addr, "-rpc-auth=bad") == 1
        assert capsys.readouterr().err == (
            "Error connecting to Serf agent: Invalid authentication token\n")
        monkeypatch.setenv("SERF_RPC_AUTH", "tok")
        assert await cli("members", "--rpc-addr", addr) == 0
        assert await cli("members", "--rpc-addr", addr) == 0
        monkeypatch.delenv("SERF_RPC_AUTH")
        assert await cli("members", "--rpc-addr", addr) == 1
        assert capsys.readouterr().err.endswith(
            "Error retrieving members: Authentication required\n")


def test_connection_refused_is_one_clear_line(capsys):
    port = closed_port()
    assert main(["members", "--rpc-addr", f"127.0.0.1:{port}"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"Error connecting to Serf agent: dial tcp 127.0.0.1:{port}: connect: connection refused\n"
    )


@pytest.mark.parametrize(
    ("addr", "message"),
    [
        ("127.0.0.1", "dial tcp: address 127.0.0.1: missing port in address"),
        ("::1:7373", "dial tcp: address ::1:7373: too many colons in address"),
        ("127.0.0.1:http", "dial tcp: lookup tcp/http: unknown port"),
    ],
)
def test_bad_addresses(addr, message, capsys):
    assert main(["info", f"-rpc-addr={addr}"]) == 1
    assert capsys.readouterr().err == f"Error connecting to Serf agent: {message}\n"


def test_split_host_port():
    assert split_host_port("[::1]:7373") == ("::1", 7373)
    assert split_host_port("localhost:1") == ("localhost", 1)
    with pytest.raises(RPCConnectError):
        split_host_port("[::1]")


async def test_cli_as_a_subprocess():
    async with served() as (_agent, addr):
        with anyio.fail_after(30):
            proc = await anyio.run_process(
                [sys.executable, "-m", "swimlib.cli", "members", f"-rpc-addr={addr}", "-name=n1"],
                check=False,
            )
        assert (proc.returncode, proc.stdout, proc.stderr) == (
            0, b"n1  127.0.0.1:17201  alive  role=web\n", b"")


async def test_cli_subprocess_connection_refused_has_no_traceback():
    with anyio.fail_after(30):
        proc = await anyio.run_process(
            [sys.executable, "-m", "swimlib.cli", "leave", f"--rpc-addr=127.0.0.1:{closed_port()}"],
            check=False,
        )
    assert proc.returncode == 1
    assert proc.stderr.startswith(b"Error connecting to Serf agent: dial tcp 127.0.0.1:")
    assert proc.stderr.count(b"\n") == 1 and b"Traceback" not in proc.stderr


async def test_client_api_directly():
    async with served() as (_agent, addr):
        def work() -> tuple[list[str], int, dict[str, dict[str, str]]]:
            with RPCClient(addr) as client:
                names = [m.name for m in client.members()]
                num = client.join(["10.0.0.9"])
                stats = client.stats()
                assert client.get_coordinate("n2") is None
                coord = client.get_coordinate("n0")
                assert coord is not None and len(coord.vec) == 8 and coord.error > 0
                seq = client.start_stream("user")
                client.user_event("hello", b"payload", coalesce=False)
                got_seq, rec = client.next_record(timeout=5)
                assert got_seq == seq and rec["Name"] == "hello" and rec["Payload"] == b"payload"
                client.stop(seq)
                with pytest.raises(RPCError, match="No pending queries matching ID"):
                    client.respond(1, b"x")
                return names, num, stats

        with anyio.fail_after(20):
            names, num, stats = await anyio.to_thread.run_sync(work)
        assert (names, num, stats["agent"]["name"]) == (["n0", "n1", "n2"], 1, "n0")


#: Scenarios rerun under asyncio (the suite runs them under trio); they take capsys.
ASYNCIO_SCENARIOS = [
    test_members_text,
    test_event,
    test_leave_and_force_leave,
    test_query_text,
    test_monitor_streams_until_the_agent_goes_away,
]


@pytest.mark.parametrize("scenario", ASYNCIO_SCENARIOS, ids=lambda f: f.__name__[5:])
def test_under_asyncio(scenario, capsys) -> None:
    anyio.run(scenario, capsys, backend="asyncio")


def test_client_api_under_asyncio() -> None:
    anyio.run(test_client_api_directly, backend="asyncio")


async def test_monitor_log_json_writes_one_json_record_per_line(capsys):
    agent = FakeAgent()
    agent.log("INFO", "agent: Serf agent starting")
    seen = ""
    async with anyio.create_task_group() as tg:
        listeners = await tg.start(serve_rpc, agent, "127.0.0.1", 0)
        addr = f"127.0.0.1:{listeners[0].extra(SocketAttribute.local_address)[1]}"
        tg.start_soon(cli, "monitor", "--rpc-addr", addr, "-log-level=debug", "-log-json")
        with anyio.fail_after(10):
            while agent.log_subscribers == 0:
                await anyio.sleep(0.01)
            await agent.user_event("deploy", b"v1", True)
            agent.log("DEBUG", "memberlist: probe of \"n1\"\nforged line")
            while "probe" not in seen:
                await anyio.sleep(0.01)
                seen += capsys.readouterr().out
        await listeners[0].aclose()
        tg.cancel_scope.cancel()
    seen += capsys.readouterr().out
    records = [json.loads(line) for line in seen.splitlines() if line.startswith("{")]
    assert len(records) == len([line for line in seen.splitlines() if line.strip()]) - 2
    assert {"@timestamp", "@level", "@module", "@message"} <= set(records[0])
    assert (records[0]["@level"], records[0]["@module"], records[0]["@message"]) == (
        "info", "agent", "Serf agent starting")
    (event,) = [r for r in records if r["@module"] == "event"]
    assert event["event"] == {"Event": "user", "LTime": 1, "Name": "deploy",
                              "Payload": "djE=", "Coalesce": True}
    probe = [r for r in records if r["@module"] == "memberlist"][-1]
    assert probe["@level"] == "debug" and probe["@message"].endswith("\nforged line")


def test_monitor_lines_in_any_form_become_records():
    from swimlib.agent.logs import monitor_line_to_json

    record = json.loads(monitor_line_to_json('{"@level": "warn", "@message": "x"}'))
    assert record == {"@level": "warn", "@message": "x"}
    record = json.loads(monitor_line_to_json("    2026/11/25 01:10:35 [WARN] serf: slow"))
    assert (record["@level"], record["@module"], record["@message"]) == ("warn", "serf", "slow")
    record = json.loads(monitor_line_to_json("not a log line {"))
    assert record["@message"] == "not a log line {"
    record = json.loads(monitor_line_to_json("    9999/99/99 99:99:99 [INFO] agent: odd"))
    assert record["@message"] == "odd"
