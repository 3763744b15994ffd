"""lbadapter.child: restart backoff on virtual time, line reading, and stops that end."""

from __future__ import annotations

import logging
import subprocess
import sys

import anyio
import pytest
import trio.testing

from lbadapter import child

log = logging.getLogger("test.child")


def test_restarts_back_off_to_30_s_and_reset_after_a_stable_life() -> None:
    lives = [0.0] * 7 + [40.0, 0.0, 0.0]  # seven quick exits, one long life, two more
    starts: list[float] = []

    async def run_once() -> int:
        starts.append(anyio.current_time())
        if len(starts) > len(lives):
            await anyio.sleep_forever()
        await anyio.sleep(lives[len(starts) - 1])
        return 1

    async def main() -> None:
        with anyio.move_on_after(1000):
            await child.restart_forever("thing", run_once, log)

    anyio.run(main, backend="trio",
              backend_options={"clock": trio.testing.MockClock(autojump_threshold=0)})
    ends = [start + life for start, life in zip(starts, lives, strict=False)]
    gaps = [round(b - a, 3) for a, b in zip(ends, starts[1:], strict=True)]
    assert gaps == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 0.5, 1.0, 2.0]


def test_lines_are_split_blank_ones_skipped_and_long_ones_cut() -> None:
    got: list[str] = []

    async def main() -> None:
        send, receive = anyio.create_memory_object_stream[bytes](10)
        stream = anyio.streams.stapled.StapledObjectStream(send, receive)
        await send.send(b"one\n\n  \ntw")
        await send.send(b"o  \r\n" + b"x" * (child.MAX_LINE + 10))
        await send.send(b"\nlast")
        send.close()
        await child.read_lines(stream, got.append)  # type: ignore[arg-type]

    anyio.run(main)
    assert got[:2] == ["one", "two"]
    assert got[2] == "x" * (child.MAX_LINE + 10)  # past the cap: out as it stands
    assert len(got) == 3  # "last" has no newline: not a line yet at EOF


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_child_that_ignores_sigterm_is_killed(backend: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(child, "STOP_TIMEOUT", 0.3)
    stubborn = [sys.executable, "-c",
                "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
                " print('ready', flush=True); time.sleep(60)"]

    async def main() -> int | None:
        proc = await anyio.open_process(stubborn, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        await proc.stdout.receive()
        with anyio.fail_after(10):
            await child.stop_child(proc, "stubborn", log)
        await proc.aclose()
        return proc.returncode

    assert anyio.run(main, backend=backend) == -9


def test_a_leftover_process_is_stopped_by_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(child, "STOP_TIMEOUT", 0.3)
    proc = subprocess.Popen([sys.executable, "-c",
                             "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
                             " print('ready', flush=True); time.sleep(60)"],
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        assert child.pid_alive(proc.pid)
        anyio.run(child.stop_pid, proc.pid, "leftover", log)
        assert proc.wait(10) == -9
        assert not child.pid_alive(proc.pid)  # reaped
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
