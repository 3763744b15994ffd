"""The adapter against a real HAProxy 2.6 and real HTTP backends on 127.0.0.1.

Membership comes from a plain list (the gossip side is covered by
test_lbadapter_e2e.py), so each test controls exactly when a member joins,
leaves, fails or comes back. Assertions use what users see: the stats
page CSV (``/;csv;norefresh``), requests through the frontend, the worker
PID in the master CLI's ``show proc``.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from lbadapter import Adapter, MemberRecord, Settings, settings_from_mapping
from lbadapter.render import DEFAULT_TEMPLATE
from lbadapter.testing import (
    Processes,
    adapter_running,
    fetch,
    free_port,
    short_state_dir,
    up_in_stats,
    wait_port,
    wait_until,
)

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
pytestmark = pytest.mark.skipif(not os.path.exists(HAPROXY),
                                reason="haproxy is not installed (apt-get install haproxy)")


class Lab:
    """One state dir, free loopback ports, backends, and a mutable member list."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.procs = Processes(state_dir)
        self.members: list[MemberRecord] = []
        self.fe = free_port()
        self.stats = ("127.0.0.1", free_port())
        self.ports: dict[str, int] = {}

    def settings(self, **extra: object) -> Settings:
        return settings_from_mapping({"state_dir": str(self.state_dir),
                                      "listen": f"127.0.0.1:{self.fe}",
                                      "stats": f"127.0.0.1:{self.stats[1]}", "haproxy": HAPROXY,
                                      "drain_grace": 10, **extra})

    def adapter(self, **extra: object) -> Adapter:
        return Adapter(self.settings(**extra), lambda: list(self.members))

    async def backend(self, name: str) -> int:
        port = self.ports[name] = free_port()
        self.procs.backend(name, port)
        await wait_port(port)
        return port

    def set_member(self, name: str, status: str = "alive") -> None:
        record = MemberRecord(name, "127.0.0.1", 7946, {"role": "backend",
                                                        "port": str(self.ports[name])}, status)
        self.members = [m for m in self.members if m.name != name] + [record]

    async def up(self) -> set[str]:
        return await up_in_stats(self.stats, "app")

    async def get(self, path: str = "/") -> tuple[int, str]:
        return await anyio.to_thread.run_sync(fetch, f"http://127.0.0.1:{self.fe}{path}", 10.0)


@pytest.fixture
def lab() -> Iterator[Lab]:
    state_dir = short_state_dir()
    lab = Lab(state_dir)
    try:
        yield lab
    finally:
        lab.procs.stop_all()
        shutil.rmtree(state_dir, ignore_errors=True)


async def worker_pids(adapter: Adapter) -> tuple[int, ...]:
    return (await adapter.supervisor.master.show_proc()).workers


async def servers(adapter: Adapter) -> dict[str, str]:
    """name -> admin state (ready/drain/maint) from ``show servers state``."""
    rows = await adapter.client.show_servers_state("app")
    return {r.name: r.admin_name for r in rows}


def server_lines(adapter: Adapter) -> list[str]:
    text = adapter.settings.config_path.read_text()
    return [ln.split()[1] for ln in text.splitlines() if ln.strip().startswith("server ")]


async def test_join_is_up_within_3s_without_a_reload(lab: Lab) -> None:
    await lab.backend("web-1")
    await lab.backend("web-2")
    async with adapter_running(lab.adapter()) as adapter:
        before = await worker_pids(adapter)
        lab.set_member("web-1")
        lab.set_member("web-2")
        adapter.poke()
        start = anyio.current_time()
        await wait_until(lambda: _has(lab.up, {"web-1", "web-2"}), 3.0, "both servers UP")
        joined_in = anyio.current_time() - start
        assert await worker_pids(adapter) == before  # runtime API only: no reload
        assert adapter.supervisor.reloads == 0
        bodies = {(await lab.get())[1].strip() for _ in range(6)}
        assert bodies == {"web-1", "web-2"}
        await wait_until(lambda: _file_has(adapter, ["web-1", "web-2"]), 3.0, "file follows")
        assert joined_in < 3.0


async def _has(probe, wanted: set[str]) -> bool:  # type: ignore[no-untyped-def]
    return wanted <= await probe()


async def _lacks(probe, name: str) -> bool:  # type: ignore[no-untyped-def]
    return name not in await probe()


async def test_leave_drains_then_maint_then_delete(lab: Lab) -> None:
    await lab.backend("web-1")
    await lab.backend("web-2")
    lab.set_member("web-1")
    async with adapter_running(lab.adapter()) as adapter:
        await wait_until(lambda: _has(lab.up, {"web-1"}), 5.0, "web-1 UP")
        async with anyio.create_task_group() as tg:
            slow: list[tuple[int, str]] = []

            async def slow_request() -> None:
                slow.append(await lab.get("/slow?s=2"))

            tg.start_soon(slow_request)
            await anyio.sleep(0.3)  # the slow request is now attached to web-1
            lab.set_member("web-2")
            lab.set_member("web-1", "left")
            adapter.poke()
            await wait_until(lambda: _state_is(adapter, "web-1", "drain"), 3.0, "web-1 DRAIN")
            await wait_until(lambda: _file_lacks(adapter, "web-1"), 3.0, "web-1 out of the file")
            await wait_until(lambda: _has(lab.up, {"web-2"}), 5.0, "web-2 UP")
            assert (await lab.get())[1].strip() == "web-2"  # new requests avoid web-1
        assert slow == [(200, "web-1\n")]  # the drained session finished normally
        await wait_until(lambda: _lacks(lambda: servers(adapter), "web-1"), 5.0,
                         "web-1 deleted")
        actions = adapter.reconciler.counters
        assert actions["drain"] == 1 and actions["maint"] >= 1 and actions["del"] == 1
        assert adapter.supervisor.reloads == 0


async def _file_has(adapter: Adapter, names: list[str]) -> bool:
    return sorted(server_lines(adapter)) == names


async def _file_lacks(adapter: Adapter, name: str) -> bool:
    return name not in server_lines(adapter)


async def _state_is(adapter: Adapter, name: str, state: str) -> bool:
    return (await servers(adapter)).get(name) == state


async def test_fail_goes_to_maint_and_rejoin_reuses_the_entry(lab: Lab) -> None:
    await lab.backend("web-1")
    lab.set_member("web-1")
    async with adapter_running(lab.adapter()) as adapter:
        await wait_until(lambda: _has(lab.up, {"web-1"}), 5.0, "web-1 UP")
        worker = await worker_pids(adapter)
        async with anyio.create_task_group() as tg:
            done: list[tuple[int, str]] = []

            async def slow_request() -> None:
                done.append(await lab.get("/slow?s=3"))

            tg.start_soon(slow_request)
            await anyio.sleep(0.3)
            lab.set_member("web-1", "failed")
            adapter.poke()
            # straight to maint (no drain); the attached session blocks `del server`
            await wait_until(lambda: _state_is(adapter, "web-1", "maint"), 2.0, "web-1 MAINT")
            await wait_until(lambda: _refused(adapter), 3.0, "a refused delete")
            assert adapter.reconciler.counters["drain"] == 0
            lab.set_member("web-1", "alive")  # back before the entry was deleted
            adapter.poke()
            await wait_until(lambda: _has(lab.up, {"web-1"}), 4.0, "web-1 UP again")
        assert adapter.reconciler.counters["reuse"] == 1
        assert adapter.reconciler.counters["add"] == 0  # it came from the file, then reused
        assert await worker_pids(adapter) == worker
        assert done and done[0][0] == 200


async def _refused(adapter: Adapter) -> bool:
    return adapter.reconciler.counters["del_refused_busy"] >= 1


async def test_killed_worker_is_restarted_with_all_members(lab: Lab) -> None:
    for name in ("web-1", "web-2"):
        await lab.backend(name)
        lab.set_member(name)
    async with adapter_running(lab.adapter()) as adapter:
        await wait_until(lambda: _has(lab.up, {"web-1", "web-2"}), 5.0, "both UP")
        master = adapter.supervisor.master_pid
        (worker,) = await worker_pids(adapter)
        os.kill(worker, signal.SIGKILL)
        await wait_until(lambda: _new_master(adapter, master), 10.0, "a new master")
        await wait_until(lambda: _has(lab.up, {"web-1", "web-2"}), 6.0, "both UP again")
        assert adapter.supervisor.starts == 2
        assert (await lab.get())[0] == 200
    assert master is not None


async def _new_master(adapter: Adapter, old: int | None) -> bool:
    sup = adapter.supervisor
    return sup.ready and sup.master_pid not in (None, old)


async def test_broken_template_keeps_the_old_config_and_traffic(lab: Lab) -> None:
    template = lab.state_dir / "custom.j2"
    good = DEFAULT_TEMPLATE.read_text()
    template.write_text(good)
    await lab.backend("web-1")
    await lab.backend("web-2")
    lab.set_member("web-1")
    async with adapter_running(lab.adapter(template=str(template))) as adapter:
        await wait_until(lambda: _has(lab.up, {"web-1"}), 5.0, "web-1 UP")
        worker = await worker_pids(adapter)
        config_before = adapter.settings.config_path.read_text()

        # 1. a Jinja2 error: the file stays, runtime changes still flow, traffic continues
        template.write_text(good.replace("{{ backend }}", "{{ backend }", 1))
        lab.set_member("web-2")
        adapter.poke()
        await wait_until(lambda: _has(lab.up, {"web-1", "web-2"}), 4.0, "web-2 UP via runtime")
        assert adapter.config_error and f"{template}:" in adapter.config_error
        assert adapter.settings.config_path.read_text() == config_before
        assert {(await lab.get())[1].strip() for _ in range(4)} == {"web-1", "web-2"}

        # 2. renders, but haproxy -c rejects it: HAProxy's own [ALERT] text, no reload
        template.write_text(good.replace("balance {{ balance }}", "balance bogus"))
        adapter.poke()
        await wait_until(lambda: _error_has(adapter, "rejected"), 5.0, "a rejected config")
        assert adapter.counters["check_errors"] == 1
        rejected = adapter.writer.rejected.read_text()
        assert "balance bogus" in rejected
        assert adapter.settings.config_path.read_text() == config_before
        assert await worker_pids(adapter) == worker
        assert (await lab.get())[0] == 200

        # 3. fixed, with a non-server change: written, reloaded (new worker), members kept
        template.write_text(good.replace("stats refresh 5s", "stats refresh 7s"))
        adapter.poke()
        await wait_until(lambda: _reloaded(adapter, worker), 8.0, "a reload")
        assert adapter.config_error is None
        assert sorted(server_lines(adapter)) == ["web-1", "web-2"]
        assert "stats refresh 7s" in adapter.settings.config_path.read_text()
        assert adapter.writer.backup.read_text() != adapter.settings.config_path.read_text()
        await wait_until(lambda: _has(lab.up, {"web-1", "web-2"}), 5.0, "both UP after reload")


async def _error_has(adapter: Adapter, text: str) -> bool:
    return bool(adapter.config_error and text in adapter.config_error)


async def _reloaded(adapter: Adapter, old: tuple[int, ...]) -> bool:
    return adapter.supervisor.reloads >= 1 and await worker_pids(adapter) != old


async def test_reload_in_between_reapplies_runtime_state(lab: Lab) -> None:
    """A reload (or restart) brings back the file's view, stale here because the
    template broke; the periodic pass puts the runtime state back, no event needed."""
    template = lab.state_dir / "custom.j2"
    good = DEFAULT_TEMPLATE.read_text()
    template.write_text(good)
    await lab.backend("web-1")
    await lab.backend("web-2")
    lab.set_member("web-1")
    lab.set_member("web-2")
    adapter = lab.adapter(template=str(template), reconcile_interval=1.0)
    async with adapter_running(adapter):
        await wait_until(lambda: _has(lab.up, {"web-1", "web-2"}), 5.0, "both UP")
        template.write_text("{{ broken\n")  # the file stays as it is: both servers
        lab.set_member("web-2", "failed")
        adapter.poke()
        await wait_until(lambda: _lacks(lambda: servers(adapter), "web-2"), 4.0,
                         "web-2 removed at runtime")
        assert sorted(server_lines(adapter)) == ["web-1", "web-2"]
        worker = await worker_pids(adapter)
        await adapter.supervisor.reload()  # not through the adapter: it is not told
        assert await worker_pids(adapter) != worker
        await wait_until(lambda: _lacks(lambda: servers(adapter), "web-2"), 4.0,
                         "web-2 removed again by a periodic pass")
        assert await lab.up() <= {"web-1"}
        assert adapter.reconciler.counters["maint"] == 2


@pytest.mark.parametrize("scenario", [test_join_is_up_within_3s_without_a_reload,
                                      test_leave_drains_then_maint_then_delete,
                                      test_killed_worker_is_restarted_with_all_members],
                         ids=lambda f: f.__name__.removeprefix("test_"))
def test_under_asyncio(lab: Lab, scenario: Callable[[Lab], Awaitable[None]]) -> None:
    """Join, drain and a HAProxy restart with the adapter on asyncio's event loop."""
    anyio.run(scenario, lab, backend="asyncio")
