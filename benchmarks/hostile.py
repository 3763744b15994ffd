"""hostile: one well-formed but hostile message against a healthy 3-agent cluster.

Why: docs/security.md tabulates hostile inputs with Serf 0.9.4's and
swimlib's behaviour *measured in one run*, on the same machine, by the same
harness. Each catalogue entry is one message an unauthenticated peer can send
(no encryption key is configured, as with a default ``serf agent``): every
field is of the right msgpack type, and most values are even inside the wire
type's range (an LTime of 2^64-1 is a valid uint64); they are hostile only in
what they make the receiver do.

For each entry and each implementation (``serf`` = ``/usr/bin/serf agent``,
``swimlib`` = ``swimlib agent``, both with the LAN profile):

1. a fresh cluster a0, a1, a2 on 127.0.0.1 (ports from
   :func:`swimlib.testing.free_port`); a0 is the target, a1 the victim an
   accusing message names, a2 the bystander that sends the checks. Every agent
   runs one handler script for ``user`` (appends the event name to a file per
   agent) and ``query`` (answers ``pong-NAME``). Formed when every agent's log
   showed EventMemberJoin for all three and ``serf members`` on each lists
   three alive members;
2. the message: one UDP datagram to a0's gossip port from a socket of ours,
   or one TCP stream (push-pull entries; the reply is read, bounded);
3. after ``--wait`` seconds: which processes run, and every agent's view
   (``serf members -format=json -rpc-addr=...``, which speaks to both
   implementations); then, from a2 (a1 if a2 is gone, a0 if it is alone): ``serf event``
   (every running agent's handler must log it within ``--event-timeout``) and
   ``serf query -format=json -timeout=4s`` (every running agent must ack and
   respond);
4. at ``--settle`` seconds after the message (long enough for a suspicion the
   message started to expire: at N=3 the LAN suspicion timeout is 4 s; 36 s for
   the push-pull entries, so that a0's next anti-entropy sync has carried what
   the message planted to a peer): the views again, whether the victim is alive
   in all of them, and a second event and query (a lasting loss or a healed one).

Datagrams that agents send to addresses named in a message (a query's
Addr:Port, an indirect ping's target) are counted on sockets bound there: the
"sink" on 127.0.0.1 and the "third party" on 127.0.0.2 (loopback too).

A cell's verdict, first match wins: ``crashed`` (an agent process exited),
``silenced`` (a0 runs but does not answer RPC, or a peer sees it not alive
after the settle period), ``victim dead`` (the victim is not alive in some
view after settling), ``split`` (some running agent does not see another
alive), ``no events`` / ``no queries`` (a check did not reach every running
agent), else ``ok``. The detail says which agent, which status, and what was
reflected.

Usage: ``python -m benchmarks hostile --json out/hostile.json [--only NAME[,NAME]]
[--impl serf|swimlib|both] [--wait 2] [--settle 15] [--workdir DIR] [--list]
[--swimlib-rev REV | --swimlib-path DIR]``. By default the swimlib agents run
from this checkout, which may be mid-edit; ``--swimlib-rev HEAD`` runs them
from a commit instead (``git archive``, read-only), recorded in the JSON.
Every process is remembered by PID and stopped (SIGTERM, then SIGKILL) in a
``finally``; every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgpack

from benchmarks.agents import SERF, SWIMLIB_COMMAND, AgentProc, precompile
from swimlib.errors import DecodeError
from swimlib.testing import free_port
from swimlib.wire import codec
from swimlib.wire import serf as sw
from swimlib.wire.messages import (
    DEFAULT_VSN,
    Alive,
    Dead,
    IndirectPing,
    MessageType,
    PushNodeState,
    PushPull,
    Suspect,
    UserMsg,
)

U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1
I64_MAX = (1 << 63) - 1
HOST = "127.0.0.1"
#: The "third party" of reflection entries: another loopback address.
THIRD_PARTY = "127.0.0.2"
#: a0's role tag in the regex entry: "(a+)+$" backtracks 2^40 times on it in Python's re.
REDOS_TAG = "a" * 40 + "!"
NAMES = ("a0", "a1", "a2")
ACCUSER = "mallory"

# ----------------------------------------------------------------- Go-dialect packing


def go_pack(fields: dict[str, Any]) -> bytes:
    """One Go struct as go-msgpack 0.5.5 writes it: keys sorted, strings/bytes as raw.

    Used where swimlib's encoders (rightly) refuse a value: nothing here is
    range-checked.
    """
    return bytes(msgpack.packb(dict(sorted(fields.items())), use_bin_type=False))


def _b(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def _nil(data: bytes) -> bytes | None:
    return data or None


def _ip(addr: str | bytes) -> bytes:
    """Raw IP bytes; bytes pass through unchanged (that is how a 3-byte Addr is made)."""
    if isinstance(addr, bytes):
        return addr
    return ipaddress.ip_address(addr).packed if addr else b""


def memberlist_fields(msg: Suspect | Dead | Alive | IndirectPing,
                      raw_addr: bytes | None = None) -> dict[str, Any]:
    """The Go struct of a memberlist message, without range checks."""
    if isinstance(msg, Suspect | Dead):
        return {"From": _b(msg.from_), "Incarnation": msg.incarnation, "Node": _b(msg.node)}
    if isinstance(msg, Alive):
        return {"Addr": _ip(msg.addr) if raw_addr is None else raw_addr,
                "Incarnation": msg.incarnation, "Meta": _nil(msg.meta), "Node": _b(msg.node),
                "Port": msg.port, "Vsn": msg.vsn}
    return {"Nack": msg.nack, "Node": _b(msg.node), "Port": msg.port, "SeqNo": msg.seq_no,
            "Target": _ip(msg.target)}


def _filter_bytes(f: sw.Filter) -> bytes:
    if isinstance(f, sw.TagFilter):
        return bytes((sw.FilterType.TAG,)) + go_pack({"Expr": _b(f.expr), "Tag": _b(f.tag)})
    if isinstance(f, sw.NodeFilter):
        return bytes((sw.FilterType.NODE,)) + bytes(
            msgpack.packb([_b(n) for n in f.nodes], use_bin_type=False))
    return f.data


def serf_fields(msg: sw.SerfMessage) -> dict[str, Any]:
    """The Go struct of a Serf message, without range checks."""
    if isinstance(msg, sw.JoinIntent):
        return {"LTime": msg.ltime, "Node": _b(msg.node)}
    if isinstance(msg, sw.LeaveIntent):
        return {"LTime": msg.ltime, "Node": _b(msg.node), "Prune": msg.prune}
    if isinstance(msg, sw.UserEvent):
        return {"CC": msg.cc, "LTime": msg.ltime, "Name": _b(msg.name),
                "Payload": _nil(msg.payload)}
    if isinstance(msg, sw.Query):
        return {"Addr": _nil(_ip(msg.addr)),
                "Filters": [_filter_bytes(f) for f in msg.filters] or None,
                "Flags": msg.flags, "ID": msg.id, "LTime": msg.ltime, "Name": _b(msg.name),
                "Payload": _nil(msg.payload), "Port": msg.port,
                "RelayFactor": msg.relay_factor, "SourceNode": _b(msg.source_node),
                "Timeout": msg.timeout_ns}
    if isinstance(msg, sw.SerfPushPull):
        if msg.events:
            raise ValueError("hand-packed push-pull state carries no events")
        return {"EventLTime": msg.event_ltime, "Events": None, "LTime": msg.ltime,
                "LeftMembers": [_b(n) for n in msg.left_members],
                "QueryLTime": msg.query_ltime,
                "StatusLTimes": dict(sorted((_b(k), v) for k, v in msg.status_ltimes.items()))}
    raise TypeError(f"no hand packer for {type(msg).__name__}")


_SERF_TYPE = {sw.JoinIntent: sw.SerfMessageType.JOIN, sw.LeaveIntent: sw.SerfMessageType.LEAVE,
              sw.UserEvent: sw.SerfMessageType.USER_EVENT, sw.Query: sw.SerfMessageType.QUERY,
              sw.SerfPushPull: sw.SerfMessageType.PUSH_PULL}
_ML_TYPE = {Suspect: MessageType.SUSPECT, Dead: MessageType.DEAD, Alive: MessageType.ALIVE,
            IndirectPing: MessageType.INDIRECT_PING}


def serf_by_hand(msg: sw.SerfMessage) -> bytes:
    """``serfType | msgpack`` packed by hand."""
    return bytes((_SERF_TYPE[type(msg)],)) + go_pack(serf_fields(msg))


def push_pull_by_hand(join: bool, rows: Sequence[PushNodeState], user_state: bytes) -> bytes:
    """A memberlist push-pull stream payload packed by hand."""
    out = [bytes((MessageType.PUSH_PULL,)),
           go_pack({"Join": join, "Nodes": len(rows), "UserStateLen": len(user_state)})]
    out += [go_pack({"Addr": _ip(r.addr), "Incarnation": r.incarnation, "Meta": _nil(r.meta),
                     "Name": _b(r.name), "Port": r.port, "State": r.state, "Vsn": r.vsn})
            for r in rows]
    out.append(user_state)
    return b"".join(out)


# ----------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class Ctx:
    """What a message may name: the cluster's real names, ports and tags, our sockets."""

    ports: tuple[int, int, int]
    tags: tuple[dict[str, str], dict[str, str], dict[str, str]]
    sink_port: int
    third_port: int
    ghost_port: int

    @property
    def target_port(self) -> int:
        return self.ports[0]

    @property
    def victim_port(self) -> int:
        return self.ports[1]


@dataclass(frozen=True)
class Built:
    """One hostile message, ready to send, and what swimlib's decoders should make of it.

    ``intended`` is the memberlist message (or push-pull) the bytes mean;
    ``inner`` the Serf message inside a user message / push-pull user state.
    ``None`` for ``intended`` means no Python value can hold it (a 3-byte IP)
    and swimlib's decoder is expected to refuse it. ``hand`` is the same
    message packed by :func:`go_pack`; ``how`` says which of the two is sent.
    """

    transport: str  # "udp" or "tcp"
    data: bytes
    how: str
    hand: bytes
    intended: Any = None
    inner: Any = None


def _pick(encode: Callable[[], bytes], hand: bytes) -> tuple[bytes, str]:
    try:
        return encode(), "swimlib encoder"
    except ValueError as exc:
        return hand, f"by hand ({exc})"


def serf_datagram(msg: sw.SerfMessage) -> Built:
    """``08 | serfType | msgpack``: a Serf message in a memberlist user datagram."""
    hand = b"\x08" + serf_by_hand(msg)
    data, how = _pick(lambda: codec.encode(UserMsg(sw.encode_serf(msg))), hand)
    inner_bytes = data[1:]
    return Built("udp", data, how, hand, UserMsg(inner_bytes), msg)


def memberlist_datagram(msg: Suspect | Dead | Alive | IndirectPing,
                        raw_addr: bytes | None = None) -> Built:
    """One memberlist message as a datagram; ``raw_addr`` forces an Alive's Addr bytes."""
    hand = bytes((_ML_TYPE[type(msg)],)) + go_pack(memberlist_fields(msg, raw_addr))
    if raw_addr is not None:
        return Built("udp", hand, "by hand (raw Addr bytes)", hand, None)
    data, how = _pick(lambda: codec.encode(msg), hand)
    return Built("udp", data, how, hand, msg)


def push_pull_stream(rows: Sequence[PushNodeState], state: sw.SerfPushPull) -> Built:
    """A push-pull (Join=false) with the given rows and Serf user state ``02 | pushPull``."""
    user_hand = serf_by_hand(state)
    user, how_user = _pick(lambda: sw.encode_serf(state), user_hand)
    hand = push_pull_by_hand(False, rows, user_hand)
    data, how = _pick(lambda: codec.encode_stream(PushPull(False, tuple(rows), user)),
                      push_pull_by_hand(False, rows, user))
    if how_user != "swimlib encoder":
        how = how_user
    return Built("tcp", data, how, hand, PushPull(False, tuple(rows), user), state)


def _query(ltime: int = 100, *, name: str = "hostile", addr: str = HOST, port: int = 0,
           flags: int = 0, relay: int = 0, timeout_ns: int = 3_000_000_000,
           filters: tuple[sw.Filter, ...] = (), qid: int = 0x5EED0001) -> sw.Query:
    return sw.Query(ltime=ltime, id=qid, addr=addr, port=port, source_node=ACCUSER, name=name,
                    payload=b"x", filters=filters, flags=flags, relay_factor=relay,
                    timeout_ns=timeout_ns)


def _rows(ctx: Ctx) -> list[PushNodeState]:
    """The cluster's own rows, as its members announce themselves (incarnation 1)."""
    return [PushNodeState(n, HOST, p, sw.encode_tags(t), 1, 0, DEFAULT_VSN)
            for n, p, t in zip(NAMES, ctx.ports, ctx.tags, strict=True)]


@dataclass(frozen=True)
class Entry:
    name: str
    title: str
    build: Callable[[Ctx], Built]
    #: The message accuses a1 (victim_ok is recorded).
    accuses_victim: bool = False
    #: a0's tags for this entry (default role=target).
    target_tags: dict[str, str] | None = None
    #: Seconds from the message to the final round, if longer than ``--settle``: what
    #: a push-pull plants in a0 reaches the others by a0's next sync (within 30 s).
    settle: float | None = None


ACK = sw.QUERY_FLAG_ACK
#: memberlist's LAN PushPullInterval (30 s; a node's first sync is within one interval of
#: its start) plus a margin.
PUSH_PULL_SETTLE_S = 36.0

CATALOGUE: list[Entry] = [
    Entry("query-ltime-max", "Serf query, LTime 2^64-1",
          lambda c: serf_datagram(_query(U64_MAX, port=c.sink_port))),
    Entry("event-ltime-max", "user event, LTime 2^64-1",
          lambda c: serf_datagram(sw.UserEvent(U64_MAX, "hostile", b"x", True))),
    Entry("event-ltime-2p63", "user event, LTime 2^63",
          lambda c: serf_datagram(sw.UserEvent(1 << 63, "hostile", b"x", True))),
    Entry("join-intent-ltime-max", "join intent about a1, LTime 2^64-1",
          lambda c: serf_datagram(sw.JoinIntent(U64_MAX, "a1")), accuses_victim=True),
    Entry("leave-intent-ltime-max", "leave intent about live a1, LTime 2^64-1",
          lambda c: serf_datagram(sw.LeaveIntent(U64_MAX, "a1")), accuses_victim=True),
    Entry("suspect-inc-max", "suspect a1, incarnation 2^32-1",
          lambda c: memberlist_datagram(Suspect(U32_MAX, "a1", ACCUSER)), accuses_victim=True),
    Entry("dead-inc-max", "dead a1, incarnation 2^32-1",
          lambda c: memberlist_datagram(Dead(U32_MAX, "a1", ACCUSER)), accuses_victim=True),
    Entry("dead-forged-leave", "dead a1 From=a1 (a forged graceful leave), inc 2^32-1",
          lambda c: memberlist_datagram(Dead(U32_MAX, "a1", "a1")), accuses_victim=True),
    Entry("alive-inc-max", "alive a1, incarnation 2^32-1, a1's real addr/port/tags/Vsn",
          lambda c: memberlist_datagram(Alive(U32_MAX, "a1", HOST, c.victim_port,
                                              sw.encode_tags(c.tags[1]), DEFAULT_VSN)),
          accuses_victim=True),
    Entry("alive-addr-3-bytes", "alive of a new node, Addr 3 bytes",
          lambda c: memberlist_datagram(Alive(1, "ghost3", HOST, c.ghost_port,
                                              sw.encode_tags({"role": "ghost"})),
                                        raw_addr=b"\x7f\x00\x00")),
    Entry("alive-addr-empty", "alive of a new node, Addr empty",
          lambda c: memberlist_datagram(Alive(1, "ghost0", "", c.ghost_port,
                                              sw.encode_tags({"role": "ghost"})))),
    Entry("alive-name-ctrl", "alive of a new node named 'evil\\nnode\\tx'",
          lambda c: memberlist_datagram(Alive(1, "evil\nnode\tx", HOST, c.ghost_port,
                                              sw.encode_tags({"role": "ghost"})))),
    Entry("alive-bad-meta", "alive of a new node, Meta ff c1 (tag magic, then no msgpack)",
          lambda c: memberlist_datagram(Alive(1, "ghostm", HOST, c.ghost_port, b"\xff\xc1"))),
    Entry("query-relay-255", "query, RelayFactor 255, ack flag (replies to a sink)",
          lambda c: serf_datagram(_query(port=c.sink_port, flags=ACK, relay=255))),
    Entry("query-timeout-neg", "query, Timeout -1 ns",
          lambda c: serf_datagram(_query(port=c.sink_port, timeout_ns=-1))),
    Entry("query-timeout-max", "query, Timeout 2^63-1 ns",
          lambda c: serf_datagram(_query(port=c.sink_port, timeout_ns=I64_MAX))),
    Entry("query-regex-redos", "query, tag filter role=~'(a+)+$'; a0's role is 'a'*40+'!'",
          lambda c: serf_datagram(_query(port=c.sink_port,
                                         filters=(sw.TagFilter("role", "(a+)+$"),))),
          target_tags={"role": REDOS_TAG}),
    Entry("pushpull-clocks-max", "TCP push-pull, no rows, Serf LTime/EventLTime/QueryLTime 2^64-1",
          lambda c: push_pull_stream([], sw.SerfPushPull(U64_MAX, {}, (), U64_MAX, (),
                                                         U64_MAX)),
          settle=PUSH_PULL_SETTLE_S),
    Entry("pushpull-clocks-max-rows", "TCP push-pull, the cluster's rows, Serf clocks 2^64-1",
          lambda c: push_pull_stream(_rows(c), sw.SerfPushPull(U64_MAX, {}, (), U64_MAX, (),
                                                               U64_MAX)),
          settle=PUSH_PULL_SETTLE_S),
    Entry("query-reflect", "query, ack flag, Addr:Port = a third party (127.0.0.2)",
          lambda c: serf_datagram(_query(addr=THIRD_PARTY, port=c.third_port, flags=ACK))),
    Entry("query-reflect-relay", "query, ack flag, RelayFactor 2, Addr:Port = a third party",
          lambda c: serf_datagram(_query(addr=THIRD_PARTY, port=c.third_port, flags=ACK,
                                         relay=2))),
    Entry("indirect-ping-reflect", "indirect ping request (Nack) toward a third party",
          lambda c: memberlist_datagram(IndirectPing(7, THIRD_PARTY, c.third_port, "a1",
                                                     True))),
]


def catalogue_ctx() -> Ctx:
    """A context with fixed ports, for listing and tests."""
    return Ctx(ports=(17000, 17001, 17002),
               tags=({"role": "target"}, {"role": "victim"}, {"role": "bystander"}),
               sink_port=17100, third_port=17101, ghost_port=17102)


# ----------------------------------------------------------------- processes


@dataclass
class Options:
    impls: list[str]
    only: list[str]
    wait: float
    settle: float
    event_timeout: float
    query_timeout: float
    startup_timeout: float
    workdir: Path
    #: Run swimlib agents from this source tree (PYTHONPATH), e.g. a ``git archive`` of HEAD.
    swimlib_path: Path | None = None
    #: ... or from this commit, extracted with ``git archive`` (read-only) into the workdir.
    swimlib_rev: str | None = None


HANDLER = """#!/bin/sh
# hostile suite: user events are logged per agent, queries answered.
cat >/dev/null
case "$SERF_EVENT" in
  user) printf '%s\\n' "$SERF_USER_EVENT" >> {dir}/events-"$SERF_SELF_NAME".log ;;
  query) printf 'pong-%s' "$SERF_SELF_NAME" ;;
esac
"""


def agent_argv(impl: str, node: str, port: int, rpc: int, tags: dict[str, str],
               handler: Path, join: str | None) -> list[str]:
    if impl == "serf":
        argv = [SERF, "agent", f"-node={node}", f"-bind={HOST}:{port}",
                f"-rpc-addr={HOST}:{rpc}", "-log-level=info", "-profile=lan",
                f"-event-handler=user={handler}", f"-event-handler=query={handler}"]
        argv += [f"-tag={k}={v}" for k, v in tags.items()]
        if join:
            argv.append(f"-join={join}")
        return argv
    argv = [*SWIMLIB_COMMAND, "agent", "--node", node,
            "--bind", f"{HOST}:{port}", "--rpc-addr", f"{HOST}:{rpc}", "--log-level", "info",
            "--profile", "lan", "--event-handler", f"user={handler}",
            "--event-handler", f"query={handler}"]
    for k, v in tags.items():
        argv += ["--tag", f"{k}={v}"]
    if join:
        argv += ["--join", join]
    return argv


def run_cli(argv: list[str], timeout: float) -> tuple[int | None, str]:
    """A short-lived client (``serf members`` ...): (returncode or None on timeout, stdout)."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, text=True, errors="replace",
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out
    except subprocess.TimeoutExpired:
        return None, ""
    finally:
        stop_popen(p)


def stop_popen(p: subprocess.Popen[Any], grace: float = 1.0) -> None:
    """SIGTERM by PID, then SIGKILL after ``grace``; waits (bounded)."""
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        p.wait(5)


def members(rpc: int, timeout: float = 5.0) -> dict[str, str] | None:
    """name -> status as ``serf members -format=json`` shows it; None if no answer."""
    rc, out = run_cli([SERF, "members", "-format=json", f"-rpc-addr={HOST}:{rpc}"], timeout)
    if rc != 0:
        return None
    try:
        rows = json.loads(out).get("members") or []
        return {str(m["name"]): str(m["status"]) for m in rows}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def parse_query_json(text: str) -> tuple[list[str], list[str]] | None:
    """(acks, responders) from ``serf query -format=json``; None if unreadable."""
    try:
        obj = json.loads(text)
        acks = sorted(str(a) for a in (obj.get("Acks") or []))
        responses = sorted(str(r) for r in (obj.get("Responses") or {}))
    except (ValueError, TypeError, AttributeError):
        return None
    return acks, responses


class Sink:
    """A UDP socket that counts what arrives (a reader thread; bounded stop)."""

    def __init__(self, host: str, port: int) -> None:
        self.addr = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(self.addr)
        self.sock.settimeout(0.2)
        self.count = 0
        self.bytes = 0
        self.sources: dict[str, int] = {}
        self.first: float | None = None
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sink-{port}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, src = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.count += 1
            self.bytes += len(data)
            key = f"{src[0]}:{src[1]}"
            self.sources[key] = self.sources.get(key, 0) + 1
            if self.first is None:
                self.first = time.monotonic()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(2.0)
        self.sock.close()
        return {"addr": f"{self.addr[0]}:{self.addr[1]}", "datagrams": self.count,
                "bytes": self.bytes, "sources": self.sources,
                "listened_s": round(time.monotonic() - self.started, 1)}


def send_message(built: Built, port: int, timeout: float = 3.0) -> dict[str, Any]:
    """Send the datagram (from a socket of ours) or the stream (reading the reply, bounded)."""
    if built.transport == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((HOST, 0))
            s.sendto(built.data, (HOST, port))
        return {"transport": "udp", "bytes": len(built.data)}
    out: dict[str, Any] = {"transport": "tcp", "bytes": len(built.data), "reply_bytes": 0}
    reply = bytearray()
    framer = codec.StreamFramer()
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.sendall(built.data)
            for _ in range(10_000):
                left = deadline - time.monotonic()
                if left <= 0:
                    out["reply"] = "timeout"
                    break
                s.settimeout(left)
                chunk = s.recv(65536)
                if not chunk:
                    out["reply"] = "closed" if reply else "closed without reply"
                    break
                reply += chunk
                total = framer.feed(chunk)
                if total is not None and len(reply) >= total:
                    out["reply"] = "complete"
                    break
    except (OSError, DecodeError) as exc:
        out["reply"] = f"{type(exc).__name__}: {exc}"
    out["reply_bytes"] = len(reply)
    return out


class Group:
    """Three agents of one implementation: a0 (target), a1 (victim), a2 (bystander)."""

    def __init__(self, impl: str, entry: Entry, workdir: Path,
                 swimlib_path: Path | None = None) -> None:
        self.impl = impl
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.cond = threading.Condition()
        self.logfile: IO[str] = open(workdir / "agents.log", "w")  # noqa: SIM115
        self.ports = tuple(free_port() for _ in NAMES)
        self.rpcs = tuple(free_port() for _ in NAMES)
        self.tags: tuple[dict[str, str], dict[str, str], dict[str, str]] = (
            entry.target_tags or {"role": "target"}, {"role": "victim"}, {"role": "bystander"})
        self.agents = [AgentProc(n, p, r, self.cond, self.logfile)
                       for n, p, r in zip(NAMES, self.ports, self.rpcs, strict=True)]
        self.handler = workdir / "handler.sh"
        self.handler.write_text(HANDLER.format(dir=shlex.quote(str(workdir))))
        self.handler.chmod(0o755)
        self.env: dict[str, str] = {}
        if impl == "swimlib":
            self.env["PYTHONUNBUFFERED"] = "1"
            if swimlib_path is not None:
                self.env["PYTHONPATH"] = os.pathsep.join(
                    [str(swimlib_path), *filter(None, [os.environ.get("PYTHONPATH")])])

    def start(self, timeout: float) -> str | None:
        """Start a0, then a1 and a2 joining it; None when formed, else what went wrong."""
        a0 = self.agents[0]
        a0.start(agent_argv(self.impl, "a0", a0.port, a0.rpc, self.tags[0], self.handler, None),
                 self.env, self.workdir)
        if not self.wait(lambda: a0.first("ready", "", 0.0) is not None, timeout):
            return "a0 not ready"
        for i in (1, 2):
            a = self.agents[i]
            a.start(agent_argv(self.impl, a.node, a.port, a.rpc, self.tags[i], self.handler,
                               f"{HOST}:{a0.port}"), self.env, self.workdir)
        if not self.wait(lambda: all(a.join_complete(NAMES, 0.0) for a in self.agents),
                         timeout):
            return "join not complete in logs"
        deadline = time.monotonic() + timeout
        for _ in range(100):
            views = [members(a.rpc) for a in self.agents]
            if all(v is not None and v == dict.fromkeys(NAMES, "alive") for v in views):
                return None
            if time.monotonic() > deadline:
                break
            time.sleep(0.3)
        return f"views not healthy: {views}"

    def wait(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            for _ in range(100_000):  # woken per log line; the deadline is the real bound
                if any(a.popen is not None and not a.alive() for a in self.agents):
                    return False
                if done():
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.5))
            return False

    def running(self) -> dict[str, bool]:
        return {a.node: a.alive() for a in self.agents}

    def views(self) -> dict[str, dict[str, str] | None]:
        """Every running agent's member view (None when it does not answer RPC)."""
        return {a.node: members(a.rpc) for a in self.agents if a.alive()}

    def exits(self, t0: float | None = None) -> dict[str, Any]:
        """Agents whose process ended: return code, seconds after ``t0``, last log lines."""
        out = {}
        for a in self.agents:
            if a.popen is not None and a.popen.poll() is not None:
                with self.cond:
                    tail = [line for _, line in a.tail[-6:]]
                    ended = a.exited_at
                after = None if t0 is None or ended is None else round(ended - t0, 2)
                out[a.node] = {"rc": a.popen.returncode, "after_s": after, "log": tail}
        return out

    def stop(self) -> None:
        """SIGTERM every agent by PID, wait (bounded), then SIGKILL what is left."""
        for a in self.agents:
            a.kill(signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for a in self.agents:
            if a.popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    a.popen.wait(max(0.1, deadline - time.monotonic()))
        for a in self.agents:
            a.reap()
        with self.cond:
            self.logfile.close()


# ----------------------------------------------------------------- one cell


def bad_members(view: dict[str, str] | None) -> dict[str, str]:
    return {} if view is None else {n: s for n, s in view.items() if s != "alive"}


def members_ok(views: dict[str, dict[str, str] | None], running: dict[str, bool]) -> bool:
    """Every running agent answers and sees every running agent alive."""
    up = [n for n, r in running.items() if r]
    return all(views.get(v) is not None and all(views[v].get(n) == "alive"  # type: ignore[union-attr]
                                                for n in up) for v in up)


def judge(cell: dict[str, Any]) -> tuple[str, str]:
    """(verdict, detail) for one measured cell; see the module docstring for the order."""
    if cell.get("error"):
        return "error", cell["error"]
    if cell.get("setup_error"):
        return "setup failed", cell["setup_error"]
    notes = []
    refl = cell.get("sinks", {})
    for key, label in (("sink", "to sink"), ("third_party", "to 127.0.0.2")):
        n = refl.get(key, {}).get("datagrams", 0)
        if n:
            notes.append(f"{n} datagrams {label}")
    running: dict[str, bool] = cell["running"]
    down = [n for n, r in running.items() if not r]
    if down:
        who = "all" if len(down) == len(running) else ",".join(down)
        when = [e.get("after_s") for n, e in cell.get("exits", {}).items() if n in down]
        known = [w for w in when if w is not None]
        text = f"{who} exited" + (f" within {max(known):.1f} s" if known else "")
        return "crashed", "; ".join([text, *notes])
    settled: dict[str, dict[str, str] | None] = cell["views_settled"]
    saw = [f"{v} sees a0 {view.get('a0', 'missing')}" for v, view in settled.items()
           if v != "a0" and view is not None and view.get("a0") != "alive"]
    if settled.get("a0") is None:
        saw.insert(0, "a0 does not answer RPC")
    if saw:
        return "silenced", "; ".join(saw + notes)
    if cell.get("victim_ok") is False:
        seen = sorted({f"{view.get('a1', 'missing')} in {v}" for v, view in settled.items()
                       if view is not None and view.get("a1") != "alive"})
        return "victim dead", "; ".join(["a1 " + ", ".join(seen), *notes])
    if not cell["members_ok_settled"]:
        bad = {v: bad_members(view) for v, view in settled.items()}
        return "split", "; ".join([json.dumps(bad, sort_keys=True), *notes])
    lost, why = [], []
    for word, key in (("events", "event"), ("queries", "query")):
        ok, ok_late = cell.get(f"{key}_ok"), cell.get(f"{key}_ok_settled")
        if ok and ok_late is not False:
            continue
        lost.append(word)

        def missed(d: Any) -> str:
            return "missed by " + ",".join((d or {}).get("missing") or ["?"])

        parts = [] if ok else [missed(cell.get(key))]
        if ok_late is False:
            parts.append(("again after settling: " if not ok else "after settling: ")
                         + missed(cell.get(f"{key}_settled")))
        elif ok_late:
            parts.append("fine after settling")
        why.append(f"{key} {', '.join(parts)}")
    if lost:
        return "no " + "/".join(lost), "; ".join(why + notes)
    if not cell["members_ok"]:
        notes.insert(0, "transient: " + json.dumps(
            {v: bad_members(view) for v, view in cell["views"].items()}, sort_keys=True))
    extra: dict[str, str] = {}
    for view in settled.values():
        for n, status in (view or {}).items():
            if n not in NAMES:
                extra[n] = status
    if extra:
        notes.append("extra members " + ", ".join(f"{n!r} {st}" for n, st in
                                                   sorted(extra.items())))
    return "ok", "; ".join(notes)


def check_event(group: Group, sender: AgentProc, opts: Options, tag: str) -> dict[str, Any]:
    """``serf event`` from ``sender``; which running agents' handlers logged it (bounded)."""
    rc, out = run_cli([SERF, "event", f"-rpc-addr={HOST}:{sender.rpc}", tag, "check"], 10.0)
    got: set[str] = set()
    deadline = time.monotonic() + opts.event_timeout
    want = {a.node for a in group.agents if a.alive()}
    for _ in range(int(opts.event_timeout / 0.2) + 2):
        for a in group.agents:
            path = group.workdir / f"events-{a.node}.log"
            with contextlib.suppress(OSError):
                if tag in path.read_text(errors="replace").split("\n"):
                    got.add(a.node)
        want = {a.node for a in group.agents if a.alive()}
        if want <= got or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return {"sender": sender.node, "rc": rc, "cli": out.strip()[-200:], "got": sorted(got),
            "missing": sorted(want - got), "ok": rc == 0 and want <= got}


def check_query(group: Group, sender: AgentProc, opts: Options, name: str) -> dict[str, Any]:
    """``serf query -format=json``: every running agent must ack and respond."""
    rc, out = run_cli([SERF, "query", "-format=json", f"-rpc-addr={HOST}:{sender.rpc}",
                       f"-timeout={opts.query_timeout:g}s", name, "check"],
                      opts.query_timeout + 10.0)
    parsed = parse_query_json(out) if rc == 0 else None
    want = sorted(a.node for a in group.agents if a.alive())
    if parsed is None:
        return {"sender": sender.node, "rc": rc, "cli": out.strip()[-200:], "ok": False,
                "missing": want}
    acks, responses = parsed
    missing = sorted(set(want) - (set(acks) & set(responses)))
    return {"sender": sender.node, "acks": acks, "responses": responses, "missing": missing,
            "ok": not missing}


def run_checks(group: Group, opts: Options, round_: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A user event and a query, concurrently, from a2 (a1 if a2 is gone, a0 if alone)."""
    senders = [a for a in (group.agents[2], group.agents[1], group.agents[0]) if a.alive()]
    if not senders:
        none = {"ok": False, "missing": ["no agent running"]}
        return dict(none), dict(none)
    nonce = f"{round_}{int(time.time() * 1000) % 100000:05d}"
    box: dict[str, dict[str, Any]] = {}
    worker = threading.Thread(
        target=lambda: box.setdefault("q", check_query(group, senders[0], opts, f"q{nonce}")),
        name="query-check", daemon=True)
    worker.start()
    event = check_event(group, senders[0], opts, f"chk{nonce}")
    worker.join(opts.query_timeout + 15.0)  # check_query's own bound is timeout + 10 s
    query = box.get("q", {"ok": False, "missing": ["query check did not finish"]})
    return event, query


def run_cell(entry: Entry, impl: str, opts: Options) -> dict[str, Any]:
    """Fresh cluster, one message, checks; every process stopped in ``finally``."""
    workdir = opts.workdir / f"{entry.name}-{impl}"
    group = Group(impl, entry, workdir, opts.swimlib_path)
    sinks: dict[str, Sink] = {}
    cell: dict[str, Any] = {"entry": entry.name, "impl": impl}
    t_start = time.monotonic()
    try:
        sinks["sink"] = Sink(HOST, free_port())
        sinks["third_party"] = Sink(THIRD_PARTY, free_port(THIRD_PARTY))
        ctx = Ctx(ports=group.ports, tags=group.tags, sink_port=sinks["sink"].addr[1],  # type: ignore[arg-type]
                  third_port=sinks["third_party"].addr[1], ghost_port=free_port())
        built = entry.build(ctx)
        cell["message"] = {"transport": built.transport, "how": built.how,
                           "hex": built.data.hex()}
        problem = group.start(opts.startup_timeout)
        cell["setup_s"] = round(time.monotonic() - t_start, 2)
        if problem is not None:
            cell["setup_error"] = problem
            cell["exits"] = group.exits()
            return cell
        t0 = time.monotonic()
        cell["send"] = send_message(built, group.ports[0])
        time.sleep(max(0.0, t0 + opts.wait - time.monotonic()))
        cell["running_after_wait"] = group.running()
        cell["views"] = group.views()
        cell["members_ok"] = members_ok(cell["views"], group.running())
        cell["event"], cell["query"] = run_checks(group, opts, "a")
        cell["event_ok"] = bool(cell["event"]["ok"])
        cell["query_ok"] = bool(cell["query"]["ok"])
        time.sleep(max(0.0, t0 + max(opts.settle, entry.settle or 0.0) - time.monotonic()))
        cell["settled_after_s"] = round(time.monotonic() - t0, 1)
        cell["views_settled"] = group.views()
        # A second round tells a lasting loss from one that healed.
        cell["event_settled"], cell["query_settled"] = run_checks(group, opts, "b")
        cell["event_ok_settled"] = bool(cell["event_settled"]["ok"])
        cell["query_ok_settled"] = bool(cell["query_settled"]["ok"])
        cell["running"] = group.running()
        cell["members_ok_settled"] = members_ok(cell["views_settled"], cell["running"])
        cell["bad_settled"] = {v: bad_members(view) for v, view in cell["views_settled"].items()}
        if entry.accuses_victim:
            cell["victim_ok"] = all(view is not None and view.get("a1") == "alive"
                                    for view in cell["views_settled"].values())
        cell["exits"] = group.exits(t0)
    except Exception as exc:  # one broken cell must not lose the others
        cell["error"] = f"{type(exc).__name__}: {exc}"
        cell["traceback"] = traceback.format_exc()[-2000:]
    finally:
        try:
            group.stop()
        finally:
            cell["sinks"] = {k: s.stop() for k, s in sinks.items()}
        cell["wall_s"] = round(time.monotonic() - t_start, 1)
    cell["verdict"], cell["detail"] = judge(cell)
    return cell


# ----------------------------------------------------------------- tables


def _yn(v: Any) -> str:
    return "-" if v is None else ("yes" if v else "**no**")


def _yn2(first: Any, late: Any) -> str:
    """One check's two rounds: "yes", "**no**", or "**no** → yes" when they differ."""
    if late is None or bool(first) == bool(late):
        return _yn(first)
    return f"{_yn(first)} → {_yn(late)}"


def format_tables(catalogue: Sequence[Entry], results: dict[str, dict[str, Any]],
                  impls: Sequence[str]) -> str:
    """Markdown: one row per entry (verdict per implementation), then the booleans."""
    label = {"serf": "Serf 0.9.4", "swimlib": "swimlib"}
    head = "| # | entry | message | " + " | ".join(label[i] for i in impls) + " |"
    lines = [head, "|" + "---|" * (3 + len(impls))]
    for k, e in enumerate(catalogue, 1):
        cells = []
        for impl in impls:
            c = results.get(e.name, {}).get(impl)
            if c is None:
                cells.append("-")
                continue
            text = f"**{c['verdict']}**" if c["verdict"] != "ok" else "ok"
            if c.get("detail"):
                text += f" ({c['detail']})".replace("|", "/")
            cells.append(text)
        title = e.title.replace("|", "/")
        lines.append(f"| {k} | `{e.name}` | {title} | " + " | ".join(cells) + " |")
    lines += ["", "| entry | impl | running | members ok | after settle | event | query "
              "| victim | verdict |", "|---|---|---|---|---|---|---|---|---|",
              ]
    for e in catalogue:
        for impl in impls:
            c = results.get(e.name, {}).get(impl)
            if c is None:
                continue
            run = c.get("running")
            up = "-" if run is None else f"{sum(run.values())}/{len(run)}"
            ev = _yn2(c.get("event_ok"), c.get("event_ok_settled"))
            qu = _yn2(c.get("query_ok"), c.get("query_ok_settled"))
            lines.append(f"| `{e.name}` | {impl} | {up} | {_yn(c.get('members_ok'))} | "
                         f"{_yn(c.get('members_ok_settled'))} | {ev} | {qu} | "
                         f"{_yn(c.get('victim_ok'))} | {c['verdict']} |")
    return "\n".join(lines)


# ----------------------------------------------------------------- entry point


def parse_args(argv: list[str]) -> tuple[Options, bool]:
    p = argparse.ArgumentParser(prog="python -m benchmarks hostile",
                                description="one hostile message vs a 3-agent cluster, "
                                            "serf and swimlib")
    p.add_argument("--only", default="", help="comma-separated entry names (default: all)")
    p.add_argument("--impl", choices=("serf", "swimlib", "both"), default="both")
    p.add_argument("--wait", type=float, default=2.0,
                   help="seconds after the message before the first checks (2)")
    p.add_argument("--settle", type=float, default=15.0,
                   help="seconds after the message before the final views (15)")
    p.add_argument("--event-timeout", type=float, default=8.0)
    p.add_argument("--query-timeout", type=float, default=3.0)
    p.add_argument("--startup-timeout", type=float, default=25.0)
    p.add_argument("--workdir", default=None, help="agent logs (default: a temp dir)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--swimlib-path", default=None, metavar="DIR",
                     help="run swimlib agents from DIR/swimlib (PYTHONPATH)")
    src.add_argument("--swimlib-rev", default=None, metavar="REV",
                     help="run swimlib agents from this commit (git archive into the workdir)")
    p.add_argument("--list", action="store_true", help="print the catalogue and exit")
    a = p.parse_args(argv)
    names = {e.name for e in CATALOGUE}
    only = [n for n in a.only.split(",") if n]
    unknown = [n for n in only if n not in names]
    if unknown:
        p.error(f"unknown entries {unknown}; known: {', '.join(sorted(names))}")
    impls = ["serf", "swimlib"] if a.impl == "both" else [a.impl]
    workdir = Path(a.workdir or tempfile.mkdtemp(prefix="hostile-"))
    return Options(impls=impls, only=only, wait=a.wait, settle=max(a.settle, a.wait),
                   event_timeout=a.event_timeout, query_timeout=a.query_timeout,
                   startup_timeout=a.startup_timeout, workdir=workdir,
                   swimlib_path=Path(a.swimlib_path).resolve() if a.swimlib_path else None,
                   swimlib_rev=a.swimlib_rev), a.list


def extract_rev(rev: str, dest: Path) -> str:
    """``git archive REV swimlib`` into ``dest``; returns the full commit id."""
    root = Path(__file__).resolve().parent.parent
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                            capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(root), "archive", commit, "swimlib"],
                             capture_output=True, timeout=60, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, timeout=60, check=True)
    return commit


def swimlib_tree_sha256(path: Path | None) -> tuple[str, str]:
    """(directory, sha256 over its .py files) of the swimlib the agents import."""
    import hashlib

    import swimlib

    root = path / "swimlib" if path is not None else Path(swimlib.__file__ or "").parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return str(root), h.hexdigest()


def describe(entry: Entry, ctx: Ctx | None = None) -> dict[str, Any]:
    built = entry.build(ctx or catalogue_ctx())
    return {"name": entry.name, "title": entry.title, "transport": built.transport,
            "how": built.how, "accuses_victim": entry.accuses_victim,
            "bytes": len(built.data), "hex_example": built.data.hex()}


def run(argv: list[str]) -> dict[str, Any]:
    """Entry point for ``python -m benchmarks hostile``; returns the JSON-able results."""
    from benchmarks.vs_serf import _git_head

    opts, list_only = parse_args(argv)
    entries = [e for e in CATALOGUE if not opts.only or e.name in opts.only]
    if list_only:
        for e in entries:
            d = describe(e)
            print(f"{e.name:26} {d['transport']} {d['bytes']:4d} B  {e.title}  [{d['how']}]")
        return {"suite": "hostile", "catalogue": [describe(e) for e in entries]}
    if "serf" in opts.impls and not os.path.exists(SERF):
        raise SystemExit("serf is not installed (apt-get install serf)")
    opts.workdir.mkdir(parents=True, exist_ok=True)
    # The checkout's commit describes the agents only when they run from the checkout.
    git = _git_head() if opts.swimlib_path is None else None
    if opts.swimlib_rev is not None and "swimlib" in opts.impls:
        git = extract_rev(opts.swimlib_rev, opts.workdir / "src")
        opts.swimlib_path = opts.workdir / "src"
    if "swimlib" in opts.impls:
        precompile()
        if opts.swimlib_path is not None:  # agents must not each compile the other tree
            import compileall

            compileall.compile_dir(str(opts.swimlib_path / "swimlib"), quiet=2)
    tree_dir, tree_sha = swimlib_tree_sha256(opts.swimlib_path)
    print(f"hostile: swimlib {tree_dir} (sha256 {tree_sha[:12]}; git {git}); "
          f"{len(entries)} entries x {opts.impls}; "
          f"wait {opts.wait}s settle {opts.settle}s; logs in {opts.workdir}", flush=True)
    started = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    for e in entries:
        for impl in opts.impls:
            cell = run_cell(e, impl, opts)
            results.setdefault(e.name, {})[impl] = cell
            print(f"  {e.name:26} {impl:8} {cell['verdict']:12} {cell.get('detail', '')[:150]}"
                  f"  [{cell['wall_s']}s]", flush=True)
    table = format_tables(entries, results, opts.impls)
    print()
    print(table)
    wall = time.monotonic() - started
    print(f"\nwall time {wall:.0f}s")
    return {
        "suite": "hostile", "host": platform.node(), "cpus": os.cpu_count(),
        "python": platform.python_version(), "serf": SERF, "swimlib_tree": git,
        "swimlib_dir": tree_dir, "swimlib_sha256": tree_sha,
        "options": {"impls": opts.impls, "only": opts.only, "wait_s": opts.wait,
                    "settle_s": opts.settle, "event_timeout_s": opts.event_timeout,
                    "query_timeout_s": opts.query_timeout, "workdir": str(opts.workdir),
                    "swimlib_path": str(opts.swimlib_path) if opts.swimlib_path else None,
                    "swimlib_rev": opts.swimlib_rev},
        "method": "per entry and implementation: fresh 3-agent cluster on 127.0.0.1 "
                  "(a0 target, a1 victim, a2 bystander), one message to a0, checks via "
                  "serf's RPC CLI; see benchmarks/hostile.py",
        "catalogue": [describe(e) for e in entries],
        "results": results, "table": table, "wall_s": wall,
    }


__all__ = ["CATALOGUE", "Built", "Ctx", "Entry", "format_tables", "judge", "run"]
