"""``--metrics-addr HOST:PORT``: Prometheus's text format on ``/metrics``.

Imported only when the flag is given (it needs the optional extra
``swimlib[metrics]``, that is ``prometheus_client``). The metrics are read
from the agent at scrape time by a custom collector over
:func:`swimlib.agent.metrics.collect`: the protocol path pays nothing.

The agent's state belongs to its event loop, so the scrape runs there too:
a small HTTP/1.x server in the agent's task group (asyncio or trio, through
anyio) answers each request by calling ``generate_latest`` on a private
registry. prometheus_client's own HTTP server would read the agent's
dictionaries from another thread while the loop changes them.

The server is exposed to whoever can reach the port, so every connection is
bounded: its request head (:data:`MAX_REQUEST_BYTES`), its time
(:data:`CONNECTION_TIMEOUT`, for the whole exchange, against slow clients),
and how many are served at once (:data:`MAX_CONNECTIONS`; more are closed
at once). A connection that fails costs that connection only: it is counted
(``drop.metrics_http.*``, or an internal error at ``metrics.http``) and the
agent goes on.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Final

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketListener, TaskGroup, TaskStatus
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from swimlib.agent.metrics import Family, Kind, Reader, collect
from swimlib.agent.runtime import Agent
from swimlib.faults import FaultLog
from swimlib.rpc.server import accept_loop
from swimlib.transport.sockets import listen_tcp

log = logging.getLogger("swimlib")

#: The request line and headers may not exceed this (no body is read).
MAX_REQUEST_BYTES: Final = 8192
#: A connection gets this long for its whole exchange, request and response.
CONNECTION_TIMEOUT: Final = 10.0
#: Connections served at once; more are closed unanswered.
MAX_CONNECTIONS: Final = 16
#: After refusing a request, what is still read from the client, at most (see _linger).
LINGER_BYTES: Final = 1 << 20
LINGER_TIME: Final = 1.0
#: The exposition format ``generate_latest`` writes.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

#: What a client that went away looks like.
_CLIENT_GONE = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
_INDEX = (b"<html><head><title>swimlib agent</title></head><body>"
          b"<h1>swimlib agent</h1><p><a href=\"/metrics\">Metrics</a></p></body></html>\n")
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large", 500: "Internal Server Error"}


class AgentCollector:
    """A prometheus_client collector over :func:`~swimlib.agent.metrics.collect`."""

    def __init__(self, read: Reader, clock: Callable[[], float]) -> None:
        self._read = read
        self._clock = clock

    def describe(self) -> list[Metric]:
        return []  # names vary with the agent (drop reasons ...): nothing to check up front

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        for family in self._read(now):
            yield to_prometheus(family, now)


def to_prometheus(family: Family, now: float) -> Metric:
    """One family in prometheus_client's terms (a counter's samples get ``_total``)."""
    name = family.prometheus_name
    labels = list(family.labels)
    if family.kind is Kind.SUMMARY:
        summary = family.summary
        assert summary is not None
        metric = SummaryMetricFamily(name, family.help, labels=[])
        if summary.timing is not None:  # durations: quantiles, as go-metrics' summaries
            for q, value in summary.quantiles(now).items():
                metric.add_sample(name, {"quantile": str(q)}, value)
        metric.add_metric([], summary.count, summary.total)
        return metric
    out: CounterMetricFamily | GaugeMetricFamily
    if family.kind is Kind.COUNTER:
        out = CounterMetricFamily(name, family.help, labels=labels)
    else:
        out = GaugeMetricFamily(name, family.help, labels=labels)
    for values, value in family.samples.items():
        out.add_metric(list(values), value)
    return out


def make_registry(read: Reader, clock: Callable[[], float]) -> CollectorRegistry:
    """A private registry: the agent's metrics, and the process's (``process_*``, ``python_*``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(read, clock))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class _Refused(Exception):
    """Answer with this status and close."""

    def __init__(self, status: int, drop: str) -> None:
        super().__init__(status)
        self.status = status
        self.drop = drop


class MetricsServer:
    """Answers ``GET /metrics`` with ``render()``; see the module docstring."""

    def __init__(self, render: Callable[[], bytes], *, counters: Counter[str],
                 faults: FaultLog) -> None:
        self.render = render
        #: ``metrics.scrapes`` and ``drop.metrics_http.*`` go here (the agent's counters).
        self.counters = counters
        self.faults = faults
        self.active = 0

    async def handle_connection(self, stream: ByteStream) -> None:
        """Serve one connection, then close it. Never raises but for cancellation."""
        try:
            if self.active >= MAX_CONNECTIONS:
                self.counters["drop.metrics_http.too_many"] += 1
                return
            self.active += 1
            try:
                with anyio.move_on_after(CONNECTION_TIMEOUT) as scope:
                    await self._exchange(stream)
                if scope.cancelled_caught:
                    self.counters["drop.metrics_http.timeout"] += 1
            finally:
                self.active -= 1
        except _CLIENT_GONE:
            self.counters["drop.metrics_http.closed"] += 1
        except Exception as exc:
            self.faults.record("metrics.http", exc)
        finally:
            await anyio.aclose_forcefully(stream)

    async def _exchange(self, stream: ByteStream) -> None:
        try:
            method, path = parse_request(await read_head(stream))
        except _Refused as refused:
            self.counters["drop.metrics_http." + refused.drop] += 1
            await _respond(stream, refused.status, _REASONS[refused.status].encode() + b"\n",
                           "text/plain; charset=utf-8")
            await _linger(stream)
            return
        head_only = method == "HEAD"
        if path == "/metrics":
            try:
                body = self.render()
            except Exception as exc:
                self.faults.record("metrics.scrape", exc)
                await _respond(stream, 500, b"", "text/plain; charset=utf-8")
                return
            self.counters["metrics.scrapes"] += 1
            await _respond(stream, 200, body, CONTENT_TYPE, head_only)
        elif path == "/":
            await _respond(stream, 200, _INDEX, "text/html; charset=utf-8", head_only)
        else:
            await _respond(stream, 404, b"not found\n", "text/plain; charset=utf-8", head_only)


async def read_head(stream: ByteStream) -> bytes:
    """The request line and headers (up to the blank line), at most :data:`MAX_REQUEST_BYTES`."""
    buf = bytearray()
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            end = buf.find(b"\n\n")
        if end >= 0:
            return bytes(buf[:end])
        if len(buf) > MAX_REQUEST_BYTES:
            raise _Refused(431, "too_large")
        buf += await stream.receive(4096)


def parse_request(head: bytes) -> tuple[str, str]:
    """``(method, path)`` of a request head; refuses what is not a GET or HEAD."""
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    if len(head) > MAX_REQUEST_BYTES:
        raise _Refused(431, "too_large")
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or not parts[1].startswith(b"/"):
        raise _Refused(400, "bad_request")
    method = parts[0].decode("ascii", "replace")
    if method not in ("GET", "HEAD"):
        raise _Refused(405, "bad_method")
    path = parts[1].split(b"?", 1)[0].decode("ascii", "replace")
    return method, path


async def _respond(stream: ByteStream, status: int, body: bytes, content_type: str,
                   head_only: bool = False) -> None:
    head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode("ascii")
    await stream.send(head if head_only else head + body)


async def _linger(stream: ByteStream) -> None:
    """Close our side, then read (and drop) what the client still sends, a little while:
    closing with its bytes unread would reset the connection, and the client could
    lose our answer."""
    with anyio.move_on_after(LINGER_TIME), contextlib.suppress(*_CLIENT_GONE):
        await stream.send_eof()
        for _ in range(LINGER_BYTES // 4096):
            await stream.receive(4096)


async def serve_metrics(render: Callable[[], bytes], host: str, port: int, *,
                        counters: Counter[str], faults: FaultLog,
                        task_status: TaskStatus[list[SocketListener]] = anyio.TASK_STATUS_IGNORED,
                        ) -> None:
    """Listen on ``host:port`` until cancelled (start it with ``task_group.start``)."""
    server = MetricsServer(render, counters=counters, faults=faults)
    multi = await listen_tcp(host, port)
    listeners = [lst for lst in multi.listeners if isinstance(lst, SocketListener)]
    async with multi, anyio.create_task_group() as tg:
        for listener in listeners:
            tg.start_soon(accept_loop, listener, server, tg)
        task_status.started(listeners)


async def start_registry_server(task_group: TaskGroup, registry: CollectorRegistry,
                                addr: tuple[str, int], *, counters: Counter[str],
                                faults: FaultLog, announce: Callable[[str], None],
                                ) -> list[SocketListener]:
    """Serve ``registry`` on ``addr`` in ``task_group``, tell ``announce`` the URL,
    and return the listeners. Raises ``OSError`` if the address cannot be bound."""
    listeners: list[SocketListener] = await task_group.start(
        lambda task_status: serve_metrics(lambda: generate_latest(registry), addr[0], addr[1],
                                          counters=counters, faults=faults,
                                          task_status=task_status))
    bound = listeners[0].extra(SocketAttribute.local_address)
    host, port = bound[:2] if isinstance(bound, tuple) else addr
    shown = f"[{host}]" if ":" in str(host) else host
    announce(f"http://{shown}:{port}/metrics")
    return listeners


async def start_metrics_server(task_group: TaskGroup, agent: Agent,
                               addr: tuple[str, int]) -> list[SocketListener]:
    """Serve ``agent``'s metrics on ``addr`` in ``task_group``; returns the listeners.

    Raises ``OSError`` if the address cannot be bound.
    """
    registry = make_registry(lambda now: collect(agent, now), anyio.current_time)
    return await start_registry_server(
        task_group, registry, addr, counters=agent.counters, faults=agent.faults,
        announce=lambda url: log.info("agent: Serving Prometheus metrics on %s", url))
