"""-iface: the bind address from a network interface (Linux: the loopback one)."""

from __future__ import annotations

import sys

import pytest

from swimlib.agent.interfaces import bind_on_interface, interface_addresses
from swimlib.errors import ConfigError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="interface addresses are read the Linux way")


def test_loopback_addresses_and_the_wildcard_choice() -> None:
    assert interface_addresses("lo")[0] == "127.0.0.1"
    assert bind_on_interface("lo", "0.0.0.0") == "127.0.0.1"
    assert bind_on_interface("lo", "127.0.0.1") == "127.0.0.1"


@pytest.mark.parametrize(("iface", "bind", "message"), [
    ("no-such-if0", "0.0.0.0", "Invalid network interface"),
    ("lo", "127.0.0.2", "Interface 'lo' has no '127.0.0.2' address"),
])
def test_a_wrong_interface_or_address_is_a_clear_error(iface: str, bind: str,
                                                       message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        bind_on_interface(iface, bind)


def test_the_agent_binds_the_interface_address(capsys: pytest.CaptureFixture[str]) -> None:
    from swimlib.agent.command import _Settings
    from swimlib.cli import parse_agent_args

    s = _Settings.from_args(parse_agent_args(["agent", "-node=a", "-iface=lo",
                                              "-bind=0.0.0.0:7000"]))
    assert s.bind == ("127.0.0.1", 7000)
    assert "==> Using interface 'lo' address '127.0.0.1'" in capsys.readouterr().out
