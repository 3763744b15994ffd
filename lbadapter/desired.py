"""Desired HAProxy servers, computed from membership (never from event history).

Membership is a snapshot (``agent.members()`` or ``serf members -format=json``);
every member carrying the backend tag maps to one server whose name is a
stable, HAProxy-safe form of the member name. Recomputing from the snapshot
each time makes lost, duplicated or reordered events harmless.

Several balancers follow the same cluster, so everything HAProxy keys
sessions on is a function of the member alone, never of the order a
balancer saw things in: the server name (:func:`server_name`), the server
ID (:func:`server_id`; stick tables and the peers protocol carry it) and
so the cookie (HAProxy's dynamic cookie: a hash of the shared key and the
server's address). Backends steer themselves with two tags, ``lb-weight=N``
(0..256) and ``lb-state=ready|drain|maint``; a malformed one is reported
and ignored (the server keeps serving with the defaults), never fatal.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from swimlib.records import field, record, replace

__all__ = ["BALANCER_TAG", "DEFAULT_WEIGHT", "PEER_PORT_TAG", "STATE_TAG", "WEIGHT_TAG",
           "Balancer", "DesiredServer", "MemberLike", "MemberProblems", "MemberRecord", "Want",
           "balancer_peers", "desired_servers", "member_label", "members_from_json",
           "parse_port_tag", "parse_state_tag", "parse_weight_tag", "server_id", "server_name",
           "usable_ip"]

log = logging.getLogger("lbadapter")

_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")
#: What HAProxy accepts in a server name (``invalid_char()``), bounded in length.
_SERVER_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,80}")
#: Stats rows use these as ``svname`` for the proxy totals: a server must never be one.
_RESERVED_NAMES = frozenset({"FRONTEND", "BACKEND"})
#: A ``port`` tag: ASCII digits only (``int()`` also takes ``" 80"``, ``"+80"``, ``"8_0"``
#: and full-width or Arabic-Indic digits).
_PORT_TAG = re.compile(r"[0-9]{1,5}")
#: Characters a member label keeps as they are; everything else is escaped.
_LABEL_KEEP = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:@+=,/-")
_LABEL_MAX = 128

#: Balancers carry this tag (DESIGN 3.1b); their peers port in :data:`PEER_PORT_TAG`.
BALANCER_TAG = ("role", "balancer")
PEER_PORT_TAG = "lb-peer-port"
#: A backend's own steering: its weight (HAProxy's 0..256) and its admin state.
WEIGHT_TAG = "lb-weight"
STATE_TAG = "lb-state"
DEFAULT_WEIGHT = 1
MAX_WEIGHT = 256
#: ``lb-state`` values, as ``set server ... state`` spells them.
STATES = ("ready", "drain", "maint")
#: ASCII digits only, at most 3 (``int()`` also takes signs, spaces, ``1_0``, other scripts).
_WEIGHT_TAG = re.compile(r"[0-9]{1,3}")
#: Server IDs are positive 31-bit ints in HAProxy (``id`` > 2^31-1 is refused).
_MAX_ID = 0x7FFFFFFF


def _name_bytes(member: str) -> bytes:
    """The name's bytes: surrogate-escaped ones as they came, any other lone surrogate kept."""
    try:
        return member.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate outside U+DC80..U+DCFF (e.g. from JSON)
        return member.encode("utf-8", "surrogatepass")


def server_name(member: str) -> str:
    """A valid HAProxy server name for ``member``, the same on every run.

    HAProxy names allow letters, digits and ``-_.:``. Names that needed
    changes get a short hash of the original, so two members never collide.
    ``FRONTEND`` and ``BACKEND`` are hashed too: in stats they name the totals.
    """
    safe = _UNSAFE.sub("_", member)[:64]
    if safe == member and safe and safe not in _RESERVED_NAMES:
        return safe
    digest = hashlib.sha256(_name_bytes(member)).hexdigest()[:8]
    return f"{safe}-{digest}" if safe else f"m-{digest}"


def server_id(name: str, attempt: int = 0) -> int:
    """HAProxy server ID (``id N``, 1..2^31-1) for server ``name``: a hash, the same everywhere.

    Stick tables and the peers protocol refer to servers by ID, so two
    balancers must give a member the same one, as must a reload. ``attempt``
    > 0 gives the alternatives :func:`desired_servers` uses on a collision.
    """
    key = f"lbadapter-server-id:{name}" + (f"#{attempt}" if attempt else "")
    value = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") & _MAX_ID
    return value or 1


def haproxy_address(addr: str, port: int) -> str:
    """``ip:port``, with IPv6 literals bracketed (config file and CLI syntax)."""
    host = f"[{addr}]" if ":" in addr else addr
    return f"{host}:{port}"


def member_label(member: str) -> str:
    """``member`` as safe text for logs, templates and ``lbadapter status``.

    A name can hold newlines, ``;``, ``#``, quotes, terminal escapes and
    invalid UTF-8; each such character becomes ``\\xHH``/``\\uHHHH`` (the
    backslash itself too, so the escaping is unambiguous) and long names are
    cut, so a label can never start a new line, a comment or a command.
    """
    out = [ch if ch in _LABEL_KEEP else _escape(ch) for ch in member[:_LABEL_MAX]]
    return "".join(out) + ("..." if len(member) > _LABEL_MAX else "")


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else (
        f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")


def parse_port_tag(text: object) -> int | None:
    """The port a ``port`` tag names (1..65535), or None if it is not exactly a port."""
    if not isinstance(text, str) or not _PORT_TAG.fullmatch(text):
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


def usable_ip(addr: object) -> tuple[str | None, str]:
    """``(canonical address, "")`` for an address HAProxy can connect to, else ``(None, why)``.

    IPv6 zone ids (``fe80::1%eth0``) are refused: Python accepts any text
    after the ``%`` (newlines included) and HAProxy cannot resolve them. The
    unspecified address means "the client's destination" to HAProxy (a
    loop back into our own frontend); multicast and broadcast cannot take a
    connection. IPv4-mapped IPv6 becomes plain IPv4, the form HAProxy reports
    back (Python would print ``::ffff:a00:1``, HAProxy ``::ffff:10.0.0.1``).
    """
    if not isinstance(addr, str):
        return None, "addr_invalid"
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None, "addr_invalid"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:
            return None, "addr_scoped"
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
    if ip.is_unspecified or ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        return None, "addr_unusable"
    return str(ip), ""


def parse_weight_tag(text: object) -> int | None:
    """The weight an ``lb-weight`` tag names (0..256, HAProxy's range), or None."""
    if not isinstance(text, str) or not _WEIGHT_TAG.fullmatch(text):
        return None
    weight = int(text)
    return weight if weight <= MAX_WEIGHT else None


def parse_state_tag(text: object) -> str | None:
    """The admin state an ``lb-state`` tag names (``ready``, ``drain``, ``maint``), or None."""
    return text if isinstance(text, str) and text in STATES else None


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


@record
class MemberRecord:
    """A member read from JSON (``lbadapter render --members-json``)."""

    name: str
    addr: str
    port: int
    tags: Mapping[str, str] = field(factory=dict)
    status: str = "alive"

    @property
    def tag_map(self) -> dict[str, str]:
        return dict(self.tags)

    @property
    def status_name(self) -> str:
        return self.status


def _check_name(_: str, value: str) -> None:
    if not isinstance(value, str) or not _SERVER_NAME.fullmatch(value) \
            or value in _RESERVED_NAMES:
        raise ValueError(f"not a safe HAProxy server name: {value!r}")


def _check_addr(_: str, value: str) -> None:
    if usable_ip(value)[0] != value:
        raise ValueError(f"not a canonical, usable IP address: {value!r}")


def _check_port(_: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        raise ValueError(f"not a port: {value!r}")


def _check_weight(_: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_WEIGHT:
        raise ValueError(f"not a weight (0..{MAX_WEIGHT}): {value!r}")


def _check_state(_: str, value: str) -> None:
    if value not in STATES:
        raise ValueError(f"not a server state ({', '.join(STATES)}): {value!r}")


def _check_id(_: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_ID:
        raise ValueError(f"not a server id: {value!r}")


def _check_type(kind: type) -> Callable[[str, object], None]:
    def check(name: str, value: object) -> None:
        if not isinstance(value, kind):
            raise TypeError(f"{name} must be a {kind.__name__}, got {value!r}")
    return check


@record
class DesiredServer:
    """One server of the managed backend as membership wants it.

    This is the one place member data is checked on its way to HAProxy:
    construction refuses a name, address or port that could not go into a
    config line or a runtime API command as they are, so the renderer and
    the CLI client never see one. ``label`` is the member name made safe to
    print (:func:`member_label`).
    """

    name: str = field(validator=_check_name)
    member: str = field(validator=_check_type(str))
    addr: str = field(validator=_check_addr)
    port: int = field(validator=_check_port)
    want: Want = field(validator=_check_type(Want))
    #: ``lb-weight`` (HAProxy's 0..256).
    weight: int = field(default=DEFAULT_WEIGHT, validator=_check_weight)
    #: ``lb-state``: what the backend asks for while it is a member (``ready``, ``drain``,
    #: ``maint``); a leaving or failed member's server goes away whatever it says.
    state: str = field(default="ready", validator=_check_state)
    #: HAProxy server ID (0: none forced; :func:`desired_servers` always sets one).
    sid: int = field(default=0, validator=_check_id)

    @property
    def label(self) -> str:
        return member_label(self.member)

    @property
    def address(self) -> str:
        """``ip:port``, with IPv6 literals bracketed (config file and CLI syntax)."""
        return haproxy_address(self.addr, self.port)

    @property
    def identity_options(self) -> str:
        """``id N weight W``: the per-server options of a ``server`` line and ``add server``."""
        return (f"id {self.sid} " if self.sid else "") + f"weight {self.weight}"


class MemberProblems:
    """Members left out of the desired set: counted by reason, logged once each.

    ``desired_servers`` runs on every adapter wake-up; without this, one
    hostile member would log the same warning every few seconds forever.
    ``last`` counts the members skipped by the latest computation, by reason.
    """

    MEMORY = 4096

    def __init__(self) -> None:
        self.last: Counter[str] = Counter()
        self._logged: set[tuple[str, str]] = set()

    def begin(self) -> None:
        self.last = Counter()

    def report(self, member: str, reason: str, message: str) -> None:
        self.last[reason] += 1
        key = (member, reason)
        if key in self._logged:
            return
        if len(self._logged) >= self.MEMORY:
            self._logged.clear()  # bounded memory: an attacker may invent names forever
        self._logged.add(key)
        log.warning("member %s: %s", member_label(member), message)


def _member_port(member: MemberLike, tags: Mapping[str, str], default_port: int | None,
                 problems: MemberProblems) -> int | None:
    text = tags.get("port")
    if text is None:
        return default_port
    port = parse_port_tag(text)
    if port is None:
        fallback = "using --backend-port" if default_port else "skipped"
        problems.report(member.name, "port_invalid",
                        f"bad port tag {member_label(str(text))}; {fallback}")
        return default_port
    return port


def _candidate(m: MemberLike, backend_tag: tuple[str, str], default_port: int | None,
               problems: MemberProblems) -> DesiredServer | None:
    """The server one member asks for, or None (not a backend, or unusable: reported)."""
    tags = m.tag_map
    key, value = backend_tag
    if tags.get(key) != value:
        return None
    name = m.name
    if not isinstance(name, str):
        problems.report(repr(name), "name_invalid", "name is not a string; skipped")
        return None
    port = _member_port(m, tags, default_port, problems)
    if port is None:
        if "port" not in tags:  # (a bad tag was reported by _member_port)
            problems.report(name, "port_missing",
                            "no 'port' tag and no --backend-port is set; skipped")
        return None
    addr, why = usable_ip(m.addr)
    if addr is None:
        text = m.addr if isinstance(m.addr, str) else repr(m.addr)
        what = "not an IP address" if why == "addr_invalid" else f"unusable ({why})"
        problems.report(name, why, f"address {member_label(text)} is {what}; skipped")
        return None
    status = m.status_name
    want = _WANT_BY_STATUS.get(status, Want.GONE) if isinstance(status, str) else Want.GONE
    weight, state = _steering(name, tags, problems)
    return DesiredServer(server_name(name), name, addr, port, want, weight, state)


def _steering(name: str, tags: Mapping[str, str], problems: MemberProblems) -> tuple[int, str]:
    """``lb-weight`` and ``lb-state``; a bad value is reported and ignored (the default),
    so a typo never takes a working backend out or breaks the config."""
    weight, state = DEFAULT_WEIGHT, "ready"
    if WEIGHT_TAG in tags:
        parsed = parse_weight_tag(tags[WEIGHT_TAG])
        if parsed is None:
            problems.report(name, "weight_invalid",
                            f"bad {WEIGHT_TAG} tag {member_label(str(tags[WEIGHT_TAG]))} "
                            f"(expected 0..{MAX_WEIGHT}); using {DEFAULT_WEIGHT}")
        else:
            weight = parsed
    if STATE_TAG in tags:
        parsed_state = parse_state_tag(tags[STATE_TAG])
        if parsed_state is None:
            problems.report(name, "state_invalid",
                            f"bad {STATE_TAG} tag {member_label(str(tags[STATE_TAG]))} "
                            f"(expected {'|'.join(STATES)}); using ready")
        else:
            state = parsed_state
    return weight, state


def _preference(server: DesiredServer) -> tuple[bool, str]:
    """Collision order: a member whose name is the server name as is, then by name.

    Membership snapshots come in any order; picking by position would move
    the server between the two members from one pass to the next.
    """
    return (server.name != server.member, server.member)


def desired_servers(members: Iterable[MemberLike], backend_tag: tuple[str, str],
                    default_port: int | None, problems: MemberProblems | None = None,
                    ) -> dict[str, DesiredServer]:
    """Server name -> desired server, for members carrying ``backend_tag``.

    A member without a usable ``port`` tag uses ``default_port``; with
    neither it is skipped, and so is one whose address HAProxy could not
    use. Each member is handled on its own: a member that cannot be turned
    into a server is reported to ``problems`` and skipped, never fatal for
    the others.
    """
    problems = problems if problems is not None else MemberProblems()
    problems.begin()
    candidates: list[DesiredServer] = []
    for m in members:
        try:
            found = _candidate(m, backend_tag, default_port, problems)
        except Exception as exc:  # a member object we cannot read: skip it, keep the rest
            problems.report(_safe_name(m), "member_error",
                            f"unreadable ({type(exc).__name__}: {member_label(str(exc))}); "
                            "skipped")
            continue
        if found is not None:
            candidates.append(found)
    out: dict[str, DesiredServer] = {}
    for server in sorted(candidates, key=_preference):
        kept = out.setdefault(server.name, server)
        if kept is not server:
            problems.report(server.member, "name_collision",
                            f"server name {server.name} is already taken by member "
                            f"{kept.label}; skipped")
    return _with_ids(out)


def _with_ids(servers: dict[str, DesiredServer]) -> dict[str, DesiredServer]:
    """Give each server its ID; on a (rare: 31-bit hash) collision, the name that
    sorts first keeps the hash and the other probes on, so any balancer seeing
    the same members assigns the same IDs."""
    taken: set[int] = set()
    out: dict[str, DesiredServer] = {}
    for name in sorted(servers):
        attempt = 0
        while (sid := server_id(name, attempt)) in taken:
            attempt += 1
        taken.add(sid)
        out[name] = replace(servers[name], sid=sid)
    return out


@record
class Balancer:
    """A balancer member as a HAProxy ``peers`` entry (stick-table replication)."""

    #: Peer name: the member name made HAProxy-safe (:func:`server_name`).
    name: str = field(validator=_check_name)
    member: str = field(validator=_check_type(str))
    addr: str = field(validator=_check_addr)
    port: int = field(validator=_check_port)
    #: This balancer itself (HAProxy's ``localpeer``; it binds this address).
    local: bool = False

    @property
    def address(self) -> str:
        return haproxy_address(self.addr, self.port)

    @property
    def label(self) -> str:
        return member_label(self.member)


#: Balancers that count as peers: every one membership still lists, failed or left
#: (a restarted balancer leaves and comes back: dropping and re-adding it would cost
#: every other balancer two reloads); it goes when membership reaps it.
_PEER_STATUSES = frozenset({"alive", "leaving", "left", "failed"})


def balancer_peers(members: Iterable[MemberLike], local_name: str,
                   local: tuple[str, int] | None,
                   problems: MemberProblems | None = None) -> list[Balancer]:
    """The ``peers`` entries: every balancer member with a usable ``lb-peer-port``, sorted.

    ``local`` is this balancer's peers address, used when the snapshot does
    not list it (yet); the local entry is always present, as HAProxy needs it.
    A balancer with an unusable address or port tag is reported and left out.
    """
    problems = problems if problems is not None else MemberProblems()
    found: dict[str, Balancer] = {}
    for m in members:
        try:
            tags = m.tag_map
            if tags.get(BALANCER_TAG[0]) != BALANCER_TAG[1] or not isinstance(m.name, str):
                continue
            is_local = m.name == local_name
            if not is_local and m.status_name not in _PEER_STATUSES:
                continue
            port = parse_port_tag(tags.get(PEER_PORT_TAG))
            addr = usable_ip(m.addr)[0]
            if is_local and local is not None:
                addr, port = local
            if port is None or addr is None:
                if PEER_PORT_TAG in tags or addr is None:
                    problems.report(m.name, "peer_invalid",
                                    f"balancer without a usable address or {PEER_PORT_TAG} "
                                    "tag; not a stick-table peer")
                continue
            peer = Balancer(server_name(m.name), m.name, addr, port, is_local)
        except (TypeError, ValueError, AttributeError):
            problems.report(_safe_name(m), "peer_invalid", "unreadable balancer; skipped")
            continue
        found.setdefault(peer.name, peer)
    local_peer = server_name(local_name)
    if local_peer not in found and local is not None:
        found[local_peer] = Balancer(local_peer, local_name, local[0], local[1], True)
    return [found[name] for name in sorted(found)]


def _safe_name(member: object) -> str:
    """The member's name for a report about a member that could not be read at all."""
    try:
        name = member.name  # type: ignore[attr-defined]
    except Exception:
        return "?"
    return name if isinstance(name, str) else repr(name)


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
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            shown = repr(item)
            shown = shown if len(shown) <= 200 else shown[:200] + "..."
            raise ValueError(f"members[{i}]: expected name, addr, port, tags, status; "
                             f"got {shown}") from None
        out.append(MemberRecord(name, addr, port, {str(k): str(v) for k, v in tags.items()},
                                status))
    return out
