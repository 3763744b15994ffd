"""Serf's de-duplication ring, one for user events and one for queries.

Gossip delivers each message several times; Serf remembers what it saw per
Lamport time in a ring of 512 slots (slot ``ltime % 512``) and hands a
message on only the first time. The user-event ring also travels in
push-pull, so a member that missed an event gets it from a peer.

Three departures from Serf, each for an input Serf cannot live with:

* A message is judged by its own slot, not by its distance from the clock
  (:func:`~swimlib.cluster.domains.ring_verdict`): one forged jump of the
  clock must not make every honest message "too old".
* A slot keeps at most ``per_slot`` records, oldest forgotten first, and
  the whole ring at most ``budget`` bytes, oldest slots forgotten first.
  Serf keeps whatever arrives: distinct junk at one Lamport time grows a
  slot without bound, and a ring too big for a push-pull stops anti-entropy.
  A forgotten message that comes round again is handed on again; that only
  happens under such a flood, and a duplicate is better than a silenced
  cluster.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

from swimlib.cluster.domains import Seen, ring_verdict

R = TypeVar("R", bound=Hashable)

#: Serf's ring length (its ``EventBuffer`` / ``QueryBuffer``).
RING_SIZE = 512


class _Slot(Generic[R]):
    __slots__ = ("cost", "ltime", "records")

    def __init__(self, ltime: int) -> None:
        self.ltime = ltime
        self.records: list[R] = []
        self.cost = 0


class DedupRing(Generic[R]):
    """Which (Lamport time, record) pairs were seen; bounded in count and bytes.

    Counts ``<kind>.too_old``, ``<kind>.records_forgotten`` and
    ``<kind>.slots_forgotten`` into ``stats``.
    """

    def __init__(self, kind: str, stats: Counter[str], per_slot: int,
                 budget: int | None = None, cost: Callable[[R], int] = lambda _: 0,
                 size: int = RING_SIZE) -> None:
        self._slots: list[_Slot[R] | None] = [None] * size
        self._per_slot = per_slot
        self._budget = budget
        self._cost = cost
        self._bytes = 0
        self._stats = stats
        self._too_old = f"{kind}.too_old"
        self._records_forgotten = f"{kind}.records_forgotten"
        self._slots_forgotten = f"{kind}.slots_forgotten"

    @property
    def size(self) -> int:
        return len(self._slots)

    def add(self, ltime: int, record: R) -> bool:
        """Remember ``record`` at ``ltime``; True the first time (hand it on)."""
        idx = ltime % len(self._slots)
        slot = self._slots[idx]
        verdict = ring_verdict(None if slot is None else slot.ltime, ltime)
        if verdict is Seen.TOO_OLD:
            self._stats[self._too_old] += 1
            return False
        if verdict is Seen.SAME_SLOT:
            assert slot is not None
            if record in slot.records:
                return False
            if len(slot.records) >= self._per_slot:
                self._forget_record(slot)
        else:
            if slot is not None:
                self._bytes -= slot.cost
            slot = self._slots[idx] = _Slot(ltime)
        cost = self._cost(record)
        slot.records.append(record)
        slot.cost += cost
        self._bytes += cost
        if self._budget is not None:
            while self._bytes > self._budget and self._forget_oldest_slot(keep=idx):
                pass
        return True

    def slots(self) -> Iterator[tuple[int, list[R]] | None]:
        """Every slot in ring order: ``(ltime, records)``, or None when empty."""
        for slot in self._slots:
            yield None if slot is None else (slot.ltime, list(slot.records))

    def _forget_record(self, slot: _Slot[R]) -> None:
        cost = self._cost(slot.records.pop(0))
        slot.cost -= cost
        self._bytes -= cost
        self._stats[self._records_forgotten] += 1

    def _forget_oldest_slot(self, keep: int) -> bool:
        candidates = [(s.ltime, i) for i, s in enumerate(self._slots)
                      if s is not None and i != keep]
        if not candidates:
            return False
        _, idx = min(candidates)
        slot = self._slots[idx]
        assert slot is not None
        self._bytes -= slot.cost
        self._slots[idx] = None
        self._stats[self._slots_forgotten] += 1
        return True
