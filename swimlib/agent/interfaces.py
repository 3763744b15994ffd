"""``-iface``: binding by network interface name, as serf does.

serf resolves the interface's addresses; with a wildcard bind address it
binds the first one that is not link-local, otherwise it checks that the
bind address belongs to the interface. Linux only (the addresses come from
``SIOCGIFADDR`` and ``/proc/net/if_inet6``); elsewhere the flag is an error.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from pathlib import Path

from swimlib.errors import ConfigError

_SIOCGIFADDR = 0x8915
_IF_INET6 = Path("/proc/net/if_inet6")


def interface_addresses(name: str) -> list[str]:
    """The interface's addresses, IPv4 first; ConfigError if there is no such interface."""
    if name not in {n for _, n in socket.if_nameindex()}:
        raise ConfigError(f"Invalid network interface: no such network interface {name!r}")
    found: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            packed = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR,
                                 struct.pack("256s", name.encode()[:15]))
            found.append(socket.inet_ntoa(packed[20:24]))
        except OSError:  # no IPv4 address
            pass
    try:
        lines = _IF_INET6.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split()
        if len(fields) == 6 and fields[5] == name:
            found.append(str(ipaddress.IPv6Address(bytes.fromhex(fields[0]))))
    return found


def bind_on_interface(name: str, bind_host: str) -> str:
    """The host to bind: the interface's first usable address for a wildcard
    ``bind_host``, else ``bind_host`` once it is shown to be the interface's."""
    addresses = interface_addresses(name)
    if not addresses:
        raise ConfigError(f"Interface '{name}' has no addresses")
    if bind_host in ("", "0.0.0.0"):
        for address in addresses:
            if not ipaddress.ip_address(address).is_link_local:
                return address
        raise ConfigError(f"Failed to find usable address for interface '{name}'")
    if bind_host not in addresses:
        raise ConfigError(f"Interface '{name}' has no '{bind_host}' address")
    return bind_host
