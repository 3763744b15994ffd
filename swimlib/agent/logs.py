"""How the agent writes what it says: serf's text lines, or JSON for log shippers.

Text (the default) is serf's layout, so scripts written against serf's output
keep working: ``==> `` lines for the operator and
``    2026/11/25 01:10:35 [INFO] serf: EventMemberJoin: n2 127.0.0.1`` records.

With ``--log-json`` every line on stdout is one JSON object in the shape
HashiCorp's tools use (``@timestamp`` in UTC, ``@level``, ``@module``,
``@message``, and named fields for the operator lines), so a shipper never
has to parse text. A message can carry member-controlled text (names, tags):
JSON escapes newlines and control characters, so one record stays one line
and no member can forge another record.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, ClassVar

_LEVEL_NAMES: dict[str, str] = {"WARNING": "WARN", "ERROR": "ERR", "CRITICAL": "ERR"}
#: The prefixes our records use for serf's subsystems (``agent: ...``).
_MODULES = frozenset({"agent", "agent.ipc", "serf", "memberlist", "snapshot"})


def _serf_level(record: logging.LogRecord) -> str:
    return _LEVEL_NAMES.get(record.levelname, record.levelname)


class SerfLogFormatter(logging.Formatter):
    """``    2026/11/25 01:10:35 [INFO] serf: EventMemberJoin: n2 127.0.0.1`` (Serf's layout)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(record.created))
        return f"    {stamp} [{_serf_level(record)}] {record.getMessage()}"


def _timestamp(created: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{whole}.{int(created % 1 * 1_000_000):06d}Z"


def json_line(level: str, module: str, message: str, created: float | None = None,
              **fields: Any) -> str:
    """One record as one line of JSON."""
    record = {"@timestamp": _timestamp(time.time() if created is None else created),
              "@level": level.lower(), "@module": module, "@message": message, **fields}
    return json.dumps(record, ensure_ascii=True, default=str)


class JsonLogFormatter(logging.Formatter):
    """A log record as :func:`json_line` (``agent: x`` -> module ``agent``, message ``x``)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        module, sep, rest = message.partition(": ")
        if not sep or module not in _MODULES:
            module, rest = "agent", message
        return json_line(_serf_level(record), module, rest, record.created)


class Console:
    """The operator's lines (start, banner, warnings), as text or as JSON records."""

    json_lines: ClassVar[bool] = False

    @classmethod
    def say(cls, text: str, level: str = "info", **fields: Any) -> None:
        if cls.json_lines:
            print(json_line(level, "agent", text, **fields), flush=True)
        elif level == "warn":
            print(f"==> Warning: {text}", flush=True)
        else:
            print(f"==> {text}", flush=True)

    @classmethod
    def error(cls, text: str) -> None:
        """On stderr, as serf's ``==> Error:`` line (or a JSON record)."""
        line = json_line("err", "agent", text) if cls.json_lines else f"==> Error: {text}"
        print(line, file=sys.stderr, flush=True)
