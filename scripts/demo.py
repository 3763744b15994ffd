#!/usr/bin/env python3
"""``make demo``: lbadapter keeping a real HAProxy in step with a swimlib cluster, on loopback.

No root, nothing installed: three backends (``lbadapter.backend_app`` +
``swimlib agent --tag role=backend --tag port=HTTP``) join ``lbadapter run``,
which runs HAProxy on free 127.0.0.1 ports. The demo sends requests through
HAProxy and counts which backend answered, stops one backend (SIGTERM: its
agent leaves gracefully) and starts another, then shows HAProxy's server
states from the stats CSV and the traffic on the new set.

Every process is started in its own session and stopped by PID on exit,
Ctrl-C included; every wait is bounded. Exits 2 when haproxy is missing.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.lb_churn import (  # noqa: E402 (needs the repository on sys.path)
    BACKEND,
    HAPROXY,
    Procs,
    lbadapter_argv,
    sample,
    start_backend,
    stats_rows,
    wait_port,
)
from lbadapter.testing import free_port  # noqa: E402

#: Bound on each wait (HAProxy up, servers UP/gone); the whole demo takes ~15 s.
WAIT = 30.0


class DemoError(Exception):
    """A step did not happen in time; the message says where the logs are."""


def show_counts(label: str, seen: Counter[str]) -> None:
    counts = "  ".join(f"{name}={n}" for name, n in sorted(seen.items()))
    print(f"{label}: {counts}", flush=True)


def show_servers(stats_port: int) -> None:
    """HAProxy's view of the backend, from the stats page's CSV (``/;csv;norefresh``)."""
    rows = stats_rows(stats_port) or []
    servers = [r for r in rows if r.get("pxname") == BACKEND
               and r.get("svname") not in ("FRONTEND", "BACKEND")]
    print(f"  HAProxy servers in backend '{BACKEND}' (stats CSV /;csv;norefresh):")
    print(f"    {'server':<8} {'status':<8} {'check':<8} {'since (s)':>9} {'requests':>9}")
    for r in sorted(servers, key=lambda r: r["svname"]):
        print(f"    {r['svname']:<8} {r.get('status', ''):<8} {r.get('check_status', ''):<8} "
              f"{r.get('lastchg', ''):>9} {r.get('stot', ''):>9}")
    print(flush=True)


def server_states(stats_port: int) -> dict[str, str]:
    rows = stats_rows(stats_port) or []
    return {r["svname"]: r.get("status", "") for r in rows if r.get("pxname") == BACKEND
            and r.get("svname") not in ("FRONTEND", "BACKEND")}


def follow(stats_port: int, done: Callable[[dict[str, str]], bool], what: str, logdir: Path,
           last: dict[str, str] | None = None) -> float:
    """Print each server state change (from ``last``) until ``done(states)``.

    Returns the seconds taken; raises DemoError after WAIT seconds.
    """
    start = time.monotonic()
    last = dict(last or {})
    while time.monotonic() - start < WAIT:
        states = server_states(stats_port)
        for name in sorted(set(states) | set(last)):
            old, new = last.get(name, "(none)"), states.get(name, "(removed)")
            if old != new and not (old == "(none)" and new == "(removed)"):
                print(f"    +{time.monotonic() - start:5.2f}s  {name}: {old} -> {new}",
                      flush=True)
        last = states
        if done(states):
            return time.monotonic() - start
        time.sleep(0.05)
    raise DemoError(f"HAProxy did not get to {what} within {WAIT:.0f}s (now: {last}); "
                    f"logs in {logdir}")


def exactly_up(want: set[str]) -> Callable[[dict[str, str]], bool]:
    return lambda states: {n for n, st in states.items() if st.startswith("UP")} == want


def demo(workdir: Path, requests: int, haproxy: str) -> None:
    procs = Procs(workdir / "logs")
    logdir = procs.logdir
    try:
        gossip, listen, stats = free_port(), free_port(), free_port()
        print(f"Starting lbadapter: HAProxy on 127.0.0.1:{listen}, gossip on 127.0.0.1:{gossip}")
        lb = procs.start("lbadapter", lbadapter_argv("lb", gossip, free_port(), listen, stats,
                                                     workdir / "lbadapter-state", haproxy))
        if not wait_port(stats, WAIT, alive=lb):
            raise DemoError(f"lbadapter/HAProxy did not come up; see {logdir}/lbadapter.log")
        print(f"Stats page: http://127.0.0.1:{stats}/   (CSV: http://127.0.0.1:{stats}/;csv;norefresh)")
        print(flush=True)

        names = ["s1", "s2", "s3"]
        print(f"Starting backends {', '.join(names)} (backend_app + swimlib agent each) ...",
              flush=True)
        backends = {n: start_backend(procs, n, f"127.0.0.1:{gossip}") for n in names}
        print("  HAProxy server states as they change (from the stats CSV):")
        took = follow(stats, exactly_up(set(names)), f"{names} UP", logdir)
        print(f"  HAProxy lists {', '.join(names)} as UP after {took:.1f}s")
        show_servers(stats)
        show_counts(f"{requests} requests through HAProxy", sample(listen, requests))
        print(flush=True)

        print("Stopping s2: SIGTERM to its agent, which leaves the cluster gracefully ...",
              flush=True)
        s2 = backends.pop("s2")
        before = server_states(stats)
        Procs.signal(s2.agent, signal.SIGTERM)
        took = follow(stats, lambda st: st.get("s2", "MAINT") == "MAINT", "s2 gone or MAINT",
                      logdir, before)
        print(f"  HAProxy took s2 out {took:.1f}s after the SIGTERM (drained, then removed); "
              "its app can stop now")
        procs.stop(s2.agent, timeout=10.0)
        procs.stop(s2.app, timeout=10.0)
        show_counts(f"{requests} requests through HAProxy", sample(listen, requests))
        print(flush=True)

        print("Starting s4 ...", flush=True)
        before = server_states(stats)
        backends["s4"] = start_backend(procs, "s4", f"127.0.0.1:{gossip}")
        took = follow(stats, exactly_up(set(backends)), f"{sorted(backends)} UP", logdir,
                      before)
        print(f"  HAProxy sends s4 traffic {took:.1f}s after its agent started "
              "(after the first good health check)")
        show_servers(stats)
        show_counts(f"{requests} requests through HAProxy", sample(listen, requests))
        print(flush=True)
    finally:
        print(f"Stopping {len(procs.started)} processes (by PID) ...", flush=True)
        procs.stop_all()


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/demo.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=20, help="requests per sample (20)")
    p.add_argument("--haproxy", default=HAPROXY, help=f"haproxy binary ({HAPROXY})")
    p.add_argument("--workdir", help="logs and HAProxy state (default: a temp dir, removed "
                                     "after a successful run)")
    args = p.parse_args(argv)
    haproxy = shutil.which(args.haproxy)
    if haproxy is None:
        print(f"demo: haproxy ({args.haproxy}) is not installed. Install it with:\n"
              "    sudo apt-get install haproxy\n"
              "(nothing else is needed: the demo runs everything else from this checkout "
              "on 127.0.0.1, without root)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="swimlib-demo-"))
    started = time.monotonic()
    try:
        demo(workdir, args.requests, haproxy)
    except KeyboardInterrupt:
        print("demo: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    except (DemoError, RuntimeError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    print(f"Demo done in {time.monotonic() - started:.0f}s.")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
