"""Make HAProxy's servers match the desired set, through the runtime API only.

Each pass reads the actual servers (``show servers state <be>``), diffs them
against the desired map and sends the commands that close the gap
(haproxy.md section 7). Passes are idempotent, so they run on every
membership change and periodically, and a lost command, a restart or a
reload is repaired by the next pass rather than by replaying events.

* join: ``add server ... id N weight W`` -> ``enable health`` ->
  ``state ready; health down`` (one line: no request reaches it before its
  first good check); an existing entry (``Already exists``, or one in
  MAINT) is reused. With cookie stickiness, ``enable dynamic-cookie``
  then gives it its cookie.
* a live member's ``lb-state`` (``ready``/``drain``/``maint``) and
  ``lb-weight`` are applied with ``set server ... state`` and ``weight``.
  Leaving drain or entering maint never resets health, so sticky sessions
  do not move until the server really goes.
* leave: ``drain``; ``maint`` once ``scur`` is 0 or the grace period is
  over; then ``del server``, retried with backoff (idle pooled connections
  can block it for long; a stuck entry is harmless in MAINT).
* failed or unknown: ``maint`` at once, then the same delete.

Anything HAProxy answers that we do not recognise, and drift a pass could
not fix twice, asks for a reload (:class:`ReloadScheduler` coalesces them).
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Callable, Mapping

import anyio

from lbadapter.desired import DesiredServer, Want
from lbadapter.haproxy import (
    AddResult,
    CLIError,
    CLIUnavailable,
    DelResult,
    RuntimeClient,
    ServerState,
    UnexpectedAnswer,
)
from swimlib.faults import FaultLog
from swimlib.records import field, record

__all__ = ["PassResult", "Reconciler", "ReloadScheduler"]

log = logging.getLogger("lbadapter.reconcile")

#: ``del server`` retry backoff: first wait, factor, ceiling (seconds).
DEL_BACKOFF = (0.5, 2.0, 30.0)
#: While a server drains, look at its sessions this often.
DRAIN_POLL = 0.5
#: A fix needed in this many consecutive passes is drift: ask for a reload.
DRIFT_PASSES = 3


@record(frozen=False)
class PassResult:
    """What one pass did; ``reload_reason`` is set when it wants a reload."""

    actions: list[str] = field(factory=list)
    errors: list[str] = field(factory=list)
    reload_reason: str | None = None
    actual: list[ServerState] = field(factory=list)

    @property
    def clean(self) -> bool:
        return not self.errors and self.reload_reason is None


class Reconciler:
    """Diff-and-apply for one backend. Call :meth:`reconcile` from one task only."""

    def __init__(self, client: RuntimeClient, backend: str, server_options: str,
                 drain_grace: float, clock: Callable[[], float] = anyio.current_time,
                 faults: FaultLog | None = None, dynamic_cookies: bool = False) -> None:
        self.client = client
        #: ``sticky = "cookie"``: compute dynamic cookies after adding or moving a server.
        self.dynamic_cookies = dynamic_cookies
        #: Where a per-server failure nobody foresaw is counted (place ``reconcile-server``).
        self.faults = faults if faults is not None else FaultLog(log)
        self.backend = backend
        self.options = server_options
        self.drain_grace = drain_grace
        self.clock = clock
        self.counters: Counter[str] = Counter()
        self._drain_since: dict[str, float] = {}
        self._del_retry: dict[str, tuple[float, float]] = {}  # name -> (next try, delay)
        self._repeats: Counter[tuple[str, str]] = Counter()
        self._needed: set[tuple[str, str]] = set()

    def next_wakeup(self) -> float | None:
        """When a pass is due for draining or delete retries (None: nothing pending)."""
        times = [t for t, _ in self._del_retry.values()]
        if self._drain_since:
            times.append(self.clock() + DRAIN_POLL)
        return min(times) if times else None

    async def reconcile(self, desired: Mapping[str, DesiredServer]) -> PassResult:
        """One pass. Never raises for HAProxy trouble: it is reported in the result."""
        result = PassResult()
        self._needed = set()
        try:
            actual_rows = await self.client.show_servers_state(self.backend)
        except (CLIUnavailable, ValueError) as exc:
            result.errors.append(str(exc))
            return result
        except UnexpectedAnswer as exc:
            self.counters["unexpected_answer"] += 1
            result.errors.append(str(exc))
            result.reload_reason = (f"cannot read backend {self.backend!r}: "
                                    f"{exc.answer.strip()!r}")
            return result
        result.actual = actual_rows
        actual = {s.name: s for s in actual_rows}
        sessions = await self._sessions(actual, desired, result)
        servers_ok = True
        for name in sorted(set(desired) | set(actual)):
            try:
                await self._one(name, desired.get(name), actual.get(name), sessions, result)
            except UnexpectedAnswer as exc:
                self.counters["unexpected_answer"] += 1
                log.error("reconcile %s/%s: %s", self.backend, name, exc)
                result.errors.append(str(exc))
                result.reload_reason = result.reload_reason or f"unexpected answer: {exc}"
            except CLIUnavailable as exc:
                result.errors.append(str(exc))
                break
            except (CLIError, ValueError) as exc:  # oversized answer, unusable name/address
                self.counters["server_errors"] += 1
                log.error("reconcile %s/%s: %s", self.backend, name, exc)
                result.errors.append(f"{name}: {exc}")
            except Exception as exc:  # a bug met by one server must not stall the others
                servers_ok = False
                self.faults.record("reconcile-server", exc)
                result.errors.append(f"{name}: internal error: {type(exc).__name__}")
        if servers_ok:
            self.faults.succeeded("reconcile-server")
        self._detect_drift(result)
        for name in list(self._drain_since):
            if name not in actual or actual[name].in_maint:
                self._drain_since.pop(name, None)
        for action in result.actions:
            log.info("reconcile: %s", action)
        self.counters["passes"] += 1
        return result

    async def _sessions(self, actual: Mapping[str, ServerState],
                        desired: Mapping[str, DesiredServer],
                        result: PassResult) -> dict[str, int]:
        """Current sessions per server, only when a leaving member's server is draining
        (one drained by its ``lb-state`` stays so: nothing to wait for)."""
        if not any(s.draining and (name not in desired or desired[name].want is not Want.READY)
                   for name, s in actual.items()):
            return {}
        try:
            rows = await self.client.show_stat(self.backend)
        except CLIError as exc:
            result.errors.append(f"show stat: {exc}")
            return {}
        out: dict[str, int] = {}
        for row in rows:
            try:
                out[row["svname"]] = int(row.get("scur") or 0)
            except (KeyError, ValueError):
                continue
        return out

    def _need(self, name: str, what: str, result: PassResult, action: str) -> None:
        # add, readdress and reuse all mean "make it ready": the same fix for drift purposes
        self._needed.add((name, "ready" if what in ("add", "readdress", "reuse") else what))
        result.actions.append(action)
        self.counters[what] += 1

    def _detect_drift(self, result: PassResult) -> None:
        for key in list(self._repeats):
            if key not in self._needed:
                del self._repeats[key]
        for key in self._needed:
            self._repeats[key] += 1
            if self._repeats[key] >= DRIFT_PASSES:
                self.counters["drift"] += 1
                del self._repeats[key]
                reason = (f"drift: {self.backend}/{key[0]} still not {key[1]} after "
                          f"{DRIFT_PASSES} passes")
                log.warning("reconcile: %s", reason)
                result.reload_reason = result.reload_reason or reason

    async def _one(self, name: str, want: DesiredServer | None, have: ServerState | None,
                   sessions: Mapping[str, int], result: PassResult) -> None:
        if want is not None and want.want is Want.READY:
            self._drain_since.pop(name, None)
            self._del_retry.pop(name, None)
            await self._make_ready(want, have, result)
        elif have is None:
            self._drain_since.pop(name, None)
            self._del_retry.pop(name, None)
        elif want is not None and want.want is Want.DRAIN and not have.in_maint:
            await self._drain(have, sessions.get(name, 0), result)
        elif not have.in_maint:
            await self.client.set_state(self.backend, name, "maint")
            self._need(name, "maint", result, f"maint {self.backend}/{name} (member "
                       f"{'gone' if want is None else want.want.value})")
            await self._delete(name, result)
        else:
            await self._delete(name, result)

    async def _make_ready(self, want: DesiredServer, have: ServerState | None,
                          result: PassResult) -> None:
        """A live member's server: present, at its address, in its ``lb-state``, weight."""
        be, name, target = self.backend, want.name, want.state
        if have is None:
            added = await self.client.add_server(be, name, want.address,
                                                 f"{want.identity_options} {self.options}")
            if added is AddResult.EXISTS:  # appeared since we looked: reuse it
                await self.client.set_addr(be, name, want.addr, want.port)
            await self._bring_up(want)
            self._need(name, "add", result, f"add {be}/{name} {want.address} ({added.value}, "
                       f"{target}, weight {want.weight})")
            return
        if want.sid and have.sid != want.sid:  # IDs are fixed at creation: only a reload
            result.reload_reason = result.reload_reason or (
                f"{be}/{name} has id {have.sid}, membership says {want.sid}")
        if not _same_endpoint(have, want):
            await self.client.set_addr(be, name, want.addr, want.port)
            await self._bring_up(want)
            self._need(name, "readdress", result,
                       f"readdress {be}/{name} {have.addr}:{have.port} -> {want.address}")
        elif have.in_maint and target != "maint":
            await self._bring_up(want)
            self._need(name, "reuse", result, f"reuse {be}/{name} ({have.admin_name} -> "
                       f"{target})")
        elif target != have.admin_name and not (target == "maint" and have.in_maint):
            # ready <-> drain, or into maint: no health reset, so sticky sessions stay put
            await self.client.set_state(be, name, target)
            self._need(name, "state", result, f"{target} {be}/{name} (lb-state)")
        if have.weight != want.weight:
            await self.client.set_weight(be, name, want.weight)
            self._need(name, "weight", result,
                       f"weight {be}/{name} {have.weight} -> {want.weight} (lb-weight)")

    async def _bring_up(self, want: DesiredServer) -> None:
        """Checks on, then the wanted state; DOWN until the first good check (not in maint)."""
        be, name = self.backend, want.name
        await self.client.enable_health(be, name)
        if want.state == "maint":
            await self.client.set_state(be, name, "maint")
        else:
            await self.client.set_ready_health_down(be, name, want.state)
        if self.dynamic_cookies:  # a dynamic server gets its cookie only from this
            await self.client.enable_dynamic_cookie(be)

    async def _drain(self, have: ServerState, scur: int, result: PassResult) -> None:
        be, name, now = self.backend, have.name, self.clock()
        if not have.draining:
            await self.client.set_state(be, name, "drain")
            self._drain_since[name] = now
            self._need(name, "drain", result, f"drain {be}/{name} (member left)")
            return
        since = self._drain_since.setdefault(name, now)
        if scur == 0 or now - since >= self.drain_grace:
            await self.client.set_state(be, name, "maint")
            self._drain_since.pop(name, None)
            why = "no sessions" if scur == 0 else f"grace over, {scur} sessions"
            result.actions.append(f"maint {be}/{name} (drained: {why})")
            self.counters["maint"] += 1
            await self._delete(name, result)

    async def _delete(self, name: str, result: PassResult) -> None:
        now = self.clock()
        next_try, delay = self._del_retry.get(name, (now, DEL_BACKOFF[0]))
        if now < next_try:
            return
        outcome = await self.client.del_server(self.backend, name)
        if outcome in (DelResult.DELETED, DelResult.NO_SUCH_SERVER):
            self._del_retry.pop(name, None)
            result.actions.append(f"del {self.backend}/{name}")
            self.counters["del"] += 1
            return
        self.counters[f"del_refused_{outcome.value}"] += 1
        log.debug("del %s/%s refused (%s); retry in %.1f s", self.backend, name,
                  outcome.value, delay)
        _, factor, ceiling = DEL_BACKOFF
        self._del_retry[name] = (now + delay, min(ceiling, delay * factor))


class ReloadScheduler:
    """Coalesces reload requests (min quiet / max wait) and backs off repeats.

    ``min_wait`` after the latest request, but never later than ``max_wait``
    after the first. Reloads asked for as a fallback (unknown answers,
    drift) and failed reloads push the next one back exponentially, so a
    persistent problem cannot turn into a reload loop.
    """

    BACKOFF = (1.0, 2.0, 60.0)

    def __init__(self, min_wait: float, max_wait: float) -> None:
        self.min_wait = min_wait
        self.max_wait = max_wait
        self._first: float | None = None
        self._last = 0.0
        self._reasons: list[str] = []
        self._not_before = float("-inf")
        self._streak = 0

    @property
    def pending(self) -> bool:
        return self._first is not None

    def request(self, now: float, reason: str) -> None:
        if self._first is None:
            self._first = now
        self._last = now
        if reason not in self._reasons:
            self._reasons.append(reason)

    def due_at(self) -> float | None:
        if self._first is None:
            return None
        return max(min(self._last + self.min_wait, self._first + self.max_wait),
                   self._not_before)

    def take(self, now: float) -> list[str] | None:
        """The reasons, if a reload is due now (and clear them)."""
        due = self.due_at()
        if due is None or now < due:
            return None
        reasons, self._reasons, self._first = self._reasons, [], None
        return reasons

    def finished(self, now: float, ok: bool, fallback: bool) -> None:
        """Record a reload's outcome; failures and fallbacks grow the backoff."""
        if ok and not fallback:
            self._streak = 0
            self._not_before = float("-inf")
            return
        self._streak += 1
        first, factor, ceiling = self.BACKOFF
        self._not_before = now + min(ceiling, first * factor ** (self._streak - 1))

    def note_clean_pass(self) -> None:
        """A pass with nothing to complain about ends a fallback streak."""
        if self._first is None:
            self._streak = 0


def _same_endpoint(have: ServerState, want: DesiredServer) -> bool:
    """Whether HAProxy's server already points at ``want``'s address and port.

    Compared as IP addresses, not text: HAProxy prints some IPv6 forms
    differently from Python (``::10.0.0.1`` against ``::a00:1``), and a text
    mismatch would readdress the server on every pass and end in drift reloads.
    """
    if have.port != want.port:
        return False
    try:
        return ipaddress.ip_address(have.addr) == ipaddress.ip_address(want.addr)
    except ValueError:
        return have.addr == want.addr
