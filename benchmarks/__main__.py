"""``python -m benchmarks SUITE --json PATH [suite options]``: run one suite, save its result.

The suite gets every argument except ``--json PATH``, prints its table, and
returns a dict that is written to PATH (parent directories created).
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from pathlib import Path

import benchmarks


def _suites() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__)
                  if not m.name.startswith("_") and _is_suite(m.name))


def _is_suite(name: str) -> bool:
    try:
        return callable(getattr(importlib.import_module(f"benchmarks.{name}"), "run", None))
    except ImportError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("suite", help="suite module name, e.g. sim_scale or codec")
    parser.add_argument("--json", metavar="PATH", help="write the suite's result here")
    args, rest = parser.parse_known_args(argv)
    try:
        module = importlib.import_module(f"benchmarks.{args.suite}")
    except ModuleNotFoundError:
        parser.error(f"unknown suite {args.suite!r}; available: {', '.join(_suites())}")
    run = getattr(module, "run", None)
    if not callable(run):
        parser.error(f"benchmarks.{args.suite} has no run(argv) function")
    result = run(rest)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
