"""vs_serf: swimlib agents against real ``serf agent`` processes, in one run.

Why: the only honest yardstick for a drop-in is the original on the same
machine at the same time. This suite repeats the method of
``shared/reference/serf-anchor.md`` for both implementations and reports the
ratio swimlib/serf, so host load (2 shared cores) affects both sides alike.

Schedule: for each N, for each cycle, a fresh serf cluster and a fresh
swimlib cluster run one after the other (serf first on even cycles, swimlib
first on odd ones); the victims of kills and leaves are the same agent
indices for both. Each cluster goes through:

* join: start all N agents alone and wait for every ready banner (start-up
  time, reported apart: for swimlib it is CPython's), then ``serf join`` over
  RPC asks n1..nN-1 to join n0, all at once; converged when every agent's log
  showed EventMemberJoin for all N names, timed from the first request. Then
  (``--join-storms``) n1..nN-1 leave, restart and join again, twice more:
  one storm is one sample, and its last agent varies by a factor of two.
* failure: SIGKILL a random non-seed agent; first/last of the N-1 others to
  log EventMemberFailed; restart it (same name and ports) until all log its join.
  Each kill waits a random fraction of a probe interval first (the same draws
  for both implementations): serf agents started together probe in lockstep,
  and a kill a whole number of seconds after a log line would land at the same
  point of their common probe cycle every time, just before a tick (where the
  first probe of the victim comes soonest).
* leave: ``serf leave -rpc-addr=...`` against the agent (swimlib speaks
  Serf's RPC, so the trigger is byte-identical for both); first/last of the
  others to log EventMemberLeave; then it is restarted and rejoins.
* cold start: every agent killed, then n0 started, and once it is ready
  n1..nN-1 all at once, each with ``-join`` n0 on its command line: the
  time from the last process start until every agent knows all N (and
  per agent, from its own process start). Start-up costs count here, as
  they do when a whole cluster (re)starts.
* steady state: after a warm-up, a window in which CPU (every thread's run
  time from /proc/PID/task/*/schedstat: ns, where /proc/PID/stat counts 10 ms
  ticks), RSS (VmRSS) and traffic are measured per agent. Traffic:
  ``tcpdump -i lo`` on the cluster's gossip port range when installed (UDP and
  TCP, IP bytes; packets attributed to an agent by source port, TCP from
  ephemeral initiator ports only in the per-agent mean); otherwise system-wide
  /proc/net/snmp + /proc/net/dev deltas (noisier; the JSON says which).

Times come from log lines stamped on arrival by one reader thread per agent.
Every wait is bounded; every process is killed by PID in ``finally``.
Options: ``--sizes 5,20,50 --cycles 1 --join-storms 3 --kills 8 --leaves 2 --warmup 10
--window 30 --seed 1 --quick --cprofile SECONDS --workdir DIR``.
``--cprofile`` runs one non-victim swimlib agent under cProfile (CPU clock),
armed by signal only after the steady window, to say where idle CPU goes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import pstats
import random
import select
import shutil
import signal
import statistics
import struct
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.agents import (
    SERF,
    SERF_IMPL,
    SWIMLIB_IMPL,
    AgentProc,
    Cluster,
    Impl,
    cpu_seconds,
    precompile,
)

#: Targets (swimlib vs serf in the same run).
LATE_LIMIT_S = 3.0
#: memberlist's ProbeInterval in the LAN profile; kills land at a random point of it.
PROBE_INTERVAL_S = 1.0
RSS_LIMIT_KB = 28 * 1024  # 28 MiB; VmRSS is reported in KiB
#: A cold start of the whole cluster may take at most this many times serf's (issue 9).
COLD_START_LIMIT = 3.0
IMPLS = (SERF_IMPL, SWIMLIB_IMPL)
BASE_PORTS = {"serf": 27000, "swimlib": 27200}

# ----------------------------------------------------------------- statistics


def summary(samples: Sequence[float]) -> dict[str, Any]:
    """Median and worst (max) of the samples, with the samples themselves."""
    vals = [float(s) for s in samples]
    if not vals:
        return {"median": None, "max": None, "n": 0, "samples": []}
    return {"median": statistics.median(vals), "max": max(vals), "n": len(vals),
            "samples": [round(v, 4) for v in vals]}


def lateness(times: Sequence[float]) -> float:
    """How late the slowest agent was: max(time) - median(time)."""
    return max(times) - statistics.median(times) if times else 0.0


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b (swimlib / serf); None when either side is missing or b is 0."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def cpu_ticks(stat_line: str) -> int:
    """utime + stime (clock ticks) from a /proc/PID/stat line; comm may hold spaces."""
    rest = stat_line[stat_line.rindex(")") + 2:].split()
    return int(rest[11]) + int(rest[12])  # fields 14 and 15 (1-based, from "state" = 3)


def vmrss_kb(status_text: str, key: str = "VmRSS") -> int | None:
    """VmRSS (or another kB field, e.g. RssAnon) from /proc/PID/status text."""
    for line in status_text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


@dataclass
class Traffic:
    """Packets and IP bytes seen in a window, by source port (gossip ports only)."""

    packets: Counter[int] = field(default_factory=Counter)
    bytes: Counter[int] = field(default_factory=Counter)
    total_packets: int = 0
    total_bytes: int = 0
    udp_packets: int = 0
    tcp_packets: int = 0


_LINK_HEADER = {1: 14, 113: 16, 276: 20, 0: 4, 101: 0, 12: 0}


def parse_pcap(data: bytes, t0: float, t1: float, ports: range) -> Traffic:
    """Count IPv4 UDP/TCP packets in [t0, t1) (wall-clock) with a port in ``ports``.

    Bytes are the IP total length (as the anchor); a packet is attributed to the
    agent whose gossip port is its source port.
    """
    out = Traffic()
    if len(data) < 24:
        return out
    magic = data[:4]
    table = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
             b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9)}
    if magic not in table:
        raise ValueError("not a pcap file")
    endian, frac = table[magic]
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    link = _LINK_HEADER.get(linktype)
    if link is None:
        raise ValueError(f"unsupported pcap link type {linktype}")
    rec = struct.Struct(endian + "IIII")
    pos = 24
    while pos + 16 <= len(data):
        sec, sub, incl, _orig = rec.unpack_from(data, pos)
        pos += 16
        pkt = data[pos:pos + incl]
        pos += incl
        ts = sec + sub * frac
        if not t0 <= ts < t1 or len(pkt) < link + 20:
            continue
        ip = pkt[link:]
        if ip[0] >> 4 != 4 or ip[9] not in (6, 17):
            continue
        ihl = (ip[0] & 0x0F) * 4
        if len(ip) < ihl + 4:
            continue
        total = struct.unpack_from(">H", ip, 2)[0]
        sport, dport = struct.unpack_from(">HH", ip, ihl)
        if sport not in ports and dport not in ports:
            continue
        out.total_packets += 1
        out.total_bytes += total
        if ip[9] == 17:
            out.udp_packets += 1
        else:
            out.tcp_packets += 1
        if sport in ports:
            out.packets[sport] += 1
            out.bytes[sport] += total
    return out


def snmp_out_packets(snmp_text: str) -> int:
    """Udp OutDatagrams + Tcp OutSegs from /proc/net/snmp (header/value line pairs)."""
    lines = snmp_text.splitlines()
    total = 0
    for head, vals in zip(lines[::2], lines[1::2], strict=False):
        names, values = head.split(), vals.split()
        if names[0] == "Udp:":
            total += int(values[names.index("OutDatagrams")])
        elif names[0] == "Tcp:":
            total += int(values[names.index("OutSegs")])
    return total


def lo_tx_bytes(dev_text: str) -> int:
    """Bytes transmitted on lo from /proc/net/dev (link-level: includes 14-byte headers)."""
    for line in dev_text.splitlines():
        name, sep, rest = line.partition(":")
        if sep and name.strip() == "lo":
            return int(rest.split()[8])
    return 0


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def summarize_pstats(path: Path, top: int = 15) -> dict[str, Any]:
    """Top functions by own and by cumulative CPU from a cProfile dump (CPU clock)."""
    st = pstats.Stats(str(path))
    table: dict[tuple[str, int, str], tuple[Any, ...]] = st.stats  # type: ignore[attr-defined]
    rows = [(f"{_short(f)}:{line}({fn})" if f != "~" else fn, tt, ct, nc)
            for (f, line, fn), (_cc, nc, tt, ct, _callers) in table.items()]
    total = sum(r[1] for r in rows) or 1e-12

    def fmt(r: tuple[str, float, float, int], v: float) -> dict[str, Any]:
        return {"func": r[0], "cpu_s": round(v, 4), "pct": round(100 * v / total, 1),
                "calls": r[3]}

    return {"total_cpu_s": total,
            "by_own": [fmt(r, r[1]) for r in sorted(rows, key=lambda r: -r[1])[:top]],
            "by_cumulative": [fmt(r, r[2]) for r in sorted(rows, key=lambda r: -r[2])[:top]]}


# ----------------------------------------------------------------- measurement


@dataclass
class Options:
    sizes: list[int]
    cycles: int
    join_storms: int
    kills: int
    leaves: int
    warmup: float
    window: float
    settle: float
    timeout: float
    seed: int
    cprofile: float
    workdir: Path
    #: The event loop swimlib agents run on (None: the CLI's default).
    backend: str | None = None


class Capture:
    """tcpdump on lo for one port range, or the /proc/net fallback when absent."""

    def __init__(self, ports: range, path: Path) -> None:
        self.ports = ports
        self.path = path
        self.proc: subprocess.Popen[bytes] | None = None
        self.method = "tcpdump" if shutil.which("tcpdump") else "proc-net-snmp"
        self.dropped: str | None = None
        self._snmp0 = (0, 0)

    def start(self) -> None:
        if self.method != "tcpdump":
            self._snmp0 = self._snmp()
            return
        tcpdump = shutil.which("tcpdump") or "tcpdump"
        self.proc = subprocess.Popen(
            [tcpdump, "-i", "lo", "-nn", "-s", "64", "-U", "-w", str(self.path),
             f"portrange {self.ports.start}-{self.ports.stop - 1}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            start_new_session=True)
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 10
        buf = b""
        while b"listening on" not in buf and time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stderr], [], [], 0.5)
            if ready:
                chunk = os.read(self.proc.stderr.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
        if b"listening on" not in buf:
            self.stop()
            self.method = "proc-net-snmp"
            self._snmp0 = self._snmp()

    @staticmethod
    def _snmp() -> tuple[int, int]:
        return (snmp_out_packets(Path("/proc/net/snmp").read_text()),
                lo_tx_bytes(Path("/proc/net/dev").read_text()))

    def stop(self) -> None:
        """SIGINT (tcpdump flushes the file), then SIGKILL if it lingers; by PID."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc.stderr is not None:
            with contextlib.suppress(OSError, ValueError):
                err = self.proc.stderr.read().decode(errors="replace")
                for line in err.splitlines():
                    if "dropped by kernel" in line:
                        self.dropped = line.strip()
                self.proc.stderr.close()
        self.proc = None

    def result(self, t0: float, t1: float, n: int) -> dict[str, Any]:
        """Per-agent packets/s and bytes/s over the window [t0, t1) (wall clock)."""
        span = t1 - t0
        if self.method == "tcpdump":
            tr = parse_pcap(self.path.read_bytes(), t0, t1, self.ports)
            pk = [tr.packets[p] / span for p in self.ports]
            by = [tr.bytes[p] / span for p in self.ports]
            return {"method": "tcpdump -i lo (gossip port range, IP bytes)",
                    "pkts": {**summary(pk), "mean": tr.total_packets / n / span},
                    "bytes": {**summary(by), "mean": tr.total_bytes / n / span},
                    "udp_pkts_per_agent_s": tr.udp_packets / n / span,
                    "tcp_pkts_per_agent_s": tr.tcp_packets / n / span,
                    "dropped": self.dropped}
        p1, b1 = self._snmp()
        p0, b0 = self._snmp0
        mean_p, mean_b = (p1 - p0) / n / span, (b1 - b0) / n / span
        return {"method": "/proc/net/snmp Udp.OutDatagrams+Tcp.OutSegs, /proc/net/dev lo "
                          "tx bytes: system-wide, divided by N (no per-agent split)",
                "pkts": {**summary([mean_p]), "mean": mean_p},
                "bytes": {**summary([mean_b]), "mean": mean_b}}


def _read_cpu(agents: Sequence[AgentProc]) -> dict[str, float]:
    """CPU seconds so far per agent (every thread, ns resolution)."""
    out: dict[str, float] = {}
    for a in agents:
        with contextlib.suppress(OSError, ValueError, AssertionError):
            out[a.node] = cpu_seconds(a.pid)
    return out


def _read_rss(agents: Sequence[AgentProc], key: str = "VmRSS") -> dict[str, int]:
    out: dict[str, int] = {}
    for a in agents:
        with contextlib.suppress(OSError, AssertionError):
            kb = vmrss_kb(Path(f"/proc/{a.pid}/status").read_text(), key)
            if kb is not None:
                out[a.node] = kb
    return out


class ClusterRun:
    """One fresh cluster of one implementation through join, kills, leaves, idle."""

    def __init__(self, impl: Impl, n: int, opts: Options, victims: list[int],
                 workdir: Path, kill_phases: Sequence[float] = ()) -> None:
        self.impl = impl
        self.n = n
        self.opts = opts
        self.victims = victims
        #: Fraction of a probe interval to wait before each kill.
        self.kill_phases = list(kill_phases)
        profile = None
        if impl is SWIMLIB_IMPL and opts.cprofile > 0:
            idx = next((i for i in range(n - 1, 0, -1) if i not in victims), 0)
            profile = (idx, workdir / f"cprofile-n{idx}-N{n}.pstats")
        self.cluster = Cluster(impl, n, BASE_PORTS[impl.name], workdir, profile)
        self.res: dict[str, Any] = {"missing": [], "crashes": [], "notes": []}
        self._expected_down: set[str] = set()

    # -- helpers
    def _note(self, text: str) -> None:
        self.res["notes"].append(text)
        print(f"    [{self.impl.name} N={self.n}] {text}", flush=True)

    def _check_crashes(self) -> None:
        for a in self.cluster.agents:
            if a.popen is not None and not a.alive() and a.node not in self._expected_down:
                self._expected_down.add(a.node)
                rc = a.popen.returncode
                self.res["crashes"].append({"node": a.node, "rc": rc,
                                            "log": self.cluster.excerpt(a, 15)})
                self._note(f"{a.node} exited unexpectedly (rc={rc})")

    def _times(self, agents: Sequence[AgentProc], kind: str, subject: str,
               after: float) -> dict[str, float]:
        with self.cluster.cond:
            out = {}
            for a in agents:
                t = a.first(kind, subject, after)
                if t is not None:
                    out[a.node] = t - after
            return out

    def _wait_event(self, agents: Sequence[AgentProc], kind: str, subject: str,
                    after: float, what: str) -> dict[str, float]:
        ok = self.cluster.wait_agents(
            agents, lambda a: a.first(kind, subject, after) is not None or not a.alive(),
            self.opts.timeout)
        times = self._times(agents, kind, subject, after)
        missing = [a.node for a in agents if a.node not in times]
        if missing or not ok:
            self.res["missing"].append({"what": what, "agents": missing})
            self._note(f"{what}: {len(missing)} agent(s) never logged it within "
                       f"{self.opts.timeout:.0f}s: {missing[:10]}")
        return times

    def _restart(self, idx: int, what: str) -> dict[str, float]:
        """Restart agent idx (same name/ports); when all others logged its join, and skew."""
        a = self.cluster.agents[idx]
        a.reap()
        t1 = time.monotonic()
        self.cluster.start(idx)
        self._expected_down.discard(a.node)
        others = [b for b in self.cluster.agents if b is not a]
        times = self._wait_event(others, "join", a.node, t1, f"{what}: rejoin of {a.node}")
        self.cluster.wait_agents(
            [a], lambda b: b.join_complete(self.cluster.names, t1) is not None,
            self.opts.timeout)
        vals = list(times.values())
        if not vals:
            return {}
        out = {"rejoin_all_s": max(vals), "rejoin_lateness_s": lateness(vals)}
        with self.cluster.cond:
            ready = a.first("ready", "", t1)
        if ready is not None:  # the protocol's part: from the agent's ready banner
            out["rejoin_from_ready_s"] = max(vals) - (ready - t1)
        return out

    # -- phases
    def run(self) -> dict[str, Any]:
        c = self.cluster
        try:
            if not c.ports_free():
                raise RuntimeError(f"{self.impl.name}: ports {c.base}-{c.base + 100 + self.n} "
                                   "are not all free")
            self._join()
            for k, idx in enumerate(self.victims[:self.opts.kills]):
                self._kill(k, idx)
            for k, idx in enumerate(self.victims[self.opts.kills:]):
                self._leave(k, idx)
            self._steady()
            self._check_crashes()
            self._cold_start()
            self._check_crashes()
        finally:
            c.stop_all()
        return self.res

    def _join(self) -> None:
        """Start every agent alone, wait until all are ready, then ask each to join n0.

        Join convergence is timed from the first join request (``serf join`` over
        RPC, byte-identical for both) to the last agent knowing all N: the
        protocol's work. Start-up (process start to ready banner) is reported
        apart, because it is interpreter start-up, not gossip. With
        ``--join-storms K`` the storm is repeated K-1 times: every agent but n0
        leaves (SIGINT, a graceful leave for both), restarts and joins again,
        so the medians rest on K storms rather than one.
        """
        c = self.cluster
        for i in range(self.n):
            c.start(i, join=False)
        self._wait_ready(c.agents)
        with c.cond:
            startup = [a.first("ready", "", a.started) - a.started  # type: ignore[operator]
                       for a in c.agents]
        self.res["startup_per_agent_s"] = [round(v, 4) for v in startup]
        storms = [self._storm(c.agents[0].started)]
        for _ in range(self.opts.join_storms - 1):
            joiners = c.agents[1:]
            t_leave = time.monotonic()
            for a in joiners:
                a.kill(signal.SIGINT)
            deadline = time.monotonic() + self.opts.timeout
            for a in joiners:
                assert a.popen is not None
                with contextlib.suppress(subprocess.TimeoutExpired):
                    a.popen.wait(max(0.1, deadline - time.monotonic()))
                a.reap()
            # n0 must have seen every leave, or a joiner back too soon is, to it,
            # still the old member: no join event to wait for.
            seed_saw_all = self._seed_saw_them_go(joiners, t_leave)
            time.sleep(self.opts.settle)
            for i in range(1, self.n):
                c.start(i, join=False)
            self._wait_ready(joiners)
            if seed_saw_all:
                storms.append(self._storm(None))
            else:
                # To n0 some joiner never left, so its return is no join event to
                # time: rebuild the cluster with the first storm's rule, uncounted.
                self._note("join storm: n0 did not see every joiner leave; storm not counted")
                self._storm(None, rebuild=True)
        self.res["join_storms"] = storms
        first = storms[0]
        for key in ("join_convergence_s", "join_median_agent_s", "join_lateness_s",
                    "join_per_agent_s", "join_request_span_s", "join_cli_failures"):
            if key in first:
                self.res[key] = first[key]

    def _seed_saw_them_go(self, gone: Sequence[AgentProc], since: float) -> bool:
        """Wait until n0's log showed each of ``gone`` leave (or fail) since ``since``."""
        names = [a.node for a in gone]

        def saw_all(seed: AgentProc) -> bool:
            return all(seed.first("leave", n, since) is not None
                       or seed.first("failed", n, since) is not None for n in names)

        return self.cluster.wait_agents(self.cluster.agents[:1], saw_all, self.opts.timeout)

    def _wait_ready(self, agents: Sequence[AgentProc]) -> None:
        c = self.cluster
        ok = c.wait_agents(agents, lambda a: a.first("ready", "", a.started) is not None
                           or not a.alive(), 60)
        self._check_crashes()
        if not ok:
            raise RuntimeError(f"{self.impl.name}: agents not ready: "
                               f"{[c.excerpt(a) for a in agents if a.alive()][:1]}")

    def _storm(self, epoch: float | None, rebuild: bool = False) -> dict[str, Any]:
        """Ask n1..nN-1 to join n0 at once; how long until every agent knows all N.

        ``epoch``: join events count from then (the first storm: n0's start);
        None for a repeat, where only events after the requests count and each
        agent's own (re)start event is not needed. ``rebuild``: only the
        restarted agents must know all N (n0 never saw them go), not timed.
        """
        c = self.cluster
        out: dict[str, Any] = {}
        t_join = time.monotonic()
        clis = [c.run_cli([SERF, "join", f"-rpc-addr=127.0.0.1:{a.rpc}", c.seed_addr])
                for a in c.agents[1:]]
        out["join_request_span_s"] = time.monotonic() - t_join

        def complete(a: AgentProc) -> float | None:
            if rebuild:
                return t_join if a is c.agents[0] else a.join_complete(c.names, a.started)
            if epoch is not None:
                return a.join_complete(c.names, epoch)
            return a.join_complete([n for n in c.names if n != a.node], t_join)

        ok = c.wait_agents(c.agents, lambda a: complete(a) is not None or not a.alive(),
                           self.opts.timeout)
        self._check_crashes()
        out["join_cli_failures"] = sum(1 for p in clis if p.wait(10) != 0)
        if rebuild:
            time.sleep(self.opts.settle)
            return out
        with c.cond:
            done = {a.node: complete(a) for a in c.agents}
        per_agent = {k: v - t_join for k, v in done.items() if v is not None}
        missing = [k for k, v in done.items() if v is None]
        if missing or not ok:
            self.res["missing"].append({"what": "join", "agents": missing})
            self._note(f"join: {len(missing)} agent(s) incomplete after "
                       f"{self.opts.timeout:.0f}s: {missing[:10]}")
        vals = list(per_agent.values())
        if vals:
            # An agent still incomplete at the timeout means "all see N" took at
            # least that long: counting only the others would flatter a straggler.
            out["join_convergence_s"] = float(self.opts.timeout) if missing else max(vals)
            out["join_incomplete"] = len(missing)
            out["join_median_agent_s"] = statistics.median(vals)
            out["join_lateness_s"] = lateness(vals)
            out["join_per_agent_s"] = {k: round(v, 3) for k, v in per_agent.items()}
        time.sleep(self.opts.settle)
        return out

    def _kill(self, k: int, idx: int) -> None:
        c = self.cluster
        victim = c.agents[idx]
        others = [a for a in c.agents if a is not victim]
        self._expected_down.add(victim.node)
        phase = self.kill_phases[k] if k < len(self.kill_phases) else 0.0
        time.sleep(phase * PROBE_INTERVAL_S)
        t0 = time.monotonic()
        victim.kill(signal.SIGKILL)
        failed = self._wait_event(others, "failed", victim.node, t0, f"kill {k} ({victim.node})")
        self._check_crashes()
        suspect = self._times(others, "suspect", victim.node, t0)
        dead = self._times(others, "dead", victim.node, t0)
        vals = list(failed.values())
        rec: dict[str, Any] = {"victim": victim.node, "phase": round(phase, 3),
                               "suspicion_first_s": min(suspect.values(), default=None),
                               "dead_first_s": min(dead.values(), default=None)}
        if vals:
            rec |= {"detection_first_s": min(vals), "detection_all_s": max(vals),
                    "failed_lateness_s": lateness(vals)}
        rec |= self._restart(idx, f"kill {k}")
        self.res.setdefault("kills", []).append(rec)
        time.sleep(self.opts.settle)

    def _leave(self, k: int, idx: int) -> None:
        c = self.cluster
        victim = c.agents[idx]
        others = [a for a in c.agents if a is not victim]
        self._expected_down.add(victim.node)
        t0 = time.monotonic()
        cli = c.run_cli([SERF, "leave", f"-rpc-addr=127.0.0.1:{victim.rpc}"])
        left = self._wait_event(others, "leave", victim.node, t0, f"leave {k} ({victim.node})")
        rec: dict[str, Any] = {"victim": victim.node}
        vals = list(left.values())
        if vals:
            rec |= {"leave_first_s": min(vals), "leave_all_s": max(vals),
                    "leave_lateness_s": lateness(vals)}
        try:
            assert victim.popen is not None
            victim.popen.wait(self.opts.timeout)
            rec["leave_exit_s"] = time.monotonic() - t0
            rec["leave_cli_rc"] = cli.wait(5)
        except subprocess.TimeoutExpired:
            self._note(f"leave {k}: {victim.node} still running {self.opts.timeout:.0f}s "
                       "after `serf leave`")
        self._check_crashes()
        rec |= self._restart(idx, f"leave {k}")
        self.res.setdefault("leaves", []).append(rec)
        time.sleep(self.opts.settle)

    def _cold_start(self) -> None:
        """The whole cluster from nothing: n0, then the other N-1 at once with -join n0."""
        c = self.cluster
        for a in c.agents:
            self._expected_down.add(a.node)
            a.reap()
        time.sleep(self.opts.settle)
        t0 = time.monotonic()
        c.start(0, join=False)
        self._wait_ready(c.agents[:1])
        first = time.monotonic()
        for i in range(1, self.n):
            c.start(i, join=True)
        last = time.monotonic()
        self._expected_down.clear()
        ok = c.wait_agents(c.agents, lambda a: a.join_complete(c.names, t0) is not None
                           or not a.alive(), self.opts.timeout)
        with c.cond:
            done = {a: a.join_complete(c.names, t0) for a in c.agents}
        missing = [a.node for a, t in done.items() if t is None]
        if missing or not ok:
            self.res["missing"].append({"what": "cold start", "agents": missing})
            self._note(f"cold start: {len(missing)} agent(s) never knew all N: {missing[:10]}")
        finished = {a: t for a, t in done.items() if t is not None}
        if finished:
            self.res["cold_start"] = {
                "cold_start_all_s": max(finished.values()) - last,
                "cold_start_own_s": max(t - a.started for a, t in finished.items()),
                "spawn_span_s": last - first}

    def _steady(self) -> None:
        c = self.cluster
        time.sleep(self.opts.warmup)
        cap = Capture(range(c.base, c.base + self.n),
                      self.opts.workdir / f"{self.impl.name}-n{self.n}.pcap")
        try:
            cap.start()
            cpu0, w0, m0 = _read_cpu(c.agents), time.time(), time.monotonic()
            time.sleep(self.opts.window)
            cpu1, w1, m1 = _read_cpu(c.agents), time.time(), time.monotonic()
            rss = _read_rss(c.agents)
            anon = _read_rss(c.agents, "RssAnon")
            load = os.getloadavg()
        finally:
            cap.stop()
        span = m1 - m0
        cpu = {k: (cpu1[k] - cpu0[k]) * 60 / span for k in cpu1 if k in cpu0}
        self.res["cpu_s_per_min_per_agent"] = cpu
        self.res["rss_kb_per_agent"] = rss
        self.res["rss_anon_kb_per_agent"] = anon
        self.res["traffic"] = cap.result(w0, w1, self.n)
        self.res["load_avg_1m"] = load[0]
        self.res["window_s"] = span
        if c.profile is not None:
            self._profile(*c.profile)

    def _profile(self, idx: int, path: Path) -> None:
        """Arm the wrapped agent's cProfile for ``--cprofile`` idle seconds, then dump."""
        agent = self.cluster.agents[idx]
        if not agent.alive():
            return
        os.kill(agent.pid, signal.SIGUSR1)
        time.sleep(self.opts.cprofile)
        os.kill(agent.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # the dump is written by the agent's own signal handler
        time.sleep(0.5)
        if not path.exists():
            self._note(f"no cProfile dump from {agent.node}")
            return
        prof = summarize_pstats(path)
        prof |= {"agent": agent.node, "window_s": self.opts.cprofile}
        self.res["profile"] = prof


# ----------------------------------------------------------------- aggregation

#: (key in the result, label, unit)
METRICS = [
    ("startup_s", "start-up: process start to ready", "s"),
    ("join_convergence_s", "join: all see N, from join requests", "s"),
    ("join_median_agent_s", "join: median agent", "s"),
    ("join_lateness_s", "join: worst agent - median agent", "s"),
    ("suspicion_first_s", "fail: first suspicion", "s"),
    ("detection_first_s", "fail: first agent marks failed", "s"),
    ("detection_all_s", "fail: all N-1 mark failed", "s"),
    ("failed_lateness_s", "fail: worst agent - median agent", "s"),
    ("rejoin_all_s", "rejoin after kill/leave: all see it", "s"),
    ("rejoin_from_ready_s", "  the same, from the agent's ready banner", "s"),
    ("cold_start_all_s", "cold start: all know N, from last spawn", "s"),
    ("cold_start_own_s", "cold start: worst agent from own spawn", "s"),
    ("rejoin_lateness_s", "rejoin: worst agent - median agent", "s"),
    ("leave_first_s", "leave: first agent sees left", "s"),
    ("leave_all_s", "leave: all N-1 see left", "s"),
    ("leave_lateness_s", "leave: worst agent - median agent", "s"),
    ("leave_exit_s", "leave: agent process exits", "s"),
    ("cpu_s_per_min", "CPU s per agent per minute", "s/min"),
    ("rss_kb", "RSS per agent", "kB"),
    ("rss_anon_kb", "  of which anonymous (RssAnon)", "kB"),
    ("pkts_per_s", "packets/s per agent (sent)", "pkt/s"),
    ("bytes_per_s", "bytes/s per agent (IP)", "B/s"),
]


def aggregate(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pool the cycles of one implementation and size into per-metric summaries."""
    pooled: dict[str, list[float]] = {k: [] for k, _, _ in METRICS}
    means: dict[str, list[float]] = {"pkts_per_s": [], "bytes_per_s": []}
    for r in runs:
        for storm in r.get("join_storms") or [r]:
            for key in ("join_convergence_s", "join_median_agent_s", "join_lateness_s"):
                if storm.get(key) is not None:
                    pooled[key].append(storm[key])
        pooled["startup_s"] += r.get("startup_per_agent_s", [])
        for key, val in (r.get("cold_start") or {}).items():
            if key in pooled:
                pooled[key].append(val)
        for rec in r.get("kills", []) + r.get("leaves", []):
            for key, val in rec.items():
                if key in pooled and isinstance(val, float) and val == val:
                    pooled[key].append(val)
        pooled["cpu_s_per_min"] += list(r.get("cpu_s_per_min_per_agent", {}).values())
        pooled["rss_kb"] += [float(v) for v in r.get("rss_kb_per_agent", {}).values()]
        pooled["rss_anon_kb"] += [float(v) for v in r.get("rss_anon_kb_per_agent", {}).values()]
        tr = r.get("traffic")
        if tr:
            pooled["pkts_per_s"] += tr["pkts"]["samples"]
            pooled["bytes_per_s"] += tr["bytes"]["samples"]
            means["pkts_per_s"].append(tr["pkts"]["mean"])
            means["bytes_per_s"].append(tr["bytes"]["mean"])
    out: dict[str, Any] = {k: summary(v) for k, v in pooled.items()}
    for k, v in means.items():
        out[k]["mean_all_traffic"] = statistics.mean(v) if v else None
    out["missing"] = [m for r in runs for m in r.get("missing", [])]
    out["crashes"] = [c for r in runs for c in r.get("crashes", [])]
    return out


def verdicts(serf: dict[str, Any], swim: dict[str, Any]) -> dict[str, Any]:
    """Targets: detection and convergence ratio <= 1, lateness <= 3 s, CPU <= serf, RSS."""
    def med(d: dict[str, Any], k: str) -> float | None:
        v = d[k]["median"]
        return None if v is None else float(v)

    def worst(d: dict[str, Any], *keys: str) -> float | None:
        vals = [d[k]["max"] for k in keys if d[k]["max"] is not None]
        return max(vals) if vals else None

    def check(ok: bool | None, value: Any, limit: str) -> dict[str, Any]:
        return {"verdict": "n/a" if ok is None else ("PASS" if ok else "MISS"),
                "value": value, "limit": limit}

    r_first = ratio(med(swim, "detection_first_s"), med(serf, "detection_first_s"))
    r_all = ratio(med(swim, "detection_all_s"), med(serf, "detection_all_s"))
    r_conv = ratio(med(swim, "join_convergence_s"), med(serf, "join_convergence_s"))
    late = worst(swim, "join_lateness_s", "leave_lateness_s", "rejoin_lateness_s")
    # Joins, leaves and rejoins count; a kill nobody detected is a detection problem.
    missing = [m for m in swim["missing"]
               if not (m["what"].startswith("kill") and "rejoin" not in m["what"])]
    cpu_s, cpu_r = med(swim, "cpu_s_per_min"), med(serf, "cpu_s_per_min")
    r_cold = ratio(med(swim, "cold_start_all_s"), med(serf, "cold_start_all_s"))
    rss = swim["rss_kb"]["max"]
    return {
        "detection_first_ratio": check(None if r_first is None else r_first <= 1.0, r_first,
                                       "<= 1.0"),
        "detection_all_ratio": check(None if r_all is None else r_all <= 1.0, r_all, "<= 1.0"),
        "convergence_ratio": check(None if r_conv is None else r_conv <= 1.0, r_conv,
                                   "<= 1.0"),
        "lateness_join_leave": check(None if late is None else (late <= LATE_LIMIT_S
                                                                and not missing),
                                     late, f"<= {LATE_LIMIT_S} s, none missing"),
        "cpu_vs_serf": check(None if cpu_s is None or cpu_r is None else cpu_s <= cpu_r,
                             ratio(cpu_s, cpu_r), "swimlib median <= serf median"),
        "rss": check(None if rss is None else rss <= RSS_LIMIT_KB, rss,
                     f"<= {RSS_LIMIT_KB} kB (28 MiB), worst agent"),
        "cold_start_ratio": check(None if r_cold is None else r_cold <= COLD_START_LIMIT,
                                  r_cold, f"<= {COLD_START_LIMIT}"),
    }


def ratios(serf: dict[str, Any], swim: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, _, _ in METRICS:
        out[key] = {"median": ratio(swim[key]["median"], serf[key]["median"]),
                    "max": ratio(swim[key]["max"], serf[key]["max"])}
    for key in ("pkts_per_s", "bytes_per_s"):
        out[key]["mean_all_traffic"] = ratio(swim[key].get("mean_all_traffic"),
                                             serf[key].get("mean_all_traffic"))
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    v = float(v)
    if abs(v) >= 1000:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}" if abs(v) < 1 else f"{v:.2f}"


def format_table(n: int, serf: dict[str, Any], swim: dict[str, Any],
                 rat: dict[str, Any], verdict: dict[str, Any]) -> str:
    """One table per N: median [max] (samples) for both, and the median ratio."""
    lines = [f"N={n}", f"{'metric':40} {'serf median [max] (n)':>32} "
             f"{'swimlib median [max] (n)':>32} {'ratio':>7}"]
    for key, label, unit in METRICS:
        cells = []
        for d in (serf, swim):
            m = d[key]
            cell = f"{_fmt(m['median'])} [{_fmt(m['max'])}] ({m['n']})"
            if m.get("mean_all_traffic") is not None:
                cell = f"mean {_fmt(m['mean_all_traffic'])}; " + cell
            cells.append(cell)
        r = rat[key].get("mean_all_traffic") or rat[key]["median"]
        lines.append(f"{label + ' (' + unit + ')':40} {cells[0]:>32} {cells[1]:>32} "
                     f"{_fmt(r):>7}")
    lines.append("targets: " + "  ".join(
        f"{k}={v['verdict']}({_fmt(v['value'])})" for k, v in verdict.items()))
    for impl, d in (("serf", serf), ("swimlib", swim)):
        for m in d["missing"]:
            lines.append(f"  {impl}: missing {m['what']}: {m['agents'][:10]}")
        for cr in d["crashes"]:
            lines.append(f"  {impl}: crash {cr['node']} rc={cr['rc']}: {cr['log'][-3:]}")
    return "\n".join(lines)


# ----------------------------------------------------------------- entry point


def parse_args(argv: list[str]) -> Options:
    p = argparse.ArgumentParser(prog="python -m benchmarks vs_serf",
                                description="swimlib agents vs serf agents on loopback")
    p.add_argument("--sizes", default=None, help="comma-separated N (default 5,20,50)")
    p.add_argument("--cycles", type=int, default=None, help="fresh clusters per N (1)")
    p.add_argument("--join-storms", type=int, default=None,
                   help="join storms per cluster (3; the first from scratch)")
    p.add_argument("--kills", type=int, default=None,
                   help="SIGKILLs per cluster (8: detection medians need them)")
    p.add_argument("--leaves", type=int, default=None, help="leaves per cluster (2)")
    p.add_argument("--warmup", type=float, default=None, help="idle before the window (10 s)")
    p.add_argument("--window", type=float, default=None, help="steady-state window (30 s)")
    p.add_argument("--timeout", type=float, default=60.0, help="bound on each wait (s)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="N=5, 1 kill, 1 leave, short window")
    p.add_argument("--cprofile", type=float, default=0.0, metavar="SECONDS",
                   help="cProfile one idle swimlib agent per cluster after the window")
    p.add_argument("--workdir", default=None, help="logs and pcaps (default: a temp dir)")
    p.add_argument("--backend", choices=("asyncio", "trio"), default=None,
                   help="swimlib agents' event loop (default: the CLI's)")
    a = p.parse_args(argv)
    quick = a.quick
    sizes = [int(s) for s in (a.sizes or ("5" if quick else "5,20,50")).split(",")]
    workdir = Path(a.workdir or tempfile.mkdtemp(prefix="vs_serf-"))
    return Options(
        sizes=sizes, cycles=a.cycles or 1,
        join_storms=max(1, a.join_storms if a.join_storms is not None else (1 if quick else 3)),
        kills=a.kills if a.kills is not None else (1 if quick else 8),
        leaves=a.leaves if a.leaves is not None else (1 if quick else 2),
        warmup=a.warmup if a.warmup is not None else (3.0 if quick else 10.0),
        window=a.window if a.window is not None else (10.0 if quick else 30.0),
        settle=1.0 if quick else 2.0, timeout=a.timeout, seed=a.seed, cprofile=a.cprofile,
        workdir=workdir, backend=a.backend)


def _git_head() -> str | None:
    """The commit under test (agents import swimlib from this tree; it may be dirty)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "swimlib"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return f"{head}{' +dirty swimlib/' if dirty else ''}" if head else None


def run(argv: list[str]) -> dict[str, Any]:
    """Entry point for ``python -m benchmarks vs_serf``; returns the JSON-able results."""
    opts = parse_args(argv)
    if not os.path.exists(SERF):
        raise SystemExit("serf is not installed (apt-get install serf)")
    opts.workdir.mkdir(parents=True, exist_ok=True)
    precompile()
    from swimlib.backend import choose_backend

    backend = choose_backend(opts.backend)
    SWIMLIB_IMPL.env["SWIMLIB_BACKEND"] = backend
    print(f"vs_serf: swimlib tree {_git_head()} on {backend}; sizes={opts.sizes} "
          f"cycles={opts.cycles} "
          f"kills={opts.kills} leaves={opts.leaves} warmup={opts.warmup}s window={opts.window}s "
          f"logs in {opts.workdir}", flush=True)
    started = time.monotonic()
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {i.name: {} for i in IMPLS}
    for n in opts.sizes:
        for cycle in range(opts.cycles):
            rng = random.Random(f"{opts.seed}-{n}-{cycle}")
            pool = list(range(1, n))  # never n0, the seed everyone joins through
            rng.shuffle(pool)
            victims = [pool[i % len(pool)] for i in range(opts.kills + opts.leaves)]
            kill_phases = [rng.random() for _ in range(opts.kills)]
            order = IMPLS if cycle % 2 == 0 else IMPLS[::-1]
            for impl in order:
                t = time.monotonic()
                print(f"  {impl.name} N={n} cycle {cycle}: victims "
                      f"{[f'n{v}' for v in victims]}", flush=True)
                res = ClusterRun(impl, n, opts, victims, opts.workdir / f"c{cycle}",
                                 kill_phases).run()
                res["wall_s"] = time.monotonic() - t
                raw[impl.name].setdefault(str(n), []).append(res)
                print(f"    done in {res['wall_s']:.0f}s", flush=True)
    out: dict[str, Any] = {
        "suite": "vs_serf", "host": platform.node(), "cpus": os.cpu_count(),
        "python": platform.python_version(), "serf": SERF, "swimlib_tree": _git_head(),
        "options": {"sizes": opts.sizes, "cycles": opts.cycles,
                    "join_storms": opts.join_storms, "kills": opts.kills,
                    "leaves": opts.leaves, "warmup_s": opts.warmup, "window_s": opts.window,
                    "seed": opts.seed, "workdir": str(opts.workdir),
                    "swimlib_backend": backend},
        "schedule": "per N and cycle: fresh serf cluster and fresh swimlib cluster one after "
                    "the other (alternating order), same victims",
        "results": {}, "ratios": {}, "targets": {}, "runs": raw,
    }
    tables = []
    for n in opts.sizes:
        agg = {impl.name: aggregate(raw[impl.name][str(n)]) for impl in IMPLS}
        rat = ratios(agg["serf"], agg["swimlib"])
        ver = verdicts(agg["serf"], agg["swimlib"])
        out["results"][str(n)] = agg
        out["ratios"][str(n)] = rat
        out["targets"][str(n)] = ver
        tables.append(format_table(n, agg["serf"], agg["swimlib"], rat, ver))
    out["wall_s"] = time.monotonic() - started
    print()
    print("\n\n".join(tables))
    for impl in IMPLS:
        for n in opts.sizes:
            for r in raw[impl.name][str(n)]:
                prof = r.get("profile")
                if prof:
                    print(f"\ncProfile (CPU clock), idle swimlib agent {prof['agent']} N={n}: "
                          f"{prof['total_cpu_s']:.3f} CPU s in {prof['window_s']:.0f} s "
                          "(profiler overhead included); top by own CPU:")
                    for row in prof["by_own"][:12]:
                        print(f"  {row['pct']:5.1f}%  {row['calls']:>8} calls  {row['func']}")
                    print("  top by cumulative CPU:")
                    for row in prof["by_cumulative"][:12]:
                        print(f"  {row['pct']:5.1f}%  {row['calls']:>8} calls  {row['func']}")
    print(f"\nwall time {out['wall_s']:.0f}s; traffic method: "
          f"{next(iter(raw['serf'].values()))[0].get('traffic', {}).get('method')}")
    return out

