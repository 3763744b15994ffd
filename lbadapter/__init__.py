"""lbadapter: keep HAProxy in step with swimlib/Serf cluster membership.

``lbadapter run`` embeds a swimlib agent (tag ``role=balancer``), runs HAProxy
in master-worker mode as its child and applies membership changes through
HAProxy's runtime API, without reloads. The config file is re-rendered on
every change anyway, so a restart at any moment comes back with the current
members. Design and verified HAProxy 2.6 facts: /work/shared/reference/haproxy.md.

Commands (``lbadapter.cli``)::

    lbadapter run [--join ADDR]... [--node NAME] [--bind HOST:PORT] [--advertise HOST:PORT]
                  [--rpc-addr HOST:PORT] [--backend-tag role=backend] [--backend-port 3000]
                  [--listen 0.0.0.0:80] [--stats 0.0.0.0:1936] [--template PATH.j2]
                  [--config PATH.toml] [--haproxy PATH] [--state-dir DIR] [--log-level info]
                  [--vip ADDR/PREFIX --vip-interface IFACE]
                  [--sticky cookie|source|none] [--peer-port 7947] [--metrics-addr HOST:PORT]
    lbadapter render --template T.j2 --members-json F.json [same settings flags]
    lbadapter status [--state-dir DIR] [--json]

``--config FILE.toml`` takes the same settings as keys (``backend_tag = "role=backend"``,
dashes or underscores), plus tuning keys: ``backend_name``, ``balance``,
``server_options``, ``reconcile_interval``, ``drain_grace``, ``reload_min_wait``,
``reload_max_wait``, ``hard_stop_after``, and for ``--vip`` (``lbadapter.keepalived``):
``vip_router_id``, ``vip_priority``, ``vip_advert_interval``, ``vip_unicast_peers``,
``keepalived``, ``cookie_name``, ``cookie_key``,
``stick_expire``. Command-line flags win over the file.

Several balancers, one truth: any number of ``lbadapter run`` on one cluster
reach the same HAProxy view, because server names, IDs (``id N``, a hash of
the name) and cookies (HAProxy's dynamic cookies: a hash of ``cookie_key``
and the server's address) depend on the member alone. With
``--sticky source`` the ``peers`` section is generated from the members
tagged ``role=balancer`` (port from their tag ``lb-peer-port``), so stick
tables replicate; a change to it is a coalesced, checked reload. Backends
steer their own server with the tags ``lb-weight=0..256`` and
``lb-state=ready|drain|maint`` (runtime API, no reload; a bad value is
logged, counted in ``member_problems`` and ignored).

State directory (``--state-dir``, default ``./lbadapter-state``)::

    haproxy.cfg      the live config (only ever replaced by a file that passed ``haproxy -c``)
    haproxy.cfg.bak  the previous good config
    admin.sock       HAProxy stats socket, ``level admin`` (runtime API)
    master.sock      HAProxy master CLI (``show proc``, ``reload``)
    keepalived.conf  with ``--vip``: rendered from the settings, checked with ``keepalived -t``
    keepalived.pid, keepalived-vrrp.pid   keepalived's parent and VRRP child
    haproxy-fault    with ``--vip``: 0 while HAProxy serves, else 1 (keepalived ``track_file``)
    state.json       desired servers and the last reconcile result (read by ``lbadapter status``),
                     ``internal_errors`` (place -> failures caught and retried: ``desired``,
                     ``reconcile``, ``reconcile-server``, ``config``, ``reload``, ``state``,
                     ``step``) and ``member_problems`` (reason -> members of the latest
                     snapshot left out or defaulted: ``port_invalid``, ``addr_scoped``...)

Member data (names, tags, addresses, status) is untrusted: it is checked in
one place, ``lbadapter.desired`` (``DesiredServer`` refuses any name, address
or port that could not go into a config line or a runtime API command as it
is; ``member_label`` escapes the member name for logs, templates and status),
and every reconcile step runs inside a failure boundary (``swimlib.faults``).

Python API (async code is anyio, so it runs under asyncio or trio; the commands pick
the event loop from the ``SWIMLIB_BACKEND`` environment variable, see ``lbadapter.cli``):

* ``lbadapter.config``: ``Settings`` (frozen attrs; every setting, documented defaults),
  ``load_settings(argv_namespace) -> Settings``, ``SettingsError(ValueError)``.
* ``lbadapter.desired``: ``server_name(member_name) -> str`` (a stable, HAProxy-safe name),
  ``DesiredServer(name, member, addr, port, want)``, ``Want.READY|DRAIN|GONE``,
  ``desired_servers(members, backend_tag, default_port) -> dict[str, DesiredServer]``,
  ``members_from_json(obj) -> list[MemberRecord]`` (``serf members -format=json`` shape).
* ``lbadapter.render``: ``render_config(settings, servers, template=None) -> str``
  (``settings.template`` or the packaged default),
  ``RenderError`` (message names template file and line), ``check_config(haproxy, path)``,
  ``ConfigWriter(path, haproxy).write(text) -> bool`` (atomic, validated; ``ConfigCheckError``
  carries HAProxy's ``[ALERT]`` lines).
* ``lbadapter.haproxy``: ``RuntimeClient(admin_sock)`` (``show_servers_state(be)``,
  ``show_stat(be)``, ``add_server``, ``enable_health``, ``set_ready_health_down``,
  ``set_state``, ``set_addr``, ``del_server``), ``MasterClient(master_sock)`` (``show_proc()``,
  ``reload()``), ``parse_stat_csv(text) -> list[dict[str, str]]``,
  ``up_servers(rows, backend) -> set[str]``, ``find_haproxy(path=None) -> str``.
* ``lbadapter.supervisor``: ``Supervisor`` (runs and restarts the HAProxy master).
* ``lbadapter.reconcile``: ``Reconciler`` (desired vs ``show servers state``),
  ``ReloadScheduler`` (coalesced, backed-off reloads).
* ``lbadapter.metrics`` (imported only with ``--metrics-addr``; needs prometheus_client):
  ``AdapterCollector(adapter)``, ``start_metrics_server(task_group, adapter, addr, agent)``.
* ``lbadapter.desired`` also: ``server_id(name)``, ``balancer_peers(members, local_name,
  local_addr) -> list[Balancer]``, ``parse_weight_tag``, ``parse_state_tag``.
* ``lbadapter.adapter``: ``run_adapter(settings)`` (everything ``lbadapter run`` does);
  ``Adapter(settings, members_fn)`` with ``await task_group.start(adapter.run)`` and
  ``adapter.poke()`` drives HAProxy from any membership source (tests, benchmarks).

* ``lbadapter.testing`` (not imported by the adapter): ``free_port()``, ``short_state_dir()``,
  ``Processes(workdir)`` (``.start(name, argv, env=None)``, ``.backend(name, port)`` = tiny
  HTTP server answering its name, ``GET /slow?s=N`` holds N s; ``.stop(popen)``, ``.stop_all()``:
  SIGTERM first so an adapter stops its HAProxy), ``fetch(url)``, ``stats_rows((host, port))``,
  ``await up_in_stats(stats, backend)``, ``await wait_until(async_pred, timeout, what)``,
  ``adapter_running(adapter)`` (async context manager: HAProxy up for the block).

Logs (stderr): ``event loop: asyncio|trio`` once, then
``reconcile: add|reuse|readdress|drain|maint|del|weight app/NAME ...`` per runtime action,
``wrote .../haproxy.cfg (N servers)``, ``reloading haproxy: REASONS``,
``haproxy reloaded: worker(s) ...``, ``haproxy master exited ...; restarting``, and
HAProxy's own lines prefixed ``haproxy:``. ``state.json`` ``counters`` has the totals
(``add``, ``reuse``, ``drain``, ``maint``, ``del``, ``del_refused_busy``, ``reloads``,
``reload_failures``, ``render_errors``, ``check_errors``, ``unexpected_answer``, ``drift``...).

Everything above but ``lbadapter.testing`` is re-exported from ``lbadapter`` itself.
For tests and benchmarks:
``parse_stat_csv(urlopen("http://STATS/;csv;norefresh").read().decode())`` then
``up_servers(rows, "app")`` gives the servers HAProxy sends traffic to; the current
worker PID is ``(await MasterClient(state_dir / "master.sock").show_proc()).workers``.
"""

from __future__ import annotations

from lbadapter.adapter import Adapter, AdapterError, run_adapter
from lbadapter.config import Settings, SettingsError, load_settings, settings_from_mapping
from lbadapter.desired import (
    DesiredServer,
    MemberRecord,
    Want,
    desired_servers,
    members_from_json,
    server_name,
)
from lbadapter.haproxy import (
    CLIError,
    HAProxyNotFound,
    MasterClient,
    RuntimeClient,
    find_haproxy,
    parse_stat_csv,
    up_servers,
)
from lbadapter.reconcile import Reconciler, ReloadScheduler
from lbadapter.render import (
    ConfigCheckError,
    ConfigWriter,
    RenderError,
    check_config,
    render_config,
)
from lbadapter.supervisor import Supervisor

__all__ = [
    "Adapter",
    "AdapterError",
    "CLIError",
    "ConfigCheckError",
    "ConfigWriter",
    "DesiredServer",
    "HAProxyNotFound",
    "MasterClient",
    "MemberRecord",
    "Reconciler",
    "ReloadScheduler",
    "RenderError",
    "RuntimeClient",
    "Settings",
    "SettingsError",
    "Supervisor",
    "Want",
    "check_config",
    "desired_servers",
    "find_haproxy",
    "load_settings",
    "members_from_json",
    "parse_stat_csv",
    "render_config",
    "run_adapter",
    "server_name",
    "settings_from_mapping",
    "up_servers",
]
