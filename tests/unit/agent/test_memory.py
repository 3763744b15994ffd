"""swimlib.agent.memory: freed heap pages go back to the OS, once membership stands still."""

import functools
import sys
from collections.abc import Awaitable, Callable

import anyio
import pytest
import trio.testing

from swimlib.agent import memory
from swimlib.agent.memory import release_after_startup, release_free_heap


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")
def test_fragmented_free_heap_is_returned() -> None:
    # 30 MB of 2 KB blocks (glibc malloc, not pymalloc); keep every 16th alive so
    # the heap cannot shrink from its top by itself, free the rest.
    blocks = [bytes(2048) for _ in range(15_000)]
    keep = blocks[::16]
    del blocks
    before = _rss_kb()
    assert release_free_heap()
    after = _rss_kb()
    assert before - after > 10_000, (before, after)
    assert len(keep) == 938


class Membership:
    """Stands in for Agent.members_changed: an event replaced at every change."""

    def __init__(self) -> None:
        self.event = anyio.Event()

    def change(self) -> None:
        self.event.set()
        self.event = anyio.Event()


def _recording(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, bool]]:
    results: list[tuple[float, bool]] = []

    def recording() -> bool:
        results.append((anyio.current_time(), release_free_heap()))
        return results[-1][1]

    monkeypatch.setattr(memory, "release_free_heap", recording)
    return results


def _on_virtual_time(main: Callable[[], Awaitable[float]]) -> float:
    return anyio.run(main, backend="trio",
                     backend_options={"clock": trio.testing.MockClock(autojump_threshold=0)})


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_release_runs_once_after_the_delay(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    results = _recording(monkeypatch)
    membership = Membership()

    async def main() -> float:
        start = anyio.current_time()
        await release_after_startup(lambda: membership.event, delay=0.05, quiet=0.01)
        return start

    start = anyio.run(main, backend=backend)
    assert len(results) == 1
    when, trimmed = results[0]
    assert when - start >= 0.06
    assert trimmed == sys.platform.startswith("linux")


def _release_times(monkeypatch: pytest.MonkeyPatch,
                   churn: Callable[[Membership, list[tuple[float, bool]], float],
                                   Awaitable[None]]) -> list[float]:
    """When the release ran (seconds after start, virtual time) while ``churn``
    changed membership: delay 5 s, quiet 2 s, at the latest 60 s."""
    results = _recording(monkeypatch)
    membership = Membership()

    async def main() -> float:
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(release_after_startup, lambda: membership.event,
                                            delay=5.0, quiet=2.0, latest=60.0))
            await churn(membership, results, start)
        return start

    start = _on_virtual_time(main)
    return [round(when - start, 3) for when, _ in results]


def test_release_waits_for_membership_to_stand_still(monkeypatch: pytest.MonkeyPatch) -> None:
    async def join_storm(membership: Membership, _: object, start: float) -> None:
        await anyio.sleep(4.0)  # from 4 s to 9 s after start, a change every 0.5 s
        for _ in range(10):
            await anyio.sleep(0.5)
            membership.change()

    assert _release_times(monkeypatch, join_storm) == [11.0]


def test_release_comes_at_the_latest_in_a_cluster_that_never_stands_still(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def forever(membership: Membership, released: list[object], start: float) -> None:
        while not released and anyio.current_time() - start < 100:
            await anyio.sleep(1.0)
            membership.change()

    assert _release_times(monkeypatch, forever) == [60.0]
