"""Serf's user events: sent, de-duplicated, delivered once, carried in push-pull.

An event is gossiped with its Lamport time and delivered the first time
its (time, name, payload) is seen (:class:`~.dedup.DedupRing`); the ring
also travels in push-pull so a member that missed an event gets it there.
"""

from __future__ import annotations

from collections import Counter

from swimlib.cluster import domains as dom
from swimlib.cluster import events as ev
from swimlib.cluster.clocks import SerfClocks, is_implausible, ltime_problem
from swimlib.cluster.dedup import DedupRing
from swimlib.cluster.effects import ClusterEffect, Emit
from swimlib.config import Config
from swimlib.errors import SwimError
from swimlib.membership.broadcasts import BroadcastQueue
from swimlib.wire import serf as sw

#: Serf's hard cap on user events, whatever the configured limit.
USER_EVENT_HARD_LIMIT = 9 * 1024


class UserEvents:
    """The event clock's ring and gossip queue."""

    def __init__(self, config: Config, clocks: SerfClocks, *, stats: Counter[str],
                 effects: list[ClusterEffect]) -> None:
        self.config = config
        self._clocks = clocks
        self._stats = stats
        self._effects = effects
        self.ring: DedupRing[tuple[str, bytes]] = DedupRing(
            "event", stats, dom.MAX_EVENTS_PER_SLOT, dom.EVENT_RING_BUDGET,
            lambda record: len(record[0]) + len(record[1]), sw.EVENT_BUFFER_SIZE)
        #: Events waiting to be gossiped.
        self.queue = BroadcastQueue()

    def publish(self, name: str, payload: bytes, coalesce: bool, now: float) -> None:
        """Broadcast a user event (``serf event``); size-checked like Serf."""
        problem = dom.event_name_problem(name)
        if problem is not None:
            raise SwimError(f"user event name {name!r} is not allowed ({problem})")
        size = len(name.encode()) + len(payload)
        limit = min(self.config.user_event_size_limit, USER_EVENT_HARD_LIMIT)
        if size > limit:
            raise SwimError(f"user event exceeds limit of {limit} bytes before encoding")
        clock = self._clocks.event
        msg = sw.UserEvent(clock.time(), name, payload, coalesce)
        raw = sw.encode_serf(msg)
        if len(raw) > limit:
            raise SwimError(f"user event exceeds limit of {limit} bytes after encoding")
        clock.increment()
        self.receive(msg, now)
        self.queue.queue(None, raw)

    def problem(self, msg: sw.UserEvent, trusted: bool = False) -> str | None:
        """Why a received event is refused (None: accepted); ``trusted`` as in :mod:`.clocks`."""
        if len(msg.name.encode("utf-8", "surrogateescape")) + len(
                msg.payload) > dom.MAX_USER_EVENT_BYTES:
            return "event_too_large"
        return (dom.event_name_problem(msg.name)
                or ltime_problem(self._clocks.event, msg.ltime, "event", trusted))

    def receive(self, msg: sw.UserEvent, now: float) -> bool:
        """Deliver an event the first time it is seen; True if it was news."""
        self._clocks.event.witness(msg.ltime)
        if msg.ltime < self._clocks.event_min_time:
            return False
        if not self.ring.add(msg.ltime, (msg.name, msg.payload)):
            return False
        self._stats["serf.events"] += 1  # serf.events: a new event delivered
        self._effects.append(Emit(ev.UserEvent(msg.ltime, msg.name, msg.payload, msg.cc)))
        return True

    def ring_for_push_pull(self) -> tuple[sw.EventSlot | None, ...]:
        return tuple(None if slot is None else sw.EventSlot(
            slot[0], tuple(sw.EventRecord(n, p) for n, p in slot[1]))
            for slot in self.ring.slots())

    def merge(self, slots: tuple[sw.EventSlot | None, ...], ignore_old: bool, trusted: bool,
              now: float) -> bool:
        """A peer's ring: deliver what we missed. True if a time was refused as implausible.

        Joining with "ignore old", the events the peer holds are history:
        remembered as seen, not delivered. Serf instead drops every event
        older than the peer's event clock, which one forged push-pull or one
        event that was never gossiped can move past everyone else's: their
        next events were then dropped for good (tests/unit/test_hostile_repros.py).
        """
        refused = False
        for slot in slots:
            if slot is None:
                continue
            for record in slot.events:
                event = sw.UserEvent(slot.ltime, record.name, record.payload)
                problem = self.problem(event, trusted)
                if problem is not None:
                    self._stats["drop.serf." + problem] += 1
                    refused = refused or is_implausible(problem)
                elif ignore_old:
                    self._clocks.event.witness(event.ltime)
                    self.ring.add(event.ltime, (event.name, event.payload))
                else:
                    self.receive(event, now)
        return refused
