"""``lbadapter`` command line: render (dry run), usage errors, status without HAProxy."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from lbadapter.cli import main

MEMBERS = {"members": [
    {"name": "web-1", "addr": "127.0.0.1:7947", "port": 7947,
     "tags": {"role": "backend", "port": "8001"}, "status": "alive"},
    {"name": "web-2", "addr": "127.0.0.1:7948", "port": 7948,
     "tags": {"role": "backend"}, "status": "alive"},
    {"name": "lb", "addr": "127.0.0.1:7946", "port": 7946, "tags": {"role": "balancer"},
     "status": "alive"}]}


@pytest.fixture(autouse=True)
def _restore_logging():
    """``lbadapter run`` configures the lbadapter/swimlib loggers: undo it for other tests."""
    saved = {name: (lg.handlers[:], lg.level, lg.propagate)
             for name in ("lbadapter", "swimlib") for lg in [logging.getLogger(name)]}
    yield
    for name, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate


@pytest.fixture
def members_file(tmp_path):
    path = tmp_path / "members.json"
    path.write_text(json.dumps(MEMBERS))
    return path


def test_render_prints_the_config(members_file, capsys):
    assert main(["render", "--members-json", str(members_file), "--listen", "127.0.0.1:8080",
                 "--backend-port", "3000"]) == 0
    out = capsys.readouterr().out
    assert "server web-1 127.0.0.1:8001 " in out
    assert "server web-2 127.0.0.1:3000 " in out
    assert "server lb" not in out and "bind 127.0.0.1:8080" in out


def test_render_with_template_and_tag(members_file, tmp_path, capsys):
    t = tmp_path / "t.j2"
    t.write_text("{% for s in servers %}{{ s.name }} {% endfor %}\n")
    assert main(["render", "--template", str(t), "--members-json", str(members_file),
                 "--backend-tag", "role=balancer", "--backend-port", "1"]) == 0
    assert capsys.readouterr().out == "lb \n"


def test_render_errors_are_one_line(members_file, tmp_path, capsys):
    t = tmp_path / "bad.j2"
    t.write_text("ok\n{% if %}\n")
    assert main(["render", "--template", str(t), "--members-json", str(members_file)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lbadapter: error: template ") and f"{t}:2" in err
    assert main(["render", "--members-json", str(tmp_path / "none.json")]) == 1
    assert "No such file" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{")
    assert main(["render", "--members-json", str(tmp_path / "bad.json")]) == 1
    assert "invalid JSON" in capsys.readouterr().err
    assert main(["render", "--members-json", str(members_file), "--listen", "x:y"]) == 1
    assert "--listen: bad port" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--no-such-flag"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main(["render"])  # --members-json is required
    assert "--members-json" in capsys.readouterr().err


def test_run_with_missing_binary_is_a_clear_error(tmp_path, capsys):
    assert main(["run", "--haproxy", str(tmp_path / "nope"), "--state-dir",
                 str(tmp_path)]) == 1
    assert "not an executable file" in capsys.readouterr().err


def test_status_without_anything(tmp_path, capsys):
    assert main(["status", "--state-dir", str(tmp_path)]) == 1
    assert "no state.json" in capsys.readouterr().err


def test_status_from_state_file_when_haproxy_is_down(tmp_path, capsys):
    (tmp_path / "state.json").write_text(json.dumps({
        "backend": "app", "desired": [{"name": "web-1", "member": "web-1",
                                       "addr": "10.0.0.1", "port": 80, "want": "ready"}],
        "haproxy": {"master_pid": None, "workers": []}}))
    assert main(["status", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "web-1" in out and "10.0.0.1:80" in out and "haproxy not answering" in out
    assert main(["status", "--state-dir", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["servers"][0]["want"] == "ready" and data["haproxy_error"]


def test_console_script_entry_point():
    out = subprocess.run([sys.executable, "-m", "lbadapter.cli", "--help"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "render" in out.stdout and "status" in out.stdout


def test_backend_comes_from_the_environment(monkeypatch):
    from lbadapter.cli import async_backend
    from swimlib.backend import DEFAULT_BACKEND

    monkeypatch.delenv("SWIMLIB_BACKEND", raising=False)
    assert async_backend() == DEFAULT_BACKEND
    monkeypatch.setenv("SWIMLIB_BACKEND", "")
    assert async_backend() == DEFAULT_BACKEND
    for name in ("asyncio", "trio"):
        monkeypatch.setenv("SWIMLIB_BACKEND", name)
        assert async_backend() == name


@pytest.mark.parametrize("value", ["gevent", "Trio", "asyncio,trio"])
def test_unknown_backend_is_a_clear_error(monkeypatch, tmp_path, members_file, capsys, value):
    monkeypatch.setenv("SWIMLIB_BACKEND", value)
    for argv in (["status", "--state-dir", str(tmp_path)],
                 ["render", "--members-json", str(members_file)],
                 ["run", "--state-dir", str(tmp_path)]):
        assert main(argv) == 1
        assert capsys.readouterr().err == (
            f"lbadapter: error: SWIMLIB_BACKEND={value!r}: must be one of asyncio, trio "
            "(unset: asyncio)\n")


def _record_loops(monkeypatch) -> list[str]:
    """The event loop each HAProxy query of ``status`` ran on, in order."""
    import sniffio

    from lbadapter import cli

    loops: list[str] = []
    real = cli._haproxy_servers

    async def spy(*args):
        loops.append(sniffio.current_async_library())
        return await real(*args)

    monkeypatch.setattr(cli, "_haproxy_servers", spy)
    return loops


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_status_runs_on_the_chosen_backend(monkeypatch, tmp_path, capsys, backend):
    """``status`` asks HAProxy's socket from the event loop ``SWIMLIB_BACKEND`` names."""
    loops = _record_loops(monkeypatch)
    monkeypatch.setenv("SWIMLIB_BACKEND", backend)
    test_status_from_state_file_when_haproxy_is_down(tmp_path, capsys)
    assert loops == [backend, backend]


def test_the_backend_flag_wins_over_the_environment(monkeypatch, tmp_path, capsys):
    loops = _record_loops(monkeypatch)
    (tmp_path / "state.json").write_text(json.dumps({
        "backend": "app", "desired": [], "haproxy": {"master_pid": None, "workers": []}}))
    for env, flag in (("asyncio", "trio"), ("trio", "asyncio")):
        monkeypatch.setenv("SWIMLIB_BACKEND", env)
        assert main(["status", "--state-dir", str(tmp_path), "--backend", flag]) == 0
    assert loops == ["trio", "asyncio"]
    capsys.readouterr()
