"""Go ``flag`` conventions on top of argparse, so ``serf``-style command lines work.

``serf members -status=alive -detailed -format=json`` must also work as
``swimlib members ...``: argparse accepts the single-dash long spellings once
they are registered, but Go's ``-flag=false`` for booleans and Go durations
(``1s``, ``1m30s``) need the helpers here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from swimlib.records import record

__all__ = [
    "BoolFlag",
    "format_go_duration",
    "go_flag",
    "normalize_bool_flags",
    "parse_go_bool",
    "parse_go_duration",
    "parse_go_tags",
]

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def go_flag(name: str) -> tuple[str, str]:
    """An option's spellings: ``--name`` plus Go's ``-name`` (argparse then
    takes ``-name=value``, ``-name value`` and ``--name`` alike)."""
    return f"--{name}", f"-{name}"


def parse_go_bool(text: str) -> bool:
    """``strconv.ParseBool``."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"invalid boolean value {text!r}")


_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # Go accepts both micro signs
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_PART = re.compile(r"(\d*)(?:\.(\d*))?([a-zµμ]+)")


def parse_go_tags(pairs: Sequence[str]) -> dict[str, str]:
    """Serf's ``UnmarshalTags``: ``key=value``, non-empty key, value may contain ``=``;
    later pairs win. Raises ``ValueError`` naming the first malformed pair."""
    tags: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise ValueError(pair)
        tags[key] = value
    return tags


def parse_go_duration(text: str) -> int:
    """``time.ParseDuration`` -> nanoseconds (``"1.5s"``, ``"1m30s"``, ``"0"``)."""
    s = text
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total = 0
    pos = 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None or (not m.group(1) and not m.group(2)) or m.group(3) not in _UNITS:
            raise ValueError(f"invalid duration {text!r}")
        whole, frac, unit = m.group(1) or "0", m.group(2) or "", _UNITS[m.group(3)]
        total += int(whole) * unit
        if frac:
            total += int(frac) * unit // 10 ** len(frac)
        pos = m.end()
    if total >= 1 << 63:
        raise ValueError(f"invalid duration {text!r}")
    return sign * total


def format_go_duration(seconds: float) -> str:
    """``time.Duration.String()`` for whole milliseconds and up (``30s``, ``1m30s``, ``500ms``)."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    text = f"{secs}s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    return f"{minutes}m{text}" if minutes else text


@record
class BoolFlag:
    """How one Go boolean flag maps onto argparse options."""

    true_form: str
    false_form: str | None = None
    #: Also accept ``--flag true|false`` as two tokens (only where unambiguous).
    separate_value: bool = False


def normalize_bool_flags(
    argv: Sequence[str], bool_flags: Mapping[str, Mapping[str, BoolFlag]]
) -> list[str]:
    """Rewrite Go-style boolean flags of the subcommand for argparse.

    ``-name=false`` becomes ``false_form`` (or nothing), ``-name=true`` and
    ``-name`` become ``true_form``. Tokens after ``--`` are left alone.
    Raises ``ValueError`` with Go's message for a bad boolean.
    """
    out = list(argv)
    sub_index = next((i for i, a in enumerate(out) if not a.startswith("-")), None)
    if sub_index is None or out[sub_index] not in bool_flags:
        return out
    table = bool_flags[out[sub_index]]
    result = out[: sub_index + 1]
    i = sub_index + 1
    while i < len(out):
        token = out[i]
        i += 1
        if token == "--":
            result.extend(out[i - 1 :])
            break
        name, eq, value = token.lstrip("-").partition("=")
        if not token.startswith("-") or token.startswith("---") or name not in table:
            result.append(token)
            continue
        flag = table[name]
        if not eq and flag.separate_value and i < len(out) and out[i] in ("true", "false"):
            value, eq = out[i], "="
            i += 1
        try:
            flag_on = parse_go_bool(value) if eq else True
        except ValueError:
            raise ValueError(
                f'invalid boolean value "{value}" for -{name}: parse error'
            ) from None
        chosen = flag.true_form if flag_on else flag.false_form
        if chosen is not None:
            result.append(chosen)
    return result
