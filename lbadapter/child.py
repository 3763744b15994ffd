"""What every child process lbadapter supervises gets: restarts with backoff,
a stop that always ends (SIGTERM, then SIGKILL), a leftover from an earlier
run stopped by PID, and its output read line by line.

HAProxy (:mod:`lbadapter.supervisor`) and keepalived
(:mod:`lbadapter.keepalived`) differ in how they start, how they tell that
they are ready, and what their lines mean; these rules are the same for both.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NoReturn

import anyio
import anyio.abc

__all__ = ["pid_alive", "read_lines", "restart_forever", "spawn", "stop_child", "stop_pid"]

#: Restart backoff: first wait, factor, ceiling; reset after this long up.
RESTART_BACKOFF = (0.5, 2.0, 30.0)
STABLE_AFTER = 30.0
#: How long a child may take to stop after SIGTERM (then SIGKILL).
STOP_TIMEOUT = 5.0
#: How long a SIGKILLed process may take to go.
KILL_TIMEOUT = 2.0
#: A line longer than this is logged in pieces (a child cannot grow our memory).
MAX_LINE = 65536


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie waiting for a parent that never reaps counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


async def restart_forever(what: str, run_once: Callable[[], Awaitable[int | None]],
                          log: logging.Logger) -> NoReturn:
    """Run ``run_once`` (one life of the child; its exit code) again and again,
    waiting 0.5 s after an exit, doubling to 30 s, back to 0.5 s after a life of 30 s."""
    first, factor, ceiling = RESTART_BACKOFF
    delay = first
    while True:
        started = anyio.current_time()
        code = await run_once()
        up_for = anyio.current_time() - started
        if up_for >= STABLE_AFTER:
            delay = first
        log.error("%s exited with code %s after %.1f s; restarting in %.1f s",
                  what, code, up_for, delay)
        await anyio.sleep(delay)
        delay = min(ceiling, delay * factor)


async def spawn(argv: list[str], what: str, log: logging.Logger) -> anyio.abc.Process | None:
    """Start ``argv`` in its own session (a terminal's Ctrl-C reaches only us),
    output and errors on one pipe; None (logged) if it cannot start."""
    try:
        proc = await anyio.open_process(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        log.error("cannot start %s: %s", argv[0], exc)
        return None
    log.info("%s started (pid %d): %s", what, proc.pid, " ".join(argv))
    return proc


async def stop_pid(pid: int, what: str, log: logging.Logger) -> None:
    """Stop a process that is not our child (one left by an earlier run of ours):
    SIGTERM, SIGKILL after ``STOP_TIMEOUT``, each followed by polling until it is gone."""
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, KILL_TIMEOUT)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError as exc:
            log.error("cannot stop %s pid %d: %s", what, pid, exc)
            return
        with anyio.move_on_after(wait):
            while pid_alive(pid):
                await anyio.sleep(0.05)
        if not pid_alive(pid):
            return


async def stop_child(proc: anyio.abc.Process, what: str, log: logging.Logger) -> None:
    """SIGTERM our child if it still runs, SIGKILL after ``STOP_TIMEOUT``, and wait
    (at most ``KILL_TIMEOUT`` more) for it to go."""
    if proc.returncode is not None:
        return
    log.info("stopping %s (SIGTERM to %d)", what, proc.pid)
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    with anyio.move_on_after(STOP_TIMEOUT):
        await proc.wait()
    if proc.returncode is None:
        log.error("%s %d still runs %.0f s after SIGTERM; SIGKILL", what, proc.pid, STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with anyio.move_on_after(KILL_TIMEOUT):
            await proc.wait()


async def read_lines(stream: anyio.abc.ByteReceiveStream,
                     on_line: Callable[[str], None]) -> None:
    """Each non-blank line of ``stream`` (decoded, trailing space stripped) to
    ``on_line``, until EOF; a line over ``MAX_LINE`` bytes goes in pieces."""
    buffer = b""
    async for chunk in stream:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        if len(buffer) > MAX_LINE:
            lines.append(buffer)
            buffer = b""
        for raw in lines:
            line = raw.decode(errors="replace").rstrip()
            if line.strip():
                on_line(line)
