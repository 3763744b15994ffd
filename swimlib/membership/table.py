"""The member table and its precedence rules: the one place they live.

Every claim about a member -- an ``alive``, ``suspect`` or ``dead`` from a
datagram, a row of a push-pull, our own probe's verdict, our own leave --
goes through :meth:`MemberTable.apply_alive`, :meth:`~MemberTable.apply_suspect`
or :meth:`~MemberTable.apply_dead`. Each follows memberlist's ``state.go``
and SWIM section 4.2 (a higher incarnation overrides; we never kill on
hearsay; we refute claims about ourselves) plus the value domains of
:mod:`.domains`, changes the row, queues the broadcast, reports the member
event, and returns a :class:`Verdict`: what happened, or what the caller
must do next (re-check the member with itself, or check a claimed new
address). The table never sends anything itself.

The table also owns the order members are probed in (shuffled round robin,
new members at random positions: SWIM section 4.3) and the random draws
of gossip targets, helpers and sync peers, because both read and reshuffle
the same list with the node's random generator.
"""

from __future__ import annotations

import enum
import random
import sys
from collections import Counter
from collections.abc import Callable, Iterable

from swimlib.config import Config
from swimlib.membership import domains
from swimlib.membership.awareness import Awareness
from swimlib.membership.broadcasts import BroadcastQueue
from swimlib.membership.rows import NodeState, RowCache
from swimlib.membership.suspicion import (
    Suspicion,
    expected_confirmations,
    suspicion_min_timeout,
)
from swimlib.membership.timers import Timers
from swimlib.membership.types import (
    DeathDeclared,
    Effect,
    EventKind,
    Member,
    MemberState,
    NodeEvent,
    Refuted,
)
from swimlib.wire import codec
from swimlib.wire.messages import Alive, Dead, Message, Suspect


class Verdict(enum.Enum):
    """What applying one claim did, or what it asks of the caller."""

    #: Nothing changed (stale, refused or repeated).
    IGNORED = enum.auto()
    #: The row changed (or a suspicion was confirmed); broadcasts and events are queued.
    APPLIED = enum.auto()
    #: A live member became suspect: a new suspicion began here.
    SUSPECTED = enum.auto()
    #: Refused as an implausible jump: re-check the member with itself (a sync).
    RECHECK = enum.auto()
    #: Refused a move to a new address: check with whoever lives there.
    CHECK_ADDRESS = enum.auto()
    #: The member vouched for a new address itself while our row says it lives
    #: at the old one: ask the old address; if nobody answers, the name moves.
    CHECK_HOLDER = enum.auto()


def name_problem_for(config: Config, name: str) -> str | None:
    """Why ``name`` may not be a member's name here (None: it may)."""
    problem = domains.name_problem(name)
    if problem is None and config.validate_node_names:
        problem = domains.strict_name_problem(name)
    return problem


class MemberTable:
    """Rows by name and in probe order, with the rules that change them."""

    def __init__(self, name: str, addr: str, port: int, config: Config, rng: random.Random,
                 vsn: bytes, *, stats: Counter[str], effects: list[Effect],
                 broadcasts: BroadcastQueue, timers: Timers, awareness: Awareness,
                 row_cache: RowCache) -> None:
        self.name = name
        self.addr = addr
        self.port = port
        self.config = config
        self.vsn = vsn
        self._rng = rng
        self._lifeguard = config.lifeguard
        self._stats = stats
        self._effects = effects
        self._broadcasts = broadcasts
        self._timers = timers
        self._awareness = awareness
        self.row_cache = row_cache
        #: Probe order (shuffled round robin); the map holds the same rows by name.
        self.nodes: list[NodeState] = []
        self.by_name: dict[str, NodeState] = {}
        #: Our own incarnation counter (our row may lag it only between calls).
        self.local_incarnation = 0
        #: We left: our row stays dead and we refute nothing.
        self.left = False
        #: Our leave has been gossiped enough (its broadcast used its budget).
        self.leave_done = False
        #: Upper bound of the table's encoded size (see domains.MAX_TABLE_BYTES).
        self._table_bytes = 0
        #: Rows whose ``heard`` is set (so draws skip the filter while none is).
        self.heard_count = 0
        self._suspicions: dict[str, Suspicion] = {}
        #: When each member's view was last re-checked against the member itself.
        self._rechecked: dict[str, float] = {}

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self.nodes)

    def get(self, name: str) -> NodeState | None:
        return self.by_name.get(name)

    @property
    def me(self) -> NodeState:
        return self.by_name[self.name]

    def members(self) -> list[Member]:
        return [s.snapshot() for s in self.by_name.values()]

    def alive_count(self) -> int:
        return sum(1 for s in self.nodes if s.state == MemberState.ALIVE)

    def live_count(self) -> int:
        """Members not dead or left, self included (memberlist's NumMembers)."""
        return sum(1 for s in self.nodes if s.state <= MemberState.SUSPECT)

    def is_member_at(self, name: str, addr: tuple[str, int]) -> bool:
        """Whether ``name`` is another live (or suspect) member living at ``addr``."""
        st = self.by_name.get(name)
        return (st is not None and st.name != self.name and st.state <= MemberState.SUSPECT
                and (st.addr, st.port) == addr)

    def encoded_rows(self) -> list[bytes]:
        """Every row's push-pull bytes, in table order."""
        encoded = self.row_cache.encoded
        return [encoded(s) for s in self.nodes]

    def may_recheck(self, st: NodeState, now: float) -> bool:
        """Claim the right to re-check ``st`` with itself now (rate-limited per
        member by :func:`domains.may_verify`); True means the caller does."""
        if not domains.may_verify(self._rechecked.get(st.name), now):
            return False
        self._rechecked[st.name] = now
        return True

    # ------------------------------------------------------------------ random draws

    def random_members(self, k: int, exclude: Callable[[NodeState], bool]) -> list[NodeState]:
        """Up to ``k`` distinct random members passing the filter (memberlist kRandomNodes)."""
        nodes = self.nodes
        n = len(nodes)
        picked: list[NodeState] = []
        rand = self._rng.random
        for _ in range(3 * n):
            if len(picked) >= k:
                break
            st = nodes[int(rand() * n)]
            if exclude(st) or st in picked:
                continue
            picked.append(st)
        return picked

    def random_heard_first(self, k: int,
                           exclude: Callable[[NodeState], bool]) -> list[NodeState]:
        """Up to ``k`` random members we have heard from (else any, as memberlist).

        Anyone may announce members in an unencrypted cluster, and fake ones
        never answer. memberlist draws indirect-probe helpers, gossip targets
        and push-pull peers among all live members alike: a hundred fakes then
        take nearly every helper slot, and every failed probe of a fake misses
        the helpers' nacks, which Lifeguard reads as our own slowness; at the
        top of the awareness scale we probe eight times slower, so the fakes
        live eight times longer, and gossip and anti-entropy mostly go to
        them. Members that acked a ping of ours from their own address are
        real; once every live member has (a round of probes after it joins),
        this draws exactly as memberlist does. Part of Lifeguard here (it
        reads the same local-health signal); classic SWIM draws as before.
        """
        heard = (self.random_members(k, lambda s: exclude(s) or not s.heard)
                 if self.prefers_heard() else [])
        return heard or self.random_members(k, exclude)

    def prefers_heard(self) -> bool:
        """Whether draws favour members we have heard from (see random_heard_first)."""
        return self._lifeguard and self.heard_count > 0

    def set_heard(self, st: NodeState, heard: bool) -> None:
        if st.heard != heard:
            st.heard = heard
            self.heard_count += 1 if heard else -1

    # ------------------------------------------------------------------ membership changes

    def seed(self, members: Iterable[Member], now: float) -> None:
        """Install already-known members without gossip or events (simulations, tests)."""
        for m in members:
            if m.name in self.by_name:
                continue
            st = NodeState(sys.intern(m.name), sys.intern(m.addr), m.port, m.meta,
                           self.row_cache.vsn(m.vsn), m.incarnation, m.state, now)
            self._table_bytes += domains.row_cost(st.name, st.meta)
            self.by_name[st.name] = st
            self.nodes.append(st)
        self._rng.shuffle(self.nodes)

    def new_round(self, now: float) -> None:
        """End of a probe round: purge long-dead/left members, reshuffle the rest."""
        cutoff = now - self.config.gossip_to_the_dead_time
        keep: list[NodeState] = []
        for st in self.nodes:
            if st.dead_or_left() and st.state_change <= cutoff and st.name != self.name:
                self.set_heard(st, False)
                del self.by_name[st.name]
                self._table_bytes -= domains.row_cost(st.name, st.meta)
                self._suspicions.pop(st.name, None)
                self._rechecked.pop(st.name, None)
            else:
                keep.append(st)
        self._rng.shuffle(keep)
        self.nodes[:] = keep

    def announce(self, meta: bytes, now: float) -> None:
        """Our own alive at the next incarnation (start-up, new meta)."""
        self.local_incarnation += 1
        self.apply_alive(Alive(self.local_incarnation, self.name, self.addr, self.port, meta,
                               self.vsn), now, bootstrap=True)

    def leave(self, now: float) -> None:
        """Mark ourselves left: ``dead(self, From=self)``; we stop refuting."""
        self.left = True
        me = self.me
        self.apply_dead(Dead(me.incarnation, me.name, me.name), now)
        if not any(s.state == MemberState.ALIVE and s.name != self.name for s in self.nodes):
            self.leave_done = True

    # ------------------------------------------------------------------ value domains

    def refused_name(self, name: str, what: str) -> bool:
        """Count and refuse a name outside the domain (:func:`domains.name_problem`)."""
        problem = name_problem_for(self.config, name)
        if problem is None:
            return False
        self._stats[f"drop.{what}_{problem}"] += 1
        return True

    def _implausible(self, st: NodeState, claimed: int, what: str) -> bool:
        """Count an incarnation jump :func:`domains.plausible_incarnation` refuses."""
        if domains.plausible_incarnation(st.incarnation, claimed):
            return False
        self._stats[f"drop.{what}_incarnation_implausible"] += 1
        return True

    # ------------------------------------------------------------------ precedence rules

    def apply_alive(self, a: Alive, now: float, bootstrap: bool = False,
                    authoritative: bool = False, holder_gone: bool = False) -> Verdict:
        """Apply ``alive`` (SWIM: Alive(i) overrides Suspect/Alive(j) for i > j).

        ``authoritative``: the member's own row, from a stream we opened to
        its address (may jump its incarnation; see :mod:`.domains`).
        ``holder_gone``: a CHECK_HOLDER found nobody at the row's address.
        """
        if self.left and a.node == self.name:
            return Verdict.IGNORED  # a queued alive must not undo our leave
        vsn = a.vsn
        if len(vsn) != 6:
            # Go tolerates an empty Vsn, but it cannot be re-gossiped safely: drop it.
            self._stats["drop.alive_no_vsn"] += 1
            return Verdict.IGNORED
        if vsn[0] == 0 or vsn[1] == 0 or vsn[0] > vsn[1]:
            self._stats["drop.alive_bad_vsn"] += 1
            return Verdict.IGNORED
        st = self.by_name.get(a.node)
        if not bootstrap:
            if self.refused_name(a.node, "alive"):
                return Verdict.IGNORED
            if not domains.vsn_compatible(self.vsn, vsn):
                self._stats["drop.alive_incompatible_vsn"] += 1
                return Verdict.IGNORED
            problem = domains.address_problem(a.addr, a.port)
            if problem is not None:
                self._stats["drop.alive_" + problem] += 1
                return Verdict.IGNORED
            if st is None:
                if not domains.plausible_incarnation(None, a.incarnation):
                    self._stats["drop.alive_incarnation_implausible"] += 1
                    return Verdict.IGNORED
            elif not authoritative and self._implausible(st, a.incarnation, "alive"):
                return Verdict.RECHECK
        updates_addr = False
        is_new = st is None
        if st is None:
            cost = domains.row_cost(a.node, a.meta)
            if self._table_bytes + cost > domains.MAX_TABLE_BYTES and not bootstrap:
                self._stats["drop.alive_table_full"] += 1
                return Verdict.IGNORED
            self._table_bytes += cost
            st = NodeState(sys.intern(a.node), sys.intern(a.addr), a.port, a.meta,
                           self.row_cache.vsn(vsn), 0, MemberState.DEAD, now)
            self.by_name[st.name] = st
            # Insert at a random position: keeps the detection bound low (SWIM 4.3).
            nodes = self.nodes
            n = len(nodes)
            nodes.append(st)
            offset = int(self._rng.random() * (n + 1))
            nodes[offset], nodes[n] = nodes[n], nodes[offset]
            old_state = MemberState.DEAD
        else:
            if st.addr != a.addr or st.port != a.port:
                move = self._may_move(st, authoritative, holder_gone, now)
                if move is not Verdict.APPLIED:
                    return move
                updates_addr = True
            old_state = st.state
        is_local = st.name == self.name
        if a.incarnation <= st.incarnation and not (is_local or updates_addr or is_new):
            return Verdict.IGNORED
        if a.incarnation < st.incarnation and is_local:
            return Verdict.IGNORED
        self._suspicions.pop(a.node, None)
        old_meta = st.meta
        if not bootstrap and is_local:
            if (a.incarnation == st.incarnation and a.meta == st.meta
                    and a.vsn == self.vsn):
                return Verdict.IGNORED
            self._refute(st, a.incarnation, "alive", "")
            return Verdict.IGNORED
        self._broadcast(a.node, a)
        self._stats["msg.alive"] += 1  # memberlist.msg.alive: an alive applied
        st.row = None
        st.vsn = self.row_cache.vsn(vsn)
        st.incarnation = a.incarnation
        self._table_bytes += len(a.meta) - len(st.meta)
        st.meta = a.meta
        if st.addr != a.addr or st.port != a.port:
            self.set_heard(st, False)
        if st.addr != a.addr:
            st.addr = sys.intern(a.addr)
        st.port = a.port
        if st.state != MemberState.ALIVE:
            st.state = MemberState.ALIVE
            st.state_change = now
        if old_state >= MemberState.DEAD:
            self._effects.append(NodeEvent(EventKind.JOIN, st.snapshot()))
        elif old_meta != st.meta or updates_addr:
            self._effects.append(NodeEvent(EventKind.UPDATE, st.snapshot()))
        return Verdict.APPLIED

    def _may_move(self, st: NodeState, authoritative: bool, holder_gone: bool,
                  now: float) -> Verdict:
        """Whether a claim may move ``st`` to another address (APPLIED: it may).

        memberlist moves a member that left (or died longer than
        ``dead_node_reclaim_time`` ago) on anyone's word and refuses every
        other claim as a conflict. So a forged leave then a forged alive moved
        a live member to an address where nobody answers: it was declared dead
        there, and its own refutations from its real address were refused as
        conflicts until the dead row was reaped, a whole probe round later
        (minutes, with a hundred fake members). Here a member that left or died
        moves on its own word only, from any address: its row in the reply to a
        stream we opened to the new address. Any other claim asks the caller
        to open such a stream (CHECK_ADDRESS) and changes nothing.
        A ``dead_node_reclaim_time`` set by the operator still moves a member
        dead that long on anyone's word, as memberlist does.

        A member we still think alive (or suspect) is usually one restarted
        elsewhere before anyone noticed it die (memberlist#157): memberlist
        refuses the new address until the old one is declared dead, seconds
        to tens of seconds later. Here the member's own word from the new
        address (CHECK_ADDRESS first) asks the caller to ping the old address
        (CHECK_HOLDER); only if nobody answers there does the name move. A
        live holder answers, so a claimant cannot take a live member's name;
        two live processes with one name stay a counted conflict, the first
        holder keeping it, as in memberlist.
        """
        if st.name == self.name:
            self._stats["conflict.address"] += 1
            return Verdict.IGNORED
        if st.state < MemberState.DEAD:
            if holder_gone:
                self._stats["address.taken_over"] += 1
                return Verdict.APPLIED
            if authoritative:
                return Verdict.CHECK_HOLDER
            self._stats["conflict.address"] += 1
            return Verdict.CHECK_ADDRESS
        reclaim = self.config.dead_node_reclaim_time
        if authoritative or (st.state == MemberState.DEAD and reclaim > 0
                             and now - st.state_change > reclaim):
            self._stats["address.moved"] += 1
            return Verdict.APPLIED
        self._stats["address.unverified"] += 1
        return Verdict.CHECK_ADDRESS

    def catch_up_incarnation(self, seen: int) -> None:
        """The cluster remembers us at another address with incarnation ``seen``
        (we restarted elsewhere): announce ourselves above it, so our row wins
        wherever the old one is still held."""
        me = self.by_name.get(self.name)
        if me is not None and seen >= me.incarnation and not self.left:
            self._refute(me, seen, "alive", "")

    def apply_suspect(self, s: Suspect, now: float) -> Verdict:
        """Apply ``suspect``; SUSPECTED if it started a new suspicion of a live member."""
        st = self.by_name.get(s.node)
        if st is None or s.incarnation < st.incarnation:
            return Verdict.IGNORED
        if self._implausible(st, s.incarnation, "suspect"):
            return Verdict.RECHECK
        timer = self._suspicions.get(s.node)
        if timer is not None:
            # An independent accuser confirms: shorten the timer, re-gossip (Lifeguard).
            if self._lifeguard and timer.confirm(s.from_):
                self._broadcast(s.node, s)
                self._timers.schedule(timer.deadline, self._suspicion_expired, (s.node, timer))
                return Verdict.APPLIED
            return Verdict.IGNORED
        if st.state != MemberState.ALIVE:
            return Verdict.IGNORED
        if st.name == self.name:
            self._refute(st, s.incarnation, "suspect", s.from_)
            return Verdict.IGNORED
        self._broadcast(s.node, s)
        self._stats["msg.suspect"] += 1  # memberlist.msg.suspect: a suspicion begun
        st.row = None
        st.incarnation = s.incarnation
        st.state = MemberState.SUSPECT
        st.state_change = now
        n = len(self.nodes)
        config = self.config
        min_timeout = suspicion_min_timeout(config.suspicion_mult, n, config.probe_interval)
        if self._lifeguard:
            k = expected_confirmations(config.suspicion_mult, n)
            max_timeout = config.suspicion_max_timeout_mult * min_timeout
        else:
            k, max_timeout = 0, min_timeout
        timer = Suspicion(s.from_, k, min_timeout, max_timeout, now)
        self._suspicions[s.node] = timer
        self._timers.schedule(timer.deadline, self._suspicion_expired, (s.node, timer))
        return Verdict.SUSPECTED

    def _suspicion_expired(self, arg: tuple[str, Suspicion], now: float) -> None:
        name, timer = arg
        if self._suspicions.get(name) is not timer or now < timer.deadline:
            return
        st = self.by_name.get(name)
        if st is None or st.state != MemberState.SUSPECT or st.state_change != timer.start:
            return
        self._stats["suspicion.expired"] += 1
        if timer.k > 0 and timer.confirmations < timer.k:
            self._stats["suspicion.degraded"] += 1  # memberlist.degraded.timeout
        self._effects.append(DeathDeclared(name, st.incarnation, timer.confirmations))
        self.apply_dead(Dead(st.incarnation, name, self.name), now)

    def apply_dead(self, d: Dead, now: float) -> Verdict:
        """Apply ``dead`` (From == Node means a graceful leave: state LEFT)."""
        st = self.by_name.get(d.node)
        if st is None or d.incarnation < st.incarnation:
            return Verdict.IGNORED
        if self._implausible(st, d.incarnation, "dead"):
            return Verdict.RECHECK
        self._suspicions.pop(d.node, None)
        if st.dead_or_left():
            return Verdict.IGNORED
        if st.name == self.name:
            if not self.left:
                self._refute(st, d.incarnation, "dead", d.from_)
                return Verdict.IGNORED
            self._broadcast(d.node, d, self._leave_sent)
        else:
            self._broadcast(d.node, d)
        self._stats["msg.dead"] += 1  # memberlist.msg.dead: a death or leave applied
        st.row = None
        st.incarnation = d.incarnation
        st.state = MemberState.LEFT if d.node == d.from_ else MemberState.DEAD
        st.state_change = now
        self._effects.append(NodeEvent(EventKind.LEAVE, st.snapshot()))
        return Verdict.APPLIED

    def _leave_sent(self) -> None:
        self.leave_done = True

    def _refute(self, me: NodeState, accused: int, kind: str, accuser: str) -> None:
        """Out-bid an accusation about ourselves with a higher incarnation."""
        incarnation = domains.refutation_incarnation(self.local_incarnation, accused)
        if incarnation is None:
            self._stats["refute.incarnation_exhausted"] += 1
            return
        self.local_incarnation = incarnation
        me.incarnation = incarnation
        me.row = None
        if self._lifeguard:
            self._awareness.apply_delta(1)
        self._stats["refute"] += 1
        self._broadcast(me.name, Alive(me.incarnation, me.name, me.addr, me.port, me.meta,
                                       self.vsn))
        self._effects.append(Refuted(me.incarnation, kind, accuser))

    def _broadcast(self, key: str, msg: Message,
                   on_done: Callable[[], None] | None = None) -> None:
        self._broadcasts.queue(key, codec.encode(msg), on_done)
