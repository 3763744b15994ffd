"""Hostile members and injected failures against a real HAProxy 2.6 on 127.0.0.1.

The members are the unit tests' hostile set (tests/unit/lbadapter/test_hostile.py):
names made to end a config line or a CLI command, port tags and addresses
that parse but must not be used. HAProxy must stay up with a valid config
and keep serving the honest members; the hostile-named members that are
otherwise fine are served under sanitised names. A reconcile step made to
fail is retried until HAProxy has the desired servers, and counted.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from lbadapter import Adapter, MemberRecord
from lbadapter.render import check_config
from lbadapter.testing import adapter_running, short_state_dir, wait_until
from tests.integration.test_lbadapter_reconcile import Lab, server_lines, servers, worker_pids
from tests.unit.lbadapter.test_hostile import SERVER_LINE, hostile_members, served_names

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
pytestmark = pytest.mark.skipif(not os.path.exists(HAPROXY),
                                reason="haproxy is not installed (apt-get install haproxy)")


@pytest.fixture
def lab() -> Iterator[Lab]:
    state_dir = short_state_dir()
    lab = Lab(state_dir)
    try:
        yield lab
    finally:
        lab.procs.stop_all()
        shutil.rmtree(state_dir, ignore_errors=True)


async def test_hostile_members_cannot_inject_and_honest_ones_are_served(lab: Lab) -> None:
    for name in ("web-1", "web-2", "web-3"):
        await lab.backend(name)
    lab.set_member("web-1")
    # IPv4-mapped: HAProxy prints it differently from Python; must not readdress forever
    web2 = MemberRecord("web-2", "::ffff:127.0.0.1", 7946,
                        {"role": "backend", "port": str(lab.ports["web-2"])})
    lab.members += [web2, *hostile_members(port=lab.ports["web-3"])]
    expected = {"web-1", "web-2"} | served_names()
    adapter = lab.adapter(reconcile_interval=0.5)
    async with adapter_running(adapter):
        master = adapter.supervisor.master_pid
        workers = await worker_pids(adapter)
        await wait_until(lambda: _all_up(lab, expected), 10.0, "every acceptable server UP")
        assert set(await servers(adapter)) == expected
        passes = adapter.reconciler.counters["passes"]
        await wait_until(lambda: _passes(adapter, passes + 3), 10.0, "three more passes")

        # HAProxy: same processes, nothing reloaded, nothing shut down
        assert (adapter.supervisor.master_pid, adapter.supervisor.starts) == (master, 1)
        assert await worker_pids(adapter) == workers and adapter.supervisor.reloads == 0
        assert "Pid:" in await adapter.client.command("show info")
        counters = adapter.reconciler.counters
        assert (counters["readdress"], counters["drift"], counters["unexpected_answer"]) \
            == (0, 0, 0)
        assert adapter.snapshot()["internal_errors"] == {}
        assert adapter.config_error is None

        # the file: valid, one plain line per acceptable member, nothing else
        text = adapter.settings.config_path.read_text()
        assert (await check_config(HAPROXY, adapter.settings.config_path)).ok
        lines = [ln for ln in text.splitlines() if ln.lstrip().startswith("server ")]
        assert all(SERVER_LINE.fullmatch(ln) for ln in lines), lines
        assert sorted(server_lines(adapter)) == sorted(expected)
        assert all(ln.isprintable() for ln in text.splitlines())

        # traffic: honest members answer, hostile-named ones reach only their backend
        bodies = {(await lab.get())[1].strip() for _ in range(2 * len(expected))}
        assert bodies == {"web-1", "web-2", "web-3"}

        state = json.loads(adapter.settings.state_file.read_text())
        assert state["member_problems"]["name_collision"] == 1
        assert all(str(d["member"]).isprintable() for d in state["desired"])


async def _all_up(lab: Lab, names: set[str]) -> bool:
    return names <= await lab.up()


async def _passes(adapter: Adapter, n: int) -> bool:
    return adapter.reconciler.counters["passes"] >= n


async def test_a_failing_reconcile_step_is_retried_until_haproxy_has_the_servers(
        lab: Lab) -> None:
    await lab.backend("web-1")
    adapter = lab.adapter(reconcile_interval=30)  # only pokes and retries wake it
    async with adapter_running(adapter):
        await wait_until(lambda: _passes(adapter, 1), 5.0, "the first pass")
        calls = _fail(adapter, times=3)
        lab.set_member("web-1")  # not in the file HAProxy started from: runtime API only
        adapter.poke()
        await wait_until(lambda: _all_up(lab, {"web-1"}), 10.0, "web-1 UP after 3 failures")
        assert len(calls) == 4
        assert adapter.snapshot()["internal_errors"] == {"reconcile": 3}
        assert adapter.supervisor.starts == 1 and adapter.supervisor.reloads == 0
        assert (await lab.get())[1].strip() == "web-1"
        await wait_until(lambda: _state_shows(adapter, {"reconcile": 3}), 5.0, "state.json")


def test_a_failing_reconcile_step_is_retried_under_asyncio(lab: Lab) -> None:
    anyio.run(test_a_failing_reconcile_step_is_retried_until_haproxy_has_the_servers, lab,
              backend="asyncio")


def _fail(adapter: Adapter, times: int) -> list[int]:
    """Make the adapter's reconcile pass raise ``times`` times, then work."""
    real = adapter.reconciler.reconcile
    calls: list[int] = []

    async def flaky(desired: Any) -> Any:
        calls.append(1)
        if len(calls) <= times:
            raise RuntimeError(f"injected failure {len(calls)}")
        return await real(desired)

    adapter.reconciler.reconcile = flaky  # type: ignore[method-assign]
    return calls


async def _state_shows(adapter: Adapter, errors: dict[str, int]) -> bool:
    try:
        state = json.loads(adapter.settings.state_file.read_text())
    except (OSError, ValueError):
        return False
    return bool(state.get("internal_errors") == errors)
