"""The RPC server over real loopback TCP, driven by raw msgpack like a Go client."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from swimlib.cluster.events import EventType, MemberEvent, QueryEvent
from swimlib.rpc import protocol as p
from swimlib.rpc.server import RPCServer, serve_rpc
from swimlib.rpc.testing import FakeAgent, default_members

EOF = object()


class Raw:
    """A hand-driven connection: send any objects, read objects back."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.reader = p.ObjectReader()

    async def send(self, *objs: Any) -> None:
        await self.stream.send_all(p.encode(*objs))

    async def request(self, command: str, seq: int, body: Any = None) -> None:
        header = {"Command": command, "Seq": seq}
        await (self.send(header) if body is None else self.send(header, body))

    async def recv(self) -> Any:
        with trio.fail_after(5):
            while True:
                obj = self.reader.next_object()
                if obj is not p.NEED_DATA:
                    return obj
                try:
                    data = await self.stream.receive_some(65536)
                except trio.BrokenResourceError:
                    return EOF
                if not data:
                    return EOF
                self.reader.feed(data)

    async def reply(self, command: str, seq: int, body: Any = None, *, has_body: bool = False):
        """Send a request; return (error, body or None)."""
        await self.request(command, seq, body)
        header = await self.recv()
        assert header["Seq"] == seq, header
        return header["Error"], (await self.recv() if has_body else None)

    async def handshake(self) -> None:
        assert await self.reply("handshake", 0, {"Version": 1}) == ("", None)


@pytest.fixture
async def agent_port(nursery):
    agent = FakeAgent()
    listeners = await nursery.start(serve_rpc, agent, "127.0.0.1", 0)
    return agent, listeners[0].socket.getsockname()[1]


@pytest.fixture
async def agent(agent_port):
    return agent_port[0]


async def connect(port: int) -> Raw:
    return Raw(await trio.open_tcp_stream("127.0.0.1", port))


@pytest.fixture
async def raw(agent_port):
    conn = await connect(agent_port[1])
    await conn.handshake()
    yield conn
    await conn.stream.aclose()


async def test_members(raw):
    error, body = await raw.reply("members", 1, has_body=True)
    assert error == ""
    assert [m["Name"] for m in body["Members"]] == ["n0", "n1", "n2"]
    first = body["Members"][0]
    assert first["Addr"] == b"\x7f\x00\x00\x01"
    assert (first["Port"], first["Status"], first["Tags"]) == (17200, "alive", {"role": "balancer"})
    assert (first["DelegateMin"], first["DelegateMax"], first["DelegateCur"]) == (2, 5, 5)


async def test_members_filtered(raw):
    req = {"Tags": {"role": "web"}, "Status": "alive", "Name": ""}
    error, body = await raw.reply("members-filtered", 2, req, has_body=True)
    assert error == ""
    assert [m["Name"] for m in body["Members"]] == ["n1"]


async def test_bad_regex_answers_an_error_with_a_body(raw):
    error, body = await raw.reply("members-filtered", 2, {"Status": "("}, has_body=True)
    assert error.startswith("Failed to compile regex: ")
    assert body == {"Members": []}
    assert (await raw.reply("members", 3, has_body=True))[0] == ""


async def test_command_before_handshake_closes_the_connection(agent_port):
    conn = await connect(agent_port[1])
    await conn.request("members", 7)
    assert await conn.recv() == {"Seq": 7, "Error": p.HANDSHAKE_REQUIRED}
    assert await conn.recv() is EOF


async def test_handshake_version_and_duplicates(agent_port):
    conn = await connect(agent_port[1])
    assert await conn.reply("handshake", 1, {"Version": 2}) == (p.UNSUPPORTED_IPC_VERSION, None)
    assert await conn.reply("handshake", 2, {"Version": 1}) == ("", None)
    assert await conn.reply("handshake", 3, {"Version": 1}) == (p.DUPLICATE_HANDSHAKE, None)


async def test_unknown_command_closes_only_that_connection(agent_port, raw):
    await raw.request("frobnicate", 9)
    assert await raw.recv() == {"Seq": 9, "Error": p.UNSUPPORTED_COMMAND}
    assert await raw.recv() is EOF
    other = await connect(agent_port[1])
    await other.handshake()


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xc1\xc1\xc1",
        b"\x93\x01\x02\x03",  # a header that is not a map
        p.encode({"Command": "handshake", "Seq": -5}),
        p.encode({"Command": "handshake", "Seq": 1}, {"Version": "one"}),
        p.encode({"Command": "handshake", "Seq": 1}, [1]),
        b"\xdb\xff\xff\xff\xff" + b"x" * 100,  # str32 claiming 4 GiB
        b"\xdf\xff\xff\xff\xff",  # map32 claiming 4G entries, then EOF
    ],
)
async def test_garbage_closes_the_connection_and_the_server_survives(agent_port, garbage):
    conn = await connect(agent_port[1])
    await conn.stream.send_all(garbage)
    await conn.stream.send_eof()
    while (obj := await conn.recv()) is not EOF:
        assert isinstance(obj, dict)
    fresh = await connect(agent_port[1])
    await fresh.handshake()
    assert (await fresh.reply("members", 1, has_body=True))[0] == ""


async def test_truncated_body_is_harmless(agent_port):
    conn = await connect(agent_port[1])
    await conn.handshake()
    await conn.request("event", 1)  # header without its body, then EOF
    await conn.stream.send_eof()
    assert await conn.recv() is EOF


async def test_pipelined_requests_are_answered_in_order(raw):
    header = {"Command": "members", "Seq": 0}
    await raw.send(*[dict(header, Seq=i) for i in range(10, 60)])
    for i in range(10, 60):
        assert (await raw.recv())["Seq"] == i
        assert len((await raw.recv())["Members"]) == 3


async def test_auth(nursery):
    agent = FakeAgent()
    listeners = await nursery.start(
        lambda task_status: serve_rpc(agent, "127.0.0.1", 0, auth_key="s3cret",
                                      task_status=task_status)
    )
    conn = await connect(listeners[0].socket.getsockname()[1])
    await conn.handshake()
    # a body-carrying command before auth: refused, and the stream stays in step
    assert await conn.reply("members-filtered", 1, {"Name": "n0"}) == (p.AUTH_REQUIRED, None)
    assert await conn.reply("members", 2) == (p.AUTH_REQUIRED, None)
    assert await conn.reply("auth", 3, {"AuthKey": "wrong"}) == (p.INVALID_AUTH_TOKEN, None)
    assert await conn.reply("auth", 4, {"AuthKey": "s3cret"}) == ("", None)
    error, body = await conn.reply("members-filtered", 5, {"Name": "n0"}, has_body=True)
    assert (error, [m["Name"] for m in body["Members"]]) == ("", ["n0"])
    assert agent.calls == [("members",)]


async def test_auth_sent_to_a_server_without_a_key_is_refused(raw):
    assert await raw.reply("auth", 1, {"AuthKey": "x"}) == (p.INVALID_AUTH_TOKEN, None)


async def test_simple_commands_reach_the_agent(raw, agent):
    assert await raw.reply("event", 1, {"Name": "deploy", "Payload": b"v42",
                                        "Coalesce": True}) == ("", None)
    assert await raw.reply("tags", 2, {"Tags": {"k": "v"}, "DeleteTags": ["role"]}) == ("", None)
    assert await raw.reply("force-leave", 3, {"Node": "n2", "Prune": True}) == ("", None)
    assert await raw.reply("join", 4, {"Existing": ["10.0.0.1", "10.0.0.2:1"], "Replay": True},
                           has_body=True) == ("", {"Num": 1})
    assert agent.calls == [
        ("user_event", "deploy", b"v42", True),
        ("set_tags", {"k": "v"}, ["role"]),
        ("force_leave", "n2", True),
        ("join", ["10.0.0.1", "10.0.0.2:1"], True),
    ]


async def test_agent_failures_become_error_strings(raw, agent):
    agent.fail["user_event"] = "user event exceeds limit of 512 bytes"
    assert await raw.reply("event", 1, {"Name": "x"}) == (
        "user event exceeds limit of 512 bytes", None)
    error, body = await raw.reply("join", 2, {"Existing": ["127.0.0.1:1"]}, has_body=True)
    assert error.startswith("1 error(s) occurred") and body == {"Num": 0}
    agent.fail["members"] = "boom"
    assert await raw.reply("members", 3, has_body=True) == ("boom", {"Members": []})


async def test_stats_and_coordinate(raw):
    error, body = await raw.reply("stats", 1, has_body=True)
    assert error == "" and body["agent"] == {"name": "n0"}
    error, body = await raw.reply("get-coordinate", 2, {"Node": "n1"}, has_body=True)
    assert error == "" and body["Ok"] is False
    assert body["Coord"] == {"Adjustment": 0.0, "Error": 0.0, "Height": 0.0, "Vec": None}


async def test_key_operations(raw, agent):
    error, body = await raw.reply("install-key", 1, {"Key": "k2"}, has_body=True)
    assert error == "" and body["Keys"] is None and body["NumNodes"] == 3
    error, body = await raw.reply("list-keys", 2, has_body=True)
    assert error == "" and body["Keys"] == {agent.keyring[0]: 3, "k2": 3}
    error, body = await raw.reply("use-key", 3, {"Key": "missing"}, has_body=True)
    assert error == "3/3 nodes reported failure"
    assert body["Messages"]["n0"] == "Requested key is not in the keyring"
    assert body["NumErr"] == 3


async def test_query_streams_acks_responses_then_done(raw, agent):
    req = {"Name": "ping", "Payload": b"hi", "RequestAck": True, "Timeout": 2_000_000_000,
           "FilterNodes": None, "FilterTags": {}, "RelayFactor": 0}
    assert await raw.reply("query", 5, req) == ("", None)
    records = []
    while True:
        header = await raw.recv()
        assert header == {"Seq": 5, "Error": ""}
        records.append(await raw.recv())
        if records[-1]["Type"] == "done":
            break
    assert [(r["Type"], r["From"]) for r in records] == [
        ("ack", "n0"), ("response", "n0"), ("ack", "n1"), ("response", "n1"), ("done", "")]
    assert records[1]["Payload"] == b"pong-from-n0\n"
    assert agent.calls[-1] == ("query", "ping", b"hi", [], {}, True, 0, 2.0)


async def test_rejected_query(raw, agent):
    agent.fail["query"] = "query exceeds limit of 1024 bytes"
    assert await raw.reply("query", 5, {"Name": "big"}) == (
        "query exceeds limit of 1024 bytes", None)
    assert (await raw.reply("members", 6, has_body=True))[0] == ""


async def _wait_for(predicate) -> None:
    with trio.fail_after(5):
        while not predicate():
            await trio.sleep(0.01)


async def test_event_stream_filter_and_stop(raw, agent):
    assert await raw.reply("stream", 3, {"Type": "member-join,user:deploy"}) == ("", None)
    assert agent.event_subscribers == 1
    agent.publish(MemberEvent(EventType.MEMBER_FAILED, tuple(default_members()[2:])))
    agent.publish(MemberEvent(EventType.MEMBER_JOIN, tuple(default_members()[:1])))
    await agent.user_event("other", b"", True)
    await agent.user_event("deploy", b"v1", False)
    assert await raw.recv() == {"Seq": 3, "Error": ""}
    rec = await raw.recv()
    assert rec["Event"] == "member-join" and rec["Members"][0]["Name"] == "n0"
    assert await raw.recv() == {"Seq": 3, "Error": ""}
    assert await raw.recv() == {"Event": "user", "LTime": 2, "Name": "deploy",
                                "Payload": b"v1", "Coalesce": False}
    assert await raw.reply("stream", 3, {"Type": "*"}) == (p.STREAM_EXISTS, None)
    assert await raw.reply("stop", 4, {"Stop": 3}) == ("", None)
    await _wait_for(lambda: agent.event_subscribers == 0)
    assert await raw.reply("stop", 5, {"Stop": 99}) == ("", None)  # always succeeds


async def test_invalid_event_filter(raw, agent):
    assert await raw.reply("stream", 3, {"Type": "member-join,bogus"}) == (p.INVALID_FILTER, None)
    assert agent.event_subscribers == 0


async def test_failed_subscription_is_an_error_not_a_crash(raw, agent):
    agent.fail["subscribe_events"] = "no events here"
    assert await raw.reply("stream", 3, {"Type": "*"}) == ("no events here", None)
    assert (await raw.reply("members", 4, has_body=True))[0] == ""


async def test_queries_in_a_stream_can_be_answered(raw, agent):
    assert await raw.reply("stream", 1, {"Type": "query"}) == ("", None)
    query = QueryEvent(7, 4242, "ping", b"hi", "n1", 0.0)
    agent.publish(query)
    assert await raw.recv() == {"Seq": 1, "Error": ""}
    rec = await raw.recv()
    assert rec == {"Event": "query", "ID": 1, "LTime": 7, "Name": "ping", "Payload": b"hi"}
    assert await raw.reply("respond", 2, {"ID": 1, "Payload": b"pong"}) == ("", None)
    assert agent.calls[-1] == ("respond", 4242, b"pong")
    assert await raw.reply("respond", 3, {"ID": 2, "Payload": b"x"}) == (p.INVALID_QUERY_ID, None)


async def test_monitor(raw, agent):
    agent.log("DEBUG", "memberlist: old debug")
    agent.log("INFO", "agent: old info")
    assert await raw.reply("monitor", 2, {"LogLevel": "info"}) == ("", None)
    agent.log("DEBUG", "memberlist: hidden")
    agent.log("ERR", "agent: new error")
    logs = []
    for _ in range(2):
        assert await raw.recv() == {"Seq": 2, "Error": ""}
        logs.append((await raw.recv())["Log"])
    assert logs[0].endswith("[INFO] agent: old info")
    assert logs[1].endswith("[ERR] agent: new error")
    assert await raw.reply("monitor", 3, {"LogLevel": "DEBUG"}) == (p.MONITOR_EXISTS, None)
    assert await raw.reply("stop", 4, {"Stop": 2}) == ("", None)
    await _wait_for(lambda: agent.log_subscribers == 0)
    assert await raw.reply("monitor", 5, {"LogLevel": "DEBUG"}) == ("", None)


async def test_unknown_log_level(raw):
    assert await raw.reply("monitor", 2, {"LogLevel": "loud"}) == (
        "Unknown log level: LOUD", None)


async def test_disconnect_releases_subscriptions(agent_port):
    agent, port = agent_port
    conn = await connect(port)
    await conn.handshake()
    await conn.reply("stream", 1, {"Type": "*"})
    await conn.reply("monitor", 2, {"LogLevel": "INFO"})
    assert (agent.event_subscribers, agent.log_subscribers) == (1, 1)
    await conn.stream.aclose()
    await _wait_for(lambda: (agent.event_subscribers, agent.log_subscribers) == (0, 0))


async def test_slow_stream_reader_drops_instead_of_blocking_the_agent(raw, agent):
    assert await raw.reply("stream", 1, {"Type": "user"}) == ("", None)
    for i in range(5000):  # far more than the socket + 512-record buffer hold
        await agent.user_event(f"e{i}", b"x" * 200, True)
        if i % 100 == 0:
            await trio.sleep(0)
    # the agent never blocked; the client can still talk and read records
    assert (await raw.recv())["Seq"] == 1


async def test_leave_replies_then_requests_shutdown(raw, agent):
    assert await raw.reply("leave", 1) == ("", None)
    await _wait_for(lambda: agent.shutdown_requested)
    assert agent.calls[-2:] == [("leave",), ("request_shutdown",)]


async def test_handler_never_raises_even_if_the_agent_is_broken():
    class Broken:
        def members(self):
            raise RuntimeError("bug")

    server = RPCServer(Broken())  # type: ignore[arg-type]
    left, right = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle_connection, left)
        conn = Raw(right)  # type: ignore[arg-type]
        await conn.handshake()
        assert await conn.reply("members", 1, has_body=True) == ("bug", {"Members": []})
        await right.aclose()
