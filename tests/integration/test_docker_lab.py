"""The lab in containers (Dockerfile, docker-compose.yml) end to end, as the original was.

The test starts its own Docker daemon (scripts/docker_lab.py: its own data
root under /var/tmp, no iptables rules, no IP forwarding, no default bridge),
builds the base image (mmdebstrap + pip wheels) and the lab image, brings up
``ha``, ``s1``, ``s2`` with docker-compose, adds ``s3`` with ``--scale s=3``,
stops ``s2`` with ``docker stop``, and checks at each step that HAProxy's
stats CSV lists exactly the running backends, UP, and that requests through
``ha`` reach exactly them. Then ``docker-compose down``, dockerd stopped by
PID (SIGKILL and leftover containerd/shims by PID if it does not stop), its
data root removed, and the bridge checked gone.

It uses its own project name, bridge and subnet (10.233.0.0/24, next to the
namespace lab's 10.231.0.0/24), so a lab someone has up is never touched.
Skipped, with the reason, where no daemon can run: not Linux, not root,
docker.io / docker-compose / mmdebstrap missing (``make test`` installs them
as root), or dockerd refusing to start. Set SWIMLIB_DOCKER_CACHE=DIR to keep
the base tarball between runs (it is rebuilt when its recipe changes), and
SWIMLIB_DOCKER_STORAGE=vfs to skip overlay2 (tried first, vfs if it fails).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from swimlib.testing import free_port
from tests.integration.procs import wait_for

REPO = Path(__file__).resolve().parents[2]
PROJECT = "swlabtest"
BRIDGE = "swdocktest0"
SUBNET = "10.233.0.0/24"
HA_IP = "10.233.0.2"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _load_docker_lab() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docker_lab", REPO / "scripts" / "docker_lab.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["docker_lab"] = module
    spec.loader.exec_module(module)
    return module


dl = _load_docker_lab()


def _why_not() -> str | None:
    if not sys.platform.startswith("linux"):
        return "Docker needs Linux"
    if os.geteuid() != 0:
        return "starting a Docker daemon needs root"
    missing = [p for p in ("dockerd", "docker", "docker-compose", "mmdebstrap")
               if shutil.which(p) is None]
    if missing:
        return (f"{', '.join(missing)} not installed (apt-get install docker.io docker-compose "
                "mmdebstrap; make test installs them as root)")
    if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True, timeout=20,
                      check=False).returncode == 0:
        return f"bridge {BRIDGE} exists: a container lab test is running or left it"
    nf_call = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    forward = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True,
                             timeout=20, check=False).stdout
    if "-P FORWARD DROP" in forward and nf_call.exists() and nf_call.read_text().strip() == "1":
        return ("iptables' FORWARD policy is DROP (a Docker service?) and bridged traffic "
                "goes through it: containers on the test's bridge could not talk")
    return None


class Lab:
    """The private daemon and the compose project of one test run."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.stats_port = free_port()
        self.http_port = free_port()
        self.env = {**os.environ, "DOCKER_HOST": dl.docker_host(root),
                    "COMPOSE_PROJECT_NAME": PROJECT, "LAB_BRIDGE": BRIDGE,
                    "LAB_SUBNET": SUBNET, "LAB_HA_IP": HA_IP,
                    "LAB_HTTP_PORT": str(self.http_port),
                    "LAB_STATS_PORT": str(self.stats_port)}
        self.timings: dict[str, float] = {}

    def run(self, *argv: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        """docker / docker-compose against our daemon (bounded); fails the test on error."""
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              cwd=REPO, env=self.env, stdin=subprocess.DEVNULL, check=False)
        assert proc.returncode == 0, f"{' '.join(argv)}: {proc.stdout}{proc.stderr}"
        return proc

    def compose(self, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        return self.run("docker-compose", *args, timeout=timeout)

    def timed(self, name: str, start: float) -> None:
        self.timings[name] = round(time.monotonic() - start, 1)


def get(url: str, timeout: float = 2.0) -> str | None:
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            body: bytes = resp.read()
            return body.decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return None


def servers(stats: str) -> dict[str, str] | None:
    """HAProxy's servers in backend ``app`` and their status, from the stats CSV."""
    page = get(f"{stats}/;csv;norefresh")
    if page is None or not page.startswith("# "):
        return None
    rows = csv.DictReader(page[2:].splitlines())
    return {r["svname"]: r["status"] for r in rows
            if r["pxname"] == "app" and r["svname"] not in ("BACKEND", "FRONTEND")}


def through_ha(count: int = 12) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(count):
        body = get(f"http://{HA_IP}/")
        seen[body.strip() if body is not None else "error"] += 1
    return seen


def follows(want: set[str], timeout: float = 60.0) -> dict[str, str]:
    """Until HAProxy lists exactly ``want``, all UP, and requests reach exactly them."""
    def settled() -> dict[str, str] | None:
        view = servers(f"http://{HA_IP}:1936")
        if view != dict.fromkeys(want, "UP"):
            return None
        return view if set(through_ha()) == want else None
    found: dict[str, str] = wait_for(settled, timeout, interval=0.3,
                                     what=f"HAProxy to serve exactly {sorted(want)}")
    return found


@pytest.fixture
def lab() -> Iterator[Lab]:
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    dirs_before = dl.host_dirs()
    root = Path(tempfile.mkdtemp(prefix="swdock-", dir="/var/tmp"))
    t0 = time.monotonic()
    try:
        drivers = os.environ.get("SWIMLIB_DOCKER_STORAGE", ",".join(dl.STORAGE_DRIVERS))
        daemon, driver = dl.start_daemon(root, drivers.split(","))
    except dl.DockerLabError as exc:
        dl.clear(root)
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"no Docker daemon can run here: {exc}")
    lab = Lab(root)
    lab.timed(f"dockerd up ({driver})", t0)
    try:
        yield lab
    finally:
        t1 = time.monotonic()
        subprocess.run(["docker-compose", "down", "--timeout", "20"], capture_output=True,
                       timeout=120, cwd=REPO, env=lab.env, stdin=subprocess.DEVNULL,
                       check=False)
        extra = dl.stop_daemon(daemon, root)
        dl.remove_host_dirs(dirs_before)
        lab.timed("down + dockerd stopped", t1)
        print(f"\ncontainer lab timings (s): {json.dumps(lab.timings)}"
              + (f"\ncleanup had to: {extra}" if extra else ""))
        assert not root.exists(), f"{root} left behind"
        left = [str(d) for d in dl.host_dirs() if d not in dirs_before]
        assert not left, f"left behind: {left}"
        assert subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True, timeout=20,
                              check=False).returncode != 0, f"bridge {BRIDGE} left behind"
        assert daemon.poll() is not None
        assert not extra, f"the daemon did not stop cleanly: {extra}"


@pytest.mark.slow
def test_container_lab_follows_scale_and_stop(lab: Lab) -> None:
    t = time.monotonic()
    notes: list[str] = []
    cache = os.environ.get("SWIMLIB_DOCKER_CACHE")
    dl.build_base(cache=Path(cache) if cache else None, log=notes,
                  docker=("docker", "-H", dl.docker_host(lab.root)))
    lab.timed("base image", t)
    print("\n" + "\n".join(notes))

    t = time.monotonic()
    lab.compose("build", timeout=600)
    lab.timed("compose build", t)

    # 1. ha, s1, s2 (scale: 2 in the compose file)
    t = time.monotonic()
    lab.compose("up", "-d")
    assert follows({"s1", "s2"}, timeout=90) == {"s1": "UP", "s2": "UP"}
    lab.timed("up: ha s1 s2 serving", t)
    names = lab.run("docker", "ps", "--format", "{{.Names}}").stdout.split()
    assert sorted(names) == [f"{PROJECT}_ha_1", f"{PROJECT}_s_1", f"{PROJECT}_s_2"], names
    # the same view through the published port, as a browser on the host sees it
    assert servers(f"http://127.0.0.1:{lab.stats_port}") == {"s1": "UP", "s2": "UP"}
    assert get(f"http://127.0.0.1:{lab.http_port}/") in ("s1\n", "s2\n")

    # 2. scale out: s3 joins through the name ha, HAProxy adds it
    t = time.monotonic()
    lab.compose("up", "-d", "--scale", "s=3")
    follows({"s1", "s2", "s3"})
    lab.timed("scale s=3: s3 serving", t)

    # 3. docker stop s2: its agent leaves first, then the app stops; HAProxy drops s2
    t = time.monotonic()
    lab.run("docker", "stop", "--time", "20", f"{PROJECT}_s_2")
    follows({"s1", "s3"})
    lab.timed("docker stop s2: s2 gone", t)
    state = json.loads(lab.run("docker", "inspect", f"{PROJECT}_s_2").stdout)[0]["State"]
    out = lab.run("docker", "logs", f"{PROJECT}_s_2")
    logs = out.stdout + out.stderr
    assert state["ExitCode"] == 0, logs
    assert "Gracefully shutting down agent" in logs and "agent exited 0, app exited 0" in logs
    members = lab.run("docker", "exec", f"{PROJECT}_ha_1", "swimlib", "members").stdout
    status = {line.split()[0]: line.split()[2] for line in members.splitlines() if line.strip()}
    assert status == {"ha": "alive", "s1": "alive", "s2": "left", "s3": "alive"}, members

    # 4. down: every container and the network (its bridge) go
    t = time.monotonic()
    lab.compose("down", "--timeout", "20")
    assert lab.run("docker", "ps", "-aq").stdout.strip() == ""
    assert subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True, timeout=20,
                          check=False).returncode != 0
    lab.timed("compose down", t)
