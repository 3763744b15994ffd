"""Go-compatible text: columnize, encoding/json, %#v, serf info; Go flag parsing."""

from __future__ import annotations

import json

import pytest

from swimlib.rpc.goflags import BoolFlag, normalize_bool_flags, parse_go_bool, parse_go_duration
from swimlib.rpc.output import GoStruct, columnize, go_json, go_repr, stats_text


def test_columnize_matches_captured_serf_members():
    lines = [
        "n1|127.0.0.1:17201|left|role=backend",
        "n2|127.0.0.1:17202|failed|role=backend,weight=10",
        "n0|127.0.0.1:17200|alive|role=balancer",
    ]
    assert columnize(lines) == (
        "n1  127.0.0.1:17201  left    role=backend\n"
        "n2  127.0.0.1:17202  failed  role=backend,weight=10\n"
        "n0  127.0.0.1:17200  alive   role=balancer"
    )


def test_columnize_keeps_trailing_glue_and_trims_fields():
    assert columnize(["a|b|", "ccc| d |e"]) == "a    b  \nccc  d  e"
    assert columnize([]) == ""


def test_go_json_orders_structs_and_sorts_maps():
    value = GoStruct(name="n", tags={"z": "1", "a": "2"}, protocol={"version": 5, "min": 2})
    assert go_json(value) == (
        '{\n  "name": "n",\n  "tags": {\n    "a": "2",\n    "z": "1"\n  },\n'
        '  "protocol": {\n    "min": 2,\n    "version": 5\n  }\n}'
    )
    assert go_json(GoStruct(members=None)) == '{\n  "members": null\n}'
    assert go_json({"e": {}, "l": []}) == '{\n  "e": {},\n  "l": []\n}'


def test_go_json_escapes_like_go():
    text = go_json("<a&b>\u2028\x01\t\"\\é")
    assert text == '"\\u003ca\\u0026b\\u003e\\u2028\\u0001\\t\\"\\\\é"'
    assert json.loads(text) == "<a&b>\u2028\x01\t\"\\é"
    assert go_json(b"\xff".decode("utf-8", "surrogateescape")) == '"\ufffd"'


def test_go_repr_matches_serf_monitor():
    assert go_repr("member-join") == '"member-join"'
    assert go_repr(b"v1") == "[]byte{0x76, 0x31}"
    assert go_repr(1) == "1"
    assert go_repr(17200) == "0x4330"
    assert go_repr(True) == "true"
    member = {"Name": "n0", "Addr": b"\x7f\x00\x00\x01", "Tags": {"role": "web"}}
    assert go_repr([member]) == (
        '[]interface {}{map[interface {}]interface {}{"Addr":[]uint8{0x7f, 0x0, 0x0, 0x1}, '
        '"Name":"n0", "Tags":map[interface {}]interface {}{"role":"web"}}}'
    )


def test_stats_text_matches_captured_serf_info():
    stats = {
        "tags": {"role": "balancer"},
        "agent": {"name": "n0"},
        "event_handlers": {"*:": "$DIR/handler.sh"},
    }
    assert stats_text(stats) == (
        "agent:\n\tname = n0\nevent_handlers:\n\t*: = $DIR/handler.sh\ntags:\n\trole = balancer"
    )


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("1s", 10**9),
        ("1.5s", 1_500_000_000),
        ("500ms", 500_000_000),
        ("1m30s", 90 * 10**9),
        ("2h", 7200 * 10**9),
        ("10us", 10_000),
        ("-1s", -(10**9)),
        (".5s", 500_000_000),
    ],
)
def test_go_durations(text, ns):
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize("text", ["", "1", "s", "1x", "1s2", ".s", "--1s"])
def test_bad_go_durations(text):
    with pytest.raises(ValueError):
        parse_go_duration(text)


def test_go_bools():
    assert parse_go_bool("T") is True
    assert parse_go_bool("0") is False
    with pytest.raises(ValueError):
        parse_go_bool("yes")


FLAGS = {
    "event": {"coalesce": BoolFlag("--coalesce", "--no-coalesce", separate_value=True)},
    "members": {"detailed": BoolFlag("--detailed")},
}


def test_normalize_go_bool_flags():
    assert normalize_bool_flags(["event", "-coalesce=false", "x"], FLAGS) == [
        "event", "--no-coalesce", "x"]
    assert normalize_bool_flags(["event", "--coalesce", "false", "x"], FLAGS) == [
        "event", "--no-coalesce", "x"]
    assert normalize_bool_flags(["event", "--coalesce", "x"], FLAGS) == [
        "event", "--coalesce", "x"]
    assert normalize_bool_flags(["members", "-detailed=f"], FLAGS) == ["members"]
    assert normalize_bool_flags(["members", "-detailed=1"], FLAGS) == ["members", "--detailed"]
    assert normalize_bool_flags(["members", "--", "-detailed=1"], FLAGS) == [
        "members", "--", "-detailed=1"]
    assert normalize_bool_flags(["keygen"], FLAGS) == ["keygen"]
    with pytest.raises(ValueError, match='invalid boolean value "maybe" for -coalesce'):
        normalize_bool_flags(["event", "-coalesce=maybe", "x"], FLAGS)
