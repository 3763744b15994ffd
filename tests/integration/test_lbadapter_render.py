"""Rendered configs validated by the real ``haproxy -c`` (no HAProxy is started here)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from lbadapter import Adapter, AdapterError, MemberRecord, settings_from_mapping
from lbadapter.desired import DesiredServer, Want
from lbadapter.render import (
    DEFAULT_TEMPLATE,
    ConfigCheckError,
    ConfigWriter,
    RenderError,
    check_config,
    render_config,
)

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
pytestmark = pytest.mark.skipif(not os.path.exists(HAPROXY),
                                reason="haproxy is not installed (apt-get install haproxy)")

SERVERS = [DesiredServer("web-1", "web-1", "127.0.0.1", 8001, Want.READY),
           DesiredServer("web_2-1a2b3c4d", "web 2", "::1", 8002, Want.READY)]


def settings(tmp_path: Path, **extra: object):  # type: ignore[no-untyped-def]
    return settings_from_mapping({"state_dir": str(tmp_path), "listen": "127.0.0.1:18080",
                                  "stats": "127.0.0.1:18081", "haproxy": HAPROXY, **extra})


async def test_default_template_is_valid_with_and_without_servers(tmp_path: Path) -> None:
    s = settings(tmp_path)
    servers = [SERVERS[0], DesiredServer("v6", "v6", "::1", 8002, Want.READY)]
    for members in ([], servers):
        path = tmp_path / "c.cfg"
        path.write_text(render_config(s, members))
        result = await check_config(HAPROXY, path)
        assert result.ok, result.lines
        assert "Configuration file is valid" in result.lines


async def test_writer_with_real_haproxy(tmp_path: Path) -> None:
    s = settings(tmp_path)
    writer = ConfigWriter(s.config_path, HAPROXY)
    good = render_config(s, SERVERS[:1])
    assert await writer.write(good)
    broken = good.replace("balance roundrobin", "balance nonsense")
    with pytest.raises(ConfigCheckError) as info:
        await writer.write(broken)
    assert s.config_path.read_text() == good  # old file kept
    text = "\n".join(info.value.lines)
    assert "[ALERT]" in text and "balance" in text and str(writer.rejected) in text
    dup = good + "\nbackend app2\n    server a 127.0.0.1:1\n    server a 127.0.0.1:2\n"
    with pytest.raises(ConfigCheckError) as info:
        await writer.write(dup)
    assert any("another server named 'a' was already defined" in ln
               for ln in info.value.lines)
    assert s.config_path.read_text() == good


async def test_broken_template_error_names_the_line(tmp_path: Path) -> None:
    t = tmp_path / "t.j2"
    t.write_text(DEFAULT_TEMPLATE.read_text().replace("endfor", "endfro"))
    line = 1 + t.read_text().splitlines().index(
        next(ln for ln in t.read_text().splitlines() if "endfro" in ln))
    with pytest.raises(RenderError, match=rf"{t}:{line}: "):
        render_config(settings(tmp_path, template=str(t)), SERVERS)


async def test_adapter_refuses_to_start_without_any_valid_config(tmp_path: Path) -> None:
    t = tmp_path / "t.j2"
    t.write_text("global\n    no-such-keyword\n")
    adapter = Adapter(settings(tmp_path, template=str(t)), list)
    with pytest.raises(AdapterError, match="no valid HAProxy config"):
        await adapter.prepare()
    assert not adapter.settings.config_path.exists()
    adapter.release()


async def test_adapter_starts_from_the_previous_good_file(tmp_path: Path) -> None:
    good = Adapter(settings(tmp_path), lambda: [MemberRecord("web-1", "127.0.0.1", 1,
                                                             {"role": "backend", "port": "80"})])
    await good.prepare()
    before = good.settings.config_path.read_text()
    second = Adapter(settings(tmp_path), list)
    with pytest.raises(AdapterError, match="another lbadapter is using"):
        await second.prepare()
    good.release()
    t = tmp_path / "t.j2"
    t.write_text("{{ nope }}\n")
    broken = Adapter(settings(tmp_path, template=str(t)), list)
    await broken.prepare()  # logs the error, keeps the old file
    assert broken.config_error and f"{t}:1" in broken.config_error
    assert broken.settings.config_path.read_text() == before


def test_render_and_check_under_asyncio(tmp_path: Path) -> None:
    """``haproxy -c`` as an asyncio subprocess: accepted, rejected, and the adapter's start."""
    async def main() -> None:
        await test_default_template_is_valid_with_and_without_servers(tmp_path)
        await test_writer_with_real_haproxy(tmp_path)
        await test_adapter_starts_from_the_previous_good_file(tmp_path)

    anyio.run(main, backend="asyncio")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_render_command_with_check(tmp_path: Path, backend: str) -> None:
    env = {**os.environ, "SWIMLIB_BACKEND": backend}
    members = tmp_path / "m.json"
    members.write_text(json.dumps({"members": [
        {"name": "web-1", "addr": "127.0.0.1:7946", "port": 7946,
         "tags": {"role": "backend", "port": "8001"}, "status": "alive"}]}))
    cmd = [sys.executable, "-m", "lbadapter.cli", "render", "--members-json", str(members),
           "--haproxy", HAPROXY, "--check", "--state-dir", str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert "server web-1 127.0.0.1:8001" in out.stdout
    t = tmp_path / "t.j2"
    t.write_text("global\n    bogus-keyword 1\n")
    out = subprocess.run([*cmd, "--template", str(t)], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 1
    assert "[ALERT]" in out.stderr and "bogus-keyword" in out.stderr
