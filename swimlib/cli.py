"""The ``swimlib`` command line.

``agent`` runs an agent (:mod:`swimlib.agent.command`); ``keygen`` and
``version`` work offline; ``members``, ``join``, ``leave``,
``force-leave``, ``event``, ``query``, ``tags``, ``keys``, ``monitor``, ``info``
and ``reachability`` talk to an agent over Serf's RPC protocol and print what
``serf`` prints (see :mod:`swimlib.rpc.commands`).
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from collections.abc import Sequence
from typing import Any

from swimlib import __version__

_DESCRIPTION = "The swimlib command line: a Serf-compatible agent and its RPC client."


def _keygen(_args: argparse.Namespace) -> int:
    """32 random bytes, base64: an AES-256 key for ``--encrypt`` (as ``serf keygen``)."""
    print(base64.b64encode(os.urandom(32)).decode())
    return 0


def _version(_args: argparse.Namespace) -> int:
    print(f"swimlib v{__version__}")
    print("Agent Protocol: 5 (Understands back to: 2)")
    return 0


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``, without importing shutil."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class HelpFormatter(argparse.HelpFormatter):
    """argparse's own, told the width: left to itself it imports shutil (and
    with it bz2 and lzma) on every ``add_argument``, 2 ms of each agent's start."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         width if width is not None else _terminal_columns() - 2)


class ArgumentParser(argparse.ArgumentParser):
    """Every parser of the command line: :class:`HelpFormatter` unless told otherwise."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def _parser() -> tuple[argparse.ArgumentParser, Any]:
    parser = ArgumentParser(prog="swimlib", description=_DESCRIPTION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    sub.required = True
    return parser, sub


def build_parser() -> argparse.ArgumentParser:
    from swimlib.agent import command as agent_command
    from swimlib.rpc import commands as rpc_commands

    parser, sub = _parser()
    sub.add_parser("keygen", help="generate a new encryption key").set_defaults(func=_keygen)
    sub.add_parser("version", help="print the version").set_defaults(func=_version)
    agent_command.add_parser(sub)
    rpc_commands.register(sub)
    return parser


def _run_agent(raw: list[str]) -> int:
    """``swimlib agent``: load only what a long-lived agent runs.

    The RPC client commands and their output formatting would cost every
    agent process about a megabyte of memory it never uses. The cyclic
    garbage collector is off until the agent is up (``command``): start-up
    builds a hundred thousand objects that all survive, and collecting
    them on the way costs about 3 % of the start-up CPU for nothing.
    """
    import gc

    gc.disable()
    from swimlib.agent.deferred_imports import defer_unused_modules

    defer_unused_modules()
    args = parse_agent_args(raw)
    return int(args.func(args))


def parse_agent_args(raw: Sequence[str]) -> argparse.Namespace:
    """``agent ...`` as the agent reads it: serf's Go spellings too (``-node=a``,
    ``-replay=false``); a bad flag exits 2 with argparse's message."""
    from swimlib.agent import command as agent_command
    from swimlib.rpc.goflags import normalize_bool_flags

    parser, sub = _parser()
    agent_command.add_parser(sub)
    try:
        argv = normalize_bool_flags(raw, {"agent": agent_command.BOOL_FLAGS})
    except ValueError as exc:
        parser.error(str(exc))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == ["agent"]:
        return _run_agent(raw)
    from swimlib.rpc import commands as rpc_commands
    from swimlib.rpc.goflags import normalize_bool_flags

    parser = build_parser()
    try:
        raw = normalize_bool_flags(raw, rpc_commands.BOOL_FLAGS)
    except ValueError as exc:
        parser.error(str(exc))
    args = parser.parse_args(raw)
    return rpc_commands.run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
