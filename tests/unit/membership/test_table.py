"""The member table's precedence rules, applied directly (no node, no wire).

Each rule returns a :class:`Verdict`; these tests pin what each kind of
claim does to a row, what it queues and reports, and what it asks of the
caller. The same rules seen through a whole node are in test_node.py.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from swimlib.config import Config
from swimlib.membership import domains
from swimlib.membership.awareness import Awareness
from swimlib.membership.broadcasts import BroadcastQueue
from swimlib.membership.rows import RowCache
from swimlib.membership.table import MemberTable, Verdict
from swimlib.membership.timers import Timers
from swimlib.membership.types import (
    DeathDeclared,
    Effect,
    EventKind,
    MemberState,
    NodeEvent,
    Refuted,
)
from swimlib.wire.messages import DEFAULT_VSN, Alive, Dead, Suspect

HIGH = domains.INCARNATION_FREE_LIMIT + domains.NEW_MEMBER_SLACK


class World:
    """A table with everything it writes to laid out for inspection."""

    def __init__(self, **cfg: object) -> None:
        self.stats: Counter[str] = Counter()
        self.effects: list[Effect] = []
        self.broadcasts = BroadcastQueue()
        self.timers = Timers()
        self.awareness = Awareness(8)
        self.table = MemberTable(
            "me", "127.0.0.1", 7946, Config.lan(**cfg), random.Random(1), DEFAULT_VSN,
            stats=self.stats, effects=self.effects, broadcasts=self.broadcasts,
            timers=self.timers, awareness=self.awareness, row_cache=RowCache())
        self.table.announce(b"", 0.0)
        self.effects.clear()

    def alive(self, name: str, inc: int, addr: str = "127.0.0.2", meta: bytes = b"",
              now: float = 0.0, **kw: bool) -> Verdict:
        return self.table.apply_alive(Alive(inc, name, addr, 7946, meta, DEFAULT_VSN), now, **kw)

    def state(self, name: str) -> tuple[MemberState, int] | None:
        st = self.table.get(name)
        return None if st is None else (st.state, st.incarnation)

    def events(self) -> list[tuple[EventKind, str, MemberState]]:
        return [(e.kind, e.member.name, e.member.state) for e in self.effects
                if isinstance(e, NodeEvent)]


def test_announce_makes_our_own_row_alive_at_incarnation_one() -> None:
    w = World()
    assert w.state("me") == (MemberState.ALIVE, 1)
    assert w.table.local_incarnation == 1


class TestAlive:
    def test_new_member_is_applied_reported_and_broadcast(self) -> None:
        w = World()
        assert w.alive("a", 1) is Verdict.APPLIED
        assert w.state("a") == (MemberState.ALIVE, 1)
        assert w.events() == [(EventKind.JOIN, "a", MemberState.ALIVE)]
        assert len(w.broadcasts) == 2  # ours and a's

    def test_same_or_older_incarnation_is_ignored(self) -> None:
        w = World()
        w.alive("a", 5)
        assert w.alive("a", 5) is Verdict.IGNORED
        assert w.alive("a", 4) is Verdict.IGNORED
        assert w.state("a") == (MemberState.ALIVE, 5)

    def test_newer_incarnation_with_new_meta_is_an_update(self) -> None:
        w = World()
        w.alive("a", 1)
        assert w.alive("a", 2, meta=b"x") is Verdict.APPLIED
        assert w.events()[-1] == (EventKind.UPDATE, "a", MemberState.ALIVE)

    def test_implausible_jump_of_a_known_member_asks_for_a_recheck(self) -> None:
        w = World()
        w.alive("a", 1)
        assert w.alive("a", HIGH + 2) is Verdict.RECHECK
        assert w.state("a") == (MemberState.ALIVE, 1)
        assert w.stats["drop.alive_incarnation_implausible"] == 1

    def test_the_members_own_word_may_jump(self) -> None:
        w = World()
        w.alive("a", 1)
        assert w.alive("a", HIGH + 2, authoritative=True) is Verdict.APPLIED
        assert w.state("a") == (MemberState.ALIVE, HIGH + 2)

    def test_unknown_member_beyond_the_new_member_limit_is_refused(self) -> None:
        w = World()
        assert w.alive("a", HIGH + 1) is Verdict.IGNORED
        assert w.state("a") is None

    def test_live_member_at_another_address_is_checked_never_moved_on_hearsay(self) -> None:
        w = World()
        w.alive("a", 1)
        assert w.alive("a", 2, addr="127.0.0.3") is Verdict.CHECK_ADDRESS
        assert w.stats["conflict.address"] == 1
        # Its own word from the new address: ask the old one first.
        assert w.alive("a", 2, addr="127.0.0.3", authoritative=True) is Verdict.CHECK_HOLDER
        assert w.table.get("a").addr == "127.0.0.2"  # type: ignore[union-attr]

    def test_live_member_moves_when_nobody_answers_at_the_old_address(self) -> None:
        w = World()
        w.alive("a", 5)
        w.effects.clear()
        assert w.alive("a", 1, addr="127.0.0.3", holder_gone=True) is Verdict.APPLIED
        assert w.table.get("a").addr == "127.0.0.3"  # type: ignore[union-attr]
        assert w.events() == [(EventKind.UPDATE, "a", MemberState.ALIVE)]  # Serf: member-update
        assert w.stats["address.taken_over"] == 1

    def test_a_claim_to_be_us_elsewhere_is_never_applied(self) -> None:
        w = World()
        assert w.alive("me", 9, addr="127.0.0.3", authoritative=True) is Verdict.IGNORED
        assert w.table.get("me").addr == "127.0.0.1"  # type: ignore[union-attr]

    def test_remembered_elsewhere_we_announce_ourselves_above_it(self) -> None:
        w = World()
        w.table.catch_up_incarnation(7)
        assert w.state("me") == (MemberState.ALIVE, 8)
        w.table.catch_up_incarnation(3)  # already above: nothing to do
        assert w.state("me") == (MemberState.ALIVE, 8)

    def test_dead_member_at_another_address_asks_for_an_address_check(self) -> None:
        w = World()
        w.alive("a", 1)
        w.table.apply_dead(Dead(1, "a", "a"), 0.0)
        assert w.alive("a", 2, addr="127.0.0.3") is Verdict.CHECK_ADDRESS
        assert w.state("a") == (MemberState.LEFT, 1)
        assert w.alive("a", 2, addr="127.0.0.3", authoritative=True) is Verdict.APPLIED
        assert w.table.get("a").addr == "127.0.0.3"  # type: ignore[union-attr]

    def test_stale_alive_about_ourselves_is_refuted(self) -> None:
        w = World()
        assert w.alive("me", 1, addr="127.0.0.1", meta=b"other") is Verdict.IGNORED
        assert w.table.local_incarnation == 2
        assert [type(e) for e in w.effects] == [Refuted]

    def test_after_our_leave_an_alive_about_us_changes_nothing(self) -> None:
        w = World()
        w.table.leave(0.0)
        assert w.alive("me", 9, addr="127.0.0.1") is Verdict.IGNORED
        assert w.state("me") == (MemberState.LEFT, 1)


class TestSuspectAndDead:
    def test_suspect_of_a_live_member_starts_a_suspicion(self) -> None:
        w = World()
        w.alive("a", 1)
        assert w.table.apply_suspect(Suspect(1, "a", "me"), 0.0) is Verdict.SUSPECTED
        assert w.state("a") == (MemberState.SUSPECT, 1)
        assert w.timers.next_deadline() is not None

    def test_old_suspect_is_ignored_and_a_confirmation_is_applied(self) -> None:
        w = World()
        for i in range(8):  # confirmations are expected only in a big enough cluster
            w.alive(f"m{i}", 1, addr=f"127.0.1.{i}")
        w.alive("a", 2)
        assert w.table.apply_suspect(Suspect(1, "a", "x"), 0.0) is Verdict.IGNORED
        w.table.apply_suspect(Suspect(2, "a", "x"), 0.0)
        assert w.table.apply_suspect(Suspect(2, "a", "y"), 0.0) is Verdict.APPLIED
        assert w.table.apply_suspect(Suspect(2, "a", "y"), 0.0) is Verdict.IGNORED

    def test_suspicion_expires_into_dead_with_a_death_declared(self) -> None:
        w = World()
        w.alive("a", 1)
        w.table.apply_suspect(Suspect(1, "a", "me"), 0.0)
        w.timers.run_due(3600.0)
        assert w.state("a") == (MemberState.DEAD, 1)
        assert any(isinstance(e, DeathDeclared) for e in w.effects)

    def test_newer_alive_cancels_the_suspicion(self) -> None:
        w = World()
        w.alive("a", 1)
        w.table.apply_suspect(Suspect(1, "a", "me"), 0.0)
        w.alive("a", 2)
        w.timers.run_due(3600.0)
        assert w.state("a") == (MemberState.ALIVE, 2)

    @pytest.mark.parametrize(("source", "state"), [("a", MemberState.LEFT),
                                                   ("x", MemberState.DEAD)])
    def test_dead_from_the_member_itself_is_left(self, source: str,
                                                 state: MemberState) -> None:
        w = World()
        w.alive("a", 1)
        assert w.table.apply_dead(Dead(1, "a", source), 0.0) is Verdict.APPLIED
        assert w.state("a") == (state, 1)
        assert w.events()[-1] == (EventKind.LEAVE, "a", state)

    def test_implausible_dead_asks_for_a_recheck(self) -> None:
        w = World()
        w.alive("a", 1)
        assert w.table.apply_dead(Dead(HIGH + 2, "a", "x"), 0.0) is Verdict.RECHECK
        assert w.state("a") == (MemberState.ALIVE, 1)

    @pytest.mark.parametrize("kind", ["suspect", "dead"])
    def test_accusation_about_ourselves_is_refuted_and_counts_against_health(
            self, kind: str) -> None:
        w = World()
        if kind == "suspect":
            w.table.apply_suspect(Suspect(7, "me", "x"), 0.0)
        else:
            w.table.apply_dead(Dead(7, "me", "x"), 0.0)
        assert w.state("me") == (MemberState.ALIVE, 8)
        assert w.awareness.score == 1
        assert [e.kind for e in w.effects if isinstance(e, Refuted)] == [kind]

    def test_accusation_at_the_top_incarnation_cannot_be_refuted(self) -> None:
        w = World()
        w.table.local_incarnation = domains.INCARNATION_MAX
        w.table.me.incarnation = domains.INCARNATION_MAX
        w.table.apply_suspect(Suspect(domains.INCARNATION_MAX, "me", "x"), 0.0)
        assert w.stats["refute.incarnation_exhausted"] == 1
        assert w.state("me") == (MemberState.ALIVE, domains.INCARNATION_MAX)


class TestRoundsAndDraws:
    def test_a_new_round_purges_long_dead_members_only(self) -> None:
        w = World()
        w.alive("a", 1)
        w.alive("b", 1)
        w.table.apply_dead(Dead(1, "a", "x"), 0.0)
        w.table.new_round(1.0)
        assert w.state("a") is not None
        w.table.new_round(1000.0)
        assert w.state("a") is None and w.state("b") is not None
        assert sorted(s.name for s in w.table.nodes) == ["b", "me"]

    def test_draws_prefer_members_we_heard_from(self) -> None:
        w = World()
        for i in range(20):
            w.alive(f"m{i}", 1, addr=f"127.0.1.{i}")
        heard = w.table.get("m7")
        assert heard is not None
        w.table.set_heard(heard, True)
        picks = {w.table.random_heard_first(1, lambda s: s.name == "me")[0].name
                 for _ in range(20)}
        assert picks == {"m7"}
        w.table.set_heard(heard, False)
        picks = {w.table.random_heard_first(1, lambda s: s.name == "me")[0].name
                 for _ in range(50)}
        assert len(picks) > 5

    def test_rechecks_are_rate_limited_per_member(self) -> None:
        w = World()
        w.alive("a", 1)
        st = w.table.get("a")
        assert st is not None
        assert w.table.may_recheck(st, 100.0)
        assert not w.table.may_recheck(st, 100.0 + domains.VERIFY_INTERVAL / 2)
        assert w.table.may_recheck(st, 100.0 + domains.VERIFY_INTERVAL)
