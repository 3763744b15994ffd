"""Helpers for tests, demos, benchmarks and scripts that start agents on loopback.

Not imported by the agent itself. Ports: :func:`free_port`. Processes:
:class:`ProcessGroup` (and :func:`spawn`, :func:`stop_process` for a process
that outlives one group).
"""

from swimlib.testing.ports import free_port
from swimlib.testing.processes import (
    Child,
    ProcessGroup,
    send_signal,
    session_pids,
    spawn,
    stop_process,
)

__all__ = ["Child", "ProcessGroup", "free_port", "send_signal", "session_pids", "spawn",
           "stop_process"]
