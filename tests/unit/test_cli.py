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
