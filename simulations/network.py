"""The simulated network: latency, datagram loss, partitions and traffic counters.

One seeded RNG owns every network decision, so a run replays exactly. Nodes
are small integers (their index in the simulation); the engine maps addresses
to indices. The model is deliberately simple and cheap, because it runs for
every datagram:

* one-way latency = ``base * uniform(0.8, 1.2)`` (jitter of +-20 %);
* UDP datagrams are lost independently with probability ``loss``;
  TCP streams are never lost (they only fail on a partition or a crash) but
  loss slows them: a request needs a handshake (SYN, SYN-ACK) and its data,
  a reply its data, and each lost segment costs a retransmission timeout
  (1 s for the SYN as in Linux, 200 ms for data; doubling on each retry);
* a partition is a directed rule "nothing from set A reaches set B";
  a symmetric split is two rules. Rules stack and are removed by ``heal``.

Default latencies (one way) when ``--latency-ms`` is not given: ``local``
0.1 ms, ``lan`` 0.5 ms (a loopback-like switch hop), ``wan`` 40 ms.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

#: One-way base latency in seconds per profile, used when none is given.
DEFAULT_LATENCY_S = {"local": 0.0001, "lan": 0.0005, "wan": 0.040}


class Network:
    """Decides when (or whether) bytes from one node reach another."""

    def __init__(self, n: int, rng: random.Random, latency: float, loss: float = 0.0) -> None:
        if not 0.0 <= loss < 1.0:
            raise ValueError(f"loss must be in [0, 1), got {loss!r}")
        if latency < 0:
            raise ValueError(f"latency must be >= 0, got {latency!r}")
        self.rng = rng
        self.latency = latency
        self.loss = loss
        #: Active partition rules: rule id -> (from-mask, to-mask), masks indexed by node.
        self._rules: dict[int, tuple[bytearray, bytearray]] = {}
        self._next_rule = 0
        self._n = n
        # Per-node traffic counters (sent side). Plain lists: cheap to bump.
        self.msgs_sent = [0] * n
        self.bytes_sent = [0] * n
        self.msgs_recv = [0] * n
        self.bytes_recv = [0] * n
        self.dropped_loss = 0
        self.dropped_partition = 0

    # -- topology ---------------------------------------------------------

    def grow(self, n: int) -> None:
        """Make room for nodes up to index ``n - 1`` (nodes added after start)."""
        extra = n - self._n
        if extra <= 0:
            return
        for a, b in self._rules.values():
            a.extend(bytes(extra))
            b.extend(bytes(extra))
        for counters in (self.msgs_sent, self.bytes_sent, self.msgs_recv, self.bytes_recv):
            counters.extend([0] * extra)
        self._n = n

    def block(self, src: Iterable[int], dst: Iterable[int]) -> int:
        """Drop everything sent from ``src`` nodes to ``dst`` nodes; returns a rule id."""
        a = bytearray(self._n)
        b = bytearray(self._n)
        for i in src:
            a[i] = 1
        for i in dst:
            b[i] = 1
        rule = self._next_rule
        self._next_rule += 1
        self._rules[rule] = (a, b)
        return rule

    def partition(self, side_a: Iterable[int], side_b: Iterable[int]) -> tuple[int, int]:
        """Symmetric split: neither side reaches the other. Returns both rule ids."""
        a = list(side_a)
        b = list(side_b)
        return (self.block(a, b), self.block(b, a))

    def heal(self, rules: Iterable[int] | None = None) -> None:
        """Remove the given partition rules, or all of them."""
        if rules is None:
            self._rules.clear()
            return
        for rule in rules:
            self._rules.pop(rule, None)

    @property
    def partitioned(self) -> bool:
        return bool(self._rules)

    def reachable(self, src: int, dst: int) -> bool:
        """True unless a partition rule blocks ``src -> dst``."""
        return all(not (a[src] and b[dst]) for a, b in self._rules.values())

    # -- per message decisions ---------------------------------------------

    def delay(self) -> float:
        """One-way latency for one message (consumes one RNG draw)."""
        return self.latency * (0.8 + 0.4 * self.rng.random())

    def _retransmits(self, rto: float) -> float:
        extra = 0.0
        while self.rng.random() < self.loss:
            extra += rto
            rto *= 2
        return extra

    def stream_request_delay(self) -> float:
        """Connect (SYN, SYN-ACK) then send the request: 1.5 round trips plus retries."""
        d = self.delay() + self.delay() + self.delay()
        if self.loss:
            d += self._retransmits(1.0) + self._retransmits(0.2)
        return d

    def refused_delay(self) -> float:
        """SYN out, RST back: how soon a connect to a dead process fails."""
        return self.delay() + self.delay()

    def stream_reply_delay(self) -> float:
        """The reply's data segment(s) back to the opener, with retries under loss."""
        d = self.delay()
        if self.loss:
            d += self._retransmits(0.2)
        return d

    def datagram(self, src: int, dst: int, size: int) -> float | None:
        """Account a datagram from ``src``; return its delay, or None if it is lost."""
        self.msgs_sent[src] += 1
        self.bytes_sent[src] += size
        if self._rules and not self.reachable(src, dst):
            self.dropped_partition += 1
            return None
        if self.loss and self.rng.random() < self.loss:
            self.dropped_loss += 1
            return None
        self.msgs_recv[dst] += 1
        self.bytes_recv[dst] += size
        return self.delay()

    def stream_payload(self, src: int, dst: int, size: int) -> None:
        """Account one stream request or reply (TCP: no loss, reachability checked elsewhere)."""
        self.msgs_sent[src] += 1
        self.bytes_sent[src] += size
        self.msgs_recv[dst] += 1
        self.bytes_recv[dst] += size

    def reset_counters(self) -> None:
        """Zero the traffic counters (start of a measured phase)."""
        for counters in (self.msgs_sent, self.bytes_sent, self.msgs_recv, self.bytes_recv):
            counters[:] = [0] * len(counters)
        self.dropped_loss = 0
        self.dropped_partition = 0
