"""``serf agent``'s JSON configuration files, read and merged as serf does.

``-config-file PATH`` and ``-config-dir DIR`` may each be given several
times; they are read in the order given, a directory's ``*.json`` files
(not its subdirectories) in lexical order. Each file is one JSON object of
serf's keys (agent/config.go). Later files win, key by key, with serf's
``MergeConfig`` rules: a string, number or duration replaces an earlier one
only when set (non-empty, non-zero), a boolean only turns a switch on,
``tags`` merge, and ``start_join``, ``retry_join`` and ``event_handlers``
append. The command line is merged last, by the same rules.

A file serf would refuse is refused here, with the file, the key and the
reason: JSON that does not parse, a value of the wrong type, a bad duration,
or a key serf does not know. Keys serf knows that this agent does not
implement yet are reported as a warning and ignored, so a serf
configuration directory starts unchanged.
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from swimlib.errors import ConfigError
from swimlib.rpc.goflags import parse_go_duration


class Kind(enum.Enum):
    STRING = "a string"
    BOOL = "a boolean"
    INT = "an integer"
    DURATION = "a duration string"
    STRINGS = "a list of strings"
    STRING_MAP = "an object of strings"


#: serf's keys this agent implements, and their kinds.
KEYS: Final[dict[str, Kind]] = {
    "node_name": Kind.STRING,
    "role": Kind.STRING,
    "tags": Kind.STRING_MAP,
    "tags_file": Kind.STRING,
    "bind": Kind.STRING,
    "interface": Kind.STRING,
    "advertise": Kind.STRING,
    "encrypt_key": Kind.STRING,
    "keyring_file": Kind.STRING,
    "log_level": Kind.STRING,
    "enable_syslog": Kind.BOOL,
    "syslog_facility": Kind.STRING,
    "rpc_addr": Kind.STRING,
    "rpc_auth": Kind.STRING,
    "replay_on_join": Kind.BOOL,
    "query_response_size_limit": Kind.INT,
    "query_size_limit": Kind.INT,
    "start_join": Kind.STRINGS,
    "event_handlers": Kind.STRINGS,
    "profile": Kind.STRING,
    "snapshot_path": Kind.STRING,
    "rejoin_after_leave": Kind.BOOL,
    "reconnect_interval": Kind.DURATION,
    "reconnect_timeout": Kind.DURATION,
    "tombstone_timeout": Kind.DURATION,
    "retry_join": Kind.STRINGS,
    "retry_max_attempts": Kind.INT,
    "retry_interval": Kind.DURATION,
    "broadcast_timeout": Kind.DURATION,
    "disable_coordinates": Kind.BOOL,
    "leave_on_terminate": Kind.BOOL,
    "skip_leave_on_interrupt": Kind.BOOL,
    "statsd_addr": Kind.STRING,
    "statsite_addr": Kind.STRING,
    # swimlib's own (serf refuses a file that has them): --metrics-addr, -label.
    "metrics_addr": Kind.STRING,
    "label": Kind.STRING,
}

#: serf's keys not implemented here yet: accepted (type-checked), warned about, ignored.
NOT_YET: Final[dict[str, Kind]] = {
    "protocol": Kind.INT,
    "discover": Kind.STRING,
    "disable_name_resolution": Kind.BOOL,
    "enable_compression": Kind.BOOL,  # serf lets the command line decide it anyway
}

_APPENDED: Final = frozenset({"start_join", "retry_join", "event_handlers"})

#: A configuration: serf's key -> value (durations in seconds). Absent = not set.
FileConfig = dict[str, Any]


def _check(path: str, key: str, kind: Kind, value: Any) -> Any:
    """The value as this module keeps it, or a ConfigError naming file, key and reason."""
    def wrong() -> ConfigError:
        shown = json.dumps(value)
        return ConfigError(f"{path}: {key}: expected {kind.value}, got {shown[:60]}")

    if kind is Kind.STRING:
        if not isinstance(value, str):
            raise wrong()
        return value
    if kind is Kind.BOOL:
        if not isinstance(value, bool):
            raise wrong()
        return value
    if kind is Kind.INT:
        # The range first: JSON's NaN and Infinity parse as floats, and int() of them raises.
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not -(1 << 63) <= value < (1 << 63) or value != int(value):
            raise wrong()
        return int(value)
    if kind is Kind.DURATION:
        if not isinstance(value, str):
            raise wrong()
        try:
            return parse_go_duration(value) / 1e9
        except ValueError:
            raise ConfigError(f"{path}: {key}: invalid duration {value!r}") from None
    if kind is Kind.STRINGS:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise wrong()
        return list(value)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise wrong()
    return dict(value)


def decode(path: str, text: str) -> tuple[FileConfig, list[str]]:
    """One file's configuration, and the keys in it that are not implemented yet."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: "
                          f"{exc.msg}") from None
    except RecursionError:
        raise ConfigError(f"{path}: JSON nested too deeply") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object of serf's configuration keys")
    config: FileConfig = {}
    ignored: list[str] = []
    for key, value in raw.items():
        if key in KEYS:
            config[key] = _check(path, key, KEYS[key], value)
        elif key in NOT_YET:
            _check(path, key, NOT_YET[key], value)
            ignored.append(key)
        else:
            raise ConfigError(f"{path}: unknown key {key!r} (not a serf agent setting)")
    return config, ignored


def merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> FileConfig:
    """serf's ``MergeConfig(base, top)``: ``top`` wins where it is set."""
    result = dict(base)
    for key, value in top.items():
        if key in _APPENDED:
            result[key] = [*result.get(key, []), *value]
        elif key == "tags":
            result[key] = {**result.get(key, {}), **value}
        elif value:  # "", 0, False and 0 s leave the earlier value
            result[key] = value
    return result


def _files(path: str) -> list[Path]:
    try:
        if not Path(path).is_dir():
            return [Path(path)]
        return sorted((entry for entry in Path(path).iterdir()
                       if entry.name.endswith(".json") and not entry.is_dir()),
                      key=lambda entry: entry.name)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None


def read_paths(paths: Iterable[str], warn: Any = None) -> FileConfig:
    """Every file and directory of ``paths``, merged in order (``warn(text)`` for
    keys not implemented yet)."""
    result: FileConfig = {}
    for path in paths:
        for file in _files(path):
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
                raise ConfigError(f"{file}: cannot read: {reason or exc}") from None
            config, ignored = decode(os.fspath(file), text)
            if ignored and warn is not None:
                warn(f"{file}: not supported yet, ignored: {', '.join(sorted(ignored))}")
            result = merge(result, config)
    return result
