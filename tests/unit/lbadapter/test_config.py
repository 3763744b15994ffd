"""Settings: defaults, TOML file, flags winning over the file, validation errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from lbadapter.cli import build_parser
from lbadapter.config import (
    DEFAULT_SERVER_OPTIONS,
    Settings,
    SettingsError,
    load_settings,
    settings_from_mapping,
)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["run", *argv])


def test_defaults_match_the_design():
    s = load_settings(parse())
    assert s.listen == ("0.0.0.0", 80) and s.stats == ("0.0.0.0", 1936)
    assert s.backend_tag == ("role", "backend") and s.backend_port is None
    assert s.bind == ("0.0.0.0", 7946) and s.rpc_addr is None and s.join == ()
    assert s.server_options == DEFAULT_SERVER_OPTIONS
    assert s.state_dir == Path("lbadapter-state")
    assert s.config_path == Path("lbadapter-state/haproxy.cfg")


def test_flags(tmp_path):
    s = load_settings(parse("--join", "a:1", "--join", "b", "--node", "lb1", "--bind",
                            "127.0.0.1:8000", "--backend-tag", "svc=web", "--backend-port",
                            "3000", "--listen", "127.0.0.1:8080", "--stats", ":9000",
                            "--template", "t.j2", "--haproxy", "/bin/true", "--state-dir",
                            str(tmp_path), "--rpc-addr", "127.0.0.1:7373"))
    assert s.join == ("a:1", "b") and s.node == "lb1" and s.bind == ("127.0.0.1", 8000)
    assert s.backend_tag == ("svc", "web") and s.backend_port == 3000
    assert s.listen == ("127.0.0.1", 8080) and s.stats == ("0.0.0.0", 9000)
    assert s.template == Path("t.j2") and s.haproxy == "/bin/true"
    assert s.rpc_addr == ("127.0.0.1", 7373)


def test_toml_file_and_flags_win(tmp_path):
    cfg = tmp_path / "lb.toml"
    cfg.write_text('listen = "127.0.0.1:8080"\nbackend-port = 3000\njoin = ["x:1"]\n'
                   'drain_grace = 2.5\nbalance = "leastconn"\nstats = "127.0.0.1:9001"\n')
    s = load_settings(parse("--config", str(cfg), "--stats", "127.0.0.1:9999"))
    assert s.listen == ("127.0.0.1", 8080) and s.backend_port == 3000 and s.join == ("x:1",)
    assert s.drain_grace == 2.5 and s.balance == "leastconn"
    assert s.stats == ("127.0.0.1", 9999)


def test_toml_lbadapter_table(tmp_path):
    cfg = tmp_path / "lb.toml"
    cfg.write_text('[lbadapter]\nbackend_tag = "tier=web"\n')
    assert load_settings(parse("--config", str(cfg))).backend_tag == ("tier", "web")


@pytest.mark.parametrize(("text", "match"), [
    ('nope = 1\n', "unknown key 'nope'"),
    ('listen = 80\n', "listen: expected"),
    ('listen = "x:99999"\n', "port out of range"),
    ('backend_tag = "role"\n', "KEY=VALUE"),
    ('backend_port = "abc"\n', "expected a port"),
    ('drain_grace = "soon"\n', "expected seconds"),
    ('balance = "static-rr"\n', "static"),
    ('backend_name = "a b"\n', "not a valid HAProxy name"),
    ('server_options = "check; del server app/x"\n', "must not contain"),
    ('log_level = "loud"\n', "log_level"),
    ('listen = [\n', "invalid TOML"),
])
def test_bad_toml_values_name_the_file_and_key(tmp_path, text, match):
    cfg = tmp_path / "lb.toml"
    cfg.write_text(text)
    with pytest.raises(SettingsError, match=match) as info:
        load_settings(parse("--config", str(cfg)))
    assert "lb.toml" in str(info.value)


def test_missing_config_file():
    with pytest.raises(SettingsError, match="No such file"):
        load_settings(parse("--config", "/nonexistent/lb.toml"))


@pytest.mark.parametrize(("flag", "value", "match"), [
    ("--listen", "host:notaport", "--listen: bad port"),
    ("--backend-port", "0", "--backend-port: port out of range"),
    ("--backend-tag", "=x", "--backend-tag: expected KEY=VALUE"),
])
def test_bad_flags_name_the_flag(flag, value, match):
    with pytest.raises(SettingsError, match=match):
        load_settings(parse(flag, value))


def test_cross_setting_checks():
    with pytest.raises(SettingsError, match="must not exceed"):
        settings_from_mapping({"reload_min_wait": 5, "reload_max_wait": 1})


def test_address_without_port_uses_the_default_port():
    s = load_settings(parse("--listen", "127.0.0.1", "--stats", "127.0.0.1"))
    assert s.listen == ("127.0.0.1", 80) and s.stats == ("127.0.0.1", 1936)


def test_state_dir_with_a_comma():
    with pytest.raises(SettingsError, match="commas"):
        settings_from_mapping({"state_dir": "/tmp/a,b"})


def test_state_dir_too_long_for_sockets():
    with pytest.raises(SettingsError, match="too long"):
        settings_from_mapping({"state_dir": "/tmp/" + "x" * 120})


def test_settings_is_frozen():
    with pytest.raises(AttributeError):
        Settings().node = "x"  # type: ignore[misc]
