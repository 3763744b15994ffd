"""``lbadapter run | render | status``: command-line entry points.

Every setting is validated before anything starts; problems print one
``lbadapter: error: ...`` line and exit 1 (usage errors exit 2, argparse's
convention), never a traceback.

The async parts run under anyio on the event loop :mod:`swimlib.backend`
chooses, as ``swimlib agent`` does: ``SWIMLIB_BACKEND`` (``asyncio`` or
``trio``) when set, else its default.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, TypeVarTuple

from lbadapter.config import Settings, SettingsError, load_settings
from lbadapter.desired import desired_servers, members_from_json
from lbadapter.haproxy import CLIError, HAProxyNotFound, RuntimeClient, find_haproxy
from lbadapter.render import RenderError, check_config, render_config
from swimlib import backend
from swimlib.errors import ConfigError
from swimlib.exception_groups import leaves

__all__ = ["async_backend", "build_parser", "main"]

log = logging.getLogger("lbadapter")

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


#: ``--backend`` of the running command (None: $SWIMLIB_BACKEND or the default).
_backend_flag: str | None = None


def async_backend() -> str:
    """The event loop the commands run on (see :func:`swimlib.backend.choose_backend`)."""
    return backend.choose_backend(_backend_flag)


def _run(func: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
    """Run ``func`` on :func:`async_backend`'s event loop."""
    return backend.run(func, *args, backend=async_backend())


def _backend_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=backend.BACKENDS, default=None,
                   help=f"event loop (default: ${backend.ENV_VAR}, else "
                        f"{backend.DEFAULT_BACKEND})")


def _settings_flags(p: argparse.ArgumentParser, agent: bool) -> None:
    """Settings flags; defaults are None so ``--config`` values and defaults show through."""
    if agent:
        p.add_argument("--join", action="append", metavar="ADDR",
                       help="join the cluster through ADDR (retried until it works)")
        p.add_argument("--node", help="node name of the embedded agent (default: HOSTNAME-lb)")
        p.add_argument("--bind", metavar="HOST:PORT", help="gossip address (default 0.0.0.0:7946)")
        p.add_argument("--advertise", metavar="HOST:PORT", help="address peers use to reach us")
        p.add_argument("--rpc-addr", metavar="HOST:PORT",
                       help="serve Serf's RPC here (for `serf members`); off by default")
        p.add_argument("--profile", choices=("lan", "wan", "local"), help="gossip timing")
        p.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
        p.add_argument("--vip", metavar="ADDR/PREFIX",
                       help="floating address held by keepalived on the healthy balancer")
        p.add_argument("--vip-interface", metavar="IFACE",
                       help="interface carrying --vip (and VRRP adverts)")
        p.add_argument("--metrics-addr", metavar="HOST:PORT",
                       help="serve Prometheus metrics on http://HOST:PORT/metrics")
        p.add_argument("--peer-port", metavar="PORT",
                       help="HAProxy peers port for --sticky source (default 7947; "
                            "announced to the other balancers as tag lb-peer-port)")
    p.add_argument("--backend-tag", metavar="KEY=VALUE",
                   help="members with this tag are backends (default role=backend)")
    p.add_argument("--backend-port", metavar="PORT",
                   help="server port for members without a 'port' tag")
    p.add_argument("--listen", metavar="HOST:PORT", help="frontend (default 0.0.0.0:80)")
    p.add_argument("--stats", metavar="HOST:PORT", help="stats page (default 0.0.0.0:1936)")
    p.add_argument("--sticky", choices=("cookie", "source", "none"),
                   help="session stickiness: a cookie naming the server, the client address "
                        "(stick table shared by the balancers), or none (default)")
    p.add_argument("--template", metavar="PATH.j2", help="Jinja2 config template")
    p.add_argument("--config", metavar="PATH.toml", help="settings file (flags win)")
    p.add_argument("--haproxy", metavar="PATH", help="haproxy binary")
    p.add_argument("--state-dir", metavar="DIR",
                   help="config, sockets and state (default ./lbadapter-state)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lbadapter",
                                     description="Keep HAProxy in step with cluster membership.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the embedded agent and HAProxy")
    _settings_flags(run, agent=True)
    _backend_option(run)
    render = sub.add_parser("render", help="print the config that would be written (dry run)")
    _settings_flags(render, agent=False)
    render.add_argument("--members-json", metavar="FILE", required=True,
                        help="`serf members -format=json` output ('-' for stdin)")
    render.add_argument("--check", action="store_true",
                        help="also validate the result with haproxy -c")
    _backend_option(render)
    status = sub.add_parser("status", help="desired members and HAProxy servers side by side")
    status.add_argument("--state-dir", metavar="DIR")
    status.add_argument("--config", metavar="PATH.toml")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    _backend_option(status)
    return parser


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s"))
    for name in ("lbadapter", "swimlib"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


def _error(message: str) -> int:
    print(f"lbadapter: error: {message}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    global _backend_flag
    args = build_parser().parse_args(argv)
    _backend_flag = args.backend
    try:
        async_backend()
        settings = load_settings(args)
    except (ConfigError, SettingsError) as exc:
        return _error(str(exc))
    if args.command == "run":
        return _cmd_run(settings)
    if args.command == "render":
        return _cmd_render(settings, args.members_json, args.check)
    return _cmd_status(settings, args.json)


def _cmd_run(settings: Settings) -> int:
    from lbadapter.adapter import AdapterError, run_adapter
    from swimlib import SwimError

    try:
        find_haproxy(settings.haproxy)
    except HAProxyNotFound as exc:
        return _error(str(exc))
    if settings.vip is not None:
        from lbadapter.keepalived import KeepalivedError, preflight

        try:
            preflight(settings)
        except KeepalivedError as exc:
            return _error(str(exc))
    if settings.metrics_addr is not None:
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            return _error("--metrics-addr needs prometheus_client "
                          "(pip install 'swimlib[metrics]')")
    _setup_logging(settings.log_level)
    log.info("event loop: %s (%s=asyncio|trio chooses)", async_backend(), backend.ENV_VAR)
    try:
        _run(run_adapter, settings)
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:  # task groups wrap errors in (nested) exception groups
        from lbadapter.keepalived import KeepalivedError

        expected = (HAProxyNotFound, AdapterError, OSError, SwimError, KeepalivedError)
        errors = leaves(exc)
        if all(isinstance(e, expected) for e in errors):
            return _error("; ".join(str(e) for e in errors))
        raise
    return 0


def _read_members(path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        return json.loads(text)
    except OSError as exc:
        raise ValueError(f"--members-json {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"--members-json {path}: invalid JSON: {exc}") from None
    except RecursionError:
        raise ValueError(f"--members-json {path}: JSON nested too deeply") from None


def _cmd_render(settings: Settings, members_json: str, check: bool) -> int:
    try:
        members = members_from_json(_read_members(members_json))
    except ValueError as exc:
        return _error(str(exc))
    desired = desired_servers(members, settings.backend_tag, settings.backend_port)
    try:
        text = render_config(settings, desired.values())
    except RenderError as exc:
        return _error(str(exc))
    sys.stdout.write(text)
    if check:
        return _run(_check_rendered, settings, text)
    return 0


async def _check_rendered(settings: Settings, text: str) -> int:
    import tempfile

    try:
        haproxy = find_haproxy(settings.haproxy)
    except HAProxyNotFound as exc:
        return _error(str(exc))
    with tempfile.NamedTemporaryFile("w", suffix=".cfg") as f:
        f.write(text)
        f.flush()
        result = await check_config(haproxy, Path(f.name))
    for line in result.problems if not result.ok else []:
        print(line, file=sys.stderr)
    return 0 if result.ok else _error("haproxy -c rejected the rendered config")


def _cmd_status(settings: Settings, as_json: bool) -> int:
    state: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):  # no state file: show HAProxy's side
        state = json.loads(settings.state_file.read_text())
    servers: dict[str, dict[str, str]] = {}
    haproxy_error = None
    try:
        servers = _run(_haproxy_servers, settings, state.get("backend", settings.backend_name))
    except CLIError as exc:
        haproxy_error = str(exc)
    if not state and haproxy_error:
        return _error(f"nothing at {settings.state_dir}: no state.json and {haproxy_error}")
    desired = {d["name"]: d for d in state.get("desired", [])}
    rows = []
    for name in sorted(set(desired) | set(servers)):
        d, s = desired.get(name, {}), servers.get(name, {})
        rows.append({"server": name, "member": d.get("member", "-"),
                     "desired": (f"{d['addr']}:{d['port']}" if d else "-"),
                     "want": d.get("want", "-"), "haproxy": s.get("address", "-"),
                     "admin": s.get("admin", "-"), "status": s.get("status", "-"),
                     "check": s.get("check", "-")})
    if as_json:
        print(json.dumps({"servers": rows, "haproxy": state.get("haproxy"),
                          "haproxy_error": haproxy_error,
                          "config_error": state.get("config_error"),
                          "last_pass": state.get("last_pass"),
                          "internal_errors": state.get("internal_errors") or {},
                          "member_problems": state.get("member_problems") or {}}, indent=1))
        return 0
    _print_table(rows)
    hap = state.get("haproxy") or {}
    print(f"\nhaproxy: master {hap.get('master_pid')} workers {hap.get('workers')} "
          f"starts {hap.get('starts')} reloads {hap.get('reloads')}"
          + (f"\nhaproxy not answering: {haproxy_error}" if haproxy_error else ""))
    if state.get("config_error"):
        print(f"config error: {state['config_error']}")
    for key, title in (("internal_errors", "internal errors (retried)"),
                       ("member_problems", "members with problems")):
        if state.get(key):
            print(f"{title}: {_counts(state[key])}")
    return 0


def _counts(counts: Any) -> str:
    """``{"reconcile": 3}`` -> ``reconcile=3`` (one line whatever the file holds)."""
    if not isinstance(counts, dict):
        return _cell(counts)
    return ", ".join(f"{_cell(k)}={_cell(v)}" for k, v in sorted(counts.items(), key=str))


def _cell(value: Any) -> str:
    """A value from state.json or HAProxy, safe to print in one table cell.

    Member data is escaped where it is produced, but the state file is only
    a file: a line break or terminal escape in it must not reach the terminal.
    """
    text = str(value)
    return text if text.isprintable() else repr(text)[1:-1]


async def _haproxy_servers(settings: Settings, backend: str) -> dict[str, dict[str, str]]:
    client = RuntimeClient(settings.admin_socket)
    out: dict[str, dict[str, str]] = {}
    for s in await client.show_servers_state(backend):
        out[s.name] = {"address": f"{s.addr}:{s.port}", "admin": s.admin_name}
    for row in await client.show_stat(backend):
        if row.get("svname") in out:
            out[row["svname"]].update(status=row.get("status", "-"),
                                      check=row.get("check_status") or "-")
    return out


def _print_table(rows: list[dict[str, str]]) -> None:
    cols = ["server", "member", "desired", "want", "haproxy", "admin", "status", "check"]
    rows = [{c: _cell(r[c]) for c in cols} for r in rows]
    widths = {c: max([len(c), *(len(r[c]) for r in rows)]) for c in cols}
    print("  ".join(c.upper().ljust(widths[c]) for c in cols).rstrip())
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in cols).rstrip())
    if not rows:
        print("(no servers)")


if __name__ == "__main__":
    sys.exit(main())
