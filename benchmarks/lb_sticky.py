"""lb_churn's two-balancer case: sticky clients alternating between two lbadapters.

Two ``lbadapter run --sticky cookie`` balancers follow the same cluster on
their own. Each client keeps one keep-alive connection to each balancer and
sends its requests to them in turn, carrying the cookie it was last given,
as a browser behind DNS round robin would. Backends join, leave and crash
on lb_churn's schedule.

What a perfect pair of balancers gives, and what this measures:

* no failed request;
* a client changes backend only when its backend went away: ``moves`` (the
  changes seen) equals ``pinned`` (for each leave or crash, the clients
  whose last answer came from that backend), and no move is unexplained;
* both balancers name, number and cookie every server identically
  (compared on their stats pages once the churn is over).

Every process is started by :class:`benchmarks.lb_churn.Procs` and stopped
by PID; every wait is bounded.
"""

from __future__ import annotations

import itertools
import random
import socket
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.lb_churn import (
    BACKEND,
    LOOPBACK,
    Action,
    Balancer,
    ClientThreads,
    Options,
    Phase,
    Procs,
    adapter_state,
    classify,
    connection_dropped,
    lbadapter_argv,
    read_response,
    summarize,
    wait_port,
    wait_up,
)
from lbadapter.haproxy import UnexpectedAnswer, parse_stat_csv
from lbadapter.testing import free_port

#: One request of a sticky client: start (s since load start), latency (s),
#: error kind or None, backend that answered, balancer index.
StickySample = tuple[float, float, str | None, str, int]

COOKIE = "SRVID"
#: After the churn, how long the load goes on so that the last departure's moves are seen.
SETTLE = 5.0


class StickyLoad(ClientThreads):
    """Paced sticky clients, each alternating between ``ports`` (one connection to each)."""

    def __init__(self, ports: Sequence[int], clients: int, rate: float,
                 timeout: float = 5.0, cookie: str = COOKIE) -> None:
        super().__init__(timeout)
        self.ports = list(ports)
        self.clients = clients
        self.rate = rate
        self.cookie = cookie
        self.samples: list[list[StickySample]] = []
        self.reconnects = 0

    def start(self) -> None:
        self.t0 = time.monotonic()
        for i in range(self.clients):
            out: list[StickySample] = []
            self.samples.append(out)
            offset = i / max(1, self.clients) / self.rate
            self._spawn(self._client, out, offset, i)

    def _request(self, cookie: str | None) -> bytes:
        extra = f"Cookie: {cookie}\r\n" if cookie else ""
        return f"GET / HTTP/1.1\r\nHost: lb\r\nUser-Agent: lb_sticky\r\n{extra}\r\n".encode()

    def _client(self, out: list[StickySample], offset: float, index: int) -> None:
        period = 1.0 / self.rate
        next_at = self.t0 + offset
        socks: list[socket.socket | None] = [None] * len(self.ports)
        cookie: str | None = None
        turn = index % len(self.ports)  # half the clients start on each balancer
        try:
            while not self.stopping.wait(max(0.0, next_at - time.monotonic())):
                next_at = max(next_at + period, time.monotonic() - period)
                lb, turn = turn, (turn + 1) % len(self.ports)
                sock = socks[lb]
                if sock is not None and connection_dropped(sock):
                    sock.close()
                    sock = socks[lb] = None
                    self.reconnects += 1
                start = time.monotonic()
                error: str | None = None
                backend = ""
                try:
                    if sock is None:
                        sock = socks[lb] = socket.create_connection(
                            (LOOPBACK, self.ports[lb]), timeout=self.timeout)
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sock.sendall(self._request(cookie))
                    set_cookies: list[str] = []
                    status, body, keep = read_response(sock, set_cookies)
                    backend = body.decode(errors="replace").strip()
                    if status != 200:
                        error = f"http-{status}"
                    cookie = _next_cookie(cookie, set_cookies, self.cookie)
                    if not keep:
                        sock.close()
                        socks[lb] = None
                except (OSError, ValueError, IndexError) as exc:
                    error = classify(exc)
                    if sock is not None:
                        sock.close()
                    socks[lb] = None
                out.append((start - self.t0, time.monotonic() - start, error, backend, lb))
        finally:
            for s in socks:
                if s is not None:
                    s.close()


def _next_cookie(current: str | None, set_cookies: list[str], name: str) -> str | None:
    """The cookie a browser would send next (an expired one is dropped)."""
    for header in set_cookies:
        pair = header.split(";", 1)[0].strip()
        if pair.startswith(f"{name}="):
            return pair if pair != f"{name}=" else None
    return current


def sticky_moves(clients: Sequence[Sequence[StickySample]],
                 departures: Sequence[tuple[float, str]]) -> dict[str, Any]:
    """Moves seen, clients pinned to each departing backend, and moves nothing explains.

    A client is pinned to the backend of its last successful answer. A move
    from backend X at time t is explained if X left or crashed before t.
    """
    moves = pinned = 0
    unexplained: list[tuple[float, str, str]] = []
    gone_at: dict[str, float] = {}
    for at, name in departures:
        gone_at.setdefault(name, at)
    for samples in clients:
        ok = sorted((s[0], s[3]) for s in samples if s[2] is None)
        for at, name in departures:
            before = [b for t, b in ok if t < at]
            if before and before[-1] == name:
                pinned += 1
        for (_, prev), (t, now) in itertools.pairwise(ok):
            if now == prev:
                continue
            moves += 1
            if gone_at.get(prev, float("inf")) > t:
                unexplained.append((round(t, 3), prev, now))
    return {"moves": moves, "pinned": pinned, "unexplained": unexplained[:50],
            "unexplained_count": len(unexplained)}


def server_identity(state_dir: Path, backend: str) -> dict[str, tuple[str, str]] | None:
    """Server name -> (ID, cookie) on one balancer, from its admin socket (the stats page
    leaves the cookie column empty); servers in MAINT are left out: a deleted server may
    linger there while idle connections hold it."""
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(state_dir / "admin.sock"))
            sock.sendall(f"show stat {backend} 4 -1\n".encode())
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            for _ in range(10_000):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        rows = parse_stat_csv(b"".join(chunks).decode(errors="replace"))
    except (OSError, UnexpectedAnswer):
        return None
    return {r["svname"]: (r.get("sid", ""), r.get("cookie", "")) for r in rows
            if r.get("svname") not in ("FRONTEND", "BACKEND")
            and not r.get("status", "").startswith("MAINT")}


def compare_identities(state_dirs: Sequence[Path], backend: str, timeout: float = 20.0
                       ) -> dict[str, Any]:
    """Poll (bounded) until every balancer shows the same servers, IDs and cookies."""
    deadline = time.monotonic() + timeout
    views: list[dict[str, tuple[str, str]] | None] = []
    while True:
        views = [server_identity(d, backend) for d in state_dirs]
        same = all(v is not None for v in views) and all(v == views[0] for v in views)
        if same or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    first = views[0] or {}
    return {"identical": same, "servers": {k: list(v) for k, v in sorted(first.items())},
            "all_have_cookies": bool(first) and all(cookie for _, cookie in first.values()),
            "views": [None if v is None else {k: list(x) for k, x in sorted(v.items())}
                      for v in views] if not same else None}


def run_two_balancers(opts: Options, schedule: list[Action]) -> dict[str, Any]:
    """Two sticky lbadapters under churn; the summary lb_churn prints and stores."""
    workdir = opts.workdir / "two-balancers"
    procs = Procs(workdir / "logs")
    load: StickyLoad | None = None
    balancers: list[Balancer] = []
    try:
        for i in (1, 2):
            b = Balancer("lbadapter", free_port(), free_port(), free_port(),
                         workdir / f"state{i}")
            argv = lbadapter_argv(f"lb{i}", b.gossip_port, free_port(), b.listen_port,
                                  b.stats_port, b.state_dir)
            argv += ["--sticky", "cookie", "--peer-port", str(free_port())]
            if balancers:
                argv += ["--join", balancers[0].join_addr]
            b.proc = procs.start(f"balancer-lb{i}", argv)
            balancers.append(b)
        for b in balancers:
            if not wait_port(b.stats_port, opts.startup_timeout, alive=b.proc):
                raise RuntimeError(f"two-balancers: a stats page never answered; see "
                                   f"{workdir}/logs")
        phase = Phase(opts, procs, balancers[0], random.Random(opts.seed))
        for _ in range(opts.initial):
            phase.join()
        for b in balancers:
            if not wait_up(b.stats_port, set(phase.live), opts.startup_timeout):
                raise RuntimeError(f"two-balancers: backends {sorted(phase.live)} not all UP "
                                   f"on {b.state_dir.name} after {opts.startup_timeout}s")
        load = StickyLoad([b.listen_port for b in balancers], opts.sticky_clients,
                          opts.sticky_rate, timeout=opts.timeout)
        load.start()
        phase.play(schedule, load.t0, opts.duration + SETTLE)
        elapsed = load.stop()
        identity = compare_identities([b.state_dir for b in balancers], BACKEND)
        alive = [b.proc is not None and b.proc.poll() is None for b in balancers]
    finally:
        if load is not None:
            load.stop()
        procs.stop_all()
    flat = [s[:4] for out in load.samples for s in out]
    departures = [(t, name) for t, kind, name in phase.events if kind in ("leave", "crash")]
    stats = summarize(flat, elapsed)
    stats.update(sticky_moves(load.samples, departures))
    stats["clients"] = opts.sticky_clients
    stats["per_balancer"] = dict(Counter(s[4] + 1 for out in load.samples for s in out))
    failures = sorted((s[0], f"lb{s[4] + 1}", s[2]) for out in load.samples for s in out
                      if s[2])
    return {
        "mode": "two-balancers",
        "sticky": stats,
        "load_seconds": round(elapsed, 2),
        "keepalive_reconnects": load.reconnects,
        "events": phase.events,
        "failures": [(round(t, 3), lb, err) for t, lb, err in failures[:200]],
        "identity": identity,
        "balancers": [_info(b.state_dir, ok) for b, ok in zip(balancers, alive, strict=True)],
    }


def _info(state_dir: Path, alive: bool) -> dict[str, Any]:
    """lb_churn's balancer summary for one of the two (its own state dir)."""
    return {"alive_at_end": alive, "state_dir": str(state_dir)} | adapter_state(state_dir)


def format_two_balancers(r: dict[str, Any]) -> str:
    """The case's own lines under lb_churn's table."""
    s, ident = r["sticky"], r["identity"]
    reloads = [str((b.get("haproxy") or {}).get("reloads", "?")) for b in r["balancers"]]
    return (f"two-balancers: {s['clients']} sticky clients, moves {s['moves']} = clients "
            f"pinned to departing backends {s['pinned']} (unexplained moves "
            f"{s['unexplained_count']}); server names/IDs/cookies identical on both: "
            f"{'yes' if ident['identical'] else 'NO'} ({len(ident['servers'])} servers"
            f"{'' if ident['all_have_cookies'] else ', some without a cookie!'}); "
            f"reloads {'/'.join(reloads)}")
