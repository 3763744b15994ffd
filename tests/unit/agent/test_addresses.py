"""swimlib.agent.addresses: ``--join`` forms and their resolution, under asyncio and trio."""

from __future__ import annotations

import socket

import anyio
import pytest

from swimlib.agent.addresses import resolve_join_addresses, split_host_port
from swimlib.errors import ConfigError
from tests.backends import both_backends  # noqa: F401


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ha", ("ha", 7946)),
        ("ha:8000", ("ha", 8000)),
        ("[::1]:7000", ("::1", 7000)),
        ("[::1]", ("::1", 7946)),
        ("::1", ("::1", 7946)),
        ("node-a/10.0.0.1:7001", ("10.0.0.1", 7001)),
        (" 10.0.0.1 ", ("10.0.0.1", 7946)),
    ],
)
def test_split_host_port(text: str, expected: tuple[str, int]) -> None:
    assert split_host_port(text, 7946) == expected


@pytest.mark.parametrize("text", ["", "name/", "[::1", "ha:http", "ha:0", "ha:65536"])
def test_bad_addresses_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        split_host_port(text, 7946)


async def test_literals_resolve_once_each_in_order() -> None:
    specs = ["127.0.0.1:7000", "[::1]:7001", "a/127.0.0.1:7000", "127.0.0.2"]
    assert await resolve_join_addresses(specs, 7946) == [
        ("127.0.0.1", 7000),
        ("::1", 7001),
        ("127.0.0.2", 7946),
    ]


async def test_names_resolve_and_unresolvable_ones_are_skipped() -> None:
    addrs = await resolve_join_addresses(["nonexistent.invalid", "localhost:7000"], 7946)
    assert addrs and set(addrs) <= {("127.0.0.1", 7000), ("::1", 7000)}


async def test_an_ipv6_scope_is_dropped_from_the_address() -> None:
    assert await resolve_join_addresses(["[fe80::1%1]:7000"], 7946) == [("fe80::1", 7000)]


async def test_literals_need_no_resolver_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # anyio resolves in a worker thread; a literal must not wait for one (join storms).
    asked: list[object] = []

    async def resolver_thread(host: object, *args: object, **kwargs: object) -> list[object]:
        asked.append(host)
        raise socket.gaierror("no resolver here")

    monkeypatch.setattr(anyio, "getaddrinfo", resolver_thread)
    specs = ["127.0.0.1:7000", "[::1]:7001", "[fe80::1%1]:7002"]
    assert await resolve_join_addresses(specs, 7946) == [
        ("127.0.0.1", 7000), ("::1", 7001), ("fe80::1", 7002)]
    assert asked == []
    assert await resolve_join_addresses(["localhost:7000"], 7946) == []
    assert asked == ["localhost"]
