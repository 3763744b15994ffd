"""A tiny HTTP backend that answers every request with its node name.

``python -m lbadapter.backend_app --name s1 --listen 127.0.0.1:3000``

Why it exists: the demo, the namespace lab and the ``lb_churn`` benchmark need
backends whose answer tells which node served a request, that keep client
connections alive (HAProxy pools server connections) and that are fast
enough not to be the bottleneck of a load test. ``http.server`` manages a
few hundred keep-alive requests per second per core; this asyncio protocol
does several thousand, with the standard library only.

Every request (any method, any path) gets ``200`` with the body ``NAME\\n``
and an ``X-Backend: NAME`` header; ``HEAD`` gets the headers only. HTTP/1.1
connections stay open unless the client says ``Connection: close``;
HTTP/1.0 ones close unless it says ``keep-alive``. A ``Content-Length`` body
is read and ignored; chunked request bodies are refused (``411``).

SIGTERM/SIGINT shut down like Go's ``http.Server.Shutdown``: stop accepting,
close idle connections, answer requests in flight with ``Connection: close``,
then exit 0 when no connection is left or after ``--grace`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time

#: A request head larger than this is refused (431) and the connection closed.
MAX_HEAD = 64 * 1024


def split_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` -> (host, port); host defaults to 0.0.0.0."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "", value
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad port in {value!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range in {value!r}")
    return (host.strip("[]") or "0.0.0.0", number)


class Backend:
    """Shared state: the name, the open connections, and whether we are draining."""

    def __init__(self, name: str, keepalive_timeout: float) -> None:
        self.name = name
        self.keepalive_timeout = keepalive_timeout
        self.body = f"{name}\n".encode()
        self.connections: set[HttpConnection] = set()
        self.draining = False
        self.served = 0
        self.all_closed = asyncio.Event()

    def response(self, keep_alive: bool, head_only: bool, status: str = "200 OK",
                 body: bytes | None = None) -> bytes:
        payload = self.body if body is None else body
        head = (f"HTTP/1.1 {status}\r\n"
                f"Content-Type: text/plain\r\n"
                f"Content-Length: {len(payload)}\r\n"
                f"X-Backend: {self.name}\r\n"
                f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n").encode()
        return head if head_only else head + payload

    def forget(self, conn: HttpConnection) -> None:
        self.connections.discard(conn)
        if self.draining and not self.connections:
            self.all_closed.set()

    def drain(self) -> None:
        """Start a graceful shutdown: idle connections close now, busy ones after answering."""
        self.draining = True
        for conn in list(self.connections):
            if conn.idle:
                conn.close()
        if not self.connections:
            self.all_closed.set()


class HttpConnection(asyncio.Protocol):
    """One client connection: parses request heads, answers each as soon as it is complete."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.body_left = 0  # bytes of a request body still to skip
        self.closing = False
        self.idle_timer: asyncio.TimerHandle | None = None

    @property
    def idle(self) -> bool:
        return not self.buffer and self.body_left == 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.backend.connections.add(self)
        if self.backend.draining:
            self.close()
            return
        self._arm_idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        self.backend.forget(self)

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def _arm_idle_timer(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        loop = asyncio.get_running_loop()
        self.idle_timer = loop.call_later(self.backend.keepalive_timeout, self.close)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self._arm_idle_timer()
        if self.body_left:
            skip = min(self.body_left, len(data))
            self.body_left -= skip
            data = data[skip:]
        self.buffer += data
        while not self.closing and not self.body_left:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self._reply_and_close("431 Request Header Fields Too Large")
                return
            head = bytes(self.buffer[:end])
            del self.buffer[:end + 4]
            self._handle(head)
        if self.backend.draining and self.idle:
            self.close()

    def _handle(self, head: bytes) -> None:
        assert self.transport is not None
        lines = head.split(b"\r\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self._reply_and_close("400 Bad Request")
            return
        method, version = parts[0], parts[2]
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            key, sep, value = line.partition(b":")
            if not sep:
                self._reply_and_close("400 Bad Request")
                return
            headers[key.strip().lower()] = value.strip()
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            self._reply_and_close("411 Length Required")
            return
        try:
            length = int(headers.get(b"content-length", b"0"))
        except ValueError:
            self._reply_and_close("400 Bad Request")
            return
        if length < 0:
            self._reply_and_close("400 Bad Request")
            return
        skip = min(length, len(self.buffer))
        del self.buffer[:skip]
        self.body_left = length - skip
        connection = headers.get(b"connection", b"").lower()
        if version == b"HTTP/1.0":
            keep_alive = b"keep-alive" in connection
        else:
            keep_alive = b"close" not in connection
        keep_alive = keep_alive and not self.backend.draining
        self.backend.served += 1
        self.transport.write(self.backend.response(keep_alive, method == b"HEAD"))
        if not keep_alive:
            self.closing = True
            self.transport.close()

    def _reply_and_close(self, status: str) -> None:
        assert self.transport is not None
        self.transport.write(self.backend.response(False, False, status, status.encode() + b"\n"))
        self.closing = True
        self.transport.close()


async def serve(name: str, host: str, port: int, grace: float, keepalive_timeout: float) -> int:
    """Serve until SIGTERM/SIGINT, then drain for at most ``grace`` seconds; returns 0."""
    loop = asyncio.get_running_loop()
    backend = Backend(name, keepalive_timeout)
    server = await loop.create_server(lambda: HttpConnection(backend), host, port,
                                      reuse_address=True, backlog=1024)
    bound = server.sockets[0].getsockname()
    print(f"backend_app {name} listening on {bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    started = time.monotonic()
    server.close()
    backend.drain()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(backend.all_closed.wait(), grace)
    for conn in list(backend.connections):
        conn.close()
    print(f"backend_app {name} stopped after {time.monotonic() - started:.2f}s of drain, "
          f"{backend.served} requests served", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lbadapter.backend_app",
                                description="HTTP backend answering with its node name")
    p.add_argument("--name", required=True, help="node name put in every answer")
    p.add_argument("--listen", type=split_listen, default=("0.0.0.0", 3000),
                   metavar="HOST:PORT", help="address to listen on (default 0.0.0.0:3000)")
    p.add_argument("--grace", type=float, default=5.0,
                   help="seconds to finish requests in flight after SIGTERM (default 5)")
    p.add_argument("--keepalive-timeout", type=float, default=75.0,
                   help="close a connection idle this long (default 75 s, longer than "
                        "HAProxy's pool purge so HAProxy closes first)")
    args = p.parse_args(argv)
    host, port = args.listen
    try:
        return asyncio.run(serve(args.name, host, port, args.grace, args.keepalive_timeout))
    except OSError as exc:
        print(f"backend_app {args.name}: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
