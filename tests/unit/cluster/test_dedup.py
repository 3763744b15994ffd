"""Serf's de-duplication ring with our bounds (swimlib.cluster.dedup)."""

from __future__ import annotations

from collections import Counter

from swimlib.cluster.dedup import DedupRing


def ring(per_slot: int = 4, budget: int | None = None) -> tuple[DedupRing[str], Counter[str]]:
    stats: Counter[str] = Counter()
    return DedupRing("event", stats, per_slot, budget, len, size=8), stats


def test_first_time_only():
    r, _ = ring()
    assert r.add(3, "a")
    assert not r.add(3, "a")
    assert r.add(3, "b")
    assert r.add(4, "a")


def test_judged_by_slot_not_by_clock():
    r, stats = ring()
    assert r.add(1000, "jump")  # a forged far-ahead time takes one slot only
    assert r.add(5, "honest")  # Serf: "too old" (5 < 1000 - 512)
    assert r.add(13, "reuses 5's slot")  # 13 % 8 == 5: the slot moves on
    assert not r.add(5, "honest")  # now we cannot tell: refused
    assert stats["event.too_old"] == 1


def test_slot_keeps_newest_records():
    r, stats = ring(per_slot=2)
    for name in ("a", "b", "c"):
        assert r.add(1, name)
    assert stats["event.records_forgotten"] == 1
    assert list(r.slots())[1] == (1, ["b", "c"])
    assert r.add(1, "a")  # forgotten: handed on again (a flood's price)


def test_byte_budget_forgets_oldest_slots():
    r, stats = ring(per_slot=10, budget=10)
    r.add(1, "xxxx")
    r.add(2, "yyyy")
    r.add(3, "zzzz")  # 12 bytes > 10: slot 1 goes
    assert [s[0] for s in r.slots() if s is not None] == [2, 3]
    assert stats["event.slots_forgotten"] == 1
