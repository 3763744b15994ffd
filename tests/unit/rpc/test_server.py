"""The RPC server over real loopback TCP, driven by raw msgpack like a Go client.

Every test opens what it needs in its body (no async fixtures), so the tests
run under any anyio backend; ``test_under_asyncio`` reruns a selection under
asyncio while the suite itself runs under trio.
"""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream, SocketAttribute, SocketListener, SocketStream

from swimlib.cluster.events import EventType, MemberEvent, QueryEvent
from swimlib.faults import FaultLog
from swimlib.rpc import protocol as p
from swimlib.rpc.server import RPCServer, _Session, accept_loop, serve_rpc
from swimlib.rpc.testing import FakeAgent, default_members, serving

EOF = object()


class Raw:
    """A hand-driven connection: send any objects, read objects back."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.reader = p.ObjectReader()

    async def send(self, *objs: Any) -> None:
        await self.stream.send(p.encode(*objs))

    async def request(self, command: str, seq: int, body: Any = None) -> None:
        header = {"Command": command, "Seq": seq}
        await (self.send(header) if body is None else self.send(header, body))

    async def recv(self) -> Any:
        with anyio.fail_after(5):
            while True:
                obj = self.reader.next_object()
                if obj is not p.NEED_DATA:
                    return obj
                try:
                    data = await self.stream.receive(65536)
                except (anyio.EndOfStream, anyio.BrokenResourceError):
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


@asynccontextmanager
async def served(agent: FakeAgent | None = None,
                 auth_key: str = "") -> AsyncIterator[tuple[FakeAgent, int]]:
    """A FakeAgent served on a free loopback port: (agent, port)."""
    agent = FakeAgent() if agent is None else agent
    async with serving(agent, auth_key=auth_key) as port:
        yield agent, port


@asynccontextmanager
async def connect(port: int) -> AsyncIterator[Raw]:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        yield Raw(stream)


@asynccontextmanager
async def session() -> AsyncIterator[tuple[FakeAgent, Raw]]:
    """A served FakeAgent and a connection that has done its handshake."""
    async with served() as (agent, port), connect(port) as raw:
        await raw.handshake()
        yield agent, raw


@asynccontextmanager
async def tcp_pair() -> AsyncIterator[tuple[SocketStream, SocketStream]]:
    """Both ends of one loopback TCP connection: (server side, client side)."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(SocketAttribute.local_address)[1]
        async with (
            await anyio.connect_tcp("127.0.0.1", port) as client,
            await listener.listeners[0].accept() as server_side,
        ):
            yield server_side, client


async def test_members():
    async with session() as (_agent, raw):
        error, body = await raw.reply("members", 1, has_body=True)
        assert error == ""
        assert [m["Name"] for m in body["Members"]] == ["n0", "n1", "n2"]
        first = body["Members"][0]
        assert first["Addr"] == b"\x7f\x00\x00\x01"
        assert (first["Port"], first["Status"], first["Tags"]) == (
            17200, "alive", {"role": "balancer"})
        assert (first["DelegateMin"], first["DelegateMax"], first["DelegateCur"]) == (2, 5, 5)


async def test_members_filtered():
    async with session() as (_agent, raw):
        req = {"Tags": {"role": "web"}, "Status": "alive", "Name": ""}
        error, body = await raw.reply("members-filtered", 2, req, has_body=True)
        assert error == ""
        assert [m["Name"] for m in body["Members"]] == ["n1"]


async def test_bad_regex_answers_an_error_with_a_body():
    async with session() as (_agent, raw):
        error, body = await raw.reply("members-filtered", 2, {"Status": "("}, has_body=True)
        assert error.startswith("Failed to compile regex: ")
        assert body == {"Members": []}
        assert (await raw.reply("members", 3, has_body=True))[0] == ""


async def test_command_before_handshake_closes_the_connection():
    async with served() as (_agent, port), connect(port) as conn:
        await conn.request("members", 7)
        assert await conn.recv() == {"Seq": 7, "Error": p.HANDSHAKE_REQUIRED}
        assert await conn.recv() is EOF


async def test_handshake_version_and_duplicates():
    async with served() as (_agent, port), connect(port) as conn:
        assert await conn.reply("handshake", 1, {"Version": 2}) == (
            p.UNSUPPORTED_IPC_VERSION, None)
        assert await conn.reply("handshake", 2, {"Version": 1}) == ("", None)
        assert await conn.reply("handshake", 3, {"Version": 1}) == (p.DUPLICATE_HANDSHAKE, None)


async def test_unknown_command_closes_only_that_connection():
    async with served() as (_agent, port), connect(port) as raw:
        await raw.handshake()
        await raw.request("frobnicate", 9)
        assert await raw.recv() == {"Seq": 9, "Error": p.UNSUPPORTED_COMMAND}
        assert await raw.recv() is EOF
        async with connect(port) as other:
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
async def test_garbage_closes_the_connection_and_the_server_survives(garbage):
    async with served() as (_agent, port):
        async with connect(port) as conn:
            await conn.stream.send(garbage)
            await conn.stream.send_eof()
            while (obj := await conn.recv()) is not EOF:
                assert isinstance(obj, dict)
        async with connect(port) as fresh:
            await fresh.handshake()
            assert (await fresh.reply("members", 1, has_body=True))[0] == ""


async def test_truncated_body_is_harmless():
    async with served() as (_agent, port), connect(port) as conn:
        await conn.handshake()
        await conn.request("event", 1)  # header without its body, then EOF
        await conn.stream.send_eof()
        assert await conn.recv() is EOF


async def test_pipelined_requests_are_answered_in_order():
    async with session() as (_agent, raw):
        header = {"Command": "members", "Seq": 0}
        await raw.send(*[dict(header, Seq=i) for i in range(10, 60)])
        for i in range(10, 60):
            assert (await raw.recv())["Seq"] == i
            assert len((await raw.recv())["Members"]) == 3


async def test_auth():
    agent = FakeAgent()
    async with anyio.create_task_group() as tg:
        listeners = await tg.start(
            lambda task_status: serve_rpc(agent, "127.0.0.1", 0, auth_key="s3cret",
                                          task_status=task_status)
        )
        async with connect(listeners[0].extra(SocketAttribute.local_address)[1]) as conn:
            await conn.handshake()
            # a body-carrying command before auth: refused, and the stream stays in step
            assert await conn.reply("members-filtered", 1, {"Name": "n0"}) == (
                p.AUTH_REQUIRED, None)
            assert await conn.reply("members", 2) == (p.AUTH_REQUIRED, None)
            assert await conn.reply("auth", 3, {"AuthKey": "wrong"}) == (
                p.INVALID_AUTH_TOKEN, None)
            assert await conn.reply("auth", 4, {"AuthKey": "s3cret"}) == ("", None)
            error, body = await conn.reply("members-filtered", 5, {"Name": "n0"}, has_body=True)
            assert (error, [m["Name"] for m in body["Members"]]) == ("", ["n0"])
        assert agent.calls == [("members",)]
        tg.cancel_scope.cancel()


async def test_auth_sent_to_a_server_without_a_key_is_refused():
    async with session() as (_agent, raw):
        assert await raw.reply("auth", 1, {"AuthKey": "x"}) == (p.INVALID_AUTH_TOKEN, None)


async def test_simple_commands_reach_the_agent():
    async with session() as (agent, raw):
        assert await raw.reply("event", 1, {"Name": "deploy", "Payload": b"v42",
                                            "Coalesce": True}) == ("", None)
        assert await raw.reply("tags", 2, {"Tags": {"k": "v"}, "DeleteTags": ["role"]}) == (
            "", None)
        assert await raw.reply("force-leave", 3, {"Node": "n2", "Prune": True}) == ("", None)
        assert await raw.reply("join", 4, {"Existing": ["10.0.0.1", "10.0.0.2:1"], "Replay": True},
                               has_body=True) == ("", {"Num": 1})
        assert agent.calls == [
            ("user_event", "deploy", b"v42", True),
            ("set_tags", {"k": "v"}, ["role"]),
            ("force_leave", "n2", True),
            ("join", ["10.0.0.1", "10.0.0.2:1"], True),
        ]


async def test_agent_failures_become_error_strings():
    async with session() as (agent, raw):
        agent.fail["user_event"] = "user event exceeds limit of 512 bytes"
        assert await raw.reply("event", 1, {"Name": "x"}) == (
            "user event exceeds limit of 512 bytes", None)
        error, body = await raw.reply("join", 2, {"Existing": ["127.0.0.1:1"]}, has_body=True)
        assert error.startswith("1 error(s) occurred") and body == {"Num": 0}
        agent.fail["members"] = "boom"
        assert await raw.reply("members", 3, has_body=True) == ("boom", {"Members": []})


#: serf agent 0.8.2's reply to get-coordinate (Seq 1) for a node it knows, captured
#: live: header, then {Coord: {Adjustment, Error, Height, Vec[8]}, Ok: true}.
LIVE_COORDINATE_REPLY = bytes.fromhex(
    "82a54572726f72a0a35365710182a5436f6f726484aa41646a7573746d656e74cb3f0d4b106b0d8823a545"
    "72726f72cb3ff3433ca804c360a6486569676874cb3f1a06833c52df75a356656398cbbf2370de779129ac"
    "cbbf21d8ff15933f89cbbf16443b91c6f794cb3f17fc1b00ca7370cb3f200c18bab3ab20cb3ef849c7dcdb"
    "d8abcbbf21210ba9a61f51cbbf1cf5c83a2bcd02a24f6bc3")
#: ... and for a node it does not know: a zero coordinate, nil Vec, Ok false.
LIVE_NO_COORDINATE_REPLY = bytes.fromhex(
    "82a54572726f72a0a35365710182a5436f6f726484aa41646a7573746d656e74cb0000000000000000a5"
    "4572726f72cb0000000000000000a6486569676874cb0000000000000000a3566563c0a24f6bc2")


async def test_stats_and_coordinate():
    async with session() as (agent, raw):
        error, body = await raw.reply("stats", 1, has_body=True)
        assert error == "" and body["agent"] == {"name": "n0"}
        assert body["serf"]["coordinate_resets"] == "0"
        error, body = await raw.reply("get-coordinate", 2, {"Node": "n2"}, has_body=True)
        assert error == "" and body["Ok"] is False
        assert body["Coord"] == {"Adjustment": 0.0, "Error": 0.0, "Height": 0.0, "Vec": None}
        error, body = await raw.reply("get-coordinate", 3, {"Node": "n1"}, has_body=True)
        n1 = agent.coordinates["n1"]
        assert error == "" and body["Ok"] is True
        assert body["Coord"] == {"Adjustment": n1.adjustment, "Error": n1.error,
                                 "Height": n1.height, "Vec": list(n1.vec)}
        agent.fail["get_coordinate"] = "boom"
        error, body = await raw.reply("get-coordinate", 4, {"Node": "n1"}, has_body=True)
        assert error == "boom" and body["Ok"] is False


@pytest.mark.parametrize(("node", "expected"), [("n0", LIVE_COORDINATE_REPLY),
                                                ("n2", LIVE_NO_COORDINATE_REPLY)])
async def test_get_coordinate_bytes_equal_serfs(node, expected):
    async with session() as (_agent, raw):
        await raw.request("get-coordinate", 1, {"Node": node})
        got = b""
        with anyio.fail_after(5):
            while len(got) < len(expected):
                got += await raw.stream.receive(65536)
        assert got == expected


async def test_key_operations():
    async with session() as (agent, raw):
        error, body = await raw.reply("install-key", 1, {"Key": "k2"}, has_body=True)
        assert error == "" and body["Keys"] is None and body["NumNodes"] == 3
        error, body = await raw.reply("list-keys", 2, has_body=True)
        assert error == "" and body["Keys"] == {agent.keyring[0]: 3, "k2": 3}
        error, body = await raw.reply("use-key", 3, {"Key": "missing"}, has_body=True)
        assert error == "3/3 nodes reported failure"
        assert body["Messages"]["n0"] == "Requested key is not in the keyring"
        assert body["NumErr"] == 3


async def test_query_streams_acks_responses_then_done():
    async with session() as (agent, raw):
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


async def test_rejected_query():
    async with session() as (agent, raw):
        agent.fail["query"] = "query exceeds limit of 1024 bytes"
        assert await raw.reply("query", 5, {"Name": "big"}) == (
            "query exceeds limit of 1024 bytes", None)
        assert (await raw.reply("members", 6, has_body=True))[0] == ""


async def _wait_for(predicate) -> None:
    with anyio.fail_after(5):
        while not predicate():
            await anyio.sleep(0.01)


async def test_event_stream_filter_and_stop():
    async with session() as (agent, raw):
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


async def test_invalid_event_filter():
    async with session() as (agent, raw):
        assert await raw.reply("stream", 3, {"Type": "member-join,bogus"}) == (
            p.INVALID_FILTER, None)
        assert agent.event_subscribers == 0


async def test_failed_subscription_is_an_error_not_a_crash():
    async with session() as (agent, raw):
        agent.fail["subscribe_events"] = "no events here"
        assert await raw.reply("stream", 3, {"Type": "*"}) == ("no events here", None)
        assert (await raw.reply("members", 4, has_body=True))[0] == ""


async def test_queries_in_a_stream_can_be_answered():
    async with session() as (agent, raw):
        assert await raw.reply("stream", 1, {"Type": "query"}) == ("", None)
        query = QueryEvent(7, 4242, "ping", b"hi", "n1", 0.0)
        agent.publish(query)
        assert await raw.recv() == {"Seq": 1, "Error": ""}
        rec = await raw.recv()
        assert rec == {"Event": "query", "ID": 1, "LTime": 7, "Name": "ping", "Payload": b"hi"}
        assert await raw.reply("respond", 2, {"ID": 1, "Payload": b"pong"}) == ("", None)
        assert agent.calls[-1] == ("respond", 4242, b"pong")
        assert await raw.reply("respond", 3, {"ID": 2, "Payload": b"x"}) == (
            p.INVALID_QUERY_ID, None)


async def test_monitor():
    async with session() as (agent, raw):
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


async def test_unknown_log_level():
    async with session() as (_agent, raw):
        assert await raw.reply("monitor", 2, {"LogLevel": "loud"}) == (
            "Unknown log level: LOUD", None)


async def test_disconnect_releases_subscriptions():
    async with served() as (agent, port):
        async with connect(port) as conn:
            await conn.handshake()
            await conn.reply("stream", 1, {"Type": "*"})
            await conn.reply("monitor", 2, {"LogLevel": "INFO"})
            assert (agent.event_subscribers, agent.log_subscribers) == (1, 1)
        await _wait_for(lambda: (agent.event_subscribers, agent.log_subscribers) == (0, 0))


async def test_slow_stream_reader_drops_instead_of_blocking_the_agent():
    async with session() as (agent, raw):
        assert await raw.reply("stream", 1, {"Type": "user"}) == ("", None)
        for i in range(5000):  # far more than the socket + 512-record buffer hold
            await agent.user_event(f"e{i}", b"x" * 200, True)
            if i % 100 == 0:
                await anyio.sleep(0)
        # the agent never blocked; the client can still talk and read records
        assert (await raw.recv())["Seq"] == 1


async def test_leave_replies_then_requests_shutdown():
    async with session() as (agent, raw):
        assert await raw.reply("leave", 1) == ("", None)
        await _wait_for(lambda: agent.shutdown_requested)
        assert agent.calls[-2:] == [("leave",), ("request_shutdown",)]


async def test_handler_never_raises_even_if_the_agent_is_broken():
    class Broken:
        def members(self):
            raise RuntimeError("bug")

    server = RPCServer(Broken())  # type: ignore[arg-type]
    async with tcp_pair() as (left, right), anyio.create_task_group() as tg:
        tg.start_soon(server.handle_connection, left)
        conn = Raw(right)
        await conn.handshake()
        assert await conn.reply("members", 1, has_body=True) == ("bug", {"Members": []})
        await right.aclose()


async def test_a_failing_session_is_counted_and_the_server_goes_on(monkeypatch):
    async def broken(self, header):
        raise RuntimeError("bug in dispatch")

    agent = FakeAgent()
    faults = FaultLog()
    async with anyio.create_task_group() as tg:
        listeners = await tg.start(
            lambda task_status: serve_rpc(agent, "127.0.0.1", 0, faults=faults,
                                          task_status=task_status))
        port = listeners[0].extra(SocketAttribute.local_address)[1]
        with monkeypatch.context() as patch:
            patch.setattr(_Session, "_dispatch", broken)
            async with connect(port) as conn:
                await conn.request("handshake", 1, {"Version": 1})
                assert await conn.recv() is EOF
        assert faults.counts["rpc.connection"] == 1
        async with connect(port) as conn:
            await conn.handshake()
            assert (await conn.reply("members", 1, has_body=True))[0] == ""
        tg.cancel_scope.cancel()


async def test_serve_rpc_reports_its_listeners_and_closes_them():
    async with anyio.create_task_group() as tg:
        listeners = await tg.start(serve_rpc, FakeAgent(), "127.0.0.1", 0)
        assert listeners and all(isinstance(lst, SocketListener) for lst in listeners)
        host, port = listeners[0].extra(SocketAttribute.local_address)
        assert host == "127.0.0.1" and port > 0
        tg.cancel_scope.cancel()
    with pytest.raises(OSError):
        await anyio.connect_tcp("127.0.0.1", port)


async def test_a_closed_listener_ends_accepting_not_the_connections():
    agent = FakeAgent()
    async with anyio.create_task_group() as tg:
        listeners = await tg.start(serve_rpc, agent, "127.0.0.1", 0)
        port = listeners[0].extra(SocketAttribute.local_address)[1]
        async with connect(port) as conn:
            await conn.handshake()
            await listeners[0].aclose()
            assert (await conn.reply("members", 1, has_body=True))[0] == ""
        tg.cancel_scope.cancel()


class FlakyListener:
    """Fails ``accept()`` with the given errors, then yields ``stream``, then is closed."""

    def __init__(self, errors: list[BaseException], stream: object) -> None:
        self.errors = errors
        self.stream: object | None = stream

    async def accept(self) -> object:
        await anyio.sleep(0)
        if self.errors:
            raise self.errors.pop(0)
        if self.stream is None:
            raise anyio.ClosedResourceError
        stream, self.stream = self.stream, None
        return stream


def broken_accept(code: int) -> anyio.BrokenResourceError:
    """What anyio on trio raises for a failed ``accept()``."""
    exc = anyio.BrokenResourceError()
    exc.__cause__ = OSError(code, os.strerror(code))
    return exc


async def test_accept_failures_of_one_connection_do_not_end_the_server():
    handled: list[object] = []

    class Server:
        async def handle_connection(self, stream: object) -> None:
            handled.append(stream)

    errors: list[BaseException] = [
        ConnectionAbortedError(errno.ECONNABORTED, "reset before accept"),
        broken_accept(errno.EPROTO),
        OSError(errno.EMFILE, "Too many open files"),  # pauses, then goes on
        broken_accept(errno.ENFILE),
    ]
    listener = FlakyListener(errors, "the stream")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await accept_loop(listener, Server(), tg)  # type: ignore[arg-type]
    assert handled == ["the stream"]  # and the loop ended when the listener closed


@pytest.mark.parametrize("exc", [OSError(errno.EBADF, "Bad file descriptor"),
                                 broken_accept(errno.EINVAL)])
async def test_other_accept_failures_are_bugs_and_raised(exc):
    async with anyio.create_task_group() as tg:
        with pytest.raises(type(exc)):
            await accept_loop(FlakyListener([exc], None), None, tg)  # type: ignore[arg-type]


#: Scenarios rerun under asyncio (the suite runs them under trio).
ASYNCIO_SCENARIOS = [
    test_members,
    test_command_before_handshake_closes_the_connection,
    test_unknown_command_closes_only_that_connection,
    test_truncated_body_is_harmless,
    test_pipelined_requests_are_answered_in_order,
    test_auth,
    test_query_streams_acks_responses_then_done,
    test_event_stream_filter_and_stop,
    test_failed_subscription_is_an_error_not_a_crash,
    test_queries_in_a_stream_can_be_answered,
    test_monitor,
    test_disconnect_releases_subscriptions,
    test_slow_stream_reader_drops_instead_of_blocking_the_agent,
    test_leave_replies_then_requests_shutdown,
    test_handler_never_raises_even_if_the_agent_is_broken,
    test_serve_rpc_reports_its_listeners_and_closes_them,
    test_a_closed_listener_ends_accepting_not_the_connections,
    test_accept_failures_of_one_connection_do_not_end_the_server,
]


@pytest.mark.parametrize("scenario", ASYNCIO_SCENARIOS, ids=lambda f: f.__name__[5:])
def test_under_asyncio(scenario) -> None:
    anyio.run(scenario, backend="asyncio")


@pytest.mark.parametrize("garbage", [b"\xc1\xc1\xc1", b"\xdf\xff\xff\xff\xff"])
def test_garbage_under_asyncio(garbage) -> None:
    anyio.run(test_garbage_closes_the_connection_and_the_server_survives, garbage,
              backend="asyncio")


def test_a_failing_session_under_asyncio(monkeypatch) -> None:
    anyio.run(test_a_failing_session_is_counted_and_the_server_goes_on, monkeypatch,
              backend="asyncio")
