"""A blocking client for Serf's RPC protocol (what ``serf``'s CLI uses).

Blocking sockets keep the short-lived CLI simple; the client still
demultiplexes by ``Seq`` like Go's ``RPCClient``, so one connection can carry
an event stream and a log monitor at once (``swimlib monitor``). Error texts
follow Go's, because the CLI prints them the way ``serf`` does.
"""

from __future__ import annotations

import collections
import errno
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

from swimlib.errors import DecodeError, RPCConnectError, RPCError
from swimlib.records import field, record
from swimlib.rpc import protocol as p

__all__ = [
    "DEFAULT_RPC_ADDR",
    "RPCClient",
    "RPCConnectError",
    "RPCError",
    "split_host_port",
]

DEFAULT_RPC_ADDR: Final = "127.0.0.1:7373"
#: Go's ``client.DefaultTimeout``: dial and write deadline.
DEFAULT_TIMEOUT: Final = 10.0
CLIENT_CLOSED: Final = "client closed"


def split_host_port(addr: str) -> tuple[str, int]:
    """Go's ``net.SplitHostPort`` plus a numeric port, with Go's error texts."""
    if addr.startswith("["):
        end = addr.find("]")
        if end < 0:
            raise RPCConnectError(f"dial tcp: address {addr}: missing ']' in address")
        host, rest = addr[1:end], addr[end + 1 :]
        if not rest.startswith(":"):
            raise RPCConnectError(f"dial tcp: address {addr}: missing port in address")
        port_text = rest[1:]
    else:
        colons = addr.count(":")
        if colons == 0:
            raise RPCConnectError(f"dial tcp: address {addr}: missing port in address")
        if colons > 1:
            raise RPCConnectError(f"dial tcp: address {addr}: too many colons in address")
        host, port_text = addr.split(":")
    if not port_text.isdigit() or int(port_text) > 0xFFFF:
        raise RPCConnectError(f"dial tcp: lookup tcp/{port_text}: unknown port")
    return host, int(port_text)


def _dial(addr: str, timeout: float) -> socket.socket:
    host, port = split_host_port(addr)
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise RPCConnectError(f"dial tcp: lookup {host}: {exc.strerror}") from None
    last: OSError | None = None
    for family, kind, proto, _name, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    if isinstance(last, TimeoutError):
        raise RPCConnectError(f"dial tcp {target}: i/o timeout")
    reason = errno.errorcode.get(last.errno or 0, "") if last else ""
    text = (last.strerror or str(last)).lower() if last else "no addresses"
    if reason == "ECONNREFUSED":
        text = "connection refused"
    raise RPCConnectError(f"dial tcp {target}: connect: {text}")


@record(frozen=False)
class _Pending:
    """What we expect for one ``Seq`` (Go's ``seqHandler``)."""

    decode: Callable[[Any], Any] | None
    stream: bool = False
    started: bool = False
    records: collections.deque[tuple[str, Any]] = field(factory=collections.deque)


@record
class _Message:
    seq: int
    error: str
    body: Any


class RPCClient:
    """One connection to an agent's RPC port: handshake, optional auth, commands."""

    def __init__(
        self, addr: str = DEFAULT_RPC_ADDR, auth_key: str = "", timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.timeout = timeout
        self._sock = _dial(addr, timeout)
        self._reader = p.ObjectReader()
        self._seq = 0
        self._pending: dict[int, _Pending] = {}
        self._closed = False
        try:
            self._call(p.Command.HANDSHAKE, p.HandshakeRequest(p.MAX_IPC_VERSION))
            if auth_key:
                self._call(p.Command.AUTH, p.AuthRequest(auth_key))
        except RPCError as exc:
            self.close()
            raise RPCConnectError(str(exc)) from None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sock.close()

    def __enter__(self) -> RPCClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands -------------------------------------------------------------------

    def members(self) -> list[p.WireMember]:
        resp: p.MembersResponse = self._call(p.Command.MEMBERS, None, p.MembersResponse.from_wire)
        return resp.members

    def members_filtered(
        self, tags: Mapping[str, str] | None = None, status: str = "", name: str = ""
    ) -> list[p.WireMember]:
        req = p.MembersFilteredRequest(dict(tags or {}), status, name)
        resp: p.MembersResponse = self._call(
            p.Command.MEMBERS_FILTERED, req, p.MembersResponse.from_wire
        )
        return resp.members

    def join(self, addrs: Sequence[str], replay: bool = False) -> int:
        resp: p.JoinResponse = self._call(
            p.Command.JOIN, p.JoinRequest(list(addrs), replay), p.JoinResponse.from_wire
        )
        return resp.num

    def leave(self) -> None:
        self._call(p.Command.LEAVE)

    def force_leave(self, node: str, prune: bool = False) -> None:
        self._call(p.Command.FORCE_LEAVE, p.ForceLeaveRequest(node, prune))

    def user_event(self, name: str, payload: bytes = b"", coalesce: bool = True) -> None:
        self._call(p.Command.EVENT, p.EventRequest(name, payload, coalesce))

    def update_tags(self, tags: Mapping[str, str], delete: Sequence[str] = ()) -> None:
        self._call(p.Command.TAGS, p.TagsRequest(dict(tags), list(delete)))

    def respond(self, query_id: int, payload: bytes) -> None:
        self._call(p.Command.RESPOND, p.RespondRequest(query_id, payload))

    def install_key(self, key: str) -> p.KeyResponse:
        return self._key_call(p.Command.INSTALL_KEY, p.KeyRequest(key))

    def use_key(self, key: str) -> p.KeyResponse:
        return self._key_call(p.Command.USE_KEY, p.KeyRequest(key))

    def remove_key(self, key: str) -> p.KeyResponse:
        return self._key_call(p.Command.REMOVE_KEY, p.KeyRequest(key))

    def list_keys(self) -> p.KeyResponse:
        return self._key_call(p.Command.LIST_KEYS, None)

    def _key_call(self, command: str, body: p.Body | None) -> p.KeyResponse:
        """Raises :class:`RPCError` whose ``body`` is the :class:`KeyResponse`."""
        result: p.KeyResponse = self._call(command, body, p.KeyResponse.from_wire)
        return result

    def stats(self) -> dict[str, dict[str, str]]:
        result: dict[str, dict[str, str]] = self._call(p.Command.STATS, None, p.decode_stats)
        return result

    def get_coordinate(self, node: str) -> p.Coordinate | None:
        resp: p.CoordinateResponse = self._call(
            p.Command.GET_COORDINATE, p.CoordinateRequest(node), p.CoordinateResponse.from_wire
        )
        return resp.coord if resp.ok else None

    # -- streams --------------------------------------------------------------------

    def start_stream(self, event_filter: str = "*") -> int:
        """Subscribe to events; records are ``dict`` (Go decodes them as maps)."""
        return self._start(p.Command.STREAM, p.StreamRequest(event_filter), _as_map)

    def start_monitor(self, log_level: str = "INFO") -> int:
        return self._start(p.Command.MONITOR, p.MonitorRequest(log_level), p.LogRecord.from_wire)

    def start_query(
        self,
        name: str,
        payload: bytes = b"",
        *,
        filter_nodes: Sequence[str] = (),
        filter_tags: Mapping[str, str] | None = None,
        request_ack: bool = True,
        relay_factor: int = 0,
        timeout_ns: int = 0,
    ) -> int:
        req = p.QueryRequest(
            name=name,
            payload=payload,
            filter_nodes=list(filter_nodes),
            filter_tags=dict(filter_tags or {}),
            request_ack=request_ack,
            relay_factor=relay_factor,
            timeout_ns=timeout_ns,
        )
        return self._start(p.Command.QUERY, req, p.QueryRecord.from_wire)

    def query(self, name: str, payload: bytes = b"", **params: Any) -> Iterator[p.QueryRecord]:
        """Run a query; yield its ack and response records until ``done``."""
        seq = self.start_query(name, payload, **params)
        return self._query_records(seq)

    def _query_records(self, seq: int) -> Iterator[p.QueryRecord]:
        while True:
            _seq, rec = self.next_record(seqs={seq})
            if rec.type == p.QUERY_RECORD_DONE:
                self._pending.pop(seq, None)
                return
            yield rec

    def stop(self, seq: int) -> None:
        self._pending.pop(seq, None)
        self._call(p.Command.STOP, p.StopRequest(seq))

    def next_record(
        self, timeout: float | None = None, seqs: set[int] | None = None
    ) -> tuple[int, Any]:
        """The next record of any (or one of ``seqs``) stream; blocks up to ``timeout``."""
        while True:
            for seq, pending in self._pending.items():
                if pending.stream and pending.records and (seqs is None or seq in seqs):
                    error, body = pending.records.popleft()
                    if error:
                        raise RPCError(error)
                    return seq, body
            self._receive(timeout)

    # -- plumbing -------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _write(self, command: str, seq: int, body: p.Body | None) -> None:
        header = p.RequestHeader(command, seq).to_wire()
        data = p.encode(header) if body is None else p.encode(header, body.to_wire())
        self._sock.settimeout(self.timeout)
        try:
            self._sock.sendall(data)
        except OSError as exc:
            self.close()
            raise RPCError(CLIENT_CLOSED) from exc

    def _call(
        self,
        command: str,
        body: p.Body | None = None,
        decode: Callable[[Any], Any] | None = None,
    ) -> Any:
        seq = self._next_seq()
        self._pending[seq] = _Pending(decode)
        self._write(command, seq, body)
        try:
            while True:
                msg = self._receive(None)
                if msg is not None and msg.seq == seq:
                    break
        finally:
            self._pending.pop(seq, None)
        if msg.error:
            raise RPCError(msg.error, msg.body)
        return msg.body

    def _start(self, command: str, body: p.Body, decode: Callable[[Any], Any]) -> int:
        seq = self._next_seq()
        self._pending[seq] = _Pending(decode, stream=True)
        self._write(command, seq, body)
        while True:
            msg = self._receive(None)
            if msg is not None and msg.seq == seq:
                break
        if msg.error:
            self._pending.pop(seq, None)
            raise RPCError(msg.error)
        return seq

    def _receive(self, timeout: float | None) -> _Message | None:
        """Read one response; stream records are queued on their ``_Pending``."""
        obj = self._read_object(timeout)
        try:
            return self._route(obj)
        except DecodeError as exc:
            self.close()
            raise RPCError(CLIENT_CLOSED) from exc

    def _route(self, header_obj: Any) -> _Message | None:
        header = p.ResponseHeader.from_wire(header_obj)
        pending = self._pending.get(header.seq)
        if pending is None:  # unknown seq: Go ignores it (and so its body)
            return None
        if pending.stream and not pending.started:
            pending.started = True
            return _Message(header.seq, header.error, None)
        body = None
        if pending.decode is not None and header.error != p.AUTH_REQUIRED:
            # The body follows its header at once; never time out between them.
            body = pending.decode(self._read_object(None))
        if pending.stream:
            pending.records.append((header.error, body))
            return None
        return _Message(header.seq, header.error, body)

    def _read_object(self, timeout: float | None) -> Any:
        self._sock.settimeout(timeout)
        while True:
            try:
                obj = self._reader.next_object()
            except DecodeError as exc:
                self.close()
                raise RPCError(CLIENT_CLOSED) from exc
            if obj is not p.NEED_DATA:
                return obj
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                raise  # only with an explicit timeout; the stream stays in step
            except OSError as exc:
                self.close()
                raise RPCError(CLIENT_CLOSED) from exc
            if not data:
                self.close()
                raise RPCError(CLIENT_CLOSED)
            self._reader.feed(data)


def _as_map(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise p.ProtocolError("stream record is not a map")
    return obj
