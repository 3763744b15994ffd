"""The formulas memberlist and Lifeguard define, checked against reference tables."""

import pytest

from swimlib.membership.awareness import Awareness
from swimlib.membership.broadcasts import BroadcastQueue, retransmit_limit
from swimlib.membership.suspicion import (
    Suspicion,
    expected_confirmations,
    suspicion_min_timeout,
    suspicion_timeout,
)
from swimlib.membership.sync import push_pull_interval


@pytest.mark.parametrize(
    ("n", "minimum", "after0", "after1", "after2"),
    [  # reference/papers.md section 3, LAN defaults
        (10, 4.0, 24.0, 11.381, 4.0),
        (100, 8.0, 48.0, 22.762, 8.0),
        (1000, 12.0, 72.0, 34.143, 12.0),
    ],
)
def test_suspicion_timeouts_match_memberlist(n, minimum, after0, after1, after2):
    lo = suspicion_min_timeout(4, n, 1.0)
    hi = 6 * lo
    k = expected_confirmations(4, n)
    assert lo == pytest.approx(minimum)
    assert suspicion_timeout(0, k, lo, hi) == pytest.approx(after0)
    assert suspicion_timeout(1, k, lo, hi) == pytest.approx(after1, abs=1e-3)
    assert suspicion_timeout(2, k, lo, hi) == pytest.approx(after2)


def test_small_cluster_expects_no_confirmations_and_uses_min():
    assert expected_confirmations(4, 3) == 0
    assert expected_confirmations(4, 4) == 2
    s = Suspicion("a", 0, 4.0, 24.0, start=10.0)
    assert s.deadline == 14.0
    assert not s.confirm("b")


def test_suspicion_counts_each_accuser_once_and_never_the_first():
    s = Suspicion("a", 2, 4.0, 24.0, start=0.0)
    assert s.deadline == 24.0
    assert not s.confirm("a")
    assert s.confirm("b")
    assert not s.confirm("b")
    assert s.deadline == pytest.approx(11.381, abs=1e-3)
    assert s.confirm("c")
    assert s.deadline == 4.0
    assert not s.confirm("d")  # k reached
    assert s.confirmations == 2


def test_min_timeout_uses_log10_n_not_log_n_plus_1():
    # The comment in memberlist says log(N+1); the code (and we) use log10(n).
    assert suspicion_min_timeout(4, 50, 1.0) == pytest.approx(4 * 1.698)
    assert suspicion_min_timeout(4, 1, 1.0) == 4.0
    assert suspicion_min_timeout(4, 0, 1.0) == 4.0


@pytest.mark.parametrize(("n", "limit"), [(1, 4), (9, 4), (10, 8), (99, 8), (100, 12)])
def test_retransmit_limit(n, limit):
    assert retransmit_limit(4, n) == limit


@pytest.mark.parametrize(("n", "interval"), [(5, 30), (32, 30), (33, 60), (50, 60),
                                             (100, 90), (1000, 180), (2000, 210)])
def test_push_pull_interval_scales_above_32(n, interval):
    assert push_pull_interval(30.0, n) == interval


def test_awareness_saturates_and_scales_interval():
    a = Awareness(8)
    a.apply_delta(-3)
    assert a.score == 0
    a.apply_delta(100)
    assert a.score == 7
    assert a.scale(1.0) == 8.0
    a.apply_delta(-1)
    assert a.scale(0.5) == 3.5


class TestBroadcastQueue:
    def test_newer_message_about_a_node_replaces_the_older(self):
        q = BroadcastQueue()
        done = []
        q.queue("n1", b"old", on_done=lambda: done.append("old"))
        q.queue("n1", b"new")
        assert done == ["old"]
        assert q.take(2, 1400, 4) == [b"new"]

    def test_fewest_transmits_first_then_newest(self):
        q = BroadcastQueue()
        q.queue("a", b"aaaa")
        assert q.take(2, 1400, 10) == [b"aaaa"]
        q.queue("b", b"bbbb")
        q.queue("c", b"cccc")
        # b and c were never sent; c is newer; a was sent once already.
        assert q.take(2, 6, 10) == [b"cccc"]
        assert q.take(2, 6, 10) == [b"bbbb"]
        # Now all three were sent once: the newest (c) goes first again.
        assert q.take(2, 6, 10) == [b"cccc"]
        assert q.take(2, 6, 10) == [b"bbbb"]
        assert q.take(2, 6, 10) == [b"aaaa"]

    def test_largest_that_fits_within_a_tier(self):
        q = BroadcastQueue()
        q.queue("small", b"x")
        q.queue("large", b"y" * 50)
        assert q.take(2, 20, 10) == [b"x"]
        assert q.take(2, 100, 10) == [b"y" * 50, b"x"]

    def test_dropped_after_transmit_limit_and_reports_done(self):
        q = BroadcastQueue()
        done = []
        q.queue("a", b"m", on_done=lambda: done.append(True))
        for _ in range(3):
            assert q.take(2, 100, 3) == [b"m"]
        assert q.take(2, 100, 3) == []
        assert done == [True]
        assert not q.pending_for("a")

    def test_budget_counts_overhead(self):
        q = BroadcastQueue()
        for i in range(10):
            q.queue(str(i), b"z" * 10)
        got = q.take(2, 60, 4)
        assert len(got) == 5
