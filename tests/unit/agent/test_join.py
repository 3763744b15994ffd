"""join_with_backoff: retried with growing waits on virtual time, until someone answers."""

from __future__ import annotations

from collections.abc import Sequence

import trio
import trio.testing

from swimlib.agent.join import join_with_backoff
from swimlib.errors import JoinError
from swimlib.faults import FaultLog


class FlakyAgent:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.attempts: list[float] = []
        self.faults = FaultLog()

    async def join(self, addrs: Sequence[str], replay: bool = False) -> int:
        self.attempts.append(trio.current_time())
        if self.failures:
            raise self.failures.pop(0)
        return len(addrs)


def test_refusals_and_surprises_are_retried_with_backoff() -> None:
    agent = FlakyAgent([JoinError("nobody"), RuntimeError("bug"), JoinError("nobody")])

    async def main() -> int:
        return await join_with_backoff(
            agent, ["a", "b"], backoff=(1.0, 2.0, 3.0))  # type: ignore[arg-type]

    clock = trio.testing.MockClock(autojump_threshold=0)
    assert trio.run(main, clock=clock) == 2
    start = agent.attempts[0]
    assert [round(t - start, 6) for t in agent.attempts] == [0.0, 1.0, 3.0, 6.0]
    assert agent.faults.counts == {"join": 1}
