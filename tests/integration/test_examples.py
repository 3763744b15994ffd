"""The examples in docs/examples run, against a real cluster on loopback.

A seed agent (the blocking API, in this process) is joined by each example
started as its own process: the asyncio web app (aiohttp), the blocking
script and the trio program. Each must appear alive, do what it says, and
leave gracefully when asked to stop.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import swimlib
from swimlib import Config, MemberStatus
from swimlib.blocking import BlockingAgent, open_agent
from swimlib.testing import ProcessGroup, free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
TIMEOUT = 20.0


@pytest.fixture
def seed() -> Iterator[BlockingAgent]:
    with open_agent("seed", bind=("127.0.0.1", free_port()), config=Config.local()) as agent:
        yield agent


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


def example(name: str, *args: str) -> list[str]:
    return [sys.executable, str(EXAMPLES / name), *args]


def join_args(seed: BlockingAgent, name: str) -> list[str]:
    return ["--name", name, "--bind", f"127.0.0.1:{free_port()}",
            "--join", f"127.0.0.1:{seed.address[1]}"]


def test_asyncio_web_app_joins_and_serves_members(seed: BlockingAgent,
                                                  procs: ProcessGroup) -> None:
    pytest.importorskip("aiohttp")
    http = free_port()
    app = procs.start("web", example("asyncio_web.py", *join_args(seed, "web-1"),
                                     "--http", f"127.0.0.1:{http}"))
    seed.wait_member("web-1", timeout=TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while True:  # the HTTP port opens after the agent joined; bounded
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/members", timeout=5) as r:
                members = json.load(r)
            break
        except OSError:
            assert time.monotonic() < deadline and app.alive, app.output()
            time.sleep(0.1)
    assert {m["name"]: m["status"] for m in members} == {"seed": "alive", "web-1": "alive"}
    assert next(m for m in members if m["name"] == "web-1")["tags"] == {"role": "web"}
    assert procs.stop(app) == 0, app.output()
    assert seed.wait_member("web-1", MemberStatus.LEFT, timeout=TIMEOUT)


def test_blocking_script_announces_itself_and_leaves(seed: BlockingAgent,
                                                     procs: ProcessGroup) -> None:
    events = seed.events(timeout=TIMEOUT)
    script = procs.start("script", example("blocking_script.py", *join_args(seed, "script-1"),
                                           "--watch", "0.5"))
    hello = next(e for e in events if isinstance(e, swimlib.UserEvent))
    assert (hello.name, hello.payload) == ("hello", b"script-1")
    seed.wait_member("script-1", MemberStatus.LEFT, timeout=TIMEOUT)
    assert script.popen.wait(TIMEOUT) == 0
    output = script.output()
    assert "member seed alive" in output and "member script-1 alive" in output
    assert output.rstrip().endswith("left")


def test_trio_example_answers_queries_and_leaves_on_sigterm(seed: BlockingAgent,
                                                            procs: ProcessGroup) -> None:
    program = procs.start("trio", example("trio_example.py", *join_args(seed, "trio-1")))
    seed.wait_member("trio-1", timeout=TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    answers: list[bytes] = []
    while not answers:  # its query handler may start a moment after the join; bounded
        assert time.monotonic() < deadline, program.output()
        replies = seed.query("whoami", b"", timeout=1.0)
        answers = [r.payload for r in replies if r.kind == "response"]
    assert answers == [b"trio-1"]
    assert procs.stop(program, sig=signal.SIGTERM) == 0, program.output()
    seed.wait_member("trio-1", MemberStatus.LEFT, timeout=TIMEOUT)
    assert program.output().rstrip().endswith("left")
