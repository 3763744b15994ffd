"""join_storms: fresh N-agent join storms, serf and swimlib alternating, storm by storm.

Why: vs_serf times a few storms inside a longer schedule (its repeats restart
agents that the seed may still hold) and counts a storm with stragglers as
its whole timeout, so one straggler decides a median. This suite asks only:
N agents started alone, then ``serf join`` over RPC asks n1..nN-1 to join
n0 at once; how long from the first request until the last agent knows all
N, did every agent get there within ``--timeout``, and how much CPU did the
agents use meanwhile. Each storm starts from fresh processes; serf and
swimlib take turns (serf first on even storms), so host load falls on both.

``python -m benchmarks join_storms --size 50 --storms 4 [--timeout 30]
[--backend asyncio|trio] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.agents import SERF, SERF_IMPL, SWIMLIB_IMPL, Cluster, Impl, cpu_seconds, precompile

#: Ports below the ephemeral range, apart from vs_serf's.
BASE_PORT = 27400
#: Idle time between the last ready banner and the join requests.
SETTLE_S = 1.5


def storm(impl: Impl, n: int, workdir: Path, timeout: float) -> dict[str, Any]:
    """One storm of fresh agents; every process is stopped by PID before returning."""
    cluster = Cluster(impl, n, BASE_PORT, workdir)
    clis = []
    try:
        for i in range(n):
            cluster.start(i, join=False)
        if not cluster.wait_agents(cluster.agents, lambda a: a.first("ready", "", 0.0)
                                   is not None, 60):
            raise RuntimeError(f"{impl.name}: agents not ready; see {workdir}")
        time.sleep(SETTLE_S)
        cpu_before = sum(cpu_seconds(a.pid) for a in cluster.agents)
        t_join = time.monotonic()
        clis = [cluster.run_cli([SERF, "join", f"-rpc-addr=127.0.0.1:{a.rpc}",
                                 cluster.seed_addr]) for a in cluster.agents[1:]]
        cluster.wait_agents(cluster.agents, lambda a: a.join_complete(cluster.names, 0.0)
                            is not None, timeout)
        cpu_after = sum(cpu_seconds(a.pid) for a in cluster.agents)
        with cluster.cond:
            done = [a.join_complete(cluster.names, 0.0) for a in cluster.agents]
    finally:
        for cli in clis:
            cli.wait(10)
        cluster.stop_all()
    per_agent = [t - t_join for t in done if t is not None]
    return {"complete": len(per_agent) == n, "incomplete_agents": n - len(per_agent),
            "convergence_s": round(max(per_agent), 3) if len(per_agent) == n else None,
            "median_agent_s": round(statistics.median(per_agent), 3) if per_agent else None,
            "agents_cpu_s": round(cpu_after - cpu_before, 3)}


def summarize(storms: list[dict[str, Any]]) -> dict[str, Any]:
    times = sorted(s["convergence_s"] for s in storms if s["complete"])
    return {"storms": len(storms), "complete": len(times),
            "convergence_s": times,
            "median_complete_s": statistics.median(times) if times else None,
            "median_agents_cpu_s": statistics.median(s["agents_cpu_s"] for s in storms)}


def run(argv: list[str]) -> dict[str, Any]:
    """Entry point for ``python -m benchmarks join_storms``; returns the JSON-able results."""
    p = argparse.ArgumentParser(prog="python -m benchmarks join_storms",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=50)
    p.add_argument("--storms", type=int, default=4, help="storms per implementation")
    p.add_argument("--timeout", type=float, default=30.0, help="bound on each storm (s)")
    p.add_argument("--backend", choices=("asyncio", "trio"), default=None)
    p.add_argument("--workdir", default=None)
    a = p.parse_args(argv)
    if not os.path.exists(SERF):
        raise SystemExit("serf is not installed (apt-get install serf)")
    workdir = Path(a.workdir or tempfile.mkdtemp(prefix="join_storms-"))
    precompile()
    from swimlib.backend import choose_backend

    backend = choose_backend(a.backend)
    SWIMLIB_IMPL.env["SWIMLIB_BACKEND"] = backend
    results: dict[str, list[dict[str, Any]]] = {"serf": [], "swimlib": []}
    for k in range(a.storms):
        order = (SERF_IMPL, SWIMLIB_IMPL) if k % 2 == 0 else (SWIMLIB_IMPL, SERF_IMPL)
        for impl in order:
            r = storm(impl, a.size, workdir / f"{impl.name}-{k}", a.timeout)
            results[impl.name].append(r)
            print(f"  {impl.name} storm {k}: {r}", flush=True)
    out = {"suite": "join_storms", "host": platform.node(), "cpus": os.cpu_count(),
           "python": platform.python_version(), "swimlib_backend": backend,
           "size": a.size, "timeout_s": a.timeout, "storms": results,
           "summary": {name: summarize(rs) for name, rs in results.items()}}
    for name, s in out["summary"].items():
        print(f"{name}: {s['complete']}/{s['storms']} complete, convergence "
              f"{s['convergence_s']} s, agents' CPU per storm {s['median_agents_cpu_s']} s")
    return out
