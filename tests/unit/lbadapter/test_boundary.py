"""One reconcile step is an isolation boundary: a failure inside is counted, logged, retried.

(FaultLog itself, the boundary both lbadapter and the agent use, is tested in
tests/unit/test_faults.py.)

The adapter runs here against the in-memory HAProxy of test_reconcile.py
(its CLI text is HAProxy 2.6's) and a stand-in ``haproxy -c``; failures are
injected by monkeypatching one part of the step to raise a few times. The
same with a real HAProxy: tests/integration/test_lbadapter_hostile.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from lbadapter.adapter import RETRY_BACKOFF, Adapter
from lbadapter.cli import main
from lbadapter.config import settings_from_mapping
from lbadapter.desired import MemberRecord
from lbadapter.testing import wait_until
from tests.unit.lbadapter.test_reconcile import FakeHAProxy
from tests.unit.lbadapter.test_render import fake_haproxy

log = logging.getLogger("lbadapter.test")


@pytest.fixture(autouse=True)
def _lbadapter_logs_reach_caplog() -> Iterator[None]:
    """Another test may have run ``lbadapter run``'s logging setup (propagate off)."""
    logger = logging.getLogger("lbadapter")
    saved = logger.propagate
    logger.propagate = True
    yield
    logger.propagate = saved


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)


def tracebacks(caplog: pytest.LogCaptureFixture, place: str) -> int:
    return sum(1 for r in caplog.records
               if r.exc_info and r.getMessage().startswith(f"internal error in {place} "))


# ---------------------------------------------------------------- the adapter loop

class Lab:
    """An adapter on a fake HAProxy: the runtime side is a FakeHAProxy, ``-c`` a script."""

    def __init__(self, tmp_path: Path) -> None:
        self.members = [MemberRecord(f"web-{i}", "127.0.0.1", 7946,
                                     {"role": "backend", "port": str(8000 + i)})
                        for i in (1, 2)]
        settings = settings_from_mapping({"state_dir": str(tmp_path), "reconcile_interval": 30,
                                          "listen": "127.0.0.1:1", "stats": "127.0.0.1:2"})
        self.adapter = Adapter(settings, lambda: list(self.members),
                               haproxy=fake_haproxy(tmp_path))
        self.fake = FakeHAProxy()
        self.adapter.reconciler.client = self.fake

    async def converged(self) -> bool:
        return set(self.fake.servers) == {m.name for m in self.members} and all(
            s.admin == "ready" for s in self.fake.servers.values())

    def flaky(self, obj: Any, attr: str, failures: int) -> list[int]:
        """Make ``obj.attr`` (an async method) raise ``failures`` times, then work."""
        real: Callable[..., Any] = getattr(obj, attr)
        calls: list[int] = []

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            if len(calls) <= failures:
                raise RuntimeError(f"injected failure {len(calls)}")
            return await real(*args, **kwargs)

        setattr(obj, attr, wrapper)
        return calls


@asynccontextmanager
async def looping(lab: Lab, prepared: Callable[[], object] = lambda: None
                  ) -> AsyncIterator[Adapter]:
    """The adapter's loop with HAProxy "running" (ready, started from the current file).

    ``reconcile_interval`` is 30 s, so within a test only pokes and the retry
    backoff wake the loop up.
    """
    adapter = lab.adapter
    await adapter.prepare()
    prepared()
    adapter._spawned()
    adapter.supervisor.ready = True
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(adapter._loop)
            adapter.poke()  # as the supervisor does once HAProxy answers
            yield adapter
            tg.cancel_scope.cancel()
    finally:
        adapter.release()


async def test_a_failing_reconcile_step_is_retried_until_it_converges(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    await _retried_until_converged(tmp_path, caplog, capsys)


def test_a_failing_reconcile_step_is_retried_under_asyncio(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The same on asyncio: the loop, ``haproxy -c`` as a subprocess, ``status``."""
    anyio.run(_retried_until_converged, tmp_path, caplog, capsys, backend="asyncio")


async def _retried_until_converged(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    lab = Lab(tmp_path)
    calls = lab.flaky(lab.adapter.reconciler, "reconcile", failures=3)
    async with looping(lab) as adapter:
        # no poke after the first: only the retry backoff wakes the loop
        with anyio.fail_after(3 * sum(RETRY_BACKOFF) + 5):
            await wait_until(lab.converged, 10.0, "the servers after 3 failed passes")
        assert len(calls) == 4
        assert adapter.faults.counts == {"reconcile": 3}
        assert not adapter.faults.failing and adapter._retry_at is None
        assert adapter.snapshot()["internal_errors"] == {"reconcile": 3}
        assert tracebacks(caplog, "reconcile") == 1
        assert "reconcile works again after 3 failures in a row" in caplog.text
        await wait_until(lambda: _state_has(adapter, {"reconcile": 3}), 5.0, "state.json")
    # ``lbadapter status`` (it runs its own event loop, so from a thread); no HAProxy there
    status = ["--state-dir", str(tmp_path)]
    assert await anyio.to_thread.run_sync(main, ["status", *status, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["internal_errors"] == {"reconcile": 3}
    assert await anyio.to_thread.run_sync(main, ["status", *status]) == 0
    assert "internal errors (retried): reconcile=3" in capsys.readouterr().out


async def _state_has(adapter: Adapter, errors: dict[str, int]) -> bool:
    try:
        state = json.loads(adapter.settings.state_file.read_text())
    except (OSError, ValueError):
        return False
    return bool(state.get("internal_errors") == errors)


async def test_a_failing_config_step_does_not_stop_the_runtime_pass(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lab = Lab(tmp_path)
    broken = [True]
    real_write = lab.adapter.writer.write

    async def write(text: str) -> bool:
        if broken[0]:
            raise RuntimeError("injected: config step broken")
        return await real_write(text)

    def break_config() -> None:
        lab.adapter.writer.write = write  # type: ignore[method-assign]

    async with looping(lab, break_config) as adapter:
        lab.members.append(MemberRecord("web-3", "127.0.0.1", 7946,
                                        {"role": "backend", "port": "8003"}))
        adapter.poke()
        await wait_until(lab.converged, 5.0, "web-3 added at runtime")
        await wait_until(lambda: _count(adapter, "config", 3), 5.0, "config retried")
        assert not await _file_has(adapter, "web-3")
        broken[0] = False
        await wait_until(lambda: _file_has(adapter, "web-3"), 10.0, "web-3 in the file")
        assert tracebacks(caplog, "config") == 1
        assert adapter.snapshot()["internal_errors"] == {"config": adapter.faults.counts[
            "config"]}


async def _file_has(adapter: Adapter, name: str) -> bool:
    return f"server {name} " in adapter.settings.config_path.read_text()


async def test_unreadable_membership_keeps_the_previous_servers(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    async with looping(lab) as adapter:
        await wait_until(lab.converged, 5.0, "both servers")
        broken = True

        def members() -> list[MemberRecord]:
            if broken:
                raise OSError("agent gone")
            return list(lab.members)

        adapter.members = members
        adapter.poke()
        await wait_until(lambda: _count(adapter, "desired", 2), 10.0, "two failures")
        assert set(lab.fake.servers) == {"web-1", "web-2"}  # not an empty backend
        assert set(adapter.desired) == {"web-1", "web-2"}
        broken = False
        lab.members.pop()
        await wait_until(lambda: _gone(lab, "web-2"), 10.0, "web-2 removed once readable")


async def _count(adapter: Adapter, place: str, n: int) -> bool:
    return adapter.faults.counts[place] >= n


async def _gone(lab: Lab, name: str) -> bool:
    return name not in lab.fake.servers


async def test_one_server_failing_does_not_stall_the_others(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lab = Lab(tmp_path)
    real = lab.adapter.reconciler._make_ready
    failures: list[str] = []

    async def fail_web_1(want: Any, have: Any, result: Any) -> None:
        if want.name == "web-1" and len(failures) < 2:
            failures.append(want.name)
            raise TypeError("injected bug for web-1")
        await real(want, have, result)

    lab.adapter.reconciler._make_ready = fail_web_1  # type: ignore[method-assign]
    async with looping(lab) as adapter:
        await wait_until(lab.converged, 10.0, "both servers, web-1 after 2 failures")
        assert failures == ["web-1", "web-1"]
        assert adapter.snapshot()["internal_errors"] == {"reconcile-server": 2}
        assert tracebacks(caplog, "reconcile-server") == 1
