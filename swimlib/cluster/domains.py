"""What the Serf layer accepts from the network, and what it does at the edges.

Serf's Lamport clocks are uint64 and every received time is witnessed: one
message at ``2^64-1`` pushes a clock to ``2^64``, which no longer fits
(Go wraps it to 0 and the node's events and intents go backwards; we used to
crash encoding it). Up to :data:`LTIME_FREE_LIMIT` (half the range) every
time is witnessed as Serf does, so a fresh node joining an old cluster,
and halves of a long partition, catch up in one step. Beyond it a time may
be at most :data:`LTIME_STEP` past ``max(our clock, the free limit)``:
reaching the end of the range then takes 2^31 accepted messages, not one,
while a node whose clock is low still follows a cluster an attack moved
just past the limit. Clocks saturate at the top rather than wrap
(:func:`saturating_add`).

A clock that jumped forward must not silence everyone else. Serf drops an
event or query older than ``clock - 512`` because its de-duplication ring
can no longer tell whether it was seen; after one forged jump that is every
honest message. The ring can tell, slot by slot (:func:`ring_verdict`): an
old message is only refused when its own slot has been reused.

The rest bounds what one message can make us hold or send: pending queries,
records per ring slot, intents about unknown members, query timeouts and
relay factors, reply addresses that do not belong to the query's sender,
and tag-filter regular expressions evaluated in linear time (RE2, as Go).
"""

from __future__ import annotations

import enum
from functools import lru_cache
from typing import Any

#: Lamport times are uint64 on the wire.
LTIME_MAX = 0xFFFFFFFFFFFFFFFF
#: Any time up to this may be witnessed (Serf's behaviour, unchanged).
LTIME_FREE_LIMIT = 1 << 63
#: Above the free limit, a time may move a clock by at most this.
LTIME_STEP = 1 << 32

#: A query's timeout may ask us to keep it open at most this long (seconds).
QUERY_TIMEOUT_MAX = 3600.0
#: Responses we relay through other members per query (Serf allows 255).
RELAY_FACTOR_MAX = 5
#: Queries from others we keep open at once (oldest forgotten first).
MAX_PENDING_QUERIES = 1024
#: Distinct user events (or queries) remembered per Lamport time.
MAX_EVENTS_PER_SLOT = 128
#: Bytes of names and payloads the user-event ring may hold (it travels in push-pull).
EVENT_RING_BUDGET = 4 * 1024 * 1024
#: Largest user event accepted, name and payload (Serf's hard limit on sending).
MAX_USER_EVENT_BYTES = 9 * 1024
#: Failed and left members remembered (Serf: each for 24 h; they travel in push-pull).
MAX_GONE_MEMBERS = 4096
#: Intents about members memberlist has not told us of yet.
MAX_RECENT_INTENTS = 8192
#: Longest user-event or query name, in bytes (Serf's size limits are smaller).
MAX_EVENT_NAME_BYTES = 1024


def plausible_ltime(clock: int, claimed: int) -> bool:
    """Whether a clock at ``clock`` may witness ``claimed``:
    ``claimed <= max(clock, 2^63) + 2^32``."""
    return claimed <= max(clock, LTIME_FREE_LIMIT) + LTIME_STEP


def saturating_add(value: int, delta: int = 1) -> int:
    """``value + delta``, stopping at :data:`LTIME_MAX` instead of wrapping."""
    return min(value + delta, LTIME_MAX)


class Seen(enum.Enum):
    """What a de-duplication ring slot says about a message's Lamport time."""

    NEW_SLOT = "new"  #: the slot is empty or holds an older time: (re)use it
    SAME_SLOT = "same"  #: the slot holds this time: compare with its records
    TOO_OLD = "too_old"  #: the slot holds a newer time: we cannot tell, refuse


def ring_verdict(slot_ltime: int | None, ltime: int) -> Seen:
    """Serf's ring, judged by the slot rather than by distance from the clock.

    A message with Lamport time ``t`` lives in slot ``t % 512``; once seen,
    the slot holds ``t`` until a newer time reuses it. So a slot holding an
    older time (or nothing) proves ``t`` was never seen, and one holding a
    newer time means we can no longer tell. Within Serf's window the two
    rules agree; past it, only messages whose slot was reused are lost.
    """
    if slot_ltime is None or slot_ltime < ltime:
        return Seen.NEW_SLOT
    if slot_ltime == ltime:
        return Seen.SAME_SLOT
    return Seen.TOO_OLD


def query_timeout_problem(timeout_ns: int) -> str | None:
    """A query must give us a non-negative time to answer (Serf always does)."""
    return "query_timeout" if timeout_ns < 0 else None


def query_timeout_seconds(timeout_ns: int) -> float:
    """The query's timeout in seconds, capped at :data:`QUERY_TIMEOUT_MAX`."""
    return min(timeout_ns / 1e9, QUERY_TIMEOUT_MAX)


def event_name_problem(name: str) -> str | None:
    """User-event and query names reach logs and handler environments."""
    if len(name.encode("utf-8", "surrogateescape")) > MAX_EVENT_NAME_BYTES:
        return "event_name_long"
    if any(c < " " or c == "\x7f" for c in name):
        return "event_name_control"
    return None


@lru_cache(maxsize=256)
def compile_tag_filter(expr: str) -> Any | None:
    """A query tag filter, compiled as Go does (RE2: linear time, no backtracking).

    Python's ``re`` backtracks: ``(a+)+$`` against forty ``a``s and a ``!``
    would stall the agent for hours on one packet. ``None`` when RE2 cannot
    compile it; such a filter never matches, as in Serf.
    """
    import re2  # google-re2; imported on first use

    options = re2.Options()
    options.log_errors = False  # hostile patterns must not flood stderr
    try:
        return re2.compile(expr.encode("utf-8", "surrogateescape"), options)
    except re2.error:
        return None


def tag_filter_matches(expr: str, value: str) -> bool:
    pattern = compile_tag_filter(expr)
    return pattern is not None and pattern.search(go_text_bytes(value)) is not None


def go_text_bytes(text: str) -> bytes:
    """``text`` as Go's regexp reads it: UTF-8, each invalid byte as U+FFFD.

    Our strings carry bytes that are not UTF-8 as lone surrogates
    (``surrogateescape``); RE2 would refuse to match them at all.
    """
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogateescape")
        return raw.decode("utf-8", "replace").encode("utf-8")
