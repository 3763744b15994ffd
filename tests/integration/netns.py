"""A small LAN of network namespaces for tests that cut the network: a bridge in
the host namespace (the test's own address, ``.1``), one namespace per host.

A partition is a route, in each namespace of one side, to each address of the
other through a neighbour that does not exist: datagrams and SYNs vanish
silently, as on a broken switch, while the test (on the bridge) still reaches
every host. No firewall or netem is needed (this kernel has neither). Names
and the subnet carry the test process's PID, so two runs never collide; the
test deletes everything it made.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

#: A neighbour address nobody holds: traffic routed through it is dropped.
_NOWHERE = 254


def why_not() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is missing"
    probe = f"swtprobe{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` is not permitted here: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


@contextlib.contextmanager
def open_lan(hosts: int) -> Iterator[Lan]:
    """A :class:`Lan` of ``hosts`` namespaces for the ``with`` block, deleted after
    it; the test is skipped where namespaces cannot be made (:func:`why_not`)."""
    why = why_not()
    if why is not None:
        pytest.skip(why)
    lan = Lan(hosts)
    try:
        yield lan
    finally:
        lan.close()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20,
                          check=check)


class Lan:
    """``hosts`` namespaces on one bridge; :meth:`close` removes them all."""

    _made_so_far = 0

    def __init__(self, hosts: int) -> None:
        # A namespace's veth outlives ``ip netns del`` for a moment: never reuse names.
        Lan._made_so_far += 1
        tag = f"{os.getpid() % 100_000}{Lan._made_so_far % 100}"
        self.subnet = f"10.{240 + os.getpid() % 10}.{(os.getpid() // 10 + Lan._made_so_far) % 250}"
        self.bridge = f"swtb{tag}"
        self.host_ip = f"{self.subnet}.1"
        self.names = [f"swt{tag}h{i}" for i in range(hosts)]
        self._routes: list[tuple[str, str]] = []
        self._made: list[str] = []
        #: Host-side end of each namespace's veth (its "cable").
        self.veths: dict[str, str] = {}
        #: Delay relays (:meth:`delay`), stopped by :meth:`close`.
        self._relays: list[subprocess.Popen[bytes]] = []
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.host_ip}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i, ns in enumerate(self.names):
                _ip("netns", "add", ns)
                self._made.append(ns)
                veth = self.veths[ns] = f"swtv{tag}h{i}"
                _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                _ip("link", "set", veth, "master", self.bridge, "up")
                _ip("-n", ns, "addr", "add", f"{self.ip(ns)}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def ip(self, ns: str) -> str:
        return f"{self.subnet}.{self.names.index(ns) + 2}"

    def exec_prefix(self, ns: str) -> list[str]:
        """Prefix for argv to run in ``ns`` (``ip netns exec`` execs: same PID)."""
        return ["ip", "netns", "exec", ns]

    def multicast_route(self, ns: str) -> None:
        """A route for multicast (224.0.0.0/4) out of ``ns``'s link, as a host with a
        default route has: programs that send by the routing table (serf's mDNS)
        need one; the namespaces have none. Gone with the namespace."""
        _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")

    def ipv6_ready(self, ns: str) -> bool:
        """Whether ``ns``'s link-local IPv6 address has passed duplicate address
        detection (about a second after the link comes up): before that, a send
        from it fails, and serf's mDNS poll gives up on its first such error."""
        out = _ip("-n", ns, "-6", "addr", "show", "dev", "eth0", "tentative").stdout
        return "inet6" not in out

    def partition(self, side_a: Iterable[str], side_b: Iterable[str]) -> None:
        """Cut every path between the two sides (both directions)."""
        a, b = list(side_a), list(side_b)
        for ours, theirs in ((a, b), (b, a)):
            for ns in ours:
                for other in theirs:
                    dest = f"{self.ip(other)}/32"
                    _ip("-n", ns, "route", "add", dest, "via", f"{self.subnet}.{_NOWHERE}")
                    self._routes.append((ns, dest))

    def heal(self) -> None:
        for ns, dest in self._routes:
            _ip("-n", ns, "route", "del", dest, check=False)
        self._routes.clear()

    def pids(self, ns: str) -> list[int]:
        """Processes whose network namespace is ``ns``."""
        out = _ip("netns", "pids", ns, check=False).stdout
        return [int(p) for p in out.split()]

    def kill_all(self, ns: str, timeout: float = 5.0) -> list[int]:
        """SIGKILL every process in ``ns`` (by PID); wait, bounded, until they are gone.

        All are stopped (SIGSTOP) first, so none sees another die and acts on it
        (a child told by ``PR_SET_PDEATHSIG`` that its parent died, say): they all
        die as in one instant.
        """
        pids = self.pids(ns)
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while set(self.pids(ns)) & set(pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        return pids

    def delay(self, ns: str, seconds: float) -> None:
        """Delay every frame ``ns`` sends by ``seconds``, as ``tc ... netem delay`` on
        its link would (this kernel has no netem): its cable is cut in two and
        :mod:`delay_relay` runs in between, in a namespace of its own. Stopped by
        :meth:`close`."""
        relay_ns = f"{ns}r"
        _ip("netns", "add", relay_ns)
        self._made.append(relay_ns)
        old = self.veths[ns]  # host end of ns's cable: it moves into the relay namespace
        new = f"{old}d"
        _ip("link", "set", old, "nomaster")
        _ip("link", "set", old, "netns", relay_ns)
        _ip("link", "add", new, "type", "veth", "peer", "name", "lan", "netns", relay_ns)
        _ip("link", "set", new, "master", self.bridge, "up")
        self.veths[ns] = new
        for link in ("lan", old):
            _ip("-n", relay_ns, "link", "set", "dev", link, "promisc", "on", "up")
        script = Path(__file__).with_name("delay_relay.py")
        self._relays.append(subprocess.Popen(
            [*self.exec_prefix(relay_ns), sys.executable, str(script), old, "lan",
             str(seconds)]))

    def unplug(self, ns: str) -> None:
        """Pull ``ns``'s cable: no frame in or out, as for a host that lost power."""
        _ip("link", "set", self.veths[ns], "down")

    def close(self) -> None:
        for relay in self._relays:
            relay.kill()
            relay.wait(10)
        self._relays.clear()
        for ns in self._made:  # a leftover (a daemon whose parent was killed) would pin it
            self.kill_all(ns)
            _ip("netns", "del", ns, check=False)
        self._made.clear()
        _ip("link", "del", self.bridge, check=False)
