"""-syslog: log lines to the local syslog, at their level's priority."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from swimlib.agent.logs import SerfLogFormatter
from swimlib.agent.syslog import open_syslog_handler
from swimlib.errors import ConfigError
from swimlib.testing import free_port


def test_lines_reach_a_syslog_socket_with_facility_and_priority(tmp_path: Path) -> None:
    address = str(tmp_path / "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslogd:
        syslogd.bind(address)
        syslogd.settimeout(10)
        handler = open_syslog_handler("local3", SerfLogFormatter(), address=address)
        logger = logging.getLogger("swimlib.test-syslog")
        logger.addHandler(handler)
        logger.propagate = False
        try:
            logger.warning("agent: disk %s", "full")
        finally:
            logger.removeHandler(handler)
            handler.close()
        datagram = syslogd.recv(4096).decode()
    # LOCAL3 = 19; warning = 4: <19*8+4>
    assert datagram.startswith(f"<156>swimlib[{os.getpid()}]: ")
    assert datagram.rstrip("\x00").endswith("[WARN] agent: disk full")


def test_a_bad_facility_or_missing_syslog_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid syslog facility 'LOCAL9'"):
        open_syslog_handler("LOCAL9", SerfLogFormatter(), address=str(tmp_path / "log"))
    with pytest.raises(ConfigError, match="Syslog setup failed"):
        open_syslog_handler("LOCAL0", SerfLogFormatter(), address=str(tmp_path / "none"))


@pytest.mark.skipif(os.path.exists("/dev/log"), reason="a syslog daemon listens here")
def test_the_agent_does_not_start_without_syslog() -> None:
    proc = subprocess.run([sys.executable, "-m", "swimlib.cli", "agent", "-node=a", "-syslog",
                           f"-bind=127.0.0.1:{free_port()}",
                           f"-rpc-addr=127.0.0.1:{free_port()}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "==> Error: Syslog setup failed: /dev/log" in proc.stderr
    assert "Traceback" not in proc.stderr
