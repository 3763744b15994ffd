"""Issue 7's repro: one well-formed query datagram with LTime 2^64-1.

Sent to one agent of a four-agent swimlib cluster on loopback, it used to end
that agent at once and the other three within 15 s (each witnessed the
clock; the next push-pull could not encode it). Now: every agent keeps
running, a push-pull from every agent succeeds, each sees the other three
alive, a user event reaches every agent's handler and a query gets every
agent's answer.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from swimlib.wire import serf as sw

from .procs import Proc, Procs, wait_for

pytestmark = [pytest.mark.slow]

NAMES = ["py0", "py1", "py2", "py3"]


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    group = Procs(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


def swimlib_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "swimlib.cli", *args], capture_output=True,
                          text=True, timeout=30)


def handler_script(tmp_path: Path) -> Path:
    """Appends user events to $OUT; answers queries with the node name."""
    script = tmp_path / "handler.sh"
    script.write_text('#!/bin/sh\n'
                      'case "$SERF_EVENT" in\n'
                      '  user) echo "$SERF_USER_EVENT" >> "$OUT/$SERF_SELF_NAME" ;;\n'
                      '  query) echo "answer-from-$SERF_SELF_NAME" ;;\n'
                      'esac\n')
    script.chmod(0o755)
    return script


def statuses(procs: Procs, viewer: Proc) -> dict[str, str]:
    return {name: m["status"] for name, m in procs.members(viewer, cli="swimlib").items()}


def test_query_with_top_ltime_stops_nothing(procs: Procs, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "events"
    out.mkdir()
    monkeypatch.setenv("OUT", str(out))
    script = handler_script(tmp_path)
    agents = [procs.swimlib(NAMES[0], "--event-handler", str(script))]
    agents += [procs.swimlib(name, "--event-handler", str(script), join=agents[0].gossip)
               for name in NAMES[1:]]
    healthy = dict.fromkeys(NAMES, "alive")
    for agent in agents:
        wait_for(lambda a=agent: statuses(procs, a) == healthy, 20, what=f"{agent.name} sees 4")

    victim = agents[2]
    host, port = victim.gossip.split(":")
    sender_host, sender_port = agents[1].gossip.split(":")  # as if py1 had sent it
    query = sw.Query(ltime=2**64 - 1, id=1234, addr=sender_host, port=int(sender_port),
                     source_node="py1", name="evil", timeout_ns=5 * 10**9)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(b"\x08" + sw.encode_serf(query), (host, int(port)))

    # A push-pull from every agent, to every other: this is what used to kill them.
    for agent in agents:
        others = [a.gossip for a in agents if a is not agent]
        result = swimlib_cli("join", "--rpc-addr", agent.rpc, *others)
        assert result.returncode == 0, result.stderr
    for agent in agents:
        assert agent.alive(), agent.output()[-3000:]
        wait_for(lambda a=agent: statuses(procs, a) == healthy, 20, what=f"{agent.name} sees 4")

    assert swimlib_cli("event", "--rpc-addr", agents[0].rpc, "after", "x").returncode == 0
    wait_for(lambda: all((out / name).exists() and "after" in (out / name).read_text()
                         for name in NAMES), 20, what="the event at every handler")

    reply = swimlib_cli("query", "--rpc-addr", agents[3].rpc, "--format", "json",
                        "--timeout", "5s", "ask")
    assert reply.returncode == 0, reply.stderr
    answers = json.loads(reply.stdout)
    assert sorted(answers["Acks"]) == NAMES
    assert {name: text.strip() for name, text in answers["Responses"].items()} == {
        name: f"answer-from-{name}" for name in NAMES}

    info = json.loads(swimlib_cli("info", "--rpc-addr", victim.rpc, "--format",
                                  "json").stdout)
    assert info["drops"]["serf.query_ltime_implausible"] == "1"
    assert info["internal_errors"] == {}
    assert int(info["serf"]["query_time"]) < 1000
