"""lb_churn's pure parts: percentiles, summaries, the churn plan, the HTTP reader, the table.

These decide what the benchmark reports, so they are checked without any
process or HAProxy: a wrong percentile or a churn plan that empties the
pool would make every number in the table meaningless.
"""

from __future__ import annotations

import socket
import threading
from collections import Counter

import pytest

from benchmarks.lb_churn import (
    Action,
    EmptyResponse,
    TruncatedResponse,
    churn_schedule,
    classify,
    connection_dropped,
    format_balancers,
    format_table,
    percentile,
    read_response,
    summarize,
)
from benchmarks.lb_sticky import _next_cookie, sticky_moves


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 0) == 1.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    assert percentile([1.0, 2.0, 3.0], 50) == 2.0
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_p99_sees_a_single_slow_request_in_a_hundred() -> None:
    values = sorted([0.001] * 98 + [0.5, 0.6])
    assert percentile(values, 99) == 0.5


def test_summarize_counts_failures_by_kind_and_backends_of_successes() -> None:
    samples = [(0.0, 0.001, None, "b1"), (0.1, 0.002, None, "b2"), (0.2, 0.003, None, "b1"),
               (0.3, 0.004, "refused", ""), (0.4, 5.0, "timeout", ""),
               (0.5, 0.001, "http-503", "")]
    s = summarize(samples, duration=2.0)
    assert s["requests"] == 6
    assert s["failed"] == 3
    assert s["errors"] == {"http-503": 1, "refused": 1, "timeout": 1}
    assert s["backends"] == {"b1": 2, "b2": 1}
    assert s["req_per_s"] == 3.0
    assert s["p50_ms"] == 2.0
    assert s["max_ms"] == 5000.0


def test_summarize_empty() -> None:
    s = summarize([], duration=0.0)
    assert s["requests"] == 0 and s["failed"] == 0
    assert s["p50_ms"] is None and s["p99_ms"] is None and s["req_per_s"] == 0.0


def _live_counts(plan: list[Action], initial: int) -> list[int]:
    live, out = initial, []
    for a in plan:
        live += 1 if a.kind == "join" else -1
        out.append(live)
    return out


def test_churn_plan_one_change_every_2s_and_a_crash_every_10s() -> None:
    plan = churn_schedule(60.0, change_every=2.0, crash_every=10.0, initial=4)
    assert [a.at for a in plan] == [2.0 * i for i in range(1, 30)]  # ticks before 60 s
    assert [a.at for a in plan if a.kind == "crash"] == [10.0, 20.0, 30.0, 40.0, 50.0]
    kinds = Counter(a.kind for a in plan)
    assert kinds["join"] >= 10 and kinds["leave"] >= 8
    assert min(_live_counts(plan, 4)) >= 2
    assert max(_live_counts(plan, 4)) <= 4


def test_churn_plan_joins_right_after_a_crash() -> None:
    plan = churn_schedule(30.0, initial=4)
    for i, a in enumerate(plan[:-1]):
        if a.kind == "crash":
            assert plan[i + 1].kind == "join"


def test_churn_plan_never_goes_below_min_live() -> None:
    plan = churn_schedule(40.0, change_every=1.0, crash_every=2.0, initial=4, min_live=2)
    assert min(_live_counts(plan, 4)) >= 2
    assert "crash" in {a.kind for a in plan}


def test_churn_plan_is_deterministic_and_can_skip_crashes() -> None:
    assert churn_schedule(15.0) == churn_schedule(15.0)
    assert all(a.kind != "crash" for a in churn_schedule(30.0, crash_every=0.0))
    assert churn_schedule(1.9) == []
    with pytest.raises(ValueError):
        churn_schedule(10.0, change_every=0.0)


def _serve(data: bytes, close: bool = True) -> socket.socket:
    """A connected socket whose peer sends ``data`` (then closes if asked)."""
    ours, theirs = socket.socketpair()

    def send() -> None:
        theirs.sendall(data)
        if close:
            theirs.close()

    t = threading.Thread(target=send)
    t.start()
    t.join(5)
    ours.settimeout(5)
    return ours


def test_read_response_keep_alive_with_content_length() -> None:
    sock = _serve(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Backend: s1\r\n\r\ns1\n", False)
    assert read_response(sock) == (200, b"s1\n", True)
    sock.close()


def test_read_response_close_and_error_status() -> None:
    page = b"<html>no server</html>"
    sock = _serve(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: %d\r\n"
                  b"connection: close\r\n\r\n%s" % (len(page), page))
    assert read_response(sock) == (503, page, False)


def test_read_response_body_until_eof_without_length() -> None:
    sock = _serve(b"HTTP/1.0 200 OK\r\n\r\nhello")
    assert read_response(sock) == (200, b"hello", False)


def test_read_response_failures() -> None:
    with pytest.raises(EmptyResponse):
        read_response(_serve(b""))
    with pytest.raises(TruncatedResponse):
        read_response(_serve(b"HTTP/1.1 200 OK\r\nContent-Le"))
    with pytest.raises(TruncatedResponse):
        read_response(_serve(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))


def test_classify_names_the_failure() -> None:
    assert classify(ConnectionRefusedError()) == "refused"
    assert classify(ConnectionResetError()) == "reset"
    assert classify(BrokenPipeError()) == "broken-pipe"
    assert classify(TimeoutError()) == "timeout"
    assert classify(EmptyResponse()) == "empty"
    assert classify(TruncatedResponse()) == "truncated"
    assert classify(ValueError()) == "bad-response"


def test_connection_dropped_sees_a_server_close() -> None:
    ours, theirs = socket.socketpair()
    assert not connection_dropped(ours)
    theirs.close()
    assert connection_dropped(ours)
    ours.close()


def test_format_table_lists_both_client_kinds_per_balancer() -> None:
    ok = summarize([(0.0, 0.001, None, "b1")], 1.0)
    bad = summarize([(0.0, 0.001, "refused", ""), (0.1, 0.002, None, "b1")], 1.0)
    table = format_table({"lbadapter": {"keepalive": ok, "new_connection": ok},
                          "restart": {"keepalive": bad, "new_connection": ok}})
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["balancer", "clients", "requests", "failed"]
    assert len(lines) == 6
    assert "refused=1" in lines[4] and lines[4].startswith("restart")
    assert lines[2].rstrip().endswith("-")  # no errors


def test_format_balancers_says_how_changes_were_applied() -> None:
    text = format_balancers({
        "lbadapter": {"balancer": {"haproxy": {"starts": 1, "reloads": 0},
                                   "counters": {"add": 5, "drain": 3, "maint": 4, "del": 4}}},
        "restart": {"balancer": {"restarts": 6, "frontend_closed_ms": {
            "total": 200, "median": 33, "max": 45}}}})
    assert "started 1 time(s), reloaded 0 times" in text
    assert "runtime API: 5 add, 3 drain, 4 maint, 4 del" in text
    assert "restarted 6 times" in text and "45 ms max" in text


def test_read_response_collects_set_cookie_headers() -> None:
    sock = _serve(b"HTTP/1.1 200 OK\r\nSet-Cookie: SRVID=abc; path=/\r\nContent-Length: 3\r\n"
                  b"\r\ns1\n")
    cookies: list[str] = []
    assert read_response(sock, cookies) == (200, b"s1\n", True)
    assert cookies == ["SRVID=abc; path=/"]


def test_sticky_client_keeps_and_drops_cookies_as_a_browser() -> None:
    assert _next_cookie(None, ["SRVID=abc; path=/; HttpOnly"], "SRVID") == "SRVID=abc"
    assert _next_cookie("SRVID=abc", [], "SRVID") == "SRVID=abc"
    assert _next_cookie("SRVID=abc", ["SRVID=; Expires=Thu, 01-Jan-1970"], "SRVID") is None
    assert _next_cookie("SRVID=abc", ["OTHER=x"], "SRVID") == "SRVID=abc"


def test_sticky_moves_are_explained_only_by_a_departure_of_the_pinned_backend() -> None:
    ok = [(0.0, 0.001, None, "b1", 0), (1.0, 0.001, None, "b1", 1),
          (2.0, 0.001, "reset", "", 0),  # failures do not pin or move
          (3.0, 0.001, None, "b2", 1), (4.0, 0.001, None, "b3", 0)]
    other = [(0.5, 0.001, None, "b4", 0), (3.5, 0.001, None, "b4", 1)]
    got = sticky_moves([ok, other], [(1.5, "b1"), (5.0, "b4")])
    assert got["moves"] == 2  # b1 -> b2 (b1 left at 1.5), b2 -> b3 (unexplained)
    assert got["pinned"] == 2  # the first client at 1.5, the second at 5.0
    assert got["unexplained"] == [(4.0, "b2", "b3")] and got["unexplained_count"] == 1
