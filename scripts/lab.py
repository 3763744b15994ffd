#!/usr/bin/env python3
"""The original Docker lab (``ha`` balancer + ``s1``/``s2`` backends) on network namespaces.

Why namespaces: they give each node its own IP, its own port 80/3000/7946
and its own ``/etc/hosts`` (``--join ha`` resolves) without Docker, so the
lab runs on any Linux box where we are root. Nothing leaves the machine:
the nodes sit on a private bridge (``swlab0``, 10.231.0.0/24), the host
gets 10.231.0.1 on it so ``curl http://10.231.0.2/`` reaches ``ha``.

Commands (``make lab [BALANCERS=2]``, ``make lab-add``, ``make lab-stop NODE=s2``,
``make lab-kill NODE=ha1``, ``make lab-down``)::

    python scripts/lab.py up [--balancers 2]  # bridge, ha (or ha1 + ha2), s1, s2; idempotent
    python scripts/lab.py add         # next free sN (s3, s4, ...)
    python scripts/lab.py stop NODE   # graceful: SIGTERM the agent (leave), then the app
    python scripts/lab.py kill NODE   # the host dies: cable pulled, every process SIGKILLed
    python scripts/lab.py status      # nodes, PIDs, what curl through ha sees
    python scripts/lab.py down        # stop everything, delete namespaces, bridge, /etc/netns

With two balancers, ``ha1`` (10.231.0.3) and ``ha2`` (10.231.0.4) run
``lbadapter run --vip 10.231.0.2/24 --vip-interface eth0``: ``ha``'s address
becomes a floating one, held by whichever balancer keepalived elected, so
``curl http://10.231.0.2/`` works the same in both layouts.

Every process is started with its PID (and start time, so a reused PID is
never mistaken for it) written under the state directory
(``/run/swimlib-lab``, or ``$LAB_STATE_DIR``), and stopped by that PID. Every wait is bounded.
Standard library only, so ``lab-down`` works even without the virtualenv.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("LAB_STATE_DIR", "/run/swimlib-lab"))
BRIDGE = "swlab0"
NET = "10.231.0"  # /24, private, only on the bridge
HOST_IP = f"{NET}.1"
NETNS_ETC = Path("/etc/netns")
MARKER = "# swimlib lab"
GOSSIP_PORT = 7946
APP_PORT = 3000
#: Seconds a graceful stop may take before SIGKILL (an agent's leave takes ~1-2 s).
STOP_TIMEOUT = 10.0
NODE_RE = re.compile(r"^(ha[12]?|s[0-9]{1,2})$")
#: With two balancers, ``ha``'s address floats between them (keepalived, lbadapter --vip).
VIP = f"{NET}.2"


class LabError(Exception):
    """A step failed; the message says which and how to recover."""


def node_ip(node: str) -> str:
    """ha -> .2 (the VIP with two balancers), ha1 -> .3, ha2 -> .4, sN -> .(10+N)."""
    if node == "ha":
        return f"{NET}.2"
    if is_balancer(node):
        return f"{NET}.{2 + int(node[2:])}"
    return f"{NET}.{10 + int(node[1:])}"


def is_balancer(node: str) -> bool:
    return node.startswith("ha")


def node_order(node: str) -> tuple[bool, int]:
    """Balancers first, then s1, s2, ... s10 (numeric, not text, order)."""
    if is_balancer(node):
        return (False, int(node[2:] or 0))
    return (True, int(node[1:]))


def balancer_nodes(count: int) -> list[str]:
    return ["ha"] if count == 1 else [f"ha{i}" for i in range(1, count + 1)]


def lab_balancers() -> int:
    """How many balancers the lab that is up has (recorded by ``up``), 0 if none."""
    try:
        return int((STATE / "balancers").read_text())
    except (OSError, ValueError):
        nodes = lab_nodes()
        return 2 if "ha1" in nodes else 1 if "ha" in nodes else 0


def veth_name(node: str) -> str:
    return f"swl-{node}"


def sh(*argv: str, check: bool = True, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run a short command (bounded); raise LabError with its stderr when it fails."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


# ----------------------------------------------------------------- network


def namespaces() -> set[str]:
    out = sh("ip", "netns", "list", check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def lab_nodes() -> list[str]:
    """Nodes of this lab: recorded in the state dir or marked in /etc/netns (state lost)."""
    found: set[str] = set()
    if (STATE / "nodes").is_dir():
        found |= {p.name for p in (STATE / "nodes").iterdir() if NODE_RE.match(p.name)}
    if NETNS_ETC.is_dir():
        for d in NETNS_ETC.iterdir():
            hosts = d / "hosts"
            if NODE_RE.match(d.name) and hosts.exists() and MARKER in hosts.read_text():
                found.add(d.name)
    return sorted(found, key=node_order)


def ensure_bridge() -> None:
    if sh("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
    addrs = sh("ip", "-o", "-4", "addr", "show", "dev", BRIDGE).stdout
    if f"{HOST_IP}/24" not in addrs:
        sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", BRIDGE)
    sh("ip", "link", "set", BRIDGE, "up")


def write_hosts(nodes: list[str]) -> None:
    """/etc/netns/<ns>/hosts for every node, written in place so running processes see it."""
    lines = [MARKER, "127.0.0.1 localhost", f"{HOST_IP} host"]
    if "ha" not in nodes:
        lines.append(f"{VIP} ha")  # the floating address
    lines += [f"{node_ip(n)} {n}" for n in nodes]
    text = "\n".join(lines) + "\n"
    for n in nodes:
        d = NETNS_ETC / n
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "hosts", "w") as f:  # same inode: bind mounts keep showing it
            f.write(text)


def ensure_netns(node: str) -> None:
    """Namespace + veth on the bridge + address; each step skipped when already done."""
    if node not in namespaces():
        sh("ip", "netns", "add", node)
    inside = ("ip", "netns", "exec", node)
    if sh(*inside, "ip", "link", "show", "eth0", check=False).returncode != 0:
        veth = veth_name(node)
        sh("ip", "link", "del", veth, check=False)  # a half-made pair from an earlier failure
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", node)
        sh("ip", "link", "set", veth, "master", BRIDGE)
        sh("ip", "link", "set", veth, "up")
    addrs = sh(*inside, "ip", "-o", "-4", "addr", "show", "dev", "eth0").stdout
    if node in ("ha1", "ha2") and f"{VIP}/24" in addrs and running_pid(node, "lbadapter") is None:
        # left by a killed keepalived: it would answer for the VIP as soon as plugged in
        sh(*inside, "ip", "addr", "del", f"{VIP}/24", "dev", "eth0")
    sh("ip", "link", "set", veth_name(node), "up")  # plugs a cable `lab kill` pulled
    if f"{node_ip(node)}/24" not in addrs:
        sh(*inside, "ip", "addr", "add", f"{node_ip(node)}/24", "dev", "eth0")
    sh(*inside, "ip", "link", "set", "eth0", "up")
    sh(*inside, "ip", "link", "set", "lo", "up")
    (STATE / "nodes" / node).mkdir(parents=True, exist_ok=True)


# --------------------------------------------------------------- processes


def pid_file(node: str, proc: str) -> Path:
    return STATE / "nodes" / node / f"{proc}.pid"


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22).

    Set at fork and kept across exec, so PID + start time names one process
    for its whole life, unlike the command line, which changes at exec.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if len(fields) > 19 and fields[0] != "Z" else None


def running_pid(node: str, proc: str) -> int | None:
    """The PID in the file if that very process (same start time) is still alive."""
    try:
        pid_text, started = pid_file(node, proc).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if start_time(pid) == started else None


def start(node: str, proc: str, argv: list[str]) -> int:
    """Start ``argv`` inside the node's namespace, detached, log and PID under the state dir."""
    pid = running_pid(node, proc)
    if pid is not None:
        return pid
    log = STATE / "nodes" / node / f"{proc}.log"
    from swimlib.testing import spawn  # the repository's process rules (own session, log)

    p = spawn(["ip", "netns", "exec", node, *argv], log=log, cwd=REPO, append=True,
              env={"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})
    # `ip netns exec` execs the command, so this PID is the python process itself.
    pid_file(node, proc).write_text(f"{p.pid} {start_time(p.pid)}\n")
    return p.pid


def wait_gone(pid: int, started: str | None, timeout: float) -> bool:
    """Until process ``pid`` with start time ``started`` is gone (or a zombie); bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it was our child
        if start_time(pid) != started:
            return True
        time.sleep(0.05)
    return False


def stop_proc(node: str, proc: str, timeout: float = STOP_TIMEOUT) -> str:
    """SIGTERM by PID, SIGKILL after ``timeout``; returns what happened."""
    pid = running_pid(node, proc)
    pid_file(node, proc).unlink(missing_ok=True)
    if pid is None:
        return "not running"
    started = start_time(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_gone(pid, started, timeout):
        return f"stopped (pid {pid})"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_gone(pid, started, 5.0)
    return f"killed after {timeout:.0f}s (pid {pid})"


def kill_leftovers(node: str) -> list[int]:
    """SIGKILL processes still in the namespace (HAProxy if lbadapter died), by PID."""
    if node not in namespaces():
        return []
    pids = [int(p) for p in sh("ip", "netns", "pids", node, check=False).stdout.split()]
    started = {pid: start_time(pid) for pid in pids}
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        wait_gone(pid, started[pid], 5.0)
    return pids


def start_node(node: str) -> None:
    py, ip = python(), node_ip(node)
    if is_balancer(node):
        argv = [py, "-m", "lbadapter.cli", "run", "--node", node,
                "--bind", f"{ip}:{GOSSIP_PORT}", "--rpc-addr", "127.0.0.1:7373",
                "--backend-tag", "role=backend", "--backend-port", str(APP_PORT),
                "--listen", "0.0.0.0:80", "--stats", "0.0.0.0:1936",
                "--state-dir", str(STATE / "nodes" / node / "lbadapter")]
        if node != "ha":  # one of two: they join each other and share ha's address
            argv += ["--join", "ha2" if node == "ha1" else "ha1",
                     "--vip", f"{VIP}/24", "--vip-interface", "eth0"]
        start(node, "lbadapter", argv)
        return
    start(node, "app", [py, "-m", "lbadapter.backend_app", "--name", node,
                        "--listen", f"0.0.0.0:{APP_PORT}"])
    joins = [arg for b in balancer_nodes(lab_balancers() or 1) for arg in ("--join", b)]
    start(node, "agent", [py, "-m", "swimlib.cli", "agent", "--node", node,
                          "--bind", f"{ip}:{GOSSIP_PORT}", "--rpc-addr", "127.0.0.1:7373",
                          "--tag", "role=backend", *joins])


def stop_node(node: str) -> list[str]:
    """Graceful: the agent leaves first (HAProxy drains the server), then the app stops."""
    if is_balancer(node):
        return [f"{node} lbadapter: {stop_proc(node, 'lbadapter', 20.0)}"]
    return [f"{node} agent: {stop_proc(node, 'agent')}",
            f"{node} app: {stop_proc(node, 'app')}"]


# --------------------------------------------------------------- checking


#: Lab addresses are local: never go through an http_proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout: float = 2.0) -> str | None:
    try:
        with OPENER.open(url, timeout=timeout) as resp:
            body: bytes = resp.read()
            return body.decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return None


def sample(count: int = 20) -> Counter[str]:
    """Which backend answered each of ``count`` requests through ha (no proxy, new connections)."""
    seen: Counter[str] = Counter()
    for _ in range(count):
        body = http_get(f"http://{node_ip('ha')}/")
        seen[body.strip() if body is not None else "error"] += 1
    return seen


def wait_backends(want: set[str], timeout: float) -> Counter[str]:
    """Until requests through ha are answered by exactly ``want`` (bounded)."""
    deadline = time.monotonic() + timeout
    seen: Counter[str] = Counter()
    while time.monotonic() < deadline:
        seen = sample(max(12, 4 * len(want)))
        if set(seen) == want:
            return seen
        time.sleep(0.5)
    raise LabError(f"after {timeout:.0f}s requests through ha reached {dict(seen)}, "
                   f"expected exactly {sorted(want)}; logs in {STATE}/nodes/*/")


def running_backends() -> set[str]:
    return {n for n in lab_nodes() if not is_balancer(n) and running_pid(n, "app") is not None
            and running_pid(n, "agent") is not None}


def show(seen: Counter[str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(seen.items()))


# --------------------------------------------------------------- commands


def vip_holder() -> str | None:
    """The balancer whose eth0 carries the VIP (a killed one, unplugged, does not count)."""
    for node in ("ha1", "ha2"):
        if node not in namespaces() or running_pid(node, "lbadapter") is None:
            continue
        addrs = sh("ip", "-n", node, "-o", "-4", "addr", "show", "dev", "eth0",
                   check=False).stdout
        if f"{VIP}/24" in addrs:
            return node
    return None


def preflight(balancers: int = 1) -> None:
    if not sys.platform.startswith("linux"):
        raise LabError("the lab needs Linux network namespaces")
    if os.geteuid() != 0:
        raise LabError("the lab creates network namespaces: run it as root (sudo make lab)")
    if shutil.which("ip") is None:
        raise LabError("`ip` is missing: sudo apt-get install iproute2")
    if shutil.which("haproxy") is None:
        raise LabError("haproxy is missing: sudo apt-get install haproxy")
    if balancers > 1 and shutil.which("keepalived") is None \
            and not os.path.exists("/usr/sbin/keepalived"):
        raise LabError("two balancers share their address through keepalived: "
                       "sudo apt-get install keepalived")


def cmd_up(args: argparse.Namespace) -> int:
    up = lab_balancers()
    count = args.balancers or up or 1
    if up and count != up:
        raise LabError(f"a lab with {up} balancer(s) is up: `make lab-down` first")
    preflight(count)
    balancers = balancer_nodes(count)
    nodes = sorted(set(lab_nodes()) | {*balancers, "s1", "s2"}, key=node_order)
    ensure_bridge()
    (STATE / "nodes").mkdir(parents=True, exist_ok=True)
    (STATE / "balancers").write_text(f"{count}\n")
    write_hosts(nodes)
    for node in nodes:
        ensure_netns(node)
    for node in (*balancers, "s1", "s2"):
        start_node(node)
    for node in balancers:
        stats = f"http://{node_ip(node)}:1936/;csv;norefresh"
        deadline = time.monotonic() + 30.0
        while http_get(stats, 1.0) is None:
            if running_pid(node, "lbadapter") is None or time.monotonic() > deadline:
                raise LabError(f"{node} did not come up; see {STATE}/nodes/{node}/lbadapter.log")
            time.sleep(0.3)
    wait_backends(running_backends() | {"s1", "s2"}, 45.0)
    print(f"lab up: nodes {', '.join(nodes)} on {BRIDGE} ({NET}.0/24)")
    if count > 1:
        print(f"  floating address {VIP} (name ha) held by {vip_holder()}")
    print(f"  through ha (20 requests): {show(sample(20))}")
    stats = "   ".join(f"{n}: http://{node_ip(n)}:1936/" for n in balancers)
    print(f"  stats page {stats}   site: http://{node_ip('ha')}/")
    print(f"  a shell in a node: ip netns exec s1 bash;  members: "
          f"ip netns exec {balancers[0]} {REPO}/.venv/bin/swimlib members")
    return 0


def cmd_add(_args: argparse.Namespace) -> int:
    preflight()
    existing = [int(n[1:]) for n in lab_nodes() if not is_balancer(n)]
    if not lab_balancers():
        raise LabError("no lab is up: run `make lab` first")
    node = f"s{max(existing, default=0) + 1}"
    if int(node[1:]) > 200:
        raise LabError("the lab's address plan stops at s200")
    ensure_netns(node)
    write_hosts(sorted({*lab_nodes(), node}, key=node_order))
    start_node(node)
    seen = wait_backends(running_backends() | {node}, 45.0)
    print(f"added {node} ({node_ip(node)}); through ha: {show(seen)}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    preflight()
    node: str = args.node
    if node not in lab_nodes():
        raise LabError(f"no lab node {node!r}; nodes: {', '.join(lab_nodes()) or 'none'}")
    for line in stop_node(node):
        print(line)
    if not is_balancer(node):
        seen = wait_backends(running_backends(), 30.0)
        print(f"through ha: {show(seen)}")
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    """A host that dies: its cable pulled, then every process in it SIGKILLed (by PID)."""
    preflight()
    node: str = args.node
    if node not in lab_nodes() or node not in namespaces():
        raise LabError(f"no lab node {node!r}; nodes: {', '.join(lab_nodes()) or 'none'}")
    held = vip_holder() == node
    killed_at = time.monotonic()
    sh("ip", "link", "set", veth_name(node), "down")  # first: nothing more leaves it
    pids = [int(p) for p in sh("ip", "netns", "pids", node, check=False).stdout.split()]
    started = {pid: start_time(pid) for pid in pids}
    for sig in (signal.SIGSTOP, signal.SIGKILL):  # all at once: none sees another die
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
    for pid in pids:
        wait_gone(pid, started[pid], 5.0)
    print(f"{node}: cable pulled, killed pids {pids}")
    if held:
        deadline = killed_at + 15.0
        while http_get(f"http://{VIP}/", 0.2) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        print(f"{VIP} answered again {time.monotonic() - killed_at:.2f} s after the kill, "
              f"now held by {vip_holder()}")
    print(f"through ha: {show(sample(12))}   (`make lab` brings {node} back)")
    return 0


def cmd_status(_args: argparse.Namespace) -> int:
    nodes = lab_nodes()
    if not nodes:
        print("no lab")
        return 1
    for node in nodes:
        procs = ["lbadapter"] if is_balancer(node) else ["agent", "app"]
        states = [f"{p}={running_pid(node, p) or 'stopped'}" for p in procs]
        ns = "netns" if node in namespaces() else "no netns"
        print(f"  {node:<4} {node_ip(node):<12} {ns:<9} {' '.join(states)}")
    if lab_balancers() > 1:
        print(f"  floating address {VIP} held by {vip_holder() or 'nobody'}")
    if any(running_pid(n, "lbadapter") is not None for n in nodes if is_balancer(n)):
        print(f"  through ha: {show(sample())}")
    return 0


def cmd_down(_args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise LabError("run as root (sudo make lab-down)")
    nodes = lab_nodes()
    removed = list(nodes)
    for node in nodes:  # backends first (graceful leaves reach ha), then the balancers
        if not is_balancer(node):
            for line in stop_node(node):
                print(line)
    for node in nodes:
        if is_balancer(node):
            for line in stop_node(node):
                print(line)
    for node in nodes:
        left = kill_leftovers(node)
        if left:
            print(f"{node}: killed leftover pids {left}")
        if node in namespaces():
            sh("ip", "netns", "del", node)
        sh("ip", "link", "del", veth_name(node), check=False)
        hosts = NETNS_ETC / node / "hosts"
        if hosts.exists() and MARKER in hosts.read_text():
            shutil.rmtree(NETNS_ETC / node)
    if sh("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        sh("ip", "link", "del", BRIDGE)
        removed.append(f"bridge {BRIDGE}")
    with contextlib.suppress(OSError):
        NETNS_ETC.rmdir()  # only if empty (we may have created it)
    if STATE.exists():
        shutil.rmtree(STATE)
        removed.append(str(STATE))
    print(f"lab down: removed {', '.join(removed) or 'nothing (no lab was up)'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/lab.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="bridge + ha (or ha1, ha2), s1, s2 (idempotent)")
    up.add_argument("--balancers", type=int, choices=(1, 2), default=None,
                    help="1: ha; 2: ha1 and ha2 sharing ha's address (default: as the lab "
                         "that is up, else 1)")
    up.set_defaults(fn=cmd_up)
    sub.add_parser("add", help="add the next backend sN").set_defaults(fn=cmd_add)
    stop = sub.add_parser("stop", help="stop one node gracefully")
    stop.add_argument("node", help="ha, s1, s2, ...")
    stop.set_defaults(fn=cmd_stop)
    kill = sub.add_parser("kill", help="a node's host dies (cable pulled, processes SIGKILLed)")
    kill.add_argument("node", help="ha1, ha2, s1, ...")
    kill.set_defaults(fn=cmd_kill)
    sub.add_parser("status", help="nodes, PIDs and traffic").set_defaults(fn=cmd_status)
    sub.add_parser("down", help="remove everything").set_defaults(fn=cmd_down)
    args = p.parse_args(argv)
    try:
        rc: int = args.fn(args)
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
