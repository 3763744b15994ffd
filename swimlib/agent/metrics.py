"""An agent's metrics, named after memberlist's and Serf's, read when asked.

Nothing here runs on the protocol path. The core and the runtime keep plain
counters (``Agent.statistics()``), a few durations
(:mod:`swimlib.membership.timings`) and their tables; :func:`collect` reads
them into :class:`Family` values when a scraper asks (``--metrics-addr``,
:mod:`swimlib.agent.prometheus`) or when the statsd sink flushes
(``statsd_addr``, :mod:`swimlib.agent.statsd`). This module imports neither
``prometheus_client`` nor any socket code: an agent that exports nothing
never loads them.

Names. A Go Serf agent reports through go-metrics with the service name
``serf-agent``; each metric has a key such as ``["memberlist", "udp",
"sent"]``. Where swimlib has the same quantity, the :class:`Family` carries
the same key, and the sinks spell it as go-metrics' sinks would:
``serf_agent_memberlist_udp_sent`` for Prometheus (parts joined with ``_``,
``.``, ``-``, ``=``, ``/`` and spaces made ``_``) and
``serf-agent.memberlist.udp.sent`` for statsd. What only swimlib has is
keyed under ``swimlib`` (``swimlib_drops_total``, ``serf-agent.swimlib.drops.crc``).
docs/configuration.md has the table.

Units are memberlist's: byte counters count bytes, timers are milliseconds.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from swimlib import __version__
from swimlib.membership.timings import Timing
from swimlib.membership.types import MemberState

if TYPE_CHECKING:
    from swimlib.agent.runtime import Agent

#: go-metrics' service name in ``serf agent`` (cmd/serf/command/agent/command.go).
SERVICE_NAME = "serf-agent"
#: go-metrics' Prometheus sink keeps a summary's samples this long (its MaxAge).
SUMMARY_WINDOW = 10.0
#: The quantiles it reports.
QUANTILES = (0.5, 0.9, 0.99)

_FORBIDDEN = re.compile(r"[ .=\-/]")


class Kind(enum.Enum):
    """How a family is exported (go-metrics' calls in parentheses)."""

    #: A running total (IncrCounter): Prometheus counter, statsd ``|c`` deltas.
    COUNTER = "counter"
    #: A value now (SetGauge): Prometheus gauge, statsd ``|g``.
    GAUGE = "gauge"
    #: Durations in ms (MeasureSince) or sizes (AddSample): Prometheus summary,
    #: statsd ``|ms`` per sample.
    SUMMARY = "summary"


class Family:
    """One metric: its go-metrics key, kind, help and values."""

    __slots__ = ("go", "help", "key", "kind", "labels", "samples", "statsd", "summary")

    def __init__(self, key: Sequence[str], kind: Kind, help: str, *, go: bool = True,
                 labels: Sequence[str] = (), statsd: bool = True) -> None:
        #: The go-metrics key (swimlib's own ones start with ``swimlib``).
        self.key = tuple(key)
        self.kind = kind
        self.help = help
        #: Named after a metric a Go Serf agent reports (False: swimlib's own).
        self.go = go
        #: The labels that tell the samples apart (none: one sample).
        self.labels = tuple(labels)
        #: Also sent to statsd (the catch-all of every counter is not).
        self.statsd = statsd
        #: Label values (in the order of ``labels``) -> value, for counters and gauges.
        self.samples: dict[tuple[str, ...], float] = {}
        #: For summaries.
        self.summary: Summary | None = None

    def add(self, value: float, *label_values: str) -> Family:
        self.samples[label_values] = float(value)
        return self

    @property
    def prometheus_name(self) -> str:
        """go-metrics' Prometheus sink's name (without a counter's ``_total``)."""
        parts = (SERVICE_NAME, *self.key) if self.go else self.key
        return _FORBIDDEN.sub("_", "_".join(parts))

    def statsd_key(self, hostname: str = "", label_values: Sequence[str] = ()) -> str:
        """go-metrics' statsd key: gauges carry the host name, labels append their values."""
        parts = [SERVICE_NAME]
        if self.kind is Kind.GAUGE and hostname:
            parts.append(hostname)
        parts.extend(self.key)
        parts.extend(label_values)
        return ".".join(parts).replace(":", "_").replace(" ", "_")

    def __repr__(self) -> str:
        return f"Family({'.'.join(self.key)}, {self.kind.value}, {self.samples or self.summary})"


class Summary:
    """A summary's count and sum, and the samples a sink reports one by one.

    ``timing`` (durations) keeps recent samples; a size summary has only a
    count and a sum (the core counts those and no more on the message path).
    """

    __slots__ = ("count", "timing", "total")

    def __init__(self, count: int, total: float, timing: Timing | None = None) -> None:
        self.count = count
        self.total = total
        self.timing = timing

    @classmethod
    def of(cls, timing: Timing) -> Summary:
        return cls(timing.count, timing.total, timing)

    def quantiles(self, now: float, window: float = SUMMARY_WINDOW) -> dict[float, float]:
        """The samples of the last ``window`` seconds at :data:`QUANTILES` (NaN: none)."""
        values = sorted(self.timing.window(now, window)) if self.timing is not None else []
        if not values:
            return dict.fromkeys(QUANTILES, float("nan"))
        return {q: values[min(len(values) - 1, int(q * len(values)))] for q in QUANTILES}

    def __repr__(self) -> str:
        return f"Summary(count={self.count}, total={self.total})"


#: memberlist's and Serf's counters: go-metrics key, swimlib's counter, help.
GO_COUNTERS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("memberlist", "udp", "sent"), "udp.sent_bytes", "Bytes sent in UDP datagrams."),
    (("memberlist", "udp", "received"), "udp.received_bytes",
     "Bytes received in UDP datagrams."),
    (("memberlist", "tcp", "sent"), "tcp.sent_bytes",
     "Bytes sent on TCP streams (push-pull, join, fallback ping)."),
    (("memberlist", "tcp", "accept"), "tcp.accept", "Inbound TCP streams accepted."),
    (("memberlist", "tcp", "connect"), "tcp.connect", "Outbound TCP streams connected."),
    (("memberlist", "msg", "alive"), "msg.alive", "Alive messages applied (a member's news)."),
    (("memberlist", "msg", "suspect"), "msg.suspect", "Suspicions begun."),
    (("memberlist", "msg", "dead"), "msg.dead", "Deaths and leaves applied."),
    (("memberlist", "degraded", "probe"), "probe.degraded",
     "Probes run with a stretched interval (health score above 0)."),
    (("memberlist", "degraded", "timeout"), "suspicion.degraded",
     "Members declared dead with fewer confirmations than expected."),
    (("serf", "member", "join"), "member.join", "Serf member-join events."),
    (("serf", "member", "failed"), "member.failed", "Serf member-failed events."),
    (("serf", "member", "left"), "member.left", "Serf member-leave events (graceful)."),
    (("serf", "member", "update"), "member.update", "Serf member-update events."),
    (("serf", "member", "flap"), "member.flap",
     "Failed members back within 60 s (Serf's FlapTimeout)."),
    (("serf", "events"), "serf.events", "User events delivered (each event once)."),
    (("serf", "queries"), "serf.queries", "Queries seen (each query once)."),
    (("serf", "query_acks"), "query.acks", "Acks to our queries."),
    (("serf", "query_responses"), "query.responses", "Responses to our queries."),
    (("serf", "query_duplicate_acks"), "query.duplicate_acks",
     "Acks to our queries heard again."),
    (("serf", "query_duplicate_responses"), "query.duplicate_responses",
     "Responses to our queries heard again."),
    (("agent", "ipc", "accept"), "rpc.accept", "RPC clients accepted."),
    (("agent", "ipc", "command"), "rpc.command", "RPC commands received (after the handshake)."),
)

#: Serf's message sizes: go-metrics key, swimlib's count and byte counters, help.
GO_SIZES: tuple[tuple[tuple[str, ...], str, str, str], ...] = (
    (("serf", "msgs", "sent"), "serf.msgs.sent", "serf.msgs.sent_bytes",
     "Serf messages handed to gossip, and their bytes."),
    (("serf", "msgs", "received"), "serf.msgs.received", "serf.msgs.received_bytes",
     "Serf messages received, and their bytes."),
)

#: Counters that are swimlib's own: key, swimlib's counter, help.
OWN_COUNTERS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("swimlib", "udp", "packets", "sent"), "udp.sent", "UDP datagrams sent."),
    (("swimlib", "udp", "packets", "received"), "udp.received", "UDP datagrams received."),
)


def _counter(key: Sequence[str], help: str, value: float, go: bool = True) -> Family:
    return Family(key, Kind.COUNTER, help, go=go).add(value)


def collect(agent: Agent, now: float) -> list[Family]:
    """Every family, read from ``agent`` as of ``now`` (its clock: ``anyio.current_time()``)."""
    stats = agent.statistics()
    counters = stats.counters
    serf = agent.serf
    node = serf.node
    out = [_counter(key, help, counters.get(name, 0)) for key, name, help in GO_COUNTERS]
    for key, count, size, help in GO_SIZES:
        family = Family(key, Kind.SUMMARY, help)
        family.summary = Summary(counters.get(count, 0), counters.get(size, 0))
        out.append(family)
    timings = node.timings
    for key, timing, help in (
            (("memberlist", "probeNode"), timings.probe,
             "Probe durations in ms: ping to ack, or the whole probe period when none came."),
            (("memberlist", "pushPullNode"), timings.push_pull,
             "Push-pull durations in ms (periodic, join, re-check), failures included.")):
        family = Family(key, Kind.SUMMARY, help)
        family.summary = Summary.of(timing)
        out.append(family)
    out.append(Family(("memberlist", "health", "score"), Kind.GAUGE,
                      "Lifeguard's local health score (0 is healthy).").add(node.health_score))
    instances = Family(("memberlist", "node", "instances"), Kind.GAUGE,
                       "Members by memberlist state, self included.", labels=("node_state",))
    for state, n in node.state_counts().items():
        instances.add(n, _STATE_NAMES[state])
    out.append(instances)
    out.append(Family(("memberlist", "queue", "broadcasts"), Kind.GAUGE,
                      "memberlist broadcasts queued for gossip.").add(
                          node.broadcast_queue_depth()))
    for name, depth in serf.queue_depths().items():
        out.append(Family(("serf", "queue", name), Kind.GAUGE,
                          f"Serf {name.lower()} messages queued for gossip.").add(depth))
    out.extend(_counter(key, help, counters.get(name, 0), go=False)
               for key, name, help in OWN_COUNTERS)
    members = Family(("swimlib", "members"), Kind.GAUGE,
                     "Members by Serf status, self included (as serf members shows them).",
                     go=False, labels=("status",))
    for status, n in serf.status_counts().items():
        members.add(n, status)
    out.append(members)
    out.append(_labelled(("swimlib", "drops"), Kind.COUNTER,
                         "Input refused, by reason (a datagram that failed to decode ...).",
                         "reason", stats.drops))
    out.append(_labelled(("swimlib", "internal", "errors"), Kind.COUNTER,
                         "Failures caught at a boundary and survived, by place.",
                         "place", stats.internal_errors))
    clocks = Family(("swimlib", "lamport", "time"), Kind.GAUGE,
                    "Serf's Lamport clocks.", go=False, labels=("clock",))
    clocks.add(serf.clock.time(), "member").add(serf.event_clock.time(), "event")
    clocks.add(serf.query_clock.time(), "query")
    out.append(clocks)
    out.append(Family(("swimlib", "tcp", "inbound"), Kind.GAUGE,
                      "Inbound TCP streams being served.", go=False).add(agent.inbound_streams))
    info = Family(("swimlib", "agent", "info"), Kind.GAUGE,
                  "The agent: its node name, version and whether gossip is encrypted (always 1).",
                  go=False, labels=("node", "version", "encrypted"), statsd=False)
    out.append(info.add(1, agent.name, __version__, str(agent.keyring is not None).lower()))
    out.append(_labelled(("swimlib", "counters"), Kind.COUNTER,
                         "Every protocol and runtime counter by its swimlib name "
                         "(Agent.statistics(); swimlib info).", "counter", counters,
                         statsd=False))
    return out


_STATE_NAMES = {MemberState.ALIVE: "alive", MemberState.SUSPECT: "suspect",
                MemberState.DEAD: "dead", MemberState.LEFT: "left"}


def _labelled(key: Sequence[str], kind: Kind, help: str, label: str,
              values: Mapping[str, int], statsd: bool = True) -> Family:
    family = Family(key, kind, help, go=False, labels=(label,), statsd=statsd)
    for name, value in sorted(values.items()):
        family.add(value, name)
    return family


#: What the sinks call to read the metrics: ``now`` -> families.
Reader = Callable[[float], list[Family]]
