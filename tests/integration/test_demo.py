"""``make demo`` (scripts/demo.py) end to end: real HAProxy, lbadapter, agents, backends.

Checks what a user should see: traffic spread over s1..s3, s2 leaving and
HAProxy dropping it, s4 joining and taking traffic; that a missing haproxy is
a clear message and exit 2; and that nothing the demo started survives it,
including after Ctrl-C.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "scripts" / "demo.py"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
needs_haproxy = pytest.mark.skipif(not os.path.exists(HAPROXY),
                                   reason="haproxy is not installed (apt-get install haproxy)")

_SAMPLE = re.compile(r"^\d+ requests through HAProxy: (.*)$", re.M)


def samples(output: str) -> list[Counter[str]]:
    """Every ``N requests through HAProxy: s1=7  s2=7`` line, as counters."""
    out = []
    for line in _SAMPLE.findall(output):
        out.append(Counter({k: int(v) for k, v in (item.split("=") for item in line.split())}))
    return out


def leftovers(workdir: str) -> list[str]:
    """Processes naming the demo's work directory in their command line (lbadapter,
    HAProxy) or holding a file in it open (every child logs there)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            fds = [os.readlink(f"/proc/{entry}/fd/{fd}") for fd in os.listdir(f"/proc/{entry}/fd")]
        except OSError:
            continue
        if workdir in cmdline or any(fd.startswith(workdir) for fd in fds):
            found.append(f"{entry}: {cmdline}")
    return found


def run_demo(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(DEMO), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, check=False)


@needs_haproxy
@pytest.mark.slow
def test_demo_shows_traffic_following_membership(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = run_demo("--workdir", str(tmp_path))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert time.monotonic() - started < 90, "the demo should finish in about a minute"
    assert re.search(r"Stats page: http://127\.0\.0\.1:\d+/", output), output
    first, after_leave, after_join = samples(output)
    assert set(first) == {"s1", "s2", "s3"} and sum(first.values()) == 20, output
    assert set(after_leave) == {"s1", "s3"}, output
    assert set(after_join) == {"s1", "s3", "s4"}, output
    # HAProxy's own view, from the stats CSV, after s4 joined.
    table = output.split("Starting s4")[1]
    assert re.search(r"^\s+s4\s+UP\s", table, re.M), output
    assert not re.search(r"^\s+s2\s+UP\s", table, re.M), output
    assert "s2: UP -> DRAIN" in output, output
    assert leftovers(str(tmp_path)) == []


@needs_haproxy
@pytest.mark.slow
def test_demo_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, str(DEMO), "--workdir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=REPO, start_new_session=True)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # ends at EOF; bounded by the demo's own waits
            lines.append(line)
            if line.startswith("Starting backends"):
                time.sleep(0.5)  # let it start a few processes
                os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C sends
                break
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    output = "".join(lines) + rest
    assert proc.returncode == 130, output
    assert "interrupted" in output, output
    assert leftovers(str(tmp_path)) == [], output


def test_demo_without_haproxy_says_how_to_get_it() -> None:
    proc = run_demo("--haproxy", "/nonexistent/haproxy", timeout=60)
    assert proc.returncode == 2
    assert "sudo apt-get install haproxy" in proc.stderr
