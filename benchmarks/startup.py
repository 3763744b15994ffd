"""startup: what one agent costs from exec until it answers RPC, swimlib vs serf.

Why: a cluster's cold start and every restart pay it. An agent is started
alone (no join) and asked ``members`` over its RPC port as soon as the port
accepts; at the first answer we read the process's CPU time (all threads,
from /proc/PID/task/*/schedstat) and the wall time since exec. Later, after the agent
settled (``--settle``, past the agent's post-start-up memory release), its
RSS. Each implementation and backend is started ``--repeat`` times,
interleaved, so load on the shared machine hits all alike; medians are
reported with the ratio to serf's.

swimlib runs as operators run it (the installed ``swimlib agent`` command,
bytecode precompiled), on each backend (``--backend``). ``--importtime`` adds the
biggest import costs (``python -X importtime``) of one asyncio start.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.agents import SERF, SWIMLIB_COMMAND, cpu_seconds, precompile
from swimlib.errors import SwimError
from swimlib.rpc.client import RPCClient
from swimlib.testing import free_port, stop_process

BACKENDS = ("asyncio", "trio")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError("no VmRSS")


def argv_for(impl: str, port: int, rpc: int) -> list[str]:
    if impl == "serf":
        return [SERF, "agent", "-node=s", f"-bind=127.0.0.1:{port}",
                f"-rpc-addr=127.0.0.1:{rpc}", "-log-level=warn"]
    return [*SWIMLIB_COMMAND, "agent", "--node", "s",
            "--bind", f"127.0.0.1:{port}", "--rpc-addr", f"127.0.0.1:{rpc}",
            "--log-level", "warn", "--backend", impl]


def measure(impl: str, settle: float, timeout: float = 30.0) -> dict[str, float]:
    """Start one agent; CPU and wall time at its first RPC answer; RSS after ``settle``."""
    port, rpc = free_port(), free_port()
    start = time.monotonic()
    proc = subprocess.Popen(argv_for(impl, port, rpc), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = start + timeout
        while True:
            try:
                with RPCClient(f"127.0.0.1:{rpc}", timeout=5) as client:
                    client.members()
                break
            except (OSError, SwimError):  # not listening yet
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{impl} agent did not answer RPC") from None
                time.sleep(0.002)
        wall = time.monotonic() - start
        cpu = cpu_seconds(proc.pid)
        time.sleep(settle)
        return {"cpu_s": cpu, "wall_s": wall, "rss_mb": _rss_mb(proc.pid)}
    finally:
        stop_process(proc, timeout=10)


def importtime(top: int = 15) -> list[dict[str, Any]]:
    """The ``top`` imports by cumulative time in one asyncio agent start."""
    port, rpc = free_port(), free_port()
    argv = [sys.executable, "-X", "importtime", *argv_for("asyncio", port, rpc)[1:]]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        time.sleep(3)
    finally:
        stop_process(proc, timeout=10)
    rows: list[tuple[str, int, float, float]] = []  # module, depth, own ms, cumulative ms
    assert proc.stderr is not None
    for line in proc.stderr.read().splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            own, cumulative, name = line.split(":", 1)[1].split("|")
            depth = (len(name) - len(name.lstrip())) // 2
            rows.append((name.strip(), depth, int(own) / 1000, int(cumulative) / 1000))
    total = sum(cumulative for _, depth, _, cumulative in rows if depth == 0)
    rows.sort(key=lambda row: -row[2])
    return [{"total_import_ms": round(total, 1)},
            *({"module": module, "self_ms": own, "cumulative_ms": cumulative}
              for module, _, own, cumulative in rows[:top])]


def run(argv: list[str]) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks startup", description=__doc__)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--settle", type=float, default=6.0,
                   help="seconds before reading RSS (the agent trims its heap at 5 s)")
    p.add_argument("--backend", action="append", choices=BACKENDS,
                   help="swimlib backends to measure (default: both)")
    p.add_argument("--importtime", action="store_true")
    a = p.parse_args(argv)
    precompile()
    impls = ["serf", *(a.backend or BACKENDS)]
    samples: dict[str, list[dict[str, float]]] = {impl: [] for impl in impls}
    for _ in range(a.repeat):
        for impl in impls:
            samples[impl].append(measure(impl, a.settle))
    results: dict[str, Any] = {}
    for impl, rows in samples.items():
        results[impl] = {key: {"median": statistics.median(r[key] for r in rows),
                               "max": max(r[key] for r in rows),
                               "samples": [round(r[key], 4) for r in rows]}
                         for key in ("cpu_s", "wall_s", "rss_mb")}
    serf = results["serf"]
    ratios = {impl: {key: results[impl][key]["median"] / serf[key]["median"]
                     for key in ("cpu_s", "wall_s", "rss_mb")} for impl in impls[1:]}
    print(f"{'':10} {'CPU to RPC (s)':>16} {'wall to RPC (s)':>16} {'RSS (MB)':>10}")
    for impl in impls:
        r = results[impl]
        print(f"{impl:10} {r['cpu_s']['median']:16.3f} {r['wall_s']['median']:16.3f} "
              f"{r['rss_mb']['median']:10.1f}")
    out: dict[str, Any] = {"suite": "startup", "repeat": a.repeat, "settle_s": a.settle,
                           "cpus": os.cpu_count(), "results": results, "ratios_to_serf": ratios}
    if a.importtime:
        out["importtime"] = importtime()
        print(f"imports: {out['importtime'][0]['total_import_ms']} ms; biggest own costs:")
        for row in out["importtime"][1:]:
            print(f"  {row['self_ms']:6.1f} ms  {row['module']}")
    return out
