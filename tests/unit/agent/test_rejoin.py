"""The never-strand rule (swimlib.agent.rejoin): when and whom to rejoin."""

from __future__ import annotations

import random

from swimlib.agent.rejoin import FIRST_DELAY, MAX_DELAY, MAX_KNOWN, TARGETS_PER_ATTEMPT, Rejoiner
from swimlib.cluster.events import ClusterMember, MemberStatus

ALIVE, FAILED, LEFT = MemberStatus.ALIVE, MemberStatus.FAILED, MemberStatus.LEFT


def member(name: str, status: MemberStatus = ALIVE, port: int = 7946) -> ClusterMember:
    return ClusterMember(name, f"10.0.0.{int(name[1:])}", port, status=status)


def view(*members: ClusterMember) -> list[ClusterMember]:
    return [ClusterMember("me", "10.0.0.250", 7946), *members]


def rejoiner(**kw: object) -> Rejoiner:
    return Rejoiner("me", random.Random(7), **kw)  # type: ignore[arg-type]


def test_whole_view_never_schedules() -> None:
    r = rejoiner()
    r.observe(view(member("n1"), member("n2")), 0.0)
    assert r.next_deadline() is None
    assert r.targets(100.0) == []


def test_snapshot_peers_not_seen_are_gaps_tried_soon() -> None:
    r = rejoiner()
    r.remember("n1", "10.0.0.1:7946")
    r.remember("me", "10.0.0.250:7946")  # ourselves: never a gap
    r.observe(view(), 10.0)
    deadline = r.next_deadline()
    assert deadline is not None and 10.0 + FIRST_DELAY / 2 <= deadline <= 10.0 + FIRST_DELAY
    assert r.targets(deadline - 0.01) == []
    assert r.targets(deadline) == ["10.0.0.1:7946"]


def test_backoff_doubles_to_the_ceiling_and_never_stops() -> None:
    r = rejoiner()
    r.observe(view(member("n1", FAILED)), 0.0)
    now, gaps = 0.0, []
    for _ in range(20):
        deadline = r.next_deadline()
        assert deadline is not None
        gaps.append(deadline - now)
        now = deadline
        assert r.targets(now) == ["10.0.0.1:7946"]
        r.observe(view(member("n1", FAILED)), now)  # still down
    assert gaps[1] > gaps[0] and gaps[2] > gaps[1]
    assert all(MAX_DELAY / 2 <= g <= MAX_DELAY for g in gaps[-5:])
    assert r.attempts == 20


def test_whole_again_resets_and_a_new_gap_is_tried_within_the_first_delay() -> None:
    r = rejoiner()
    r.observe(view(member("n1", FAILED), member("n2")), 0.0)
    now = 0.0
    for _ in range(6):  # back off on n1 for a while
        now = r.next_deadline() or now
        r.targets(now)
        r.observe(view(member("n1", FAILED), member("n2")), now)
    assert (r.next_deadline() or 0) - now > FIRST_DELAY
    # n2 drops out too (a partition): a new gap is tried soon, not at the backed-off time.
    r.observe(view(member("n1", FAILED), member("n2", FAILED)), now)
    deadline = r.next_deadline()
    assert deadline is not None and deadline - now <= FIRST_DELAY
    r.observe(view(member("n1"), member("n2")), now + 1)
    assert r.next_deadline() is None


def test_leavers_are_forgotten_and_reaped_members_too() -> None:
    r = rejoiner()
    r.observe(view(member("n1", LEFT), member("n2", FAILED)), 0.0)
    assert r.missing() == ["n2"]
    r.observe(view(), 1.0)  # n2 reaped (reconnect_timeout)
    assert r.missing() == []
    assert r.next_deadline() is None


def test_targets_are_bounded_and_addresses_current() -> None:
    r = rejoiner()
    r.remember("n1", "10.9.9.9:1")  # stale snapshot address
    members = [member(f"n{i}", FAILED, port=8000 + i) for i in range(1, 30)]
    r.observe(view(*members), 0.0)
    picked = r.targets(r.next_deadline() or 0.0)
    assert len(picked) == TARGETS_PER_ATTEMPT
    assert "10.9.9.9:1" not in picked and "10.0.0.1:8001" in r.known.values()


def test_seeds_are_tried_while_nobody_is_visible() -> None:
    r = rejoiner(seeds=["ha:7946"])
    r.observe(view(), 0.0)
    assert r.targets(r.next_deadline() or 0.0) == ["ha:7946"]
    r.observe(view(member("n1")), 5.0)
    assert r.next_deadline() is None


def test_a_flood_of_names_is_bounded() -> None:
    r = rejoiner()
    for i in range(MAX_KNOWN + 500):
        r.remember(f"x{i}", "10.0.0.1:1")
    assert len(r.known) == MAX_KNOWN
