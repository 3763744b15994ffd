"""The graceful-leave sequence (swimlib/cluster/leave.py) and the shared timer heap."""

from __future__ import annotations

from swimlib.cluster.leave import LeavePhase, LeaveSequence
from swimlib.config import Config
from swimlib.membership.timers import Timers


class FakeMembership:
    def __init__(self, sent_at_once: bool = False) -> None:
        self.left_at: float | None = None
        self.leave_broadcast_sent = False
        self._sent_at_once = sent_at_once

    def leave(self, now: float) -> None:
        self.left_at = now
        self.leave_broadcast_sent = self._sent_at_once


CONFIG = Config.lan()


def test_each_phase_waits_for_its_news_or_its_timeout() -> None:
    seq = LeaveSequence(CONFIG)
    ml = FakeMembership()
    seq.begin(0.0, intent_sent=False)
    poll = seq.advance(0.0, ml)
    assert seq.phase is LeavePhase.INTENT and ml.left_at is None
    assert poll == CONFIG.gossip_interval
    seq.mark_intent_sent()
    seq.advance(0.1, ml)
    assert seq.phase is LeavePhase.MEMBERLIST and ml.left_at == 0.1
    seq.advance(0.1 + CONFIG.broadcast_timeout, ml)  # memberlist's broadcast never went out
    assert seq.phase is LeavePhase.PROPAGATE
    end = 0.1 + CONFIG.broadcast_timeout + CONFIG.leave_propagate_delay
    assert seq.advance(end, ml) is None
    assert seq.finished


def test_alone_the_leave_runs_through_to_the_propagation_pause() -> None:
    seq = LeaveSequence(CONFIG)
    ml = FakeMembership(sent_at_once=True)
    seq.begin(5.0, intent_sent=True)
    poll = seq.advance(5.0, ml)
    assert seq.phase is LeavePhase.PROPAGATE and ml.left_at == 5.0
    assert poll == min(5.0 + CONFIG.leave_propagate_delay, 5.0 + CONFIG.gossip_interval)


def test_a_sequence_never_begun_does_nothing() -> None:
    seq = LeaveSequence(CONFIG)
    ml = FakeMembership()
    assert seq.advance(100.0, ml) is None
    assert seq.phase is LeavePhase.NOT_LEAVING and ml.left_at is None


def test_timers_fire_in_due_order_then_in_the_order_they_were_set() -> None:
    timers = Timers()
    fired: list[str] = []

    def record(arg: str, now: float) -> None:
        fired.append(arg)
        if arg == "a":  # a callback may schedule one due at once
            timers.schedule(now, record, "a2")

    timers.schedule(2.0, record, "c")
    timers.schedule(1.0, record, "a")
    timers.schedule(1.0, record, "b")
    timers.run_due(1.5)
    assert fired == ["a", "b", "a2"]
    assert timers.next_deadline() == 2.0
    assert timers.discard(lambda entry: entry[3] != "c") == 1
    assert timers.next_deadline() is None
