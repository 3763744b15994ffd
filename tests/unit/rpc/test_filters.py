"""Member, event-stream and log-level filters behave as Serf's agent does."""

from __future__ import annotations

import pytest

from swimlib.cluster.events import (
    ClusterMember,
    EventType,
    MemberEvent,
    MemberStatus,
    QueryEvent,
    UserEvent,
)
from swimlib.rpc.filters import (
    EventFilter,
    InvalidRegex,
    event_matches,
    filter_members,
    log_level_passes,
    parse_event_filters,
)

MEMBERS = [
    ClusterMember("n0", "127.0.0.1", 1, {"role": "balancer"}),
    ClusterMember("n1", "127.0.0.1", 2, {"role": "backend"}, status=MemberStatus.LEFT),
    ClusterMember("n2", "127.0.0.1", 3, {"role": "backend", "weight": "10"},
                  status=MemberStatus.FAILED),
    ClusterMember("web-10", "127.0.0.1", 4, {}),
]


def names(members):
    return [m.name for m in members]


def test_no_filters_returns_everyone():
    assert names(filter_members(MEMBERS, {}, "", "")) == ["n0", "n1", "n2", "web-10"]


def test_regexes_are_anchored():
    assert names(filter_members(MEMBERS, {"role": "back"}, "", "")) == []
    assert names(filter_members(MEMBERS, {"role": "back.*"}, "", "")) == ["n1", "n2"]
    assert names(filter_members(MEMBERS, {}, "", "n")) == []
    assert names(filter_members(MEMBERS, {}, "", "n[02]")) == ["n0", "n2"]


def test_alternation_binds_like_go():
    # ^left|failed$ is (^left)|(failed$): serf -status='left|failed' relies on it
    assert names(filter_members(MEMBERS, {}, "left|failed", "")) == ["n1", "n2"]


def test_missing_tag_matches_as_empty_string():
    assert names(filter_members(MEMBERS, {"weight": ""}, "", "")) == ["n0", "n1", "web-10"]
    assert names(filter_members(MEMBERS, {"weight": "10", "role": "backend"}, "", "")) == ["n2"]


def test_dollar_does_not_match_before_a_trailing_newline():
    member = ClusterMember("a\n", "127.0.0.1", 1)
    assert filter_members([member], {}, "", "a") == []


def test_bad_regex_reports_serf_message():
    with pytest.raises(InvalidRegex, match=r"^Failed to compile regex: "):
        filter_members(MEMBERS, {}, "(", "")


def test_parse_event_filters():
    assert parse_event_filters("") == [EventFilter("*")]
    assert parse_event_filters("member-join,user:deploy,query:ping") == [
        EventFilter("member-join"), EventFilter("user", "deploy"), EventFilter("query", "ping")]
    assert not EventFilter("bogus").valid
    assert all(f.valid for f in parse_event_filters("member-reap,user,query,*"))


def test_event_matching():
    join = MemberEvent(EventType.MEMBER_JOIN, (MEMBERS[0],))
    deploy = UserEvent(1, "deploy", b"")
    other = UserEvent(2, "other", b"")
    ping = QueryEvent(1, 9, "ping", b"", "n0", 0.0)
    assert event_matches(parse_event_filters("*"), ping)
    assert event_matches(parse_event_filters("member-join"), join)
    assert not event_matches(parse_event_filters("member-leave"), join)
    assert event_matches(parse_event_filters("user:deploy"), deploy)
    assert not event_matches(parse_event_filters("user:deploy"), other)
    assert event_matches(parse_event_filters("user"), other)
    assert event_matches(parse_event_filters("query:ping"), ping)
    assert not event_matches(parse_event_filters("user:ping"), ping)


@pytest.mark.parametrize(
    ("minimum", "level", "passes"),
    [
        ("INFO", "DEBUG", False),
        ("INFO", "INFO", True),
        ("INFO", "ERR", True),
        ("TRACE", "TRACE", True),
        ("ERR", "WARN", False),
        ("WARN", "CUSTOM", True),  # logutils lets unknown levels through
    ],
)
def test_log_levels(minimum, level, passes):
    assert log_level_passes(minimum, level) is passes


def test_filters_run_in_linear_time_as_go_regexp():
    """A client's filter must not stall the agent (Python's re backtracks on this)."""
    import time

    crowd = [ClusterMember("a" * n + "!", "127.0.0.1", n, {"role": "a" * n + "!"})
             for n in range(20, 40)]
    started = time.process_time()
    assert filter_members(crowd, {"role": "(a+)+"}, "", "(a+)+") == []
    assert time.process_time() - started < 1.0


def test_names_that_are_not_utf8_are_matched_not_raised():
    odd = ClusterMember(b"n\xff".decode("utf-8", "surrogateescape"), "127.0.0.1", 1, {})
    assert names(filter_members([odd], {}, "", "n.*")) == [odd.name]
