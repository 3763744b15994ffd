"""Serf's member list: status with graceful leave, intents, reaping.

memberlist says who is up; Serf adds *why* a member went: a member that
sent a leave intent (Lamport-clocked, gossiped) is ``leaving`` and then
``left`` when memberlist sees it go; one that went silently is ``failed``.
Intents may arrive before memberlist announces the member (kept in
``recent_intents``) and are ordered by their Lamport time (``status_ltime``).
Failed and left members are remembered (and sent in push-pull) until reaped.
Follows Serf 0.9.4's ``serf.go``; each departure from it says why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from swimlib.cluster import domains as dom
from swimlib.cluster import events as ev
from swimlib.cluster.clocks import LamportClock
from swimlib.cluster.effects import ClusterEffect, Emit
from swimlib.config import Config
from swimlib.errors import DecodeError
from swimlib.membership.broadcasts import BroadcastQueue
from swimlib.membership.table import name_problem_for
from swimlib.membership.timers import Timers
from swimlib.membership.types import Address, EventKind, MemberState, NodeEvent
from swimlib.wire import serf as sw
from swimlib.wire.messages import DEFAULT_VSN

MemberStatus = sw.MemberStatus

#: A failed member back within this many seconds counts as a flap (Serf's FlapTimeout).
FLAP_TIMEOUT = 60.0


class SerfMember:
    """One row of Serf's member list (mutable; snapshots go out as ClusterMember)."""

    __slots__ = ("addr", "leave_time", "name", "port", "status", "status_ltime", "tags", "vsn")

    def __init__(self, name: str, addr: str, port: int, tags: dict[str, str],
                 vsn: bytes) -> None:
        self.name = name
        self.addr = addr
        self.port = port
        self.tags = tags
        self.vsn = vsn
        self.status = MemberStatus.ALIVE
        self.status_ltime = 0
        self.leave_time = 0.0

    def versions(self) -> tuple[int, int, int, int, int, int]:
        v = self.vsn if len(self.vsn) == 6 else DEFAULT_VSN
        return (v[0], v[1], v[2], v[3], v[4], v[5])

    def snapshot(self) -> ev.ClusterMember:
        return ev.ClusterMember(self.name, self.addr, self.port, ev.freeze_tags(self.tags),
                                self.status, *self.versions())


def name_problem(config: Config, name: str, what: str) -> str | None:
    """``<what>_<problem>`` when ``name`` may not be a member's name here
    (the membership layer's rule, :func:`~swimlib.membership.table.name_problem_for`)."""
    problem = name_problem_for(config, name)
    return None if problem is None else f"{what}_{problem}"


def _drop_from(names: list[str], name: str) -> None:
    if name in names:
        names.remove(name)


class SerfMembers:
    """Members by name and by address, the failed and left lists, and intents."""

    def __init__(self, name: str, config: Config, clock: LamportClock, *,
                 stats: Counter[str], effects: list[ClusterEffect], timers: Timers,
                 on_erase: Callable[[str], None] | None = None) -> None:
        self.name = name
        #: Told the name of every member erased (Serf's eraseNode also drops its coordinate).
        self._on_erase = on_erase
        self.config = config
        self._clock = clock
        self._stats = stats
        self._effects = effects
        self._timers = timers
        self.by_name: dict[str, SerfMember] = {}
        #: Which member lives at an address (to re-check what it sent).
        self.at: dict[Address, str] = {}
        self.failed: list[str] = []
        self.left: list[str] = []
        #: name -> (intent type, ltime, when heard): intents about members not yet known.
        self._recent_intents: dict[str, tuple[int, int, float]] = {}
        #: Join and leave intents waiting to be gossiped.
        self.intents = BroadcastQueue()

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self.by_name)

    def get(self, name: str) -> SerfMember | None:
        return self.by_name.get(name)

    def snapshots(self) -> list[ev.ClusterMember]:
        return [m.snapshot() for m in self.by_name.values()]

    def is_alive(self, name: str) -> bool:
        m = self.by_name.get(name)
        return m is not None and m.status == MemberStatus.ALIVE

    def is_leaving(self, name: str) -> bool:
        m = self.by_name.get(name)
        return m is not None and m.status == MemberStatus.LEAVING

    def has_alive_others(self) -> bool:
        return any(m.status == MemberStatus.ALIVE and m.name != self.name
                   for m in self.by_name.values())

    def status_ltimes(self) -> dict[str, int]:
        return {name: m.status_ltime for name, m in self.by_name.items()}

    def alive_at(self, dest: Address) -> bool:
        """Whether a live member lives at ``dest``."""
        return any((m.addr, m.port) == dest and m.status == MemberStatus.ALIVE
                   for m in self.by_name.values())

    # ------------------------------------------------------------------ memberlist's events

    def on_node_event(self, event: NodeEvent, now: float) -> None:
        """Turn a memberlist event into Serf's member-join/update/leave/failed."""
        node = event.member
        if event.kind == EventKind.JOIN:
            self._on_node_join(node.name, node.addr, node.port, node.meta, node.vsn, now)
        elif event.kind == EventKind.UPDATE:
            m = self.by_name.get(node.name)
            if m is None:
                return
            self._place(m, node.addr, node.port)
            m.vsn = node.vsn
            m.tags = self._decode_tags(node.meta)
            self._stats["member.update"] += 1  # serf.member.update
            self._emit(ev.EventType.MEMBER_UPDATE, m)
        else:
            self._on_node_leave(node.name, node.state, now)

    def _decode_tags(self, meta: bytes) -> dict[str, str]:
        try:
            return sw.decode_tags(meta)
        except DecodeError:
            self._stats["drop.serf.tags"] += 1
            return {}

    def _on_node_join(self, name: str, addr: str, port: int, meta: bytes, vsn: bytes,
                      now: float) -> None:
        m = self.by_name.get(name)
        if m is None:
            m = SerfMember(name, addr, port, self._decode_tags(meta), vsn)
            intent = self._recent_intents.get(name)
            if intent is not None:
                kind, ltime, _ = intent
                m.status_ltime = ltime
                if kind == sw.SerfMessageType.LEAVE:
                    m.status = MemberStatus.LEAVING
                    m.leave_time = now
            self.by_name[name] = m
        else:
            old = m.status
            if old == MemberStatus.FAILED and now - m.leave_time < FLAP_TIMEOUT:
                self._stats["member.flap"] += 1  # serf.member.flap
            m.status = MemberStatus.ALIVE
            m.leave_time = 0.0
            m.vsn = vsn
            m.tags = self._decode_tags(meta)
            if old in (MemberStatus.FAILED, MemberStatus.LEFT):
                _drop_from(self.failed, name)
                _drop_from(self.left, name)
        self._place(m, addr, port)
        self._stats["member.join"] += 1  # serf.member.join
        self._emit(ev.EventType.MEMBER_JOIN, m)

    def _place(self, m: SerfMember, addr: str, port: int) -> None:
        """Record (or move) a member's address, keeping ``at`` in step."""
        if self.at.get((m.addr, m.port)) == m.name:
            del self.at[(m.addr, m.port)]
        m.addr, m.port = addr, port
        self.at[(addr, port)] = m.name

    def _on_node_leave(self, name: str, state: MemberState, now: float) -> None:
        m = self.by_name.get(name)
        if m is None:
            return
        if m.status == MemberStatus.LEAVING or (
                m.status == MemberStatus.ALIVE and state == MemberState.LEFT):
            # memberlist's own "left" (dead from the node itself) is a graceful leave even
            # when the intent has not reached us yet (Serf 0.9 would say failed first).
            m.status = MemberStatus.LEFT
            m.leave_time = now
            self.left.append(name)
            self._stats["member.left"] += 1  # serf.member.left
            self._emit(ev.EventType.MEMBER_LEAVE, m)
        elif m.status == MemberStatus.ALIVE:
            m.status = MemberStatus.FAILED
            m.leave_time = now
            self.failed.append(name)
            self._stats["member.failed"] += 1  # serf.member.failed
            self._emit(ev.EventType.MEMBER_FAILED, m)
        else:
            self._stats["leave.bad_state"] += 1
        self._forget_gone_beyond_cap()

    def _forget_gone_beyond_cap(self) -> None:
        """Reap the longest-gone members early past :data:`~.domains.MAX_GONE_MEMBERS`.

        Serf keeps failed and left members a day, and sends every one in each
        push-pull: fake members joining and dying in bulk would otherwise grow
        that state until no push-pull fits a stream.
        """
        while len(self.failed) + len(self.left) > dom.MAX_GONE_MEMBERS:
            oldest = min((names[0] for names in (self.failed, self.left) if names),
                         key=lambda name: self.by_name[name].leave_time
                         if name in self.by_name else 0.0)
            self._stats["gone.forgotten"] += 1
            _drop_from(self.failed, oldest)
            _drop_from(self.left, oldest)
            self.erase(oldest)

    # ------------------------------------------------------------------ intents

    def broadcast_join(self, ltime: int, now: float) -> None:
        """Our own join intent at ``ltime``: applied here and queued for gossip."""
        msg = sw.JoinIntent(ltime, self.name)
        self._clock.witness(ltime)
        self.on_join_intent(msg, now)
        self.intents.queue(None, sw.encode_serf(msg))

    def _upsert_intent(self, name: str, kind: int, ltime: int, now: float) -> bool:
        known = self._recent_intents.get(name)
        if known is None or ltime > known[1]:
            if known is None and len(self._recent_intents) >= dom.MAX_RECENT_INTENTS:
                # Full of names nobody announced: forget the oldest (dicts keep order).
                del self._recent_intents[next(iter(self._recent_intents))]
                self._stats["intent.evicted"] += 1
            self._recent_intents[name] = (kind, ltime, now)
            return True
        return False

    def on_join_intent(self, msg: sw.JoinIntent, now: float) -> bool:
        """Apply a join intent; True if it was news (so rebroadcast it)."""
        self._clock.witness(msg.ltime)
        m = self.by_name.get(msg.node)
        if m is None:
            return self._upsert_intent(msg.node, sw.SerfMessageType.JOIN, msg.ltime, now)
        if msg.ltime <= m.status_ltime:
            return False
        m.status_ltime = msg.ltime
        if m.status == MemberStatus.LEAVING:
            m.status = MemberStatus.ALIVE
        return True

    def on_leave_intent(self, msg: sw.LeaveIntent, now: float, we_are_alive: bool) -> bool:
        """Apply a leave intent; True if it was news (so rebroadcast it).

        ``we_are_alive``: we are not leaving, so a leave about us is refuted.
        """
        self._clock.witness(msg.ltime)
        m = self.by_name.get(msg.node)
        if m is None:
            return self._upsert_intent(msg.node, sw.SerfMessageType.LEAVE, msg.ltime, now)
        if msg.ltime <= m.status_ltime:
            return False
        if msg.node == self.name and we_are_alive:
            # Someone says we are leaving and we are not: refute with a newer join.
            self.broadcast_join(self._clock.time(), now)
            return False
        if m.status == MemberStatus.ALIVE:
            m.status = MemberStatus.LEAVING
            m.status_ltime = msg.ltime
            m.leave_time = now
        elif m.status == MemberStatus.FAILED:
            m.status = MemberStatus.LEFT
            m.status_ltime = msg.ltime
            _drop_from(self.failed, m.name)
            self.left.append(m.name)
            self._emit(ev.EventType.MEMBER_LEAVE, m)
        elif m.status in (MemberStatus.LEAVING, MemberStatus.LEFT):
            # Serf with prune support reports these as news (so a prune
            # spreads) without recording the time: then every newer leave for
            # a member already gone is news again at every node, for ever, and
            # one forged leave with a high time loops through the cluster's
            # gossip, re-queued on every receipt. Recorded, it is news once.
            m.status_ltime = msg.ltime
        else:
            return False
        if msg.prune:
            self._prune(m, now)
        return True

    def refute_stale_leave(self, ltime: int | None, now: float, we_are_alive: bool) -> None:
        """A peer holds our status at a time newer than ours: say we are alive.

        That time comes from an intent about us that we never heard: most
        likely a leave (forged, or gossiped while we were cut off), leaving us
        "leaving" in that peer's view for good, since a leave is refuted only
        by the member itself and gossip does not repeat it. Push-pull carries
        it as a status time, so the periodic sync brings the news; a newer
        join intent repairs every view. Serf has no such repair.
        """
        me = self.by_name.get(self.name)
        if ltime is None or me is None or ltime <= me.status_ltime or not we_are_alive:
            return
        self._stats["intent.refuted_from_push_pull"] += 1
        self._clock.witness(ltime)
        self.broadcast_join(self._clock.time(), now)

    def merge(self, pp: sw.SerfPushPull, now: float, we_are_alive: bool) -> list[bytes]:
        """A peer's member state (after its clocks were accepted): apply its
        left members and status times as intents. Returns the leave intents
        to gossip on."""
        regossip: list[bytes] = []
        left = set(pp.left_members)
        for name in pp.left_members:
            if self._counted_name_problem(name):
                continue
            leave = sw.LeaveIntent(dom.saturating_add(pp.status_ltimes.get(name, 0)), name)
            if self.on_leave_intent(leave, now, we_are_alive) and self.is_leaving(name):
                # A peer says a member we see alive has left. Serf believes it
                # quietly; if it is not true, the member never hears of it and
                # stays "leaving" in our view for good. Gossiped, the intent
                # reaches the member, which refutes it if it is still here.
                self._stats["intent.regossiped_from_push_pull"] += 1
                regossip.append(sw.encode_serf(leave))
        self.refute_stale_leave(pp.status_ltimes.get(self.name), now, we_are_alive)
        for name, ltime in pp.status_ltimes.items():
            if name not in left and not self._counted_name_problem(name):
                self.on_join_intent(sw.JoinIntent(ltime, name), now)
        return regossip

    def _counted_name_problem(self, name: str) -> bool:
        problem = name_problem(self.config, name, "push_pull")
        if problem is not None:
            self._stats["drop.serf." + problem] += 1
        return problem is not None

    # ------------------------------------------------------------------ forgetting

    def _prune(self, m: SerfMember, now: float) -> None:
        if m.status == MemberStatus.LEAVING:
            self._timers.schedule(
                now + self.config.broadcast_timeout + self.config.leave_propagate_delay,
                self._prune_due, m.name)
        else:
            self.erase(m.name)

    def _prune_due(self, name: str, now: float) -> None:
        """Erase a pruned member unless it came back meanwhile.

        Serf erases unconditionally; then a forged ``leave(prune)`` for a
        live member, refuted by its join or not (it may never hear it),
        still removes it from our table while memberlist keeps it alive: it
        would vanish from our view for good.
        """
        m = self.by_name.get(name)
        if m is not None and m.status == MemberStatus.ALIVE:
            self._stats["prune.cancelled"] += 1
            return
        if m is not None and m.status == MemberStatus.LEAVING:
            # memberlist still sees it alive: erased now, it would never be
            # announced again. Wait until it is left (then erase) or its leave
            # expires (then keep it: see expire_stale_leaves).
            self._stats["prune.deferred"] += 1
            self._prune(m, now)
            return
        self.erase(name)

    def erase(self, name: str) -> None:
        m = self.by_name.pop(name, None)
        if m is None:
            return
        if self.at.get((m.addr, m.port)) == name:
            del self.at[(m.addr, m.port)]
        _drop_from(self.failed, name)
        _drop_from(self.left, name)
        if self._on_erase is not None:
            self._on_erase(name)
        self._emit(ev.EventType.MEMBER_REAP, m)

    def reap(self, now: float) -> None:
        """Forget failed and left members past their timeouts, and old intents."""
        for names, timeout in ((self.failed, self.config.reconnect_timeout),
                               (self.left, self.config.tombstone_timeout)):
            for name in list(names):
                m = self.by_name.get(name)
                if m is None or now - m.leave_time > timeout:
                    self.erase(name)
                    _drop_from(names, name)
        cutoff = now - self.config.recent_intent_timeout
        for name in [n for n, (_, _, t) in self._recent_intents.items() if t < cutoff]:
            del self._recent_intents[name]
        self._expire_stale_leaves(now)

    def _expire_stale_leaves(self, now: float) -> None:
        """A member "leaving" that memberlist still sees alive long after is alive.

        A member that really leaves stops gossiping within its broadcast
        timeout and leave-propagate delay, and memberlist then reports it
        left. One still alive ten times that long after its leave intent did
        not send it, or never heard it to refute it: a Serf peer, which only
        refutes a leave it hears (swimlib members also refute through
        push-pull, see :meth:`refute_stale_leave`). Serf keeps it "leaving"
        for good; the next leave intent, newer, still applies.
        """
        grace = 10 * (self.config.broadcast_timeout + self.config.leave_propagate_delay)
        for m in self.by_name.values():
            if (m.status == MemberStatus.LEAVING and m.name != self.name
                    and now - m.leave_time > grace):
                m.status = MemberStatus.ALIVE
                self._stats["intent.leave_expired"] += 1

    def _emit(self, kind: ev.EventType, m: SerfMember) -> None:
        self._effects.append(Emit(ev.MemberEvent(kind, (m.snapshot(),))))
