"""swimlib.agent.memory: freed heap pages go back to the OS."""

import sys

import anyio
import pytest

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


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_release_runs_once_after_the_delay(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    results: list[tuple[float, bool]] = []

    def recording() -> bool:
        results.append((anyio.current_time(), release_free_heap()))
        return results[-1][1]

    monkeypatch.setattr(memory, "release_free_heap", recording)

    async def main() -> float:
        start = anyio.current_time()
        await release_after_startup(0.05)
        return start

    start = anyio.run(main, backend=backend)
    assert len(results) == 1
    when, trimmed = results[0]
    assert when - start >= 0.04
    assert trimmed == sys.platform.startswith("linux")
