from swimlib.cluster.coalesce import EventCoalescer
from swimlib.cluster.events import ClusterMember, EventType, MemberEvent, QueryEvent, UserEvent


def member(name: str, role: str = "web") -> ClusterMember:
    return ClusterMember(name, "127.0.0.1", 7946, {"role": role})


def join(name: str) -> MemberEvent:
    return MemberEvent(EventType.MEMBER_JOIN, (member(name),))


def test_burst_of_joins_becomes_one_event_after_quiet_period():
    c = EventCoalescer()
    assert c.push(join("a"), 0.0) == []
    assert c.push(join("b"), 0.5) == []
    assert c.next_deadline() == 1.5
    assert c.flush_due(1.4) == []
    (event,) = c.flush_due(1.5)
    assert event.type == EventType.MEMBER_JOIN
    assert [m.name for m in event.members] == ["a", "b"]


def test_steady_trickle_is_flushed_at_the_coalesce_period():
    c = EventCoalescer()
    for i in range(10):
        c.push(join(f"n{i}"), i * 0.5)
        if c.next_deadline() is not None and c.next_deadline() <= i * 0.5 + 0.5:
            break
    assert c.next_deadline() == 3.0


def test_latest_event_per_member_wins_and_repeats_are_dropped():
    c = EventCoalescer()
    c.push(join("a"), 0.0)
    c.push(MemberEvent(EventType.MEMBER_FAILED, (member("a"),)), 0.1)
    (event,) = c.flush_due(10.0)
    assert event.type == EventType.MEMBER_FAILED
    c.push(MemberEvent(EventType.MEMBER_FAILED, (member("a"),)), 11.0)
    assert c.flush_due(20.0) == []
    # ...but updates are always delivered, and only once per flush
    c.push(MemberEvent(EventType.MEMBER_UPDATE, (member("a", "db"),)), 21.0)
    assert len(c.flush_due(30.0)) == 1
    assert c.flush_due(40.0) == []


def test_user_events_keep_only_the_newest_ltime_per_name():
    c = EventCoalescer()
    c.push(UserEvent(1, "deploy", b"v1"), 0.0)
    c.push(UserEvent(3, "deploy", b"v3"), 0.1)
    c.push(UserEvent(2, "deploy", b"v2"), 0.2)
    c.push(UserEvent(3, "other", b"x"), 0.3)
    out = c.flush_due(5.0)
    assert [(e.name, e.payload) for e in out] == [("deploy", b"v3"), ("other", b"x")]


def test_queries_and_non_coalescing_events_pass_through():
    c = EventCoalescer()
    q = QueryEvent(1, 1, "q", b"", "n", 5.0)
    u = UserEvent(1, "now", b"", coalesce=False)
    assert c.push(q, 0.0) == [q]
    assert c.push(u, 0.0) == [u]
    assert c.next_deadline() is None


def test_zero_period_disables_member_coalescing():
    c = EventCoalescer(member_period=0)
    e = join("a")
    assert c.push(e, 0.0) == [e]
