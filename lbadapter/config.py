"""lbadapter settings: one frozen value built from defaults, a TOML file and flags.

Precedence: command-line flag > ``--config`` TOML key > default. TOML keys
are the flag names (dashes or underscores) plus a few tuning keys with no
flag. Everything is validated here, before anything binds or starts, so a
bad value is a clear :class:`SettingsError` instead of a failure later.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lbadapter import vrrp
from swimlib.agent.addresses import split_host_port
from swimlib.errors import ConfigError
from swimlib.records import field, record

__all__ = ["DEFAULT_SERVER_OPTIONS", "Address", "Settings", "SettingsError", "load_settings",
           "settings_from_mapping"]

Address = tuple[str, int]

#: Options of every managed server, in the file and in ``add server`` alike
#: (dynamic servers do not inherit ``default-server``; haproxy.md section 3).
DEFAULT_SERVER_OPTIONS = ("check inter 1s fall 2 rise 1 observe layer4 error-limit 10 "
                          "on-error mark-down pool-max-conn -1 pool-purge-delay 5s")

#: HAProxy refuses dynamic servers in backends using a static algorithm.
_STATIC_BALANCE = {"static-rr"}
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")
#: A cookie name (an RFC 6265 token, kept to the plain characters).
_COOKIE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: The dynamic-cookie key is a config word and a CLI word: no spaces, quotes, '#' or ';'.
_COOKIE_KEY_RE = re.compile(r"^[A-Za-z0-9_.:+/=@-]{1,128}$")
#: HAProxy's time format: a number and an optional unit.
_DURATION_RE = re.compile(r"^[0-9]{1,9}(us|ms|s|m|h|d)?$")
STICKY_MODES = ("cookie", "source", "none")
_LOG_LEVELS = ("debug", "info", "warning", "error")


class SettingsError(ValueError):
    """A setting is missing, malformed or inconsistent."""


@record
class Settings:
    """Everything ``lbadapter run`` needs; durations in seconds."""

    #: Embedded agent: node name, gossip bind/advertise, optional Serf RPC address.
    node: str = field(factory=lambda: f"{socket.gethostname()}-lb")
    bind: Address = ("0.0.0.0", 7946)
    advertise: Address | None = None
    rpc_addr: Address | None = None
    join: tuple[str, ...] = ()
    profile: str = "lan"
    #: Members carrying this tag (key, value) are backends.
    backend_tag: tuple[str, str] = ("role", "backend")
    #: Server port when a member has no ``port`` tag (None: such members are skipped).
    backend_port: int | None = None
    listen: Address = ("0.0.0.0", 80)
    stats: Address = ("0.0.0.0", 1936)
    #: Jinja2 template (None: the packaged default).
    template: Path | None = None
    #: HAProxy binary (None: ``shutil.which("haproxy")`` or /usr/sbin/haproxy).
    haproxy: str | None = None
    state_dir: Path = Path("lbadapter-state")
    log_level: str = "info"
    #: Tuning (TOML only).
    backend_name: str = "app"
    balance: str = "roundrobin"
    server_options: str = DEFAULT_SERVER_OPTIONS
    reconcile_interval: float = 5.0
    #: A leaving member's server drains this long at most (less if its sessions end).
    drain_grace: float = 10.0
    #: Reload coalescing: quiet period, and the longest a requested reload waits.
    reload_min_wait: float = 0.2
    reload_max_wait: float = 2.0
    hard_stop_after: str = "30s"
    #: Floating address (lbadapter.vrrp, lbadapter.keepalived): ``--vip ADDR/PREFIX`` held
    #: on ``--vip-interface`` by keepalived; the rest TOML only (None: derived from the VIP).
    vip: ipaddress.IPv4Interface | None = None
    vip_interface: str | None = None
    vip_router_id: int | None = None
    vip_priority: int = 100
    vip_advert_interval: float = 0.5
    vip_unicast_peers: tuple[str, ...] = ()
    #: keepalived binary (None: ``shutil.which("keepalived")`` or /usr/sbin/keepalived).
    keepalived: str | None = None
    #: Session stickiness: ``cookie`` (HAProxy inserts a cookie naming the server),
    #: ``source`` (a stick table on the client address, replicated between balancers
    #: through HAProxy's ``peers``) or ``none``.
    sticky: str = "none"
    #: The cookie's name, and the key of HAProxy's dynamic cookies: every balancer must
    #: use the same key, or a cookie set by one means nothing to another.
    cookie_name: str = "SRVID"
    cookie_key: str = "lbadapter"
    #: How long a source-stickiness entry outlives the client's last request.
    stick_expire: str = "30m"
    #: Port HAProxy's peers protocol listens on (stick-table replication; the other
    #: balancers learn it from the tag ``lb-peer-port``).
    peer_port: int = 7947
    #: Prometheus metrics (``/metrics``); None: off.
    metrics_addr: Address | None = None

    @property
    def config_path(self) -> Path:
        return self.state_dir / "haproxy.cfg"

    @property
    def admin_socket(self) -> Path:
        return self.state_dir / "admin.sock"

    @property
    def master_socket(self) -> Path:
        return self.state_dir / "master.sock"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"


# ---------------------------------------------------------------- value parsers

def _address(key: str, value: Any, default_port: int | None = None) -> Address:
    if not isinstance(value, str):
        raise SettingsError(f"{key}: expected \"HOST:PORT\", got {value!r}")
    try:
        host, port = split_host_port(value, default_port if default_port is not None else -1)
    except ConfigError as exc:
        raise SettingsError(f"{key}: {exc}") from None
    if port < 0:
        raise SettingsError(f"{key}: missing port in {value!r} (expected HOST:PORT)")
    return (host or "0.0.0.0", port)


def _tag(key: str, value: Any) -> tuple[str, str]:
    if not isinstance(value, str) or "=" not in value or value.startswith("="):
        raise SettingsError(f"{key}: expected KEY=VALUE, got {value!r}")
    k, _, v = value.partition("=")
    return (k, v)


def _port(key: str, value: Any) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{key}: expected a port number, got {value!r}") from None
    if isinstance(value, bool) or not 0 < port < 65536:
        raise SettingsError(f"{key}: port out of range: {value!r}")
    return port


def _seconds(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SettingsError(f"{key}: expected seconds, got {value!r}")
    try:
        seconds = float(value)
    except ValueError:
        raise SettingsError(f"{key}: expected seconds, got {value!r}") from None
    if not 0 <= seconds < 86400:
        raise SettingsError(f"{key}: out of range: {value!r}")
    return seconds


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SettingsError(f"{key}: expected a non-empty string, got {value!r}")
    return value.strip()


def _join(key: str, value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise SettingsError(f"{key}: expected an address or a list of addresses")
    return tuple(items)


def _server_options(key: str, value: Any) -> str:
    text = _text(key, value)
    # The string goes into `add server` on the CLI, where ';' chains commands.
    if any(c in text for c in ";#\n\r"):
        raise SettingsError(f"{key}: must not contain ';', '#' or newlines: {text!r}")
    return text


def _choice(choices: tuple[str, ...]) -> Any:
    def parse(key: str, value: Any) -> str:
        text = _text(key, value).lower()
        if text not in choices:
            raise SettingsError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")
        return text
    return parse


def _backend_name(key: str, value: Any) -> str:
    text = _text(key, value)
    if not _NAME_RE.match(text):
        raise SettingsError(f"{key}: not a valid HAProxy name: {text!r}")
    return text


def _balance(key: str, value: Any) -> str:
    text = _text(key, value)
    if text.split()[0] in _STATIC_BALANCE or any(c in text for c in ";#\n"):
        raise SettingsError(f"{key}: {text!r} is static or malformed; HAProxy refuses "
                            "dynamic servers with static algorithms (use roundrobin, leastconn)")
    return text


def _vip_setting(parse: Any) -> Any:
    def parsed(key: str, value: Any) -> Any:
        try:
            return parse(key, value)
        except vrrp.VipError as exc:
            raise SettingsError(str(exc)) from None
    return parsed
def _pattern(regex: re.Pattern[str], what: str) -> Any:
    def parse(key: str, value: Any) -> str:
        text = _text(key, value)
        if not regex.match(text):
            raise SettingsError(f"{key}: not {what}: {text!r}")
        return text
    return parse


_PARSERS: dict[str, Any] = {
    "node": _text,
    "bind": lambda k, v: _address(k, v, 7946),
    "advertise": lambda k, v: _address(k, v, 7946),
    "rpc_addr": lambda k, v: _address(k, v, 7373),
    "join": _join,
    "profile": _choice(("lan", "wan", "local")),
    "backend_tag": _tag,
    "backend_port": _port,
    "listen": lambda k, v: _address(k, v, 80),
    "stats": lambda k, v: _address(k, v, 1936),
    "template": lambda k, v: Path(_text(k, v)),
    "haproxy": _text,
    "state_dir": lambda k, v: Path(_text(k, v)),
    "log_level": _choice(_LOG_LEVELS),
    "backend_name": _backend_name,
    "balance": _balance,
    "server_options": _server_options,
    "reconcile_interval": _seconds,
    "drain_grace": _seconds,
    "reload_min_wait": _seconds,
    "reload_max_wait": _seconds,
    "vip": _vip_setting(vrrp.parse_vip),
    "vip_interface": _vip_setting(vrrp.parse_interface),
    "vip_router_id": _vip_setting(vrrp.parse_router_id),
    "vip_priority": _vip_setting(vrrp.parse_priority),
    "vip_advert_interval": _vip_setting(vrrp.parse_advert_interval),
    "vip_unicast_peers": _vip_setting(vrrp.parse_peers),
    "keepalived": _text,
    "hard_stop_after": _pattern(_DURATION_RE, "a HAProxy duration (30s, 5m...)"),
    "sticky": _choice(STICKY_MODES),
    "cookie_name": _pattern(_COOKIE_NAME_RE, "a cookie name (letters, digits, '-', '_')"),
    "cookie_key": _pattern(_COOKIE_KEY_RE, "a key of letters, digits and _.:+/=@-"),
    "stick_expire": _pattern(_DURATION_RE, "a HAProxy duration (30m, 1h...)"),
    "peer_port": _port,
    "metrics_addr": lambda k, v: _address(k, v),
}


def _parse(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for raw_key, value in values.items():
        key = raw_key.replace("-", "_")
        if key not in _PARSERS:
            raise SettingsError(f"{where}: unknown key {raw_key!r}; known keys: "
                                f"{', '.join(sorted(_PARSERS))}")
        parsed[key] = _PARSERS[key](f"{where}: {raw_key}" if where else f"--{raw_key}", value)
    return parsed


def settings_from_mapping(values: Mapping[str, Any], where: str = "settings") -> Settings:
    """Build :class:`Settings` from raw values (TOML keys; dashes or underscores)."""
    settings = Settings(**_parse(values, where))
    _check(settings)
    return settings


def _check(s: Settings) -> None:
    """Checks spanning several settings."""
    if s.reload_min_wait > s.reload_max_wait:
        raise SettingsError("reload_min_wait must not exceed reload_max_wait")
    if any(c in str(s.state_dir) for c in ", \t\n#;"):
        raise SettingsError(f"state_dir: {str(s.state_dir)!r} must not contain commas, "
                            "spaces, '#' or ';' (it goes into HAProxy's config and -S flag)")
    if len(str(s.master_socket.absolute()).encode()) > 100:
        raise SettingsError(f"state_dir: {s.state_dir.absolute()} is too long a path for "
                            "HAProxy's unix sockets (keep it under ~85 characters)")
    if s.reconcile_interval < 0.1:
        raise SettingsError("reconcile_interval: at least 0.1 s")
    try:
        vrrp.check_vip(s.vip, s.vip_interface, s.listen, s.vip_unicast_peers,
                       str(s.state_dir.absolute()))
    except vrrp.VipError as exc:
        raise SettingsError(str(exc)) from None
    if s.sticky == "source" and s.peer_port in (s.listen[1], s.stats[1]):
        raise SettingsError(f"peer_port: {s.peer_port} is already the frontend's or the "
                            "stats page's port")


def read_toml(path: Path) -> dict[str, Any]:
    """The settings table of ``path`` (top level, or an ``[lbadapter]`` table)."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise SettingsError(f"--config {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"--config {path}: invalid TOML: {exc}") from None
    table = data.get("lbadapter", data)
    if not isinstance(table, dict):
        raise SettingsError(f"--config {path}: [lbadapter] must be a table")
    return table


#: argparse destinations that are settings (None means "not given").
FLAG_KEYS = ("node", "bind", "advertise", "rpc_addr", "join", "backend_tag", "backend_port",
             "listen", "stats", "template", "haproxy", "state_dir", "log_level", "profile",
             "vip", "vip_interface", "sticky", "peer_port", "metrics_addr")


def load_settings(args: argparse.Namespace) -> Settings:
    """Merge ``--config`` (if any) and the flags given on the command line."""
    values: dict[str, Any] = {}
    config = getattr(args, "config", None)
    if config:
        values.update(_parse(read_toml(Path(config)), f"--config {config}"))
    flags = {key.replace("_", "-"): getattr(args, key, None) for key in FLAG_KEYS}
    values.update(_parse({k: v for k, v in flags.items() if v not in (None, [])}, ""))
    settings = Settings(**values)
    _check(settings)
    return settings
