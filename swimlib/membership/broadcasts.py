"""Transmit-limited broadcast queue (memberlist ``TransmitLimitedQueue``).

Each queued message is sent ``retransmit_mult * ceil(log10(n + 1))`` times.
Selection for a packet: fewest transmissions first; within a tier, the
largest message that still fits, newest among equals. A message keyed by a
node name replaces any queued message about the same node, so stale news
about a node is never sent after fresher news.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable


def retransmit_limit(retransmit_mult: int, n: int) -> int:
    """How many times each broadcast is sent in a cluster of ``n`` nodes."""
    return retransmit_mult * math.ceil(math.log10(n + 1))


def _order(item: _Item) -> tuple[int, int]:
    """Sort key within a tier: largest first, newest first among equals."""
    return (-len(item.data), -item.id)


class _Item:
    __slots__ = ("data", "id", "key", "on_done", "transmits")

    def __init__(self, key: str | None, data: bytes, item_id: int,
                 on_done: Callable[[], None] | None) -> None:
        self.key = key
        self.data = data
        self.id = item_id
        self.transmits = 0
        self.on_done = on_done


class BroadcastQueue:
    """Messages waiting to be piggybacked or gossiped, with per-message send budgets."""

    __slots__ = ("_by_key", "_next_id", "_tiers")

    def __init__(self) -> None:
        # tier (transmit count) -> items sorted by (len desc, id desc)
        self._tiers: dict[int, list[_Item]] = {}
        self._by_key: dict[str, _Item] = {}
        self._next_id = 0

    def __len__(self) -> int:
        return sum(len(t) for t in self._tiers.values())

    def __bool__(self) -> bool:
        return bool(self._tiers)

    def queue(self, key: str | None, data: bytes,
              on_done: Callable[[], None] | None = None) -> None:
        """Add a message; one with the same ``key`` replaces the queued one."""
        if key is not None:
            old = self._by_key.pop(key, None)
            if old is not None:
                self._remove(old)
                if old.on_done is not None:
                    old.on_done()
        self._next_id += 1
        item = _Item(key, data, self._next_id, on_done)
        if key is not None:
            self._by_key[key] = item
        self._insert(item)

    def take(self, overhead: int, limit: int, transmit_limit: int) -> list[bytes]:
        """Messages that fit in ``limit`` bytes (each costing ``overhead`` extra)."""
        if not self._tiers:
            return []
        used = 0
        out: list[bytes] = []
        reinsert: list[_Item] = []
        for tier in sorted(self._tiers):
            items = self._tiers.get(tier)
            while items:
                free = limit - used - overhead
                if free <= 0:
                    break
                # Items are sorted largest first: binary-search the largest that fits.
                pos = bisect.bisect_left(items, (-free, -(1 << 62)), key=_order)
                if pos >= len(items):
                    break
                pick = items.pop(pos)
                used += overhead + len(pick.data)
                out.append(pick.data)
                pick.transmits += 1
                if pick.transmits >= transmit_limit:
                    self._forget(pick)
                else:
                    reinsert.append(pick)
            if items is not None and not items:
                del self._tiers[tier]
            if limit - used - overhead <= 0:
                break
        for item in reinsert:
            self._insert(item)
        return out

    def prune(self, max_retain: int) -> int:
        """Drop the oldest messages beyond ``max_retain``; returns how many were dropped."""
        items = sorted((i for tier in self._tiers.values() for i in tier), key=lambda i: i.id)
        excess = len(items) - max_retain
        for item in items[:max(0, excess)]:
            self._remove(item)
            self._forget(item)
        return max(0, excess)

    def pending_for(self, key: str) -> bool:
        """Whether a message about ``key`` is still queued."""
        return key in self._by_key

    def _insert(self, item: _Item) -> None:
        bisect.insort(self._tiers.setdefault(item.transmits, []), item, key=_order)

    def _remove(self, item: _Item) -> None:
        tier = self._tiers.get(item.transmits)
        if tier is not None:
            pos = bisect.bisect_left(tier, _order(item), key=_order)
            if pos < len(tier) and tier[pos] is item:
                del tier[pos]
            if not tier:
                del self._tiers[item.transmits]

    def _forget(self, item: _Item) -> None:
        if item.key is not None and self._by_key.get(item.key) is item:
            del self._by_key[item.key]
        if item.on_done is not None:
            item.on_done()
