"""serf's JSON configuration files: reading, merging, refusing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from swimlib.agent import serf_config as sc
from swimlib.errors import ConfigError


def _write(path: Path, content: Any) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def _settings(*flags: str) -> Any:
    from swimlib.agent.command import _Settings
    from swimlib.cli import parse_agent_args

    return _Settings.from_args(parse_agent_args(["agent", *flags]))


def test_merge_follows_serfs_rules() -> None:
    base = {"node_name": "a", "replay_on_join": True, "retry_interval": 30.0,
            "tags": {"role": "web", "dc": "east"}, "start_join": ["x"], "query_size_limit": 5}
    top = {"node_name": "", "replay_on_join": False, "retry_interval": 0.0,
           "tags": {"dc": "west"}, "start_join": ["y"], "query_size_limit": 0,
           "profile": "wan"}
    assert sc.merge(base, top) == {
        "node_name": "a",  # an empty string sets nothing
        "replay_on_join": True,  # a boolean only turns a switch on
        "retry_interval": 30.0,  # nor does a zero duration or number
        "query_size_limit": 5,
        "tags": {"role": "web", "dc": "west"},  # maps merge
        "start_join": ["x", "y"],  # lists append
        "profile": "wan"}


def test_a_directory_is_read_in_lexical_order_json_files_only(tmp_path: Path) -> None:
    d = tmp_path / "serf.d"
    d.mkdir()
    _write(d / "2-name.json", {"node_name": "two", "start_join": ["b"]})
    _write(d / "10-name.json", {"node_name": "ten", "start_join": ["a"]})
    _write(d / "notes.txt", "not json at all")
    (d / "sub.json").mkdir()  # a directory, even named *.json, is skipped
    extra = _write(tmp_path / "last.json", {"tags": {"k": "v"}})
    config = sc.read_paths([str(d), str(extra)])
    assert config == {"node_name": "two", "start_join": ["a", "b"], "tags": {"k": "v"}}


@pytest.mark.parametrize(("content", "message"), [
    ('{"node_name": "a",}', r"bad\.json: invalid JSON at line 1 column 19"),
    ('["node_name"]', r"bad\.json: expected a JSON object"),
    ({"node_name": 7}, r"bad\.json: node_name: expected a string, got 7"),
    ({"tags": {"a": 1}}, r"bad\.json: tags: expected an object of strings"),
    ({"start_join": "ha"}, r"bad\.json: start_join: expected a list of strings"),
    ({"retry_max_attempts": 1.5}, r"bad\.json: retry_max_attempts: expected an integer"),
    ('{"retry_max_attempts": NaN}', r"bad\.json: retry_max_attempts: expected an integer"),
    ('{"query_size_limit": Infinity}', r"bad\.json: query_size_limit: expected an integer"),
    ({"query_size_limit": 2 ** 63}, r"bad\.json: query_size_limit: expected an integer"),
    ({"replay_on_join": "yes"}, r"bad\.json: replay_on_join: expected a boolean"),
    ({"retry_interval": "soon"}, r"bad\.json: retry_interval: invalid duration 'soon'"),
    ({"node-name": "a"}, r"bad\.json: unknown key 'node-name'"),
    ({"enable_syslog": "yes"}, r"bad\.json: enable_syslog: expected a boolean"),
    ({"statsd_addr": 8125}, r"bad\.json: statsd_addr: expected a string"),
    ("[" * 100_000, r"bad\.json: (JSON nested too deeply|invalid JSON)"),
])
def test_a_bad_file_names_the_file_the_key_and_the_reason(tmp_path: Path, content: Any,
                                                         message: str) -> None:
    bad = _write(tmp_path / "bad.json", content)
    with pytest.raises(ConfigError, match=message):
        sc.read_paths([str(bad)])


def test_unreadable_paths_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.json: cannot read"):
        sc.read_paths([str(tmp_path / "missing.json")])
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"node_name": "caf\xe9"}')
    with pytest.raises(ConfigError, match=r"latin\.json: cannot read: not UTF-8"):
        sc.read_paths([str(latin)])


def test_keys_not_implemented_yet_are_warned_about_and_ignored(tmp_path: Path) -> None:
    f = _write(tmp_path / "a.json", {"node_name": "a", "enable_compression": True,
                                     "disable_name_resolution": False})
    warnings: list[str] = []
    assert sc.read_paths([str(f)], warn=warnings.append) == {"node_name": "a"}
    assert warnings == [f"{f}: not supported yet, ignored: disable_name_resolution, "
                        "enable_compression"]


def test_discover_and_protocol_are_read_from_files(tmp_path: Path) -> None:
    f = _write(tmp_path / "a.json", {"node_name": "a", "discover": "web", "protocol": 4})
    s = _settings(f"-config-file={f}")
    assert s.discover == "web" and s.config.protocol_version == 4
    assert _settings("-node=a").discover is None  # mDNS only when asked for
    assert _settings("-node=a").config.protocol_version == 5
    with pytest.raises(ConfigError, match=r"protocol: expected an integer"):
        sc.read_paths([str(_write(tmp_path / "b.json", {"protocol": "4"}))])


@pytest.mark.parametrize(("given", "speaks"), [
    ("2", 2), ("3", 3), ("4", 4), ("5", 5),
    ("0", 5), ("-1", 5),  # serf: "if b.Protocol > 0", else the default stays
    ("261", 5),  # serf's uint8(n): 261 is 5
])
def test_protocol_is_converted_as_serf_converts_it(given: str, speaks: int) -> None:
    assert _settings("-node=a", f"-protocol={given}").config.protocol_version == speaks


@pytest.mark.parametrize(("given", "message"), [
    ("1", "Error creating Serf: Protocol version '1' too low. Must be in range: [2, 5]"),
    ("6", "Error creating Serf: Protocol version '6' too high. Must be in range: [2, 5]"),
    ("257", "Error creating Serf: Protocol version '1' too low. Must be in range: [2, 5]"),
])
def test_protocol_out_of_range_is_refused_with_serfs_words(given: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _settings("-node=a", f"-protocol={given}")
    assert str(caught.value) == message


def test_a_lower_protocol_says_what_it_turns_off(capsys: pytest.CaptureFixture[str]) -> None:
    _settings("-node=a", "-protocol=4")
    assert capsys.readouterr().out == ""
    _settings("-node=a", "-protocol=3", "-tag", "dc=east")
    out = capsys.readouterr().out
    assert "Protocol 3: queries and key operations are refused" in out
    assert "role" not in out
    _settings("-node=a", "-protocol=2", "-tag", "dc=east", "-role=web")
    out = capsys.readouterr().out
    assert "only the 'role' tag is advertised" in out and "not sent: dc" in out


def test_files_reach_the_agent_and_the_command_line_wins(tmp_path: Path) -> None:
    d = tmp_path / "serf.d"
    d.mkdir()
    _write(d / "00-base.json", {
        "node_name": "from-file", "bind": "127.0.0.1:7000", "rpc_addr": "127.0.0.1:7001",
        "tags": {"role": "web", "dc": "east"}, "event_handlers": ["member-join=join.sh"],
        "start_join": ["seed:7946"], "retry_join": ["other:7946"], "retry_interval": "5s",
        "retry_max_attempts": 3, "replay_on_join": True, "profile": "wan",
        "log_level": "DEBUG", "snapshot_path": str(tmp_path / "snap"),
        "broadcast_timeout": "3s", "query_size_limit": 2048, "tombstone_timeout": "1h",
        "encrypt_key": "cg8StVXbQJ0gPvMd9o7yrg=="})
    _write(d / "10-override.json", {"tags": {"dc": "west"}, "event_handlers": ["user=u.sh"]})
    s = _settings(f"-config-dir={d}", "-node=from-flag", "-tag", "zone=a",
                  "-event-handler=query=q.sh")
    assert s.name == "from-flag"
    assert (s.bind, s.rpc) == (("127.0.0.1", 7000), ("127.0.0.1", 7001))
    assert s.tags == {"role": "web", "dc": "west", "zone": "a"}
    assert [h.event for h in s.handlers] == ["member-join", "user", "query"]
    assert (s.join, s.retry_join, s.retry_interval, s.retry_max) == (
        ["seed:7946"], ["other:7946"], 5.0, 3)
    assert s.replay and s.log_level == "debug" and s.snapshot == str(tmp_path / "snap")
    assert s.config.profile == "wan" and s.config.broadcast_timeout == 3.0
    assert s.config.query_size_limit == 2048 and s.config.tombstone_timeout == 3600.0
    assert s.keyring is not None


def test_disable_coordinates_reaches_the_config(tmp_path: Path) -> None:
    assert not _settings("-node=a").config.disable_coordinates
    f = _write(tmp_path / "c.json", {"disable_coordinates": True})
    warnings: list[str] = []
    assert sc.read_paths([str(f)], warn=warnings.append) == {"disable_coordinates": True}
    assert warnings == []
    assert _settings(f"-config-file={f}", "-node=a").config.disable_coordinates
    with pytest.raises(ConfigError, match="disable_coordinates: expected a boolean"):
        sc.read_paths([str(_write(tmp_path / "d.json", {"disable_coordinates": "yes"}))])


def test_values_the_agent_refuses_are_errors_after_the_merge(tmp_path: Path) -> None:
    for content, message in (({"profile": "moon"}, "Unknown profile: moon"),
                             ({"log_level": "LOUD"}, "Invalid log level: LOUD"),
                             ({"query_size_limit": -1}, "query_size_limit must be > 0")):
        f = _write(tmp_path / "x.json", content)
        with pytest.raises(ConfigError, match=message):
            _settings(f"-config-file={f}", "-node=a")


@pytest.mark.parametrize("bad", ["novalue", "=web", ""])
def test_a_malformed_tag_flag_is_a_config_error_naming_it(bad: str) -> None:
    from swimlib.agent.command import parse_tags

    assert parse_tags(["role=web", "k=a=b", "role=db"]) == {"role": "db", "k": "a=b"}
    with pytest.raises(ConfigError, match=f"invalid tag '{bad}': expected KEY=VALUE"):
        parse_tags(["role=web", bad])
