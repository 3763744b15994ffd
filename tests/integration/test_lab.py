"""The namespace lab (``make lab`` / ``lab-add`` / ``lab-stop`` / ``lab-down``) end to end.

Needs Linux, root and permission to create network namespaces; skipped
otherwise, with the reason. It never touches a lab someone already has up
(skipped then too), and always tears down what it brought up.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "scripts" / "lab.py"
HA = "http://10.231.0.2"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _why_not() -> str | None:
    """Why the lab cannot run here, or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "the lab creates network namespaces: needs root"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is missing"
    if not os.path.exists(HAPROXY):
        return "haproxy is not installed (apt-get install haproxy)"
    probe = f"swlab-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True,
                          timeout=20, check=False)
    if made.returncode != 0:
        return f"`ip netns add` is not permitted here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=20, check=False)
    if subprocess.run(["ip", "link", "show", "swlab0"], capture_output=True, timeout=20,
                      check=False).returncode == 0:
        return "a lab is already up (bridge swlab0); `make lab-down` first"
    return None


def lab(*args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    """What ``make lab*`` runs."""
    return subprocess.run([sys.executable, str(LAB), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, check=False)


def through_ha(count: int = 20) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(count):
        try:
            with _OPENER.open(f"{HA}/", timeout=2.0) as resp:
                seen[resp.read().decode().strip()] += 1
        except (urllib.error.URLError, OSError):
            seen["error"] += 1
    return seen


def wait_backends(want: set[str], timeout: float = 30.0) -> Counter[str]:
    deadline = time.monotonic() + timeout
    seen: Counter[str] = Counter()
    while time.monotonic() < deadline:
        seen = through_ha()
        if set(seen) == want:
            return seen
        time.sleep(0.5)
    raise AssertionError(f"through ha: {dict(seen)}, wanted exactly {sorted(want)}")


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=20,
                         check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


@pytest.fixture
def lab_up() -> Iterator[subprocess.CompletedProcess[str]]:
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    try:
        yield lab("up")
    finally:
        lab("down")


@pytest.mark.slow
def test_lab_up_add_stop_down(lab_up: subprocess.CompletedProcess[str]) -> None:
    up = lab_up
    assert up.returncode == 0, up.stdout + up.stderr
    assert {"ha", "s1", "s2"} <= namespaces()
    assert set(through_ha()) == {"s1", "s2"}
    stats = _OPENER.open(f"{HA}:1936/;csv;norefresh", timeout=5).read().decode()
    assert "\napp,s1," in stats and "\napp,s2," in stats, stats

    again = lab("up")  # idempotent
    assert again.returncode == 0, again.stdout + again.stderr

    added = lab("add")
    assert added.returncode == 0, added.stdout + added.stderr
    assert "added s3" in added.stdout and "s3=" in added.stdout, added.stdout
    wait_backends({"s1", "s2", "s3"})
    hosts = Path("/etc/netns/s3/hosts").read_text().splitlines()  # `--join ha` resolves
    assert hosts.count("10.231.0.2 ha") == 1 and hosts.count("10.231.0.13 s3") == 1, hosts

    stopped = lab("stop", "s2")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "s2 agent: stopped" in stopped.stdout, stopped.stdout
    wait_backends({"s1", "s3"})

    down = lab("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not namespaces() & {"ha", "s1", "s2", "s3"}
    assert subprocess.run(["ip", "link", "show", "swlab0"], capture_output=True, timeout=20,
                          check=False).returncode != 0
    assert not any(Path("/etc/netns", n).exists() for n in ("ha", "s1", "s2", "s3"))
    again = lab("down")  # idempotent too
    assert again.returncode == 0 and "nothing" in again.stdout, again.stdout


@pytest.mark.slow
def test_lab_with_two_balancers_survives_the_active_one_dying() -> None:
    """``make lab BALANCERS=2`` and ``make lab-kill NODE=<active>`` (docs/lab.md, section 7)."""
    reason = _why_not()
    if reason is None and shutil.which("keepalived") is None \
            and not os.path.exists("/usr/sbin/keepalived"):
        reason = "keepalived is not installed (apt-get install keepalived)"
    if reason:
        pytest.skip(reason)
    try:
        up = lab("up", "--balancers", "2")
        assert up.returncode == 0, up.stdout + up.stderr
        match = re.search(r"floating address 10\.231\.0\.2 \(name ha\) held by (ha[12])\n",
                          up.stdout)
        assert match, up.stdout
        active = match.group(1)
        standby = "ha2" if active == "ha1" else "ha1"
        assert {"ha1", "ha2", "s1", "s2"} <= namespaces() and "ha" not in namespaces()
        assert set(through_ha()) == {"s1", "s2"}  # through the floating address
        hosts = Path("/etc/netns/s1/hosts").read_text().splitlines()
        assert "10.231.0.2 ha" in hosts and "10.231.0.3 ha1" in hosts, hosts

        killed = lab("kill", active)
        assert killed.returncode == 0, killed.stdout + killed.stderr
        moved = re.search(r"answered again ([0-9.]+) s after the kill, now held by (ha[12])",
                          killed.stdout)
        assert moved and moved.group(2) == standby, killed.stdout
        assert float(moved.group(1)) <= 3.0, killed.stdout
        wait_backends({"s1", "s2"})

        back = lab("up")  # the dead balancer comes back as the standby: no second move
        assert back.returncode == 0, back.stdout + back.stderr
        assert f"held by {standby}\n" in back.stdout, back.stdout
        mixed = lab("up", "--balancers", "1")
        assert mixed.returncode == 1 and "make lab-down" in mixed.stderr, mixed.stderr
    finally:
        down = lab("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not namespaces() & {"ha1", "ha2", "s1", "s2"}
