"""Event handlers: Serf's spec syntax, environment, stdin, output capture and the runner.

Expected values come from the real Serf 0.9.4 agent (shared/reference/serf-interface-capture.txt,
"handler dump on n0") and from Serf's invoke.go. Every async test runs under asyncio and trio.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from swimlib.agent.handlers import (
    MAX_OUTPUT,
    HandlerRunner,
    HandlerSpec,
    build_env,
    event_stdin,
    format_member_line,
    invoke_script,
    parse_handler_spec,
    parse_handler_specs,
    tag_env_name,
)
from swimlib.cluster.events import (
    ClusterMember,
    Event,
    EventType,
    MemberEvent,
    MemberStatus,
    QueryEvent,
    UserEvent,
)
from swimlib.errors import ConfigError
from tests.backends import both_backends  # noqa: F401

N0 = ClusterMember("n0", "127.0.0.1", 17200, {"role": "balancer"})
N1 = ClusterMember("n1", "127.0.0.1", 17201, {"role": "backend"})
N2 = ClusterMember("n2", "127.0.0.1", 17202, {"role": "backend"})
N2_W = ClusterMember("n2", "127.0.0.1", 17202, {"role": "backend", "weight": "10"})

# Captured stdin of n0's handler (tabs are real tabs here).
CAPTURED_JOIN = (
    "n0\t127.0.0.1\tbalancer\trole=balancer\n"
    "n1\t127.0.0.1\tbackend\trole=backend\n"
    "n2\t127.0.0.1\tbackend\trole=backend\n"
)
CAPTURED_UPDATE = "n2\t127.0.0.1\tbackend\trole=backend,weight=10\n"
# Captured SERF_* variables of n0's handler.
CAPTURED_BASE = {
    "SERF_SELF_NAME": "n0",
    "SERF_SELF_ROLE": "balancer",
    "SERF_TAG_ROLE": "balancer",
}


def user(name: str = "deploy", payload: bytes = b"v1.2.3", ltime: int = 1) -> UserEvent:
    return UserEvent(ltime=ltime, name=name, payload=payload)


def query(name: str = "ping", payload: bytes = b"hello", ltime: int = 1) -> QueryEvent:
    return QueryEvent(ltime=ltime, id=7, name=name, payload=payload, source_node="n1", deadline=1e9)


def serf_vars(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("SERF_")}


# --------------------------------------------------------------------------- specs


def test_bare_script_handles_every_event() -> None:
    assert parse_handler_spec("./handler.sh") == [HandlerSpec("*", "./handler.sh")]


def test_typed_and_listed_specs_expand_one_filter_each_in_order() -> None:
    assert parse_handler_spec("member-join,member-leave=/x/join.sh arg") == [
        HandlerSpec("member-join", "/x/join.sh arg"),
        HandlerSpec("member-leave", "/x/join.sh arg"),
    ]
    for etype in EventType:
        assert parse_handler_spec(f"{etype.value}=s") == [HandlerSpec(etype.value, "s")]
    assert parse_handler_spec("*=s") == [HandlerSpec("*", "s")]


def test_named_user_and_query_filters() -> None:
    assert parse_handler_spec("user:deploy=d.sh") == [HandlerSpec("user", "d.sh", "deploy")]
    assert parse_handler_spec("query:ping=p.sh") == [HandlerSpec("query", "p.sh", "ping")]
    assert parse_handler_spec("user:=d.sh") == [HandlerSpec("user", "d.sh", "")]
    assert parse_handler_spec("member-join,user:deploy=s") == [
        HandlerSpec("member-join", "s"),
        HandlerSpec("user", "s", "deploy"),
    ]


def test_split_at_first_equals_so_the_script_may_contain_equals() -> None:
    assert parse_handler_spec("*=FOO=bar ./x.sh") == [HandlerSpec("*", "FOO=bar ./x.sh")]


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("member-joined=x.sh", "unknown event type 'member-joined'"),
        ("FOO=bar ./x.sh", "'*=SCRIPT'"),
        ("member-join,=x.sh", "unknown event type ''"),
        ("", "empty script"),
        ("member-join=", "empty script"),
        ("member-join=   ", "empty script"),
        ("users:deploy=x", "unknown event type 'users:deploy'"),
    ],
)
def test_bad_specs_raise_config_error_naming_the_problem(spec: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match="invalid event handler") as info:
        parse_handler_spec(spec)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_parse_many_keeps_order() -> None:
    specs = parse_handler_specs(["a.sh", "user:x=b.sh", "member-failed=c.sh"])
    assert [s.script for s in specs] == ["a.sh", "b.sh", "c.sh"]


def test_matching_follows_serf_event_filter() -> None:
    join = MemberEvent(EventType.MEMBER_JOIN, (N1,))
    star, mj = HandlerSpec("*", "s"), HandlerSpec("member-join", "s")
    u_any, u_deploy = HandlerSpec("user", "s"), HandlerSpec("user", "s", "deploy")
    q_ping = HandlerSpec("query", "s", "ping")
    assert star.matches(join) and star.matches(user()) and star.matches(query())
    assert mj.matches(join) and not mj.matches(MemberEvent(EventType.MEMBER_LEAVE, (N1,)))
    assert u_any.matches(user("other")) and u_deploy.matches(user("deploy"))
    assert not u_deploy.matches(user("other")) and not u_deploy.matches(join)
    assert q_ping.matches(query("ping")) and not q_ping.matches(query("pong"))
    assert not q_ping.matches(user("ping"))
    assert str(u_deploy) == "Event 'user:deploy' invoking 's'"


# --------------------------------------------------------------------------- environment


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("role", "SERF_TAG_ROLE"),
        ("dc-1.a", "SERF_TAG_DC_1_A"),
        ("Already_UP9", "SERF_TAG_ALREADY_UP9"),
        ("été", "SERF_TAG__T_"),
        ("straße", "SERF_TAG_STRA_E"),  # Go's ToUpper keeps ß one rune; Python's upper() -> SS
        ("a b=c", "SERF_TAG_A_B_C"),
    ],
)
def test_tag_env_names_are_sanitized_like_serf(key: str, name: str) -> None:
    assert tag_env_name(key) == name


def test_env_for_each_event_type_matches_the_capture() -> None:
    join = MemberEvent(EventType.MEMBER_JOIN, (N0, N1, N2))
    assert serf_vars(build_env(join, N0, {})) == {"SERF_EVENT": "member-join", **CAPTURED_BASE}
    assert serf_vars(build_env(user(), N0, {})) == {
        "SERF_EVENT": "user",
        **CAPTURED_BASE,
        "SERF_USER_EVENT": "deploy",
        "SERF_USER_LTIME": "1",
    }
    assert serf_vars(build_env(query(), N0, {})) == {
        "SERF_EVENT": "query",
        **CAPTURED_BASE,
        "SERF_QUERY_NAME": "ping",
        "SERF_QUERY_LTIME": "1",
    }
    for etype in ("member-leave", "member-failed", "member-update", "member-reap"):
        event = MemberEvent(EventType(etype), (N1,))
        assert build_env(event, N0, {})["SERF_EVENT"] == etype


def test_env_inherits_the_agent_environment_and_overrides_stale_serf_vars() -> None:
    base = {"PATH": "/bin", "HOME": "/root", "SERF_EVENT": "stale", "SERF_USER_EVENT": "old"}
    env = build_env(MemberEvent(EventType.MEMBER_JOIN, (N1,)), N0, base)
    assert env["PATH"] == "/bin" and env["HOME"] == "/root"
    assert env["SERF_EVENT"] == "member-join"
    assert env["SERF_USER_EVENT"] == "old"  # inherited untouched, as Go's exec would
    assert base["SERF_EVENT"] == "stale"  # the caller's mapping is not modified


def test_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWIMLIB_TEST_MARKER", "yes")
    assert build_env(user(), N0)["SWIMLIB_TEST_MARKER"] == "yes"


def test_env_without_role_tag_and_with_many_tags() -> None:
    me = ClusterMember("web 1", "10.0.0.1", 7946, {"dc": "eu-1", "rack.id": "r7"})
    env = serf_vars(build_env(user(), me, {}))
    assert env["SERF_SELF_ROLE"] == ""
    assert env["SERF_SELF_NAME"] == "web 1"
    assert env["SERF_TAG_DC"] == "eu-1" and env["SERF_TAG_RACK_ID"] == "r7"
    assert "SERF_TAG_ROLE" not in env


# --------------------------------------------------------------------------- stdin


def test_member_stdin_matches_captured_lines() -> None:
    join = MemberEvent(EventType.MEMBER_JOIN, (N0, N1, N2))
    assert event_stdin(join) == CAPTURED_JOIN.encode()
    update = MemberEvent(EventType.MEMBER_UPDATE, (N2_W,))
    assert event_stdin(update) == CAPTURED_UPDATE.encode()
    failed = MemberEvent(EventType.MEMBER_FAILED, (N2_W,))
    assert event_stdin(failed) == CAPTURED_UPDATE.encode()


def test_member_line_escapes_tab_and_newline_only() -> None:
    odd = ClusterMember("a\tb\nc", "10.0.0.9", 1, {"role": "x\ty", "note": "p\nq", "k": "a=b,c\\d"})
    assert format_member_line(odd) == (
        "a\\tb\\nc\t10.0.0.9\tx\\ty\tk=a=b,c\\d,note=p\\nq,role=x\\ty\n"
    )


def test_member_line_address_is_the_bare_ip_as_go_prints_it() -> None:
    def line(addr: str) -> str:
        return format_member_line(ClusterMember("n", addr, 7946, {}))

    assert line("::ffff:10.1.2.3") == "n\t10.1.2.3\t\t\n"
    assert line("2001:0db8:0:0:0:0:0:1") == "n\t2001:db8::1\t\t\n"
    assert line("10.0.0.1") == "n\t10.0.0.1\t\t\n"


def test_member_line_without_tags() -> None:
    assert format_member_line(ClusterMember("n", "1.2.3.4", 1, {})) == "n\t1.2.3.4\t\t\n"


def test_payload_gets_one_trailing_newline_if_missing() -> None:
    assert event_stdin(user(payload=b"v1.2.3")) == b"v1.2.3\n"
    assert event_stdin(query(payload=b"hello")) == b"hello\n"
    assert event_stdin(user(payload=b"line\n")) == b"line\n"
    assert event_stdin(user(payload=b"a\nb")) == b"a\nb\n"
    assert event_stdin(user(payload=b"")) == b""
    assert event_stdin(user(payload=b"\xff\x00")) == b"\xff\x00\n"


# --------------------------------------------------------------------------- invoke


async def test_script_sees_env_stdin_and_shares_one_output_buffer() -> None:
    join = MemberEvent(EventType.MEMBER_JOIN, (N0, N1))
    script = 'cat; echo "E=$SERF_EVENT R=$SERF_SELF_ROLE X=$PATH_MARK"; echo err >&2'
    with anyio.fail_after(10):
        result = await invoke_script(script, join, N0, base_env={"PATH_MARK": "m"})
    assert result.ok and result.exit_code == 0 and not result.timed_out
    assert result.output == (
        b"n0\t127.0.0.1\tbalancer\trole=balancer\n"
        b"n1\t127.0.0.1\tbackend\trole=backend\n"
        b"E=member-join R=balancer X=m\nerr\n"
    )
    assert result.total_output == len(result.output)


async def test_failure_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with anyio.fail_after(10):
        result = await invoke_script("echo oops; exit 3", user(), N0)
    assert result.exit_code == 3 and not result.ok
    assert result.output == b"oops\n"
    assert "Error invoking script 'echo oops; exit 3': exit status 3" in caplog.text


async def test_unstartable_shell_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with anyio.fail_after(10):
        result = await invoke_script("true", user(), N0, shell="/nonexistent/sh")
    assert result.exit_code is None and not result.ok
    assert "Error invoking script 'true'" in caplog.text


async def test_output_keeps_the_last_8_kib(caplog: pytest.LogCaptureFixture) -> None:
    # 20000 bytes: "0000\n" .. "3999\n"; Serf's circbuf keeps the newest MAX_OUTPUT bytes.
    script = "i=0; while [ $i -lt 4000 ]; do printf '%04d\\n' $i; i=$((i+1)); done"
    with anyio.fail_after(30):
        result = await invoke_script(script, user(), N0)
    expected = b"".join(b"%04d\n" % i for i in range(4000))[-MAX_OUTPUT:]
    assert result.total_output == 20000
    assert result.output == expected
    assert "generated 20000 bytes of output, truncated to 8192" in caplog.text


async def test_script_that_ignores_a_large_stdin_does_not_hang() -> None:
    members = tuple(ClusterMember(f"node-{i}", "10.0.0.1", 1, {"role": "r"}) for i in range(20000))
    event = MemberEvent(EventType.MEMBER_JOIN, members)
    assert len(event_stdin(event)) > 256 * 1024  # more than a pipe buffer
    with anyio.fail_after(10):
        result = await invoke_script("echo ignored", event, N0)
    assert result.ok and result.output == b"ignored\n"


async def test_slow_script_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with anyio.fail_after(10):
        result = await invoke_script("sleep 1.3", user(), N0)
    assert result.ok and result.duration >= 1.0
    assert "Script 'sleep 1.3' slow, execution exceeding 1s" in caplog.text


async def test_timeout_stops_the_script_and_its_children(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 30 & echo $! > {pids}; echo started; wait"
    with anyio.fail_after(10):
        result = await invoke_script(script, user(), N0, timeout=0.5)
    assert result.timed_out and not result.ok
    assert result.output == b"started\n"
    child = int(pids.read_text())
    with anyio.fail_after(5):
        while _alive(child):
            await anyio.sleep(0.02)


async def test_background_child_holding_output_does_not_stall(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with anyio.fail_after(10):
        result = await invoke_script("sleep 3 & echo hi", user(), N0, drain_grace=0.2)
    assert result.ok and result.output == b"hi\n" and result.duration < 2
    assert "output is still open" in caplog.text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): look at its state.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# --------------------------------------------------------------------------- runner


async def run_events(
    runner: HandlerRunner,
    events: list[Event],
    respond: Callable[[QueryEvent, bytes], Awaitable[None]] | None = None,
    limit: float = 20,
) -> None:
    send, recv = anyio.create_memory_object_stream[Event](0)
    with anyio.fail_after(limit), recv:
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run, recv, respond)
            async with send:
                for event in events:
                    await send.send(event)


async def test_runner_runs_matching_scripts_in_order(tmp_path: Path) -> None:
    out = tmp_path / "log"
    specs = parse_handler_specs(
        [
            f'echo "all $SERF_EVENT" >> {out}',
            f'member-join,member-leave=echo "mem $SERF_EVENT" >> {out}',
            f'user:deploy=echo "deploy $SERF_USER_LTIME" >> {out}',
        ]
    )
    runner = HandlerRunner(specs, lambda: N0)
    events: list[Event] = [
        MemberEvent(EventType.MEMBER_JOIN, (N1,)),
        user("deploy", ltime=4),
        user("other", ltime=5),
        MemberEvent(EventType.MEMBER_FAILED, (N1,)),
        MemberEvent(EventType.MEMBER_LEAVE, (N1,)),
    ]
    await run_events(runner, events)
    assert out.read_text().splitlines() == [
        "all member-join",
        "mem member-join",
        "all user",
        "deploy 4",
        "all user",
        "all member-failed",
        "all member-leave",
        "mem member-leave",
    ]
    assert runner.invocations == 8 and runner.failures == 0 and runner.dropped == 0


async def test_slow_handler_never_blocks_the_sender(tmp_path: Path) -> None:
    out = tmp_path / "log"
    runner = HandlerRunner(
        parse_handler_specs([f"sleep 0.3; echo $SERF_USER_LTIME >> {out}"]), lambda: N0
    )
    send, recv = anyio.create_memory_object_stream[Event](0)
    with anyio.fail_after(20), recv:
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run, recv)
            start = anyio.current_time()
            async with send:
                for i in range(5):
                    await send.send(user(ltime=i))
            sent_in = anyio.current_time() - start
    assert sent_in < 0.2  # five 0.3 s scripts ran after the sender was long done
    assert out.read_text().split() == ["0", "1", "2", "3", "4"]


async def test_failing_handler_is_counted_and_later_events_still_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "log"
    specs = parse_handler_specs(["user:bad=exit 7", f"echo $SERF_USER_EVENT >> {out}"])
    runner = HandlerRunner(specs, lambda: N0)
    with caplog.at_level(logging.WARNING):
        await run_events(runner, [user("bad"), user("good")])
    assert out.read_text().split() == ["bad", "good"]
    assert runner.failures == 1 and runner.invocations == 3
    assert "exit status 7" in caplog.text


async def test_query_output_is_returned_to_respond_once() -> None:
    answers: list[tuple[str, bytes]] = []

    async def respond(q: QueryEvent, output: bytes) -> None:
        answers.append((q.name, output))

    specs = parse_handler_specs(
        [
            'query:ping=read p; echo "pong-from-$SERF_SELF_NAME:$p"',
            "query=echo second",
            "query:silent=true",
            "query:broken=echo partial; exit 1",
        ]
    )
    runner = HandlerRunner(specs, lambda: N0)
    events: list[Event] = [query("ping"), query("silent"), query("broken")]
    await run_events(runner, events, respond)
    # ping: first output wins; silent: no output, no response; broken: failed, no response
    # (Serf responds only when the script exits 0); "query=echo second" answers silent/broken.
    assert answers == [
        ("ping", b"pong-from-n0:hello\n"),
        ("silent", b"second\n"),
        ("broken", b"second\n"),
    ]
    assert runner.queries_answered == 3


async def test_respond_errors_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def respond(q: QueryEvent, output: bytes) -> None:
        raise RuntimeError("too large")

    runner = HandlerRunner(parse_handler_specs(["echo x"]), lambda: N0)
    await run_events(runner, [query(), query()], respond)
    assert caplog.text.count("Failed to respond to query 'ping': too large") == 2


async def test_queue_overflow_drops_the_oldest_and_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out, started, release = tmp_path / "log", tmp_path / "started", tmp_path / "release"
    script = (
        f"echo $SERF_USER_LTIME >> {out}; touch {started}; "
        f"i=0; while [ ! -e {release} ] && [ $i -lt 500 ]; do sleep 0.02; i=$((i+1)); done"
    )
    runner = HandlerRunner(parse_handler_specs(["*=" + script]), lambda: N0, max_queue=3)
    send, recv = anyio.create_memory_object_stream[Event](0)
    with anyio.fail_after(20), recv:
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run, recv)
            async with send:
                await send.send(user(ltime=0))
                while not started.exists():
                    await anyio.sleep(0.01)
                for i in range(1, 11):
                    await send.send(user(ltime=i))
                await anyio.wait_all_tasks_blocked()
                assert runner.queued == 3
                assert runner.dropped == 7
                release.touch()
    assert out.read_text().split() == ["0", "8", "9", "10"]
    assert caplog.text.count("dropping the oldest") == 1  # rate-limited


async def test_self_info_is_read_per_event_and_specs_can_be_reloaded(tmp_path: Path) -> None:
    out = tmp_path / "log"
    me = [N0]
    runner = HandlerRunner(parse_handler_specs([f"echo a $SERF_SELF_ROLE >> {out}"]), lambda: me[0])
    send, recv = anyio.create_memory_object_stream[Event](0)
    with anyio.fail_after(20), recv:
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run, recv)
            async with send:
                await send.send(user())
                while not out.exists():
                    await anyio.sleep(0.01)
                me[0] = ClusterMember("n0", "127.0.0.1", 1, {"role": "changed"})
                runner.update_specs(parse_handler_specs([f"echo b $SERF_SELF_ROLE >> {out}"]))
                await send.send(user())
    assert out.read_text().splitlines() == ["a balancer", "b changed"]


async def test_cancelling_the_runner_stops_the_running_script(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    runner = HandlerRunner(
        parse_handler_specs([f"echo $$ > {pid_file}; exec sleep 30"]), lambda: N0
    )
    send, recv = anyio.create_memory_object_stream[Event](1)
    with anyio.fail_after(10), send, recv:
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run, recv)
            await send.send(user())
            while not pid_file.exists() or not pid_file.read_text().strip():
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
        pid = int(pid_file.read_text())
        while _alive(pid):
            await anyio.sleep(0.02)


async def test_runner_timeout_counts(tmp_path: Path) -> None:
    runner = HandlerRunner(parse_handler_specs(["sleep 10"]), lambda: N0, timeout=0.2)
    await run_events(runner, [user()])
    assert runner.timeouts == 1 and runner.failures == 1


def test_runner_rejects_bad_options() -> None:
    with pytest.raises(ConfigError):
        HandlerRunner([], lambda: N0, max_queue=0)
    with pytest.raises(ConfigError):
        HandlerRunner([], lambda: N0, timeout=0)


async def test_events_without_matching_specs_start_nothing() -> None:
    runner = HandlerRunner(parse_handler_specs(["user:x=exit 1"]), lambda: N0)
    left = ClusterMember("n1", "127.0.0.1", 1, {}, status=MemberStatus.LEFT)
    await run_events(runner, [MemberEvent(EventType.MEMBER_LEAVE, (left,)), user("y")])
    assert runner.invocations == 0


async def test_a_failing_self_info_skips_the_event_not_the_runner(tmp_path: Path) -> None:
    out = tmp_path / "log"
    calls = [0]

    def self_info() -> ClusterMember:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("not ready")
        return N0

    runner = HandlerRunner(parse_handler_specs([f"echo $SERF_USER_LTIME >> {out}"]), self_info)
    await run_events(runner, [user(ltime=1), user(ltime=2)])
    assert out.read_text().split() == ["2"] and runner.failures == 1


async def test_run_is_single_use() -> None:
    runner = HandlerRunner([], lambda: N0)
    send, recv = anyio.create_memory_object_stream[Event](0)
    send.close()
    with anyio.fail_after(5), recv:
        await runner.run(recv)
        with pytest.raises(RuntimeError, match="only be called once"):
            await runner.run(recv)
