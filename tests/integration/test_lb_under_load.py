"""Load acceptance as tests: lbadapter loses no request under churn.

* Issue 4: 20 s of 300 req/s (keep-alive and new-connection clients) through
  HAProxy run by ``lbadapter``, while backends join and leave gracefully every
  2 s and one is SIGKILLed every 10 s (the lb_churn benchmark's plan).
* Issue 10: two ``lbadapter --sticky cookie`` balancers, 60 s of sticky
  clients sending to both in turn at 240 req/s under the same churn: no
  failed request, a client moves only when its backend left or crashed (once
  each time), and both balancers name, number and cookie servers alike.
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


def test_two_sticky_balancers_agree_under_churn(tmp_path) -> None:
    result = lb_churn.run(["--modes", "two-balancers", "--duration", "60",
                           "--workdir", str(tmp_path)])
    r = result["results"]["two-balancers"]
    s = r["sticky"]
    assert s["requests"] / r["load_seconds"] >= 200
    assert {kind for _, kind, _ in r["events"]} == {"join", "leave", "crash"}
    assert s["failed"] == 0, (s["errors"], r["failures"][:20])
    assert set(s["per_balancer"]) == {1, 2}  # both balancers served
    assert s["pinned"] > 0  # departures did hit pinned clients
    assert s["unexplained_count"] == 0, s["unexplained"]
    assert s["moves"] == s["pinned"], s
    assert r["identity"]["identical"] and r["identity"]["all_have_cookies"], r["identity"]
    assert len(r["identity"]["servers"]) >= 2
    assert all(b["alive_at_end"] for b in r["balancers"])
