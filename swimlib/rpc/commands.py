"""The CLI subcommands that talk to a running agent over RPC (``serf``'s set).

Flags, messages and output follow ``cmd/serf/command/*.go`` so scripts can
swap ``serf`` for ``swimlib``; both ``--flag`` and Go's ``-flag=value``
spellings work. Two deliberate differences: errors go to stderr (``serf``
prints them on stdout), and bad usage exits 2 (argparse) instead of 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Final

from swimlib.cluster.coordinates import Coordinate, distance_seconds
from swimlib.errors import RPCError
from swimlib.rpc import protocol as p
from swimlib.rpc.client import DEFAULT_RPC_ADDR, RPCClient
from swimlib.rpc.goflags import BoolFlag, go_flag, parse_go_duration, parse_go_tags
from swimlib.rpc.output import GoStruct, columnize, go_json, go_quote, go_repr, stats_text

__all__ = ["BOOL_FLAGS", "register"]

Handler = Callable[[argparse.Namespace], int]

#: Go boolean flags per subcommand, for :func:`goflags.normalize_bool_flags`.
BOOL_FLAGS: Final = {
    "members": {"detailed": BoolFlag("--detailed")},
    "join": {"replay": BoolFlag("--replay")},
    "force-leave": {"prune": BoolFlag("--prune")},
    "event": {"coalesce": BoolFlag("--coalesce", "--no-coalesce", separate_value=True)},
    "query": {"no-ack": BoolFlag("--no-ack")},
    "keys": {"list": BoolFlag("--list")},
    "reachability": {"verbose": BoolFlag("--verbose")},
}

REMOTE_ENDED: Final = (
    "Remote side ended the monitor! This usually means that the\n"
    "remote side has exited or crashed."
)
TOO_MANY_ACKS: Final = (
    "This could mean Serf is detecting false-failures due to a misconfiguration "
    "or network issue."
)
TOO_FEW_ACKS: Final = (
    "This could mean Serf gossip packets are being lost due to a misconfiguration "
    "or network issue."
)
DUPLICATE_RESPONSES: Final = (
    "Duplicate responses means there is a misconfiguration. Verify that node names are unique."
)
TROUBLESHOOTING: Final = """
Troubleshooting tips:
* Ensure that the bind addr:port is accessible by all other nodes
* If an advertise address is set, ensure it routes to the bind address
* Check that no nodes are behind a NAT
* If nodes are behind firewalls or iptables, check that Serf traffic is permitted (UDP and TCP)
* Verify networking equipment is functional"""


class CommandFailed(Exception):
    """Print ``message`` on stderr and exit 1 (Go's ``c.Ui.Error(...); return 1``)."""


def out(text: str = "") -> None:
    print(text, flush=True)


def err(text: str = "") -> None:
    print(text, file=sys.stderr, flush=True)


def _rpc_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        *go_flag("rpc-addr"),
        dest="rpc_addr",
        metavar="HOST:PORT",
        help=f"agent RPC address (env SWIMLIB_RPC_ADDR / SERF_RPC_ADDR; {DEFAULT_RPC_ADDR})",
    )
    parent.add_argument(
        *go_flag("rpc-auth"),
        dest="rpc_auth",
        metavar="TOKEN",
        help="RPC auth token (env SWIMLIB_RPC_AUTH / SERF_RPC_AUTH)",
    )
    return parent


def _env(*names: str) -> str:
    return next((os.environ[n] for n in names if os.environ.get(n)), "")


@contextmanager
def connect(args: argparse.Namespace) -> Iterator[RPCClient]:
    addr = args.rpc_addr or _env("SWIMLIB_RPC_ADDR", "SERF_RPC_ADDR") or DEFAULT_RPC_ADDR
    auth = args.rpc_auth if args.rpc_auth is not None else _env("SWIMLIB_RPC_AUTH", "SERF_RPC_AUTH")
    try:
        client = RPCClient(addr, auth)
    except RPCError as exc:
        raise CommandFailed(f"Error connecting to Serf agent: {exc}") from None
    with client:
        yield client


def parse_tags(pairs: Sequence[str]) -> dict[str, str]:
    """``-tag key=value`` arguments, with serf's words for a malformed one."""
    try:
        return parse_go_tags(pairs)
    except ValueError as exc:
        raise CommandFailed(f"Error: Invalid tag: '{exc}'") from None


def _text(payload: bytes) -> str:
    return payload.decode("utf-8", "replace")


# -- members --------------------------------------------------------------------------


def members_text(members: Sequence[p.WireMember], detailed: bool) -> str:
    lines = []
    for m in members:
        tags = ",".join(f"{k}={v}" for k, v in m.tags.items())
        line = f"{m.name}|{m.address}|{m.status}|{tags}"
        if detailed:
            line += (
                f"|Protocol Version: {m.delegate_cur}"
                f"|Available Protocol Range: [{m.delegate_min}, {m.delegate_max}]"
            )
        lines.append(line)
    return columnize(lines).strip()


def members_json(members: Sequence[p.WireMember]) -> str:
    rows = [
        GoStruct(
            name=m.name,
            addr=m.address,
            port=m.port,
            tags=m.tags,
            status=m.status,
            protocol={"min": m.delegate_min, "max": m.delegate_max, "version": m.delegate_cur},
        )
        for m in members
    ]
    return go_json(GoStruct(members=rows or None))


def cmd_members(args: argparse.Namespace) -> int:
    tag_args = list(args.tag)
    if args.role:
        out("Deprecation warning: 'Role' has been replaced with 'Tags'")
        tag_args.append(f"role={args.role}")
    tags = parse_tags(tag_args)
    with connect(args) as client:
        try:
            members = client.members_filtered(tags, args.status, args.name)
        except RPCError as exc:
            raise CommandFailed(f"Error retrieving members: {exc}") from None
    if args.format == "json":
        out(members_json(members))
    else:
        out(members_text(members, args.detailed))
    return 0


# -- cluster actions ------------------------------------------------------------------


def cmd_join(args: argparse.Namespace) -> int:
    with connect(args) as client:
        try:
            num = client.join(args.addrs, args.replay)
        except RPCError as exc:
            raise CommandFailed(f"Error joining the cluster: {exc}") from None
    out(f"Successfully joined cluster by contacting {num} nodes.")
    return 0


def cmd_leave(args: argparse.Namespace) -> int:
    with connect(args) as client:
        try:
            client.leave()
        except RPCError as exc:
            raise CommandFailed(f"Error leaving: {exc}") from None
    out("Graceful leave complete")
    return 0


def cmd_force_leave(args: argparse.Namespace) -> int:
    with connect(args) as client:
        try:
            client.force_leave(args.node, args.prune)
        except RPCError as exc:
            raise CommandFailed(f"Error force leaving: {exc}") from None
    return 0


def cmd_event(args: argparse.Namespace) -> int:
    payload = (args.payload or "").encode("utf-8", "surrogateescape")
    with connect(args) as client:
        try:
            client.user_event(args.name, payload, args.coalesce)
        except RPCError as exc:
            raise CommandFailed(f"Error sending event: {exc}") from None
    out(f"Event '{args.name}' dispatched! Coalescing enabled: {str(args.coalesce).lower()}")
    return 0


def cmd_tags(args: argparse.Namespace) -> int:
    if not args.set and not args.delete:
        out(args.parser.format_help().rstrip())
        return 1
    tags = parse_tags(args.set)
    with connect(args) as client:
        try:
            client.update_tags(tags, args.delete)
        except RPCError as exc:
            raise CommandFailed(f"Error setting tags: {exc}") from None
    out("Successfully updated agent tags")
    return 0


# -- queries ------------------------------------------------------------------------


def cmd_query(args: argparse.Namespace) -> int:
    if not 0 <= args.relay_factor <= 255:
        raise CommandFailed("Relay factor must be between 0 and 255")
    filter_tags = parse_tags(args.tag)
    payload = (args.payload or "").encode("utf-8", "surrogateescape")
    acks: list[str] = []
    responses: dict[str, str] = {}
    with connect(args) as client:
        try:
            records = client.query(
                args.name,
                payload,
                filter_nodes=args.node,
                filter_tags=filter_tags,
                request_ack=not args.no_ack,
                relay_factor=args.relay_factor,
                timeout_ns=args.timeout,
            )
        except RPCError as exc:
            raise CommandFailed(f"Error sending query: {exc}") from None
        text = args.format == "text"
        if text:
            out(f"Query '{args.name}' dispatched")
        try:
            for rec in records:
                if rec.type == p.QUERY_RECORD_ACK:
                    acks.append(rec.from_node)
                    if text:
                        out(f"Ack from '{rec.from_node}'")
                elif rec.type == p.QUERY_RECORD_RESPONSE:
                    responses[rec.from_node] = _text(rec.payload)
                    if text:
                        shown = rec.payload[:-1] if rec.payload.endswith(b"\n") else rec.payload
                        out(f"Response from '{rec.from_node}': {_text(shown)}")
        except RPCError:
            pass  # the agent hung up: like Go, report what arrived
    if args.format == "json":
        out(go_json(GoStruct(Acks=acks or None, Responses=responses)))
    else:
        if not args.no_ack:
            out(f"Total Acks: {len(acks)}")
        out(f"Total Responses: {len(responses)}")
    return 0


def cmd_reachability(args: argparse.Namespace) -> int:
    with connect(args) as client:
        try:
            members = client.members()
        except RPCError as exc:
            raise CommandFailed(f"Error getting members: {exc}") from None
        live = [m.name for m in members if m.status == "alive"]
        out(f"Total members: {len(members)}, live members: {len(live)}")
        try:
            records = client.query("_serf_ping", b"", request_ack=True)
            out("Starting reachability test...")
            start = last = time.monotonic()
            acks: list[str] = []
            for rec in records:
                if rec.type != p.QUERY_RECORD_ACK:
                    continue
                if args.verbose:
                    out(f"\tAck from '{rec.from_node}'")
                if rec.from_node in acks:
                    out(f"Duplicate response from '{rec.from_node}'")
                acks.append(rec.from_node)
                last = time.monotonic()
        except RPCError as exc:
            raise CommandFailed(f"Error sending query: {exc}") from None
    if args.verbose:
        now = time.monotonic()
        out(f"Query time: {now - start:0.2f} sec, time to last response: {last - start:0.2f} sec")
    code = 0
    if len(set(acks)) != len(acks):
        out(DUPLICATE_RESPONSES)
        code = 1
    if len(acks) == len(live):
        out("Successfully contacted all live nodes")
        return code
    if len(acks) > len(live):
        out("Received more acks than live nodes! Acks from non-live nodes:")
        for name in sorted(set(acks) - set(live)):
            out(f"\t{name}")
        out(TOO_MANY_ACKS)
    else:
        out("Received less acks than live nodes! Missing acks from:")
        for name in sorted(set(live) - set(acks)):
            out(f"\t{name}")
        out(TOO_FEW_ACKS)
    out(TROUBLESHOOTING)
    return 1


# -- keys ---------------------------------------------------------------------------


def _key_failures(exc: RPCError) -> None:
    body = exc.body
    if isinstance(body, p.KeyResponse) and body.messages:
        err(columnize(f"failed: | {node} | {msg}" for node, msg in sorted(body.messages.items())))
    err("")


def cmd_keys(args: argparse.Namespace) -> int:
    chosen = [a for a in (args.install, args.use, args.remove) if a]
    chosen += ["list"] if args.list else []
    if len(chosen) > 1:
        raise CommandFailed("Only one of -install, -use, -remove, or -list allowed")
    if not chosen:
        err(args.parser.format_help().rstrip())
        return 1
    with connect(args) as client:
        if args.list:
            out("==> Asking all members for installed keys...")
            try:
                resp = client.list_keys()
            except RPCError as exc:
                _key_failures(exc)
                raise CommandFailed(f"Failed to gather member keys: {exc}") from None
            out("==> Keys gathered, listing cluster keys...")
            out("")
            lines = [f"{key} | [{num}/{resp.num_nodes}]" for key, num in resp.keys.items()]
            out(columnize(lines))
            return 0
        action: tuple[str, str, str, Callable[[str], object], str]
        if args.install:
            action = ("Installing key on all members...", "Error installing key",
                      "Successfully installed key!", client.install_key, args.install)
        elif args.use:
            action = ("Changing primary key on all members...", "Error changing primary key",
                      "Successfully changed primary key!", client.use_key, args.use)
        else:
            action = ("Removing key on all members...", "Error removing key",
                      "Successfully removed key!", client.remove_key, args.remove)
        start, failed, done, call, key = action
        out(f"==> {start}")
        try:
            call(key)
        except RPCError as exc:
            _key_failures(exc)
            raise CommandFailed(f"{failed}: {exc}") from None
        out(f"==> {done}")
    return 0


# -- monitor and info -----------------------------------------------------------------


def cmd_monitor(args: argparse.Namespace) -> int:
    with connect(args) as client:
        try:
            stream_seq = client.start_stream("*")
        except RPCError as exc:
            raise CommandFailed(f"Error starting stream: {exc}") from None
        try:
            log_seq = client.start_monitor(args.log_level)
        except RPCError as exc:
            raise CommandFailed(f"Error starting monitor: {exc}") from None
        if args.log_json:
            from swimlib.agent.logs import monitor_event_to_json, monitor_line_to_json
        try:
            while True:
                seq, rec = client.next_record()
                if seq == log_seq:
                    out(monitor_line_to_json(rec.log) if args.log_json else rec.log)
                elif seq == stream_seq and args.log_json:
                    out(monitor_event_to_json(dict(rec)))
                elif seq == stream_seq:
                    out("Event Info:")
                    for key, value in rec.items():
                        out(f"\t{key}: {go_repr(value)}")
        except KeyboardInterrupt:
            return 0
        except RPCError:
            out("")
            out(REMOTE_ENDED)
            return 1


def cmd_info(args: argparse.Namespace) -> int:
    with connect(args) as client:
        try:
            stats = client.stats()
        except RPCError as exc:
            raise CommandFailed(f"Error querying agent: {exc}") from None
    out(go_json(stats) if args.format == "json" else stats_text(stats))
    return 0


def cmd_rtt(args: argparse.Namespace) -> int:
    """``serf rtt``: the distance between two nodes' coordinates, as the agent caches them."""
    nodes = list(args.nodes)
    if len(nodes) not in (1, 2):
        err("One or two node names must be specified")
        err("")
        err(args.parser.format_help().rstrip())
        return 1
    coords: list[Coordinate] = []
    with connect(args) as client:
        if len(nodes) == 1:
            try:
                stats = client.stats()
            except RPCError as exc:
                raise CommandFailed(f"Error querying agent: {exc}") from None
            nodes.append(stats.get("agent", {}).get("name", ""))
        for node in nodes:
            try:
                coord = client.get_coordinate(node)
            except RPCError as exc:
                raise CommandFailed(f"Error getting coordinates: {exc}") from None
            if coord is None:
                raise CommandFailed(f"Could not find a coordinate for node {go_quote(node)}")
            coords.append(Coordinate(tuple(coord.vec), coord.error, coord.adjustment,
                                     coord.height))
    try:
        dist = distance_seconds(coords[0], coords[1])
    except ValueError as exc:  # an agent that mixes dimensions (serf's CLI panics)
        raise CommandFailed(f"Error getting coordinates: {exc}") from None
    out(f"Estimated {nodes[0]} <-> {nodes[1]} rtt: {dist * 1000.0:.3f} ms")
    return 0


# -- registration -----------------------------------------------------------------------


def _duration(text: str) -> int:
    try:
        return parse_go_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (e.g. 1s, 500ms)") from None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the agent-facing subcommands to the ``swimlib`` parser."""
    rpc = _rpc_parent()

    def add(name: str, func: Handler, help_text: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, parents=[rpc], help=help_text, description=help_text)
        parser.set_defaults(func=func, parser=parser)
        return parser

    fmt = {"choices": ("text", "json"), "default": "text", "help": "output format"}

    members = add("members", cmd_members, "list the members of the cluster")
    members.add_argument(*go_flag("format"), **fmt)  # type: ignore[arg-type]
    members.add_argument(*go_flag("status"), default="", metavar="RE", help="status regexp")
    members.add_argument(*go_flag("name"), default="", metavar="RE", help="node name regexp")
    members.add_argument(*go_flag("role"), default="", metavar="RE", help=argparse.SUPPRESS)
    members.add_argument(*go_flag("tag"), action="append", default=[], metavar="KEY=RE",
                         help="tag filter (repeatable; anchored regexp)")
    members.add_argument(*go_flag("detailed"), action="store_true", help="show protocol versions")

    join = add("join", cmd_join, "tell the agent to join a cluster")
    join.add_argument("addrs", nargs="+", metavar="ADDR")
    join.add_argument(*go_flag("replay"), action="store_true", help="replay past user events")

    add("leave", cmd_leave, "gracefully leave the cluster and shut the agent down")

    force = add("force-leave", cmd_force_leave, "force a failed member into the left state")
    force.add_argument("node", metavar="NAME")
    force.add_argument(*go_flag("prune"), action="store_true", help="forget the member at once")

    event = add("event", cmd_event, "send a custom event through the cluster")
    event.add_argument("name", metavar="NAME")
    event.add_argument("payload", nargs="?", metavar="PAYLOAD")
    event.add_argument(*go_flag("coalesce"), dest="coalesce", action="store_true", default=True,
                       help="allow coalescing (default; --coalesce=false to disable)")
    event.add_argument("--no-coalesce", dest="coalesce", action="store_false",
                       help=argparse.SUPPRESS)

    query = add("query", cmd_query, "send a query to the cluster and print the replies")
    query.add_argument("name", metavar="NAME")
    query.add_argument("payload", nargs="?", metavar="PAYLOAD")
    query.add_argument(*go_flag("node"), action="append", default=[], metavar="NAME",
                       help="only ask this node (repeatable)")
    query.add_argument(*go_flag("tag"), action="append", default=[], metavar="KEY=RE",
                       help="only ask nodes whose tag matches (repeatable)")
    query.add_argument(*go_flag("timeout"), type=_duration, default=0, metavar="DURATION",
                       help="query timeout, e.g. 15s (default: the agent's)")
    query.add_argument(*go_flag("no-ack"), dest="no_ack", action="store_true",
                       help="do not request acks")
    query.add_argument(*go_flag("relay-factor"), dest="relay_factor", type=int, default=0,
                       metavar="N", help="relay responses through N extra nodes (0-255)")
    query.add_argument(*go_flag("format"), **fmt)  # type: ignore[arg-type]

    tags = add("tags", cmd_tags, "modify the tags of the agent")
    tags.add_argument(*go_flag("set"), action="append", default=[], metavar="KEY=VALUE")
    tags.add_argument(*go_flag("delete"), action="append", default=[], metavar="KEY")

    keys = add("keys", cmd_keys, "manage the cluster's encryption keyring")
    keys.add_argument(*go_flag("install"), default="", metavar="KEY")
    keys.add_argument(*go_flag("use"), default="", metavar="KEY")
    keys.add_argument(*go_flag("remove"), default="", metavar="KEY")
    keys.add_argument(*go_flag("list"), action="store_true")

    monitor = add("monitor", cmd_monitor, "stream the agent's logs and events")
    monitor.add_argument(*go_flag("log-level"), dest="log_level", default="INFO", metavar="LEVEL",
                         help="TRACE, DEBUG, INFO, WARN or ERR")
    monitor.add_argument(*go_flag("log-json"), dest="log_json", action="store_true",
                         help="one JSON object per line, as `swimlib agent --log-json` writes "
                              "(works against serf agents too)")

    info = add("info", cmd_info, "print debugging information about the agent")
    info.add_argument(*go_flag("format"), **fmt)  # type: ignore[arg-type]

    reach = add("reachability", cmd_reachability, "check that every live member answers")
    reach.add_argument(*go_flag("verbose"), action="store_true")

    rtt = add("rtt", cmd_rtt, "estimate the round trip time between two nodes from their "
              "network coordinates (the second defaults to the agent's own node)")
    rtt.add_argument("nodes", nargs="*", metavar="NODE", help="node names as `members` shows")
    rtt.usage = "%(prog)s [--rpc-addr HOST:PORT] [--rpc-auth TOKEN] NODE [NODE]"


def run(func: Handler, args: argparse.Namespace) -> int:
    """Run a subcommand: one-line errors and exit 1 instead of tracebacks."""
    try:
        return func(args)
    except CommandFailed as exc:
        err(str(exc))
        return 1
    except KeyboardInterrupt:
        return 1
    except BrokenPipeError:  # ``swimlib monitor | head``: the reader went away
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
