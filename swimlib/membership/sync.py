"""Push-pull: joins, periodic anti-entropy, and re-checks with a member itself.

A push-pull is memberlist's full-state exchange over TCP: we send our whole
table, the peer answers with its own, each side merges the other's
(memberlist ``mergeState``). :class:`Sync` opens them -- for a join, on the
push-pull timer, on demand, and to re-check a claim we refused with the
member it is about -- answers inbound ones, and merges replies through the
member table's rules. It also keeps the registry of the streams the layer
has asked the runtime to open (request id -> purpose), TCP pings included.
"""

from __future__ import annotations

import enum
import math
import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from swimlib.config import Config
from swimlib.membership.delegate import Delegate
from swimlib.membership.rows import NodeState
from swimlib.membership.table import MemberTable, Verdict
from swimlib.membership.timers import Timers
from swimlib.membership.timings import Timings
from swimlib.membership.types import Address, Effect, JoinFinished, MemberState, OpenStream
from swimlib.records import record
from swimlib.wire import codec
from swimlib.wire.envelope import Envelope
from swimlib.wire.messages import Alive, Dead, PushNodeState, PushPull, Suspect

#: memberlist scales the push-pull interval once the cluster exceeds this size.
PUSH_PULL_SCALE_THRESHOLD = 32
#: Streams in flight that check a claimed new address of a member (see
#: :meth:`MemberTable._may_move`): each is a TCP connection a claim makes us open.
MAX_ADDRESS_CHECKS = 16
#: Members re-checked when the sender of a refused push-pull is known only by
#: its IP (see :meth:`Sync.recheck_stream_sender`).
MAX_STREAM_SENDER_CHECKS = 4


def push_pull_interval(base: float, n: int) -> float:
    """memberlist's push-pull period: ``base * (ceil(log2 n - 5) + 1)`` above 32 nodes."""
    if n <= PUSH_PULL_SCALE_THRESHOLD:
        return base
    return base * (math.ceil(math.log2(n) - math.log2(PUSH_PULL_SCALE_THRESHOLD)) + 1)


class StreamPurpose(enum.Enum):
    """Why the layer asked for a stream: where its reply goes."""

    JOIN = enum.auto()
    PUSH_PULL = enum.auto()
    TCP_PING = enum.auto()


@record
class UserState:
    """The layer above's part of a push-pull (Serf's state), handed up to merge."""

    payload: bytes
    join: bool
    #: The reply to a stream we opened (nobody can spoof that).
    trusted: bool


class _JoinAttempt:
    __slots__ = ("contacted", "failed", "join_id", "remaining")

    def __init__(self, remaining: int, join_id: int) -> None:
        self.join_id = join_id
        self.remaining = remaining
        self.contacted = 0
        self.failed: list[Address] = []


class Sync:
    """Push-pull exchanges and the registry of outbound streams."""

    def __init__(self, config: Config, table: MemberTable, delegate: Delegate | None,
                 envelope: Envelope, *, stats: Counter[str], effects: list[Effect],
                 timers: Timers, timings: Timings) -> None:
        self.config = config
        self._envelope = envelope
        self._table = table
        self._delegate = delegate
        self._stats = stats
        self._effects = effects
        self._timers = timers
        self._timings = timings
        self._stream_id = 0
        #: Pings a member's old address for a CHECK_HOLDER (the prober's, set by the node).
        self.check_holder: Callable[[Alive, float], None] | None = None
        #: Request id -> (purpose, info, when it was asked for).
        self._streams: dict[int, tuple[StreamPurpose, Any, float]] = {}
        self._join_id = 0
        #: Request ids of the streams checking a claimed new address.
        self._address_checks: set[int] = set()

    def start(self, now: float, rng: random.Random) -> None:
        if self.config.push_pull_interval > 0:
            self._timers.schedule(now + rng.random() * self.config.push_pull_interval,
                                  self._push_pull_tick)

    # ------------------------------------------------------------------ streams

    def open_stream(self, dest: Address, data: bytes, purpose: StreamPurpose,
                    info: Any, now: float) -> int:
        """Ask the runtime for a TCP exchange sending ``data`` (sealed here); returns its
        request id."""
        self._stream_id += 1
        self._streams[self._stream_id] = (purpose, info, now)
        self._stats["tcp.opened"] += 1
        sealed = self._envelope.seal_stream(data, opening=True)
        self._effects.append(OpenStream(self._stream_id, dest, sealed, self.config.tcp_timeout))
        return self._stream_id

    def take_request(self, request_id: int, now: float) -> tuple[StreamPurpose, Any] | None:
        """The purpose of a stream we asked for, once: its reply has come (or it failed).

        A push-pull's duration is recorded here, success or not, as memberlist
        times its whole ``pushPullNode``.
        """
        pending = self._streams.pop(request_id, None)
        if pending is None:
            return None
        self._address_checks.discard(request_id)
        purpose, info, started = pending
        if purpose is not StreamPurpose.TCP_PING:
            self._timings.push_pull.add(now, started)
        return purpose, info

    # ------------------------------------------------------------------ push-pull out

    def join(self, addrs: Sequence[Address], now: float) -> int:
        """Push-pull (Join=true) with every address; ends with a :class:`JoinFinished`."""
        self._join_id += 1
        if not addrs:
            self._effects.append(JoinFinished(0, (), self._join_id))
            return self._join_id
        attempt = _JoinAttempt(len(addrs), self._join_id)
        data = self.local_state(True)
        for addr in addrs:
            self.open_stream(addr, data, StreamPurpose.JOIN, (attempt, addr), now)
        return self._join_id

    def _push_pull_tick(self, _: object, now: float) -> None:
        self._timers.schedule(now + push_pull_interval(self.config.push_pull_interval,
                                                       len(self._table)),
                              self._push_pull_tick)
        self.sync_now(now)

    def sync_now(self, now: float) -> bool:
        """Push-pull with a random live member now; False when there is none."""
        me = self._table.name
        peers = self._table.random_heard_first(
            1, lambda s: s.name == me or s.state != MemberState.ALIVE)
        if not peers:
            return False
        self._push_pull_with(peers[0], now)
        return True

    def _push_pull_with(self, st: NodeState, now: float) -> None:
        dest = (st.addr, st.port)
        self.open_stream(dest, self.local_state(False), StreamPurpose.PUSH_PULL, dest, now)

    def local_state(self, join: bool) -> bytes:
        """Our whole table as an encoded push-pull (rows cached between syncs)."""
        user = self._delegate.local_state(join) if self._delegate is not None else b""
        return codec.encode_push_pull_rows(join, self._table.encoded_rows(), user)

    # ------------------------------------------------------------------ re-checks

    def follow(self, verdict: Verdict, name: str, claimed: Address | None,
               now: float, claim: Alive | None = None) -> Verdict:
        """Carry out what a rule asked for (a re-check, an address or holder check)."""
        if verdict is Verdict.RECHECK:
            st = self._table.get(name)
            if st is not None:
                self.recheck(st, now)
        elif verdict is Verdict.CHECK_ADDRESS and claimed is not None:
            self._check_address(name, claimed, now)
        elif (verdict is Verdict.CHECK_HOLDER and claim is not None
              and self.check_holder is not None):
            self.check_holder(claim, now)
        return verdict

    def recheck(self, st: NodeState, now: float) -> bool:
        """Sync with ``st`` itself after refusing a claim about it (see
        :func:`domains.may_verify`): its own row is the one we may believe
        whatever its jump, so a view left behind catches up."""
        if st.name == self._table.name or st.dead_or_left():
            return False
        if not self._table.may_recheck(st, now):
            return False
        self._stats["verify.sync"] += 1
        self._push_pull_with(st, now)
        return True

    def _check_address(self, name: str, claimed: Address, now: float) -> None:
        """Open a push-pull to a member's claimed new address (its reply is its word)."""
        st = self._table.get(name)
        if (st is not None and len(self._address_checks) < MAX_ADDRESS_CHECKS
                and self._table.may_recheck(st, now)):
            self._stats["address.checked"] += 1
            self._address_checks.add(self.open_stream(
                claimed, self.local_state(False), StreamPurpose.PUSH_PULL, claimed, now))

    def recheck_member(self, name: str, source: Address, now: float) -> bool:
        """Sync with the live member ``name`` living at ``source`` (rate-limited
        as :meth:`recheck`): the layer above refused something that member
        sent as implausible, and its own state says whether we are behind."""
        st = self._table.get(name)
        if st is None or st.state != MemberState.ALIVE or (st.addr, st.port) != source:
            return False
        return self.recheck(st, now)

    def recheck_stream_sender(self, source: Address, now: float) -> None:
        """Sync with whoever sent a push-pull whose times we refused.

        One message can move a node's clock to the very edge of what its
        peers accept; its next push-pull then carries a time just past it,
        refused by peers that never saw that message. A datagram's sender is
        re-checked by its address (the layer above calls
        :meth:`recheck_member`); a stream comes from an ephemeral port, so
        its sender is one of the live members at its IP: the one at
        ``source`` if the port matches, else the first few. Each sync is
        rate-limited per member (:meth:`recheck`), so a spoofed sender costs
        little.
        """
        host, port = source
        me = self._table.name
        at_host = [st for st in self._table.nodes
                   if st.addr == host and st.state == MemberState.ALIVE and st.name != me]
        exact = [st for st in at_host if st.port == port]
        for st in (exact or at_host)[:MAX_STREAM_SENDER_CHECKS]:
            if self.recheck(st, now):
                self._stats["verify.stream_sender"] += 1

    def _catch_up_own_row(self, msg: PushPull) -> None:
        """Joining, we may find ourselves remembered at another address (we
        restarted elsewhere): start above that incarnation (memberlist starts
        at 0 and is refused until the old row dies)."""
        table = self._table
        for r in msg.nodes:
            if (r.name == table.name and (r.addr, r.port) != (table.addr, table.port)
                    and r.state != MemberState.LEFT):
                table.catch_up_incarnation(r.incarnation)
                return

    # ------------------------------------------------------------------ push-pull in

    def answer(self, msg: PushPull, now: float) -> tuple[bytes, UserState | None]:
        """An inbound push-pull: our state (built before theirs is merged, as
        memberlist does), after merging their rows; their user state, if any,
        is the caller's to merge (then :meth:`recheck_stream_sender` if it
        refused some of it)."""
        reply = self.local_state(msg.join)
        return reply, self.merge(msg, now)

    def on_reply(self, purpose: StreamPurpose, info: Any, msg: Any,
                 now: float) -> Iterator[UserState]:
        """The reply to a join or push-pull we opened (``msg`` None or not a
        PushPull: failed). Yields the peer's user state, if any, for the layer
        above to merge before the join is accounted for (as memberlist, whose
        delegate merges inside the exchange)."""
        ok = isinstance(msg, PushPull)
        peer = info[1] if purpose is StreamPurpose.JOIN else info
        if ok and purpose is StreamPurpose.JOIN:
            self._catch_up_own_row(msg)
        if ok:
            state = self.merge(msg, now, peer)
            if state is not None:
                yield state
        else:
            self._stats["push_pull.failed"] += 1
        if purpose is StreamPurpose.JOIN:
            attempt, addr = info
            attempt.remaining -= 1
            if ok:
                attempt.contacted += 1
            else:
                attempt.failed.append(addr)
            if attempt.remaining == 0:
                self._effects.append(JoinFinished(attempt.contacted, tuple(attempt.failed),
                                                  attempt.join_id))

    def merge(self, remote: PushPull, now: float,
              peer: Address | None = None) -> UserState | None:
        """Merge a peer's rows (memberlist mergeState); returns its user state
        for the layer above, if it carried any.

        ``peer`` is the address we opened the stream to, when we did: the row
        of the member living there is its own word about itself.
        """
        if not self._protocols_fit(remote.nodes):
            self._stats["drop.push_pull.protocol"] += 1
            return None
        table = self._table
        by_name = table.by_name
        me = table.name
        follow = self.follow
        for r in remote.nodes:
            state = r.state
            if state == MemberState.ALIVE:
                known = by_name.get(r.name)
                if (known is not None and r.incarnation <= known.incarnation
                        and r.name != me and known.addr == r.addr and known.port == r.port):
                    continue  # fast path: nothing new (what apply_alive would conclude)
                own_word = peer is not None and peer == (r.addr, r.port) and r.name != me
                alive = Alive(r.incarnation, r.name, r.addr, r.port, r.meta, r.vsn)
                verdict = table.apply_alive(alive, now, authoritative=own_word)
                if verdict is not Verdict.IGNORED and verdict is not Verdict.APPLIED:
                    follow(verdict, r.name, (r.addr, r.port), now, alive)
            elif state == MemberState.LEFT:
                verdict = table.apply_dead(Dead(r.incarnation, r.name, r.name), now)
                if verdict is Verdict.RECHECK:
                    follow(verdict, r.name, None, now)
            else:
                # A peer's "dead" only makes us suspect: we never kill on hearsay.
                verdict = table.apply_suspect(Suspect(r.incarnation, r.name, me), now)
                if verdict is Verdict.RECHECK:
                    follow(verdict, r.name, None, now)
        if remote.user_state:
            return UserState(remote.user_state, remote.join, trusted=peer is not None)
        return None

    def _protocols_fit(self, remote: Sequence[PushNodeState]) -> bool:
        """Every alive node's current versions must fit the cluster-wide ranges."""
        distinct = {s.vsn for s in self._table.nodes if s.state == MemberState.ALIVE}
        distinct.update(r.vsn for r in remote if r.state == MemberState.ALIVE)
        distinct.discard(b"")
        if len(distinct) <= 1:
            return True
        pmin = max(v[0] for v in distinct)
        pmax = min(v[1] for v in distinct)
        dmin = max(v[3] for v in distinct)
        dmax = min(v[4] for v in distinct)
        return all(pmin <= v[2] <= pmax and dmin <= v[5] <= dmax for v in distinct)
