"""Pure parts of the hostile-input benchmark: the catalogue's bytes, verdicts, tables.

The suite itself starts real serf and swimlib agents; these checks make sure
every message it sends is the well-formed message it claims to be (decoded
by swimlib's own decoders), that the Go-dialect hand packer writes exactly
what swimlib's encoders write, and that verdicts follow the documented order.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.hostile import (
    CATALOGUE,
    NAMES,
    U32_MAX,
    U64_MAX,
    catalogue_ctx,
    format_tables,
    go_pack,
    judge,
    parse_args,
    parse_query_json,
    serf_by_hand,
)
from swimlib.errors import DecodeError
from swimlib.wire import codec
from swimlib.wire import serf as sw
from swimlib.wire.messages import Alive, PushPull, UserMsg


@pytest.mark.parametrize("entry", CATALOGUE, ids=[e.name for e in CATALOGUE])
def test_catalogue_message_decodes_as_intended(entry: Any) -> None:
    built = entry.build(catalogue_ctx())
    assert built.transport in ("udp", "tcp")
    if built.how == "swimlib encoder":
        # The hand packer (used where the encoders refuse a value) writes Go's dialect.
        assert built.data == built.hand
    try:
        if built.transport == "udp":
            decoded: Any = codec.decode_packet(built.data)
            if built.intended is None:
                pytest.fail(f"expected swimlib's decoder to refuse {built.data.hex()}")
            assert decoded == [built.intended]
            if built.inner is not None:
                assert isinstance(decoded[0], UserMsg)
                assert sw.decode_serf(decoded[0].payload) == built.inner
        else:
            decoded = codec.decode_stream(built.data)
            assert isinstance(decoded, PushPull)
            assert decoded == built.intended
            assert decoded.join is False
            assert sw.decode_serf(decoded.user_state) == built.inner
    except DecodeError:
        # Only values no Python message can hold (or that the encoders refuse) may be refused.
        assert built.intended is None or built.how != "swimlib encoder"


def test_catalogue_covers_the_brief() -> None:
    names = [e.name for e in CATALOGUE]
    assert len(names) == len(set(names))
    ctx = catalogue_ctx()
    by_name = {e.name: e.build(ctx) for e in CATALOGUE}
    assert by_name["query-ltime-max"].inner.ltime == U64_MAX
    assert by_name["event-ltime-2p63"].inner.ltime == 1 << 63
    assert by_name["suspect-inc-max"].intended.incarnation == U32_MAX
    alive = by_name["alive-inc-max"].intended
    assert isinstance(alive, Alive)
    assert (alive.node, alive.port, len(alive.vsn)) == ("a1", ctx.victim_port, 6)
    assert by_name["query-timeout-neg"].inner.timeout_ns == -1
    assert by_name["query-regex-redos"].inner.filters == (sw.TagFilter("role", "(a+)+$"),)
    pp = by_name["pushpull-clocks-max-rows"].inner
    assert (pp.ltime, pp.event_ltime, pp.query_ltime) == (U64_MAX,) * 3
    assert [n.name for n in by_name["pushpull-clocks-max-rows"].intended.nodes] == list(NAMES)
    assert by_name["alive-addr-3-bytes"].intended is None
    with pytest.raises(DecodeError):
        codec.decode_packet(by_name["alive-addr-3-bytes"].data)
    assert by_name["query-reflect"].inner.addr == "127.0.0.2"
    assert by_name["query-relay-255"].inner.relay_factor == 255


def test_hand_packer_goes_beyond_the_encoders_domain() -> None:
    # A value swimlib's encoder refuses is still packed, in Go's dialect.
    over = sw.JoinIntent(U64_MAX, "a1")
    raw = serf_by_hand(over)
    assert raw == sw.encode_serf(over)
    assert go_pack({"b": 1, "A": b"x"}) == b"\x82\xa1A\xa1x\xa1b\x01"


def test_parse_query_json() -> None:
    text = '{"Acks": ["a0", "a2"], "Responses": {"a0": "pong-a0"}}'
    assert parse_query_json(text) == (["a0", "a2"], ["a0"])
    assert parse_query_json('{"Acks": null, "Responses": null}') == ([], [])
    assert parse_query_json("Query 'x' dispatched") is None


def _cell(**over: Any) -> dict[str, Any]:
    healthy = {n: "alive" for n in NAMES}
    cell: dict[str, Any] = {
        "running": dict.fromkeys(NAMES, True), "views": {n: dict(healthy) for n in NAMES},
        "views_settled": {n: dict(healthy) for n in NAMES}, "members_ok": True,
        "members_ok_settled": True, "event_ok": True, "query_ok": True, "sinks": {}}
    cell.update(over)
    return cell


def test_judge_order() -> None:
    assert judge(_cell()) == ("ok", "")
    assert judge(_cell(running={"a0": False, "a1": False, "a2": False}))[0] == "crashed"
    assert judge(_cell(running={"a0": False, "a1": True, "a2": True})) == ("crashed",
                                                                           "a0 exited")
    silenced = _cell(views_settled={"a0": None, "a1": {"a0": "failed"}, "a2": {}})
    assert judge(silenced)[0] == "silenced"
    seen_failed = _cell(views_settled={"a0": {n: "alive" for n in NAMES},
                                       "a1": {"a0": "failed", "a1": "alive", "a2": "alive"},
                                       "a2": {n: "alive" for n in NAMES}})
    assert judge(seen_failed) == ("silenced", "a1 sees a0 failed")
    victim = {"a0": {"a0": "alive", "a1": "leaving", "a2": "alive"},
              "a1": {n: "alive" for n in NAMES},
              "a2": {"a0": "alive", "a1": "leaving", "a2": "alive"}}
    verdict, detail = judge(_cell(views_settled=victim, victim_ok=False,
                                  members_ok_settled=False))
    assert verdict == "victim dead"
    assert "leaving in a0" in detail
    assert judge(_cell(members_ok_settled=False))[0] == "split"
    assert judge(_cell(query_ok=False))[0] == "no queries"
    assert judge(_cell(event_ok=False, query_ok=False))[0] == "no events/queries"
    healed = _cell(event_ok=False, event={"missing": ["a1", "a2"]}, event_ok_settled=True)
    assert judge(healed) == ("no events", "event missed by a1,a2, fine after settling")
    lasting = _cell(query_ok=False, query={"missing": ["a0"]}, query_ok_settled=False,
                    query_settled={"missing": ["a0"]})
    assert judge(lasting) == ("no queries",
                              "query missed by a0, again after settling: missed by a0")
    extra = _cell(views_settled={n: {**{m: "alive" for m in NAMES}, "ghost": "failed"}
                                 for n in NAMES})
    assert judge(extra) == ("ok", "extra members 'ghost' failed")
    refl = _cell(sinks={"third_party": {"datagrams": 6}})
    assert judge(refl) == ("ok", "6 datagrams to 127.0.0.2")
    assert judge({"setup_error": "a0 not ready"}) == ("setup failed", "a0 not ready")


def test_format_tables() -> None:
    entries = CATALOGUE[:2]
    results = {entries[0].name: {"serf": {**_cell(), "verdict": "ok", "detail": ""},
                                 "swimlib": {**_cell(running={"a0": False, "a1": True,
                                                              "a2": True}),
                                             "verdict": "crashed", "detail": "a0 exited"}}}
    table = format_tables(entries, results, ["serf", "swimlib"])
    lines = table.splitlines()
    assert lines[0] == "| # | entry | message | Serf 0.9.4 | swimlib |"
    assert "| 1 | `query-ltime-max` | Serf query, LTime 2^64-1 | ok | **crashed** (a0 exited) |" \
        in lines
    assert any(line.startswith("| 2 | `event-ltime-max`") and line.endswith("| - | - |")
               for line in lines)
    assert "| `query-ltime-max` | swimlib | 2/3 | yes | yes | yes | yes | - | crashed |" in lines
    results[entries[0].name]["serf"]["event_ok"] = False
    results[entries[0].name]["serf"]["event_ok_settled"] = True
    table = format_tables(entries, results, ["serf", "swimlib"])
    assert "| `query-ltime-max` | serf | 3/3 | yes | yes | **no** → yes | yes | - | ok |" \
        in table.splitlines()


def test_parse_args() -> None:
    opts, listing = parse_args(["--only", "query-reflect,dead-inc-max", "--impl", "serf",
                                "--settle", "1", "--wait", "3", "--workdir", "/tmp/x"])
    assert opts.only == ["query-reflect", "dead-inc-max"]
    assert opts.impls == ["serf"]
    assert opts.settle == 3.0  # never before the first checks
    assert not listing
    with pytest.raises(SystemExit):
        parse_args(["--only", "no-such-entry"])
