"""swimlib.blocking: agents on background threads, driven from plain synchronous code."""

from __future__ import annotations

import socket
import sys
import threading
import time
from contextlib import ExitStack

import pytest

import swimlib
from swimlib import Config, MemberStatus
from swimlib.blocking import open_agent
from swimlib.cluster.coordinates import distance_seconds

LOCAL = Config.local()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_two_blocking_agents_gossip_query_and_leave(backend: str) -> None:
    with ExitStack() as stack:
        a = stack.enter_context(open_agent("a", backend=backend, bind=("127.0.0.1", 0),
                                           config=LOCAL, tags={"role": "web"}))
        b = stack.enter_context(open_agent("b", backend=backend, bind=("127.0.0.1", 0),
                                           config=LOCAL))
        assert b.join([f"127.0.0.1:{a.address[1]}"]) == 1
        assert b.wait_member("a", timeout=10).tag_map == {"role": "web"}
        a.wait_member("b", timeout=10)

        updates = a.events(timeout=10)  # subscribed now: nothing after this is missed
        b.set_tags({"dc": "x"})
        b_events = b.events(timeout=10)
        a.user_event("deploy", b"v1")
        user_event = next(e for e in b_events if isinstance(e, swimlib.UserEvent))
        assert (user_event.name, user_event.payload) == ("deploy", b"v1")
        for event in updates:
            if (isinstance(event, swimlib.MemberEvent)
                    and event.type == swimlib.EventType.MEMBER_UPDATE):
                assert event.members[0].name == "b"
                assert event.members[0].tag_map == {"dc": "x"}
                break
        else:
            pytest.fail("no member-update for b's tags")
        queries = b.events(timeout=10)
        replies: list[swimlib.QueryReply] = []
        asked = threading.Thread(target=lambda: replies.extend(
            a.query("ping", b"", request_ack=True, timeout=2.0)))
        asked.start()
        query = next(e for e in queries if isinstance(e, swimlib.QueryEvent))
        b.respond(query.id, b"pong")
        asked.join(10)
        assert {r.from_node for r in replies if r.kind == "ack"} == {"a", "b"}
        assert [(r.from_node, r.payload) for r in replies if r.kind == "response"] == [
            ("b", b"pong")]
        assert a.statistics().counters["udp.sent"] > 0
        # Network coordinates: ours at once, b's once a has probed b directly.
        for _ in range(200):
            if a.coordinate("b") is not None:
                break
            time.sleep(0.05)
        mine, theirs = a.coordinate(), a.coordinate("b")
        assert mine is not None and theirs is not None
        assert 0.0 < distance_seconds(mine, theirs) < 0.1
        assert a.coordinate("nobody") is None

        b.leave()
        assert a.wait_member("b", MemberStatus.LEFT, timeout=10).name == "b"


def test_quiet_events_iteration_ends_after_its_timeout() -> None:
    with open_agent("solo", bind=("127.0.0.1", 0), config=LOCAL) as agent:
        kinds = [type(e).__name__ for e in agent.events(timeout=0.2)]
        assert kinds in ([], ["MemberEvent"])  # our own join, if it was still queued


def test_start_up_errors_are_raised_at_open() -> None:
    with open_agent("first", bind=("127.0.0.1", 0), config=LOCAL) as first, \
            pytest.raises(OSError), open_agent("second", bind=first.address, config=LOCAL):
        pass
    with pytest.raises(swimlib.JoinError), open_agent(
            "lonely", bind=("127.0.0.1", 0), config=LOCAL, join=["127.0.0.1:1"]):
        pass


def test_a_crash_in_the_agent_thread_surfaces_in_the_caller() -> None:
    class Broken(RuntimeError):
        pass

    with pytest.raises(swimlib.AgentCrashed) as closing, open_agent(
            "fragile", bind=("127.0.0.1", 0), config=LOCAL) as agent:
        transport = agent._agent._transport

        async def broken() -> list[tuple[bytes, tuple[str, int]]]:
            raise Broken("the network layer failed")

        transport.receive_datagrams = broken  # type: ignore[method-assign]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"wake up", agent.address)  # the loop re-enters receive: it fails
        with pytest.raises(swimlib.AgentCrashed) as waiting:
            for _ in agent.events():  # no timeout: only the crash ends this wait
                pass
        assert "Broken" in str(waiting.value)
        with pytest.raises(swimlib.AgentCrashed):
            agent.members()
    assert isinstance(closing.value.__cause__, BaseExceptionGroup | Broken)


def test_an_asyncio_program_never_imports_trio(tmp_path) -> None:
    import subprocess

    script = tmp_path / "app.py"
    script.write_text(
        "import asyncio, sys\n"
        "import swimlib\n"
        "from swimlib.config import Config\n"
        "async def main():\n"
        "    async with swimlib.open_agent('x', bind=('127.0.0.1', 0),"
        " config=Config.local()) as a:\n"
        "        async with swimlib.open_agent('y', bind=('127.0.0.1', 0),"
        " config=Config.local(), join=[f'127.0.0.1:{a.address[1]}']) as b:\n"
        "            await asyncio.wait_for(a.wait_member('y'), 10)\n"
        "            await b.leave()\n"
        "asyncio.run(main())\n"
        "with swimlib.blocking.open_agent('z', bind=('127.0.0.1', 0),"
        " config=Config.local()) as z:\n"
        "    assert z.members()[0].name == 'z'\n"
        "print(sorted(m for m in sys.modules if m == 'trio' or m.startswith('trio.')))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
