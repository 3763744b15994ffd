"""Snapshot file: Serf's line format, buffering, compaction, leave/rejoin, failed members."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from swimlib.agent.snapshot import (
    BYTES_PER_NODE,
    FLUSH_INTERVAL,
    MIN_COMPACT_SIZE,
    FileStore,
    PreviousNode,
    SnapshotReplay,
    Snapshotter,
    parse_snapshot,
    read_snapshot,
)
from swimlib.cluster.events import ClusterMember, EventType, MemberEvent, QueryEvent, UserEvent

SERF_LINE_PREFIXES = ("alive: ", "not-alive: ", "clock: ", "event-clock: ", "query-clock: ")


class MemoryStore:
    """A SnapshotStore in memory that records syncs and can be made to fail."""

    def __init__(self, initial: bytes = b"") -> None:
        self.data = bytearray(initial)
        self.syncs = 0
        self.replaces = 0
        self.closed = False
        self.fail_writes = False
        self.fail_replace = False

    def read(self) -> bytes:
        return bytes(self.data)

    def size(self) -> int:
        return len(self.data)

    def write(self, data: bytes) -> None:
        if self.fail_writes:
            raise OSError(28, "No space left on device")
        self.data += data

    def sync(self) -> None:
        if self.fail_writes:
            raise OSError(28, "No space left on device")
        self.syncs += 1

    def replace(self, data: bytes) -> None:
        if self.fail_replace:
            raise OSError(28, "No space left on device")
        self.replaces += 1
        self.data = bytearray(data)

    def close(self) -> None:
        self.closed = True

    @property
    def text(self) -> str:
        return self.data.decode()


def member(name: str, ip: str = "", port: int = 7946) -> ClusterMember:
    return ClusterMember(name, ip or f"10.0.0.{int(name[1:]) % 250 + 1}", port, {"role": "r"})


def ev(kind: EventType, *names: str) -> MemberEvent:
    return MemberEvent(kind, tuple(member(n) for n in names))


JOIN, LEAVE, FAILED, REAP, UPDATE = (
    EventType.MEMBER_JOIN,
    EventType.MEMBER_LEAVE,
    EventType.MEMBER_FAILED,
    EventType.MEMBER_REAP,
    EventType.MEMBER_UPDATE,
)


def serf_replay(text: str, rejoin_after_leave: bool = False) -> tuple[dict[str, str], int]:
    """Go's Snapshotter.replay, transcribed: the alive set Serf would rebuild, and the number
    of lines it would warn about as unrecognized."""
    alive: dict[str, str] = {}
    warnings = 0
    lines = text.split("\n")[:-1]  # ReadString('\n'): an unterminated last line is dropped
    for line in lines:
        if line.startswith("alive: "):
            name, _, addr = line[len("alive: ") :].rpartition(" ")
            alive[name] = addr
        elif line.startswith("not-alive: "):
            alive.pop(line[len("not-alive: ") :], None)
        elif line.startswith(("clock: ", "event-clock: ", "query-clock: ", "coordinate: ")):
            pass
        elif line == "leave":
            if not rejoin_after_leave:
                alive.clear()
        elif line.startswith("#"):
            pass
        else:
            warnings += 1
    return alive, warnings


# --------------------------------------------------------------------------- reading


def test_replay_of_every_serf_line_type() -> None:
    text = (
        "# written by serf\n"
        "alive: n1 10.0.0.1:7946\n"
        "alive: n2 10.0.0.2:7946\n"
        'coordinate: {"Vec":[0]}\n'
        "clock: 7\n"
        "event-clock: 3\n"
        "query-clock: 9\n"
        "not-alive: n1\n"
        "alive: web server 1 [2001:db8::1]:7946\n"
        "clock: 8\n"
    )
    replay = parse_snapshot(text)
    assert replay == SnapshotReplay(
        alive=(
            PreviousNode("n2", "10.0.0.2:7946"),
            PreviousNode("web server 1", "[2001:db8::1]:7946"),
        ),
        failed=(),
        last_clock=8,
        last_event_clock=3,
        last_query_clock=9,
        bad_lines=0,
    )


def test_leave_clears_members_and_clocks_unless_rejoin() -> None:
    text = (
        "alive: n1 10.0.0.1:1\n"
        "not-alive: n2\n# failed: n2 10.0.0.2:1\n"
        "clock: 5\nevent-clock: 4\nquery-clock: 3\n"
        "leave\n"
    )
    assert parse_snapshot(text) == SnapshotReplay()
    kept = parse_snapshot(text, rejoin_after_leave=True)
    assert kept.alive == (PreviousNode("n1", "10.0.0.1:1"),)
    assert kept.failed == (PreviousNode("n2", "10.0.0.2:1"),)
    assert (kept.last_clock, kept.last_event_clock, kept.last_query_clock) == (5, 4, 3)
    # A restart after the leave rejoined: what follows the leave line counts.
    again = parse_snapshot(text + "alive: n3 10.0.0.3:1\nclock: 9\n")
    assert again.alive == (PreviousNode("n3", "10.0.0.3:1"),) and again.last_clock == 9


@pytest.mark.parametrize(
    "line",
    [
        "alive: n1",  # no address
        "alive: n1 10.0.0.1",  # no port
        "alive: n1 10.0.0.1:99999",
        "alive: n1 10.0.0.1:x",
        "clock: abc",
        "clock: -1",
        "clock:  5",
        "clock: +5",
        "clock: 5_0",
        f"event-clock: {2**64}",
        "query-clock: ",
        "bogus: 1",
        "",
        "# failed: n9",
        "Leave",
    ],
)
def test_bad_lines_are_counted_and_skipped(line: str) -> None:
    text = f"alive: n1 10.0.0.1:1\nclock: 4\n{line}\nalive: n2 10.0.0.2:1\n"
    replay = parse_snapshot(text)
    assert replay.bad_lines == 1
    assert [n.name for n in replay.alive] == ["n1", "n2"]
    assert replay.last_clock == 4


def test_truncated_last_line_is_skipped_like_serf() -> None:
    replay = parse_snapshot("alive: n1 10.0.0.1:1\nalive: n2 10.0.")
    assert replay.alive == (PreviousNode("n1", "10.0.0.1:1"),) and replay.bad_lines == 1


def test_garbage_never_raises() -> None:
    rng = random.Random(3)
    for _ in range(200):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(200)))
        parse_snapshot(blob.decode("utf-8", "surrogateescape"))
    many = "junk\n" * 1000
    assert parse_snapshot(many).bad_lines == 1000


def test_read_snapshot_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_snapshot(tmp_path / "none") == SnapshotReplay()


def test_failed_memory_replay_rules() -> None:
    text = (
        "alive: n1 10.0.0.1:1\nalive: n2 10.0.0.2:1\nalive: n3 10.0.0.3:1\nalive: n4 10.0.0.4:1\n"
        "not-alive: n1\n# failed: n1 10.0.0.1:1\n"
        "not-alive: n2\n# failed: n2 10.0.0.2:1\n"
        "not-alive: n3\n# failed: n3 10.0.0.3:1\n"
        "alive: n2 10.0.0.2:1\n"  # n2 came back
        "not-alive: n3\n"  # n3 reaped (or left)
    )
    replay = parse_snapshot(text)
    assert [n.name for n in replay.alive] == ["n4", "n2"]
    assert replay.failed == (PreviousNode("n1", "10.0.0.1:1"),)
    capped = parse_snapshot(
        "".join(f"not-alive: f{i}\n# failed: f{i} 10.0.1.{i}:1\n" for i in range(10)),
        max_failed=3,
    )
    assert [n.name for n in capped.failed] == ["f9", "f8", "f7"]


def test_rejoin_candidates_alive_shuffled_then_failed_newest_first() -> None:
    replay = SnapshotReplay(
        alive=tuple(PreviousNode(f"a{i}", f"10.0.0.{i}:1") for i in range(6)),
        failed=(PreviousNode("f2", "10.0.1.2:1"), PreviousNode("f1", "10.0.1.1:1")),
    )
    first = replay.rejoin_candidates(random.Random(1), exclude={"a3"})
    names = [n.name for n in first]
    assert sorted(names[:5]) == ["a0", "a1", "a2", "a4", "a5"]
    assert names[5:] == ["f2", "f1"]
    again = replay.rejoin_candidates(random.Random(1), exclude={"a3"})
    assert again == first  # deterministic for a seeded rng
    orders = {tuple(n.name for n in replay.rejoin_candidates(random.Random(s))) for s in range(20)}
    assert len(orders) > 1  # but really shuffled


# --------------------------------------------------------------------------- writing


def test_lines_written_are_serfs() -> None:
    store = MemoryStore()
    snap = Snapshotter(store)
    snap.record(ev(JOIN, "n1", "n2"), now=0.0, clock=5)
    snap.record(ev(LEAVE, "n1"), now=1.0, clock=6)
    snap.record(ev(UPDATE, "n2"), now=2.0)
    snap.record(UserEvent(ltime=3, name="deploy", payload=b""), now=3.0)
    snap.record(UserEvent(ltime=2, name="old", payload=b""), now=4.0)  # older: ignored
    snap.record(QueryEvent(4, 1, "ping", b"", "n2", 0.0), now=5.0)
    snap.update_clock(6, now=6.0)  # unchanged (written as 5)
    snap.update_clock(9, now=7.0)
    assert store.text == (
        "alive: n1 10.0.0.2:7946\nalive: n2 10.0.0.3:7946\nclock: 4\n"
        "not-alive: n1\nclock: 5\n"
        "event-clock: 3\n"
        "query-clock: 4\n"
        "clock: 8\n"
    )
    assert serf_replay(store.text) == ({"n2": "10.0.0.3:7946"}, 0)


def test_a_member_that_moved_is_remembered_at_its_new_address() -> None:
    store = MemoryStore()
    snap = Snapshotter(store)
    snap.record(ev(JOIN, "n1"), now=0.0)
    snap.record(MemberEvent(UPDATE, (member("n1", "10.0.0.99", 8000),)), now=1.0)
    snap.record(ev(UPDATE, "n1"), now=2.0)  # back: recorded again; a tags-only update is not
    snap.record(ev(UPDATE, "n1"), now=3.0)
    snap.close(4.0)
    assert store.text.count("alive: n1 ") == 3
    assert serf_replay(store.text) == ({"n1": "10.0.0.2:7946"}, 0)
    assert parse_snapshot(store.text.replace("alive: n1 10.0.0.2:7946\n", "", 1)
                          ).alive[0].addr == "10.0.0.2:7946"


def test_addresses_are_formatted_like_go_tcpaddr() -> None:
    store = MemoryStore()
    snap = Snapshotter(store)
    members = (
        member("n1", "2001:db8::1"),
        member("n2", "::ffff:192.0.2.7"),
        member("n3", "192.0.2.8", 17000),
    )
    snap.record(MemberEvent(JOIN, members), now=0.0)
    snap.tick(now=FLUSH_INTERVAL)
    assert store.text == (
        "alive: n1 [2001:db8::1]:7946\nalive: n2 192.0.2.7:7946\nalive: n3 192.0.2.8:17000\n"
    )


def test_writes_are_buffered_for_half_a_second() -> None:
    store = MemoryStore()
    snap = Snapshotter(store)
    snap.record(ev(JOIN, "n1"), now=10.0)  # first line: written at once
    assert store.text == "alive: n1 10.0.0.2:7946\n"
    snap.record(ev(JOIN, "n2"), now=10.2)
    snap.record(ev(JOIN, "n3"), now=10.49)
    assert store.text == "alive: n1 10.0.0.2:7946\n"  # buffered
    snap.tick(now=10.3)  # too early
    assert store.text.count("\n") == 1
    snap.tick(now=10.0 + FLUSH_INTERVAL)  # Serf would wait for the next line; we flush
    assert store.text.count("\n") == 3
    snap.record(ev(JOIN, "n4"), now=10.6)
    assert store.text.count("\n") == 3
    snap.record(ev(JOIN, "n5"), now=11.0)
    assert store.text.count("\n") == 5
    assert store.syncs == 0  # no fsync on the hot path


def test_tick_records_the_clock() -> None:
    store = MemoryStore()
    snap = Snapshotter(store)
    snap.tick(now=0.0, clock=1)  # 0: nothing new
    assert store.text == ""
    snap.tick(now=0.5, clock=3)
    assert store.text == "clock: 2\n"


def test_leave_forgets_members_writes_leave_and_syncs() -> None:
    store = MemoryStore()
    snap = Snapshotter(store)
    snap.record(ev(JOIN, "n1", "n2"), now=0.0)
    snap.record(ev(FAILED, "n2"), now=0.1)
    snap.leave(now=0.2)
    assert store.text.endswith("leave\n") and store.syncs == 1
    assert snap.alive == {} and snap.failed == {}
    snap.record(ev(JOIN, "n3"), now=5.0)  # nothing is recorded after a leave (Serf)
    assert "n3" not in store.text
    assert parse_snapshot(store.text) == SnapshotReplay()
    assert serf_replay(store.text) == ({}, 0)


def test_rejoin_after_leave_keeps_members() -> None:
    store = MemoryStore()
    snap = Snapshotter(store, rejoin_after_leave=True)
    snap.record(ev(JOIN, "n1"), now=0.0)
    snap.leave(now=1.0)
    assert snap.alive == {"n1": "10.0.0.2:7946"}
    again = Snapshotter(MemoryStore(store.read()), rejoin_after_leave=True)
    assert again.replay.alive == (PreviousNode("n1", "10.0.0.2:7946"),)
    assert Snapshotter(MemoryStore(store.read())).replay.alive == ()


def test_close_flushes_syncs_and_is_idempotent() -> None:
    store = MemoryStore()
    snap = Snapshotter(store)
    snap.record(ev(JOIN, "n1"), now=0.0)
    snap.record(ev(JOIN, "n2"), now=0.1)  # buffered
    snap.close(now=0.2, clock=12)
    assert store.text.endswith("alive: n2 10.0.0.3:7946\nclock: 11\n")
    assert store.syncs == 1 and store.closed
    snap.close(now=0.3)
    snap.record(ev(JOIN, "n3"), now=0.4)
    snap.tick(now=5.0, clock=50)
    assert store.syncs == 1 and "n3" not in store.text and "clock: 49" not in store.text


def test_failed_members_are_remembered_in_a_way_serf_ignores() -> None:
    store = MemoryStore()
    snap = Snapshotter(store)
    snap.record(ev(JOIN, "n1", "n2", "n3", "n4"), now=0.0)
    snap.record(ev(FAILED, "n2"), now=1.0)
    snap.record(ev(FAILED, "n3"), now=2.0)
    snap.record(ev(LEAVE, "n4"), now=3.0)
    snap.close(now=4.0)
    assert "not-alive: n2\n# failed: n2 10.0.0.3:7946\n" in store.text
    replay = Snapshotter(MemoryStore(store.read())).replay
    assert replay.alive == (PreviousNode("n1", "10.0.0.2:7946"),)
    assert [n.name for n in replay.failed] == ["n3", "n2"]  # newest failure first
    # Real Serf's replay: same alive set, and no warnings (our extra lines are comments).
    assert serf_replay(store.text) == ({"n1": "10.0.0.2:7946"}, 0)


def test_failed_member_forgotten_on_rejoin_leave_and_reap() -> None:
    store = MemoryStore()
    snap = Snapshotter(store, max_failed=2)
    snap.record(ev(JOIN, "n1", "n2", "n3", "n4", "n5"), now=0.0)
    snap.record(ev(FAILED, "n1", "n2", "n3", "n4"), now=1.0)
    assert list(snap.failed) == ["n3", "n4"]  # capped, oldest dropped
    snap.record(ev(JOIN, "n3"), now=2.0)
    snap.record(ev(REAP, "n4"), now=3.0)
    snap.record(ev(REAP, "n1"), now=3.0)  # not remembered any more: no line
    assert snap.failed == {}
    assert snap.alive == {"n5": "10.0.0.6:7946", "n3": "10.0.0.4:7946"}
    snap.close(now=4.0)
    assert store.text.count("not-alive: n4") == 2 and store.text.count("not-alive: n1") == 1
    replay = parse_snapshot(store.text, max_failed=2)
    assert replay.failed == () and {n.name for n in replay.alive} == {"n3", "n5"}


def test_newline_in_a_name_is_not_written() -> None:
    store = MemoryStore()
    snap = Snapshotter(store)
    snap.record(
        MemberEvent(
            JOIN, (member("n1"), ClusterMember("x\nalive: evil 1.2.3.4:1", "10.0.0.9", 1, {}))
        ),
        now=0.0,
    )
    assert snap.skipped_names == 1
    assert parse_snapshot(store.text).alive == (PreviousNode("n1", "10.0.0.2:7946"),)


def test_compaction_rewrites_state_atomically_and_keeps_serf_semantics() -> None:
    store = MemoryStore()
    snap = Snapshotter(store, min_compact_size=400)
    now, clock = 0.0, 1
    # Churn over few nodes: the log grows, the state does not.
    for i in range(60):
        name = f"n{i % 6}"
        now += 0.3
        clock += 1
        kind = (JOIN, FAILED, JOIN, LEAVE)[i % 4]
        snap.record(ev(kind, name), now=now, clock=clock)
    snap.record(UserEvent(ltime=7, name="e", payload=b""), now=now + 1)
    assert store.replaces >= 2 and snap.compactions == store.replaces
    assert len(store.data) <= snap.max_size()
    assert snap.failed  # the churn leaves some failed members to carry over
    snap.close(now=now + 2)
    replay = parse_snapshot(store.text)
    assert {n.name: n.addr for n in replay.alive} == snap.alive
    assert {n.name: n.addr for n in reversed(replay.failed)} == snap.failed
    assert replay.last_clock == clock - 1 and replay.last_event_clock == 7
    alive, warnings = serf_replay(store.text)
    assert alive == snap.alive and warnings == 0


def test_compaction_threshold_follows_serf_formula() -> None:
    snap = Snapshotter(MemoryStore())
    assert snap.max_size() == MIN_COMPACT_SIZE
    names = [f"n{i}" for i in range(1000)]
    snap.record(ev(JOIN, *names), now=0.0)
    assert snap.max_size() == 2 * BYTES_PER_NODE * 1000  # 256000 > 128 KiB


def test_compaction_after_leave_keeps_the_leave() -> None:
    store = MemoryStore()
    snap = Snapshotter(store, min_compact_size=60)
    snap.record(ev(JOIN, "n1"), now=0.0)
    snap.leave(now=1.0)
    for c in range(2, 40):
        snap.update_clock(c, now=float(c))
    assert store.replaces >= 1
    assert "leave\n" in store.text
    assert parse_snapshot(store.text) == SnapshotReplay(bad_lines=0)


def test_write_errors_are_counted_and_recovered_by_compaction(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    snap = Snapshotter(store)
    snap.record(ev(JOIN, "n1"), now=0.0)
    store.fail_writes = True
    store.fail_replace = True
    snap.record(ev(JOIN, "n2"), now=1.0)  # write fails, recovery compaction fails too
    snap.record(ev(JOIN, "n3"), now=2.0)  # write fails, recovery not retried yet
    assert snap.write_errors == 3 and store.replaces == 0
    assert "snapshot: write failed" in caplog.text
    store.fail_writes = False
    store.fail_replace = False
    snap.record(ev(JOIN, "n4"), now=40.0)  # works; nothing recovered yet
    store.fail_writes = True
    snap.record(ev(JOIN, "n5"), now=41.0)  # fails, 30 s since last attempt: compaction works
    assert store.replaces == 1
    assert {n.name for n in parse_snapshot(store.text).alive} == {"n1", "n2", "n3", "n4", "n5"}


# --------------------------------------------------------------------------- files


def test_file_round_trip_reopen_and_append(tmp_path: Path) -> None:
    path = tmp_path / "serf.snapshot"
    snap = Snapshotter.open(path)
    assert snap.replay == SnapshotReplay()
    snap.record(ev(JOIN, "n1", "n2"), now=0.0, clock=3)
    snap.record(ev(FAILED, "n2"), now=0.1, clock=4)
    snap.close(now=0.2)
    before = path.read_text()
    again = Snapshotter.open(path)
    assert again.replay.alive == (PreviousNode("n1", "10.0.0.2:7946"),)
    assert again.replay.failed == (PreviousNode("n2", "10.0.0.3:7946"),)
    assert again.replay.last_clock == 3
    again.record(ev(JOIN, "n3"), now=100.0)
    again.close(now=100.1)
    assert path.read_text() == before + "alive: n3 10.0.0.4:7946\n"
    assert read_snapshot(path) == Snapshotter.open(path).replay


def test_file_compaction_uses_compact_file_and_rename(tmp_path: Path) -> None:
    path = tmp_path / "snap"
    snap = Snapshotter.open(path, min_compact_size=300)
    for i in range(40):
        snap.record(ev(JOIN if i % 2 else FAILED, f"n{i % 3}"), now=float(i))
    assert snap.compactions >= 1
    assert not (tmp_path / "snap.compact").exists()
    alive, failed = snap.alive, snap.failed
    assert path.stat().st_size <= snap.max_size()
    snap.close(now=100.0)
    replay = read_snapshot(path)
    assert (
        {n.name: n.addr for n in replay.alive}
        == alive
        == {
            "n0": "10.0.0.1:7946",
            "n1": "10.0.0.2:7946",
        }
    )
    assert {n.name: n.addr for n in replay.failed} == failed == {"n2": "10.0.0.3:7946"}


def test_file_store_replace_is_atomic_for_readers(tmp_path: Path) -> None:
    path = tmp_path / "snap"
    store = FileStore(path)
    store.write(b"alive: n1 10.0.0.1:1\n")
    store.replace(b"alive: n2 10.0.0.2:1\n")
    store.write(b"clock: 3\n")  # appends go to the new file
    store.sync()
    store.close()
    assert path.read_bytes() == b"alive: n2 10.0.0.2:1\nclock: 3\n"


def test_bad_lines_in_a_file_are_skipped_and_the_rest_is_used(tmp_path: Path) -> None:
    path = tmp_path / "snap"
    path.write_bytes(b"alive: n1 10.0.0.1:1\n\xff\xfe garbage\nclock: x\nclock: 4\nalive: n2 ")
    snap = Snapshotter.open(path)
    assert snap.replay.bad_lines == 3
    assert snap.replay.alive == (PreviousNode("n1", "10.0.0.1:1"),)
    assert snap.replay.last_clock == 4
    snap.close(now=0.0)
