"""``swimlib agent``: a drop-in for ``serf agent``.

Wires the runtime to what the command line asks for: Serf-style logs, joins
retried with backoff (``--join ha`` works before ``ha`` is up), the snapshot
file, event-handler scripts fed through Serf's coalescing, the RPC port for
``serf``/``swimlib`` clients, and a graceful leave on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import functools
import importlib.util
import logging
import random
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from swimlib import backend
from swimlib.agent import serf_config
from swimlib.agent.addresses import split_host_port
from swimlib.agent.handlers import HandlerRunner, HandlerSpec, parse_handler_specs
from swimlib.agent.join import join_with_backoff, keep_rejoining, retry_join
from swimlib.agent.logs import Console, JsonLogFormatter, SerfLogFormatter
from swimlib.agent.memory import release_after_startup, resume_collector
from swimlib.agent.rejoin import Rejoiner
from swimlib.agent.rpc_adapter import start_rpc_server
from swimlib.agent.runtime import Agent, open_agent
from swimlib.agent.tags_file import load_tags_file
from swimlib.cluster.coalesce import EventCoalescer
from swimlib.cluster.events import Event, QueryEvent
from swimlib.config import PROFILES, SERF_PROTOCOL_MAX, Config
from swimlib.errors import ConfigError, JoinError, SwimError
from swimlib.exception_groups import innermost
from swimlib.rpc.goflags import (
    BoolFlag,
    format_go_duration,
    go_flag,
    parse_go_duration,
    parse_go_tags,
)
from swimlib.wire.serf import encode_tags

if TYPE_CHECKING:
    from swimlib.agent.snapshot import Snapshotter
    from swimlib.wire.crypto import Keyring

log = logging.getLogger("swimlib")

_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
           "warn": logging.WARNING, "warning": logging.WARNING, "err": logging.ERROR,
           "error": logging.ERROR}


#: The agent's Go boolean flags, for :func:`goflags.normalize_bool_flags`
#: (``-replay=false`` after ``-replay`` turns it off again: the last one wins, as in Go).
BOOL_FLAGS: Final = {
    "replay": BoolFlag("--replay", "--no-replay"),
    "rejoin": BoolFlag("--rejoin", "--no-rejoin"),
    "syslog": BoolFlag("--syslog", "--no-syslog"),
    "log-json": BoolFlag("--log-json", "--no-log-json"),
    "disable-compression": BoolFlag("--disable-compression", "--no-disable-compression"),
}


def add_parser(sub: Any) -> None:
    """``swimlib agent``: every option also in Go's spelling (``-node=web-1``), as serf's."""
    p = sub.add_parser("agent", help="run a swimlib agent (drop-in for serf agent)")
    p.add_argument(*go_flag("config-file"), *go_flag("config-dir"), dest="config_paths",
                   action="append", default=[], metavar="PATH",
                   help="serf JSON configuration file, or directory of *.json files read in "
                        "lexical order (repeatable; the command line wins)")
    p.add_argument(*go_flag("node"), help="node name (default: hostname)")
    p.add_argument(*go_flag("bind"), help="gossip address (UDP and TCP; default 0.0.0.0:7946)")
    p.add_argument(*go_flag("iface"),
                   help="network interface to bind to (its first usable address with a "
                        "wildcard --bind; else --bind must be one of its addresses)")
    p.add_argument(*go_flag("advertise"), help="address peers use to reach us")
    p.add_argument(*go_flag("join"), action="append", default=[], metavar="ADDR",
                   help="join through ADDR (retried with backoff until it succeeds)")
    p.add_argument(*go_flag("retry-join"), action="append", default=[], metavar="ADDR",
                   help="join through ADDR, retried every --retry-interval; the agent exits "
                        "after --retry-max failed retries (0: never)")
    p.add_argument(*go_flag("retry-interval"), metavar="DURATION",
                   help="wait between --retry-join attempts (Go duration, default 30s, "
                        "at least 1s)")
    p.add_argument(*go_flag("retry-max"), type=int, metavar="N",
                   help="--retry-join retries before giving up (default 0: unlimited)")
    p.add_argument(*go_flag("replay"), action="store_true",
                   help="replay old user events on join")
    p.add_argument("--no-replay", dest="replay", action="store_false", help=argparse.SUPPRESS)
    p.add_argument(*go_flag("tag"), action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(*go_flag("tags-file"), metavar="PATH",
                   help="keep the tags in PATH across restarts (not with --tag or --role)")
    p.add_argument(*go_flag("role"),
                   help="sets the tag role (serf's deprecated form of --tag role=...)")
    p.add_argument(*go_flag("rpc-addr"), help="RPC address (default 127.0.0.1:7373)")
    p.add_argument(*go_flag("rpc-auth"), help="RPC auth token")
    p.add_argument(*go_flag("event-handler"), action="append", default=[],
                   metavar="[FILTER=]SCRIPT")
    p.add_argument(*go_flag("encrypt"), metavar="BASE64KEY", help="gossip encryption key")
    p.add_argument(*go_flag("keyring-file"), metavar="PATH",
                   help="JSON keyring (first key primary)")
    p.add_argument(*go_flag("snapshot"), metavar="PATH",
                   help="snapshot file for rejoin after restart")
    p.add_argument(*go_flag("rejoin"), action="store_true",
                   help="with --snapshot: rejoin the cluster on start even after a leave")
    p.add_argument("--no-rejoin", dest="rejoin", action="store_false", help=argparse.SUPPRESS)
    p.add_argument(*go_flag("profile"), help=f"timing profile: {', '.join(PROFILES)} "
                                             "(default lan)")
    p.add_argument(*go_flag("protocol"), type=int, metavar="N",
                   help="Serf protocol version to speak and advertise, 2-5 (default 5: "
                        "below 4 queries are refused, below 3 only the role tag is sent)")
    p.add_argument(*go_flag("discover"), metavar="CLUSTER",
                   help="find and join peers by mDNS (multicast on the LAN) under this "
                        "cluster name, as serf -discover; serf agents interoperate")
    p.add_argument(*go_flag("broadcast-timeout"), metavar="DURATION",
                   help="how long a leave waits for its broadcast (Go duration, default 5s, "
                        "at least 1s)")
    p.add_argument(*go_flag("disable-compression"), action="store_true",
                   help="send push-pull streams uncompressed (as serf -disable-compression)")
    p.add_argument("--no-disable-compression", dest="disable_compression",
                   action="store_false", help=argparse.SUPPRESS)
    p.add_argument(*go_flag("log-level"),
                   help=f"{', '.join(sorted(_LEVELS))} (any case; default info)")
    p.add_argument(*go_flag("log-json"), action="store_true",
                   help="write every line on stdout as one JSON object (for log shippers)")
    p.add_argument("--no-log-json", dest="log_json", action="store_false",
                   help=argparse.SUPPRESS)
    p.add_argument(*go_flag("label"), metavar="LABEL",
                   help="cluster label (memberlist >= 0.3): members with another label, "
                        "or none, are refused, so two clusters on one network never merge")
    p.add_argument(*go_flag("metrics-addr"), metavar="HOST:PORT",
                   help="serve Prometheus metrics on http://HOST:PORT/metrics (needs the "
                        "extra swimlib[metrics]); statsd: statsd_addr in a config file")
    p.add_argument(*go_flag("syslog"), action="store_true",
                   help="also send the log to the local syslog (facility: syslog_facility "
                        "in a config file, default LOCAL0)")
    p.add_argument("--no-syslog", dest="syslog", action="store_false", help=argparse.SUPPRESS)
    p.add_argument(*go_flag("backend"), choices=backend.BACKENDS, default=None,
                   help=f"event loop (default: ${backend.ENV_VAR}, else "
                        f"{backend.DEFAULT_BACKEND})")
    p.set_defaults(func=run)


#: serf's floors for -retry-interval and -broadcast-timeout (lower values are raised, with
#: a warning).
MIN_RETRY_INTERVAL: Final = 1.0
MIN_BROADCAST_TIMEOUT: Final = 1.0


def _duration(flag: str, text: str) -> float:
    """A Go duration flag, in seconds."""
    try:
        return parse_go_duration(text) / 1e9
    except ValueError:
        raise ConfigError(f"-{flag}: invalid duration {text!r} (Go syntax: 30s, 1m30s, 500ms)"
                          ) from None


def _at_least(value: float, floor: float, serf_name: str) -> float:
    """serf's rule: a value below the floor is raised to it, and the operator told."""
    if value >= floor:
        return value
    _warn(f"'{serf_name}' is too low. Setting to {format_go_duration(floor)}")
    return floor


def parse_tags(items: Sequence[str]) -> dict[str, str]:
    try:
        return parse_go_tags(items)
    except ValueError as exc:
        raise ConfigError(f"invalid tag {str(exc)!r}: expected KEY=VALUE") from None


def load_keyring(encrypt: str | None, keyring_file: str | None) -> Keyring | None:
    if not encrypt and not keyring_file:
        return None  # and cryptography stays unloaded (several MB of RSS)
    from swimlib.wire.crypto import Keyring

    if encrypt and keyring_file:
        raise ConfigError("--encrypt and --keyring-file are mutually exclusive")
    if encrypt:
        try:
            key = base64.b64decode(encrypt, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError("--encrypt: key is not valid base64") from None
        return Keyring([key])
    if keyring_file:
        try:
            return Keyring.from_json(Path(keyring_file).read_text())
        except OSError as exc:
            raise ConfigError(f"--keyring-file: {exc}") from None
    return None


def run(args: argparse.Namespace) -> int:
    """Entry point of ``swimlib agent``; returns the process exit code."""
    Console.json_lines = args.log_json
    formatter = JsonLogFormatter() if args.log_json else SerfLogFormatter()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger("swimlib")
    root.handlers[:] = [handler]
    root.propagate = False
    try:
        settings = _Settings.from_args(args)
    except (ConfigError, SwimError) as exc:
        Console.error(str(exc))
        return 1
    root.setLevel(_LEVELS[settings.log_level])
    if settings.syslog_facility is not None:
        from swimlib.agent.syslog import open_syslog_handler

        try:
            root.addHandler(open_syslog_handler(settings.syslog_facility, formatter))
        except ConfigError as exc:
            Console.error(str(exc))
            return 1
    try:
        backend.run(_run_agent, settings, backend=settings.backend)
    except BaseException as exc:
        # Task groups deliver an error wrapped in an exception group.
        error = innermost(exc)
        if isinstance(error, KeyboardInterrupt | _StoppedWithoutLeave):
            return 1
        if isinstance(error, ConfigError | SwimError | OSError):
            Console.error(str(error))
            return 1
        raise
    return 0


class _StoppedWithoutLeave(Exception):
    """SIGINT with ``skip_leave_on_interrupt``: stop at once, exit 1 (as serf)."""


class _Settings:
    """Validated command-line settings (errors surface before anything binds)."""

    def __init__(self) -> None:
        self.name = ""
        self.bind: tuple[str, int] = ("0.0.0.0", 7946)
        self.advertise: tuple[str, int] | None = None
        self.rpc: tuple[str, int] = ("127.0.0.1", 7373)
        self.rpc_auth = ""
        self.join: list[str] = []
        self.retry_join: list[str] = []
        self.retry_interval = 30.0
        self.retry_max = 0
        self.replay = False
        self.tags: dict[str, str] = {}
        self.tags_file: str | None = None
        #: How many tags came from the tags file (None: no file read).
        self.restored_tags: int | None = None
        self.handlers: list[HandlerSpec] = []
        self.keyring: Keyring | None = None
        self.keyring_file: str | None = None
        self.snapshot: str | None = None
        self.rejoin = False
        self.config = Config.lan()
        self.log_level = "info"
        #: Log to the local syslog too, with this facility (None: not at all).
        self.syslog_facility: str | None = None
        #: Serve Prometheus metrics here (``--metrics-addr``; None: not at all).
        self.metrics_addr: tuple[str, int] | None = None
        #: Push metrics to statsd (UDP) and statsite (TCP) here, as go-metrics' sinks.
        self.statsd_addr: tuple[str, int] | None = None
        self.statsite_addr: tuple[str, int] | None = None
        self.backend = backend.DEFAULT_BACKEND
        #: serf's ``skip_leave_on_interrupt``: SIGINT stops without a graceful leave.
        self.skip_leave_on_interrupt = False
        #: serf's ``-discover``: the mDNS cluster name (None: no mDNS at all).
        self.discover: str | None = None
        #: The command line, read again on SIGHUP with the files it names.
        self.args: argparse.Namespace | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> _Settings:
        """Defaults, then the configuration files, then the command line (serf's order)."""
        files = serf_config.read_paths(args.config_paths, warn=_warn)
        settings = cls.from_config(serf_config.merge(serf_config.merge(DEFAULTS, files),
                                                     _command_line_config(args)), args)
        settings.args = args
        return settings

    @classmethod
    def from_config(cls, c: serf_config.FileConfig, args: argparse.Namespace) -> _Settings:
        s = cls()
        s.name = c.get("node_name") or socket.gethostname()
        s.bind = split_host_port(c["bind"], 7946)
        if c.get("interface"):
            from swimlib.agent.interfaces import bind_on_interface

            host = bind_on_interface(c["interface"], s.bind[0])
            if host != s.bind[0]:
                Console.say(f"Using interface '{c['interface']}' address '{host}'")
            s.bind = (host, s.bind[1])
        if c.get("advertise"):
            s.advertise = split_host_port(c["advertise"], s.bind[1])
        s.rpc = split_host_port(c["rpc_addr"], 7373)
        s.rpc_auth = c.get("rpc_auth", "")
        if c.get("enable_syslog"):
            from swimlib.agent.syslog import facility_code

            facility_code(c["syslog_facility"])  # a bad name stops us before anything binds
            s.syslog_facility = c["syslog_facility"]
        s.metrics_addr = _metrics_addr(c.get("metrics_addr"))
        s.statsd_addr = _sink_addr("statsd_addr", c.get("statsd_addr"))
        s.statsite_addr = _sink_addr("statsite_addr", c.get("statsite_addr"))
        s.log_level = c["log_level"].lower()
        if s.log_level not in _LEVELS:
            raise ConfigError(f"Invalid log level: {c['log_level']}. Valid log levels are: "
                              f"{', '.join(sorted(_LEVELS))}")
        s.join = list(c.get("start_join", []))
        s.retry_join = list(c.get("retry_join", []))
        s.retry_interval = _at_least(c["retry_interval"], MIN_RETRY_INTERVAL, "RetryInterval")
        s.retry_max = max(0, c.get("retry_max_attempts", 0))  # serf: <= 0 is unlimited
        s.replay = bool(c.get("replay_on_join"))
        s.skip_leave_on_interrupt = bool(c.get("skip_leave_on_interrupt"))
        s.tags = dict(c.get("tags", {}))
        if c.get("role"):
            s.tags["role"] = c["role"]
        s.tags_file = c.get("tags_file") or None
        if s.tags_file is not None:
            if s.tags:
                raise ConfigError("Tags config not allowed while using tag files")
            restored = load_tags_file(s.tags_file)
            if restored is not None:
                s.tags, s.restored_tags = restored, len(restored)
        try:  # whichever source they came from, they must fit in the node meta
            encode_tags(s.tags)
        except ValueError as exc:
            raise ConfigError(f"tags: {exc}") from None
        s.handlers = parse_handler_specs(c.get("event_handlers", []))
        s.keyring = load_keyring(c.get("encrypt_key"), c.get("keyring_file"))
        s.keyring_file = c.get("keyring_file")
        s.snapshot = c.get("snapshot_path")
        s.rejoin = bool(c.get("rejoin_after_leave"))
        if s.rejoin and not s.snapshot:
            _warn("'RejoinAfterLeave' enabled without snapshot file")
        if c["profile"] not in PROFILES:
            raise ConfigError(f"Unknown profile: {c['profile']}")
        limits = {key: c[key] for key in ("query_size_limit", "query_response_size_limit",
                                          "reconnect_interval", "reconnect_timeout",
                                          "tombstone_timeout") if key in c}
        s.config = Config.for_profile(c["profile"]).evolve(
            broadcast_timeout=_at_least(c["broadcast_timeout"], MIN_BROADCAST_TIMEOUT,
                                        "BroadcastTimeout"), label=c.get("label", ""),
            protocol_version=_protocol(c["protocol"], s.tags), **limits)
        s.discover = _discover(c.get("discover") or None)
        s.backend = backend.choose_backend(args.backend)
        if args.disable_compression:
            s.config = s.config.evolve(enable_compression=False)
        if c.get("disable_coordinates"):
            s.config = s.config.evolve(disable_coordinates=True)
        return s


#: serf's ``DefaultConfig()``, for the keys that have a default.
DEFAULTS: Final[serf_config.FileConfig] = {
    "bind": "0.0.0.0:7946",
    "rpc_addr": "127.0.0.1:7373",
    "log_level": "info",
    "profile": "lan",
    "retry_interval": 30.0,
    "broadcast_timeout": 5.0,
    "query_size_limit": 1024,
    "query_response_size_limit": 1024,
    "syslog_facility": "LOCAL0",
    "protocol": SERF_PROTOCOL_MAX,
}


def _command_line_config(args: argparse.Namespace) -> serf_config.FileConfig:
    """The flags given, under serf's configuration keys (merged over the files)."""
    given = {"node_name": args.node, "bind": args.bind, "advertise": args.advertise,
             "interface": args.iface,
             "rpc_addr": args.rpc_addr, "rpc_auth": args.rpc_auth, "encrypt_key": args.encrypt,
             "keyring_file": args.keyring_file, "snapshot_path": args.snapshot,
             "profile": args.profile, "log_level": args.log_level, "role": args.role,
             "tags_file": args.tags_file, "metrics_addr": args.metrics_addr,
             "label": args.label, "discover": args.discover,
             "protocol": args.protocol,
             "retry_max_attempts": args.retry_max}
    config: serf_config.FileConfig = {key: value for key, value in given.items()
                                      if value is not None}
    config.update(replay_on_join=args.replay, rejoin_after_leave=args.rejoin,
                  enable_syslog=args.syslog,
                  start_join=list(args.join),
                  retry_join=list(args.retry_join), event_handlers=list(args.event_handler))
    if args.tag:
        config["tags"] = parse_tags(args.tag)
    if args.retry_interval is not None:
        config["retry_interval"] = _duration("retry-interval", args.retry_interval)
    if args.broadcast_timeout is not None:
        config["broadcast_timeout"] = _duration("broadcast-timeout", args.broadcast_timeout)
    return config


def _protocol(value: int, tags: dict[str, str]) -> int:
    """serf's ``-protocol``, converted as serf converts it (``uint8(n)``: 257 is 1),
    checked with serf's words, and what it turns off said out loud (serf is silent)."""
    version = value & 0xFF
    try:
        Config.lan(protocol_version=version)
    except ConfigError as exc:
        raise ConfigError(f"Error creating Serf: {exc}") from None
    if version < 4:
        _warn(f"Protocol {version}: queries and key operations are refused (as serf "
              "does below protocol 4)")
    if version < 3 and set(tags) - {"role"}:
        _warn(f"Protocol {version}: only the 'role' tag is advertised (as serf below "
              f"protocol 3); not sent: {', '.join(sorted(set(tags) - {'role'}))}")
    return version


def _discover(cluster: str | None) -> str | None:
    """serf's ``-discover``: the name must make a DNS service name (``_serf_<name>._tcp``),
    checked before anything binds (serf starts, then fails every poll)."""
    if cluster is None:
        return None
    from swimlib.mdns.codec import name_from_text
    from swimlib.mdns.rule import service_name  # only with -discover

    try:
        name_from_text(service_name(cluster) + ".local.")
    except ValueError as exc:
        raise ConfigError(f"-discover: {cluster!r} cannot name an mDNS service: {exc}") from None
    return cluster


def _host_port(what: str, text: str) -> tuple[str, int]:
    """``HOST:PORT`` with the port required."""
    host, port = split_host_port(text, 0)
    if port == 0 or not host:
        raise ConfigError(f"{what}: expected HOST:PORT, got {text!r}")
    return host, port


def _metrics_addr(text: str | None) -> tuple[str, int] | None:
    """``--metrics-addr``: checked, and prometheus_client found, before anything binds."""
    if not text:
        return None
    addr = _host_port("-metrics-addr", text)
    if importlib.util.find_spec("prometheus_client") is None:
        raise ConfigError("-metrics-addr needs prometheus_client, which is not installed: "
                          "pip install 'swimlib[metrics]' (or prometheus_client)")
    return addr


def _sink_addr(key: str, text: str | None) -> tuple[str, int] | None:
    return _host_port(key, text) if text else None


def _warn(text: str) -> None:
    Console.say(text, "warn")


async def _run_agent(s: _Settings) -> None:
    # Signals are ours from the first moment of the event loop: a supervisor may
    # stop the agent right after its banner, and that must be a graceful leave
    # (queued here until _wait_for_exit reads it), never the default SIGTERM death.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        await _run_agent_until_signalled(s, signals)


async def _run_agent_until_signalled(s: _Settings, signals: AsyncIterator[int]) -> None:
    snapshotter = None
    if s.snapshot:  # imported only when used
        from swimlib.agent.snapshot import Snapshotter

        snapshotter = Snapshotter.open(s.snapshot, rejoin_after_leave=s.rejoin)
    Console.say("Starting swimlib agent...")
    agent: Agent | None = None
    try:
        async with open_agent(s.name, bind=s.bind, advertise=s.advertise, config=s.config,
                              tags=s.tags, keyring=s.keyring,
                              keyring_file=s.keyring_file, tags_file=s.tags_file) as agent:
            if s.restored_tags is not None:
                log.info("agent: Restored %d tag(s) from %s", s.restored_tags, s.tags_file)
            raw_events = agent.events()  # before any checkpoint: our own member-join included
            if snapshotter is not None:
                r = snapshotter.replay
                agent.restore_clocks(r.last_clock, r.last_event_clock, r.last_query_clock)
            async with anyio.create_task_group() as task_group:
                if s.discover:  # before RPC, as serf: up once a client can connect
                    from swimlib.agent.mdns import run_discovery  # loaded only here

                    await task_group.start(functools.partial(
                        run_discovery, agent, s.discover, s.bind[0], replay=s.replay))
                stop_requested = await _start_rpc(task_group, agent, s)
                await _start_metrics(task_group, agent, s)
                _banner(agent, s)
                resume_collector()  # off since the command line was read (swimlib.cli)
                handler_events, runner = await _start_pipeline(task_group, agent, s)
                task_group.start_soon(_fan_out, agent, raw_events, handler_events, snapshotter)
                task_group.start_soon(_join_with_retry, agent, s, snapshotter)
                if s.retry_join:
                    task_group.start_soon(_retry_join, agent, s)
                task_group.start_soon(release_after_startup, lambda: agent.members_changed)
                signum = await _wait_for_exit(signals, stop_requested,
                                              lambda: _reload(agent, s, runner))
                if signum == signal.SIGINT and s.skip_leave_on_interrupt:
                    raise _StoppedWithoutLeave  # serf: exit 1, the others see us fail
                if not agent.has_left:
                    log.info("agent: Gracefully shutting down agent...")
                    if snapshotter is not None:
                        snapshotter.leave(anyio.current_time())
                    await agent.leave()
                task_group.cancel_scope.cancel()
    finally:
        # Also when the agent gives up (-retry-max) or fails: what it saw is kept.
        if snapshotter is not None:
            snapshotter.close(anyio.current_time(),
                              agent.member_time() if agent is not None else None)
    log.info("agent: shutdown complete")


def _banner(agent: Agent, s: _Settings) -> None:
    bind = f"{s.bind[0]}:{agent.address[1]}"
    if Console.json_lines:
        Console.say("swimlib agent running", node=agent.name, bind=bind,
                    rpc=f"{s.rpc[0]}:{s.rpc[1]}", encrypted=agent.keyring is not None,
                    snapshot=bool(s.snapshot), profile=s.config.profile,
                    **({"mdns_cluster": s.discover} if s.discover else {}))
        return
    lines = ["==> swimlib agent running!",
             f"         Node name: '{agent.name}'",
             f"         Bind addr: '{bind}'",
             f"          RPC addr: '{s.rpc[0]}:{s.rpc[1]}'",
             f"         Encrypted: {str(agent.keyring is not None).lower()}",
             f"          Snapshot: {str(bool(s.snapshot)).lower()}",
             f"           Profile: {s.config.profile}",
             *([f"      mDNS cluster: {s.discover}"] if s.discover else []),
             "", "==> Log data will now stream in as it occurs:", ""]
    print("\n".join(lines), flush=True)


async def _start_rpc(task_group: TaskGroup, agent: Agent, s: _Settings) -> anyio.Event:
    """Serve Serf's RPC protocol; the returned event fires when a client asks us to stop."""
    adapter = await start_rpc_server(task_group, agent, s.rpc, s.rpc_auth)
    return adapter.shutdown_requested


async def _start_metrics(task_group: TaskGroup, agent: Agent, s: _Settings) -> None:
    """``--metrics-addr`` and the statsd/statsite sinks (each module loaded only if used)."""
    if s.metrics_addr is not None:
        from swimlib.agent.prometheus import start_metrics_server

        await start_metrics_server(task_group, agent, s.metrics_addr)
    sinks = [(addr, tcp) for addr, tcp in ((s.statsd_addr, False), (s.statsite_addr, True))
             if addr is not None]
    if not sinks:
        return
    from swimlib.agent.metrics import Family, collect
    from swimlib.agent.statsd import run_sink

    def read(now: float) -> list[Family]:
        return collect(agent, now)

    for (host, port), tcp in sinks:
        task_group.start_soon(functools.partial(run_sink, tcp=tcp, counters=agent.counters,
                                                faults=agent.faults), read, host, port)


async def _start_pipeline(task_group: TaskGroup, agent: Agent, s: _Settings
                          ) -> tuple[MemoryObjectSendStream[Event], HandlerRunner]:
    """Handlers get coalesced events in their own task, never on the protocol path.

    Started even with no handler, so that a reload (SIGHUP) can add some.
    """
    send, receive = anyio.create_memory_object_stream[Event](4096)
    runner = HandlerRunner(s.handlers, agent.local_member, faults=agent.faults)

    async def respond(query: QueryEvent, payload: bytes) -> None:
        try:
            await agent.respond(query.id, payload)
        except SwimError as exc:
            log.warning("agent: failed to respond to query %r: %s", query.name, exc)

    task_group.start_soon(runner.run, receive, respond)
    return send, runner


async def _reload(agent: Agent, s: _Settings, runner: HandlerRunner) -> None:
    """SIGHUP: read the command line and files again and apply what serf applies
    (log level, event handlers, tags).

    Unlike serf, a reload is all or nothing: an invalid file or key (serf keeps
    going with a bad log level) changes nothing and says why. Settings that need
    a restart are named rather than silently ignored.
    """
    Console.say("Reloading configuration...")
    with agent.faults.boundary("reload"):  # a bug here must not end the agent
        await _apply_reload(agent, s, runner)


async def _apply_reload(agent: Agent, s: _Settings, runner: HandlerRunner) -> None:
    if s.args is None:
        return
    try:
        new = _Settings.from_args(s.args)
    except (ConfigError, SwimError, OSError) as exc:
        Console.error(f"Failed to reload configs: {exc}")
        return
    logging.getLogger("swimlib").setLevel(_LEVELS[new.log_level])
    s.log_level = new.log_level
    runner.update_specs(new.handlers)
    s.handlers = new.handlers
    if new.tags != agent.local_member().tag_map:
        try:
            await agent.set_tags(new.tags)
        except SwimError as exc:
            Console.error(f"Failed to update tags: {exc}")
    fixed = [what for what, old, now in (
        ("node name", s.name, new.name), ("bind", s.bind, new.bind),
        ("advertise", s.advertise, new.advertise), ("rpc address", s.rpc, new.rpc),
        ("snapshot", s.snapshot, new.snapshot), ("protocol settings", s.config, new.config),
        ("keyring", s.keyring_file, new.keyring_file),
        ("mDNS cluster", s.discover, new.discover)) if old != now]
    if fixed:
        _warn(f"Not reloaded (a restart applies them): {', '.join(fixed)}")


async def _fan_out(agent: Agent, raw: MemoryObjectReceiveStream[Event],
                   handlers: MemoryObjectSendStream[Event] | None,
                   snapshotter: Snapshotter | None) -> None:
    """Raw events -> snapshot; coalesced events -> handlers (Serf 3 s / 1 s windows)."""
    coalescer = EventCoalescer()

    def deliver(events: list[Event]) -> None:
        if handlers is None:
            return
        for e in events:
            try:
                handlers.send_nowait(e)
            except anyio.WouldBlock:
                agent.counters["handlers.dropped"] += 1

    while True:
        deadline = coalescer.next_deadline()
        flush_at = deadline if deadline is not None else float("inf")
        if snapshotter is not None:  # its buffered lines go out within 0.5 s
            flush_at = min(flush_at, anyio.current_time() + 0.5)
        with anyio.CancelScope(deadline=flush_at):
            event = await raw.receive()
            now = anyio.current_time()
            with agent.faults.boundary("snapshot"):
                if snapshotter is not None:
                    snapshotter.record(event, now, agent.member_time())
            with agent.faults.boundary("coalesce"):
                deliver(coalescer.push(event, now))
        now = anyio.current_time()
        with agent.faults.boundary("coalesce"):
            deliver(coalescer.flush_due(now))
        with agent.faults.boundary("snapshot"):
            if snapshotter is not None:
                snapshotter.tick(now, agent.member_time())


async def _join_with_retry(agent: Agent, s: _Settings, snapshotter: Snapshotter | None) -> None:
    """``--join`` retried with backoff, or the snapshot's members tried once each;
    then never strand (:mod:`swimlib.agent.rejoin`): rejoin whatever goes missing."""
    rng = random.Random()
    if not s.join and snapshotter is not None:
        candidates = snapshotter.replay.rejoin_candidates(rng, exclude={agent.name})
        for candidate in candidates:
            try:
                n = await agent.join([f"{candidate.addr}"], replay=s.replay)
                log.info("agent: rejoined through snapshot member %s (%d)", candidate.name, n)
                break
            except (JoinError, ConfigError):
                continue
            except Exception as exc:
                agent.faults.record("join", exc)
                continue
        else:
            if candidates:
                log.warning("agent: no snapshot member answered; will keep trying them")
    if s.join:
        await join_with_backoff(agent, s.join, replay=s.replay, logger=log)
    rejoiner = Rejoiner(agent.name, rng, seeds=[*s.join, *s.retry_join])
    if snapshotter is not None:
        for node in (*snapshotter.replay.alive, *snapshotter.replay.failed):
            rejoiner.remember(node.name, node.addr)
    await keep_rejoining(agent, rejoiner, replay=s.replay, logger=log)


async def _retry_join(agent: Agent, s: _Settings) -> None:
    await retry_join(agent, s.retry_join, interval=s.retry_interval, max_retries=s.retry_max,
                     replay=s.replay, logger=log)


async def _wait_for_exit(received: AsyncIterator[int], stop_requested: anyio.Event,
                         reload: Callable[[], Awaitable[None]]) -> int | None:
    """Until SIGINT/SIGTERM (returned), or until an RPC client had us leave
    (``serf leave``: None); SIGHUP reloads the configuration (serf's ``handleReload``)."""
    caught: list[int] = []
    async with anyio.create_task_group() as task_group:
        async def signals() -> None:
            async for signum in received:
                log.info("agent: Caught signal: %s", signal.Signals(signum).name)
                if signum == signal.SIGHUP:
                    await reload()
                    continue
                caught.append(signum)
                task_group.cancel_scope.cancel()
                return

        async def left() -> None:
            await stop_requested.wait()
            task_group.cancel_scope.cancel()

        task_group.start_soon(signals)
        task_group.start_soon(left)
    return caught[0] if caught else None
