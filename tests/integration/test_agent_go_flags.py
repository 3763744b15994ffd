"""``swimlib agent`` started with command lines written for ``serf agent``.

Real processes on loopback: a serf agent as the seed, swimlib agents given
Go-style flags exactly as a unit file for serf would give them.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from swimlib.testing import free_port

from .procs import SERF, Procs, needs_serf, wait_for


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    yield p
    p.stop_all()


def _alive(procs: Procs, observer: Any, name: str) -> dict[str, Any] | None:
    member = procs.members(observer).get(name)
    return member if member is not None and member["status"] == "alive" else None


@needs_serf
def test_a_serf_command_line_starts_swimlib_unchanged(procs: Procs) -> None:
    seed = procs.serf("seed")
    port, rpc = free_port(), free_port()
    web = procs.swimlib_flags(
        "web-1", "-node=web-1", f"-bind=127.0.0.1:{port}", f"-rpc-addr=127.0.0.1:{rpc}",
        f"-join={seed.gossip}", "-role=web", "-tag", "dc=east", "-replay=false",
        "-broadcast-timeout=2s", "-log-level=info", port=port, rpc_port=rpc)
    seen = wait_for(lambda: _alive(procs, seed, "web-1"), 20, what="serf sees web-1")
    assert seen["tags"] == {"role": "web", "dc": "east"}
    assert seen["addr"] == f"127.0.0.1:{port}"
    # And serf's CLI against the swimlib agent sees the serf seed.
    wait_for(lambda: _alive(procs, web, "seed"), 20, what="web-1 sees the seed")
    assert procs.stop(web) == 0


def test_retry_join_gives_up_after_retry_max_as_serf_does(procs: Procs) -> None:
    port, rpc, nobody = free_port(), free_port(), free_port()
    lonely = procs.swimlib_flags(
        "lonely", "-node=lonely", f"-bind=127.0.0.1:{port}", f"-rpc-addr=127.0.0.1:{rpc}",
        f"-retry-join=127.0.0.1:{nobody}", "-retry-interval=1s", "-retry-max=2",
        port=port, rpc_port=rpc, wait=False)
    wait_for(lambda: not lonely.alive(), 30, what="the agent to give up")
    out = lonely.output()
    assert lonely.popen.returncode == 1, out
    # serf's retryJoin: N retries after the first attempt, then exit 1 without a leave.
    assert out.count("agent: Joining cluster...(replay: false)") == 3, out
    assert out.count("agent: Join failed:") == 2 and "retrying in 1s" in out, out
    assert "[ERR] agent: maximum retry join attempts made, exiting" in out
    assert "Gracefully shutting down" not in out and "Traceback" not in out


@needs_serf
def test_retry_join_keeps_trying_until_the_seed_is_up(procs: Procs) -> None:
    seed_port = free_port()
    port, rpc = free_port(), free_port()
    agent = procs.swimlib_flags(
        "late", "-node=late", f"-bind=127.0.0.1:{port}", f"-rpc-addr=127.0.0.1:{rpc}",
        f"-retry-join=127.0.0.1:{seed_port}", "-retry-interval=1s",
        port=port, rpc_port=rpc)
    wait_for(lambda: "agent: Join failed:" in agent.output(), 15, what="a failed attempt")
    seed = procs.serf("seed", port=seed_port)
    wait_for(lambda: _alive(procs, seed, "late"), 20, what="the seed sees the agent")
    wait_for(lambda: "agent: Join completed. Synced with 1 initial agents" in agent.output(),
             10, what="the join completed")
    assert agent.alive()


def _info(proc: Any) -> dict[str, Any]:
    out = subprocess.run([SERF, "info", f"-rpc-addr={proc.rpc}", "-format=json"],
                         capture_output=True, text=True, timeout=20, check=True).stdout
    return dict(json.loads(out))


@needs_serf
def test_a_serf_config_directory_starts_swimlib_as_it_starts_serf(procs: Procs,
                                                                   tmp_path: Path) -> None:
    """The same directory and unit-file command line for both implementations."""
    key = base64.b64encode(bytes(range(32))).decode()
    seed = procs.serf("seed", f"-encrypt={key}")
    out = tmp_path / "deploys"
    conf = tmp_path / "serf.d"
    conf.mkdir()
    (conf / "00-agent.json").write_text(json.dumps({
        "tags": {"role": "web", "dc": "east"}, "encrypt_key": key,
        "retry_join": [seed.gossip], "retry_interval": "1s", "log_level": "INFO",
        "event_handlers": [f"user:deploy=echo $SERF_SELF_NAME >> {out}"],
        "enable_syslog": False}))
    (conf / "10-site.json").write_text(json.dumps({"tags": {"dc": "west"}}))
    agents = {}
    for impl in ("serf", "swimlib"):
        port, rpc = free_port(), free_port()
        flags = [f"-config-dir={conf}", f"-node={impl}-1", f"-bind=127.0.0.1:{port}",
                 f"-rpc-addr=127.0.0.1:{rpc}", f"-snapshot={tmp_path / impl}.snapshot"]
        if impl == "serf":
            agents[impl] = procs.serf_flags(f"{impl}-1", *flags, port=port, rpc_port=rpc)
        else:
            agents[impl] = procs.swimlib_flags(f"{impl}-1", *flags, port=port, rpc_port=rpc)
    for impl in agents:
        seen = wait_for(lambda i=impl: _alive(procs, seed, f"{i}-1"), 30, what=f"{impl} joined")
        assert seen["tags"] == {"role": "web", "dc": "west"}
    infos = {impl: _info(proc) for impl, proc in agents.items()}
    for info in infos.values():
        assert info["tags"] == {"role": "web", "dc": "west"}
        assert info["serf"]["encrypted"] == "true"
    assert {info["agent"]["name"] for info in infos.values()} == {"serf-1", "swimlib-1"}
    subprocess.run([SERF, "event", f"-rpc-addr={seed.rpc}", "deploy", "v2"], check=True,
                   capture_output=True, timeout=20)
    wait_for(lambda: out.exists() and sorted(out.read_text().split()) == ["serf-1",
                                                                          "swimlib-1"],
             30, what="both handlers ran")


@needs_serf
def test_tags_set_over_rpc_survive_a_restart_through_the_tags_file(procs: Procs,
                                                                     tmp_path: Path) -> None:
    seed = procs.serf("seed")
    tags_file = tmp_path / "tags.json"
    port, rpc = free_port(), free_port()
    flags = ["-node=db-1", f"-bind=127.0.0.1:{port}", f"-rpc-addr=127.0.0.1:{rpc}",
             f"-join={seed.gossip}", f"-tags-file={tags_file}"]
    agent = procs.swimlib_flags("db-1", *flags, port=port, rpc_port=rpc)
    wait_for(lambda: _alive(procs, seed, "db-1"), 20, what="db-1 joined")
    subprocess.run([SERF, "tags", f"-rpc-addr={agent.rpc}", "-set", "role=db", "-set",
                    "shard=2"], check=True, capture_output=True, timeout=20)
    assert json.loads(tags_file.read_text()) == {"role": "db", "shard": "2"}
    wait_for(lambda: (_alive(procs, seed, "db-1") or {}).get("tags") == {"role": "db",
                                                                          "shard": "2"},
             20, what="the seed sees the new tags")
    assert procs.stop(agent) == 0
    again = procs.swimlib_flags("db-1", *flags, port=port, rpc_port=rpc)
    wait_for(lambda: "agent: Restored 2 tag(s) from" in again.output(), 10,
             what="the tags restored")
    info = _info(again)
    assert info["tags"] == {"role": "db", "shard": "2"}


@needs_serf
def test_rejoin_brings_a_member_back_after_a_graceful_leave(procs: Procs,
                                                           tmp_path: Path) -> None:
    seed = procs.serf("seed")
    port, rpc = free_port(), free_port()
    base = ["-node=r-1", f"-bind=127.0.0.1:{port}", f"-rpc-addr=127.0.0.1:{rpc}",
            f"-snapshot={tmp_path / 'r-1.snapshot'}"]
    first = procs.swimlib_flags("r-1", *base, f"-join={seed.gossip}", port=port, rpc_port=rpc)
    wait_for(lambda: _alive(procs, seed, "r-1"), 20, what="r-1 joined")
    assert procs.stop(first) == 0  # SIGTERM: a graceful leave, recorded in the snapshot
    wait_for(lambda: procs.members(seed).get("r-1", {}).get("status") == "left", 20,
             what="the seed saw r-1 leave")
    again = procs.swimlib_flags("r-1", *base, "-rejoin", port=port, rpc_port=rpc)
    wait_for(lambda: _alive(procs, seed, "r-1"), 20, what="r-1 rejoined from its snapshot")
    assert "rejoined through snapshot member seed" in again.output()


@needs_serf
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="-iface reads Linux interfaces")
def test_iface_binds_the_interface_address(procs: Procs) -> None:
    seed = procs.serf("seed")
    port, rpc = free_port(), free_port()
    procs.swimlib_flags("lo-1", "-node=lo-1", "-iface=lo", f"-bind=0.0.0.0:{port}",
                        f"-rpc-addr=127.0.0.1:{rpc}", f"-join={seed.gossip}",
                        port=port, rpc_port=rpc)
    seen = wait_for(lambda: _alive(procs, seed, "lo-1"), 20, what="lo-1 joined")
    assert seen["addr"] == f"127.0.0.1:{port}"


@needs_serf
def test_log_json_writes_only_json_records(procs: Procs) -> None:
    seed = procs.serf("seed")
    port, rpc = free_port(), free_port()
    agent = procs.swimlib_flags("j-1", "-node=j-1", f"-bind=127.0.0.1:{port}",
                                f"-rpc-addr=127.0.0.1:{rpc}", f"-join={seed.gossip}",
                                "-log-json", port=port, rpc_port=rpc)
    wait_for(lambda: '"@message": "EventMemberJoin: seed 127.0.0.1"' in agent.output(), 20,
             what="the join logged as JSON")
    assert procs.stop(agent) == 0
    records = [json.loads(line) for line in agent.output().splitlines() if line.strip()]
    assert records[0]["@message"] == "Starting swimlib agent..."
    running = next(r for r in records if r["@message"] == "swimlib agent running")
    assert running["node"] == "j-1" and running["bind"] == f"127.0.0.1:{port}"
    assert {r["@module"] for r in records} >= {"agent", "serf"}


@needs_serf
@pytest.mark.parametrize("kind", ["serf", "swimlib"])
def test_sighup_reloads_tags_handlers_and_log_level(procs: Procs, tmp_path: Path,
                                                    kind: str) -> None:
    """serf's handleReload: the files are read again; tags, handlers, log level change."""
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "10-base.json").write_text(json.dumps({"tags": {"color": "red"},
                                                   "log_level": "info"}))
    port, rpc = free_port(), free_port()
    flags = ("-node=reloaded", f"-bind=127.0.0.1:{port}", f"-rpc-addr=127.0.0.1:{rpc}",
             f"-config-dir={conf}")
    start = procs.serf_flags if kind == "serf" else procs.swimlib_flags
    agent = start("reloaded", *flags, port=port, rpc_port=rpc)
    wait_for(lambda: _alive(procs, agent, "reloaded"), 10, what="the agent itself")
    assert procs.members(agent)["reloaded"]["tags"] == {"color": "red"}

    joined = tmp_path / "joined.txt"
    (conf / "10-base.json").write_text(json.dumps({
        "tags": {"color": "blue"}, "log_level": "debug",
        "event_handlers": [f"member-join=cat >> {joined}"]}))
    agent.popen.send_signal(signal.SIGHUP)
    wait_for(lambda: procs.members(agent)["reloaded"]["tags"] == {"color": "blue"}, 10,
             what="the reloaded tags")
    assert "Reloading configuration..." in agent.output()
    assert agent.alive()
    procs.serf("newcomer", join=agent.gossip)
    wait_for(lambda: joined.exists() and "newcomer" in joined.read_text(), 20,
             what="the reloaded member-join handler")
    assert "[DEBUG]" in agent.output()

    # A broken file: nothing changes, the agent carries on.
    (conf / "10-base.json").write_text("{not json")
    before = agent.output().count("Reloading configuration...")
    agent.popen.send_signal(signal.SIGHUP)
    wait_for(lambda: agent.output().count("Reloading configuration...") > before, 10,
             what="the second reload")
    wait_for(lambda: "Failed to reload configs" in agent.output(), 10, what="the error")
    assert agent.alive()
    assert procs.members(agent)["reloaded"]["tags"] == {"color": "blue"}


@needs_serf
def test_label_keeps_two_clusters_on_one_network_apart(procs: Procs, tmp_path: Path) -> None:
    conf = tmp_path / "label.json"
    conf.write_text(json.dumps({"label": "prod"}))
    prod = procs.swimlib("prod-1", "-label=prod")
    prod2 = procs.swimlib("prod-2", f"-config-file={conf}", join=prod.gossip)
    staging = procs.swimlib("staging-1", "-label", "staging")
    plain = procs.serf("plain-1")  # serf 0.8.2: no label
    wait_for(lambda: _alive(procs, prod, "prod-2"), 20, what="same label joins")

    def join(via: Any, target: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SERF, "join", f"-rpc-addr={via.rpc}", target.gossip],
                              capture_output=True, text=True, timeout=30)

    for via, target in ((staging, prod), (plain, prod), (prod, staging), (prod, plain)):
        assert join(via, target).returncode != 0, (via.name, target.name)
    assert set(procs.members(prod)) == {"prod-1", "prod-2"}
    assert set(procs.members(staging)) == {"staging-1"}
    assert set(procs.members(plain)) == {"plain-1"}
    assert set(procs.members(prod2)) == {"prod-1", "prod-2"}


def test_a_label_over_255_bytes_is_refused_before_start(procs: Procs) -> None:
    port, rpc = free_port(), free_port()
    agent = procs.swimlib_flags("long", "-node=long", f"-bind=127.0.0.1:{port}",
                                f"-rpc-addr=127.0.0.1:{rpc}", "-label=" + "x" * 256,
                                port=port, rpc_port=rpc, wait=False)
    wait_for(lambda: not agent.alive(), 15, what="the agent to refuse")
    assert agent.popen.returncode == 1
    assert "label" in agent.output() and "too long" in agent.output()
    assert "Traceback" not in agent.output()


@needs_serf
@pytest.mark.parametrize("kind", ["serf", "swimlib"])
def test_skip_leave_on_interrupt_stops_without_leaving(procs: Procs, tmp_path: Path,
                                                       kind: str) -> None:
    seed = procs.serf("seed")
    conf = tmp_path / "agent.json"
    conf.write_text(json.dumps({"skip_leave_on_interrupt": True,
                                "start_join": [seed.gossip]}))
    port, rpc = free_port(), free_port()
    start = procs.serf_flags if kind == "serf" else procs.swimlib_flags
    agent = start("quitter", "-node=quitter", f"-bind=127.0.0.1:{port}",
                  f"-rpc-addr=127.0.0.1:{rpc}", f"-config-file={conf}", port=port, rpc_port=rpc)
    wait_for(lambda: _alive(procs, seed, "quitter"), 20, what="the agent joined")
    agent.popen.send_signal(signal.SIGINT)
    assert agent.popen.wait(timeout=20) == 1
    assert "Gracefully shutting down" not in agent.output()
    wait_for(lambda: procs.members(seed).get("quitter", {}).get("status") == "failed", 30,
             what="the seed to see it fail, not leave")


@needs_serf
@pytest.mark.parametrize(("given", "words"), [("1", "'1' too low"), ("6", "'6' too high")])
def test_protocol_out_of_range_is_refused_as_serf_refuses_it(procs: Procs, given: str,
                                                             words: str) -> None:
    expected = f"Error creating Serf: Protocol version {words}. Must be in range: [2, 5]"
    port, rpc = free_port(), free_port()
    flags = ("-node=old", f"-bind=127.0.0.1:{port}", f"-rpc-addr=127.0.0.1:{rpc}",
             f"-protocol={given}")
    serf = subprocess.run([SERF, "agent", *flags], capture_output=True, text=True, timeout=20)
    ours = subprocess.run([sys.executable, "-m", "swimlib.cli", "agent", *flags],
                          capture_output=True, text=True, timeout=20)
    assert serf.returncode == ours.returncode == 1
    assert expected in serf.stdout, serf.stdout
    assert expected in ours.stderr and "Traceback" not in ours.stderr, ours.stderr


@needs_serf
def test_protocol_is_advertised_as_serf_advertises_it(procs: Procs) -> None:
    seed = procs.serf("seed", "-protocol=4")
    agent = procs.swimlib("old", "-protocol=3", "-tag", "dc=east", join=seed.gossip)
    seen = wait_for(lambda: _alive(procs, seed, "old"), 20, what="serf sees the agent")
    assert seen["protocol"] == {"min": 2, "max": 5, "version": 3}
    assert seen["tags"] == {"dc": "east"}
    ours = wait_for(lambda: procs.members(agent).get("seed"), 20, what="the agent sees serf")
    assert ours["protocol"] == {"min": 2, "max": 5, "version": 4}
    detailed = subprocess.run([SERF, "members", "-detailed", f"-rpc-addr={seed.rpc}"],
                              capture_output=True, text=True, timeout=20)
    line = next(row for row in detailed.stdout.splitlines() if row.startswith("old "))
    assert "Protocol Version: 3  Available Protocol Range: [2, 5]" in line, line
    # Below protocol 4 serf refuses queries (serf 0.8.2 -protocol=3 answers this line
    # too); so do we, and the seed at 4 still can.
    refused = subprocess.run([SERF, "query", f"-rpc-addr={agent.rpc}", "ping"],
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1
    assert "Error sending query: Feature not supported" in refused.stdout, refused.stdout
    asked = subprocess.run([SERF, "query", f"-rpc-addr={seed.rpc}", "-timeout=2s", "ping"],
                           capture_output=True, text=True, timeout=30)
    assert asked.returncode == 0, asked.stdout + asked.stderr
