"""Fault boundaries: one input's failure is counted and logged, never fatal.

An agent handles many independent inputs: a datagram, an inbound stream, the
reply to a stream it opened, a timer, an RPC connection, a handler run, a
snapshot write; lbadapter runs reconcile steps. A bug or an unforeseen
input in one of them must cost that one input, not the process (before this,
one query with an extreme Lamport time ended every agent of a cluster
through an exception in a stream task).

So each such place runs its input inside :meth:`FaultLog.boundary`, which
catches ``Exception`` (never cancellation, a ``BaseException``), counts it
by place (``swimlib info``, ``Agent.statistics()`` and ``lbadapter status``
show the counts), logs the traceback the first time a kind of failure is
seen and then at most once a minute per kind, on one line, saying how many
were not logged, and lets the caller go on. A place that fails several times
in a row and then works again says so. What is truly fatal (cannot bind,
bad configuration) is raised before the boundaries exist, and ends the
process with a clear message.

Exception texts may quote hostile input (a member name with a newline):
they are logged escaped, on one bounded line.
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
#: Kinds whose last log time is remembered (kinds are code locations: few).
_MAX_KINDS = 1024
#: Longest exception text logged.
_MAX_TEXT = 300

Kind = tuple[str, str, str]


def failure_kind(place: str, exc: BaseException) -> Kind:
    """Place, exception type and the innermost frame: what makes two failures alike."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    return place, f"{type(exc).__module__}.{type(exc).__qualname__}", where


def one_line(exc: BaseException) -> str:
    """The exception's text escaped onto one bounded line (newlines as ``\\n``)."""
    text = repr(str(exc))[1:-1]
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."


class FaultLog:
    """Counts failures by place and logs each kind's traceback, rate-limited."""

    def __init__(self, logger: logging.Logger = log,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._clock = clock
        #: Failures by place (``datagram``, ``stream.in``, ``reconcile`` ...), in all.
        self.counts: Counter[str] = Counter()
        #: Consecutive failures by place; cleared when the place works again.
        self.streaks: dict[str, int] = {}
        self._last_logged: dict[Kind, float] = {}
        self._unlogged: Counter[Kind] = Counter()

    @property
    def failing(self) -> bool:
        """Whether some place's latest attempt failed (a caller may retry soon)."""
        return bool(self.streaks)

    @contextmanager
    def boundary(self, place: str) -> Iterator[None]:
        """Run the block; an ``Exception`` it raises is recorded, not propagated."""
        try:
            yield
        except Exception as exc:
            self.record(place, exc)
        else:
            if self.streaks:
                self.succeeded(place)

    def record(self, place: str, exc: BaseException) -> None:
        """Count ``exc`` at ``place`` and log it unless its kind was logged lately."""
        self.counts[place] += 1
        streak = self.streaks[place] = self.streaks.get(place, 0) + 1
        kind = failure_kind(place, exc)
        now = self._clock()
        last = self._last_logged.get(kind)
        if last is not None and now - last < LOG_INTERVAL:
            self._unlogged[kind] += 1
            return
        if len(self._last_logged) >= _MAX_KINDS and last is None:
            self._last_logged.clear()
        self._last_logged[kind] = now
        if last is None:
            self._log.error("internal error in %s (carrying on): %s: %s", place, kind[1],
                            one_line(exc), exc_info=exc)
            return
        self._log.error("internal error in %s still happening (%d in a row, %d in all, "
                        "%d not logged): %s: %s", place, streak, self.counts[place],
                        self._unlogged.pop(kind, 0), kind[1], one_line(exc))

    def succeeded(self, place: str) -> None:
        """``place`` worked: end its streak (saying so after repeated failures)."""
        streak = self.streaks.pop(place, 0)
        if streak > 1:
            self._log.info("%s works again after %d failures in a row", place, streak)

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)
