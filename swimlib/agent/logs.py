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

import base64
import ipaddress
import json
import logging
import re
import sys
import time
from typing import Any, ClassVar

_LEVEL_NAMES: dict[str, str] = {"WARNING": "WARN", "ERROR": "ERR", "CRITICAL": "ERR"}
#: The prefixes our records use for serf's subsystems (``agent: ...``).
_MODULES = frozenset({"agent", "agent.ipc", "agent.mdns", "serf", "memberlist",
                      "snapshot"})


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


#: ``    2026/11/25 01:10:35 [INFO] serf: ...``: serf's layout, as ``monitor`` receives it.
_TEXT_LINE = re.compile(r"\s*(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[([A-Z]+)\] (.*)", re.S)


def monitor_line_to_json(line: str) -> str:
    """A log line a ``monitor`` stream carries, as one JSON record.

    Agents (serf's and ours) send serf's text layout; an agent started with
    ``--log-json`` already sends JSON, which passes through. A line in
    neither form becomes the message of an ``agent`` record, never an error.
    """
    text = line.rstrip("\n")
    if text.lstrip().startswith("{"):
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        if isinstance(record, dict):
            return json.dumps(record, ensure_ascii=True)
    match = _TEXT_LINE.fullmatch(text)
    if match is None:
        return json_line("info", "agent", text)
    stamp, level, message = match.groups()
    try:  # serf writes local time
        created: float | None = time.mktime(time.strptime(stamp, "%Y/%m/%d %H:%M:%S"))
    except (ValueError, OverflowError):
        created = None
    module, sep, rest = message.partition(": ")
    if not sep or module not in _MODULES:
        module, rest = "agent", message
    return json_line(level, module, rest, created)


def monitor_event_to_json(record: dict[str, Any]) -> str:
    """An event a ``monitor`` stream carries (``Event``, ``Members`` ...) as one
    JSON record: addresses as text, other bytes in base64 (Go's encoding)."""
    fields = {str(key): _plain(key, value) for key, value in record.items()}
    return json_line("info", "event", str(fields.get("Event", "")), event=fields)


def _plain(key: object, value: Any) -> Any:
    if isinstance(value, bytes):
        if key == "Addr" and len(value) in (4, 16):
            return str(ipaddress.ip_address(value))
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {str(k): _plain(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(key, v) for v in value]
    return value


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
