"""``statsd_addr`` and ``statsite_addr``: the agent's metrics pushed as go-metrics does.

A Go Serf agent given these keys sends its metrics through go-metrics'
statsd sink (UDP) or statsite sink (TCP): one line per event,
``serf-agent.memberlist.udp.sent:148.000000|c`` for a counter increment,
``serf-agent.HOST.memberlist.health.score:1.000000|g`` for a gauge (gauges
carry the host name), ``serf-agent.memberlist.probeNode:2.445625|ms`` for a
timing, buffered and flushed every 100 ms in datagrams of at most 1400
bytes. This sink sends the same lines on the same cadence, read from the
agent's counters at each flush (:func:`swimlib.agent.metrics.collect`) rather
than pushed from the protocol path: a counter's line carries what it grew
by since the last flush, a gauge's line goes out when its value changed
(and every :data:`GAUGE_REFRESH` seconds, so a restarted statsd learns it
again), a timing's line goes out per probe or push-pull. Serf's message
sizes (``serf.msgs.sent``/``received``) are counted, not kept one by one:
their line is the mean size since the last flush with statsd's sample rate
``|@1/n`` standing for the n messages.

It never holds up the agent: it runs in its own task, sends on a
non-blocking UDP socket (or a TCP stream with a deadline), and when nothing
listens, or the address does not resolve, it logs once, waits
:data:`RETRY_DELAY` (go-metrics' 5 s) and tries again; meanwhile nothing
piles up, as each flush reads the agent afresh.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
from collections import Counter
from collections.abc import Iterable
from typing import Final, Protocol

import anyio
import anyio.lowlevel

from swimlib.agent.metrics import Family, Kind, Reader
from swimlib.faults import FaultLog

log = logging.getLogger("swimlib")

#: go-metrics' statsd and statsite sinks flush their buffer this often.
FLUSH_INTERVAL: Final = 0.1
#: Largest datagram the statsd sink sends (go-metrics' statsdMaxLen).
MAX_PACKET: Final = 1400
#: After a failure to connect or send, wait this long (go-metrics: 5 s).
RETRY_DELAY: Final = 5.0
#: Every gauge is sent again this often, changed or not.
GAUGE_REFRESH: Final = 10.0
#: Deadline to connect to statsite, and to write one flush to it.
TCP_TIMEOUT: Final = 5.0
#: Flushes in a row without an error before a failing sink is said to work again
#: (a datagram to a closed port fails only at the next send).
RECOVERED_AFTER: Final = 20


def format_value(value: float) -> str:
    """Go's ``%f``: six decimals."""
    return f"{value:f}"


class StatsdLines:
    """Successive reads of the metrics -> go-metrics' statsd lines (pure; no I/O)."""

    def __init__(self, hostname: str) -> None:
        #: Put in every gauge's key, as go-metrics does (``EnableHostname``).
        self.hostname = hostname
        self._totals: dict[str, float] = {}
        self._gauges: dict[str, float] = {}
        self._summaries: dict[str, tuple[int, float]] = {}
        self._gauges_sent = -math.inf

    def lines(self, families: Iterable[Family], now: float) -> list[str]:
        """The lines for what changed since the last call (each ends with a newline)."""
        refresh = now - self._gauges_sent >= GAUGE_REFRESH
        if refresh:
            self._gauges_sent = now
        out: list[str] = []
        for family in families:
            if not family.statsd:
                continue
            if family.kind is Kind.SUMMARY:
                self._summary_lines(family, out)
                continue
            for values, value in family.samples.items():
                if family.kind is Kind.COUNTER:
                    key = family.statsd_key("", values)
                    delta = value - self._totals.get(key, 0.0)
                    self._totals[key] = value
                    if delta > 0:
                        out.append(f"{key}:{format_value(delta)}|c\n")
                else:
                    key = family.statsd_key(self.hostname, values)
                    if refresh or self._gauges.get(key) != value:
                        self._gauges[key] = value
                        out.append(f"{key}:{format_value(value)}|g\n")
        return out

    def _summary_lines(self, family: Family, out: list[str]) -> None:
        summary = family.summary
        assert summary is not None
        key = family.statsd_key()
        seen, seen_total = self._summaries.get(key, (0, 0.0))
        self._summaries[key] = (summary.count, summary.total)
        if summary.timing is not None:
            out.extend(f"{key}:{format_value(ms)}|ms\n" for ms in summary.timing.since(seen))
            return
        n = summary.count - seen
        if n <= 0:
            return
        mean = (summary.total - seen_total) / n
        rate = f"|@{1 / n:g}" if n > 1 else ""
        out.append(f"{key}:{format_value(mean)}|ms{rate}\n")


def packets(lines: Iterable[str], limit: int = MAX_PACKET) -> list[bytes]:
    """Lines packed into datagrams of at most ``limit`` bytes (a longer line goes alone)."""
    out: list[bytes] = []
    buf = bytearray()
    for line in lines:
        data = line.encode("utf-8", "replace")
        if buf and len(buf) + len(data) > limit:
            out.append(bytes(buf))
            buf.clear()
        buf += data
    if buf:
        out.append(bytes(buf))
    return out


class _Connection(Protocol):
    async def send(self, item: bytes) -> None: ...

    async def aclose(self) -> None: ...


class _Datagrams:
    """A connected, non-blocking UDP socket: a send never waits, and a "port
    unreachable" from the last one is raised by the next (on any event loop)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    async def send(self, item: bytes) -> None:
        await anyio.lowlevel.checkpoint()
        self._sock.send(item)  # BlockingIOError (a full buffer) is a failure like any other

    async def aclose(self) -> None:
        self._sock.close()


async def _connect(host: str, port: int, tcp: bool) -> _Connection:
    with anyio.fail_after(TCP_TIMEOUT):
        if tcp:
            return await anyio.connect_tcp(host, port)
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect(addr)
    except BaseException:
        sock.close()
        raise
    return _Datagrams(sock)


_SEND_FAILURES = (OSError, TimeoutError, anyio.BrokenResourceError, anyio.ClosedResourceError)


async def run_sink(read: Reader, host: str, port: int, *, tcp: bool, counters: Counter[str],
                   faults: FaultLog, hostname: str | None = None,
                   interval: float = FLUSH_INTERVAL) -> None:
    """Flush the metrics to ``host:port`` every ``interval`` until cancelled.

    ``tcp``: statsite's TCP stream instead of statsd's datagrams. Counts
    ``statsd.sent`` (lines), ``statsd.connect_failed`` and ``statsd.send_failed``
    in ``counters``; a bug reading the metrics is an internal error at ``statsd``.
    """
    kind = "statsite" if tcp else "statsd"
    state = StatsdLines(socket.gethostname() if hostname is None else hostname)
    failing = False
    while True:
        try:
            conn = await _connect(host, port, tcp)
        except (*_SEND_FAILURES, anyio.EndOfStream) as exc:
            counters[f"{kind}.connect_failed"] += 1
            if not failing:
                log.error("agent: Error connecting to %s %s:%d (retrying every %gs): %s",
                          kind, host, port, RETRY_DELAY, exc or type(exc).__name__)
            failing = True
            await anyio.sleep(RETRY_DELAY)
            continue
        sent_ok = 0
        try:
            while True:
                await anyio.sleep(interval)
                lines: list[str] = []
                with faults.boundary(kind):
                    now = anyio.current_time()
                    lines = state.lines(read(now), now)
                with anyio.fail_after(TCP_TIMEOUT):
                    for packet in packets(lines):
                        await conn.send(packet)
                counters[f"{kind}.sent"] += len(lines)
                sent_ok += 1
                if failing and sent_ok >= RECOVERED_AFTER:
                    log.info("agent: Sending metrics to %s %s:%d again", kind, host, port)
                    failing = False
        except _SEND_FAILURES as exc:
            counters[f"{kind}.send_failed"] += 1
            if not failing:
                log.error("agent: Error writing to %s %s:%d (retrying every %gs): %s",
                          kind, host, port, RETRY_DELAY, exc or type(exc).__name__)
            failing = True
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await conn.aclose()
        await anyio.sleep(RETRY_DELAY)
