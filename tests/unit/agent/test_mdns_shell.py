"""The -discover shell's choices that need no network: interface, advert, settings.

The sockets themselves are exercised between real agents in network namespaces
(tests/integration/test_mdns_discover.py): port 5353 is never opened on the host.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from swimlib.agent import mdns
from swimlib.errors import ConfigError


@pytest.mark.parametrize(("bind", "interface"), [
    ("10.1.2.3", "10.1.2.3"),  # -bind or -iface: that address's interface
    ("127.0.0.1", "127.0.0.1"),
    ("0.0.0.0", None),  # a wildcard: the kernel's route for the group
    ("::", None), ("fd00::1", None),  # (IPv4 multicast only)
    ("web.example", None),
])
def test_the_multicast_interface_is_the_bind_addresss(bind: str, interface: str | None) -> None:
    assert mdns.interface_address(bind) == interface


@pytest.mark.parametrize(("bind", "advertise", "candidates"), [
    ("10.1.2.3", "10.9.9.9", ["10.1.2.3", None]),  # the bind address first
    ("0.0.0.0", "10.9.9.9", ["10.9.9.9", None]),  # a wildcard: the advertised one
    ("0.0.0.0", "127.0.1.1", [None]),  # (a hostname that resolves to loopback)
    ("0.0.0.0", "fd00::1", [None]),
])
def test_the_interfaces_tried_in_order(bind: str, advertise: str,
                                       candidates: list[str | None]) -> None:
    assert mdns.interface_candidates(bind, advertise) == candidates


def test_the_advert_uses_the_host_name_as_serf_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "vm")
    advert = mdns.make_advert("lab", "web-1", "10.1.2.3", 7946)
    assert advert is not None and advert.host == (b"vm",)
    assert advert.instance == (b"web-1", b"_serf_lab", b"_tcp", b"local")
    monkeypatch.setattr(socket, "gethostname", lambda: "h" * 70)  # no DNS name
    advert = mdns.make_advert("lab", "web-1", "10.1.2.3", 7946)
    assert advert is not None and advert.host == (b"web-1", b"local")


def test_a_node_name_that_is_no_dns_label_only_asks(caplog: pytest.LogCaptureFixture) -> None:
    assert mdns.make_advert("lab", "n" * 64, "10.1.2.3", 7946) is None
    assert "not a DNS name" in caplog.text


def _settings(*flags: str) -> Any:
    from swimlib.agent.command import _Settings
    from swimlib.cli import parse_agent_args

    return _Settings.from_args(parse_agent_args(["agent", "-node=a", *flags]))


def test_discover_is_checked_before_anything_binds() -> None:
    assert _settings("-discover=prod.eu").discover == "prod.eu"  # dots separate labels
    assert _settings("-discover=").discover is None  # serf: "" is off
    with pytest.raises(ConfigError, match="cannot name an mDNS service"):
        _settings("-discover=" + "x" * 60)
    with pytest.raises(ConfigError, match="cannot name an mDNS service"):
        _settings("-discover=a..b")
