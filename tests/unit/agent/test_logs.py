"""The agent's output: serf's text layout, or one JSON object per line."""

from __future__ import annotations

import json
import logging
import re

import pytest

from swimlib.agent.logs import Console, JsonLogFormatter, SerfLogFormatter


def _record(level: int, message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("swimlib", level, __file__, 1, message, args, None)


def test_json_records_split_module_and_message_and_stay_on_one_line() -> None:
    fmt = JsonLogFormatter()
    # A member name is the cluster's input: a newline in it must not start a new record.
    line = fmt.format(_record(logging.INFO, "serf: EventMemberJoin: %s %s",
                              'evil\n{"@level": "err"}', "127.0.0.1"))
    assert "\n" not in line
    record = json.loads(line)
    assert record["@level"] == "info" and record["@module"] == "serf"
    assert record["@message"] == 'EventMemberJoin: evil\n{"@level": "err"} 127.0.0.1'
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", record["@timestamp"])
    warn = json.loads(fmt.format(_record(logging.WARNING, "no module prefix here")))
    assert (warn["@level"], warn["@module"], warn["@message"]) == (
        "warn", "agent", "no module prefix here")
    assert json.loads(fmt.format(_record(logging.ERROR, "agent: x")))["@level"] == "err"


def test_serf_layout_is_unchanged() -> None:
    line = SerfLogFormatter().format(_record(logging.WARNING, "agent: disk full"))
    assert re.fullmatch(r"    \d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[WARN\] agent: disk full", line)


@pytest.mark.parametrize("json_lines", [False, True])
def test_operator_lines_in_either_form(json_lines: bool,
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Console, "json_lines", json_lines)
    Console.say("swimlib agent running", node="a")
    Console.say("'RetryInterval' is too low. Setting to 1s", "warn")
    Console.error("port in use")
    out, err = capsys.readouterr()
    if not json_lines:
        assert out == ("==> swimlib agent running\n"
                       "==> Warning: 'RetryInterval' is too low. Setting to 1s\n")
        assert err == "==> Error: port in use\n"
        return
    first, second = (json.loads(line) for line in out.splitlines())
    assert (first["@message"], first["node"], second["@level"]) == (
        "swimlib agent running", "a", "warn")
    assert json.loads(err)["@level"] == "err"
