"""Command line: ``python -m simulations run SCENARIO ... [--json]`` and ``... demo``.

With ``--json`` exactly one JSON object goes to stdout (DESIGN.md 3.2) and
nothing else does, so scripts can parse it; the human summary is the default.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from simulations.scenarios import LAYERS, SCENARIOS, Options, run_scenario
from swimlib.config import PROFILES


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simulations", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one scenario")
    run.add_argument("scenario", choices=SCENARIOS)
    run.add_argument("--nodes", type=int, default=50)
    run.add_argument("--seed", type=int, default=1)
    run.add_argument("--loss", type=float, default=0.0, help="UDP loss probability, 0..1")
    run.add_argument(
        "--latency-ms", type=float, default=None,
        help="one-way base latency (default: local 0.1, lan 0.5, wan 40); jitter +-20%%",
    )
    run.add_argument(
        "--duration", type=float, default=None,
        help="measured simulated seconds (default depends on the scenario)",
    )
    run.add_argument("--profile", choices=PROFILES, default="lan")
    run.add_argument(
        "--no-lifeguard", action="store_true", help="classic SWIM + suspicion (comparison)"
    )
    run.add_argument(
        "--no-reconnect", action="store_true",
        help="do not emulate Serf's reconnect loop (bare memberlist never heals a split)",
    )
    run.add_argument(
        "--layer", choices=LAYERS, default="membership",
        help="what each host runs: the membership Node (default) or the Serf layer over it",
    )
    run.add_argument(
        "--slow-lag", default="1,3", metavar="LO,HI",
        help="flaky: seconds of lag added to each delivery to a slow node (default 1,3)",
    )
    run.add_argument(
        "--encrypt", action="store_true",
        help="every node encrypts (AES-GCM, one shared key), as an agent with --encrypt",
    )
    run.add_argument("--json", action="store_true", help="print one JSON object")
    demo = sub.add_parser("demo", help="narrated crash in a 50-node LAN cluster")
    demo.add_argument("--nodes", type=int, default=50)
    demo.add_argument("--seed", type=int, default=1)
    return p


def _summary(result: dict[str, Any]) -> str:
    lines = [f"scenario {result['scenario']}: {result['nodes']} nodes, seed {result['seed']}, "
             f"profile {result['profile']}, loss {result['loss']}"]
    width = max(len(k) for k in result)
    for key, value in result.items():
        if key in ("scenario", "nodes", "seed", "profile", "loss"):
            continue
        lines.append(f"  {key:<{width}}  {value}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from simulations.demo import demo

        demo(nodes=args.nodes, seed=args.seed)
        return 0
    if args.nodes < 2:
        _parser().error("--nodes must be at least 2")
    if not 0.0 <= args.loss < 1.0:
        _parser().error("--loss must be in [0, 1)")
    try:
        lo, hi = (float(x) for x in args.slow_lag.split(","))
    except ValueError:
        _parser().error("--slow-lag takes LO,HI in seconds")
    if not 0 <= lo <= hi:
        _parser().error("--slow-lag needs 0 <= LO <= HI")
    lag = (lo, hi)
    opts = Options(
        scenario=args.scenario, nodes=args.nodes, seed=args.seed, profile=args.profile,
        loss=args.loss, latency_ms=args.latency_ms, duration=args.duration,
        lifeguard=not args.no_lifeguard, reconnect=not args.no_reconnect,
        layer=args.layer, slow_lag=lag, encrypt=args.encrypt,
    )
    result = run_scenario(opts)
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        print(_summary(result))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # e.g. `... demo | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
