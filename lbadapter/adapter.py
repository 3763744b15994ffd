"""``lbadapter run``: the embedded agent, HAProxy, and the loop keeping them in step.

One task (:meth:`Adapter.run`'s loop) does all the work in order, so CLI
writes are serialised: compute the desired servers from the current
membership snapshot, render and install the config file, reload if the
non-server part of the config changed (or a pass asked for it), then run a
reconcile pass. It wakes on membership events, on HAProxy (re)starts, when
a drain or delete retry is due, and every ``reconcile_interval`` seconds.

Each part of a step is its own failure boundary (:mod:`swimlib.faults`):
an exception is counted by place (``internal_errors``), logged (traceback
once per kind) and retried with backoff, while the other parts still run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream

from lbadapter.config import Settings
from lbadapter.desired import (
    BALANCER_TAG,
    PEER_PORT_TAG,
    Balancer,
    DesiredServer,
    MemberLike,
    MemberProblems,
    balancer_peers,
    desired_servers,
    usable_ip,
)
from lbadapter.haproxy import RuntimeClient, find_haproxy
from lbadapter.reconcile import PassResult, Reconciler, ReloadScheduler
from lbadapter.render import (
    ConfigCheckError,
    ConfigWriter,
    RenderError,
    check_config,
    render_config,
)
from lbadapter.supervisor import ReloadFailed, Supervisor
from swimlib.faults import FaultLog

__all__ = ["Adapter", "AdapterError", "run_adapter"]

log = logging.getLogger("lbadapter")

#: A config rejected by ``haproxy -c`` is not checked again for this long unless it changes.
REJECTED_RETRY = 60.0
#: After a step in which some part failed: first retry, factor, ceiling (seconds; the
#: periodic pass every ``reconcile_interval`` also retries).
RETRY_BACKOFF = (0.2, 2.0, 5.0)


class AdapterError(Exception):
    """The adapter cannot start (no valid config, no haproxy binary...)."""


class Adapter:
    """Keeps one HAProxy in step with ``members()``; see the module docstring.

    ``members`` returns the current membership snapshot (``agent.members``
    in ``lbadapter run``; a plain list in tests). Call :meth:`poke` after it
    changes.
    """

    def __init__(self, settings: Settings, members: Callable[[], Iterable[MemberLike]],
                 haproxy: str | None = None) -> None:
        self.settings = settings
        self.members = members
        self.haproxy = haproxy or find_haproxy(settings.haproxy)
        self.writer = ConfigWriter(settings.config_path, self.haproxy)
        self.client = RuntimeClient(settings.admin_socket)
        #: Failures by place (``internal_errors``), shared with the reconciler.
        self.faults = FaultLog(log)
        #: Members left out of the desired set, by reason (logged once each).
        self.problems = MemberProblems()
        self.reconciler = Reconciler(self.client, settings.backend_name,
                                     settings.server_options, settings.drain_grace,
                                     faults=self.faults,
                                     dynamic_cookies=settings.sticky == "cookie")
        self.scheduler = ReloadScheduler(settings.reload_min_wait, settings.reload_max_wait)
        self.supervisor = Supervisor(self.haproxy, settings.config_path, settings.master_socket,
                                     settings.admin_socket, on_spawn=self._spawned,
                                     on_ready=self.poke)
        self.counters: Counter[str] = Counter()
        self.desired: dict[str, DesiredServer] = {}
        #: The balancers, as HAProxy ``peers`` (used by ``sticky = "source"``).
        self.peers: list[Balancer] = []
        #: This balancer's peers address (None until known: ``run_adapter`` sets the
        #: gossip address once the agent is up).
        self.local_peer: tuple[str, int] | None = _configured_peer_address(settings)
        #: Members of the latest snapshot by (role, status): backend, balancer or other.
        self.member_counts: Counter[tuple[str, str]] = Counter()
        #: Duration and end (``anyio.current_time``) of the latest reconcile pass.
        self.last_reconcile_seconds: float | None = None
        self.last_pass: PassResult | None = None
        self.config_error: str | None = None
        self._wake = anyio.Event()
        #: Non-server part of the file on disk / of the config HAProxy runs.
        self._file_skeleton: str | None = None
        self._live_skeleton: str | None = None
        self._rejected_text: str | None = None
        self._rejected_until = 0.0
        self._last_report: tuple[str, ...] = ()
        self._prepared = False
        self._lock_fd: int | None = None
        self._retry_at: float | None = None
        self._retry_delay = RETRY_BACKOFF[0]

    def poke(self) -> None:
        """Run a pass soon (membership changed, HAProxy restarted...)."""
        self._wake.set()

    def _spawned(self) -> None:
        # HAProxy (re)starts from the file on disk: that is now the live config.
        self._live_skeleton = self._file_skeleton

    # ------------------------------------------------------------------ lifecycle

    async def prepare(self) -> None:
        """Write the first config; without any valid config we cannot start HAProxy."""
        if self._prepared:
            return
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock_state_dir()
        with self.faults.boundary("desired"):
            self.desired = self._compute_desired()
        with self.faults.boundary("config"):  # a bug here may still leave a good old file
            self._prepared = await self._install_config()
        if self._prepared:
            return
        if self.settings.config_path.exists():
            check = await check_config(self.haproxy, self.settings.config_path)
            if check.ok:
                log.warning("starting HAProxy with the previous %s; fix the template",
                            self.settings.config_path)
                self._prepared = True
                return
        why = self.config_error or "internal error (see the log above)"
        raise AdapterError(f"no valid HAProxy config to start with: {why}")

    def _lock_state_dir(self) -> None:
        """One adapter per state dir: a second one would fight over HAProxy."""
        if self._lock_fd is not None:
            return
        path = self.settings.state_dir / "lbadapter.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise AdapterError(f"another lbadapter is using {self.settings.state_dir} "
                               "(give each one its own --state-dir)") from None
        self._lock_fd = fd

    def release(self) -> None:
        """Give up the state dir lock (done when :meth:`run` ends)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
            self._prepared = False

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """Prepare, start HAProxy and loop until cancelled (HAProxy is then stopped).

        Start it with ``await task_group.start(adapter.run)``: that returns once
        the config is written and HAProxy is being started.
        """
        try:
            await self.prepare()
            with self.faults.boundary("desired"):  # members may be known by now (a join):
                self.desired = self._compute_desired()  # HAProxy starts with them and
            with self.faults.boundary("config"):  # its peers, so it resyncs its stick
                await self._install_config()  # table from them at once
            async with anyio.create_task_group() as tg:
                await tg.start(self.supervisor.run)
                task_status.started()
                await self._loop()
        finally:
            self.release()

    async def _loop(self) -> None:
        next_periodic = anyio.current_time()
        while True:
            now = anyio.current_time()
            if now >= next_periodic:
                next_periodic = now + self.settings.reconcile_interval
            wake_at = min(t for t in (next_periodic, self.reconciler.next_wakeup(),
                                      self.scheduler.due_at(), self._retry_at)
                          if t is not None)
            with anyio.CancelScope(deadline=wake_at):
                await self._wake.wait()
            self._wake = anyio.Event()
            with self.faults.boundary("step"):  # a bug must not take the balancer down
                await self.step()
            self._plan_retry()

    def _plan_retry(self) -> None:
        """Retry soon (with backoff) while some part of the step keeps failing."""
        if not self.faults.failing:
            self._retry_at, self._retry_delay = None, RETRY_BACKOFF[0]
            return
        _, factor, ceiling = RETRY_BACKOFF
        self._retry_at = anyio.current_time() + self._retry_delay
        self._retry_delay = min(ceiling, self._retry_delay * factor)

    async def step(self) -> None:
        """One round: desired -> runtime API pass -> config file -> reload if needed.

        The runtime pass goes first: it is what users see, the file only
        matters at the next restart, and ``haproxy -c`` takes tens of ms.
        Each part is guarded on its own, so a failing one (counted in
        ``internal_errors``) leaves the others working; if the desired set
        cannot be computed, the previous one stays (never an empty backend
        because of a bug).
        """
        self.counters["steps"] += 1
        guard = self.faults.boundary
        with guard("desired"):
            self.desired = self._compute_desired()
        with guard("reconcile"):
            await self._reconcile()
        with guard("config"):
            await self._install_config()
            if self._file_skeleton is not None and self._file_skeleton != self._live_skeleton \
                    and self.supervisor.ready:
                self.scheduler.request(anyio.current_time(), "non-server config changed")
        with guard("reload"):
            if await self._maybe_reload():
                await self._reconcile()  # a reload drops runtime state: put it back at once
        with guard("state"):
            self._write_state()

    async def _reconcile(self) -> None:
        if not self.supervisor.ready:
            return
        started = anyio.current_time()
        result = await self.reconciler.reconcile(self.desired)
        self.last_reconcile_seconds = anyio.current_time() - started
        if result.errors:
            self.counters["reconcile_errors"] += 1
        self.last_pass = result
        if result.reload_reason:
            self.scheduler.request(anyio.current_time(), result.reload_reason)
        elif result.clean:
            self.scheduler.note_clean_pass()

    def _compute_desired(self) -> dict[str, DesiredServer]:
        """Desired servers, and as a by-product the peers and the member counts."""
        s = self.settings
        members = list(self.members())
        desired = desired_servers(members, s.backend_tag, s.backend_port, self.problems)
        if s.sticky == "source":
            self.peers = balancer_peers(members, s.node, self.local_peer, self.problems)
        self.member_counts = _count_members(members, s.backend_tag)
        return desired

    # ------------------------------------------------------------------ config file

    async def _install_config(self) -> bool:
        """Render and install; False (old file kept, error logged) if that fails."""
        try:
            text = render_config(self.settings, self.desired.values(), peers=self.peers)
            skeleton = render_config(self.settings, [], peers=self.peers)
        except RenderError as exc:
            self._config_failed("render_errors", str(exc), [])
            return False
        if text == self._rejected_text and anyio.current_time() < self._rejected_until:
            return False  # already rejected by haproxy -c (and reported); retried later
        try:
            changed = await self.writer.write(text)
        except ConfigCheckError as exc:
            self._rejected_text = text
            self._rejected_until = anyio.current_time() + REJECTED_RETRY
            self._config_failed("check_errors", str(exc), exc.lines)
            return False
        except OSError as exc:
            self._config_failed("write_errors", f"writing {self.writer.path}: {exc}", [])
            return False
        if changed:
            self.counters["config_writes"] += 1
            log.info("wrote %s (%d servers)", self.writer.path,
                     sum(1 for d in self.desired.values() if d.want.value == "ready"))
        if self.config_error:
            log.info("config OK again")
        self.config_error = None
        self._last_report = ()
        self._rejected_text = None
        self._file_skeleton = skeleton
        return True

    def _config_failed(self, counter: str, message: str, lines: list[str]) -> None:
        self.counters[counter] += 1
        report = (message, *lines)
        if report != self._last_report:  # log each distinct problem once
            log.error("%s", message)
            for line in lines:
                log.error("  %s", line)
        self._last_report = report
        self.config_error = "\n".join(report)

    # ------------------------------------------------------------------ reloads

    async def _maybe_reload(self) -> bool:
        """Reload if one is due; True if a new worker took over."""
        reasons = self.scheduler.take(anyio.current_time())
        if reasons is None or not self.supervisor.ready:
            return False  # (a HAProxy that is starting reads the current file anyway)
        fallback = any(r != "non-server config changed" for r in reasons)
        skeleton = self._file_skeleton
        log.info("reloading haproxy: %s", "; ".join(reasons))
        try:
            await self.supervisor.reload()
        except ReloadFailed as exc:
            self.counters["reload_failures"] += 1
            log.error("reload failed: %s", exc)
            self.scheduler.finished(anyio.current_time(), ok=False, fallback=fallback)
            return False
        self.counters["reloads"] += 1
        self._live_skeleton = skeleton
        self.scheduler.finished(anyio.current_time(), ok=True, fallback=fallback)
        return True

    # ------------------------------------------------------------------ status file

    def snapshot(self) -> dict[str, Any]:
        """What ``lbadapter status`` shows (also written to ``state.json``)."""
        sup = self.supervisor
        proc = sup.last_proc
        last = self.last_pass
        return {
            "backend": self.settings.backend_name,
            "desired": [{"name": d.name, "member": d.label, "addr": d.addr, "port": d.port,
                         "want": d.want.value, "state": d.state, "weight": d.weight,
                         "id": d.sid}
                        for d in sorted(self.desired.values(), key=lambda d: d.name)],
            "sticky": self.settings.sticky,
            "peers": [{"name": p.name, "member": p.label, "address": p.address,
                       "local": p.local} for p in self.peers],
            "haproxy": {"ready": sup.ready, "master_pid": sup.master_pid,
                        "workers": list(proc.workers) if proc else [],
                        "starts": sup.starts, "reloads": sup.reloads,
                        "reload_failures": sup.reload_failures},
            "last_pass": None if last is None else {"actions": last.actions,
                                                    "errors": last.errors},
            "config_error": self.config_error,
            "counters": dict(self.counters + self.reconciler.counters),
            "last_reconcile_seconds": self.last_reconcile_seconds,
            #: place -> failures caught by a boundary (see swimlib.faults)
            "internal_errors": dict(self.faults.counts),
            #: reason -> members of the latest snapshot with a problem (bad port, address...)
            "member_problems": dict(self.problems.last),
        }

    def _write_state(self) -> None:
        path = self.settings.state_file
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(self.snapshot(), f, indent=1)
            os.replace(tmp, path)
        except OSError as exc:
            self.counters["state_write_errors"] += 1
            log.debug("cannot write %s: %s", path, exc)


def _configured_peer_address(settings: Settings) -> tuple[str, int] | None:
    """The peers address from the settings, if they name one IP (advertise, else bind)."""
    host = (settings.advertise or settings.bind)[0]
    addr, _ = usable_ip(host)
    return (addr, settings.peer_port) if addr is not None else None


def _count_members(members: Iterable[MemberLike], backend_tag: tuple[str, str]
                   ) -> Counter[tuple[str, str]]:
    """(role, status) -> members; role is ``backend``, ``balancer`` or ``other``."""
    counts: Counter[tuple[str, str]] = Counter()
    key, value = backend_tag
    for m in members:
        try:
            tags, status = m.tag_map, m.status_name
        except Exception:  # counted as a member problem by desired_servers already
            continue
        role = ("backend" if tags.get(key) == value else
                "balancer" if tags.get(BALANCER_TAG[0]) == BALANCER_TAG[1] else "other")
        counts[(role, status if status in _STATUSES else "other")] += 1
    return counts


_STATUSES = frozenset({"alive", "leaving", "left", "failed"})


# ---------------------------------------------------------------------- lbadapter run

async def _forward_events(events: MemoryObjectReceiveStream[Any], adapter: Adapter) -> None:
    """Poke the adapter on each membership event (a poke while one is pending is a
    no-op, and each step reads ``members()`` afresh); ``events`` is closed on exit,
    which unsubscribes."""
    async with events:
        async for _ in events:
            adapter.poke()


#: How long ``lbadapter run`` waits for its first join before it starts HAProxy anyway.
FIRST_JOIN_WAIT = 3.0


async def _first_members(agent: Any) -> None:
    """Until the agent knows another member (bounded by :data:`FIRST_JOIN_WAIT`).

    A HAProxy that starts knowing the members starts with its servers and
    its peers in the file: with ``sticky = "source"`` it then pulls the
    stick table from the other balancers at once, which it does not do for
    a peer added later by a reload.
    """
    with anyio.move_on_after(FIRST_JOIN_WAIT):
        for _ in range(int(FIRST_JOIN_WAIT / 0.05) + 1):
            if len(agent.members()) > 1:
                return
            await anyio.sleep(0.05)


async def run_adapter(settings: Settings) -> None:
    """Everything ``lbadapter run`` does, until SIGINT/SIGTERM (then a graceful leave).

    Signals are caught before anything starts, so HAProxy (in its own
    session) is always stopped with us, unless we are SIGKILLed; the next
    start then stops that orphan first (see :class:`Supervisor`).
    """
    import swimlib
    from swimlib.agent.join import join_with_backoff
    from swimlib.agent.rpc_adapter import start_rpc_server

    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
        # Fail on a bad template or state dir before binding anything.
        members: list[Any] = []
        adapter = Adapter(settings, lambda: members)
        await adapter.prepare()
        vip = None
        if settings.vip is not None:  # keepalived.conf checked before anything binds
            from lbadapter.keepalived import Vip

            vip = Vip(settings, adapter.supervisor)
            await vip.prepare()
        async with anyio.create_task_group() as outer:
            async def stop_on_signal() -> None:
                async for signum in received:
                    log.info("caught %s: leaving the cluster and stopping haproxy",
                             signal.Signals(signum).name)
                    stop.set()
                    return

            stop = anyio.Event()
            outer.start_soon(stop_on_signal)
            async with contextlib.AsyncExitStack() as stack:
                try:
                    agent = await stack.enter_async_context(swimlib.open_agent(
                        settings.node, bind=settings.bind, advertise=settings.advertise,
                        config=swimlib.Config.for_profile(settings.profile),
                        tags={BALANCER_TAG[0]: BALANCER_TAG[1],
                              PEER_PORT_TAG: str(settings.peer_port)}))
                except (OSError, swimlib.SwimError) as exc:
                    host, port = settings.bind
                    raise AdapterError(f"cannot bind the gossip address {host}:{port}: "
                                       f"{exc}") from None
                events = agent.events()
                adapter.members = agent.members
                seen_as = usable_ip(agent.address[0])[0]
                if adapter.local_peer is None and seen_as is not None:
                    adapter.local_peer = (seen_as, settings.peer_port)  # bound to 0.0.0.0
                    adapter.poke()
                async with anyio.create_task_group() as tg:
                    if settings.rpc_addr is not None:
                        try:
                            await start_rpc_server(tg, agent, settings.rpc_addr, "")
                        except OSError as exc:
                            host, port = settings.rpc_addr
                            raise AdapterError(f"cannot serve RPC on {host}:{port}: "
                                               f"{exc}") from None
                    if settings.metrics_addr is not None:
                        from lbadapter.metrics import start_metrics_server
                        try:
                            await start_metrics_server(tg, adapter, settings.metrics_addr, agent)
                        except OSError as exc:
                            host, port = settings.metrics_addr
                            raise AdapterError(f"cannot serve metrics on {host}:{port}: "
                                               f"{exc}") from None
                    if settings.join:
                        tg.start_soon(join_with_backoff, agent, settings.join)
                        await _first_members(agent)
                    await tg.start(adapter.run)
                    if vip is not None:
                        await tg.start(vip.run)
                    tg.start_soon(_forward_events, events, adapter)
                    log.info("lbadapter running: node %s, gossip %s:%d, frontend %s:%d, "
                             "stats %s:%d, state %s", agent.name, *agent.address,
                             *settings.listen, *settings.stats,
                             Path(settings.state_dir).absolute())
                    await stop.wait()
                    if vip is not None:  # the standby takes over while we still serve
                        await vip.stop()
                    with anyio.move_on_after(5):
                        await agent.leave()
                    tg.cancel_scope.cancel()
            outer.cancel_scope.cancel()
