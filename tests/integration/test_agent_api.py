"""The Python API: agents in one process, real loopback sockets, asyncio and trio."""

from __future__ import annotations

import anyio
import pytest

import swimlib
from swimlib import Config, EventType, MemberStatus, open_agent
from tests.backends import both_backends  # noqa: F401

LOCAL = Config.local()


async def test_three_agents_join_gossip_query_and_leave() -> None:
    async with open_agent("a", bind=("127.0.0.1", 0), config=LOCAL,
                          tags={"role": "web"}) as a:
        seed = [f"127.0.0.1:{a.address[1]}"]
        async with open_agent("b", bind=("127.0.0.1", 0), config=LOCAL, join=seed) as b, \
                open_agent("c", bind=("127.0.0.1", 0), config=LOCAL) as c:
            events = b.events()
            assert await c.join(seed) == 1
            with anyio.fail_after(10):
                for x in (a, b, c):
                    for name in "abc":
                        await x.wait_member(name, MemberStatus.ALIVE)
            assert {m.name: m.tag_map for m in c.members()}["a"] == {"role": "web"}

            await c.set_tags({"dc": "x"})
            await a.user_event("deploy", b"v42")
            seen_update = seen_user = False
            with anyio.fail_after(10):
                async for event in events:
                    if event.type == EventType.MEMBER_UPDATE and event.members[0].name == "c":
                        seen_update = True
                    if isinstance(event, swimlib.UserEvent):
                        assert (event.name, event.payload) == ("deploy", b"v42")
                        seen_user = True
                    if seen_update and seen_user:
                        break

            q_events = c.events()
            handle = await a.query("ping", b"hi", request_ack=True, timeout=2.0)
            with anyio.fail_after(5):
                async for event in q_events:
                    if isinstance(event, swimlib.QueryEvent):
                        await c.respond(event.id, b"pong")
                        break
            replies = [r async for r in handle]
            assert {r.from_node for r in replies if r.kind == "ack"} == {"a", "b", "c"}
            assert [(r.from_node, r.payload) for r in replies if r.kind == "response"] == [
                ("c", b"pong")]

            await c.leave()
            assert c.has_left
            with anyio.fail_after(10):
                left = await a.wait_member("c", MemberStatus.LEFT)
            assert left.name == "c"


async def test_join_to_nothing_raises_join_error() -> None:
    async with open_agent("lonely", bind=("127.0.0.1", 0), config=LOCAL) as agent:
        with pytest.raises(swimlib.JoinError, match=r"127\.0\.0\.1:1"):
            await agent.join(["127.0.0.1:1"])


async def test_encrypted_agents_ignore_plaintext_peers() -> None:
    ring = swimlib.Keyring([b"k" * 32])
    async with open_agent("e1", bind=("127.0.0.1", 0), config=LOCAL, keyring=ring) as e1, \
            open_agent("p1", bind=("127.0.0.1", 0), config=LOCAL) as p1:
        with pytest.raises(swimlib.JoinError):
            await p1.join([f"127.0.0.1:{e1.address[1]}"])
        assert [m.name for m in e1.members()] == ["e1"]
        assert e1.statistics().drops.get("stream.plaintext", 0) >= 1
