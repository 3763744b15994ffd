"""Minimal reproductions of what the hostile state machine found (issue 7, item 4).

tests/sim/test_hostile_state_machine.py throws well-formed hostile messages
at a running Serf cluster; each distinct bug it found is pinned here as one
deterministic test on the same simulator: a converged 4-node cluster running
the real Serf layer, the one or two messages that trigger the bug, and the
property that broke. All are fixed; each test failed before its fix.

The messages are built with swimlib's own encoders where they allow the
values (they do for all of these: the bugs are in what the receiver does with
values the wire can carry), so each test reads as the attack it is.

The list (M: found by the state machine; P: found by probing the classes the
machine generates, by hand). Serf 0.9 has 4 to 8 as well.

0. M/known (issue 7's headline) -- LTime 2^64-1 overflowed a clock;
   ``test_ltime_max_overflows_a_clock_and_breaks_push_pull``.
1. P -- a node's clock pushed to the plausibility edge by a path that is
   not gossiped (no-rebroadcast query, push-pull ring slot) sent times its
   peers refused: ``test_no_rebroadcast_query_past_half_silences_the_nodes_queries``,
   ``test_push_pull_event_slot_past_half_silences_the_nodes_user_events``.
   Fixed: a refused time from a member makes us sync with it, and the reply
   to a stream we opened is believed whole.
2. M -- once the cluster's clocks were past the edge, a node restarting
   with a fresh clock refused all Serf traffic:
   ``test_cluster_clock_past_half_leaves_a_restarted_node_deaf``. Fixed by
   the same trust in the join's reply.
3. P -- push-pull StatusLTimes bypassed the LTime domain (2^64-1 saturated
   the member clock): ``test_push_pull_status_ltime_max_leaves_a_node_unable_to_refute_a_leave``.
4. M -- a push-pull's LeftMembers marked a live member leaving, ungossiped:
   ``test_push_pull_left_members_mark_a_live_member_leaving_for_good``.
5. M -- messages too big to gossip stayed queued for ever:
   ``test_message_too_big_to_gossip_stays_queued_for_ever``.
6. M -- a leave intent the member itself missed was never refuted:
   ``test_leave_intent_the_member_misses_leaves_it_leaving_for_good``.
   Fixed: a push-pull showing our status at a newer time makes us refute.
7. M -- a LeftMembers entry about a member not yet known was applied,
   ungossiped, when it appeared:
   ``test_left_member_unknown_to_a_joiner_is_leaving_once_it_appears``
   (the refutation of 6 repairs it).
8. M -- a push-pull moved one node's event clock alone; a node joining
   through it dropped the others' events for good:
   ``test_push_pull_event_clock_skew_makes_a_joiner_drop_events``. Fixed:
   an "ignore old" join remembers the peer's events as seen instead of
   dropping everything older than the peer's clock.
9. P -- query deadline timers outlived the pending-query cap:
   ``test_query_flood_grows_the_timer_heap_past_the_pending_query_cap``.
10. P -- 6 about a member that does not refute through push-pull (a Serf
    peer): ``test_missed_leave_about_a_member_that_cannot_refute_it_expires``.
    Fixed: "leaving" expires while memberlist still sees the member alive.
11. M (randomized hunt) -- a ``leave(prune)`` the member missed erased it
    from the Serf table while memberlist kept it alive: gone from the view for
    good: ``test_pruning_leave_the_member_misses_does_not_erase_it``.
12. the live flood -- fake members (one datagram can announce 127) pushed
    Lifeguard's awareness to the top and soaked up gossip: probing slowed
    eightfold, fakes lived for many minutes and events reached the real
    members late: ``test_fake_members_neither_slow_probing_nor_soak_up_gossip``.
13. the live flood -- a hundred fakes dead at once took the gossip of the
    next half minute (gossip to the dead): a query missed the Serf peer:
    ``test_fake_members_dead_at_once_do_not_take_the_next_gossip``.
14. the live flood -- a forged leave then a forged alive moved a live member
    to an address where nobody answers, and its refutations from its real
    address were refused as a conflict for minutes (memberlist moves a member
    that left on anyone's word):
    ``test_forged_leave_and_alive_elsewhere_do_not_move_a_member_for_minutes``.
15. M (randomized hunt) -- a leave intent about a member already leaving or
    left was news without its time being recorded (as in Serf since prune
    support; Debian's older Serf does not rebroadcast it at all), so a forged
    one looped through the cluster's gossip for ever:
    ``test_leave_for_a_member_already_gone_does_not_loop_through_gossip``.
16. M (CI) -- a burst of pings drained a node's gossip: memberlist
    piggybacks broadcasts on every ack, whoever asked, so pings spoofed from
    the node's own address took every send of a join intent it had just
    accepted at the clock edge, and its peers refused its next push-pulls:
    ``test_pings_from_anyone_do_not_drain_the_gossip`` and
    ``test_node_at_the_clock_edge_is_not_refused_by_its_peers_for_long``.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from simulations.engine import Simulation
from simulations.scenarios import Options, Run
from simulations.serfnode import SerfNode
from swimlib.cluster.events import QueryEvent, UserEvent
from swimlib.cluster.serf import Emit, QueryReply, Serf
from swimlib.config import Config
from swimlib.wire import codec
from swimlib.wire import serf as sw
from swimlib.wire._mp import U64
from swimlib.wire.messages import PushPull

#: Where the attacker's datagrams and streams claim to come from (nobody lives there).
ATTACKER = ("127.0.0.200", 7946)
#: The highest Lamport time a node with a low clock witnesses: since 4b463cc,
#: ``max(clock, 2^63) + 2^32`` (before, 2^63). Witnessing it moves that node's
#: clock one past what its peers accept from it.
EDGE = (1 << 63) + (1 << 32)


# --------------------------------------------------------------------------- harness


def _recording(name: str, addr: str, port: int, config: Config, rng: random.Random,
               now: float) -> Any:
    node = SerfNode(name, addr, port, config, rng, now)
    node.app_log = []
    return node


def cluster(seed: int = 1, nodes: int = 4) -> Simulation:
    """A converged cluster of ``nodes`` Serf members (node-0000, node-0001, ...)."""
    run = Run(Options(scenario="steady", nodes=nodes, seed=seed, layer="serf"),
              factory=_recording)
    run.converged_start()
    assert run.extra["setup_converged"]
    return run.sim


def serf(sim: Simulation, i: int) -> Serf:
    s: Serf = sim.slots[i].node.serf  # type: ignore[attr-defined]
    return s


def name(i: int) -> str:
    return f"node-{i:04d}"


def inject_packet(sim: Simulation, i: int, data: bytes, source: tuple[str, int] = ATTACKER
                  ) -> None:
    """Hand node ``i`` one datagram, then let the engine carry out what it does."""
    sim.slots[i].node.handle_packet(data, source, sim.now)
    sim.poke(i)


def inject_stream(sim: Simulation, i: int, data: bytes, source: tuple[str, int] = ATTACKER
                  ) -> bytes | None:
    reply = sim.slots[i].node.handle_stream(data, source, sim.now)
    sim.poke(i)
    return reply


def serf_datagram(msg: sw.SerfMessage) -> bytes:
    return codec.encode(sw.serf_user_msg(msg))


def serf_state_stream(**fields: Any) -> bytes:
    """An inbound push-pull with no member rows and the given Serf state."""
    fields.setdefault("ltime", 1)
    user = sw.encode_serf(sw.SerfPushPull(**fields))
    return codec.encode_stream(PushPull(False, (), user))


def status(sim: Simulation, viewer: int, member: int) -> str:
    return {m.name: m.status_name for m in serf(sim, viewer).members()}[name(member)]


def log(sim: Simulation, i: int) -> list[Any]:
    entries: list[Any] = sim.slots[i].node.app_log  # type: ignore[attr-defined]
    return entries


def user_event_reaches(sim: Simulation, origin: int, event: str = "after",
                       wait: float = 10.0) -> list[int]:
    """Send a user event from ``origin``; the nodes it reached within ``wait`` s."""
    serf(sim, origin).user_event(event, b"", False, sim.now)
    sim.poke(origin)
    sim.run_until(sim.now + wait)
    return [i for i in range(len(sim.slots))
            if any(isinstance(e, Emit) and isinstance(e.event, UserEvent)
                   and e.event.name == event for e in log(sim, i))]


def query_reaches(sim: Simulation, origin: int, query: str = "after") -> list[int]:
    """Send a query from ``origin``; the nodes that received it within 10 s."""
    serf(sim, origin).query(query, b"", sim.now, timeout=30.0)
    sim.poke(origin)
    sim.run_until(sim.now + 10)
    return [i for i in range(len(sim.slots))
            if any(isinstance(e, Emit) and isinstance(e.event, QueryEvent)
                   and e.event.name == query for e in log(sim, i))]


EVERYONE = [0, 1, 2, 3]


# --------------------------------------------------------------------------- 0: issue 7's headline


@pytest.mark.parametrize("message", [
    sw.Query(U64, 7, "127.0.0.1", 7946, name(0), "q", timeout_ns=10**9),
    sw.UserEvent(U64, "e"),
    sw.JoinIntent(U64, "ghost"),
    sw.LeaveIntent(U64, name(2)),
], ids=["query", "user_event", "join_intent", "leave_intent"])
def test_ltime_max_overflows_a_clock_and_breaks_push_pull(message: sw.SerfMessage) -> None:
    """Issue 7's headline: LTime 2^64-1 made a clock 2^64 and the next push-pull
    encode raised ValueError, on every node the message reached.

    Fixed in 7bd56db (times above 2^63 refused unless close to our clock,
    clocks saturate); kept as the first regression of this file.
    """
    sim = cluster()
    inject_packet(sim, 1, serf_datagram(message))
    sim.run_until(sim.now + 5)
    for i in EVERYONE:
        assert serf(sim, i).node.sync_now(sim.now)
        sim.poke(i)
    sim.run_until(sim.now + 15)  # a push-pull each, and the periodic ones
    assert all(serf(sim, i).node.stats["push_pull.failed"] == 0 for i in EVERYONE)
    assert user_event_reaches(sim, 1) == EVERYONE


# ------------------------------------------------------------------ the bugs (now regressions)


def test_push_pull_left_members_mark_a_live_member_leaving_for_good() -> None:
    """One stream naming a live member in LeftMembers splits the Serf view for good.

    The receiver applies it as a leave intent (LTime StatusLTimes[name] + 1,
    here 1, newer than node-0000's status time 0: it never sent a join
    intent, being the seed) and marks node-0000 *leaving*. Serf does the
    same; but unlike a gossiped leave intent, this one stays with the
    receiver: node-0000 never hears it, never refutes, and memberlist (for
    which nothing happened) never says otherwise. Found by the machine as
    ``stream to node-0001: PushPull(... left_members=('node-0000',) ...)``,
    and then without any forged LeftMembers: a member that left and
    restarted, while fake members slowed gossip down, was marked leaving for
    good by a peer's honest push-pull that still listed it as left (its
    rejoin intent had the same LTime as the leave + 1 the merge derives).

    Fixed in 1e6c214 (such a leave is gossiped, so the member refutes it).
    """
    sim = cluster()
    inject_stream(sim, 1, serf_state_stream(left_members=(name(0),)))
    sim.run_until(sim.now + 120)  # four periodic push-pulls, gossip, reaping
    assert status(sim, 1, 0) == "alive"


def test_no_rebroadcast_query_past_half_silences_the_nodes_queries() -> None:
    """One datagram and a node's queries never reach anyone again.

    ``EDGE`` is the highest time a node with a low clock may witness, so
    node-0001 accepts it and its query clock becomes ``EDGE + 1``. The query
    carries the no-rebroadcast flag, so nobody else witnesses it; from then on
    every query node-0001 sends is past the edge for its peers, and they
    refuse it (``query_ltime_implausible``); its push-pull Serf state too
    (``push_pull_ltime_implausible``). Found with 2^63 when that was the edge;
    4b463cc moved the edge to 2^63 + 2^32, and the same message at the new
    edge does the same.
    """
    sim = cluster()
    forged = sw.Query(EDGE, 7, "127.0.0.1", 7946, name(0), "x",
                      flags=sw.QUERY_FLAG_NO_BROADCAST, timeout_ns=10**9)
    inject_packet(sim, 1, serf_datagram(forged), source=("127.0.0.1", 7946))
    sim.run_until(sim.now + 2)
    assert query_reaches(sim, 1) == EVERYONE


def test_push_pull_event_slot_past_half_silences_the_nodes_user_events() -> None:
    """One stream and a node's user events never reach anyone again.

    The Serf state's ring carries an event at ``EDGE`` (plausible). node-0001
    witnesses it, its event clock becomes ``EDGE + 1`` and, the ring being
    merged rather than gossiped, nobody else moves. Every user event
    node-0001 sends afterwards is refused by its peers as
    ``event_ltime_implausible``. (Found at 2^63, the edge before 4b463cc.)
    """
    sim = cluster()
    ring = (sw.EventSlot(EDGE, (sw.EventRecord("e"),)),)
    inject_stream(sim, 1, serf_state_stream(event_ltime=1, events=ring))
    assert user_event_reaches(sim, 1) == EVERYONE


def test_push_pull_status_ltime_max_leaves_a_node_unable_to_refute_a_leave() -> None:
    """A push-pull stream, then a forged leave: the victim stays *leaving* for good.

    Direct intents are checked against the clock; the ``StatusLTimes`` of a
    push-pull are applied as join intents without that check, so 2^64-1
    saturates node-0001's member clock. A forged leave intent for node-0001
    (plausible LTime 50, gossiped) then makes everyone mark it leaving;
    node-0001 refutes with a join intent at 2^64-1, which every peer
    refuses as implausible.
    """
    sim = cluster()
    inject_stream(sim, 1, serf_state_stream(status_ltimes={"ghost-1": U64}))
    inject_packet(sim, 2, serf_datagram(sw.LeaveIntent(50, name(1))))
    sim.run_until(sim.now + 60)
    assert [status(sim, i, 1) for i in EVERYONE] == ["alive"] * 4


def test_cluster_clock_past_half_leaves_a_restarted_node_deaf() -> None:
    """One gossiped user event at ``EDGE``; then any node that restarts is deaf for good.

    ``EDGE`` is plausible to everyone, so everyone witnesses it and every
    event clock becomes ``EDGE + 1``. A node that crashes and restarts comes
    back with a fresh clock (no snapshot) and joins: it refuses the Serf
    state of every push-pull (``push_pull_ltime_implausible``) and every
    user event, query and intent (all past the edge for a low clock), so it
    never catches up. The same for a brand-new member. Found at 2^63 (the
    machine: a forged leave at 2^63-1 and the refutation after it); 4b463cc
    moved the edge by 2^32 and the cliff with it.
    """
    from simulations import faults

    sim = cluster()
    inject_packet(sim, 2, serf_datagram(sw.UserEvent(EDGE, "forged")))
    sim.run_until(sim.now + 5)
    faults.crash(sim, 3)
    sim.run_until(sim.now + 30)
    faults.restart(sim, 3, via=0)
    sim.run_until(sim.now + 60)
    assert [status(sim, 3, i) for i in EVERYONE] == ["alive"] * 4  # it did rejoin
    assert user_event_reaches(sim, 0) == EVERYONE


@pytest.mark.parametrize("message", [
    sw.Query(5, 77, "127.0.0.1", 7946, "ghost-5", "big", b"\x00" * 2000, timeout_ns=10**9),
    sw.UserEvent(5, "big", b"\x00" * 3000),
], ids=["query", "user_event"])
def test_message_too_big_to_gossip_stays_queued_for_ever(message: sw.SerfMessage) -> None:
    """A 2 KB query (or a 3 KB user event) sits in the broadcast queue for good.

    Serf's size limits (1 KiB queries, 512 B events) apply to what we send;
    received ones are only held to 9 KiB (events) or nothing (queries). The
    message is handled, then queued for re-gossip; a LAN gossip datagram
    carries 1,400 bytes, so it is never sent and never leaves the queue
    (until 4,096 of them make Serf prune the queue: up to 4,096 x 64 KiB of
    queries). ``has_broadcasts()`` stays true, so the runtime's idle skip
    never skips a gossip tick again. (The query never reaches anyone else
    either; the event does, through the push-pull ring.)

    Fixed in 1e6c214 (applied, not queued).
    """
    sim = cluster()
    inject_packet(sim, 1, serf_datagram(message))
    sim.run_until(sim.now + 60)
    assert not serf(sim, 1).node.has_broadcasts()


def test_push_pull_event_clock_skew_makes_a_joiner_drop_events() -> None:
    """One stream to node-0000, then a member rejoining through it misses events.

    The Serf state says ``EventLTime`` 50 (plausible: the cluster's clocks
    are ~1); node-0000 witnesses it, nobody else does (push-pull state is not
    gossiped). node-0001 restarts and joins through node-0000; joining with
    "ignore old" sets its event min-time to node-0000's 50. node-0002's next
    user event carries LTime 1: node-0001 drops it as older than its join,
    silently (no counter), and never gets it later either (the push-pull
    ring replays it at LTime 1, still below the min-time). Serf does the
    same; the machine found it as a user event that never reached the
    restarted node, also with a user event too big to gossip as the skew
    (since 1e6c214 the receiver applies it, witnessing its time, alone).
    """
    from simulations import faults

    sim = cluster()
    faults.crash(sim, 1)
    sim.run_until(sim.now + 1)
    inject_stream(sim, 0, serf_state_stream(event_ltime=50))
    faults.restart(sim, 1, via=0)
    sim.run_until(sim.now + 2)
    assert user_event_reaches(sim, 2, wait=90) == EVERYONE


@pytest.mark.parametrize("via", ["gossip", "push_pull"])
def test_leave_intent_the_member_misses_leaves_it_leaving_for_good(via: str) -> None:
    """A forged leave for node-0003 while it is cut off for 2 s: 'leaving' for good.

    The intent spreads by gossip only, a handful of times; node-0003 is
    unreachable for those two seconds (a lost packet would do, or fake members
    soaking up gossip, as in the machine). Everyone marks it leaving. Once
    reachable again it never learns of the intent: push-pull carries Serf
    member state only as ``StatusLTimes`` (applied as a *join* time, so
    node-0003 adopts LTime 10 as its own without refuting) and ``LeftMembers``
    (only *left* members). memberlist sees it alive throughout, so nothing
    ever moves it back: five minutes later it is still leaving everywhere.
    With ``via="push_pull"`` the intent is one derived from a push-pull's
    LeftMembers, which 1e6c214 gossips precisely so the member can refute it;
    the machine hit that path without any forged message (a member that left
    and restarted, a peer's stale state, gossip soaked up by fake members).
    Serf 0.9 behaves the same.
    """
    from simulations import faults

    sim = cluster()
    rules = faults.partition(sim, [3], [0, 1, 2])
    if via == "gossip":
        inject_packet(sim, 1, serf_datagram(sw.LeaveIntent(10, name(3))))
    else:
        inject_stream(sim, 1, serf_state_stream(left_members=(name(3),),
                                                status_ltimes={name(3): 9}))
    sim.run_until(sim.now + 2)
    faults.heal(sim, rules)
    sim.run_until(sim.now + 300)
    assert [status(sim, i, 3) for i in EVERYONE] == ["alive"] * 4


def test_left_member_unknown_to_a_joiner_is_leaving_once_it_appears() -> None:
    """A node that (re)joins through a stale or forged state sees a live member leaving.

    node-0003 restarts; before it knows anyone, a push-pull stream tells it
    node-0001 left (LeftMembers, status time 5). node-0001 is unknown to it,
    so the derived leave is kept among the intents about unknown members
    (1e6c214 gossips a derived leave only for a member already known). When
    the join makes memberlist announce node-0001, that intent turns it
    *leaving*; nobody else heard of it, node-0001 never refutes. The machine
    found it without a forged Serf state: a forged memberlist ``dead``
    with From == Node (a "left") for node-0002, so that peers listed it in
    LeftMembers until it refuted, and node-0000 restarting through one of
    them meanwhile.
    """
    from simulations import faults

    sim = cluster()
    faults.crash(sim, 3)
    sim.run_until(sim.now + 1)
    sim.restart(3)
    inject_stream(sim, 3, serf_state_stream(left_members=(name(1),), status_ltimes={name(1): 5}))
    faults.restart_join(sim, 3, 0)
    sim.run_until(sim.now + 300)
    assert [status(sim, i, 1) for i in EVERYONE] == ["alive"] * 4


def test_query_flood_grows_the_timer_heap_past_the_pending_query_cap() -> None:
    """10,160 queries (80 datagrams) leave 10,160 timers behind; the cap says 1,024.

    Pending queries from others are capped at 1,024 (oldest forgotten); but
    each one also put a ``_T_QUERY_DEADLINE`` timer on the Serf layer's heap,
    and forgetting the query leaves its timer there until the deadline, which
    a query may set an hour ahead. At the ~55,000 messages a second one core
    can apply (docs/security.md) that is ~200 million timers held for an hour.
    Found by probing what the machine's query floods leave behind (the
    machine itself does not look at memory). Reads the private ``_timers``.
    """
    sim = cluster()
    victim = serf(sim, 1)
    query_id = 0
    for _ in range(80):  # datagrams of 127 distinct queries, ack-less and not re-gossiped
        parts = []
        for _ in range(127):
            query_id += 1
            q = sw.Query(5, query_id, "127.0.0.1", 7946, name(0), "flood",
                         flags=sw.QUERY_FLAG_NO_BROADCAST, timeout_ns=3600 * 10**9)
            parts.append(serf_datagram(q))
        inject_packet(sim, 1, codec.encode_compound(parts), source=("127.0.0.1", 7946))
    sim.run_until(sim.now + 60)
    assert len(victim._timers) <= 2 * 1024


def test_query_reply_effects_are_recorded() -> None:
    """The harness sees query replies (guards the repros above against a silent harness)."""
    sim = cluster()
    handle = serf(sim, 0).query("ping-all", b"", sim.now, request_ack=True, timeout=30.0)
    sim.poke(0)
    sim.run_until(sim.now + 5)
    acks = {e.from_node for e in log(sim, 0) if isinstance(e, QueryReply)
            and e.handle == handle and e.kind == "ack"}
    assert acks == {name(i) for i in EVERYONE}


def test_missed_leave_about_a_member_that_cannot_refute_it_expires() -> None:
    """The same missed leave as above, about a member that only refutes what it
    hears (a Serf 0.9 peer: no refutation through push-pull). memberlist sees it
    alive all along, so after ten broadcast timeouts (+ leave delay) every view
    takes it as alive again; before, it stayed 'leaving' for good."""
    from simulations import faults

    sim = cluster()
    serf(sim, 3)._members.refute_stale_leave = (  # type: ignore[method-assign]
        lambda ltime, now, we_are_alive: None)
    rules = faults.partition(sim, [3], [0, 1, 2])
    inject_packet(sim, 1, serf_datagram(sw.LeaveIntent(10, name(3))))
    sim.run_until(sim.now + 2)
    assert [status(sim, i, 3) for i in range(3)] == ["leaving"] * 3
    faults.heal(sim, rules)
    sim.run_until(sim.now + 120)
    assert [status(sim, i, 3) for i in EVERYONE] == ["alive"] * 4
    assert all(serf(sim, i).stats["intent.leave_expired"] == 1 for i in range(3))


def test_pruning_leave_the_member_misses_does_not_erase_it() -> None:
    """A forged ``leave(prune)`` for node-0000 while it is cut off for 2 s.

    The prune fired while node-0000 was still "leaving" (it never heard the
    intent, so never refuted) and erased it from the Serf table of every
    node that heard it; memberlist, for which it stayed alive, never
    announced it again: gone from those views for good (found by the
    machine's randomized hunt, seed 2255). A member memberlist still sees
    alive is not erased; its leave expires instead.
    """
    from simulations import faults

    sim = cluster()
    # As a Serf peer would (or a member whose next push-pull came too late):
    # no refutation through push-pull.
    serf(sim, 0)._refute_stale_leave = lambda ltime, now: None  # type: ignore[method-assign]
    rules = faults.partition(sim, [0], [1, 2, 3])
    inject_packet(sim, 2, serf_datagram(sw.LeaveIntent(31, name(0), prune=True)))
    sim.run_until(sim.now + 2)
    faults.heal(sim, rules)
    sim.run_until(sim.now + 300)
    assert [status(sim, i, 0) for i in EVERYONE] == ["alive"] * 4


def fake_members(count: int, addr: str = "127.0.0.200") -> bytes:
    """One datagram announcing ``count`` members nobody runs (anyone may join)."""
    from swimlib.wire.messages import DEFAULT_VSN, Alive

    return codec.encode_compound([
        codec.encode(Alive(1, f"fake-{i:03d}", addr, 7946, b"", DEFAULT_VSN))
        for i in range(count)])


def test_fake_members_neither_slow_probing_nor_soak_up_gossip() -> None:
    """One datagram announcing 120 fake members to a 4-node cluster.

    memberlist draws indirect-probe helpers among all live members: mostly
    fakes, which never nack, so every failed probe of a fake raised Lifeguard's
    awareness to the top, probing became eight times slower and the fakes
    lived eight times longer; meanwhile gossip went mostly to fakes and a user
    event took its time to reach the real members (found by the live flood
    test: a Serf peer missed the event for minutes). Helpers, push-pull peers
    and at least one gossip target per round are now members that acked us.
    """
    sim = cluster()
    inject_packet(sim, 1, fake_members(120))
    sim.run_until(sim.now + 10)
    assert sum(1 for m in serf(sim, 1).members() if m.name.startswith("fake-")) == 120
    assert user_event_reaches(sim, 2, wait=3) == EVERYONE
    # The top of the scale is 7, where memberlist stays throughout (a few
    # helpers' nacks still arrive after the probe deadline).
    assert max(serf(sim, i).node.awareness.score for i in EVERYONE) <= 4
    sim.run_until(sim.now + 240)  # memberlist: half the fakes still alive at 300 s
    alive_fakes = [sum(1 for m in serf(sim, i).members()
                       if m.name.startswith("fake-") and m.status_name == "alive")
                   for i in EVERYONE]
    assert alive_fakes == [0, 0, 0, 0]


def alive_fakes(sim: Simulation, i: int) -> int:
    return sum(1 for m in serf(sim, i).members()
               if m.name.startswith("fake-") and m.status_name == "alive")


def test_fake_members_dead_at_once_do_not_take_the_next_gossip() -> None:
    """memberlist gossips to members dead less than 30 s, so that one falsely
    declared dead hears it and refutes. A hundred fakes that died together
    then took nearly every gossip slot for half a minute: in the live flood
    test a query sent just after missed the Serf peer. A member that never
    answered us has nothing to refute and is no longer gossiped to dead.
    """
    sim = cluster()
    inject_packet(sim, 1, fake_members(120))
    for _ in range(300):
        sim.run_until(sim.now + 1)
        if all(alive_fakes(sim, i) == 0 for i in EVERYONE):
            break
    assert all(alive_fakes(sim, i) == 0 for i in EVERYONE)
    missed = [k for k in range(12)
              if user_event_reaches(sim, k % 4, f"after-{k}", wait=1.0) != EVERYONE]
    assert missed == []


def test_forged_leave_and_alive_elsewhere_do_not_move_a_member_for_minutes() -> None:
    """A forged leave of node 2, then a forged alive placing it at an address
    where nobody answers: memberlist moves a member that left on anyone's
    word, so node 2 was declared dead there, and its refutations from its
    real address were refused as a conflict until the dead row was reaped at
    the end of a probe round (minutes with a hundred fake members; found by
    the live flood test). Now a move waits for the new address to answer, and
    a member said to have left hears it at once (gossip to the dead includes
    the left we have heard from), so it refutes within a second.
    """
    from swimlib.wire.messages import DEFAULT_VSN, Alive, Dead

    sim = cluster()
    inject_packet(sim, 1, fake_members(120))
    sim.run_until(sim.now + 5)
    real = serf(sim, 2).node.member(name(2))
    assert real is not None
    inject_packet(sim, 1, codec.encode_compound([
        codec.encode(Dead(real.incarnation, name(2), name(2))),
        codec.encode(Alive(real.incarnation + 2, name(2), "127.0.0.200", 7946, real.meta,
                           DEFAULT_VSN))]))
    sim.run_until(sim.now + 10)
    views = [{m.name: (m.status_name, m.addr) for m in serf(sim, i).members()}[name(2)]
             for i in EVERYONE]
    assert views == [("alive", real.addr)] * 4


def test_leave_for_a_member_already_gone_does_not_loop_through_gossip() -> None:
    """Serf since prune support reports a leave intent for a member already
    leaving or left as news without recording its time (our port followed
    it), so one forged leave with a higher time
    than the member's last was news again at every node on every receipt:
    re-queued for gossip by each, it circulated for ever (over a thousand
    copies queued per node within seconds; found by the randomized hunt).
    """
    from simulations import faults

    sim = cluster()
    faults.leave(sim, 2)
    sim.run_until(sim.now + 30)
    assert [status(sim, i, 2) for i in (0, 1, 3)] == ["left"] * 3
    inject_packet(sim, 0, serf_datagram(sw.LeaveIntent(1_000_000, name(2))))
    sim.run_until(sim.now + 10)
    queued = [len(serf(sim, i)._members.intents) for i in (0, 1, 3)]
    assert queued == [0, 0, 0]


def test_node_at_the_clock_edge_is_not_refused_by_its_peers_for_long() -> None:
    """A no-rebroadcast query at the edge (as in 1) moves one node's query
    clock there alone; every push-pull it then starts carries a time just past
    the edge, which its peers refused, whole, until they happened to start one
    to it. Now a refused push-pull makes the refuser sync with the sender.
    """
    sim = cluster()
    forged = sw.Query(EDGE, 7, "127.0.0.1", 7946, name(0), "x",
                      flags=sw.QUERY_FLAG_NO_BROADCAST, timeout_ns=10**9)
    inject_packet(sim, 1, serf_datagram(forged), source=("127.0.0.1", 7946))
    sim.run_until(sim.now + 1)
    behind = [i for i in EVERYONE if serf(sim, i).query_clock.time() <= EDGE]
    assert 1 not in behind and len(behind) >= 2
    serf(sim, 1).node.join([sim.slots[i].addr for i in behind], sim.now)  # a push-pull to each
    sim.poke(1)
    sim.run_until(sim.now + 5)
    assert all(serf(sim, i).query_clock.time() > EDGE for i in EVERYONE)
    assert all(serf(sim, i).node.stats["verify.stream_sender"] == 1 for i in behind)


def test_pings_from_anyone_do_not_drain_the_gossip() -> None:
    """memberlist piggybacks queued broadcasts on every ack; each message gets
    a few sends, so twenty pings spoofed from the node's own address spent the
    sends of the user event it had just received, and no peer heard it. Acks
    to anyone but the member the ping names as its sender now go out bare.
    """
    from swimlib.wire.messages import Ping

    sim = cluster()
    pings = [codec.encode(Ping(k, name(0))) for k in range(20)]
    event = serf_datagram(sw.UserEvent(5, "drained", b""))
    inject_packet(sim, 0, codec.encode_compound([event, *pings]),
                  source=sim.slots[0].addr)
    sim.run_until(sim.now + 3)
    reached = [i for i in EVERYONE
               if any(isinstance(e, Emit) and isinstance(e.event, UserEvent)
                      and e.event.name == "drained" for e in log(sim, i))]
    assert reached == EVERYONE
