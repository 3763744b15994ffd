"""Fault boundaries: one input's failure is counted and logged, never fatal.

An agent handles many independent inputs: a datagram, an inbound stream, the
reply to a stream it opened, a timer, an RPC connection, a handler run, a
snapshot write. A bug or an unforeseen input in one of them must cost that
one input, not the process (before this, one query with an extreme Lamport
time ended every agent of a cluster through an exception in a stream task).

So each such place runs its input inside :meth:`FaultLog.boundary`, which
catches ``Exception`` (never trio's cancellation, a ``BaseException``),
counts it by place (``swimlib info`` and ``Agent.statistics()`` show the
counts), logs the traceback the first time a kind of failure is seen and
then at most once a minute per kind with how many were folded, and lets the
caller go on. What is truly fatal (cannot bind, bad configuration) is raised
before the boundaries exist, and ends the process with a clear message.

Used by the agent runtime, the RPC server and the handler runner alike.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger("swimlib")

#: The same kind of failure is logged again at most this often (seconds).
LOG_INTERVAL = 60.0
#: Kinds whose last log time is remembered.
_MAX_KINDS = 1024


def failure_kind(place: str, exc: BaseException) -> tuple[str, str, str]:
    """Place, exception type and the innermost frame: what makes two failures alike."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    return place, type(exc).__name__, where


class FaultLog:
    """Counts failures by place and logs each kind's traceback, rate-limited."""

    def __init__(self, logger: logging.Logger = log,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._clock = clock
        #: Failures by place (``datagram``, ``stream.in``, ``timer`` ...).
        self.counts: Counter[str] = Counter()
        self._last_logged: dict[tuple[str, str, str], float] = {}  # bounded: _MAX_KINDS
        self._folded: Counter[tuple[str, str, str]] = Counter()

    def record(self, place: str, exc: BaseException) -> None:
        """Count ``exc`` at ``place`` and log it unless its kind was logged lately."""
        self.counts[place] += 1
        kind = failure_kind(place, exc)
        now = self._clock()
        last = self._last_logged.get(kind)
        if last is not None and now - last < LOG_INTERVAL:
            self._folded[kind] += 1
            return
        if len(self._last_logged) >= _MAX_KINDS and kind not in self._last_logged:
            self._last_logged.clear()  # kinds are code locations: only a flood of bugs gets here
        self._last_logged[kind] = now
        folded = self._folded.pop(kind, 0)
        more = f" ({folded} more like it since last logged)" if folded else ""
        if last is None:
            self._log.error("agent: internal error in %s, carrying on: %s%s", place,
                            exc, more, exc_info=exc)
        else:
            self._log.error("agent: internal error in %s, carrying on: %r%s", place,
                            exc, more)

    @contextmanager
    def boundary(self, place: str) -> Iterator[None]:
        """Run the block; an ``Exception`` it raises is recorded, not propagated."""
        try:
            yield
        except Exception as exc:
            self.record(place, exc)

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)
