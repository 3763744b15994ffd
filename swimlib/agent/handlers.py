"""Event-handler scripts with Serf's interface: existing ``member-join.sh`` scripts run unchanged.

Facts reproduced from Serf's agent (``cmd/serf/command/agent/event_handler.go``, ``invoke.go``):

* Specs: ``SCRIPT`` (every event), ``TYPE[,TYPE]=SCRIPT`` with TYPE one of ``member-join``,
  ``member-leave``, ``member-failed``, ``member-update``, ``member-reap``, ``user``, ``query``,
  ``*``, and ``user:NAME`` / ``query:NAME`` to match one event name. The spec is split at its
  *first* ``=``, so a bare script containing ``=`` must be written ``*=SCRIPT``. Each TYPE becomes
  its own :class:`HandlerSpec`; an event runs every matching spec, in order.
* Run as ``/bin/sh -c SCRIPT``; environment = the agent's environment plus ``SERF_EVENT``,
  ``SERF_SELF_NAME``, ``SERF_SELF_ROLE``, ``SERF_TAG_<KEY>`` (upper-cased, ``[^A-Z0-9_]`` → ``_``),
  ``SERF_USER_EVENT``/``SERF_USER_LTIME`` (user events), ``SERF_QUERY_NAME``/``SERF_QUERY_LTIME``
  (queries).
* stdin: member events one ``NAME\\tIP\\tROLE\\tk=v,k=v\\n`` line per member (tab and newline in
  name, role and tags written as ``\\t``/``\\n``; the address is the bare IP); user events and
  queries the payload, with ``\\n`` appended when it is non-empty and lacks one.
* stdout and stderr share one 8 KiB ring buffer: the *last* 8 KiB are kept (armon/circbuf).
  A script still running after 1 s is logged as slow; a non-zero exit is logged, never raised.
* A query's response is that buffer, sent only if the script exited 0 and wrote something.

Deliberate differences (why in brackets):

* The script runs in its own session, so its own process group, and the whole group is stopped
  on timeout or when the runner is cancelled [otherwise children orphaned by ``sh`` keep
  running and keep the output pipe open].
* After the shell exits, remaining output is read for at most ``drain_grace`` seconds
  [Serf waits for EOF forever, so a handler that backgrounds a daemon without redirecting its
  output stalls every later event].
* Optional per-invocation ``timeout`` (default ``None`` = unlimited, as Serf). It stays off by
  default because handlers may legitimately run long (reloading a balancer, draining), and the
  runner already keeps the protocol independent of handler speed; set it to bound the queue.
* Scripts run in the runner's own task, never on the protocol path; a bounded queue drops the
  *oldest* pending event (counted, logged) when handlers fall far behind [the newest events
  describe the current cluster; old queries are past their deadline anyway].
* A query answered by several matching scripts responds once, with the first successful output
  [Serf calls ``Respond`` again and logs the "already responded" error].
* Member tags on stdin are in sorted key order [Go's map order is random, so scripts cannot
  rely on any order]. An empty script is a ConfigError [Serf silently runs ``sh -c ""``].
* The "output truncated" warning is logged after the script ends [Serf checks right after
  start, when nothing has been written, so it never fires].

Public API::

    HANDLER_EVENT_TYPES: frozenset[str]
    MAX_OUTPUT = 8192; SLOW_AFTER = 1.0
    @record class HandlerSpec(event: str, script: str, name: str = "")
        .matches(event: Event) -> bool
    parse_handler_spec(spec: str) -> list[HandlerSpec]            # raises ConfigError
    parse_handler_specs(specs: Iterable[str]) -> list[HandlerSpec]
    tag_env_name(key: str) -> str                                 # "dc-1" -> "SERF_TAG_DC_1"
    build_env(event: Event, self_member: ClusterMember,
              base_env: Mapping[str, str] | None = None) -> dict[str, str]
    format_member_line(member: ClusterMember) -> str
    event_stdin(event: Event) -> bytes
    @record class InvocationResult(script, exit_code: int | None, output: bytes,
        total_output: int, duration: float, timed_out: bool)   .ok -> bool
    async invoke_script(script: str, event: Event, self_member: ClusterMember, *,
        base_env=None, timeout=None, shell="/bin/sh", drain_grace=2.0) -> InvocationResult
    class HandlerRunner(specs: Sequence[HandlerSpec], self_info: Callable[[], ClusterMember], *,
            max_queue=1024, timeout=None, base_env=None, shell="/bin/sh", drain_grace=2.0)
        async run(events: MemoryObjectReceiveStream[Event],
                  respond: Callable[[QueryEvent, bytes], Awaitable[None]] | None = None) -> None
        update_specs(specs: Sequence[HandlerSpec]) -> None        # SIGHUP: used from next event
        specs: tuple[HandlerSpec, ...]; queued: int                # properties
        dropped, invocations, failures, timeouts, queries_answered: int   # counters

``run`` may be called once per runner. It returns once ``events`` ends (every send stream
closed) and everything already queued has run; cancelling it stops the running script.
Everything runs under anyio, so on asyncio as well as on trio. The caller sends events into
the stream and never waits for scripts. ``respond`` is awaited with the query and its output;
the caller checks size (1024 B) and deadline. Exceptions from ``respond`` are logged.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import signal
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream, Process
from anyio.streams.memory import MemoryObjectReceiveStream

from swimlib.cluster.events import (
    ClusterMember,
    Event,
    EventType,
    MemberEvent,
    QueryEvent,
    UserEvent,
)
from swimlib.errors import ConfigError
from swimlib.faults import FaultLog
from swimlib.records import record

__all__ = [
    "HANDLER_EVENT_TYPES",
    "MAX_OUTPUT",
    "SLOW_AFTER",
    "HandlerRunner",
    "HandlerSpec",
    "InvocationResult",
    "build_env",
    "event_stdin",
    "format_member_line",
    "invoke_script",
    "parse_handler_spec",
    "parse_handler_specs",
    "tag_env_name",
]

log = logging.getLogger(__name__)

#: Bytes of combined stdout+stderr kept per invocation (Serf's ``maxBufSize``).
MAX_OUTPUT = 8 * 1024
#: Seconds after which a still-running script is logged as slow (Serf's ``warnSlow``).
SLOW_AFTER = 1.0
#: Filter values Serf's ``EventFilter.Valid`` accepts.
HANDLER_EVENT_TYPES = frozenset({t.value for t in EventType} | {"*"})

_TAG_SANITIZE = re.compile(r"[^A-Z0-9_]")
# Seconds between SIGTERM and SIGKILL when a script must be stopped.
_KILL_GRACE = 1.0
# Seconds between "dropping events" warnings (each includes the running total).
_DROP_LOG_INTERVAL = 10.0


# --------------------------------------------------------------------------- specs


@record
class HandlerSpec:
    """One filter and its script; ``name`` narrows ``user``/``query`` to one event name."""

    event: str
    script: str
    name: str = ""

    def matches(self, event: Event) -> bool:
        """Serf's ``EventFilter.Invoke``: ``*`` matches all; names only narrow user/query."""
        if self.event == "*":
            return True
        if event.type.value != self.event:
            return False
        if self.name and isinstance(event, UserEvent | QueryEvent):
            return event.name == self.name
        return True

    def __str__(self) -> str:
        label = f"{self.event}:{self.name}" if self.name else self.event
        return f"Event '{label}' invoking '{self.script}'"


def parse_handler_spec(spec: str) -> list[HandlerSpec]:
    """Parse one ``--event-handler`` value the way Serf does, but reject what Serf would not run.

    Raises :class:`ConfigError` for an empty spec or script, an unknown type, or an empty
    type in a list (``member-join,=x``), naming the offending part.
    """
    filt, sep, script = spec.partition("=")
    if not sep:
        filt, script = "", spec
    if not script.strip():
        raise ConfigError(f"invalid event handler {spec!r}: empty script")
    filters = (filt or "*").split(",")
    out: list[HandlerSpec] = []
    for raw in filters:
        event, name = raw, ""
        for prefix in ("user:", "query:"):
            if raw.startswith(prefix):
                event, name = prefix[:-1], raw[len(prefix) :]
        if event not in HANDLER_EVENT_TYPES:
            allowed = ", ".join(sorted(HANDLER_EVENT_TYPES))
            hint = (
                " (a script containing '=' must be written '*=SCRIPT')"
                if not any(raw.startswith(p) for p in ("user:", "query:"))
                else ""
            )
            raise ConfigError(
                f"invalid event handler {spec!r}: unknown event type {raw!r}; "
                f"expected one of {allowed}, user:NAME or query:NAME{hint}"
            )
        out.append(HandlerSpec(event=event, script=script, name=name))
    return out


def parse_handler_specs(specs: Iterable[str]) -> list[HandlerSpec]:
    """Parse every ``--event-handler`` value, keeping order (it is the invocation order)."""
    result: list[HandlerSpec] = []
    for spec in specs:
        result.extend(parse_handler_spec(spec))
    return result


# --------------------------------------------------------------------------- env and stdin


def _go_upper(text: str) -> str:
    """Go's ``strings.ToUpper``: per-character simple mapping (``ß`` stays one character)."""
    return "".join(u if len(u := c.upper()) == 1 else c for c in text)


def tag_env_name(key: str) -> str:
    """``SERF_TAG_<KEY>``: upper-cased, each character outside ``[A-Z0-9_]`` becomes ``_``."""
    return "SERF_TAG_" + _TAG_SANITIZE.sub("_", _go_upper(key))


def build_env(
    event: Event, self_member: ClusterMember, base_env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The script's environment: ``base_env`` (default: ours now) plus Serf's variables.

    Later assignments win, as in Go's exec (which keeps the last duplicate), so two tag keys
    that sanitize to the same name leave the one that sorts last.
    """
    env = dict(os.environ if base_env is None else base_env)
    tags = self_member.tag_map
    env["SERF_EVENT"] = event.type.value
    env["SERF_SELF_NAME"] = self_member.name
    env["SERF_SELF_ROLE"] = tags.get("role", "")
    for key, value in self_member.tags:
        env[tag_env_name(key)] = value
    if isinstance(event, UserEvent):
        env["SERF_USER_EVENT"] = event.name
        env["SERF_USER_LTIME"] = str(event.ltime)
    elif isinstance(event, QueryEvent):
        env["SERF_QUERY_NAME"] = event.name
        env["SERF_QUERY_LTIME"] = str(event.ltime)
    return env


def _clean(value: str) -> str:
    """Serf's ``eventClean``: only tab and newline are escaped (not backslash, not ``,``/``=``)."""
    return value.replace("\t", "\\t").replace("\n", "\\n")


def _ip_text(addr: str) -> str:
    """Go's ``net.IP.String()``: IPv4-mapped IPv6 prints as dotted IPv4."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return addr
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def format_member_line(member: ClusterMember) -> str:
    """``NAME\\tIP\\tROLE\\tk=v,k=v\\n`` with tags in sorted key order (Go's order is random)."""
    tags = ",".join(f"{k}={v}" for k, v in member.tags)
    role = member.tag_map.get("role", "")
    return f"{_clean(member.name)}\t{_ip_text(member.addr)}\t{_clean(role)}\t{_clean(tags)}\n"


def event_stdin(event: Event) -> bytes:
    """What the script reads on stdin for ``event``."""
    if isinstance(event, MemberEvent):
        text = "".join(format_member_line(m) for m in event.members)
        return text.encode("utf-8", "surrogateescape")
    payload = event.payload
    if payload and not payload.endswith(b"\n"):
        payload += b"\n"
    return payload


# --------------------------------------------------------------------------- one invocation


class _Ring:
    """Keeps the last ``size`` bytes written and the total, like armon/circbuf."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.total = 0
        self._buf = bytearray()

    def write(self, data: bytes | bytearray) -> None:
        self.total += len(data)
        self._buf += data
        if len(self._buf) > self.size:
            del self._buf[: len(self._buf) - self.size]

    def value(self) -> bytes:
        return bytes(self._buf)


@record
class InvocationResult:
    """Outcome of one script run. ``exit_code`` is negative for a signal, None if not started."""

    script: str
    exit_code: int | None
    #: The last :data:`MAX_OUTPUT` bytes of stdout+stderr, interleaved as written.
    output: bytes
    #: Bytes the script wrote in total (more than ``len(output)`` means truncated).
    total_output: int
    duration: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def _signal_group(proc: Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


async def _stop(proc: Process) -> None:
    """SIGTERM the script's process group, SIGKILL it if it lingers; never blocks long."""
    with anyio.CancelScope(shield=True):
        if proc.returncode is None:
            _signal_group(proc, signal.SIGTERM)
            with anyio.move_on_after(_KILL_GRACE):
                await proc.wait()
        # Children may outlive sh: kill the whole group regardless.
        _signal_group(proc, signal.SIGKILL)
        with anyio.move_on_after(_KILL_GRACE):
            await proc.wait()


async def _close(proc: Process) -> None:
    """Close our ends of the pipes (a background child may still hold the output) and reap."""
    with anyio.move_on_after(_KILL_GRACE, shield=True):
        await proc.aclose()


async def _feed(stream: ByteSendStream, data: bytes) -> None:
    """Write the script's stdin and close it."""
    try:
        if data:
            await stream.send(data)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass  # the script did not read its stdin: fine, as in Serf
    finally:
        await anyio.aclose_forcefully(stream)


async def _drain(stream: ByteReceiveStream, ring: _Ring, done: anyio.Event) -> None:
    """Keep the script's output until EOF, then set ``done``."""
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
        async for chunk in stream:
            ring.write(chunk)
    done.set()


async def _warn_slow(script: str) -> None:
    await anyio.sleep(SLOW_AFTER)
    log.warning("agent: Script '%s' slow, execution exceeding %.0fs", script, SLOW_AFTER)


async def _supervise(
    proc: Process,
    script: str,
    stdin_data: bytes,
    ring: _Ring,
    timeout: float | None,
    drain_grace: float,
) -> bool:
    """Feed and drain the script while it runs; True if it had to be stopped for ``timeout``."""
    assert proc.stdin is not None and proc.stdout is not None
    output_done = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_feed, proc.stdin, stdin_data)
        tg.start_soon(_drain, proc.stdout, ring, output_done)
        tg.start_soon(_warn_slow, script)
        with anyio.move_on_after(timeout) as scope:
            await proc.wait()
        if scope.cancelled_caught:
            log.error("agent: Script '%s' timed out after %ss, stopping it", script, timeout)
            await _stop(proc)
        with anyio.move_on_after(drain_grace):
            await output_done.wait()
        if not output_done.is_set():
            log.warning(
                "agent: Script '%s' exited but its output is still open "
                "(a background child?); not waiting for it",
                script,
            )
        tg.cancel_scope.cancel()
    return scope.cancelled_caught


async def invoke_script(
    script: str,
    event: Event,
    self_member: ClusterMember,
    *,
    base_env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    shell: str = "/bin/sh",
    drain_grace: float = 2.0,
) -> InvocationResult:
    """Run ``shell -c script`` for ``event``; log slow runs and failures, never raise for them.

    Only cancellation propagates (after the script's process group is stopped).
    """
    env = build_env(event, self_member, base_env)
    stdin_data = event_stdin(event)
    ring = _Ring(MAX_OUTPUT)
    started = anyio.current_time()
    import subprocess  # here, not at the top: an agent without handlers never needs it

    try:
        proc = await anyio.open_process(
            [shell, "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    except (OSError, ValueError) as exc:
        log.error("agent: Error invoking script '%s': %s", script, exc)
        return InvocationResult(script, None, b"", 0, anyio.current_time() - started)

    try:
        timed_out = await _supervise(proc, script, stdin_data, ring, timeout, drain_grace)
    except BaseException:
        await _stop(proc)
        raise
    finally:
        await _close(proc)

    duration = anyio.current_time() - started
    _log_outcome(script, event, ring, proc.returncode, timed_out)
    return InvocationResult(script, proc.returncode, ring.value(), ring.total, duration, timed_out)


def _log_outcome(script: str, event: Event, ring: _Ring, code: int | None, timed_out: bool) -> None:
    output = ring.value()
    if ring.total > ring.size:
        log.warning(
            "agent: Script '%s' generated %d bytes of output, truncated to %d",
            script,
            ring.total,
            ring.size,
        )
    log.debug(
        "agent: Event '%s' script output: %s",
        event.type.value,
        output.decode("utf-8", "replace"),
    )
    if not timed_out and code != 0:
        reason = f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        log.error("agent: Error invoking script '%s': %s", script, reason)


# --------------------------------------------------------------------------- runner


class HandlerRunner:
    """Runs matching scripts for each event, one at a time, in arrival order, in its own task.

    Serf runs scripts synchronously in its event loop, so one slow script delays everything;
    here the caller only enqueues. Order and one-at-a-time are kept because scripts are written
    for them (for example a join handler followed by a leave handler for the same node).
    """

    def __init__(
        self,
        specs: Sequence[HandlerSpec],
        self_info: Callable[[], ClusterMember],
        *,
        max_queue: int = 1024,
        timeout: float | None = None,
        base_env: Mapping[str, str] | None = None,
        shell: str = "/bin/sh",
        drain_grace: float = 2.0,
        faults: FaultLog | None = None,
    ) -> None:
        if max_queue < 1:
            raise ConfigError(f"max_queue must be at least 1, got {max_queue}")
        if timeout is not None and timeout <= 0:
            raise ConfigError(f"handler timeout must be positive, got {timeout}")
        self._specs = tuple(specs)
        self._self_info = self_info
        self._max_queue = max_queue
        self._timeout = timeout
        self._base_env = base_env
        self._shell = shell
        self._drain_grace = drain_grace
        self._queue_send, self._queue_recv = anyio.create_memory_object_stream[Event](max_queue)
        #: Events discarded because ``max_queue`` events were already waiting.
        self.dropped = 0
        #: Scripts started, scripts that failed (non-zero, signal, not started), timed out.
        self.invocations = 0
        self.failures = 0
        self.timeouts = 0
        #: Queries for which ``respond`` was called.
        self.queries_answered = 0
        self._last_drop_log: float | None = None
        self._started = False
        #: Where a failing run is counted (``handler``): it costs that event, not the runner.
        self.faults = faults if faults is not None else FaultLog(log)

    @property
    def specs(self) -> tuple[HandlerSpec, ...]:
        return self._specs

    @property
    def queued(self) -> int:
        """Events waiting (not counting the one running)."""
        return self._queue_recv.statistics().current_buffer_used

    def update_specs(self, specs: Sequence[HandlerSpec]) -> None:
        """Replace the scripts (SIGHUP reload); takes effect from the next event, as in Serf."""
        self._specs = tuple(specs)

    def _enqueue(self, event: Event) -> None:
        try:
            self._queue_send.send_nowait(event)
        except anyio.WouldBlock:
            oldest = self._queue_recv.receive_nowait()
            self.dropped += 1
            now = anyio.current_time()
            if self._last_drop_log is None or now - self._last_drop_log >= _DROP_LOG_INTERVAL:
                self._last_drop_log = now
                log.warning(
                    "agent: event handlers are %d events behind; dropping the oldest (%s), "
                    "%d dropped so far",
                    self._max_queue,
                    oldest.type.value,
                    self.dropped,
                )
            self._queue_send.send_nowait(event)

    async def run(
        self,
        events: MemoryObjectReceiveStream[Event],
        respond: Callable[[QueryEvent, bytes], Awaitable[None]] | None = None,
    ) -> None:
        """Consume ``events`` until it ends, then finish what is queued and return."""
        if self._started:
            raise RuntimeError("HandlerRunner.run() may only be called once")
        self._started = True
        with self._queue_recv:  # closed once the worker is gone, however run() ends
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._worker, respond)
                with self._queue_send:
                    async for event in events:
                        self._enqueue(event)

    async def _worker(self, respond: Callable[[QueryEvent, bytes], Awaitable[None]] | None) -> None:
        async for event in self._queue_recv:
            with self.faults.boundary("handler"):
                await self._handle(event, respond)

    async def _handle(
        self, event: Event, respond: Callable[[QueryEvent, bytes], Awaitable[None]] | None
    ) -> None:
        specs = [s for s in self._specs if s.matches(event)]
        if not specs:
            return
        try:
            self_member = self._self_info()
        except Exception:  # a bug in the caller must not end all future handler runs
            log.exception("agent: cannot read our own member; skipping handlers for an event")
            self.failures += len(specs)
            return
        answered = False
        for spec in specs:
            self.invocations += 1
            result = await invoke_script(
                spec.script,
                event,
                self_member,
                base_env=self._base_env,
                timeout=self._timeout,
                shell=self._shell,
                drain_grace=self._drain_grace,
            )
            if result.timed_out:
                self.timeouts += 1
            if not result.ok:
                self.failures += 1
                continue
            if isinstance(event, QueryEvent) and result.total_output > 0 and respond:
                if answered:
                    log.debug(
                        "agent: query '%s' already answered; ignoring output of '%s'",
                        event.name,
                        spec.script,
                    )
                    continue
                answered = True
                self.queries_answered += 1
                try:
                    await respond(event, result.output)
                except Exception as exc:  # the caller's problem must not stop handlers
                    log.warning("agent: Failed to respond to query '%s': %s", event.name, exc)
