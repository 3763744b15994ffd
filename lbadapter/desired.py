"""Desired HAProxy servers, computed from membership (never from event history).

Membership is a snapshot (``agent.members()`` or ``serf members -format=json``);
every member carrying the backend tag maps to one server whose name is a
stable, HAProxy-safe form of the member name. Recomputing from the snapshot
each time makes lost, duplicated or reordered events harmless.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import attrs

__all__ = ["DesiredServer", "MemberLike", "MemberRecord", "Want", "desired_servers",
           "members_from_json", "server_name"]

log = logging.getLogger("lbadapter")

_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def server_name(member: str) -> str:
    """A valid HAProxy server name for ``member``, the same on every run.

    HAProxy names allow letters, digits and ``-_.:``. Names that needed
    changes get a short hash of the original, so two members never collide.
    """
    safe = _UNSAFE.sub("_", member)[:64]
    if safe == member and safe:
        return safe
    digest = hashlib.sha256(member.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{safe}-{digest}" if safe else f"m-{digest}"


class Want(enum.Enum):
    """What a member's server should become."""

    READY = "ready"  #: alive: serve (after the first good health check)
    DRAIN = "drain"  #: leaving/left: drain, then maintenance, then delete
    GONE = "gone"  #: failed or unknown: maintenance at once, then delete


_WANT_BY_STATUS = {"alive": Want.READY, "leaving": Want.DRAIN, "left": Want.DRAIN,
                   "failed": Want.GONE}


class MemberLike(Protocol):
    """What a member must offer (``swimlib.ClusterMember`` and :class:`MemberRecord` do)."""

    @property
    def name(self) -> str: ...
    @property
    def addr(self) -> str: ...
    @property
    def tag_map(self) -> dict[str, str]: ...
    @property
    def status_name(self) -> str: ...


@attrs.frozen
class MemberRecord:
    """A member read from JSON (``lbadapter render --members-json``)."""

    name: str
    addr: str
    port: int
    tags: Mapping[str, str] = attrs.field(factory=dict)
    status: str = "alive"

    @property
    def tag_map(self) -> dict[str, str]:
        return dict(self.tags)

    @property
    def status_name(self) -> str:
        return self.status


@attrs.frozen
class DesiredServer:
    """One server of the managed backend as membership wants it."""

    name: str
    member: str
    addr: str
    port: int
    want: Want

    @property
    def address(self) -> str:
        """``ip:port``, with IPv6 literals bracketed (config file and CLI syntax)."""
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"{host}:{self.port}"


def _member_port(member: MemberLike, default_port: int | None) -> int | None:
    text = member.tag_map.get("port")
    if text is not None:
        try:
            port = int(text)
            if 0 < port < 65536:
                return port
        except ValueError:
            pass
        log.warning("member %s: bad port tag %r; %s", member.name, text,
                    "using --backend-port" if default_port else "skipped")
    return default_port


def desired_servers(members: Iterable[MemberLike], backend_tag: tuple[str, str],
                    default_port: int | None) -> dict[str, DesiredServer]:
    """Server name -> desired server, for members carrying ``backend_tag``.

    A member without a usable ``port`` tag uses ``default_port``; with
    neither it is skipped (and logged), since HAProxy needs a port.
    """
    key, value = backend_tag
    out: dict[str, DesiredServer] = {}
    for m in members:
        if m.tag_map.get(key) != value:
            continue
        port = _member_port(m, default_port)
        if port is None:
            log.warning("member %s has no 'port' tag and no --backend-port is set; skipped",
                        m.name)
            continue
        try:
            addr = str(ipaddress.ip_address(m.addr))
        except ValueError:
            log.warning("member %s: address %r is not an IP address; skipped", m.name, m.addr)
            continue
        name = server_name(m.name)
        want = _WANT_BY_STATUS.get(m.status_name, Want.GONE)
        if name in out:
            log.warning("members %s and %s map to one server name %s; keeping the first",
                        out[name].member, m.name, name)
            continue
        out[name] = DesiredServer(name, m.name, addr, port, want)
    return out


def _split_addr(addr: str, port: int) -> str:
    """``"10.0.0.1:7946"`` -> ``"10.0.0.1"``; also ``[v6]:p`` and Serf's ``v6:p``."""
    host = addr
    if addr.startswith("["):
        host = addr[1:].partition("]")[0]
    elif addr.endswith(f":{port}") and addr.count(":") >= 1:
        host = addr[: -len(f":{port}")]
    return host


def members_from_json(data: Any) -> list[MemberRecord]:
    """Members from ``serf members -format=json`` output (``{"members": [...]}``).

    A bare list of members is accepted too. Raises ``ValueError`` naming the
    first malformed entry.
    """
    items = data.get("members") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ValueError('expected {"members": [...]} (serf members -format=json)')
    out: list[MemberRecord] = []
    for i, item in enumerate(items):
        try:
            name = item["name"]
            port = int(item.get("port", 0))
            addr = _split_addr(str(item["addr"]), port)
            tags = item.get("tags") or {}
            status = str(item.get("status", "alive"))
            if not isinstance(name, str) or not isinstance(tags, dict):
                raise TypeError
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ValueError(f"members[{i}]: expected name, addr, port, tags, status; "
                             f"got {item!r}") from None
        out.append(MemberRecord(name, addr, port, {str(k): str(v) for k, v in tags.items()},
                                status))
    return out
