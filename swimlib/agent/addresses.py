"""Turning ``--join`` arguments into socket addresses.

Accepted forms (memberlist's): ``host``, ``host:port``, ``[v6]:port``, a bare
IPv6 literal, and ``name/host[:port]`` (the name is informational). Host
names are resolved and every A/AAAA record is tried, so ``--join ha`` works
the way the original container setup used it.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from swimlib.errors import ConfigError
from swimlib.membership.types import Address
from swimlib.transport.resolve import resolve


def split_host_port(text: str, default_port: int) -> tuple[str, int]:
    """``"ha"`` -> ``("ha", default)``; ``"[::1]:7946"`` -> ``("::1", 7946)``."""
    spec = text.strip()
    if "/" in spec:
        spec = spec.split("/", 1)[1]
    if not spec:
        raise ConfigError(f"empty address in {text!r}")
    if spec.startswith("["):
        host, sep, rest = spec[1:].partition("]")
        if not sep:
            raise ConfigError(f"unterminated IPv6 literal in {text!r}")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif spec.count(":") == 1:
        host, port_text = spec.split(":")
    else:
        host, port_text = spec, ""  # bare host or bare IPv6 literal
    if not port_text:
        return host, default_port
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"bad port in address {text!r}") from None
    if not 0 < port < 65536:
        raise ConfigError(f"port out of range in address {text!r}")
    return host, port


async def resolve_join_addresses(specs: Sequence[str], default_port: int) -> list[Address]:
    """Every address the specs resolve to (unresolvable names are skipped)."""
    out: list[Address] = []
    for spec in specs:
        host, port = split_host_port(spec, default_port)
        try:
            infos = await resolve(host, port)
        except OSError:
            continue
        for family, _, _, _, sockaddr in infos:
            if family in (socket.AF_INET, socket.AF_INET6):
                # anyio appends an IPv6 scope ("fe80::1%2"); the address is the bare IP.
                addr = (sockaddr[0].partition("%")[0], sockaddr[1])
                if addr not in out:
                    out.append(addr)
    return out


def member_address(host: str, port: int) -> str:
    """Go's ``net.TCPAddr.String()``: ``ip:port``, ``[v6]:port``, IPv4-mapped as IPv4
    (how the snapshot records a member, and what a join takes)."""
    import ipaddress  # only once members are known: not on the start-up path

    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        host = str(ip)
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"
