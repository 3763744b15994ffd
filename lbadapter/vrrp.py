"""The floating address's settings (``--vip``, ``--vip-interface``, ``vip_*`` keys): parse, check.

Every value that ends up in keepalived.conf is parsed here into a form that
cannot carry a keyword, a brace, a quote or a line break (an address, a
number, an interface name matching the kernel's rules), so the rendered file
only ever says what the settings say. Nothing here comes from members.

Two balancers agree on the VRRP group because its identity is derived from a
setting they share: the virtual router id is a hash of the VIP unless
``vip_router_id`` sets it (:func:`router_id_for`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from typing import Any

__all__ = ["ADVERT_RANGE", "IFNAME_RE", "VipError", "check_vip", "parse_advert_interval",
           "parse_interface", "parse_peers", "parse_priority", "parse_router_id", "parse_vip",
           "router_id_for"]

#: Linux interface names: at most 15 bytes, no '/', ':', whitespace (dev_valid_name);
#: stricter here (no quotes, braces or '#'/'!' comments for keepalived.conf).
IFNAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,15}")
#: VRRPv3 advertisement interval (centiseconds on the wire, at most 40.95 s).
ADVERT_RANGE = (0.05, 40.0)


class VipError(ValueError):
    """A ``vip*`` setting is malformed (the message names the setting)."""


def parse_vip(key: str, value: Any) -> ipaddress.IPv4Interface:
    """``ADDR/PREFIX`` (IPv4): the address clients use, the prefix of its subnet."""
    if not isinstance(value, str) or "/" not in value:
        raise VipError(f"{key}: expected ADDR/PREFIX (like 10.0.0.100/24), got {value!r}")
    try:
        vip = ipaddress.ip_interface(value.strip())
    except ValueError as exc:
        raise VipError(f"{key}: {exc}") from None
    if not isinstance(vip, ipaddress.IPv4Interface):
        raise VipError(f"{key}: only IPv4 addresses are supported, got {value!r}")
    net = vip.network
    if net.prefixlen < 31 and vip.ip in (net.network_address, net.broadcast_address):
        raise VipError(f"{key}: {vip.ip} is the network or broadcast address of {net}")
    if vip.ip.is_loopback or vip.ip.is_multicast or vip.ip.is_unspecified \
            or vip.ip.is_link_local:
        raise VipError(f"{key}: {vip.ip} cannot be a floating address")
    return vip


def parse_interface(key: str, value: Any) -> str:
    if not isinstance(value, str) or not IFNAME_RE.fullmatch(value) or value in (".", ".."):
        raise VipError(f"{key}: not an interface name: {value!r}")
    return value


def _int_in(key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise VipError(f"{key}: expected a number from {low} to {high}, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise VipError(f"{key}: expected a number from {low} to {high}, got {value!r}") from None
    if not low <= number <= high:
        raise VipError(f"{key}: expected a number from {low} to {high}, got {value!r}")
    return number


def parse_router_id(key: str, value: Any) -> int:
    return _int_in(key, value, 1, 255)


def parse_priority(key: str, value: Any) -> int:
    # 255 is reserved for the address owner and 0 for "leaving" (RFC 5798 5.2.4).
    return _int_in(key, value, 1, 254)


def parse_advert_interval(key: str, value: Any) -> float:
    low, high = ADVERT_RANGE
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise VipError(f"{key}: expected seconds, got {value!r}")
    try:
        seconds = round(float(value), 2)
    except ValueError:
        raise VipError(f"{key}: expected seconds, got {value!r}") from None
    if not low <= seconds <= high:
        raise VipError(f"{key}: expected {low} to {high} seconds, got {value!r}")
    return seconds


def parse_peers(key: str, value: Any) -> tuple[str, ...]:
    """Unicast peers (the other balancers' addresses): for networks without multicast."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise VipError(f"{key}: expected a list of IPv4 addresses")
    peers = []
    for item in items:
        try:
            peers.append(ipaddress.IPv4Address(item.strip()))
        except ValueError:
            raise VipError(f"{key}: not an IPv4 address: {item!r}") from None
    return tuple(str(p) for p in peers)


def router_id_for(vip: ipaddress.IPv4Interface, configured: int | None = None) -> int:
    """The VRRP virtual router id: ``configured``, else 1-255 from a hash of the address.

    Balancers given the same ``--vip`` derive the same id with no other
    setting; two groups on one LAN collide with probability 1/255 and should
    then set ``vip_router_id`` (keepalived drops, and logs, adverts whose
    addresses do not match its own, so a collision is noisy, not harmful).
    """
    if configured is not None:
        return configured
    digest = hashlib.sha256(b"lbadapter-vrrp " + vip.ip.packed).digest()
    return 1 + int.from_bytes(digest[:4], "big") % 255


def check_vip(vip: ipaddress.IPv4Interface | None, interface: str | None,
              listen: tuple[str, int], peers: tuple[str, ...], state_dir: str) -> None:
    """Checks across settings: both or neither of --vip/--vip-interface, a listen
    address the VIP reaches, peers other than the VIP, a state dir keepalived can name."""
    if (vip is None) != (interface is None):
        raise VipError("--vip and --vip-interface go together (ADDR/PREFIX and the "
                       "interface to hold it on)")
    if vip is None:
        if peers:
            raise VipError("vip_unicast_peers needs --vip")
        return
    host = listen[0]
    if host not in ("0.0.0.0", "::", "", str(vip.ip)):
        raise VipError(f"--listen {host}:{listen[1]}: with --vip, HAProxy must listen on "
                       f"0.0.0.0 (or on {vip.ip} with net.ipv4.ip_nonlocal_bind=1), or "
                       "clients of the floating address would not reach it")
    if str(vip.ip) in peers:
        raise VipError(f"vip_unicast_peers: {vip.ip} is the floating address itself")
    if not re.fullmatch(r"[A-Za-z0-9_./+=@-]+", state_dir):
        raise VipError(f"state_dir: {state_dir!r}: with --vip its path goes into "
                       "keepalived.conf; use letters, digits and _./+=@- only")
