"""Issue 4's load acceptance as a test: lbadapter loses no request under churn.

20 s of 300 req/s (keep-alive and new-connection clients) through HAProxy run
by ``lbadapter``, while backends join and leave gracefully every 2 s and one
is SIGKILLed every 10 s (the lb_churn benchmark's plan, lbadapter only).
"""

from __future__ import annotations

import os
import shutil

import pytest

from benchmarks import lb_churn

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("haproxy") is None and not os.path.exists("/usr/sbin/haproxy"),
                       reason="haproxy is not installed (make test installs it as root)"),
]


def test_no_failed_requests_while_backends_join_leave_and_crash(tmp_path) -> None:
    result = lb_churn.run(["--modes", "lbadapter", "--duration", "20",
                           "--workdir", str(tmp_path)])
    r = result["results"]["lbadapter"]
    total = r["keepalive"]["requests"] + r["new_connection"]["requests"]
    assert total / r["load_seconds"] >= 200
    kinds = {kind for _, kind in result["schedule"]}
    assert {"join", "leave", "crash"} <= kinds, kinds
    assert r["keepalive"]["failed"] == 0, r["keepalive"]["errors"]
    assert r["new_connection"]["failed"] == 0, r["new_connection"]["errors"]
