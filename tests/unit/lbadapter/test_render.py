"""Template rendering (Jinja2 only) and the atomic writer with a stand-in haproxy -c.

Validation by the real binary: tests/integration/test_lbadapter_render.py.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from lbadapter.config import DEFAULT_SERVER_OPTIONS, settings_from_mapping
from lbadapter.desired import DesiredServer, Want
from lbadapter.render import (
    DEFAULT_TEMPLATE,
    ConfigCheckError,
    ConfigWriter,
    RenderError,
    render_config,
)

SETTINGS = settings_from_mapping({"listen": "127.0.0.1:8080", "stats": "127.0.0.1:9090",
                                  "state_dir": "/tmp/lbstate"})
SERVERS = [DesiredServer("web-2", "web-2", "10.0.0.2", 8002, Want.READY),
           DesiredServer("web-1", "web-1", "10.0.0.1", 8001, Want.READY),
           DesiredServer("old", "old", "10.0.0.3", 8003, Want.DRAIN),
           DesiredServer("dead", "dead", "10.0.0.4", 8004, Want.GONE)]


def test_default_template_has_the_required_settings():
    text = render_config(SETTINGS, SERVERS)
    for needle in ["bind 127.0.0.1:8080", "bind 127.0.0.1:9090", "stats uri /",
                   "stats socket /tmp/lbstate/admin.sock mode 600 level admin",
                   "option redispatch 1", "retries 3",
                   "retry-on conn-failure empty-response response-timeout",
                   "hard-stop-after 30s", "balance roundrobin", "default_backend app",
                   "backend app"]:
        assert needle in text, needle
    assert "inter 1s fall 2 rise 1" in DEFAULT_SERVER_OPTIONS
    assert "observe layer4" in DEFAULT_SERVER_OPTIONS


def test_only_ready_servers_get_lines_sorted_with_the_shared_options():
    lines = [ln.strip() for ln in render_config(SETTINGS, SERVERS).splitlines()
             if ln.strip().startswith("server ")]
    assert lines == [f"server web-1 10.0.0.1:8001 weight 1 {DEFAULT_SERVER_OPTIONS}",
                     f"server web-2 10.0.0.2:8002 weight 1 {DEFAULT_SERVER_OPTIONS}"]


def test_empty_member_list_renders_an_empty_backend():
    text = render_config(SETTINGS, [])
    assert "backend app" in text and "\n    server " not in text


def test_custom_template_and_variables(tmp_path):
    t = tmp_path / "t.j2"
    t.write_text("{{ backend }} {{ listen.port }} {{ stats.host }} {{ balance }}\n"
                 "{% for s in servers %}{{ s.name }}={{ s.address }} {{ s.member }}\n"
                 "{% endfor %}")
    out = render_config(SETTINGS, SERVERS[:2], template=t)
    assert out == "app 8080 127.0.0.1 roundrobin\nweb-1=10.0.0.1:8001 web-1\n" \
                  "web-2=10.0.0.2:8002 web-2\n"


def test_syntax_error_names_file_and_line(tmp_path):
    t = tmp_path / "bad.j2"
    t.write_text("global\n    maxconn 10\n{% for s in servers %}\n  server {{ s.name }\n")
    with pytest.raises(RenderError, match=rf"{t}:4: "):
        render_config(SETTINGS, SERVERS, template=t)


def test_undefined_variable_names_file_and_line(tmp_path):
    t = tmp_path / "undef.j2"
    t.write_text("global\n\n    bind {{ lisen.address }}\n")
    with pytest.raises(RenderError, match=rf"{t}:3: UndefinedError: 'lisen' is undefined"):
        render_config(SETTINGS, SERVERS, template=t)


def test_runtime_error_in_template_names_line(tmp_path):
    t = tmp_path / "div.j2"
    t.write_text("a\nb\n{{ 1 // 0 }}\n")
    with pytest.raises(RenderError, match=rf"{t}:3: ZeroDivisionError"):
        render_config(SETTINGS, SERVERS, template=t)


def test_missing_and_unreadable_templates(tmp_path):
    with pytest.raises(RenderError, match="not found"):
        render_config(SETTINGS, SERVERS, template=tmp_path / "none.j2")
    binary = tmp_path / "bin.j2"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(RenderError, match=str(binary)):
        render_config(SETTINGS, SERVERS, template=binary)


def test_template_is_reread_on_every_render(tmp_path):
    t = tmp_path / "t.j2"
    t.write_text("one\n")
    assert render_config(SETTINGS, [], template=t) == "one\n"
    t.write_text("two\n")
    assert render_config(SETTINGS, [], template=t) == "two\n"


def test_default_template_is_packaged():
    assert DEFAULT_TEMPLATE.is_file()


def fake_haproxy(tmp_path: Path) -> str:
    """Accepts any config unless it contains the word BROKEN (then prints an [ALERT])."""
    exe = tmp_path / "fake-haproxy"
    exe.write_text('#!/bin/sh\nif grep -q BROKEN "$3"; then\n'
                   '  echo "[ALERT]    (1) : config : parsing [$3:2] : unknown keyword" >&2\n'
                   '  echo "[ALERT]    (1) : config : Fatal errors found in configuration." >&2\n'
                   '  exit 1\nfi\necho "Configuration file is valid"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return str(exe)


async def test_writer_atomic_replace_backup_and_rejection(tmp_path):
    path = tmp_path / "haproxy.cfg"
    writer = ConfigWriter(path, fake_haproxy(tmp_path))
    assert await writer.write("v1\n") is True
    assert path.read_text() == "v1\n" and not writer.backup.exists()
    assert await writer.write("v1\n") is False  # unchanged: no write, no check
    assert await writer.write("v2\n") is True
    assert writer.backup.read_text() == "v1\n"
    with pytest.raises(ConfigCheckError) as info:
        await writer.write("x\nBROKEN\n")
    assert path.read_text() == "v2\n"  # the good file stays
    assert writer.rejected.read_text() == "x\nBROKEN\n"
    assert any("[ALERT]" in ln and str(writer.rejected) in ln for ln in info.value.lines)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


async def test_writer_reports_a_missing_binary(tmp_path):
    writer = ConfigWriter(tmp_path / "haproxy.cfg", str(tmp_path / "no-haproxy"))
    with pytest.raises(ConfigCheckError) as info:
        await writer.write("v1\n")
    assert "cannot run" in info.value.lines[0]
    assert not (tmp_path / "haproxy.cfg").exists()
