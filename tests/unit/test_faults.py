"""FaultLog: failures counted by place, tracebacks logged once per kind, rate-limited."""

from __future__ import annotations

import logging

import pytest

from swimlib.faults import LOG_INTERVAL, FaultLog, failure_kind


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def boom(message: str = "boom") -> None:
    raise ValueError(message)


def other_boom() -> None:
    raise KeyError("other")


def test_boundary_counts_by_place_and_swallows(caplog: pytest.LogCaptureFixture) -> None:
    faults = FaultLog(logging.getLogger("t"), Clock())
    for _ in range(3):
        with faults.boundary("datagram"):
            boom()
    with faults.boundary("timer"):
        other_boom()
    assert faults.snapshot() == {"datagram": 3, "timer": 1}


def test_traceback_once_per_kind_then_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    faults = FaultLog(logging.getLogger("t"), clock)
    caplog.set_level(logging.ERROR)
    for _ in range(100):
        with faults.boundary("datagram"):
            boom()
    assert len(caplog.records) == 1
    assert caplog.records[0].exc_info is not None  # the first one has its traceback
    clock.now += LOG_INTERVAL
    with faults.boundary("datagram"):
        boom()
    assert len(caplog.records) == 2
    assert "(101 in a row, 101 in all, 99 not logged)" in caplog.records[1].getMessage()
    assert caplog.records[1].exc_info is None  # reminders are one line
    with faults.boundary("stream.in"):
        boom()  # another place is another kind: logged at once
    assert len(caplog.records) == 3


def test_kind_is_place_type_and_innermost_frame() -> None:
    kinds = set()
    for fn in (boom, boom, other_boom):
        try:
            fn()
        except Exception as exc:
            kinds.add(failure_kind("p", exc))
    assert len(kinds) == 2


def test_cancellation_is_not_swallowed() -> None:
    faults = FaultLog(logging.getLogger("t"), Clock())
    with pytest.raises(KeyboardInterrupt), faults.boundary("timer"):
        raise KeyboardInterrupt
    assert faults.snapshot() == {}


def test_streaks_end_when_the_place_works_again(caplog: pytest.LogCaptureFixture) -> None:
    faults = FaultLog(logging.getLogger("t"), Clock())
    caplog.set_level(logging.INFO)
    for _ in range(3):
        with faults.boundary("reconcile"):
            boom()
    with faults.boundary("config"):
        pass
    assert faults.streaks == {"reconcile": 3} and faults.failing
    with faults.boundary("reconcile"):
        pass
    assert not faults.failing and faults.counts == {"reconcile": 3}
    assert "reconcile works again after 3 failures in a row" in caplog.records[-1].getMessage()


def test_hostile_text_is_logged_escaped_on_one_line(caplog: pytest.LogCaptureFixture) -> None:
    faults = FaultLog(logging.getLogger("t"), Clock())
    with faults.boundary("handler"):
        boom("member web-1\n    2026/12/03 [INFO] serf: forged line\x1b[2J" + "x" * 1000)
    message = caplog.records[-1].getMessage()
    assert "\n" not in message and "\x1b" not in message
    assert "\\n    2026" in message and len(message) < 500
