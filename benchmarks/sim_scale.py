"""sim_scale: simulator wall time and peak memory against cluster size.

Runs the ``steady`` scenario (seeded, converged cluster; LAN profile) for
each N, each in a fresh subprocess so peak RSS is that N's own. Reports the
setup cost (seeding + 5 s warm-up) apart from the measured phase, because
the targets are about the measured phase: 1,000 nodes x 60 simulated
seconds under 30 s wall, 2,000 nodes under 2 GiB.
Options: ``--sizes 100,500,1000,2000 --duration 60 --seed 1 --scenario steady
--loss 0 --no-lifeguard``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any


def _one(n: int, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "simulations", "run", args.scenario, "--nodes", str(n),
           "--seed", str(args.seed), "--duration", str(args.duration),
           "--loss", str(args.loss), "--json"]
    if args.no_lifeguard:
        cmd.append("--no-lifeguard")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    result: dict[str, Any] = json.loads(proc.stdout)
    measured_wall = result["wall_seconds"] - result["setup_wall_seconds"]
    return {
        "nodes": n,
        "sim_seconds": result["sim_seconds"],
        "process_wall_s": round(elapsed, 2),
        "wall_s": result["wall_seconds"],
        "setup_wall_s": result["setup_wall_seconds"],
        "measured_wall_s": round(measured_wall, 2),
        "sim_per_wall": round(result["sim_seconds"] / measured_wall, 2) if measured_wall else None,
        "peak_rss_mb": result["peak_rss_mb"],
        "events": result["events"],
        "events_per_wall_s": round(result["events"] / measured_wall) if measured_wall else None,
        "msgs_per_node_per_s": result["msgs_per_node_per_s"],
        "bytes_per_node_per_s": result["bytes_per_node_per_s"],
        "converged": result["converged"],
        "false_positives": result["false_positives"],
        "trace_sha256": result["trace_sha256"],
    }


def run(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="benchmarks sim_scale", description=__doc__)
    parser.add_argument("--sizes", default="100,500,1000,2000",
                        help="comma-separated cluster sizes")
    parser.add_argument("--duration", type=float, default=60.0, help="measured sim seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenario", default="steady")
    parser.add_argument("--loss", type=float, default=0.0)
    parser.add_argument("--no-lifeguard", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    header = (f"{'nodes':>6}{'sim s':>7}{'wall s':>9}{'setup s':>9}{'measured s':>12}"
              f"{'sim/wall':>10}{'RSS MB':>9}{'events/s':>10}{'msg/n/s':>9}{'conv':>6}")
    print(header, flush=True)
    rows = []
    for n in sizes:
        r = _one(n, args)
        rows.append(r)
        print(f"{n:>6}{r['sim_seconds']:>7.0f}{r['wall_s']:>9.2f}{r['setup_wall_s']:>9.2f}"
              f"{r['measured_wall_s']:>12.2f}{r['sim_per_wall'] or 0:>10.2f}"
              f"{r['peak_rss_mb']:>9.1f}{r['events_per_wall_s'] or 0:>10}"
              f"{r['msgs_per_node_per_s']:>9.2f}{'yes' if r['converged'] else 'NO':>6}",
              flush=True)
    return {
        "suite": "sim_scale",
        "scenario": args.scenario,
        "duration_s": args.duration,
        "seed": args.seed,
        "loss": args.loss,
        "lifeguard": not args.no_lifeguard,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpus": os.cpu_count(),
        "rows": rows,
    }
