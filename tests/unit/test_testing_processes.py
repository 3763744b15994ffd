"""The repository's one process manager (swimlib/testing/processes.py), on real processes."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from swimlib.testing import ProcessGroup, session_pids, stop_process

#: A parent that starts a child in its own session and ignores SIGTERM, as a
#: stubborn supervisor would; the child is what stop_all must find by session.
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print("ready", flush=True)
time.sleep(60)
"""


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    return stat[0] == "Z"


def _wait_ready(log: Path) -> None:
    for _ in range(200):
        if "ready" in (log.read_text() if log.exists() else ""):
            return
        time.sleep(0.05)
    raise AssertionError("child never became ready")


def test_stop_terminates_then_kills_by_pid(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path)
    child = group.start("stubborn", [sys.executable, "-c", STUBBORN])
    _wait_ready(tmp_path / "stubborn.log")
    grandchildren = session_pids(child.pid)
    assert len(grandchildren) == 1
    code = stop_process(child.popen, timeout=0.5)
    assert code == -signal.SIGKILL  # SIGTERM was ignored
    group.stop_all(grace=0.5)  # the grandchild outlived its parent: found by session
    for _ in range(100):
        if _gone(grandchildren[0]):
            break
        time.sleep(0.05)
    assert _gone(grandchildren[0])


def test_output_goes_to_the_named_log_and_a_polite_child_exits_on_sigterm(
        tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path, env={"GREETING": "hello"})
    child = group.start("polite", [sys.executable, "-c",
                                   "import os, time; print(os.environ['GREETING'], "
                                   "flush=True); time.sleep(60)"], log_name="polite-0")
    for _ in range(200):
        if "hello" in child.output():
            break
        time.sleep(0.05)
    assert child.output().strip() == "hello" and child.log == tmp_path / "polite-0.log"
    assert group.stop(child, timeout=5.0) == -signal.SIGTERM
    assert not child.alive()
