"""The Serf layer's clock rules (swimlib/cluster/clocks.py), applied directly."""

from __future__ import annotations

from swimlib.cluster import domains as dom
from swimlib.cluster.clocks import LamportClock, SerfClocks, is_implausible, ltime_problem
from swimlib.wire import serf as sw

EDGE = dom.LTIME_FREE_LIMIT + dom.LTIME_STEP


def push_pull(ltime: int = 1, event: int = 1, query: int = 1,
              status: dict[str, int] | None = None) -> sw.SerfPushPull:
    return sw.SerfPushPull(ltime, status or {}, (), event, (), query)


def test_times_up_to_the_free_limit_plus_a_step_are_plausible() -> None:
    clock = LamportClock()
    assert ltime_problem(clock, EDGE, "event") is None
    problem = ltime_problem(clock, EDGE + 1, "event")
    assert problem == "event_ltime_implausible" and is_implausible(problem)


def test_a_trusted_time_is_believed_whatever_its_jump() -> None:
    assert ltime_problem(LamportClock(), dom.LTIME_MAX, "intent", trusted=True) is None


def test_a_clock_past_the_limit_allows_a_step_beyond_itself() -> None:
    clock = LamportClock(EDGE)
    assert ltime_problem(clock, EDGE + dom.LTIME_STEP, "query") is None
    assert ltime_problem(clock, EDGE + dom.LTIME_STEP + 1, "query") is not None


def test_push_pull_clocks_are_witnessed_minus_one() -> None:
    clocks = SerfClocks()
    clocks.witness_push_pull(push_pull(ltime=10, event=20, query=30))
    assert (clocks.member.time(), clocks.event.time(), clocks.query.time()) == (10, 20, 30)


def test_push_pull_status_times_are_held_to_the_member_clock() -> None:
    clocks = SerfClocks()
    forged = push_pull(status={"ghost": EDGE + 1})
    assert clocks.push_pull_problem(forged, trusted=False) == "push_pull_ltime_implausible"
    assert clocks.push_pull_problem(forged, trusted=True) is None
    for field in ("ltime", "event", "query"):
        bad = push_pull(**{field: dom.LTIME_MAX})
        assert clocks.push_pull_problem(bad, trusted=False) is not None, field


def test_restore_moves_past_old_times_and_sets_the_delivery_floor() -> None:
    clocks = SerfClocks()
    clocks.restore(5, 7, 9)
    assert (clocks.member.time(), clocks.event.time(), clocks.query.time()) == (6, 8, 10)
    assert (clocks.event_min_time, clocks.query_min_time) == (8, 10)
    clocks.restore(1, 1, 1)  # an older snapshot never lowers anything
    assert (clocks.event_min_time, clocks.query_min_time) == (8, 10)


def test_clocks_saturate_at_the_top() -> None:
    clock = LamportClock()
    clock.witness(dom.LTIME_MAX)
    clock.increment()
    assert clock.time() == dom.LTIME_MAX
