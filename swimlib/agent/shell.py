"""The thin shell around a sans-IO core: a transport, a clock, and tasks.

A :class:`~swimlib.core.Core` (the Serf layer, or bare membership) decides
everything; this shell only moves bytes and time. It feeds the core every
input synchronously -- a batch of datagrams, an ICMP "port unreachable", an
inbound stream, the reply to a stream the core opened, a due timer -- then
carries out the effects: datagrams are sent at once, streams open in tasks
of their own, and every other effect goes to ``on_effect`` (the agent turns
them into events, query replies, joins finished ...). The protocol never
waits on anything but the network.

It runs on anyio, so the same agent runs under asyncio and trio; ``now`` is
``anyio.current_time()``, so trio's ``MockClock`` with an in-memory
transport (:mod:`swimlib.transport.memory`) runs it on virtual time.

Each input is handled inside its own fault boundary (:mod:`swimlib.faults`):
a failure costs that input, counted by place, never the agent.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable

import anyio
from anyio.abc import ByteStream, TaskGroup

from swimlib.core import Core
from swimlib.errors import DecodeError
from swimlib.faults import FaultLog
from swimlib.membership.types import OpenStream, SendPacket
from swimlib.transport.base import Address, Transport
from swimlib.transport.framing import read_message

log = logging.getLogger("swimlib")

#: Concurrent inbound TCP exchanges beyond this are refused (memberlist: 128).
MAX_INBOUND_STREAMS = 128
#: What a failed stream looks like to the shell: counted, not a fault.
_STREAM_FAILURES = (TimeoutError, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class CoreShell:
    """Drives one core over one transport; start :meth:`run` in a task group."""

    def __init__(self, core: Core, transport: Transport, task_group: TaskGroup, *,
                 tcp_timeout: float, on_effect: Callable[[object], None],
                 faults: FaultLog | None = None) -> None:
        self.core = core
        self.transport = transport
        self.tcp_timeout = tcp_timeout
        self.on_effect = on_effect
        #: Datagrams and streams moved (``udp.sent``, ``udp.received_bytes``, ``tcp.accept``
        #: ...), stream failures, drops of what never reached the core (``drop.*``).
        self.counters: Counter[str] = Counter()
        #: Failures caught at the boundaries of single inputs.
        self.faults = faults or FaultLog()
        self._task_group = task_group
        self._timer_scope: anyio.CancelScope | None = None
        self._inbound_streams = 0

    @property
    def inbound_streams(self) -> int:
        """Inbound TCP exchanges being served now."""
        return self._inbound_streams

    @staticmethod
    def now() -> float:
        return anyio.current_time()

    def start(self) -> None:
        """Start the timer, datagram and stream loops in the shell's task group."""
        self._task_group.start_soon(self._timer_loop)
        self._task_group.start_soon(self._datagram_loop)
        self._task_group.start_soon(self.transport.serve_streams, self._serve_stream)

    async def drive(self) -> None:
        """Carry out everything the core asked for since the last call."""
        for effect in self.core.take_effects():
            with self.faults.boundary("effect"):
                if isinstance(effect, SendPacket):
                    await self._send_packet(effect)
                elif isinstance(effect, OpenStream):
                    self._task_group.start_soon(self._stream_out, effect)
                else:
                    self.on_effect(effect)
        # Work that came due sooner than the timer loop's sleep pulls its wake-up in.
        deadline = self.core.next_deadline(skip_idle=True)
        scope = self._timer_scope
        if deadline is not None and scope is not None and deadline < scope.deadline:
            scope.deadline = deadline

    # ------------------------------------------------------------------ loops

    async def _timer_loop(self) -> None:
        while True:
            deadline = self.core.next_deadline(skip_idle=True)
            with anyio.CancelScope(deadline=math.inf if deadline is None else deadline) as scope:
                self._timer_scope = scope
                await anyio.sleep_forever()
            self._timer_scope = None
            with self.faults.boundary("timer"):
                self.core.tick(self.now())
            await self.drive()

    async def _datagram_loop(self) -> None:
        """Feed datagrams to the core a batch at a time, then act once."""
        transport = self.transport
        boundary = self.faults.boundary
        core = self.core
        while True:
            batch = await transport.receive_datagrams()
            now = self.now()
            counters = self.counters
            counters["udp.received"] += len(batch)
            counters["udp.received_bytes"] += sum(len(data) for data, _ in batch)
            for data, source in batch:
                with boundary("datagram"):
                    core.handle_packet(data, source, now)
            for dest, sent in transport.take_unreachable():
                with boundary("unreachable"):
                    core.handle_unreachable(dest, sent, now)
            await self.drive()

    async def _serve_stream(self, stream: ByteStream, peer: Address) -> None:
        """One inbound exchange: read, answer, close."""
        self.counters["tcp.accept"] += 1
        if self._inbound_streams >= MAX_INBOUND_STREAMS:
            self.counters["drop.stream.too_many"] += 1
            await anyio.aclose_forcefully(stream)
            return
        self._inbound_streams += 1
        try:
            with anyio.fail_after(self.tcp_timeout):
                raw = await read_message(stream)
                reply = self.core.handle_stream(raw, peer, self.now())
                await self.drive()
                if reply is not None:
                    await stream.send(reply)
                    self.counters["tcp.sent_bytes"] += len(reply)
        except DecodeError as exc:
            self.counters["drop.stream." + exc.reason] += 1
        except _STREAM_FAILURES:
            self.counters["stream.in_failed"] += 1
        except Exception as exc:
            self.faults.record("stream.in", exc)
        finally:
            self._inbound_streams -= 1
            await anyio.aclose_forcefully(stream)

    async def _stream_out(self, effect: OpenStream) -> None:
        reply: bytes | None = None
        try:
            with anyio.fail_after(effect.timeout):
                stream = await self.transport.connect(effect.dest)
                self.counters["tcp.connect"] += 1
                async with stream:
                    await stream.send(effect.data)
                    self.counters["tcp.sent_bytes"] += len(effect.data)
                    reply = await read_message(stream)
        except DecodeError as exc:
            self.counters["drop.stream." + exc.reason] += 1
        except _STREAM_FAILURES:
            self.counters["stream.out_failed"] += 1
        except Exception as exc:
            self.faults.record("stream.out", exc)
            reply = None
        with self.faults.boundary("stream.reply"):
            self.core.handle_stream_reply(effect.request_id, reply, self.now())
        await self.drive()

    async def _send_packet(self, effect: SendPacket) -> None:
        try:
            await self.transport.send_datagram(effect.data, effect.dest)
            self.counters["udp.sent"] += 1
            self.counters["udp.sent_bytes"] += len(effect.data)
        except OSError as exc:
            self.counters["udp.send_error"] += 1
            log.debug("memberlist: failed to send to %s: %s", effect.dest, exc)
