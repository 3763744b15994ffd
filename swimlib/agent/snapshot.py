"""Serf's ``-snapshot`` file: remember members and Lamport clocks across restarts.

The format is Serf's (``serf/snapshot.go``), so a file written here can be handed to a real
``serf agent`` and back. One line per fact, appended as it happens::

    alive: <name> <ip:port>      member joined (Serf: join candidate)
    not-alive: <name>            member left or failed (Serf: forget it)
    clock: N                     member Lamport clock - 1
    event-clock: N               last user-event LTime seen
    query-clock: N               last query LTime seen
    leave                        we left; replay forgets everything (unless rejoin-after-leave)
    # ...                        comment, ignored (also legacy ``coordinate: ...``)

Improvement over Serf (serf#333): Serf forgets failed members, so a node that saw everyone fail
(its own network died) restarts knowing nobody. We also remember failed members as rejoin
candidates, tried after the alive ones, newest failure first. They are stored as comment lines
``# failed: <name> <ip:port>`` right after Serf's ``not-alive:`` line: Serf skips ``#`` lines
silently (unknown lines it would log as warnings), so a real Serf reading our file sees exactly
its own semantics. A later ``alive:``/``not-alive:`` for the name (rejoin, leave, or our
``not-alive:`` on member-reap) clears the candidate; at most ``max_failed`` are kept.
Checked against serf 0.9.4: it replays such a file without a warning and re-joins only the
alive members (tests/integration/test_handler_scripts.py).

Writing follows Serf: lines are buffered and written once >= 500 ms passed since the previous
write (and on :meth:`Snapshotter.tick`, leave and close, which Serf lacks: its buffer waits for
the next line); the file is compacted into ``<path>.compact``, fsynced and renamed over the
original once it exceeds ``max(min_compact_size, 2 * 128 B * remembered nodes)``. All timing
decisions take ``now`` (seconds, any monotonic clock), so tests are deterministic; only
:class:`FileStore` touches the filesystem. Bad lines are counted, logged (first few) and
skipped; a truncated last line (crash mid-write) is skipped like Serf does. Write errors are
logged and counted and recovered by a compaction attempt at most every 30 s.

Other small differences from Serf, each to keep the file meaning what it says: the compaction
threshold counts failed candidates too (else a compacted file could exceed it at once);
compaction after a leave keeps the ``leave`` line (Serf drops it, so whether a replay resets
the clocks would depend on when compaction ran); members whose name contains a newline are
not recorded (Serf writes them and corrupts the line structure); a failed compaction is
retried after 30 s, not on every line.

How to use the replay (as Serf does): ``clock.witness(replay.last_clock)``, accept user events
only above ``replay.last_event_clock`` and queries above ``replay.last_query_clock``, and join
``replay.rejoin_candidates(rng, exclude={own_name})`` one at a time until one succeeds.

Public API::

    FLUSH_INTERVAL = 0.5; MIN_COMPACT_SIZE = 128 * 1024; BYTES_PER_NODE = 128; MAX_FAILED = 256
    @record class PreviousNode(name: str, addr: str)          # addr "ip:port"
    @record class SnapshotReplay(alive, failed: tuple[PreviousNode, ...], last_clock,
            last_event_clock, last_query_clock, bad_lines: int)
        .rejoin_candidates(rng: random.Random, exclude: Collection[str] = ()) -> list[PreviousNode]
    parse_snapshot(text: str, *, rejoin_after_leave=False, max_failed=MAX_FAILED) -> SnapshotReplay
    read_snapshot(path, *, rejoin_after_leave=False) -> SnapshotReplay   # missing file: empty
    class SnapshotStore(Protocol): read() -> bytes; size() -> int; write(data: bytes);
            sync(); replace(data: bytes); close()
    class FileStore(path)                                   # the only filesystem code
    class Snapshotter(store: SnapshotStore, *, rejoin_after_leave=False,
            min_compact_size=MIN_COMPACT_SIZE, max_failed=MAX_FAILED)
        @classmethod open(path, **same keywords) -> Snapshotter
        .replay: SnapshotReplay; .alive, .failed -> dict[str, str]; max_size() -> int
        .last_clock, .last_event_clock, .last_query_clock: int    # as written so far
        record(event: Event, now: float, clock: int | None = None)
        update_clock(clock: int, now: float); tick(now: float, clock: int | None = None)
        leave(now: float); close(now: float, clock: int | None = None)
        counters: write_errors, compactions, skipped_names

The methods are synchronous and cheap except compaction and the fsync in leave/close; an async
agent may call those through ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
from collections.abc import Collection
from pathlib import Path
from typing import Protocol

from swimlib.agent.addresses import member_address
from swimlib.cluster.events import (
    ClusterMember,
    Event,
    EventType,
    MemberEvent,
    QueryEvent,
    UserEvent,
)
from swimlib.records import record

__all__ = [
    "BYTES_PER_NODE",
    "FLUSH_INTERVAL",
    "MAX_FAILED",
    "MIN_COMPACT_SIZE",
    "FileStore",
    "PreviousNode",
    "SnapshotReplay",
    "SnapshotStore",
    "Snapshotter",
    "parse_snapshot",
    "read_snapshot",
]

log = logging.getLogger(__name__)

#: Seconds between writes of buffered lines (Serf's ``flushInterval``).
FLUSH_INTERVAL = 0.5
#: Smallest size that triggers compaction (Serf agent's default ``minCompactSize``).
MIN_COMPACT_SIZE = 128 * 1024
#: Estimated bytes per remembered node; compaction once the file is twice the estimate.
BYTES_PER_NODE = 128
#: Failed members remembered as rejoin candidates (oldest forgotten first).
MAX_FAILED = 256
#: Seconds between compaction attempts after a write error (Serf's recovery interval).
ERROR_RECOVERY_INTERVAL = 30.0

_FAILED_PREFIX = "# failed: "
_CLOCK_PREFIXES = {"clock: ": "clock", "event-clock: ": "event", "query-clock: ": "query"}
_UINT = re.compile(r"[0-9]+")
_MAX_UINT64 = 2**64 - 1
_LOGGED_BAD_LINES = 5


@record
class PreviousNode:
    """A remembered member: name and ``ip:port`` to join."""

    name: str
    addr: str


@record
class SnapshotReplay:
    """What a snapshot file says: remembered members and the last clocks."""

    #: Members alive when last seen, in file order.
    alive: tuple[PreviousNode, ...] = ()
    #: Members failed (not left) when last seen, newest failure first; never also in ``alive``.
    failed: tuple[PreviousNode, ...] = ()
    last_clock: int = 0
    last_event_clock: int = 0
    last_query_clock: int = 0
    #: Lines skipped as unparseable.
    bad_lines: int = 0

    def rejoin_candidates(
        self, rng: random.Random, exclude: Collection[str] = ()
    ) -> list[PreviousNode]:
        """Alive members in random order (Serf: avoids hot spots), then failed, newest first."""
        alive = [n for n in self.alive if n.name not in exclude]
        rng.shuffle(alive)
        return alive + [n for n in self.failed if n.name not in exclude]


def _valid_addr(addr: str) -> bool:
    host, sep, port = addr.rpartition(":")
    return bool(sep and host and _UINT.fullmatch(port) and int(port) <= 65535)


def parse_snapshot(
    text: str, *, rejoin_after_leave: bool = False, max_failed: int = MAX_FAILED
) -> SnapshotReplay:
    """Replay a snapshot's text as Serf does, plus our ``# failed:`` memory. Never raises."""
    alive: dict[str, str] = {}
    failed: dict[str, str] = {}
    clocks = {"clock": 0, "event": 0, "query": 0}
    bad = 0

    def skip(line: str, why: str) -> None:
        nonlocal bad
        bad += 1
        if bad <= _LOGGED_BAD_LINES:
            log.warning("snapshot: skipping bad line (%s): %r", why, line[:200])

    lines = text.split("\n")
    if lines[-1]:
        skip(lines[-1], "truncated last line")
    for line in lines[:-1]:
        if line.startswith("alive: "):
            name, sep, addr = line[len("alive: ") :].rpartition(" ")
            if not sep or not _valid_addr(addr):
                skip(line, "address")
                continue
            alive[name] = addr
            failed.pop(name, None)
        elif line.startswith("not-alive: "):
            name = line[len("not-alive: ") :]
            alive.pop(name, None)
            failed.pop(name, None)
        elif line.startswith(_FAILED_PREFIX):
            name, sep, addr = line[len(_FAILED_PREFIX) :].rpartition(" ")
            if not sep or not _valid_addr(addr):
                skip(line, "address")
                continue
            alive.pop(name, None)
            failed.pop(name, None)
            failed[name] = addr
            while len(failed) > max_failed:
                del failed[next(iter(failed))]
        elif line == "leave":
            if rejoin_after_leave:
                continue
            alive.clear()
            failed.clear()
            clocks = dict.fromkeys(clocks, 0)
        elif line.startswith("#") or line.startswith("coordinate: "):
            continue
        else:
            for prefix, key in _CLOCK_PREFIXES.items():
                if line.startswith(prefix):
                    value = line[len(prefix) :]
                    if _UINT.fullmatch(value) and int(value) <= _MAX_UINT64:
                        clocks[key] = int(value)
                    else:
                        skip(line, "clock value")
                    break
            else:
                skip(line, "unrecognized")
    if bad > _LOGGED_BAD_LINES:
        log.warning("snapshot: skipped %d bad lines in total", bad)
    return SnapshotReplay(
        alive=tuple(PreviousNode(n, a) for n, a in alive.items()),
        failed=tuple(PreviousNode(n, a) for n, a in reversed(failed.items())),
        last_clock=clocks["clock"],
        last_event_clock=clocks["event"],
        last_query_clock=clocks["query"],
        bad_lines=bad,
    )


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def read_snapshot(
    path: str | os.PathLike[str], *, rejoin_after_leave: bool = False
) -> SnapshotReplay:
    """Replay a file without opening it for writing (missing file: nothing remembered)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return SnapshotReplay()
    return parse_snapshot(_decode(data), rejoin_after_leave=rejoin_after_leave)


# --------------------------------------------------------------------------- storage


class SnapshotStore(Protocol):
    """Where snapshot bytes go; :class:`FileStore` in production, a fake in tests."""

    def read(self) -> bytes: ...
    def size(self) -> int: ...
    def write(self, data: bytes) -> None: ...
    def sync(self) -> None: ...
    def replace(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class FileStore:
    """Append-only file plus atomic replacement through ``<path>.compact``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.compact_path = self.path.with_name(self.path.name + ".compact")
        self._fd: int | None = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)

    def _require_fd(self) -> int:
        if self._fd is None:
            self._fd = self._open()  # a failed replace left it closed: try again
        return self._fd

    def read(self) -> bytes:
        return self.path.read_bytes()

    def size(self) -> int:
        return os.fstat(self._require_fd()).st_size

    def write(self, data: bytes) -> None:
        fd = self._require_fd()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    def sync(self) -> None:
        os.fsync(self._require_fd())

    def replace(self, data: bytes) -> None:
        """Write ``data`` to ``<path>.compact``, fsync, rename over the file, fsync the dir."""
        fd = os.open(self.compact_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self.compact_path, self.path)
        with contextlib.suppress(OSError):  # best effort: not all filesystems allow it
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        old, self._fd = self._fd, None
        if old is not None:
            os.close(old)
        self._fd = self._open()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# --------------------------------------------------------------------------- writer


def _member_addr(member: ClusterMember) -> str:
    return member_address(member.addr, member.port)


class Snapshotter:
    """Appends member and clock facts to a snapshot; compacts it; replays it at open."""

    def __init__(
        self,
        store: SnapshotStore,
        *,
        rejoin_after_leave: bool = False,
        min_compact_size: int = MIN_COMPACT_SIZE,
        max_failed: int = MAX_FAILED,
    ) -> None:
        self._store = store
        self._rejoin_after_leave = rejoin_after_leave
        self._min_compact_size = min_compact_size
        self._max_failed = max_failed
        #: What the file said when we opened it.
        self.replay = parse_snapshot(
            _decode(store.read()), rejoin_after_leave=rejoin_after_leave, max_failed=max_failed
        )
        self._alive = {n.name: n.addr for n in self.replay.alive}
        # Oldest failure first (insertion order), the reverse of replay.failed.
        self._failed = {n.name: n.addr for n in reversed(self.replay.failed)}
        self.last_clock = self.replay.last_clock
        self.last_event_clock = self.replay.last_event_clock
        self.last_query_clock = self.replay.last_query_clock
        self._offset = store.size()
        self._pending: list[bytes] = []
        self._last_flush: float | None = None
        self._last_recovery: float | None = None
        self._last_compact_failure: float | None = None
        self._leaving = False
        self._closed = False
        self.write_errors = 0
        self.compactions = 0
        #: Members not recorded because a newline in the name would corrupt the file.
        self.skipped_names = 0

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        rejoin_after_leave: bool = False,
        min_compact_size: int = MIN_COMPACT_SIZE,
        max_failed: int = MAX_FAILED,
    ) -> Snapshotter:
        """Open (create) ``path``, replay it, and append from its end."""
        return cls(
            FileStore(path),
            rejoin_after_leave=rejoin_after_leave,
            min_compact_size=min_compact_size,
            max_failed=max_failed,
        )

    @property
    def alive(self) -> dict[str, str]:
        return dict(self._alive)

    @property
    def failed(self) -> dict[str, str]:
        """Failed members remembered, oldest failure first."""
        return dict(self._failed)

    def max_size(self) -> int:
        """Size above which the file is compacted."""
        nodes = len(self._alive) + len(self._failed)
        return max(self._min_compact_size, 2 * BYTES_PER_NODE * nodes)

    # ----------------------------------------------------------------- events

    def record(self, event: Event, now: float, clock: int | None = None) -> None:
        """Record what a member, user or query event means for the snapshot (nothing after leave).

        ``clock`` is the member Lamport clock's current value, recorded after member events.
        """
        if self._leaving or self._closed:
            return
        if isinstance(event, MemberEvent):
            self._member_event(event, now)
            if clock is not None:
                self.update_clock(clock, now)
        elif isinstance(event, UserEvent):
            if event.ltime > self.last_event_clock:
                self.last_event_clock = event.ltime
                self._append(f"event-clock: {event.ltime}\n", now)
        elif isinstance(event, QueryEvent) and event.ltime > self.last_query_clock:
            self.last_query_clock = event.ltime
            self._append(f"query-clock: {event.ltime}\n", now)

    def _member_event(self, event: MemberEvent, now: float) -> None:
        for member in event.members:
            name = member.name
            if "\n" in name:
                self.skipped_names += 1
                log.warning("snapshot: not recording member with a newline in its name: %r", name)
                continue
            if event.type is EventType.MEMBER_JOIN:
                addr = _member_addr(member)
                self._alive[name] = addr
                self._failed.pop(name, None)
                self._append(f"alive: {name} {addr}\n", now)
            elif event.type is EventType.MEMBER_UPDATE and name in self._alive:
                # Serf ignores updates; a member that moved (restarted elsewhere)
                # is rejoined at its new address, so record it (a later line wins).
                addr = _member_addr(member)
                if self._alive[name] != addr:
                    self._alive[name] = addr
                    self._append(f"alive: {name} {addr}\n", now)
            elif event.type is EventType.MEMBER_LEAVE:
                self._alive.pop(name, None)
                self._failed.pop(name, None)
                self._append(f"not-alive: {name}\n", now)
            elif event.type is EventType.MEMBER_FAILED:
                addr = _member_addr(member)
                self._alive.pop(name, None)
                self._failed.pop(name, None)
                self._failed[name] = addr
                while len(self._failed) > self._max_failed:
                    del self._failed[next(iter(self._failed))]
                self._append(f"not-alive: {name}\n{_FAILED_PREFIX}{name} {addr}\n", now)
            elif event.type is EventType.MEMBER_REAP and name in self._failed:
                # Serf gave up on it (reconnect timeout): so do we. Harmless to Serf.
                del self._failed[name]
                self._append(f"not-alive: {name}\n", now)

    def update_clock(self, clock: int, now: float) -> None:
        """Record the member clock as ``clock - 1`` when it moved (Serf's ``updateClock``)."""
        if self._closed:
            return
        last_seen = clock - 1
        if last_seen > self.last_clock:
            self.last_clock = last_seen
            self._append(f"clock: {last_seen}\n", now)

    def tick(self, now: float, clock: int | None = None) -> None:
        """Periodic (every :data:`FLUSH_INTERVAL`): record the clock, write lines that waited."""
        if self._closed:
            return
        if clock is not None:
            self.update_clock(clock, now)
        if self._pending and self._flush_due(now):
            self._flush(now)

    def leave(self, now: float) -> None:
        """We left: forget members (unless rejoin-after-leave), write ``leave``, fsync."""
        if self._closed:
            return
        self._leaving = True
        if not self._rejoin_after_leave:
            self._alive.clear()
            self._failed.clear()
        self._append("leave\n", now)
        self._flush(now, sync=True)

    def close(self, now: float, clock: int | None = None) -> None:
        """Shutdown: record the clock, write everything, fsync, close. Idempotent."""
        if self._closed:
            return
        if clock is not None:
            self.update_clock(clock, now)
        self._flush(now, sync=True)
        self._closed = True
        try:
            self._store.close()
        except OSError as exc:
            self._error("close", exc, now)

    # ----------------------------------------------------------------- file

    def _flush_due(self, now: float) -> bool:
        return self._last_flush is None or now - self._last_flush >= FLUSH_INTERVAL

    def _append(self, text: str, now: float) -> None:
        data = _encode(text)
        self._pending.append(data)
        self._offset += len(data)
        if self._flush_due(now):
            self._flush(now)
        if self._offset > self.max_size() and self._compaction_allowed(now):
            self._compact(now)

    def _compaction_allowed(self, now: float) -> bool:
        """After a failed compaction, wait before the next try instead of retrying per line."""
        failed_at = self._last_compact_failure
        return failed_at is None or now - failed_at >= ERROR_RECOVERY_INTERVAL

    def _flush(self, now: float, sync: bool = False) -> None:
        self._last_flush = now
        data, self._pending = b"".join(self._pending), []
        try:
            if data:
                self._store.write(data)
            if sync:
                self._store.sync()
        except OSError as exc:
            # The lines are lost from the file but not from memory: compaction rewrites them.
            self._error("write", exc, now)

    def _compact(self, now: float) -> None:
        data = _encode(self._compacted_text())
        try:
            self._store.replace(data)
        except OSError as exc:
            self._last_compact_failure = now
            self._error("compact", exc, now, recover=False)
            return
        self._last_compact_failure = None
        self.compactions += 1
        self._pending = []
        self._offset = len(data)
        self._last_flush = now

    def _compacted_text(self) -> str:
        lines = [f"alive: {n} {a}\n" for n, a in self._alive.items()]
        lines += [f"{_FAILED_PREFIX}{n} {a}\n" for n, a in self._failed.items()]
        lines.append(f"clock: {self.last_clock}\n")
        lines.append(f"event-clock: {self.last_event_clock}\n")
        lines.append(f"query-clock: {self.last_query_clock}\n")
        if self._leaving:
            lines.append("leave\n")  # Serf drops it here; keep it so replay still forgets
        return "".join(lines)

    def _error(self, what: str, exc: OSError, now: float, recover: bool = True) -> None:
        self.write_errors += 1
        log.error("snapshot: %s failed: %s", what, exc)
        if not recover or self._closed:
            return
        if self._last_recovery is None or now - self._last_recovery >= ERROR_RECOVERY_INTERVAL:
            self._last_recovery = now
            log.info("snapshot: attempting compaction to recover from the error")
            self._compact(now)
