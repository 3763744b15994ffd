"""One cluster, every way of hosting an agent: asyncio, trio, blocking, and real serf.

An asyncio program (the aiohttp example), a trio program (the trio example),
an agent on the blocking API in this process, and two ``serf agent``
processes form one cluster on loopback. It converges; a SIGKILLed serf is
found failed by every view; a graceful leave (SIGTERM to the trio program)
is seen as left.
"""

from __future__ import annotations

import json
import signal
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from swimlib import MemberStatus
from swimlib.blocking import open_agent
from swimlib.testing import free_port

from .procs import Procs, needs_serf, wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
NAMES = {"py-blocking", "py-asyncio", "py-trio", "go-1", "go-2"}
TIMEOUT = 40.0


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    yield p
    p.stop_all()


def web_view(http: int) -> dict[str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/members", timeout=5) as r:
            return {m["name"]: m["status"] for m in json.load(r)}
    except OSError:
        return {}


@needs_serf
def test_asyncio_trio_blocking_and_serf_agents_form_one_cluster(procs: Procs) -> None:
    pytest.importorskip("aiohttp")
    with open_agent("py-blocking", bind=("127.0.0.1", free_port())) as blocking:
        seed = f"127.0.0.1:{blocking.address[1]}"
        go1 = procs.serf("go-1", join=seed)
        go2 = procs.serf("go-2", join=seed)
        http = free_port()
        web = procs.group.start("py-asyncio", [
            sys.executable, str(EXAMPLES / "asyncio_web.py"), "--name", "py-asyncio",
            "--bind", f"127.0.0.1:{free_port()}", "--http", f"127.0.0.1:{http}",
            "--join", go1.gossip])
        trio_program = procs.group.start("py-trio", [
            sys.executable, str(EXAMPLES / "trio_example.py"), "--name", "py-trio",
            "--bind", f"127.0.0.1:{free_port()}", "--join", go2.gossip])

        def statuses() -> dict[str, dict[str, str]]:
            return {"blocking": {m.name: m.status_name for m in blocking.members()},
                    "serf": {n: m["status"] for n, m in procs.members(go1).items()},
                    "asyncio": web_view(http)}

        def everyone(expected: dict[str, str]) -> bool:
            for program in (web, trio_program):
                assert program.alive or expected[program.name] != "alive", program.output()
            return all(view == expected for view in statuses().values())

        wait_for(lambda: everyone(dict.fromkeys(NAMES, "alive")), TIMEOUT,
                 interval=0.5, what="five alive members in every view")

        procs.kill(go2, signal.SIGKILL)
        blocking.wait_member("go-2", MemberStatus.FAILED, timeout=TIMEOUT)
        expected = {**dict.fromkeys(NAMES, "alive"), "go-2": "failed"}
        wait_for(lambda: everyone(expected), TIMEOUT, interval=0.5,
                 what="go-2 failed in every view")

        assert procs.group.stop(trio_program, sig=signal.SIGTERM) == 0, trio_program.output()
        assert trio_program.output().rstrip().endswith("left")
        expected["py-trio"] = "left"
        wait_for(lambda: everyone(expected), TIMEOUT, interval=0.5,
                 what="py-trio left in every view")
        assert procs.group.stop(web) == 0, web.output()
