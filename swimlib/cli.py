"""The ``swimlib`` command line.

Subcommands grow with the agent (issue 3: ``agent``, ``members``, ``join`` ...);
for now the ones that need no running agent.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from collections.abc import Sequence

from swimlib import __version__


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
