"""``swimlib agent -discover=CLUSTER``: the sockets and the clock of mDNS discovery.

The rule (:class:`swimlib.mdns.rule.Discovery`) decides; this shell gives it
the datagrams and the time, sends what it returns and hands the peers it
finds to :meth:`Agent.join` (the path ``-join`` takes). Imported only when
``-discover`` is given.

Two IPv4 sockets, as hashicorp/mdns has them: one bound to port 5353 (shared
with other responders on the host: ``SO_REUSEADDR``/``SO_REUSEPORT``) in the
group 224.0.0.251, which hears questions and answers them from port 5353;
one on an ephemeral port, which asks and hears the unicast answers. Both
pick the interface of the address we are bound to (``-bind`` or ``-iface``;
with a wildcard bind, of the address we advertise) for the group and for
what they send (``IP_ADD_MEMBERSHIP``, ``IP_MULTICAST_IF``): a host without
a default route (a container, a network namespace) still reaches its link.
Failing that, the kernel's route for the group decides, as for serf.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup, TaskStatus

from swimlib.errors import ConfigError, JoinError
from swimlib.mdns.rule import MDNS_GROUP_V4, MDNS_PORT, Advert, Discovery, Join, Send, join_address

if TYPE_CHECKING:
    from swimlib.agent.runtime import Agent

log = logging.getLogger("swimlib")

#: Datagrams read per wake-up before the other tasks get a turn.
BATCH = 32
READ_SIZE = 9000 + 1  # one more than mDNS allows, so a larger one is seen (and refused)
#: RFC 6762 section 11: sent with TTL 255 (and never routed: 224.0.0.0/24 is link-local).
MULTICAST_TTL = 255


def open_sockets(interface_addr: str | None) -> tuple[socket.socket, socket.socket]:
    """(responder on 5353 in the group, querier on an ephemeral port), non-blocking.

    ``interface_addr``: an IPv4 address of the interface to use (None: the
    kernel's route for the group). Raises ``OSError``."""
    iface = socket.inet_aton(interface_addr) if interface_addr else socket.inet_aton("0.0.0.0")
    group = socket.inet_aton(MDNS_GROUP_V4[0])
    opened: list[socket.socket] = []
    try:
        responder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        opened.append(responder)
        responder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            with contextlib.suppress(OSError):
                responder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        responder.bind(("0.0.0.0", MDNS_PORT))
        responder.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group + iface)
        querier = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        opened.append(querier)
        querier.bind(("0.0.0.0", 0))
        for sock in opened:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, iface)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, MULTICAST_TTL)
            sock.setblocking(False)
    except BaseException:
        for sock in opened:
            sock.close()
        raise
    return responder, querier


def interface_address(bind_host: str) -> str | None:
    """The IPv4 address whose interface carries mDNS: the bind address when it
    is one (``-iface`` resolves to one), else None."""
    try:
        ip = ipaddress.ip_address(bind_host)
    except ValueError:
        return None
    return str(ip) if ip.version == 4 and not ip.is_unspecified else None


def interface_candidates(bind_host: str, advertise_host: str) -> list[str | None]:
    """Interfaces to try, best first: the bind address's; with a wildcard bind,
    the advertised address's (the one peers are told to use; not loopback);
    then the kernel's route for the group (None)."""
    found = interface_address(bind_host)
    if found is None:
        advertised = interface_address(advertise_host)
        if advertised is not None and not ipaddress.ip_address(advertised).is_loopback:
            found = advertised
    return [found, None] if found is not None else [None]


def open_first(candidates: Sequence[str | None]) -> tuple[socket.socket, socket.socket]:
    """:func:`open_sockets` on the first candidate that works (``OSError``: the last
    one's error; an advertised address may not be local, say behind NAT)."""
    error: OSError | None = None
    for candidate in candidates:
        try:
            return open_sockets(candidate)
        except OSError as exc:
            error = exc
    assert error is not None
    raise error


def make_advert(cluster: str, node: str, addr: str, port: int) -> Advert | None:
    """Our advert: host name as serf's (``os.Hostname()`` + ``.``), or
    ``<node>.local.`` if that is no DNS name; None (ask, never answer) if the
    node name cannot be a DNS label, with a warning."""
    for host in (socket.gethostname() + ".", f"{node}.local."):
        try:
            return Advert(cluster, node, host, addr, port)
        except ValueError:
            continue
    log.warning("agent.mdns: node name %r is not a DNS name: not advertised, only asking",
                node)
    return None


async def run_discovery(agent: Agent, cluster: str, bind_host: str, *, replay: bool = False,
                        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Advertise ``agent`` and join the peers found, until cancelled. Reports
    started once the sockets are open (``OSError`` before that: the agent
    does not start, as serf's "Error starting mDNS listener")."""
    if not cluster:
        raise ConfigError("-discover: the cluster name must not be empty")
    addr, port = agent.address
    try:
        responder, querier = open_first(interface_candidates(bind_host, addr))
    except OSError as exc:
        raise OSError(f"Error starting mDNS listener: {exc.strerror or exc}") from None
    rule = Discovery(cluster, make_advert(cluster, agent.name, addr, port), (addr, port),
                     anyio.current_time(), stats=agent.counters)
    try:
        async with anyio.create_task_group() as tg:
            wake = _Wake()
            tg.start_soon(_read, agent, rule, responder, responder, wake)
            tg.start_soon(_read, agent, rule, querier, responder, wake)
            tg.start_soon(_clock, agent, rule, querier, tg, wake, replay)
            task_status.started()
    finally:
        responder.close()
        querier.close()


class _Wake:
    """Wakes the clock when a packet may have moved the rule's next deadline."""

    def __init__(self) -> None:
        self.event = anyio.Event()

    def set(self) -> None:
        self.event.set()

    def take(self) -> anyio.Event:
        if self.event.is_set():
            self.event = anyio.Event()
        return self.event


async def _read(agent: Agent, rule: Discovery, sock: socket.socket, answer_from: socket.socket,
                wake: _Wake) -> None:
    """Datagrams on ``sock`` into the rule; its answers go out from ``answer_from``
    (port 5353, as RFC 6762 wants)."""
    while True:
        await anyio.wait_readable(sock)
        deadline = rule.next_deadline()
        for _ in range(BATCH):
            try:
                data, source = sock.recvfrom(READ_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                agent.counters["mdns.recv_error"] += 1
                continue
            with agent.faults.boundary("mdns"):
                for send in rule.on_packet(data, (source[0], source[1]), anyio.current_time()):
                    _send(agent, answer_from, send)
        if rule.next_deadline() < deadline:  # a join became due sooner
            wake.set()


def _send(agent: Agent, sock: socket.socket, send: Send) -> bool:
    try:
        sock.sendto(send.data, send.dest)
    except OSError as exc:
        agent.counters["mdns.send_error"] += 1
        log.debug("agent.mdns: send to %s:%d failed: %s", *send.dest, exc)
        return False
    return True


def _known(agent: Agent) -> set[str]:
    return {join_address(m.addr, m.port) for m in agent.members() if m.status_name == "alive"}


async def _clock(agent: Agent, rule: Discovery, querier: socket.socket, tg: TaskGroup,
                 wake: _Wake, replay: bool) -> None:
    """Polls and joins when the rule says they are due."""
    while True:
        woken = wake.take()
        now = anyio.current_time()
        for action in rule.tick(now, _known(agent)):
            if isinstance(action, Send):
                if not _send(agent, querier, action):
                    log.error("agent.mdns: Failed to poll for new hosts: cannot send to %s:%d",
                              *action.dest)
            elif isinstance(action, Join) and not agent.has_left:  # (serf: can't join after leave)
                tg.start_soon(_join, agent, action.addrs, replay, rule.joined)
        deadline = rule.next_deadline()
        with anyio.move_on_after(max(0.0, deadline - anyio.current_time())
                                 if math.isfinite(deadline) else math.inf):
            await woken.wait()


async def _join(agent: Agent, addrs: Sequence[str], replay: bool,
                done: Callable[[Sequence[str], bool], None]) -> None:
    """serf's mDNS join, through the agent's own join path, with serf's log lines."""
    ok = False
    try:
        n = await agent.join(list(addrs), replay=replay)
        ok = True
        log.info("agent.mdns: Joined %d hosts", n)
    except (JoinError, ConfigError) as exc:
        log.error("agent.mdns: Failed to join: %s", exc)
    except Exception as exc:
        agent.faults.record("join", exc)
    finally:
        done(addrs, ok)
