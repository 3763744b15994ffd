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

from swimlib import __version__
from swimlib.agent import command as agent_command
from swimlib.rpc import commands as rpc_commands
from swimlib.rpc.goflags import normalize_bool_flags


def _keygen(_args: argparse.Namespace) -> int:
    """32 random bytes, base64: an AES-256 key for ``--encrypt`` (as ``serf keygen``)."""
    print(base64.b64encode(os.urandom(32)).decode())
    return 0


def _version(_args: argparse.Namespace) -> int:
    print(f"swimlib v{__version__}")
    print("Agent Protocol: 5 (Understands back to: 2)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swimlib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    sub.add_parser("keygen", help="generate a new encryption key").set_defaults(func=_keygen)
    sub.add_parser("version", help="print the version").set_defaults(func=_version)
    agent_command.add_parser(sub)
    rpc_commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    try:
        raw = normalize_bool_flags(raw, rpc_commands.BOOL_FLAGS)
    except ValueError as exc:
        parser.error(str(exc))
    args = parser.parse_args(raw)
    return rpc_commands.run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
