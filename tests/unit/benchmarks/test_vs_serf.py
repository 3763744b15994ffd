"""Pure parts of the vs_serf benchmark: log parsing, statistics, /proc and pcap parsing.

The benchmark itself runs real agents for minutes; these checks make sure its
numbers are computed right without starting any process.
"""

from __future__ import annotations

import cProfile
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.agents import (
    SERF_IMPL,
    AgentProc,
    Cluster,
    parse_line,
    profiled_argv,
    swimlib_argv,
)
from benchmarks.vs_serf import (
    RSS_LIMIT_KB,
    aggregate,
    cpu_ticks,
    format_table,
    lateness,
    lo_tx_bytes,
    parse_pcap,
    ratio,
    ratios,
    snmp_out_packets,
    summarize_pstats,
    summary,
    verdicts,
    vmrss_kb,
)


@pytest.mark.parametrize(("line", "expected"), [
    ("    2026/11/25 01:10:35 [INFO] serf: EventMemberJoin: n2 127.0.0.1", ("join", "n2")),
    ("    2026/11/25 01:10:35 [INFO] serf: EventMemberFailed: n-7 127.0.0.1", ("failed", "n-7")),
    ("    2026/11/25 01:10:35 [INFO] serf: EventMemberLeave: n3 127.0.0.1", ("leave", "n3")),
    ("    2026/11/25 01:10:35 [INFO] serf: EventMemberUpdate: n3 127.0.0.1", ("update", "n3")),
    ("    2026/11/25 [INFO] memberlist: Suspect n2 has failed, no acks received",
     ("suspect", "n2")),
    ("    2026/11/25 [INFO] memberlist: Marking n2 as failed, suspect timeout reached "
     "(2 peer confirmations)", ("dead", "n2")),
    ("==> Serf agent running!", ("ready", "")),
    ("==> swimlib agent running!", ("ready", "")),
    ("    2026/11/25 01:10:35 [INFO] agent: joined: 1 nodes", None),
    ("    2026/11/25 [INFO] serf: Received event: user-event: deploy", None),
])
def test_parse_line(line: str, expected: tuple[str, str] | None) -> None:
    assert parse_line(line) == expected


def test_summary_lateness_ratio() -> None:
    s = summary([3.0, 1.0, 2.0, 10.0])
    assert s["median"] == 2.5 and s["max"] == 10.0 and s["n"] == 4
    assert summary([])["median"] is None
    assert lateness([1.0, 1.1, 1.2, 5.0]) == pytest.approx(5.0 - 1.15)
    assert lateness([]) == 0.0
    assert ratio(2.0, 4.0) == 0.5
    assert ratio(None, 1.0) is None and ratio(1.0, 0.0) is None


def test_proc_parsers() -> None:
    stat = "1234 (python -m x) S 1 1234 1234 0 -1 4194560 100 0 0 0 57 13 0 0 20 0 3 0"
    assert cpu_ticks(stat) == 70
    assert vmrss_kb("Name:\tserf\nVmPeak:\t 1 kB\nVmRSS:\t   14920 kB\n") == 14920
    assert vmrss_kb("Name:\tzombie\n") is None
    assert vmrss_kb("VmRSS:\t 9 kB\nRssAnon:\t 7 kB\n", "RssAnon") == 7
    snmp = ("Ip: Forwarding InReceives\nIp: 1 5\n"
            "Tcp: RtoAlgorithm OutSegs InSegs\nTcp: 1 40 50\n"
            "Udp: InDatagrams NoPorts OutDatagrams\nUdp: 7 0 60\n")
    assert snmp_out_packets(snmp) == 100
    dev = ("Inter-|   Receive                                                |  Transmit\n"
           " face |bytes    packets errs drop fifo frame compressed multicast|bytes ...\n"
           "    lo: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n"
           "  eth0: 1 1 0 0 0 0 0 0 9 9 0 0 0 0 0 0\n")
    assert lo_tx_bytes(dev) == 2000


def _pcap(packets: list[tuple[float, int, int, int, int]]) -> bytes:
    """A little-endian usec pcap on Ethernet: (ts, proto, sport, dport, payload)."""
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 64, 1)
    for ts, proto, sport, dport, payload in packets:
        l4 = struct.pack(">HH", sport, dport) + bytes(4 if proto == 17 else 16)
        total = 20 + len(l4) + payload
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 64, proto, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
        frame = (bytes(12) + b"\x08\x00" + ip + l4)[:64]
        sec = int(ts)
        out += struct.pack("<IIII", sec, round((ts - sec) * 1e6), len(frame), 14 + total)
        out += frame
    return out


def test_parse_pcap_counts_window_and_attribution() -> None:
    ports = range(17000, 17005)
    data = _pcap([
        (99.9, 17, 17000, 17001, 10),    # before the window
        (100.0, 17, 17000, 17001, 10),   # n0 ping: 20+8+10 = 38 IP bytes
        (100.5, 17, 17001, 17000, 100),  # n1 ack
        (101.0, 6, 40000, 17002, 50),    # TCP from an ephemeral initiator port
        (101.5, 6, 17002, 40000, 0),     # TCP answer from n2
        (102.0, 17, 9999, 8888, 5),      # not ours
        (110.0, 17, 17000, 17001, 10),   # after the window
    ])
    tr = parse_pcap(data, 100.0, 110.0, ports)
    assert tr.total_packets == 4
    assert tr.udp_packets == 2 and tr.tcp_packets == 2
    assert tr.total_bytes == 38 + 128 + 90 + 40
    assert tr.packets == {17000: 1, 17001: 1, 17002: 1}
    assert tr.bytes[17001] == 128
    with pytest.raises(ValueError):
        parse_pcap(b"x" * 24, 0, 1, ports)


def test_summarize_pstats(tmp_path: Path) -> None:
    def busy() -> int:
        return sum(i * i for i in range(20000))

    prof = cProfile.Profile(time.process_time)
    prof.runcall(busy)
    prof.dump_stats(tmp_path / "p.pstats")
    out = summarize_pstats(tmp_path / "p.pstats")
    assert out["total_cpu_s"] > 0
    assert any("busy" in row["func"] for row in out["by_cumulative"])
    assert all(0 <= row["pct"] <= 100 for row in out["by_own"])


def test_profiled_argv_wraps_swimlib_only() -> None:
    argv = swimlib_argv("n1", 7946, 7373, None, {})
    wrapped = profiled_argv(argv, Path("/tmp/x.pstats"))
    assert wrapped[:2] == [sys.executable, "-c"]
    assert wrapped[3:6] == ["/tmp/x.pstats", "agent", "--node"] and wrapped[6] == "n1"
    compile(wrapped[2], "<wrapper>", "exec")
    with pytest.raises(AssertionError):
        profiled_argv(["/usr/bin/serf", "agent"], Path("/tmp/x"))


def _run(conv: float, detect: float, late: float, cpu: float, rss: int) -> dict[str, Any]:
    traffic = {"pkts": {**summary([2.0, 2.2]), "mean": 2.1},
               "bytes": {**summary([260.0, 270.0]), "mean": 265.0}}
    return {"startup_per_agent_s": [0.3, 0.4], "join_convergence_s": conv,
            "join_median_agent_s": conv / 2, "join_lateness_s": late,
            "kills": [{"detection_first_s": detect - 0.2, "detection_all_s": detect,
                       "failed_lateness_s": 0.1, "rejoin_all_s": 0.3,
                       "rejoin_lateness_s": late,
                       "suspicion_first_s": None}],
            "leaves": [{"leave_first_s": 0.4, "leave_all_s": 0.5, "leave_lateness_s": late,
                        "leave_exit_s": 1.5, "rejoin_all_s": float("nan")}],
            "cpu_s_per_min_per_agent": {"n0": cpu, "n1": cpu * 2},
            "rss_kb_per_agent": {"n0": rss, "n1": rss}, "traffic": traffic,
            "missing": [], "crashes": []}


def test_aggregate_ratios_verdicts_table() -> None:
    serf = aggregate([_run(0.2, 5.7, 0.1, 0.12, 15000)])
    swim = aggregate([_run(0.1, 5.0, 0.2, 0.24, RSS_LIMIT_KB + 1)])
    assert serf["detection_all_s"]["median"] == 5.7
    assert serf["rejoin_all_s"]["n"] == 1  # the NaN sample is dropped
    assert serf["cpu_s_per_min"]["samples"] == [0.12, 0.24]
    assert serf["startup_s"]["samples"] == [0.3, 0.4]
    assert serf["pkts_per_s"]["mean_all_traffic"] == 2.1
    rat = ratios(serf, swim)
    assert rat["join_convergence_s"]["median"] == pytest.approx(0.5)
    assert rat["cpu_s_per_min"]["median"] == pytest.approx(2.0)
    v = verdicts(serf, swim)
    assert v["detection_all_ratio"]["verdict"] == "PASS"
    assert v["convergence_ratio"]["verdict"] == "PASS"
    assert v["lateness_join_leave"]["verdict"] == "PASS"
    assert v["cpu_vs_serf"]["verdict"] == "MISS"
    assert v["rss"]["verdict"] == "MISS"
    swim["missing"].append({"what": "kill 0 (n3)", "agents": ["n7"]})
    assert verdicts(serf, swim)["lateness_join_leave"]["verdict"] == "PASS"
    swim["missing"].append({"what": "leave 0 (n3)", "agents": ["n7"]})
    assert verdicts(serf, swim)["lateness_join_leave"]["verdict"] == "MISS"
    table = format_table(5, serf, swim, rat, v)
    assert "N=5" in table and "cpu_vs_serf=MISS" in table and "missing leave 0" in table


def test_agent_event_queries(tmp_path: Path) -> None:
    cluster = Cluster(SERF_IMPL, 3, 27900, tmp_path)
    try:
        a = cluster.agents[1]
        a.times = {("join", "n0"): [1.0, 9.0], ("join", "n1"): [1.5], ("join", "n2"): [2.5]}
        assert a.first("join", "n0", 0.0) == 1.0
        assert a.first("join", "n0", 2.0) == 9.0
        assert a.first("join", "n0", 9.5) is None
        assert a.first("leave", "n0", 0.0) is None
        assert a.join_complete(cluster.names, 0.0) == 2.5
        assert a.join_complete(cluster.names, 2.0) is None
    finally:
        cluster.stop_all()


def test_wait_agents_is_woken_by_log_lines(tmp_path: Path) -> None:
    cluster = Cluster(SERF_IMPL, 2, 27900, tmp_path)
    a: AgentProc = cluster.agents[0]

    def arrive() -> None:
        time.sleep(0.05)
        with cluster.cond:
            a.times[("failed", "n1")] = [time.monotonic()]
            a.version += 1
            cluster.cond.notify_all()

    try:
        threading.Thread(target=arrive).start()
        t0 = time.monotonic()
        assert cluster.wait_agents([a], lambda x: x.first("failed", "n1", 0.0), 5.0)
        assert time.monotonic() - t0 < 2.0
        assert not cluster.wait_agents([a], lambda x: x.first("leave", "n1", 0.0), 0.1)
    finally:
        cluster.stop_all()
