"""Serving the metrics: the ``/metrics`` HTTP handler against hostile clients, the
statsd and statsite sinks over real loopback sockets, and the settings that turn
them on. Real sockets, both event loops."""

from __future__ import annotations

import importlib.util
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from swimlib.agent import prometheus, statsd
from swimlib.agent.metrics import Family, Kind
from swimlib.errors import ConfigError
from swimlib.faults import FaultLog
from swimlib.testing import free_port
from swimlib.transport.sockets import listen_tcp
from tests.backends import both_backends  # noqa: F401

HOST = "127.0.0.1"


@asynccontextmanager
async def metrics_server(render: Callable[[], bytes]
                         ) -> AsyncIterator[tuple[int, Counter[str], FaultLog]]:
    counters: Counter[str] = Counter()
    faults = FaultLog()
    port = free_port()
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: prometheus.serve_metrics(
            render, HOST, port, counters=counters, faults=faults, task_status=task_status))
        yield port, counters, faults
        tg.cancel_scope.cancel()


async def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data``, then read until the server closes (at most ``timeout`` seconds)."""
    out = b""
    with anyio.fail_after(timeout):
        async with await anyio.connect_tcp(HOST, port) as stream:
            if data:
                await stream.send(data)
            try:
                while True:
                    out += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
                pass
    return out


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


async def test_get_metrics_head_index_and_not_found() -> None:
    async with metrics_server(lambda: b"up 1\n") as (port, counters, faults):
        response = await exchange(port, b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n")
        head, body = response.split(b"\r\n\r\n", 1)
        assert status(response) == 200 and body == b"up 1\n"
        assert b"Content-Type: text/plain; version=0.0.4; charset=utf-8" in head
        assert b"Content-Length: 5" in head
        assert (await exchange(port, b"HEAD /metrics HTTP/1.0\n\n")).endswith(b"\r\n\r\n")
        assert b'href="/metrics"' in await exchange(port, b"GET / HTTP/1.1\r\n\r\n")
        assert status(await exchange(port, b"GET /nope HTTP/1.1\r\n\r\n")) == 404
        assert counters["metrics.scrapes"] == 2
        assert faults.counts == {}


async def test_hostile_clients_cost_their_own_connection_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prometheus, "CONNECTION_TIMEOUT", 0.5)
    monkeypatch.setattr(prometheus, "MAX_CONNECTIONS", 3)
    async with metrics_server(lambda: b"up 1\n") as (port, counters, faults):
        assert status(await exchange(port, b"\x00\xff garbage\r\n\r\n")) == 400
        assert status(await exchange(port, b"GET /metrics SPDY/3\r\n\r\n")) == 400
        assert status(await exchange(port, b"POST /metrics HTTP/1.1\r\n\r\n")) == 405
        huge = b"GET /metrics HTTP/1.1\r\nX-Junk: " + b"a" * 100_000 + b"\r\n\r\n"
        assert status(await exchange(port, huge)) == 431
        assert await exchange(port, b"GET /metr", timeout=3) == b""  # slow: cut off
        assert await exchange(port, b"") == b""  # connects, says nothing: cut off
        async with await anyio.connect_tcp(HOST, port) as early:
            await early.send(b"GET /met")  # and hangs up mid-request
        # Idle connections up to the cap; the next one is closed unanswered, and a
        # scrape goes through again once they are gone.
        idle = [await anyio.connect_tcp(HOST, port) for _ in range(3)]
        await anyio.sleep(0.1)
        assert await exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n") == b""
        for stream in idle:
            await stream.aclose()
        with anyio.fail_after(5):
            while status(await exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n") or
                          b"HTTP/1.1 0 none") != 200:
                await anyio.sleep(0.05)
    assert counters["drop.metrics_http.bad_request"] == 2
    assert counters["drop.metrics_http.bad_method"] == 1
    assert counters["drop.metrics_http.too_large"] == 1
    assert counters["drop.metrics_http.timeout"] >= 2
    assert counters["drop.metrics_http.too_many"] >= 1
    assert faults.counts == {}  # nothing was a bug


async def test_a_failing_scrape_is_a_500_and_an_internal_error() -> None:
    calls = []

    def render() -> bytes:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("collector bug")
        return b"up 1\n"

    async with metrics_server(render) as (port, _counters, faults):
        assert status(await exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n")) == 500
        assert status(await exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n")) == 200
    assert faults.counts == {"metrics.scrape": 1}


# ---------------------------------------------------------------- statsd / statsite


def _reader() -> Callable[[float], list[Family]]:
    """Metrics whose counter grows by 10 bytes at every read."""
    total = [0.0]

    def read(now: float) -> list[Family]:
        total[0] += 10
        return [Family(("memberlist", "udp", "sent"), Kind.COUNTER, "").add(total[0]),
                Family(("memberlist", "health", "score"), Kind.GAUGE, "").add(0)]

    return read


async def _datagrams(sock: socket.socket, want: int, timeout: float = 5.0) -> list[str]:
    lines: list[str] = []
    with anyio.fail_after(timeout):
        while len(lines) < want:
            await anyio.wait_readable(sock)
            lines.extend(sock.recv(65536).decode().splitlines(keepends=True))
    return lines


async def test_statsd_sends_go_metrics_lines_over_udp() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, port))
        sock.setblocking(False)
        counters: Counter[str] = Counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: statsd.run_sink(_reader(), HOST, port, tcp=False,
                                                  counters=counters, faults=FaultLog(),
                                                  hostname="vm", interval=0.02))
            lines = await _datagrams(sock, 4)
            tg.cancel_scope.cancel()
    assert lines[:3] == ["serf-agent.memberlist.udp.sent:10.000000|c\n",
                         "serf-agent.vm.memberlist.health.score:0.000000|g\n",
                         "serf-agent.memberlist.udp.sent:10.000000|c\n"]
    assert counters["statsd.sent"] >= 3


async def test_statsd_with_nobody_listening_keeps_trying_and_never_fails(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statsd, "RETRY_DELAY", 0.05)
    port = free_port()
    counters: Counter[str] = Counter()
    faults = FaultLog()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: statsd.run_sink(_reader(), HOST, port, tcp=False,
                                              counters=counters, faults=faults,
                                              hostname="vm", interval=0.01))
        with anyio.fail_after(5):  # loopback answers with "port unreachable"
            while counters["statsd.send_failed"] < 2:
                await anyio.sleep(0.01)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # statsd comes up
            sock.bind((HOST, port))
            sock.setblocking(False)
            lines = await _datagrams(sock, 1)
        tg.cancel_scope.cancel()
    assert lines[0].startswith("serf-agent.")
    assert faults.counts == {}


async def test_statsite_gets_the_same_lines_over_tcp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statsd, "RETRY_DELAY", 0.05)
    port = free_port()
    counters: Counter[str] = Counter()
    received = b""
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: statsd.run_sink(_reader(), HOST, port, tcp=True,
                                              counters=counters, faults=FaultLog(),
                                              hostname="vm", interval=0.02))
        with anyio.fail_after(5):  # nothing listens yet: refused, retried
            while counters["statsite.connect_failed"] < 1:
                await anyio.sleep(0.01)
        listener = await listen_tcp(HOST, port)
        async with listener:
            with anyio.fail_after(5):
                stream = await listener.listeners[0].accept()
                async with stream:
                    while received.count(b"\n") < 3:
                        received += await stream.receive()
        tg.cancel_scope.cancel()
    assert received.startswith(b"serf-agent.memberlist.udp.sent:")
    assert b"serf-agent.vm.memberlist.health.score:0.000000|g\n" in received


# ---------------------------------------------------------------- settings


def settings(*flags: str) -> Any:
    from swimlib.agent.command import _Settings
    from swimlib.cli import parse_agent_args

    return _Settings.from_args(parse_agent_args(["agent", "-node=a", *flags]))


def test_metrics_and_statsd_settings(tmp_path: Path) -> None:
    assert settings().metrics_addr is None and settings().statsd_addr is None
    assert settings("-metrics-addr=127.0.0.1:9100").metrics_addr == ("127.0.0.1", 9100)
    assert settings("--metrics-addr", "[::1]:9100").metrics_addr == ("::1", 9100)
    conf = tmp_path / "serf.json"
    conf.write_text(json.dumps({"statsd_addr": "127.0.0.1:8125",
                                "statsite_addr": "stats.example:8125",
                                "metrics_addr": "0.0.0.0:9100"}))
    s = settings(f"-config-file={conf}", "-metrics-addr=127.0.0.1:9101")
    assert s.statsd_addr == ("127.0.0.1", 8125)
    assert s.statsite_addr == ("stats.example", 8125)
    assert s.metrics_addr == ("127.0.0.1", 9101)  # the command line wins


@pytest.mark.parametrize("flags, message", [
    (["-metrics-addr=9100"], r"-metrics-addr: expected HOST:PORT"),
    (["-metrics-addr=host:x"], r"bad port"),
])
def test_bad_metrics_addresses_are_config_errors(flags: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(*flags)


def test_a_bad_statsd_address_is_a_config_error(tmp_path: Path) -> None:
    conf = tmp_path / "serf.json"
    conf.write_text(json.dumps({"statsd_addr": "localhost"}))
    with pytest.raises(ConfigError, match=r"statsd_addr: expected HOST:PORT"):
        settings(f"-config-file={conf}")


def test_metrics_addr_without_prometheus_client_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None
                        if name == "prometheus_client" else real(name, *a))
    with pytest.raises(ConfigError, match=r"prometheus_client.*swimlib\[metrics\]"):
        settings("-metrics-addr=127.0.0.1:9100")
