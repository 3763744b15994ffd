"""join_with_backoff: retried with growing waits on virtual time, until someone answers."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import anyio
from trio.testing import MockClock

from swimlib.agent.join import join_with_backoff
from swimlib.errors import JoinError
from swimlib.faults import FaultLog


class FlakyAgent:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.attempts: list[float] = []
        self.faults = FaultLog()

    async def join(self, addrs: Sequence[str], replay: bool = False) -> int:
        self.attempts.append(anyio.current_time())
        if self.failures:
            raise self.failures.pop(0)
        return len(addrs)


def test_refusals_and_surprises_are_retried_with_backoff() -> None:
    agent = FlakyAgent([JoinError("nobody"), RuntimeError("bug"), JoinError("nobody")])

    async def main() -> int:
        return await join_with_backoff(
            agent, ["a", "b"], backoff=(1.0, 2.0, 3.0))  # type: ignore[arg-type]

    clock = MockClock(autojump_threshold=0)
    assert anyio.run(main, backend="trio", backend_options={"clock": clock}) == 2
    start = agent.attempts[0]
    assert [round(t - start, 6) for t in agent.attempts] == [0.0, 1.0, 3.0, 6.0]
    assert agent.faults.counts == {"join": 1}


def test_backoff_on_asyncio_in_real_time() -> None:
    agent = FlakyAgent([JoinError("nobody"), RuntimeError("bug")])

    async def main() -> int:
        return await join_with_backoff(
            agent, ["a"], backoff=(0.01, 3.0, 0.02))  # type: ignore[arg-type]

    assert anyio.run(main, backend="asyncio") == 1
    gaps = [b - a for a, b in pairwise(agent.attempts)]
    assert len(gaps) == 2 and gaps[0] >= 0.009 and gaps[1] >= 0.019  # 0.01, then the ceiling
    assert agent.faults.counts == {"join": 1}


def test_cancelling_stops_the_retries_on_asyncio() -> None:
    agent = FlakyAgent([JoinError("nobody")] * 100)

    async def main() -> None:
        with anyio.move_on_after(0.05):
            await join_with_backoff(
                agent, ["a"], backoff=(0.01, 1.0, 0.01))  # type: ignore[arg-type]

    anyio.run(main, backend="asyncio")
    assert 1 <= len(agent.attempts) <= 6  # one every 0.01 s until cancelled, not all 100
