"""lb_churn: client errors and latency while backends join, leave and crash.

``python -m benchmarks lb_churn [--quick] [--duration S] [--json out.json]``

Three setups face the same churn, one after the other in one run:

* ``lbadapter``: ``lbadapter run`` (runtime API, no reloads for membership).
* ``two-balancers``: two ``lbadapter run --sticky cookie`` on the same cluster,
  with sticky clients alternating between them (``benchmarks.lb_sticky``:
  failed requests, backend moves against clients pinned to departing
  backends, server names/IDs/cookies compared on both).
* ``restart``: the original approach, implemented here (``restart-baseline``
  below): an embedded swimlib agent whose member events, coalesced like
  ``serf agent`` does for event handlers (3 s / 1 s), re-render the config
  with lbadapter's own template and *restart* HAProxy (SIGTERM, wait, start),
  as the shell handlers did through a process supervisor.

Both render the same template, so the HAProxy settings (retries, redispatch,
retry-on, health checks) are identical; only how a change is applied differs.

Churn (``churn_schedule``): every 2 s a backend joins or leaves gracefully
(the agent leaves first, its app stops 5 s later), and every 10 s one crashes
(SIGKILL of app and agent). Victims come from a seeded RNG, so both balancers
see the same sequence. Load (``Load``): paced keep-alive clients, which check
for a server-closed connection before reusing it as urllib3 and browsers do,
plus an open loop of new connections (``Connection: close``); 300 req/s by
default, all on 127.0.0.1. A request fails on any socket error, a timeout
(5 s), a truncated answer or a status other than 200.

The loopback helpers (``Procs``, ``start_backend``, ``lbadapter_argv``,
``stats_rows``, ``sample``) are shared with ``scripts/demo.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import queue
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.agents import SWIMLIB_COMMAND, precompile
from lbadapter.testing import free_port
from swimlib.testing import ProcessGroup, send_signal, stop_process

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
REPO = Path(__file__).resolve().parent.parent
#: Children import lbadapter/swimlib/benchmarks from this checkout, whatever the cwd.
_CHILD_ENV = {"PYTHONUNBUFFERED": "1",
              "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                          os.environ.get("PYTHONPATH")]))}
BACKEND = "app"  # lbadapter's default backend name, also in the baseline's config
LOOPBACK = "127.0.0.1"
MODES = ("lbadapter", "restart", "two-balancers")


# ----------------------------------------------------------------- processes


def wait_port(port: int, timeout: float, host: str = LOOPBACK,
              alive: subprocess.Popen[bytes] | None = None, interval: float = 0.05) -> bool:
    """True once something accepts TCP on ``port``; False at the timeout or if ``alive`` exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        if alive is not None and alive.poll() is not None:
            return False
        time.sleep(interval)
    return False


class Procs:
    """Every process we start (over :class:`swimlib.testing.ProcessGroup`): each in
    its own session, stopped by PID, waits bounded. Children of our children
    (HAProxy under lbadapter) share their session, so :meth:`stop_all` finds
    and kills them by PID too, even after the parent died."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.group = ProcessGroup(logdir, env=_CHILD_ENV)

    @property
    def started(self) -> list[subprocess.Popen[bytes]]:
        """Every process started so far, oldest first."""
        return [child.popen for child in self.group.children]

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        popen: subprocess.Popen[bytes] = self.group.start(
            name, argv, env=env, append=True, cwd=Path.cwd()).popen
        return popen

    @staticmethod
    def signal(p: subprocess.Popen[bytes] | None, sig: int) -> None:
        if p is not None:
            send_signal(p, sig)

    def stop(self, p: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        return None if p is None else stop_process(p, timeout)

    def stop_all(self, timeout: float = 8.0) -> None:
        """SIGTERM everything still running, SIGKILL what is left after ``timeout``."""
        self.group.stop_all(timeout)


# ----------------------------------------------------------------- cluster


@dataclass
class Backend:
    """One backend node: an HTTP app and a swimlib agent tagged role=backend, port=HTTP."""

    name: str
    http_port: int
    gossip_port: int
    rpc_port: int
    app: subprocess.Popen[bytes] | None = None
    agent: subprocess.Popen[bytes] | None = None


def start_backend(procs: Procs, name: str, join: str, ready_timeout: float = 10.0) -> Backend:
    """Start the app, wait until it listens (bounded), then its agent joining ``join``."""
    b = Backend(name, free_port(), free_port(), free_port())
    b.app = procs.start(f"{name}-app", [sys.executable, "-m", "lbadapter.backend_app",
                                        "--name", name, "--listen", f"{LOOPBACK}:{b.http_port}"])
    if not wait_port(b.http_port, ready_timeout, alive=b.app):
        raise RuntimeError(f"backend app {name} did not listen on {b.http_port} "
                           f"within {ready_timeout}s (log: {procs.logdir}/{name}-app.log)")
    b.agent = procs.start(f"{name}-agent", [
        *SWIMLIB_COMMAND, "agent", "--node", name,
        "--bind", f"{LOOPBACK}:{b.gossip_port}", "--rpc-addr", f"{LOOPBACK}:{b.rpc_port}",
        "--tag", "role=backend", "--tag", f"port={b.http_port}", "--join", join])
    return b


@dataclass
class Balancer:
    """Where a balancer listens; ``proc`` is lbadapter or the restart baseline."""

    mode: str
    gossip_port: int
    listen_port: int
    stats_port: int
    state_dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def join_addr(self) -> str:
        return f"{LOOPBACK}:{self.gossip_port}"


def lbadapter_argv(node: str, gossip: int, rpc: int, listen: int, stats: int,
                   state_dir: Path, haproxy: str = HAPROXY) -> list[str]:
    return [sys.executable, "-m", "lbadapter.cli", "run", "--node", node,
            "--bind", f"{LOOPBACK}:{gossip}", "--rpc-addr", f"{LOOPBACK}:{rpc}",
            "--backend-tag", "role=backend", "--listen", f"{LOOPBACK}:{listen}",
            "--stats", f"{LOOPBACK}:{stats}", "--haproxy", haproxy,
            "--state-dir", str(state_dir)]


def start_balancer(procs: Procs, mode: str, state_dir: Path) -> Balancer:
    b = Balancer(mode, free_port(), free_port(), free_port(), state_dir)
    if mode == "lbadapter":
        argv = lbadapter_argv("lb", b.gossip_port, free_port(), b.listen_port, b.stats_port,
                              state_dir)
    else:
        argv = [sys.executable, "-m", "benchmarks.lb_churn", "restart-baseline", "--node", "lb",
                "--bind", f"{LOOPBACK}:{b.gossip_port}",
                "--listen", f"{LOOPBACK}:{b.listen_port}",
                "--stats", f"{LOOPBACK}:{b.stats_port}", "--state-dir", str(state_dir)]
    b.proc = procs.start(f"balancer-{mode}", argv)
    return b


#: Stats requests go straight to loopback, never through an http_proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout: float = 2.0) -> str | None:
    """The body of a 200 answer, or None (any error, any other status)."""
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            body: bytes = resp.read()
            return body.decode(errors="replace")
    except (urllib.error.URLError, OSError, ValueError):
        return None


def stats_rows(stats_port: int, host: str = LOOPBACK) -> list[dict[str, str]] | None:
    """HAProxy's stats CSV (``/;csv;norefresh``) as dicts, or None when unreachable."""
    from lbadapter.haproxy import UnexpectedAnswer, parse_stat_csv

    text = http_get(f"http://{host}:{stats_port}/;csv;norefresh")
    if text is None:
        return None
    try:
        return parse_stat_csv(text)
    except UnexpectedAnswer:
        return None


def up_names(stats_port: int) -> set[str] | None:
    from lbadapter.haproxy import up_servers

    rows = stats_rows(stats_port)
    return None if rows is None else up_servers(rows, BACKEND)


def wait_up(stats_port: int, want: set[str], timeout: float) -> bool:
    """Until the backend's UP servers are exactly ``want`` (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if up_names(stats_port) == want:
            return True
        time.sleep(0.2)
    return False


def sample(port: int, count: int, host: str = LOOPBACK) -> Counter[str]:
    """Send ``count`` requests on new connections; count the answering backends (or errors)."""
    seen: Counter[str] = Counter()
    for _ in range(count):
        body = http_get(f"http://{host}:{port}/")
        seen[body.strip() if body is not None else "error"] += 1
    return seen


# ----------------------------------------------------------------- load


class EmptyResponse(OSError):
    """The connection closed before any byte of an answer."""


class TruncatedResponse(OSError):
    """The connection closed in the middle of an answer."""


REQUEST_KEEPALIVE = b"GET / HTTP/1.1\r\nHost: lb\r\nUser-Agent: lb_churn\r\n\r\n"
REQUEST_CLOSE = b"GET / HTTP/1.1\r\nHost: lb\r\nUser-Agent: lb_churn\r\nConnection: close\r\n\r\n"


def read_response(sock: socket.socket, set_cookies: list[str] | None = None
                  ) -> tuple[int, bytes, bool]:
    """(status, body, server keeps the connection) for one HTTP/1.1 answer; the values of
    its ``Set-Cookie`` headers are appended to ``set_cookies`` when given."""
    buf = bytearray()
    while (end := buf.find(b"\r\n\r\n")) < 0:
        if len(buf) > 65536:
            raise TruncatedResponse("response head too large")
        chunk = sock.recv(65536)
        if not chunk:
            raise TruncatedResponse("closed in the head") if buf else EmptyResponse("no answer")
        buf += chunk
    lines = bytes(buf[:end]).split(b"\r\n")
    status = int(lines[0].split()[1])
    length: int | None = None
    keep = not lines[0].startswith(b"HTTP/1.0")
    for line in lines[1:]:
        key, _, value = line.partition(b":")
        key = key.strip().lower()
        if key == b"content-length":
            length = int(value)
        elif key == b"connection":
            keep = value.strip().lower() != b"close"
        elif key == b"set-cookie" and set_cookies is not None:
            set_cookies.append(value.strip().decode("latin-1"))
    body = bytearray(buf[end + 4:])
    while length is None or len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            if length is None:
                return status, bytes(body), False
            raise TruncatedResponse("closed in the body")
        body += chunk
    return status, bytes(body[:length]), keep


#: Exception type -> error kind, first match wins (subclasses before their bases).
_ERROR_KINDS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (EmptyResponse, "empty"), (TruncatedResponse, "truncated"),
    (ConnectionRefusedError, "refused"), (ConnectionResetError, "reset"),
    (BrokenPipeError, "broken-pipe"), (TimeoutError, "timeout"),
    ((ValueError, IndexError), "bad-response"))


def classify(exc: BaseException) -> str:
    """A short, stable name for a failed request's exception."""
    for kind, name in _ERROR_KINDS:
        if isinstance(exc, kind):
            return name
    return type(exc).__name__


def connection_dropped(sock: socket.socket) -> bool:
    """urllib3's check before reusing an idle connection: readable means closed (or junk)."""
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


#: One request: start (s since load start), latency (s), error kind or None, backend.
Sample = tuple[float, float, str | None, str]


class ClientThreads:
    """Load-generating threads: started by :meth:`_spawn`, all stopped by :meth:`stop`,
    each wait bounded by ``timeout``."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.stopping = threading.Event()
        self.t0 = 0.0
        self._threads: list[threading.Thread] = []

    def _spawn(self, target: Any, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> float:
        """Stop every client (bounded join); returns the load's duration in seconds."""
        self.stopping.set()
        elapsed = time.monotonic() - self.t0
        deadline = time.monotonic() + self.timeout + 2.0
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return elapsed


class Load(ClientThreads):
    """Paced keep-alive clients plus an open loop of new connections, in threads.

    Every thread keeps its own sample list (no lock on the hot path); the
    lists are merged after :meth:`stop`. Waits are bounded by ``timeout``.
    """

    def __init__(self, port: int, keepalive_clients: int, keepalive_rate: float,
                 open_rate: float, open_workers: int = 24, timeout: float = 5.0) -> None:
        super().__init__(timeout)
        self.port = port
        self.keepalive_clients = keepalive_clients
        self.keepalive_rate = keepalive_rate
        self.open_rate = open_rate
        self.open_workers = open_workers
        self.keepalive: list[list[Sample]] = []
        self.open: list[list[Sample]] = []
        self.reconnects = 0  # keep-alive connections found closed before reuse
        self.skipped = 0  # open-loop requests not sent: every worker busy
        self._queue: queue.Queue[float] = queue.Queue(maxsize=open_workers * 4)

    def start(self) -> None:
        self.t0 = time.monotonic()
        for i in range(self.keepalive_clients):
            out: list[Sample] = []
            self.keepalive.append(out)
            offset = i / max(1, self.keepalive_clients) / self.keepalive_rate
            self._spawn(self._keepalive_client, out, offset)
        if self.open_rate > 0:
            for _ in range(self.open_workers):
                out = []
                self.open.append(out)
                self._spawn(self._open_worker, out)
            self._spawn(self._open_dispatcher)

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((LOOPBACK, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _keepalive_client(self, out: list[Sample], offset: float) -> None:
        period = 1.0 / self.keepalive_rate
        next_at = self.t0 + offset
        sock: socket.socket | None = None
        try:
            while not self.stopping.wait(max(0.0, next_at - time.monotonic())):
                next_at = max(next_at + period, time.monotonic() - period)  # no bursts
                if sock is not None and connection_dropped(sock):
                    sock.close()
                    sock = None
                    self.reconnects += 1
                start = time.monotonic()
                error: str | None = None
                backend = ""
                try:
                    if sock is None:
                        sock = self._connect()
                    sock.sendall(REQUEST_KEEPALIVE)
                    status, body, keep = read_response(sock)
                    backend = body.decode(errors="replace").strip()
                    if status != 200:
                        error = f"http-{status}"
                    if not keep:
                        sock.close()
                        sock = None
                except (OSError, ValueError, IndexError) as exc:
                    error = classify(exc)
                    if sock is not None:
                        sock.close()
                    sock = None
                out.append((start - self.t0, time.monotonic() - start, error, backend))
        finally:
            if sock is not None:
                sock.close()

    def _open_dispatcher(self) -> None:
        period = 1.0 / self.open_rate
        next_at = self.t0
        while not self.stopping.wait(max(0.0, next_at - time.monotonic())):
            next_at += period
            try:
                self._queue.put_nowait(next_at)
            except queue.Full:
                self.skipped += 1

    def _open_worker(self, out: list[Sample]) -> None:
        while not self.stopping.is_set():
            try:
                self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            start = time.monotonic()
            error: str | None = None
            backend = ""
            try:
                with self._connect() as sock:
                    sock.sendall(REQUEST_CLOSE)
                    status, body, _keep = read_response(sock)
                backend = body.decode(errors="replace").strip()
                if status != 200:
                    error = f"http-{status}"
            except (OSError, ValueError, IndexError) as exc:
                error = classify(exc)
            out.append((start - self.t0, time.monotonic() - start, error, backend))


# ----------------------------------------------------------------- statistics


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of already sorted values; None if empty."""
    if not sorted_values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile out of range: {q}")
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(n*q/100), at least 1
    return sorted_values[int(rank) - 1]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000.0, 2)


def summarize(samples: Sequence[Sample], duration: float) -> dict[str, Any]:
    """Requests, failures by kind, achieved rate, latency percentiles (ms, all requests)."""
    latencies = sorted(s[1] for s in samples)
    errors = Counter(s[2] for s in samples if s[2] is not None)
    backends = Counter(s[3] for s in samples if s[2] is None)
    return {
        "requests": len(samples),
        "failed": sum(errors.values()),
        "errors": dict(sorted(errors.items())),
        "req_per_s": round(len(samples) / duration, 1) if duration > 0 else 0.0,
        "p50_ms": _ms(percentile(latencies, 50)),
        "p99_ms": _ms(percentile(latencies, 99)),
        "max_ms": _ms(latencies[-1] if latencies else None),
        "backends": dict(sorted(backends.items())),
    }


@dataclass(frozen=True)
class Action:
    """A churn step at ``at`` seconds after the load starts: join, leave or crash."""

    at: float
    kind: str


def churn_schedule(duration: float, change_every: float = 2.0, crash_every: float = 10.0,
                   initial: int = 4, min_live: int = 2) -> list[Action]:
    """The churn plan: one change every ``change_every`` s, a crash every ``crash_every`` s.

    Leaves and joins alternate around ``initial`` live backends; a crash takes
    the place of that tick's change and the next tick joins to make up for
    it. The live count never drops below ``min_live``.
    """
    if change_every <= 0:
        raise ValueError("change_every must be positive")
    crash_ticks = round(crash_every / change_every) if crash_every > 0 else 0
    actions: list[Action] = []
    live, last = initial, "join"
    ticks = int((duration - 1e-9) // change_every)
    for tick in range(1, ticks + 1):
        if crash_ticks and tick % crash_ticks == 0:
            kind = "crash" if live > min_live else "join"
        elif live < initial or live <= min_live:
            kind = "join"
        elif live > initial:
            kind = "leave"
        else:
            kind = "leave" if last != "leave" else "join"
        live += 1 if kind == "join" else -1
        if kind != "crash":
            last = kind
        actions.append(Action(round(tick * change_every, 6), kind))
    return actions


# ----------------------------------------------------------------- one phase


@dataclass
class Options:
    duration: float
    change_every: float
    crash_every: float
    initial: int
    keepalive_clients: int
    keepalive_rate: float
    open_rate: float
    timeout: float
    app_stop_delay: float
    seed: int
    modes: list[str]
    workdir: Path
    startup_timeout: float = 60.0
    #: The two-balancer case (benchmarks.lb_sticky): sticky clients and their rate each.
    sticky_clients: int = 16
    sticky_rate: float = 15.0


@dataclass
class Phase:
    """One balancer under churn; events are (seconds since load start, kind, backend)."""

    opts: Options
    procs: Procs
    balancer: Balancer
    rng: random.Random
    live: dict[str, Backend] = field(default_factory=dict)
    events: list[tuple[float, str, str]] = field(default_factory=list)
    pending_app_stops: list[tuple[float, Backend]] = field(default_factory=list)
    next_id: int = 1

    def join(self) -> str:
        name = f"b{self.next_id}"
        self.next_id += 1
        self.live[name] = start_backend(self.procs, name, self.balancer.join_addr)
        return name

    def leave(self, now: float) -> str:
        name = self.rng.choice(sorted(self.live))
        b = self.live.pop(name)
        Procs.signal(b.agent, signal.SIGTERM)  # graceful leave; the app keeps serving a while
        self.pending_app_stops.append((now + self.opts.app_stop_delay, b))
        return name

    def crash(self) -> str:
        name = self.rng.choice(sorted(self.live))
        b = self.live.pop(name)
        Procs.signal(b.agent, signal.SIGKILL)
        Procs.signal(b.app, signal.SIGKILL)
        return name

    def stop_due_apps(self, now: float) -> None:
        due = [b for at, b in self.pending_app_stops if at <= now]
        self.pending_app_stops = [(at, b) for at, b in self.pending_app_stops if at > now]
        for b in due:
            Procs.signal(b.app, signal.SIGTERM)

    def play(self, schedule: Sequence[Action], t0: float, until: float) -> None:
        """Carry out ``schedule`` (times in seconds since ``t0``, a monotonic
        stamp), noting each in :attr:`events`, then keep time until ``until``."""
        for action in schedule:
            self._wait_until(t0, action.at)
            now = time.monotonic() - t0
            if action.kind == "join":
                name = self.join()
            elif action.kind == "leave":
                name = self.leave(now)
            else:
                name = self.crash()
            self.events.append((round(now, 3), action.kind, name))
        self._wait_until(t0, until)

    def _wait_until(self, t0: float, at: float) -> None:
        while (now := time.monotonic() - t0) < at:
            self.stop_due_apps(now)
            time.sleep(min(0.05, at - now))


def run_phase(mode: str, opts: Options, schedule: list[Action]) -> dict[str, Any]:
    """Start a balancer and backends, load and churn them, return the summaries."""
    workdir = opts.workdir / mode
    procs = Procs(workdir / "logs")
    load: Load | None = None
    try:
        balancer = start_balancer(procs, mode, workdir / "state")
        phase = Phase(opts, procs, balancer, random.Random(opts.seed))
        if not wait_port(balancer.stats_port, opts.startup_timeout, alive=balancer.proc):
            raise RuntimeError(f"{mode}: stats page never answered; see {workdir}/logs")
        for _ in range(opts.initial):
            phase.join()
        if not wait_up(balancer.stats_port, set(phase.live), opts.startup_timeout):
            raise RuntimeError(f"{mode}: backends {sorted(phase.live)} not all UP after "
                               f"{opts.startup_timeout}s (UP: {up_names(balancer.stats_port)})")
        load = Load(balancer.listen_port, opts.keepalive_clients, opts.keepalive_rate,
                    opts.open_rate, timeout=opts.timeout)
        load.start()
        phase.play(schedule, load.t0, opts.duration)
        elapsed = load.stop()
        balancer_alive = balancer.proc is not None and balancer.proc.poll() is None
    finally:
        if load is not None:
            load.stop()  # idempotent; here for the error paths
        procs.stop_all()
    ka = [s for out in load.keepalive for s in out]
    op = [s for out in load.open for s in out]
    failures = sorted((s[0], "keepalive" if i == 0 else "new-connection", s[2])
                      for i, samples in enumerate((ka, op)) for s in samples if s[2])
    return {
        "mode": mode,
        "keepalive": summarize(ka, elapsed),
        "new_connection": summarize(op, elapsed),
        "load_seconds": round(elapsed, 2),
        "keepalive_reconnects": load.reconnects,
        "open_loop_skipped": load.skipped,
        "events": phase.events,
        "failures": [(round(t, 3), kind, err) for t, kind, err in failures[:200]],
        "balancer": balancer_info(mode, workdir, balancer_alive),
    }


_CLOSED = re.compile(r"^restart \d+: .* frontend closed for (\d+) ms", re.M)


def balancer_info(mode: str, workdir: Path, alive: bool) -> dict[str, Any]:
    """What the balancer did: restarts and downtime (baseline), or lbadapter's state.json."""
    log = workdir / "logs" / f"balancer-{mode}.log"
    info: dict[str, Any] = {"alive_at_end": alive, "log": str(log)}
    if mode == "restart":
        text = log.read_text(errors="replace") if log.exists() else ""
        closed = sorted(int(ms) for ms in _CLOSED.findall(text))
        info["restarts"] = len(closed)  # including the first start
        info["frontend_closed_ms"] = {"total": sum(closed), "median": percentile(closed, 50),
                                      "max": closed[-1] if closed else None}
        return info
    return info | adapter_state(workdir / "state")


def adapter_state(state_dir: Path) -> dict[str, Any]:
    """HAProxy's and the counters' part of an lbadapter's state.json ({} if unreadable)."""
    try:
        state = json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        return {}
    return {"haproxy": state.get("haproxy"), "counters": state.get("counters")}


# ----------------------------------------------------------------- report


#: Result keys that are client kinds, and their labels in the table.
_ROWS = (("keepalive", "keep-alive"), ("new_connection", "new-connection"),
         ("sticky", "sticky, 2 LBs"))


def format_table(results: dict[str, dict[str, Any]]) -> str:
    head = (f"{'balancer':<13} {'clients':<15} {'requests':>8} {'failed':>7} {'req/s':>7} "
            f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>8}  errors")
    lines = [head, "-" * len(head)]
    for mode, r in results.items():
        for key, label in _ROWS:
            if key not in r:
                continue
            s = r[key]
            errors = " ".join(f"{k}={v}" for k, v in s["errors"].items()) or "-"
            lines.append(f"{mode:<13} {label:<15} {s['requests']:>8} {s['failed']:>7} "
                         f"{s['req_per_s']:>7.1f} {_fmt(s['p50_ms']):>7} {_fmt(s['p99_ms']):>7} "
                         f"{_fmt(s['max_ms']):>8}  {errors}")
    return "\n".join(lines)


def format_balancers(results: dict[str, dict[str, Any]]) -> str:
    """One line per balancer: how it applied the changes."""
    lines = []
    for mode, r in results.items():
        if mode == "two-balancers":
            from benchmarks.lb_sticky import format_two_balancers

            lines.append(format_two_balancers(r))
            continue
        b = r["balancer"]
        if mode == "restart":
            closed = b["frontend_closed_ms"]
            lines.append(f"{mode}: HAProxy restarted {b['restarts']} times (first start "
                         f"included), frontend closed {closed['median']} ms median, "
                         f"{closed['max']} ms max, {closed['total']} ms in all")
        else:
            hap, counters = b.get("haproxy") or {}, b.get("counters") or {}
            ops = ", ".join(f"{counters[k]} {k}" for k in ("add", "drain", "maint", "del")
                            if k in counters)
            lines.append(f"{mode}: HAProxy started {hap.get('starts', '?')} time(s), reloaded "
                         f"{hap.get('reloads', '?')} times; runtime API: {ops or '?'}")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def parse_args(argv: list[str]) -> Options:
    p = argparse.ArgumentParser(prog="python -m benchmarks lb_churn",
                                description="client errors and latency under backend churn: "
                                            "lbadapter vs restart-on-change")
    p.add_argument("--duration", type=float, default=None, help="seconds of load (60; quick 15)")
    p.add_argument("--quick", action="store_true", help="15 s of load per balancer")
    p.add_argument("--change-every", type=float, default=2.0, help="join/leave period (2 s)")
    p.add_argument("--crash-every", type=float, default=10.0, help="crash period (10 s)")
    p.add_argument("--backends", type=int, default=4, help="live backends at start (4)")
    p.add_argument("--keepalive-clients", type=int, default=8)
    p.add_argument("--keepalive-rate", type=float, default=25.0, help="req/s per client (25)")
    p.add_argument("--open-rate", type=float, default=100.0, help="new connections/s (100)")
    p.add_argument("--timeout", type=float, default=5.0, help="per-request timeout (5 s)")
    p.add_argument("--app-stop-delay", type=float, default=5.0,
                   help="seconds between an agent's leave and its app's stop (5)")
    p.add_argument("--sticky-clients", type=int, default=16,
                   help="two-balancers: sticky clients (16)")
    p.add_argument("--sticky-rate", type=float, default=15.0,
                   help="two-balancers: req/s per sticky client (15)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--modes", default=",".join(MODES), help=",".join(MODES))
    p.add_argument("--workdir", default=None, help="logs and state (default: a temp dir)")
    p.add_argument("--json", help=argparse.SUPPRESS)  # written by benchmarks/__main__.py
    a = p.parse_args(argv)
    modes = [m for m in a.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            p.error(f"unknown mode {m!r}; choose from {', '.join(MODES)}")
    if a.backends < 3:
        p.error("--backends: at least 3 (one leaves while one has crashed)")
    duration = a.duration if a.duration is not None else (15.0 if a.quick else 60.0)
    return Options(duration=duration, change_every=a.change_every, crash_every=a.crash_every,
                   initial=a.backends, keepalive_clients=a.keepalive_clients,
                   keepalive_rate=a.keepalive_rate, open_rate=a.open_rate, timeout=a.timeout,
                   app_stop_delay=a.app_stop_delay, seed=a.seed, modes=modes,
                   workdir=Path(a.workdir or tempfile.mkdtemp(prefix="lb_churn-")),
                   sticky_clients=a.sticky_clients, sticky_rate=a.sticky_rate)


def run(argv: list[str]) -> dict[str, Any]:
    """Entry point for ``python -m benchmarks lb_churn``; returns the JSON-able results."""
    opts = parse_args(argv)
    if not os.path.exists(HAPROXY):
        raise SystemExit("haproxy is not installed (sudo apt-get install haproxy)")
    precompile()
    schedule = churn_schedule(opts.duration, opts.change_every, opts.crash_every, opts.initial)
    kinds = Counter(a.kind for a in schedule)
    print(f"lb_churn: {opts.duration:.0f} s of load per balancer, "
          f"{opts.keepalive_clients} keep-alive clients x {opts.keepalive_rate:g} req/s + "
          f"{opts.open_rate:g} new connections/s; churn: "
          f"{', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}; logs in {opts.workdir}"
          + (f"; two-balancers: {opts.sticky_clients} sticky clients x {opts.sticky_rate:g} "
             "req/s" if "two-balancers" in opts.modes else ""), flush=True)
    results: dict[str, dict[str, Any]] = {}
    for mode in opts.modes:
        started = time.monotonic()
        if mode == "two-balancers":
            from benchmarks.lb_sticky import run_two_balancers

            results[mode] = run_two_balancers(opts, schedule)
        else:
            results[mode] = run_phase(mode, opts, schedule)
        r = results[mode]
        failed = " / ".join(f"{r[k]['failed']} {label}" for k, label in _ROWS if k in r)
        print(f"  {mode}: done in {time.monotonic() - started:.0f}s, failed {failed}",
              flush=True)
    print(format_table(results))
    print(format_balancers(results))
    return {
        "suite": "lb_churn", "host": platform.node(), "cpus": os.cpu_count(),
        "python": platform.python_version(), "haproxy": _haproxy_version(),
        "options": {"duration_s": opts.duration, "change_every_s": opts.change_every,
                    "crash_every_s": opts.crash_every, "initial_backends": opts.initial,
                    "keepalive_clients": opts.keepalive_clients,
                    "keepalive_rate": opts.keepalive_rate, "open_rate": opts.open_rate,
                    "timeout_s": opts.timeout, "app_stop_delay_s": opts.app_stop_delay,
                    "sticky_clients": opts.sticky_clients, "sticky_rate": opts.sticky_rate,
                    "seed": opts.seed, "workdir": str(opts.workdir)},
        "schedule": [(a.at, a.kind) for a in schedule],
        "results": results,
    }


def _haproxy_version() -> str:
    try:
        out = subprocess.run([HAPROXY, "-v"], capture_output=True, text=True, timeout=10,
                             check=False).stdout
    except OSError:
        return "unknown"
    return out.splitlines()[0] if out else "unknown"


# ----------------------------------------------------------------- restart baseline


def baseline_main(argv: list[str]) -> int:
    """``python -m benchmarks.lb_churn restart-baseline``: the restart-on-change balancer."""
    from swimlib import backend

    p = argparse.ArgumentParser(prog="python -m benchmarks.lb_churn restart-baseline")
    p.add_argument("--node", default="lb")
    p.add_argument("--bind", required=True, help="gossip HOST:PORT")
    p.add_argument("--listen", required=True, help="frontend HOST:PORT")
    p.add_argument("--stats", required=True, help="stats page HOST:PORT")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--haproxy", default=HAPROXY)
    p.add_argument("--coalesce", type=float, nargs=2, default=(3.0, 1.0),
                   metavar=("PERIOD", "QUIET"),
                   help="member-event coalescing like serf agent's handlers (3 1; 0 0 = off)")
    a = p.parse_args(argv)
    return backend.run(_baseline, a, backend=backend.choose_backend())


async def _baseline(a: argparse.Namespace) -> int:
    """Member events (coalesced) -> render -> restart HAProxy (SIGTERM, wait, start)."""
    import anyio

    from lbadapter.config import settings_from_mapping
    from lbadapter.desired import desired_servers
    from lbadapter.render import render_config
    from swimlib import MemberEvent, open_agent
    from swimlib.agent.addresses import split_host_port
    from swimlib.cluster.coalesce import EventCoalescer

    settings = settings_from_mapping({"node": a.node, "bind": a.bind, "listen": a.listen,
                                      "stats": a.stats, "state_dir": a.state_dir,
                                      "haproxy": a.haproxy})
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    cfg = settings.config_path
    hap: subprocess.Popen[bytes] | None = None
    restarts = 0

    async def restart(agent: Any, reason: str) -> None:
        nonlocal hap, restarts
        servers = desired_servers(agent.members(), settings.backend_tag, settings.backend_port)
        text = render_config(settings, servers.values())
        tmp = cfg.with_name(cfg.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, cfg)
        started = time.monotonic()
        if hap is not None and hap.poll() is None:
            hap.terminate()  # what a supervisor's "restart" does: stop ...
            try:
                await anyio.to_thread.run_sync(hap.wait, 10.0)
            except subprocess.TimeoutExpired:
                hap.kill()
                await anyio.to_thread.run_sync(hap.wait, 5.0)
        hap = subprocess.Popen([a.haproxy, "-db", "-f", str(cfg)],  # ... then start
                               stdin=subprocess.DEVNULL)
        restarts += 1
        listening = await anyio.to_thread.run_sync(
            lambda: wait_port(settings.listen[1], 5.0, settings.listen[0], hap, 0.005))
        ready = sorted(s.name for s in servers.values() if s.want.value == "ready")
        print(f"restart {restarts}: {reason}; servers {ready}; frontend closed for "
              f"{(time.monotonic() - started) * 1000:.0f} ms"
              f"{'' if listening else ' (not listening after 5 s!)'}", flush=True)

    host, port = split_host_port(a.bind, 7946)
    coalescer = EventCoalescer(a.coalesce[0], a.coalesce[1], 0.0, 0.0)
    try:
        async with open_agent(a.node, bind=(host, port), tags={"role": "balancer"}) as agent:
            events = agent.events()
            await restart(agent, "start")
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async with anyio.create_task_group() as task_group:
                    async def watch_signals() -> None:
                        async for _ in signals:
                            task_group.cancel_scope.cancel()

                    task_group.start_soon(watch_signals)
                    while True:
                        deadline = coalescer.next_deadline()
                        flushed = []
                        with anyio.CancelScope(deadline=deadline if deadline is not None
                                               else math.inf):
                            event = await events.receive()
                            flushed = coalescer.push(event, anyio.current_time())
                        flushed += coalescer.flush_due(anyio.current_time())
                        changes = [e for e in flushed if isinstance(e, MemberEvent)]
                        if changes:
                            what = ", ".join(f"{e.type.value} {[m.name for m in e.members]}"
                                             for e in changes)
                            await restart(agent, what)
    finally:
        if hap is not None and hap.poll() is None:
            hap.terminate()
            try:
                hap.wait(5.0)
            except subprocess.TimeoutExpired:
                hap.kill()
                hap.wait(5.0)
    return 0


def _main(argv: list[str]) -> int:
    if argv[:1] == ["restart-baseline"]:
        return baseline_main(argv[1:])
    result = run(argv)
    if "--json" in argv:
        path = Path(argv[argv.index("--json") + 1])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
