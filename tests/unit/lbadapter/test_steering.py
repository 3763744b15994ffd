"""Several balancers, one truth: IDs, tags that steer a backend, peers, sticky rendering."""

from __future__ import annotations

import random
import re

import pytest

from lbadapter import settings_from_mapping
from lbadapter.config import SettingsError
from lbadapter.desired import (
    MemberProblems,
    MemberRecord,
    balancer_peers,
    desired_servers,
    parse_state_tag,
    parse_weight_tag,
    server_id,
)
from lbadapter.render import render_config

TAG = ("role", "backend")


def backend(name: str, addr: str = "10.0.0.1", status: str = "alive", **tags: str
            ) -> MemberRecord:
    extra = {k.replace("_", "-"): v for k, v in tags.items()}
    return MemberRecord(name, addr, 7946, {"role": "backend", "port": "8000"} | extra, status)


def balancer(name: str, addr: str, peer_port: str | None = "7947", status: str = "alive"
             ) -> MemberRecord:
    tags = {"role": "balancer"} | ({"lb-peer-port": peer_port} if peer_port else {})
    return MemberRecord(name, addr, 7946, tags, status)


def settings(**extra: str) -> object:
    return settings_from_mapping({"listen": "127.0.0.1:8080", "stats": "127.0.0.1:9090",
                                  "state_dir": "/tmp/lbsteer", **extra})


# ------------------------------------------------------------------ identity


def test_ids_are_a_function_of_the_name_whatever_the_order_or_company():
    members = [backend(f"web-{i}", f"10.0.0.{i}") for i in range(1, 30)]
    first = {n: s.sid for n, s in desired_servers(members, TAG, None).items()}
    for seed in range(5):
        shuffled = members[:]
        random.Random(seed).shuffle(shuffled)
        subset = shuffled[:10]  # another balancer that has seen fewer members
        got = desired_servers(subset, TAG, None)
        assert {n: s.sid for n, s in got.items()} == {n: first[n] for n in got}
    assert all(0 < sid < 2**31 for sid in first.values())
    assert len(set(first.values())) == len(first)
    assert first["web-1"] == server_id("web-1")


def test_an_id_collision_is_resolved_the_same_way_everywhere(monkeypatch):
    import lbadapter.desired as desired

    real = desired.server_id
    monkeypatch.setattr(desired, "server_id",
                        lambda name, attempt=0: 42 if attempt == 0 else real(name, attempt))
    one = desired_servers([backend("b"), backend("a")], TAG, None)
    two = desired_servers([backend("a"), backend("b")], TAG, None)
    assert one["a"].sid == two["a"].sid == 42
    assert one["b"].sid == two["b"].sid == real("b", 1)


# ------------------------------------------------------------------ lb-weight, lb-state


@pytest.mark.parametrize(("text", "weight"), [("0", 0), ("1", 1), ("3", 3), ("256", 256),
                                              ("007", 7)])
def test_weight_tags_in_haproxys_range(text, weight):
    assert parse_weight_tag(text) == weight


@pytest.mark.parametrize("text", ["-5", "1e9", "257", "1000", "", " 3", "+3", "3.0", "0x10",
                                  "\u0663", "3\n", "1_0", None])
def test_bad_weight_tags_are_refused(text):
    assert parse_weight_tag(text) is None


@pytest.mark.parametrize("text", ["ready", "drain", "maint"])
def test_state_tags(text):
    assert parse_state_tag(text) == text


@pytest.mark.parametrize("text", ["READY", "down", "maint;", "", "drain ", "disabled"])
def test_bad_state_tags_are_refused(text):
    assert parse_state_tag(text) is None


def test_tags_steer_the_server_and_bad_ones_are_counted_and_ignored(caplog):
    problems = MemberProblems()
    got = desired_servers([backend("a", lb_weight="3", lb_state="drain"),
                           backend("b", lb_weight="-5", lb_state="maint"),
                           backend("c", lb_weight="1e9", lb_state="gone\n# evil"),
                           backend("d")], TAG, None, problems)
    assert [(got[n].weight, got[n].state) for n in "abcd"] == [
        (3, "drain"), (1, "maint"), (1, "ready"), (1, "ready")]
    assert problems.last == {"weight_invalid": 2, "state_invalid": 1}
    assert "bad lb-weight tag -5 (expected 0..256); using 1" in caplog.text
    assert "bad lb-state tag gone\\x0a\\x23\\x20evil" in caplog.text  # escaped, one line


def test_file_carries_weight_and_state():
    text = render_config(settings(), desired_servers(
        [backend("a", lb_weight="3"), backend("b", "10.0.0.2", lb_state="drain", lb_weight="5"),
         backend("c", "10.0.0.3", lb_state="maint")], TAG, None).values())
    lines = {ln.split()[1]: ln for ln in text.splitlines() if ln.startswith("    server ")}
    assert re.match(r"    server a 10.0.0.1:8000 id \d+ weight 3 check ", lines["a"])
    assert " weight 0 check " in lines["b"]  # drain survives a reload as weight 0
    assert "c" not in lines  # maint: re-added in maintenance after a reload


# ------------------------------------------------------------------ peers


def test_peers_are_the_balancers_with_a_peer_port_sorted_and_local_marked():
    # left and failed ones stay until membership reaps them: a restart costs no reloads
    members = [balancer("lb-b", "10.0.0.12"), balancer("lb-a", "10.0.0.11"),
               balancer("lb-old", "10.0.0.13", status="left"),
               balancer("lb-dead", "10.0.0.14", status="failed"),
               balancer("lb-legacy", "10.0.0.15", peer_port=None), backend("web")]
    peers = balancer_peers(members, "lb-a", ("10.0.0.11", 7000))
    assert [(p.name, p.address, p.local) for p in peers] == [
        ("lb-a", "10.0.0.11:7000", True), ("lb-b", "10.0.0.12:7947", False),
        ("lb-dead", "10.0.0.14:7947", False), ("lb-old", "10.0.0.13:7947", False)]


def test_local_peer_is_there_before_the_snapshot_lists_us():
    assert [(p.name, p.local) for p in balancer_peers([], "me", ("127.0.0.1", 7000))] == [
        ("me", True)]


def test_hostile_balancers_are_left_out_and_counted():
    problems = MemberProblems()
    members = [balancer("ok", "10.0.0.1"), balancer("bad-port", "10.0.0.2", "80;x"),
               balancer("bad-addr", "0.0.0.0"), balancer("a b\n peer evil 6.6.6.6:1", "10.0.0.3")]
    peers = balancer_peers(members, "ok", None, problems)
    assert all(re.fullmatch(r"[A-Za-z0-9_.:-]{1,80}", p.name) for p in peers)
    assert {p.member for p in peers} == {"ok", "a b\n peer evil 6.6.6.6:1"}
    assert problems.last["peer_invalid"] == 2
    text = render_config(settings(sticky="source"), [], peers=peers)
    assert [ln for ln in text.splitlines() if "peer " in ln and "evil" in ln] == [
        f"    peer {peers[0].name} 10.0.0.3:7947"]  # the name is one safe word


def test_source_stickiness_renders_a_replicated_stick_table():
    s = settings(sticky="source", stick_expire="10m")
    peers = balancer_peers([balancer("lb-b", "10.0.0.12")], "lb-a", ("10.0.0.11", 7947))
    text = render_config(s, [], peers=peers)
    assert "    localpeer lb-a\n" in text
    assert "peers lbadapter\n    peer lb-a 10.0.0.11:7947\n    peer lb-b 10.0.0.12:7947\n" in text
    assert ("stick-table type ipv6 size 1m expire 10m peers lbadapter srvkey name\n"
            "    stick on src\n") in text
    assert "cookie" not in text


def test_cookie_stickiness_renders_dynamic_cookies_and_no_peers():
    s = settings(sticky="cookie", cookie_name="LB", cookie_key="k3y")
    peers = balancer_peers([], "lb-a", ("10.0.0.11", 7947))
    text = render_config(s, [], peers=peers)
    assert "    cookie LB insert indirect nocache httponly dynamic\n" in text
    assert "    dynamic-cookie-key k3y\n" in text
    assert "peers" not in text and "stick" not in text


def test_no_stickiness_by_default():
    text = render_config(settings(), [])
    assert "cookie" not in text and "stick" not in text and "peers" not in text


@pytest.mark.parametrize(("key", "value"), [
    ("sticky", "sometimes"), ("cookie_name", "a b"), ("cookie_name", "x;y"),
    ("cookie_key", "has space"), ("cookie_key", "a#b"), ("stick_expire", "10 m"),
    ("stick_expire", "forever"), ("peer_port", "0"), ("peer_port", "70000"),
    ("metrics_addr", "nohost")])
def test_bad_new_settings_are_refused(key, value):
    with pytest.raises(SettingsError, match=key):
        settings(**{key: value})


def test_peer_port_must_not_be_the_frontend_with_source_stickiness():
    with pytest.raises(SettingsError, match="peer_port"):
        settings(sticky="source", peer_port="8080")


def test_flags_reach_the_settings(tmp_path):
    from lbadapter.cli import build_parser
    from lbadapter.config import load_settings

    toml = tmp_path / "lb.toml"
    toml.write_text('[lbadapter]\nsticky = "source"\ncookie_key = "k"\npeer_port = 9000\n')
    args = build_parser().parse_args(["run", "--config", str(toml), "--sticky", "cookie",
                                      "--metrics-addr", "127.0.0.1:9100"])
    s = load_settings(args)
    assert (s.sticky, s.cookie_key, s.peer_port, s.metrics_addr) == (
        "cookie", "k", 9000, ("127.0.0.1", 9100))
    args = build_parser().parse_args(["run", "--config", str(toml), "--peer-port", "9001"])
    assert (load_settings(args).sticky, load_settings(args).peer_port) == ("source", 9001)
