"""Hostile member data never reaches haproxy.cfg, the runtime API or the logs as chosen.

Member names, tags, ports and addresses come from the network (or from a
``serf members -format=json`` file). Every test here feeds names built to
break out of a config line or a CLI command (HAProxy's CLI splits commands
on ``;`` and newlines; NUL splits words), port tags that ``int()`` would
happily accept, and addresses that parse but cannot be used, then checks
what actually comes out: the rendered text line by line (and ``haproxy -c``
when the binary is installed), the raw bytes sent to a runtime API socket,
and the log records. Real HAProxy: tests/integration/test_lbadapter_hostile.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import anyio
import anyio.abc
import pytest

from lbadapter.config import DEFAULT_SERVER_OPTIONS, Settings, settings_from_mapping
from lbadapter.desired import (
    DesiredServer,
    MemberProblems,
    MemberRecord,
    Want,
    desired_servers,
    member_label,
    members_from_json,
    parse_port_tag,
    server_name,
    usable_ip,
)
from lbadapter.haproxy import RuntimeClient, _token, cli_exchange
from lbadapter.reconcile import Reconciler
from lbadapter.render import check_config, render_config
from lbadapter.testing import short_state_dir
from swimlib.records import replace
from tests.unit.lbadapter.test_reconcile import FakeHAProxy, FakeServer

TAG = ("role", "backend")
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
needs_haproxy = pytest.mark.skipif(not os.path.exists(HAPROXY),
                                   reason="haproxy is not installed (apt-get install haproxy)")

#: Names built to end a config line or a CLI command, or to confuse whoever reads them.
HOSTILE_NAMES = [
    "semi;shutdown sessions server app/web-1", "nl\nserver evil 6.6.6.6:80", "cr\rshow info",
    "crlf\r\ndisable frontend fe", "sp ace", "tab\there", "#comment", "quotes\"'`",
    "back\\slash", "nul\x00byte", "pct%[src]", "dollar${HOME}", "esc\x1b[31mred",
    "bidi\u202egnp", "utf8-\u00fcn\u00ef", "bytes\udcff\udcfe", "lone\ud800", "x" * 1000, "",
    "BACKEND", "FRONTEND", "-dash", ":", "app/other", "web 9", server_name("web 9"),
]
#: ``server_name("web 9")`` is taken by the member literally called that.
SHADOWED = {"web 9"}
#: Port tags that are not exactly a port (``int()`` accepts several of them).
BAD_PORTS = ["80;shutdown sessions", "0", "65536", "-1", " 80", "80 ", "8\n0", "80\n", "+80",
             "0x50", "8_0", "\uff18\uff10", "\u0668\u0660", "", "80.0", "1e3", "99999999999"]
#: Addresses that parse as text but HAProxy cannot (or must not) connect to.
BAD_ADDRS = ["fe80::1%eth0", "fe80::1%x\n    server evil 6.6.6.6:80 #", "0.0.0.0", "::",
             "224.0.0.1", "ff02::1", "255.255.255.255", "host.example", "10.0.0.1;x", "",
             " 10.0.0.1", "10.0.0.1\n", "10.0.0.1:80", "[::1]", "1.2.3.4%eth0"]
#: Everything that may appear in a runtime API command besides fixed words.
NAME = r"[A-Za-z0-9_.:-]{1,80}"
ADDR = r"(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-f:.]+\]):\d{1,5}"
IP = r"(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9a-f:.]+)"
OPTIONS = "check inter 1s fall 2 rise 1"
COMMAND_SHAPES = [re.compile(p) for p in (
    r"show servers state app", r"show stat app 4 -1",
    rf"add server app/{NAME} {ADDR} id \d{{1,10}} weight \d{{1,3}} {re.escape(OPTIONS)}",
    rf"enable health app/{NAME}",
    rf"set server app/(?P<n>{NAME}) state (?:ready|drain); set server app/(?P=n) health down",
    rf"set server app/{NAME} state (?:ready|drain|maint)",
    rf"set server app/{NAME} weight \d{{1,3}}",
    r"enable dynamic-cookie backend app",
    rf"set server app/{NAME} addr {IP} port \d{{1,5}}",
    rf"del server app/{NAME}")]
SERVER_LINE = re.compile(rf"    server {NAME} {ADDR} id \d{{1,10}} weight \d{{1,3}} "
                         rf"{re.escape(DEFAULT_SERVER_OPTIONS)}")


def member(name: str, port: str | None = "8000", addr: str = "127.0.0.1",
           status: str = "alive") -> MemberRecord:
    tags = {"role": "backend"} | ({"port": port} if port is not None else {})
    return MemberRecord(name, addr, 7946, tags, status)


def hostile_members(addr: str = "127.0.0.1", port: int = 8000) -> list[MemberRecord]:
    """Every hostile name at a good address, plus bad ports and bad addresses."""
    good = [member(n, str(port), addr) for n in HOSTILE_NAMES]
    ports = [member(f"badport-{i}", p, addr) for i, p in enumerate(BAD_PORTS)]
    addrs = [member(f"badaddr-{i}", str(port), a) for i, a in enumerate(BAD_ADDRS)]
    weird = [member(n, "80;shutdown sessions", "fe80::1%x\nshutdown sessions")
             for n in ("both\nbad", "also;bad")]
    return good + ports + addrs + weird


def served_names() -> set[str]:
    """Server names the hostile members may (and must) get."""
    return {server_name(n) for n in HOSTILE_NAMES if n not in SHADOWED}


def settings(**extra: object) -> Settings:
    return settings_from_mapping({"listen": "127.0.0.1:18080", "stats": "127.0.0.1:18081",
                                  "state_dir": "/tmp/lbhostile", **extra})


@pytest.fixture(autouse=True)
def _lbadapter_logs_reach_caplog() -> Iterator[None]:
    """Another test may have run ``lbadapter run``'s logging setup (propagate off)."""
    logger = logging.getLogger("lbadapter")
    saved = logger.propagate
    logger.propagate = True
    yield
    logger.propagate = saved


# ---------------------------------------------------------------- producing values

@pytest.mark.parametrize("text", [*BAD_PORTS, None, 80, b"80"])
def test_port_tags_must_be_plain_ascii_numbers(text: object) -> None:
    assert parse_port_tag(text) is None
    m = MemberRecord("a", "10.0.0.1", 7946, {"role": "backend", "port": text})  # type: ignore[dict-item]
    assert desired_servers([m], TAG, None) == {}
    assert desired_servers([m], TAG, 3000)["a"].port == 3000  # --backend-port instead


@pytest.mark.parametrize(("text", "port"), [("1", 1), ("80", 80), ("080", 80),
                                            ("65535", 65535)])
def test_good_port_tags(text: str, port: int) -> None:
    assert parse_port_tag(text) == port


@pytest.mark.parametrize("addr", BAD_ADDRS)
def test_unusable_addresses_are_skipped(addr: str, caplog: pytest.LogCaptureFixture) -> None:
    assert usable_ip(addr)[0] is None
    assert desired_servers([member("a", addr=addr)], TAG, None) == {}
    assert "member a: address" in caplog.text


@pytest.mark.parametrize(("addr", "canonical"), [
    ("::ffff:127.0.0.1", "127.0.0.1"), ("::FFFF:10.0.0.1", "10.0.0.1"),
    ("2001:DB8::0:1", "2001:db8::1"), ("127.0.0.1", "127.0.0.1"), ("fe80::1", "fe80::1")])
def test_addresses_are_canonical(addr: str, canonical: str) -> None:
    """IPv4-mapped becomes IPv4: HAProxy prints ``::ffff:10.0.0.1``, Python ``::ffff:a00:1``,
    and the text mismatch used to readdress the server on every pass."""
    assert desired_servers([member("a", addr=addr)], TAG, None)["a"].addr == canonical


def test_hostile_names_become_safe_distinct_stable_server_names() -> None:
    got = desired_servers(hostile_members(), TAG, None)
    assert set(got) == served_names()
    for name, server in got.items():
        assert re.fullmatch(NAME, name), name
        assert name not in ("BACKEND", "FRONTEND")  # the stats totals' svname
        assert server_name(server.member) == name
    assert desired_servers(list(reversed(hostile_members())), TAG, None) == got


def test_name_collisions_do_not_depend_on_member_order(caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    a, b = member("web 9", "8001"), member(server_name("web 9"), "8002")
    first = desired_servers([a, b], TAG, None)
    second = desired_servers([b, a], TAG, None)
    assert first == second and [s.port for s in first.values()] == [8002]
    assert "already taken" in caplog.text


def test_desired_server_refuses_unsafe_values() -> None:
    """Whatever builds a DesiredServer, the renderer and the CLI never get an unsafe one."""
    ok = DesiredServer("web-1", "web 1\n", "10.0.0.1", 80, Want.READY)
    assert ok.address == "10.0.0.1:80"
    for bad in [("web 1", "10.0.0.1", 80), ("a\n", "10.0.0.1", 80), ("BACKEND", "10.0.0.1", 80),
                ("x" * 81, "10.0.0.1", 80), ("a", "fe80::1%eth0", 80), ("a", "::ffff:a00:1", 80),
                ("a", "0.0.0.0", 80), ("a", "10.0.0.1", 0), ("a", "10.0.0.1", 65536),
                ("a", "10.0.0.1", True), ("a", "10.0.0.1 ", 80)]:
        name, addr, port = bad
        with pytest.raises(ValueError):
            DesiredServer(name, "m", addr, port, Want.READY)


class Unreadable:
    """A member whose attributes blow up (a bug or a half-built object)."""

    name = "broken"
    addr = "10.0.0.1"
    status_name = "alive"

    @property
    def tag_map(self) -> dict[str, str]:
        raise RuntimeError("cannot read tags")


def test_one_unreadable_member_does_not_stop_the_others() -> None:
    problems = MemberProblems()
    got = desired_servers([member("a"), Unreadable(), member("b")], TAG, None, problems)
    assert set(got) == {"a", "b"}
    assert problems.last["member_error"] == 1


def test_odd_status_values_mean_gone() -> None:
    got = desired_servers([member("a", status="alive\n"), member("b", status="ALIVE")],
                          TAG, None)
    assert {s.want for s in got.values()} == {Want.GONE}


def test_problems_are_logged_once_per_member_and_reason(caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    problems = MemberProblems()
    members = hostile_members()
    for _ in range(3):  # the adapter recomputes on every wake-up
        desired_servers(members, TAG, None, problems)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(set(warnings)) == sum(problems.last.values())
    assert problems.last["port_invalid"] == len(BAD_PORTS) + 2
    assert problems.last["addr_scoped"] + problems.last["addr_invalid"] \
        + problems.last["addr_unusable"] == len(BAD_ADDRS)
    assert problems.last["name_collision"] == len(SHADOWED)


def test_log_lines_never_carry_member_line_breaks_or_escapes(caplog: pytest.LogCaptureFixture
                                                             ) -> None:
    caplog.set_level(logging.DEBUG)
    desired_servers(hostile_members(), TAG, None)
    members = [member(n, port="bad") for n in HOSTILE_NAMES]
    desired_servers(members, TAG, None)
    assert len(caplog.records) >= len(BAD_PORTS) + len(BAD_ADDRS) + len(HOSTILE_NAMES)
    for record in caplog.records:
        text = record.getMessage()
        assert text.isprintable() and len(text) < 600, text


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_member_labels_are_one_safe_word(name: str) -> None:
    label = member_label(name)
    assert re.fullmatch(r"[A-Za-z0-9_.:@+=,/\\-]*(?:\.\.\.)?", label), label
    assert len(label) <= 128 * 10 + 3
    assert label == name or "\\" in label or label.endswith("...") or not name


def test_member_labels_are_unambiguous() -> None:
    names = [n for n in HOSTILE_NAMES if len(n) <= 128] + ["back\\x5cslash", "nl\\x0a"]
    assert len({member_label(n) for n in names}) == len(set(names))


def test_members_json_with_hostile_values() -> None:
    data = {"members": [{"name": n, "addr": "127.0.0.1:7946", "port": 7946,
                         "tags": {"role": "backend", "port": "8000"}, "status": "alive"}
                        for n in HOSTILE_NAMES]}
    records = members_from_json(json.loads(json.dumps(data)))
    assert set(desired_servers(records, TAG, None)) == served_names()
    for port in (1e400, float("nan"), "\uff18\uff10x", [1], None):
        with pytest.raises(ValueError, match=r"members\[0\]"):
            members_from_json([{"name": "a", "addr": "127.0.0.1", "port": port}])


# ---------------------------------------------------------------- haproxy.cfg

def server_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.lstrip().startswith("server ")]


def test_rendered_config_has_exactly_one_plain_line_per_server() -> None:
    s = settings()
    text = render_config(s, desired_servers(hostile_members(), TAG, None).values())
    lines = server_lines(text)
    assert len(lines) == len(served_names())
    assert all(SERVER_LINE.fullmatch(ln) for ln in lines), lines
    # nothing else changed: the rest is the config of an empty backend, line for line
    rest = [ln for ln in text.splitlines() if ln not in lines]
    assert rest == render_config(s, []).splitlines()
    assert {ln.split()[2] for ln in lines} == {"127.0.0.1:8000"}  # no smuggled address
    assert all(ln.isprintable() for ln in text.splitlines())  # no \r, NUL, escapes


def test_custom_template_gets_only_safe_member_text(tmp_path: Path) -> None:
    t = tmp_path / "t.j2"
    t.write_text("{% for s in servers %}# {{ s.member }} -> {{ s.name }} {{ s.addr }} "
                 "{{ s.port }}\n{% endfor %}")
    servers = desired_servers(hostile_members(), TAG, None)
    text = render_config(settings(), servers.values(), template=t)
    lines = text.splitlines()
    assert len(lines) == len(served_names())
    assert all(ln.isprintable() and ln.count("#") == 1 and ";" not in ln for ln in lines)


@needs_haproxy
async def test_haproxy_accepts_the_rendered_config(tmp_path: Path) -> None:
    s = settings(state_dir=str(tmp_path))
    v6 = [member(n, addr="::1") for n in ("v6;a", "v6\nb")]
    servers = desired_servers(hostile_members() + v6, TAG, None)
    path = tmp_path / "haproxy.cfg"
    path.write_text(render_config(s, servers.values()))
    result = await check_config(HAPROXY, path)
    assert result.ok, result.problems
    assert not [ln for ln in result.lines if "[WARNING]" in ln or "[ALERT]" in ln]


def test_render_command_with_hostile_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    from lbadapter.cli import main

    members = [{"name": m.name, "addr": m.addr, "port": 7946, "tags": dict(m.tags),
                "status": m.status} for m in hostile_members()]
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"members": members}))
    args = ["render", "--members-json", str(path), "--state-dir", str(tmp_path)]
    if os.path.exists(HAPROXY):
        args += ["--check", "--haproxy", HAPROXY]
    assert main(args) == 0
    out = capsys.readouterr()
    lines = server_lines(out.out)
    # "[::1]" is how Serf's JSON writes a v6 address: badaddr-13 is a good member there
    assert {ln.split()[1] for ln in lines} == served_names() | {"badaddr-13"}
    assert all(SERVER_LINE.fullmatch(ln) for ln in lines), lines
    assert all(ln.isprintable() for ln in out.out.splitlines())
    path.write_text('{"members": [{"name": "a", "addr": "1.2.3.4", "port": 1e400}]}')
    assert main(args) == 1  # used to end in an OverflowError traceback
    assert capsys.readouterr().err.startswith("lbadapter: error: members[0]")
    path.write_text("[" * 100000)
    assert main(args) == 1
    assert "lbadapter: error:" in capsys.readouterr().err


# ---------------------------------------------------------------- runtime API

class RecordingCLI:
    """A unix socket answering like HAProxy 2.6 (via FakeHAProxy), keeping every raw byte."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fake = FakeHAProxy()
        self.received: list[bytes] = []

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                    ) -> None:
        async with await anyio.create_unix_listener(self.path) as listener:
            task_status.started()
            await listener.serve(self._handle)

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            data = b""
            with contextlib.suppress(anyio.EndOfStream):
                while True:
                    data += await stream.receive()
            self.received.append(data)
            line = data.decode("utf-8", "surrogateescape").removesuffix("\n")
            await stream.send((await self.fake.command(line)).encode())


def assert_commands_are_plain(received: Iterable[bytes], names: set[str]) -> set[str]:
    """Each connection carried one line of a known shape naming a known server."""
    used: set[str] = set()
    for raw in received:
        assert raw.endswith(b"\n") and raw.count(b"\n") == 1, raw
        assert b"\r" not in raw and b"\x00" not in raw, raw
        line = raw.decode("ascii").removesuffix("\n")
        assert any(shape.fullmatch(line) for shape in COMMAND_SHAPES), line
        assert line.count(";") == (1 if "health down" in line else 0), line
        used.update(re.findall(rf"app/({NAME})", line))
    assert used <= names, used - names
    return used


async def test_runtime_commands_carry_no_member_syntax() -> None:
    await _commands_carry_no_member_syntax()


def test_runtime_commands_carry_no_member_syntax_under_asyncio() -> None:
    anyio.run(_commands_carry_no_member_syntax, backend="asyncio")


async def _commands_carry_no_member_syntax() -> None:
    state_dir = short_state_dir("lbh")
    cli = RecordingCLI(state_dir / "admin.sock")
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(cli.serve)
            r = Reconciler(RuntimeClient(cli.path), "app", OPTIONS, 10.0)
            await _join_move_leave_fail(r, cli)
            tg.cancel_scope.cancel()
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    used = assert_commands_are_plain(cli.received, served_names())
    assert used == served_names()  # every hostile-named member was served, then removed
    assert cli.fake.servers == {}


async def _join_move_leave_fail(r: Reconciler, cli: RecordingCLI) -> None:
    """Join everything, readdress, then half leave (drain) and half fail (maint, del)."""
    result = await r.reconcile(desired_servers(hostile_members(), TAG, None))
    assert result.clean and len(cli.fake.servers) == len(served_names())
    moved = hostile_members(addr="::1", port=9000)
    await r.reconcile(desired_servers(moved, TAG, None))
    assert {(s.addr, s.port) for s in cli.fake.servers.values()} == {("::1", 9000)}
    gone = [replace(m, status="left" if i % 2 else "failed")
            for i, m in enumerate(moved)]
    await r.reconcile(desired_servers(gone, TAG, None))  # drain / maint + del
    await r.reconcile(desired_servers(gone, TAG, None))  # drained (no sessions): maint + del
    await r.reconcile({})


async def test_cli_client_refuses_line_breaks_nul_and_unsafe_words(tmp_path: Path) -> None:
    for line in ("show info\n", "show info\r", "show\x00info", "a\nb"):
        with pytest.raises(ValueError, match="newline"):
            await cli_exchange(tmp_path / "none.sock", line)
    for word in ("web-1\n", "a;b", "a b", "a#b", "a\x00", "", "a%b", "\u0661"):
        with pytest.raises(ValueError):
            _token(word)  # "web-1\n" passed the old ^...$ regex ($ matches before \n)


async def test_equal_addresses_in_other_spellings_are_not_readdressed() -> None:
    """HAProxy prints ``::10.0.0.1`` where Python prints ``::a00:1``: same address."""
    fake = FakeHAProxy()
    fake.servers["a"] = FakeServer("::10.0.0.1", 8000, admin="ready")
    r = Reconciler(fake, "app", OPTIONS, 10.0)
    want = DesiredServer("a", "a", "::a00:1", 8000, Want.READY)
    result = await r.reconcile({"a": want})
    assert result.actions == [] and r.counters["readdress"] == 0
