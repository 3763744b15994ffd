import base64
import socket
import subprocess
import sys

import pytest

from swimlib.cli import main


def test_keygen_prints_a_fresh_32_byte_key(capsys):
    main(["keygen"])
    first = capsys.readouterr().out.strip()
    main(["keygen"])
    second = capsys.readouterr().out.strip()
    assert len(base64.b64decode(first)) == 32
    assert first != second


def test_unknown_command_is_a_usage_error_not_a_crash():
    proc = subprocess.run([sys.executable, "-m", "swimlib.cli", "frobnicate"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


def _agent_settings(*flags: str):
    from swimlib.agent.command import _Settings
    from swimlib.cli import build_parser

    return _Settings.from_args(build_parser().parse_args(["agent", "--node", "a", *flags]))


def test_agent_profile_and_disable_compression_flags_reach_the_config():
    default = _agent_settings().config
    assert default.profile == "lan" and default.enable_compression
    assert not default.compress_datagrams
    wan = _agent_settings("--profile", "wan", "--disable-compression").config
    assert wan.profile == "wan" and wan.probe_interval == 5.0
    assert not wan.enable_compression


def _go_settings(*flags: str):
    from swimlib.agent.command import _Settings
    from swimlib.cli import parse_agent_args

    return _Settings.from_args(parse_agent_args(["agent", *flags]))


def test_serf_command_lines_parse_in_go_spelling():
    """A command line from serf's documentation, unchanged."""
    s = _go_settings("-node=web-1", "-bind=127.0.0.1:7946", "-join=ha", "-join", "ha2:7946",
                     "-rpc-addr=127.0.0.1:7373", "-tag", "dc=east", "-tag=zone=a", "-role=web",
                     "-replay", "-disable-compression=true", "-broadcast-timeout=2500ms",
                     "-profile=wan", "-event-handler=member-join=join.sh",
                     "-retry-join=10.0.0.1", "-retry-interval=1m30s", "-retry-max=3")
    assert (s.name, s.bind, s.rpc) == ("web-1", ("127.0.0.1", 7946), ("127.0.0.1", 7373))
    assert s.join == ["ha", "ha2:7946"] and s.replay
    assert s.tags == {"dc": "east", "zone": "a", "role": "web"}
    assert s.config.profile == "wan" and not s.config.enable_compression
    assert s.config.broadcast_timeout == 2.5
    assert [h.event for h in s.handlers] == ["member-join"]
    assert (s.retry_join, s.retry_interval, s.retry_max) == (["10.0.0.1"], 90.0, 3)
    # The GNU spellings still work, and Go's explicit false turns a switch off.
    s = _go_settings("--node", "a", "--replay", "-replay=false", "-rejoin", "-snapshot=s")
    assert not s.replay and s.config.broadcast_timeout == 5.0 and s.retry_interval == 30.0
    assert s.rejoin and s.snapshot == "s"


def test_tags_too_big_for_the_node_meta_are_a_clear_error_not_a_traceback():
    proc = subprocess.run([sys.executable, "-m", "swimlib.cli", "agent", "-node=a",
                           "-tag", "big=" + "x" * 2000],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("==> Error: tags: encoded tags are 2009 bytes; the limit is 512")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("flag", ["-retry-interval=soon", "-broadcast-timeout=5 s"])
def test_a_bad_duration_is_a_clear_error(flag):
    from swimlib.errors import ConfigError

    name, _, value = flag.partition("=")
    with pytest.raises(ConfigError, match=f"{name}: invalid duration {value!r}"):
        _go_settings("-node=a", flag)


def test_durations_below_serfs_floor_are_raised_with_a_warning(capsys):
    s = _go_settings("-node=a", "-retry-interval=100ms", "-broadcast-timeout=500ms",
                     "-retry-max=-1")
    assert (s.retry_interval, s.config.broadcast_timeout, s.retry_max) == (1.0, 1.0, 0)
    # A zero is "not set" in serf's merge: the default stays.
    assert _go_settings("-node=a", "-broadcast-timeout=0s").config.broadcast_timeout == 5.0
    out = capsys.readouterr().out
    assert "==> Warning: 'RetryInterval' is too low. Setting to 1s" in out
    assert "==> Warning: 'BroadcastTimeout' is too low. Setting to 1s" in out


def test_a_bad_go_boolean_or_unknown_flag_is_a_usage_error():
    for flags, expected in ((["-replay=maybe"], 'invalid boolean value "maybe" for -replay'),
                            (["-no-such-flag=1"], "unrecognized arguments")):
        proc = subprocess.run([sys.executable, "-m", "swimlib.cli", "agent", "-node=a", *flags],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and expected in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ports_in_use_are_a_clear_error_not_a_traceback(backend):
    from swimlib.testing import free_port

    for taken in ("gossip", "rpc"):
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", free_port()))
            holder.listen()
            busy = holder.getsockname()[1]
            gossip = busy if taken == "gossip" else free_port()
            rpc = busy if taken == "rpc" else free_port()
            proc = subprocess.run(
                [sys.executable, "-m", "swimlib.cli", "agent", "--node", "a", "--backend", backend,
                 "--bind", f"127.0.0.1:{gossip}", "--rpc-addr", f"127.0.0.1:{rpc}"],
                capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.startswith("==> Error:") and "in use" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_an_unknown_backend_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("SWIMLIB_BACKEND", "gevent")
    proc = subprocess.run([sys.executable, "-m", "swimlib.cli", "agent", "--node", "a"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr == ("==> Error: SWIMLIB_BACKEND='gevent': must be one of asyncio, "
                           "trio (unset: asyncio)\n")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sigterm_right_after_the_banner_is_a_graceful_exit(backend):
    """The signal receiver is in place before the banner: a supervisor stopping the agent
    at once gets a leave and exit code 0, not the default SIGTERM death (-15)."""
    import signal

    from swimlib.testing import free_port, stop_process

    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-m", "swimlib.cli", "agent", "--node", "a", "--backend", backend,
             "--bind", f"127.0.0.1:{free_port()}", "--rpc-addr", f"127.0.0.1:{free_port()}"],
            stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:  # bounded by the process's output
                if "agent running" in line:
                    break
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            stop_process(proc, timeout=10)
