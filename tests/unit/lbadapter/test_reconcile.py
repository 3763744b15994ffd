"""Reconciler and ReloadScheduler against an in-memory HAProxy speaking 2.6's CLI text.

The fake answers with the exact strings HAProxy 2.6.12 prints (captured in
haproxy.md section 3), so the client's parsing is exercised too. The real
thing is covered by tests/integration/test_lbadapter_reconcile.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lbadapter.desired import DesiredServer, Want
from lbadapter.haproxy import RuntimeClient
from lbadapter.reconcile import DEL_BACKOFF, DRIFT_PASSES, Reconciler, ReloadScheduler
from swimlib.records import record

HEADER = ("# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
          "srv_iweight srv_time_since_last_change srv_check_status srv_check_result "
          "srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id "
          "srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr "
          "srv_agent_addr srv_agent_port")
ADMIN = {"ready": 0, "maint": 1, "drain": 8}


@record(frozen=False)
class FakeServer:
    addr: str
    port: int
    admin: str = "maint"
    health: bool = False
    scur: int = 0
    busy: bool = False  # idle pooled connections block `del server`
    weight: int = 1
    sid: int = 0


class FakeHAProxy(RuntimeClient):
    """Answers CLI lines like HAProxy 2.6 for one backend ``app``."""

    def __init__(self) -> None:
        super().__init__(Path("/nonexistent"))
        self.servers: dict[str, FakeServer] = {}
        self.log: list[str] = []
        self.override: dict[str, str] = {}  # command prefix -> forced answer
        self.ignore_ready = False  # simulate drift: `state ready` has no effect
        self.cookies_computed = 0

    async def command(self, line: str) -> str:
        self.log.append(line)
        return "".join(self._one(part.strip()) for part in line.split(";"))

    def _one(self, cmd: str) -> str:
        for prefix, answer in self.override.items():
            if cmd.startswith(prefix):
                return answer
        words = cmd.split()
        if cmd.startswith("show servers state"):
            if words[3] != "app":
                return "Can't find backend.\n\n"
            rows = [f"3 app {s.sid or i} {n} {s.addr} {2 if s.admin != 'maint' else 0} "
                    f"{ADMIN[s.admin]} {s.weight} 1 0 6 3 4 6 0 0 0 - {s.port} - 0 0 - - 0"
                    for i, (n, s) in enumerate(self.servers.items(), 1)]
            return "\n".join(["1", HEADER, *rows]) + "\n\n"
        if cmd.startswith("show stat"):
            rows = [f"app,{n},0,0,{s.scur},0,,0,0,0,,0,,0,0,0,0,UP" for n, s in
                    self.servers.items()]
            return "\n".join(["# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,"
                              "dresp,ereq,econ,eresp,wretr,wredis,status", *rows]) + "\n\n"
        if cmd == "enable dynamic-cookie backend app":
            self.cookies_computed += 1
            return "\n"
        be, _, name = words[2].partition("/") if len(words) > 2 else ("", "", "")
        srv = self.servers.get(name)
        if be != "app":
            return "No such backend.\n\n"
        if words[0] == "add":
            if srv is not None:
                return "Already exists a server with the same name in backend.\n\n"
            host, _, port = words[3].rpartition(":")
            opts = dict(zip(words[4::2], words[5::2], strict=False))
            self.servers[name] = FakeServer(host, int(port), weight=int(opts.get("weight", 1)),
                                            sid=int(opts.get("id", 0)))
            return "New server registered.\n\n"
        if srv is None:
            return "No such server.\n\n"
        if words[0] == "enable":
            srv.health = True
            return "\n"
        if words[0] == "del":
            if srv.admin != "maint":
                return "Only servers in maintenance mode can be deleted.\n"
            if srv.busy or srv.scur:
                return "Server still has connections attached to it, cannot remove it.\n"
            del self.servers[name]
            return "Server deleted.\n"
        if words[3] == "state":
            if not (self.ignore_ready and words[4] == "ready"):
                srv.admin = words[4]
            return "\n"
        if words[3] == "health":
            return "\n"
        if words[3] == "weight":
            srv.weight = int(words[4])
            return "\n"
        if words[3] == "addr":
            srv.addr, srv.port = words[4], int(words[6])
            return "IP changed from 'x' to 'y', port changed from '1' to '2' by " \
                   "'stats socket command'\n\n"
        return "Unknown command\n\n"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ready(name: str, port: int = 8000, addr: str = "127.0.0.1") -> DesiredServer:
    return DesiredServer(name, name, addr, port, Want.READY)


def want(name: str, w: Want, port: int = 8000) -> DesiredServer:
    return DesiredServer(name, name, "127.0.0.1", port, w)


@pytest.fixture
def fake() -> FakeHAProxy:
    return FakeHAProxy()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(fake: FakeHAProxy, clock: Clock, grace: float = 10.0) -> Reconciler:
    return Reconciler(fake, "app", "check inter 1s", grace, clock=clock)


async def test_join_adds_enables_health_and_readies_with_health_down(fake, clock):
    r = make(fake, clock)
    result = await r.reconcile({"a": ready("a")})
    assert result.actions == ["add app/a 127.0.0.1:8000 (added, ready, weight 1)"]
    assert fake.log[1:] == ["add server app/a 127.0.0.1:8000 weight 1 check inter 1s",
                            "enable health app/a",
                            "set server app/a state ready; set server app/a health down"]
    assert fake.servers["a"].admin == "ready" and fake.servers["a"].health
    # idempotent: the next pass only looks
    fake.log.clear()
    again = await r.reconcile({"a": ready("a")})
    assert again.actions == [] and again.clean
    assert fake.log == ["show servers state app"]


async def test_graceful_leave_drains_then_maint_then_delete(fake, clock):
    r = make(fake, clock)
    await r.reconcile({"a": ready("a")})
    fake.servers["a"].scur = 2
    first = await r.reconcile({"a": want("a", Want.DRAIN)})
    assert first.actions == ["drain app/a (member left)"]
    assert r.next_wakeup() is not None  # drain is polled
    clock.now += 1
    still = await r.reconcile({"a": want("a", Want.DRAIN)})
    assert still.actions == [] and fake.servers["a"].admin == "drain"
    fake.servers["a"].scur = 0
    done = await r.reconcile({"a": want("a", Want.DRAIN)})
    assert done.actions == ["maint app/a (drained: no sessions)", "del app/a"]
    assert "a" not in fake.servers


async def test_drain_grace_period_forces_maint(fake, clock):
    r = make(fake, clock, grace=5.0)
    await r.reconcile({"a": ready("a")})
    fake.servers["a"].scur = 3
    await r.reconcile({"a": want("a", Want.DRAIN)})
    clock.now += 5.1
    result = await r.reconcile({"a": want("a", Want.DRAIN)})
    assert result.actions[0] == "maint app/a (drained: grace over, 3 sessions)"
    assert fake.servers["a"].admin == "maint"  # scur > 0: delete refused, retried later


async def test_failed_member_goes_straight_to_maint_and_is_deleted(fake, clock):
    r = make(fake, clock)
    await r.reconcile({"a": ready("a")})
    result = await r.reconcile({"a": want("a", Want.GONE)})
    assert result.actions == ["maint app/a (member gone)", "del app/a"]
    assert "drain" not in " ".join(fake.log)


async def test_unknown_server_in_backend_is_removed(fake, clock):
    fake.servers["stale"] = FakeServer("10.0.0.9", 80, admin="ready")
    result = await make(fake, clock).reconcile({})
    assert result.actions == ["maint app/stale (member gone)", "del app/stale"]


async def test_refused_delete_backs_off_and_entry_is_reused_on_rejoin(fake, clock):
    r = make(fake, clock)
    await r.reconcile({"a": ready("a")})
    fake.servers["a"].busy = True
    await r.reconcile({"a": want("a", Want.GONE)})
    assert fake.servers["a"].admin == "maint"
    assert r.counters["del_refused_busy"] == 1
    # within the backoff: no new delete attempt
    fake.log.clear()
    await r.reconcile({"a": want("a", Want.GONE)})
    assert not any(c.startswith("del ") for c in fake.log)
    assert r.next_wakeup() == pytest.approx(clock.now + DEL_BACKOFF[0])
    clock.now += DEL_BACKOFF[0]
    await r.reconcile({"a": want("a", Want.GONE)})
    assert r.counters["del_refused_busy"] == 2
    # the member comes back before the delete went through: reuse the entry
    fake.log.clear()
    result = await r.reconcile({"a": ready("a")})
    assert result.actions == ["reuse app/a (maint -> ready)"]
    assert not any(c.startswith("add ") for c in fake.log)
    assert fake.servers["a"].admin == "ready"
    assert r.next_wakeup() is None


async def test_rejoin_with_new_address_readdresses_existing_entry(fake, clock):
    r = make(fake, clock)
    await r.reconcile({"a": ready("a", port=8000)})
    result = await r.reconcile({"a": ready("a", port=9000, addr="127.0.0.2")})
    assert result.actions == ["readdress app/a 127.0.0.1:8000 -> 127.0.0.2:9000"]
    assert "set server app/a addr 127.0.0.2 port 9000" in fake.log
    assert fake.log[-1] == "set server app/a state ready; set server app/a health down"


async def test_add_racing_an_existing_entry_reuses_it(fake, clock):
    r = make(fake, clock)
    real_show = fake._one

    def racing(cmd: str) -> str:
        if cmd.startswith("show servers state"):  # the entry appears after we looked
            answer = real_show(cmd)
            fake.servers.setdefault("a", FakeServer("127.0.0.9", 1))
            return answer
        return real_show(cmd)

    fake._one = racing  # type: ignore[method-assign]
    result = await r.reconcile({"a": ready("a")})
    assert result.actions == ["add app/a 127.0.0.1:8000 (exists, ready, weight 1)"]
    assert (fake.servers["a"].addr, fake.servers["a"].port) == ("127.0.0.1", 8000)


async def test_unexpected_answer_asks_for_reload_and_continues(fake, clock):
    r = make(fake, clock)
    fake.override["enable health app/a"] = "Health check was not configured on this server, " \
                                           "cannot enable.\n"
    result = await r.reconcile({"a": ready("a"), "b": ready("b")})
    assert result.reload_reason and "Health check was not configured" in result.reload_reason
    assert r.counters["unexpected_answer"] == 1
    assert fake.servers["b"].admin == "ready"  # the other server was still handled


async def test_missing_backend_asks_for_reload(fake, clock):
    r = Reconciler(fake, "nope", "", 1.0, clock=clock)
    result = await r.reconcile({})
    assert result.reload_reason and "Can't find backend." in result.reload_reason


async def test_drift_that_passes_cannot_fix_asks_for_reload(fake, clock):
    r = make(fake, clock)
    fake.ignore_ready = True
    reasons = [(await r.reconcile({"a": ready("a")})).reload_reason for _ in range(DRIFT_PASSES)]
    assert reasons[:-1] == [None] * (DRIFT_PASSES - 1)
    assert reasons[-1] and reasons[-1].startswith("drift: app/a still not ready")
    assert r.counters["drift"] == 1


async def test_unavailable_socket_is_an_error_not_an_exception(clock):
    r = Reconciler(RuntimeClient(Path("/nonexistent/admin.sock")), "app", "", 1.0, clock=clock)
    result = await r.reconcile({"a": ready("a")})
    assert result.errors and result.reload_reason is None


# ---------------------------------------------------------------- ReloadScheduler

def test_scheduler_coalesces_with_min_quiet_and_max_wait():
    s = ReloadScheduler(0.2, 2.0)
    assert s.due_at() is None and s.take(0.0) is None
    s.request(10.0, "a")
    assert s.due_at() == pytest.approx(10.2)
    s.request(10.15, "b")
    s.request(10.15, "a")
    assert s.due_at() == pytest.approx(10.35)
    assert s.take(10.3) is None
    for t in (10.3, 10.5, 10.7, 10.9, 11.1, 11.3, 11.5, 11.7, 11.9):
        s.request(t, "c")  # a steady stream never waits past max_wait
    assert s.due_at() == pytest.approx(12.0)
    assert s.take(12.0) == ["a", "b", "c"]
    assert not s.pending


def test_scheduler_backs_off_failures_and_fallbacks():
    s = ReloadScheduler(0.2, 2.0)
    s.finished(0.0, ok=False, fallback=False)
    s.request(0.0, "x")
    assert s.due_at() == pytest.approx(1.0)
    s.take(1.0)
    s.finished(1.0, ok=True, fallback=True)  # fallback reload: next one waits longer
    s.request(1.0, "y")
    assert s.due_at() == pytest.approx(3.0)
    s.take(3.0)
    s.finished(3.0, ok=True, fallback=True)
    s.request(3.0, "z")
    assert s.due_at() == pytest.approx(7.0)
    s.take(7.0)
    s.finished(7.0, ok=True, fallback=False)  # a clean config reload resets it
    s.request(7.0, "w")
    assert s.due_at() == pytest.approx(7.2)


def test_scheduler_backoff_is_capped():
    s = ReloadScheduler(0.2, 2.0)
    for _ in range(20):
        s.finished(0.0, ok=False, fallback=True)
    s.request(0.0, "x")
    assert s.due_at() == pytest.approx(ReloadScheduler.BACKOFF[2])


async def test_other_client_errors_are_counted_per_server(fake, clock):
    from lbadapter.haproxy import CLIError

    async def oversized(*_args: object) -> None:
        raise CLIError("answer larger than 16 MiB")

    fake.enable_health = oversized  # type: ignore[method-assign]
    r = make(fake, clock)
    result = await r.reconcile({"a": ready("a"), "b": ready("b")})
    assert r.counters["server_errors"] == 2 and len(result.errors) == 2
    assert result.reload_reason is None


# ------------------------------------------------------------------ lb-state, lb-weight, IDs


def steered(name: str, state: str = "ready", weight: int = 1, sid: int = 0) -> DesiredServer:
    return DesiredServer(name, name, "127.0.0.1", 8000, Want.READY, weight, state, sid)


async def test_state_tags_move_a_live_server_without_resetting_its_health(fake, clock):
    r = make(fake, clock)
    await r.reconcile({"a": steered("a")})
    steps = [("drain", ["set server app/a state drain"]),
             ("ready", ["set server app/a state ready"]),  # no health down: sticky stays
             ("maint", ["set server app/a state maint"]),
             ("maint", []),  # a live member in maint stays (no delete)
             ("ready", ["enable health app/a",
                        "set server app/a state ready; set server app/a health down"])]
    for state, commands in steps:
        fake.log.clear()
        result = await r.reconcile({"a": steered("a", state)})
        assert fake.log[1:] == commands, state
        assert fake.servers["a"].admin == state and not result.errors
    assert r.counters["del"] == 0


async def test_weight_tag_is_applied_with_set_weight(fake, clock):
    r = make(fake, clock)
    await r.reconcile({"a": steered("a", weight=3)})
    assert fake.servers["a"].weight == 3
    fake.log.clear()
    result = await r.reconcile({"a": steered("a", weight=0)})
    assert fake.log[1:] == ["set server app/a weight 0"]
    assert result.actions == ["weight app/a 3 -> 0 (lb-weight)"]
    fake.log.clear()
    await r.reconcile({"a": steered("a", weight=0)})
    assert fake.log[1:] == []  # idempotent


@pytest.mark.parametrize(("state", "last"), [
    ("drain", "set server app/a state drain; set server app/a health down"),
    ("maint", "set server app/a state maint")])
async def test_a_new_server_starts_in_its_tagged_state(fake, clock, state, last):
    r = make(fake, clock)
    await r.reconcile({"a": steered("a", state, weight=5, sid=77)})
    assert fake.log[1:] == ["add server app/a 127.0.0.1:8000 id 77 weight 5 check inter 1s",
                            "enable health app/a", last]
    assert fake.servers["a"].admin == state


async def test_dynamic_cookies_are_computed_after_adding(fake, clock):
    r = Reconciler(fake, "app", "check inter 1s", 10.0, clock=clock, dynamic_cookies=True)
    await r.reconcile({"a": steered("a")})
    assert fake.log[-1] == "enable dynamic-cookie backend app" and fake.cookies_computed == 1
    await r.reconcile({"a": steered("a")})
    assert fake.cookies_computed == 1


async def test_an_id_that_differs_asks_for_a_reload(fake, clock):
    r = make(fake, clock)
    await r.reconcile({"a": steered("a", sid=5)})
    fake.servers["a"].sid = 6  # e.g. a server left by an older lbadapter
    result = await r.reconcile({"a": steered("a", sid=5)})
    assert result.reload_reason == "app/a has id 6, membership says 5"
