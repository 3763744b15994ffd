"""Text exactly as ``serf``'s CLI prints it: columnize, Go JSON, ``%#v``, stats.

Scripts written against ``serf members`` / ``serf info`` parse these bytes,
so each function reproduces the Go library it replaces (ryanuber/columnize,
encoding/json ``MarshalIndent``, fmt's ``%#v``), including its quirks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["GoStruct", "columnize", "go_json", "go_repr", "stats_text"]


def columnize(lines: Iterable[str], delim: str = "|", glue: str = "  ") -> str:
    """``columnize.SimpleFormat``: split on ``|``, trim, pad all but the last column.

    Rows with an empty last field keep the trailing glue, as Go does.
    """
    rows = [[field.strip() for field in line.split(delim)] for line in lines]
    widths: list[int] = []
    for row in rows:
        for i, field in enumerate(row):
            if i >= len(widths):
                widths.append(len(field))
            else:
                widths[i] = max(widths[i], len(field))
    out = []
    for row in rows:
        cells = [f.ljust(widths[i]) + glue for i, f in enumerate(row[:-1])]
        out.append("".join(cells) + row[-1])
    return "\n".join(out)


class GoStruct(dict[str, Any]):
    """A JSON object whose keys keep their order (a Go struct); plain dicts are sorted maps."""


_JSON_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _json_string(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _JSON_ESCAPES:
            out.append(_JSON_ESCAPES[ch])
        elif code < 0x20:
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:  # invalid UTF-8 (surrogateescape) -> U+FFFD
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_json(value: Any, indent: str = "  ") -> str:
    """``json.MarshalIndent(value, "", indent)``: sorted map keys, Go's escaping."""
    return _json(value, indent, 0)


def _json(value: Any, indent: str, depth: int) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return _json_string(value)
    pad, inner = indent * depth, indent * (depth + 1)
    if isinstance(value, Mapping):
        keys = list(value) if isinstance(value, GoStruct) else sorted(value)
        if not keys:
            return "{}"
        items = [f"{inner}{_json_string(str(k))}: {_json(value[k], indent, depth + 1)}"
                 for k in keys]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, Sequence):
        if not value:
            return "[]"
        items = [inner + _json(v, indent, depth + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def go_quote(text: str) -> str:
    """``strconv.Quote`` for the printable-ASCII-and-common-escapes cases."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append(f"\\x{code - 0xDC00:02x}" if code >= 0xDC80 else "\\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_repr(value: Any, top: bool = True) -> str:
    """fmt's ``%#v`` of a value the Go client decoded into ``interface{}``.

    go-msgpack gives int64 for fixints (0..127, negatives) and uint64 for
    wider unsigned ints, which ``%#v`` prints in hex; nested maps are
    ``map[interface {}]interface {}`` with sorted keys. Checked against
    ``serf monitor`` output.
    """
    if value is None:
        return "<nil>" if top else "interface {}(nil)"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return hex(value) if value > 127 else str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, bytes):  # fmt names the type []uint8 once nested
        return ("[]byte{" if top else "[]uint8{") + ", ".join(hex(b) for b in value) + "}"
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: str(kv[0]))
        body = ", ".join(f"{go_repr(k, False)}:{go_repr(v, False)}" for k, v in items)
        return "map[interface {}]interface {}{" + body + "}"
    if isinstance(value, Sequence):
        return "[]interface {}{" + ", ".join(go_repr(v, False) for v in value) + "}"
    return repr(value)


def stats_text(stats: Mapping[str, Mapping[str, str]]) -> str:
    """``serf info``'s text: sorted sections, ``\\tkey = value`` lines, trimmed."""
    buf = []
    for section in sorted(stats):
        buf.append(f"{section}:\n")
        values = stats[section]
        buf.extend(f"\t{key} = {values[key]}\n" for key in sorted(values))
    return "".join(buf).strip()
