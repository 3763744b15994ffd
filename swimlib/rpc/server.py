"""An anyio server speaking Serf's RPC protocol on top of an :class:`AgentAPI`.

One task per connection handles requests in order, like Go's ``handleClient``;
``stream``, ``monitor`` and ``query`` results are pushed by child tasks that
share the connection through a send lock. Misbehaving clients get Go's error
strings, and anything Go answers by dropping the connection (garbage bytes,
a command before the handshake, an unknown command) closes only that
connection: no client input can stop the server.

It runs under any anyio backend (asyncio or trio).
"""

from __future__ import annotations

import collections
import errno
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing
from typing import Any, Final, Protocol, TypeVar

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketListener, TaskGroup, TaskStatus

from swimlib.cluster.events import ClusterMember, Event, MemberEvent, QueryEvent, UserEvent
from swimlib.errors import DecodeError
from swimlib.exception_groups import innermost, leaves
from swimlib.faults import FaultLog
from swimlib.rpc import protocol as p
from swimlib.rpc.api import LOG_LEVELS, AgentAPI, KeyQueryError, KeyResult, LogLine, QueryReply
from swimlib.rpc.filters import (
    event_matches,
    filter_members,
    log_level_passes,
    parse_event_filters,
)
from swimlib.transport.sockets import listen_tcp

__all__ = ["ConnectionHandler", "RPCServer", "accept_loop", "serve_rpc", "wire_member"]

log = logging.getLogger("swimlib.rpc")

#: Records buffered per stream before dropping (Serf's channel size).
STREAM_BUFFER: Final = 512
#: Pause before a query's ``done`` record. Serf sends ``done`` at the deadline,
#: long after the last reply; the Go CLI races its reply channels against the
#: close that ``done`` triggers, so a ``done`` right behind replies can lose some.
DONE_GRACE: Final = 0.05
#: Queries remembered per connection for ``respond`` (oldest forgotten first).
PENDING_QUERY_LIMIT: Final = 512
_RECV_SIZE: Final = 65536
_EOF: Final = object()
#: ``accept()`` failures that concern only the connection being accepted (a
#: reset before it was accepted, a firewall refusal...): accept the next one.
_ACCEPT_SKIP_ERRNOS: Final = frozenset(
    getattr(errno, name)
    for name in ("EPERM", "ECONNABORTED", "EPROTO", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN",
                 "ENONET", "EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH")
    if hasattr(errno, name)
)
#: ``accept()`` failures from running out of descriptors or memory: log, pause, retry.
_ACCEPT_CAPACITY_ERRNOS: Final = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)
#: Pause after a capacity failure (connections may close meanwhile).
ACCEPT_RETRY_DELAY: Final = 0.1

T = TypeVar("T")


class ConnectionHandler(Protocol):
    """Serves one accepted connection to completion (never raises but for cancellation)."""

    async def handle_connection(self, stream: ByteStream) -> None: ...


class _Close(Exception):
    """End this connection (where Go's handler returns an error)."""


def wire_member(m: ClusterMember) -> p.WireMember:
    """``ClusterMember`` -> ``agent.Member`` as Serf's agent fills it."""
    return p.WireMember(
        name=m.name,
        addr=p.ip_bytes(m.addr),
        port=m.port,
        tags=m.tag_map,
        status=m.status_name,
        protocol_min=m.protocol_min,
        protocol_max=m.protocol_max,
        protocol_cur=m.protocol_cur,
        delegate_min=m.delegate_min,
        delegate_max=m.delegate_max,
        delegate_cur=m.delegate_cur,
    )


class RPCServer:
    """Serves Serf RPC connections for one agent; ``auth_key`` "" disables auth."""

    def __init__(self, agent: AgentAPI, *, auth_key: str = "",
                 faults: FaultLog | None = None,
                 counters: collections.Counter[str] | None = None) -> None:
        self.agent = agent
        self.auth_key = auth_key
        #: ``rpc.accept`` and ``rpc.command`` (serf's agent.ipc.accept and .command).
        self.counters: collections.Counter[str] = (
            counters if counters is not None else collections.Counter())
        #: Where a failing connection is counted (``rpc.connection``) and logged.
        self.faults = faults if faults is not None else FaultLog(log)

    async def handle_connection(self, stream: ByteStream) -> None:
        """Run one client to completion, then close ``stream``.

        Never raises but for cancellation: an exception would end the task
        group that serves every other connection.
        """
        try:
            self.counters["rpc.accept"] += 1
            peer = _peer_name(stream)
            log.info("agent.ipc: Accepted client: %s", peer)
            await _Session(self, stream, peer).run()
        except Exception as exc:
            self.faults.record("rpc.connection", exc)
        finally:
            await anyio.aclose_forcefully(stream)


async def serve_rpc(
    agent: AgentAPI,
    host: str,
    port: int,
    *,
    auth_key: str = "",
    faults: FaultLog | None = None,
    counters: collections.Counter[str] | None = None,
    task_status: TaskStatus[list[SocketListener]] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``host:port`` (0 picks a free port) until cancelled.

    Start it with ``await task_group.start(serve_rpc, ...)``: ``task_status.started``
    gets the list of bound :class:`anyio.abc.SocketListener` (one per address
    ``host`` resolves to); read the port with
    ``listeners[0].extra(SocketAttribute.local_address)[1]``. A failure to bind
    raises ``OSError`` before that. The listeners are closed when this returns;
    one closed meanwhile just stops accepting.
    """
    server = RPCServer(agent, auth_key=auth_key, faults=faults, counters=counters)
    multi = await listen_tcp(host, port)
    listeners = [lst for lst in multi.listeners if isinstance(lst, SocketListener)]
    async with multi, anyio.create_task_group() as tg:
        for listener in listeners:
            tg.start_soon(accept_loop, listener, server, tg)
        task_status.started(listeners)


async def accept_loop(listener: SocketListener, server: ConnectionHandler,
                      tg: TaskGroup) -> None:
    """Accept clients until ``listener`` is closed; each runs as a task in ``tg``.

    Not ``listener.serve()``: that ends on the first failed ``accept()``. Here,
    as in trio's ``serve_listeners``, a failure that concerns only the incoming
    connection is skipped and running out of descriptors or memory pauses
    accepting; anything else is a bug and is raised.
    """
    while True:
        try:
            stream = await listener.accept()
        except anyio.ClosedResourceError:
            return
        except (OSError, anyio.BrokenResourceError) as exc:
            # asyncio raises the OSError, anyio on trio wraps it in BrokenResourceError
            cause = exc if isinstance(exc, OSError) else exc.__cause__
            code = cause.errno if isinstance(cause, OSError) else None
            if code in _ACCEPT_SKIP_ERRNOS:
                continue
            if code not in _ACCEPT_CAPACITY_ERRNOS:
                raise
            log.error("agent.ipc: accept failed, retrying in %.1fs: %s",
                      ACCEPT_RETRY_DELAY, cause)
            await anyio.sleep(ACCEPT_RETRY_DELAY)
            continue
        tg.start_soon(server.handle_connection, stream)


def _peer_name(stream: ByteStream) -> str:
    """``host:port`` (``[host]:port`` for IPv6) of the client, or ``?``."""
    addr = stream.extra(SocketAttribute.remote_address, None)
    if not isinstance(addr, tuple) or len(addr) < 2:
        return addr if isinstance(addr, str) and addr else "?"  # a UNIX socket's path
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _err(exc: BaseException) -> str:
    """Go's ``errToString``; a one-error group (from a task group) is unwrapped."""
    exc = innermost(exc)
    return str(exc) or type(exc).__name__


class _Session:
    """State of one client connection (Go's ``IPCClient``)."""

    def __init__(self, server: RPCServer, stream: ByteStream, peer: str) -> None:
        self.agent = server.agent
        self.auth_key = server.auth_key
        self.counters = server.counters
        self.stream = stream
        self.peer = peer
        self.reader = p.ObjectReader()
        self.send_lock = anyio.Lock()
        self.version = 0
        self.did_auth = False
        self.event_streams: dict[int, anyio.CancelScope] = {}
        self.monitor: tuple[int, anyio.CancelScope] | None = None
        self.pending_queries: collections.OrderedDict[int, QueryEvent] = (
            collections.OrderedDict()
        )
        self.next_query_id = 0
        self.task_group: TaskGroup | None = None
        self.handlers: dict[str, Callable[[int], Awaitable[None]]] = {
            p.Command.HANDSHAKE: self._handshake,
            p.Command.AUTH: self._auth,
            p.Command.EVENT: self._event,
            p.Command.MEMBERS: self._members,
            p.Command.MEMBERS_FILTERED: self._members_filtered,
            p.Command.STREAM: self._stream,
            p.Command.MONITOR: self._monitor,
            p.Command.STOP: self._stop,
            p.Command.FORCE_LEAVE: self._force_leave,
            p.Command.JOIN: self._join,
            p.Command.LEAVE: self._leave,
            p.Command.INSTALL_KEY: self._install_key,
            p.Command.USE_KEY: self._use_key,
            p.Command.REMOVE_KEY: self._remove_key,
            p.Command.LIST_KEYS: self._list_keys,
            p.Command.TAGS: self._tags,
            p.Command.QUERY: self._query,
            p.Command.RESPOND: self._respond,
            p.Command.STATS: self._stats,
            p.Command.GET_COORDINATE: self._get_coordinate,
        }

    # -- connection loop -------------------------------------------------------

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            self.task_group = tg
            try:
                await self._serve_requests()
            finally:
                tg.cancel_scope.cancel()

    async def _serve_requests(self) -> None:
        try:
            while True:
                obj = await self._read()
                if obj is _EOF:
                    return
                header = p.RequestHeader.from_wire(obj)
                if not await self._dispatch(header):
                    return
        except DecodeError as exc:
            log.warning("agent.ipc: failed to decode request from %s: %s", self.peer, exc)
        except _Close as exc:
            log.warning("agent.ipc: Failed to evaluate request from %s: %s", self.peer, exc)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    async def _read(self) -> Any:
        while True:
            obj = self.reader.next_object()
            if obj is not p.NEED_DATA:
                return obj
            try:
                data = await self.stream.receive(_RECV_SIZE)
            except anyio.EndOfStream:
                return _EOF
            self.reader.feed(data)

    async def _body(self, cls: type[p.Body]) -> Any:
        obj = await self._read()
        if obj is _EOF:
            raise _Close("connection closed before the request body")
        return cls.from_wire(obj)

    async def _send(
        self, seq: int, error: str = "", body: p.Body | Mapping[str, Any] | None = None
    ) -> None:
        header = p.ResponseHeader(seq, error).to_wire()
        if body is None:
            data = p.encode(header)
        else:
            data = p.encode(header, body.to_wire() if isinstance(body, p.Body) else body)
        async with self.send_lock:
            await self.stream.send(data)

    async def _dispatch(self, header: p.RequestHeader) -> bool:
        """Handle one request; False closes the connection (as Go does)."""
        command, seq = header.command, header.seq
        if command != p.Command.HANDSHAKE and self.version == 0:
            await self._send(seq, p.HANDSHAKE_REQUIRED)
            return False
        self.counters["rpc.command"] += 1
        if (
            self.auth_key
            and not self.did_auth
            and command not in (p.Command.AUTH, p.Command.HANDSHAKE)
        ):
            log.warning("agent.ipc: Client sending commands before auth")
            # Go leaves the body unread and desynchronises; we skip it.
            if p.REQUEST_BODIES.get(command) is not None and await self._read() is _EOF:
                return False
            await self._send(seq, p.AUTH_REQUIRED)
            return True
        handler = self.handlers.get(command)
        if handler is None:
            await self._send(seq, p.UNSUPPORTED_COMMAND)
            log.warning("agent.ipc: command %r not recognized", command[:64])
            return False
        await handler(seq)
        return True

    # -- session -------------------------------------------------------------------

    async def _handshake(self, seq: int) -> None:
        req: p.HandshakeRequest = await self._body(p.HandshakeRequest)
        error = ""
        if not p.MIN_IPC_VERSION <= req.version <= p.MAX_IPC_VERSION:
            error = p.UNSUPPORTED_IPC_VERSION
        elif self.version != 0:
            error = p.DUPLICATE_HANDSHAKE
        else:
            self.version = req.version
        await self._send(seq, error)

    async def _auth(self, seq: int) -> None:
        req: p.AuthRequest = await self._body(p.AuthRequest)
        if hmac.compare_digest(req.auth_key.encode("utf-8", "surrogateescape"),
                               self.auth_key.encode("utf-8", "surrogateescape")):
            self.did_auth = True
            await self._send(seq)
        else:
            await self._send(seq, p.INVALID_AUTH_TOKEN)

    # -- simple commands -------------------------------------------------------------

    async def _call(self, seq: int, call: Callable[[], Awaitable[object]]) -> None:
        """Run an agent call whose reply has no body."""
        try:
            await call()
        except Exception as exc:
            await self._send(seq, _err(exc))
        else:
            await self._send(seq)

    async def _event(self, seq: int) -> None:
        req: p.EventRequest = await self._body(p.EventRequest)
        await self._call(seq, lambda: self.agent.user_event(req.name, req.payload, req.coalesce))

    async def _force_leave(self, seq: int) -> None:
        req: p.ForceLeaveRequest = await self._body(p.ForceLeaveRequest)
        await self._call(seq, lambda: self.agent.force_leave(req.node, req.prune))

    async def _tags(self, seq: int) -> None:
        req: p.TagsRequest = await self._body(p.TagsRequest)
        await self._call(seq, lambda: self.agent.set_tags(req.tags, req.delete_tags))

    async def _join(self, seq: int) -> None:
        req: p.JoinRequest = await self._body(p.JoinRequest)
        try:
            num = await self.agent.join(req.existing, req.replay)
        except Exception as exc:
            await self._send(seq, _err(exc), p.JoinResponse(0))
        else:
            await self._send(seq, "", p.JoinResponse(num))

    async def _leave(self, seq: int) -> None:
        log.info("agent.ipc: Graceful leave triggered")
        error = ""
        try:
            await self.agent.leave()
        except Exception as exc:
            error = _err(exc)
            log.error("agent.ipc: leave failed: %s", error)
        try:
            await self._send(seq, error)
        finally:
            self.agent.request_shutdown()

    async def _members(self, seq: int) -> None:
        await self._send_members(seq, None)

    async def _members_filtered(self, seq: int) -> None:
        req: p.MembersFilteredRequest = await self._body(p.MembersFilteredRequest)
        await self._send_members(seq, req)

    async def _send_members(self, seq: int, req: p.MembersFilteredRequest | None) -> None:
        # Always send a body: Go's client waits for one even after an error.
        try:
            members = list(self.agent.members())
            if req is not None:
                members = filter_members(members, req.tags, req.status, req.name)
        except Exception as exc:  # InvalidRegex or an agent failure
            await self._send(seq, _err(exc), p.MembersResponse([]))
            return
        await self._send(seq, "", p.MembersResponse([wire_member(m) for m in members]))

    async def _stats(self, seq: int) -> None:
        try:
            # Go's client decodes map[string]map[string]string: send only strings.
            stats = {
                str(k): {str(a): str(b) for a, b in v.items()}
                for k, v in self.agent.stats().items()
            }
        except Exception as exc:
            await self._send(seq, _err(exc), {})
            return
        await self._send(seq, "", stats)

    async def _get_coordinate(self, seq: int) -> None:
        # Serf's handleGetCoordinate: the cached coordinate, or Ok=false with a zero
        # one (``serf rtt`` then says "Could not find a coordinate for node").
        req: p.CoordinateRequest = await self._body(p.CoordinateRequest)
        try:
            coord = self.agent.get_coordinate(req.node)
        except Exception as exc:
            await self._send(seq, _err(exc), p.CoordinateResponse())
            return
        if coord is None:
            await self._send(seq, "", p.CoordinateResponse())
            return
        await self._send(seq, "", p.CoordinateResponse(
            p.Coordinate(list(coord.vec), coord.error, coord.adjustment, coord.height), True))

    # -- keyring -----------------------------------------------------------------------

    async def _key_op(
        self, seq: int, call: Callable[[], Awaitable[KeyResult]], with_keys: bool
    ) -> None:
        error = ""
        try:
            result = await call()
        except KeyQueryError as exc:
            error, result = _err(exc), exc.result
        except Exception as exc:
            error, result = _err(exc), KeyResult()
        body = p.KeyResponse(
            messages=result.messages,
            keys=result.keys if with_keys else {},
            num_nodes=result.num_nodes,
            num_err=result.num_err,
            num_resp=result.num_resp,
        )
        await self._send(seq, error, body)

    async def _install_key(self, seq: int) -> None:
        req: p.KeyRequest = await self._body(p.KeyRequest)
        await self._key_op(seq, lambda: self.agent.install_key(req.key), False)

    async def _use_key(self, seq: int) -> None:
        req: p.KeyRequest = await self._body(p.KeyRequest)
        await self._key_op(seq, lambda: self.agent.use_key(req.key), False)

    async def _remove_key(self, seq: int) -> None:
        req: p.KeyRequest = await self._body(p.KeyRequest)
        await self._key_op(seq, lambda: self.agent.remove_key(req.key), False)

    async def _list_keys(self, seq: int) -> None:
        await self._key_op(seq, self.agent.list_keys, True)

    # -- queries --------------------------------------------------------------------------

    async def _query(self, seq: int) -> None:
        req: p.QueryRequest = await self._body(p.QueryRequest)
        try:
            replies = await self.agent.query(
                req.name,
                req.payload,
                filter_nodes=req.filter_nodes,
                filter_tags=req.filter_tags,
                request_ack=req.request_ack,
                relay_factor=req.relay_factor,
                timeout=max(req.timeout_ns, 0) / 1e9,
            )
        except Exception as exc:
            await self._send(seq, _err(exc))
            return
        await self._send(seq)
        assert self.task_group is not None
        self.task_group.start_soon(self._query_stream, seq, replies)

    async def _query_stream(self, seq: int, replies: AsyncIterator[QueryReply]) -> None:
        def record(reply: QueryReply) -> p.Body:
            kind = p.QUERY_RECORD_ACK if reply.kind == "ack" else p.QUERY_RECORD_RESPONSE
            return p.QueryRecord(kind, reply.from_node, reply.payload)

        try:
            await self._pump(seq, replies, record, "query")
            await anyio.sleep(DONE_GRACE)
            await self._send(seq, "", p.QueryRecord(p.QUERY_RECORD_DONE))
        except Exception as exc:
            self._stream_failed("query", exc)

    async def _respond(self, seq: int) -> None:
        req: p.RespondRequest = await self._body(p.RespondRequest)
        query = self.pending_queries.get(req.id)
        if query is None:
            await self._send(seq, p.INVALID_QUERY_ID)
            return
        await self._call(seq, lambda: self.agent.respond(query, req.payload))

    def _register_query(self, query: QueryEvent) -> int:
        self.next_query_id += 1
        self.pending_queries[self.next_query_id] = query
        while len(self.pending_queries) > PENDING_QUERY_LIMIT:
            self.pending_queries.popitem(last=False)
        return self.next_query_id

    # -- event streams and log monitor ------------------------------------------------------

    async def _stream(self, seq: int) -> None:
        req: p.StreamRequest = await self._body(p.StreamRequest)
        filters = parse_event_filters(req.type)
        if not all(f.valid for f in filters):
            await self._send(seq, p.INVALID_FILTER)
            return
        if seq in self.event_streams:
            await self._send(seq, p.STREAM_EXISTS)
            return

        def record(event: Event) -> p.Body | None:
            return self._event_record(event) if event_matches(filters, event) else None

        await self._start_stream(seq, self.agent.subscribe_events, record, "event")

    async def _monitor(self, seq: int) -> None:
        req: p.MonitorRequest = await self._body(p.MonitorRequest)
        level = req.log_level.upper()
        if level not in LOG_LEVELS:
            await self._send(seq, f"Unknown log level: {level}")
            return
        if self.monitor is not None:
            await self._send(seq, p.MONITOR_EXISTS)
            return

        def record(line: LogLine) -> p.Body | None:
            return p.LogRecord(line.line) if log_level_passes(level, line.level) else None

        await self._start_stream(seq, self.agent.subscribe_logs, record, "log")

    async def _start_stream(
        self,
        seq: int,
        subscribe: Callable[[], Any],
        record: Callable[[Any], p.Body | None],
        what: str,
    ) -> None:
        """Subscribe, answer, then stream: no record can precede the answer."""
        assert self.task_group is not None
        answered = anyio.Event()
        try:
            scope = await self.task_group.start(
                self._stream_task, seq, subscribe, record, what, answered
            )
        except Exception as exc:
            await self._send(seq, _err(exc))
            return
        if what == "log":
            self.monitor = (seq, scope)
        else:
            self.event_streams[seq] = scope
        try:
            await self._send(seq)
        finally:
            answered.set()

    async def _stream_task(
        self,
        seq: int,
        subscribe: Callable[[], Any],
        record: Callable[[Any], p.Body | None],
        what: str,
        answered: anyio.Event,
        *,
        task_status: TaskStatus[anyio.CancelScope] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        started = False
        with anyio.CancelScope() as scope:
            try:
                async with subscribe() as source:
                    task_status.started(scope)
                    started = True
                    await answered.wait()
                    await self._pump(seq, source, record, what)
            except Exception as exc:
                if not started:
                    raise
                self._stream_failed(what, exc)
            finally:
                if self.monitor is not None and self.monitor[1] is scope:
                    self.monitor = None
                if self.event_streams.get(seq) is scope:
                    del self.event_streams[seq]

    async def _pump(
        self,
        seq: int,
        source: AsyncIterator[T],
        record: Callable[[T], p.Body | None],
        what: str,
    ) -> None:
        """Forward records to the client; drop (like Serf) when it falls behind."""
        send_ch, recv_ch = anyio.create_memory_object_stream[p.Body](STREAM_BUFFER)

        async def forward() -> None:
            with send_ch:  # closing it ends the loop below once it is drained
                async with aclosing_if_possible(source) as items:
                    async for item in items:
                        rec = record(item)
                        if rec is None:
                            continue
                        try:
                            send_ch.send_nowait(rec)
                        except anyio.WouldBlock:
                            log.warning("agent.ipc: Dropping %s to %s", what, self.peer)

        with send_ch, recv_ch:  # both closed even if ``forward`` never ran
            async with anyio.create_task_group() as tg:
                tg.start_soon(forward)
                async for rec in recv_ch:
                    await self._send(seq, "", rec)

    def _stream_failed(self, what: str, exc: BaseException) -> None:
        if _only_connection_errors(exc):
            log.debug("agent.ipc: %s stream to %s ended: connection closed", what, self.peer)
        else:
            log.error("agent.ipc: Failed to stream %s to %s: %r", what, self.peer, exc)

    def _event_record(self, event: Event) -> p.Body:
        if isinstance(event, MemberEvent):
            return p.MemberEventRecord(
                event.type.value, [wire_member(m) for m in event.members]
            )
        if isinstance(event, UserEvent):
            return p.UserEventRecord(
                "user", event.ltime, event.name, event.payload, event.coalesce
            )
        return p.QueryEventRecord(
            "query", self._register_query(event), event.ltime, event.name, event.payload
        )

    async def _stop(self, seq: int) -> None:
        req: p.StopRequest = await self._body(p.StopRequest)
        if self.monitor is not None and self.monitor[0] == req.stop:
            self.monitor[1].cancel()
            self.monitor = None
        scope = self.event_streams.pop(req.stop, None)
        if scope is not None:
            scope.cancel()
        await self._send(seq)


def _only_connection_errors(exc: BaseException) -> bool:
    return all(isinstance(leaf, anyio.BrokenResourceError | anyio.ClosedResourceError)
               for leaf in leaves(exc))


def aclosing_if_possible(source: AsyncIterator[T]) -> Any:
    """``aclosing`` for async generators; a no-op wrapper for plain iterators."""
    if hasattr(source, "aclose"):
        return aclosing(source)
    return _NullAsyncContext(source)


class _NullAsyncContext:
    def __init__(self, value: object) -> None:
        self.value = value

    async def __aenter__(self) -> Any:
        return self.value

    async def __aexit__(self, *exc: object) -> None:
        return None
