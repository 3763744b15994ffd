import base64
import subprocess
import sys

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
