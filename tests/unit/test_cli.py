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
