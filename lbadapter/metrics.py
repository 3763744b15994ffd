"""``lbadapter run --metrics-addr HOST:PORT``: Prometheus metrics on ``/metrics``.

Imported only with the flag (it needs ``prometheus_client``, the optional
extra ``swimlib[metrics]``). Values are read from the adapter when a scraper
asks, on the adapter's event loop, by the same small HTTP server the agent
uses (:mod:`swimlib.agent.prometheus`: bounded requests, connections and
time). The embedded agent's own metrics (``serf_agent_*``, ``swimlib_*``)
and the process's come along on the same page.

Every label value comes from a fixed set written here or in the reconciler
(roles, statuses, states, operation and reason names), never from member
data: a hostile member name cannot add series or break the format.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import anyio
from anyio.abc import SocketListener, TaskGroup
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from swimlib.agent.metrics import collect as collect_agent
from swimlib.agent.prometheus import AgentCollector, start_registry_server

if TYPE_CHECKING:
    from lbadapter.adapter import Adapter
    from swimlib.agent.runtime import Agent

log = logging.getLogger("lbadapter")

__all__ = [
    "OPERATIONS",
    "SERVER_STATES",
    "AdapterCollector",
    "make_registry",
    "server_state",
    "start_metrics_server",
]

#: Runtime API changes the reconciler counts (``Reconciler.counters`` keys).
OPERATIONS = ("add", "reuse", "readdress", "drain", "maint", "del", "state", "weight")
#: How a server of the managed backend stands, as the stats page would say it.
SERVER_STATES = ("up", "down", "drain", "maint")
_ROLES = ("backend", "balancer", "other")
_STATUSES = ("alive", "leaving", "left", "failed", "other")
_CONFIG_ERRORS = {"render": "render_errors", "check": "check_errors", "write": "write_errors"}


def server_state(admin_maint: bool, admin_drain: bool, op_state: int) -> str:
    """One of :data:`SERVER_STATES` (maintenance and drain first, then health)."""
    if admin_maint:
        return "maint"
    if admin_drain:
        return "drain"
    return "up" if op_state == 2 else "down"


class AdapterCollector:
    """A prometheus_client collector over an :class:`~lbadapter.adapter.Adapter`."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter

    def describe(self) -> list[Metric]:
        return []  # label values vary (internal error places...): nothing to check up front

    def collect(self) -> Iterator[Metric]:
        a = self.adapter
        rc = a.reconciler.counters
        members = GaugeMetricFamily("lbadapter_members", "Cluster members in the latest "
                                    "snapshot, by role (backend tag, role=balancer, other) "
                                    "and status", labels=["role", "status"])
        for role in _ROLES:
            for status in _STATUSES:
                members.add_metric([role, status], a.member_counts.get((role, status), 0))
        yield members
        servers = GaugeMetricFamily("lbadapter_servers", "Servers of the managed backend as "
                                    "HAProxy reported them at the latest pass, by state",
                                    labels=["state"])
        counts = dict.fromkeys(SERVER_STATES, 0)
        for s in a.last_pass.actual if a.last_pass is not None else []:
            counts[server_state(s.in_maint, s.draining, s.op_state)] += 1
        for state, n in counts.items():
            servers.add_metric([state], n)
        yield servers
        desired = GaugeMetricFamily("lbadapter_desired_servers", "Servers membership asks "
                                    "for, by lb-state (live members only)", labels=["state"])
        wanted = {"ready": 0, "drain": 0, "maint": 0}
        for d in a.desired.values():
            if d.want.value == "ready":
                wanted[d.state] += 1
        for state, n in wanted.items():
            desired.add_metric([state], n)
        yield desired
        ops = CounterMetricFamily("lbadapter_runtime_api_operations", "Changes sent through "
                                  "HAProxy's runtime API, by operation", labels=["operation"])
        for op in OPERATIONS:
            ops.add_metric([op], rc.get(op, 0))
        yield ops
        errors = CounterMetricFamily("lbadapter_runtime_api_errors", "Runtime API answers "
                                     "that were not what HAProxy 2.6 says on success, or "
                                     "refusals, by kind", labels=["kind"])
        for kind in ("unexpected_answer", "server_errors", "del_refused_busy",
                     "del_refused_not-in-maint"):
            errors.add_metric([kind.replace("-", "_")], rc.get(kind, 0))
        yield errors
        yield _counter("lbadapter_reconcile_passes", "Reconcile passes run", rc.get("passes", 0))
        yield _counter("lbadapter_reconcile_errors", "Reconcile passes that met an error "
                       "(HAProxy unreachable, an unexpected answer...)",
                       a.counters.get("reconcile_errors", 0))
        yield _gauge("lbadapter_last_reconcile_seconds", "How long the latest reconcile "
                     "pass took", a.last_reconcile_seconds or 0.0)
        sup = a.supervisor
        yield _counter("lbadapter_reloads", "HAProxy reloads confirmed (a new worker)",
                       sup.reloads)
        yield _counter("lbadapter_reload_failures", "HAProxy reloads that failed (the old "
                       "worker kept serving)", sup.reload_failures)
        yield _counter("lbadapter_haproxy_starts", "HAProxy master processes started",
                       sup.starts)
        yield _gauge("lbadapter_haproxy_up", "1 while HAProxy runs and answers on both "
                     "sockets", 1.0 if sup.ready else 0.0)
        yield _gauge("lbadapter_peers", "Balancers in the peers section (sticky source)",
                     len(a.peers))
        yield _counter("lbadapter_config_writes", "Validated configs installed",
                       a.counters.get("config_writes", 0))
        cfg = CounterMetricFamily("lbadapter_config_errors", "Configs not installed, by "
                                  "cause (template, haproxy -c, the file system)",
                                  labels=["kind"])
        for kind, key in _CONFIG_ERRORS.items():
            cfg.add_metric([kind], a.counters.get(key, 0))
        yield cfg
        problems = GaugeMetricFamily("lbadapter_member_problems", "Members of the latest "
                                     "snapshot skipped or defaulted, by reason (bad tags, "
                                     "addresses...)", labels=["reason"])
        for reason, n in sorted(a.problems.last.items()):
            problems.add_metric([reason], n)
        yield problems
        internal = CounterMetricFamily("lbadapter_internal_errors", "Failures caught by a "
                                       "boundary and retried, by place", labels=["place"])
        for place, n in sorted(a.faults.counts.items()):
            internal.add_metric([place], n)
        yield internal


def _counter(name: str, help: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, help, value=value)


def _gauge(name: str, help: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help, value=value)


def make_registry(adapter: Adapter, agent: Agent | None = None) -> CollectorRegistry:
    """The adapter's metrics, the agent's (if given) and the process's, on a private registry."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AdapterCollector(adapter))
    if agent is not None:
        registry.register(AgentCollector(lambda now: collect_agent(agent, now),
                                         anyio.current_time))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


async def start_metrics_server(task_group: TaskGroup, adapter: Adapter,
                               addr: tuple[str, int], agent: Agent | None = None
                               ) -> list[SocketListener]:
    """Serve the metrics on ``addr`` in ``task_group``; raises ``OSError`` if it cannot bind."""
    return await start_registry_server(
        task_group, make_registry(adapter, agent), addr, counters=adapter.counters,
        faults=adapter.faults,
        announce=lambda url: log.info("serving Prometheus metrics on %s", url))
