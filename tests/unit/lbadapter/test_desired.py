"""Desired servers from membership snapshots, server names, members JSON."""

from __future__ import annotations

import re

import pytest

from lbadapter.desired import (
    MemberRecord,
    Want,
    desired_servers,
    members_from_json,
    server_name,
)
from swimlib import ClusterMember, MemberStatus

TAG = ("role", "backend")


def m(name: str, status: str = "alive", port: str | None = "8000", role: str = "backend",
      addr: str = "10.0.0.1") -> MemberRecord:
    tags = {"role": role} | ({"port": port} if port is not None else {})
    return MemberRecord(name, addr, 7946, tags, status)


@pytest.mark.parametrize("name", ["web-1", "a.b_c:d", "X9"])
def test_clean_names_are_kept(name):
    assert server_name(name) == name


@pytest.mark.parametrize("name", ["web 1", "a/b", "ünï", "", "x" * 100, "a;b"])
def test_unsafe_names_are_sanitised_stably_and_distinctly(name):
    out = server_name(name)
    assert re.fullmatch(r"[A-Za-z0-9_.:-]+", out)
    assert out == server_name(name)
    assert out != server_name(name + "!")


def test_sanitised_names_do_not_collide():
    assert server_name("a/b") != server_name("a b") != server_name("a_b")


def test_status_maps_to_want():
    got = desired_servers([m("a"), m("b", "leaving"), m("c", "left"), m("d", "failed"),
                           m("e", "none")], TAG, None)
    assert {k: v.want for k, v in got.items()} == {
        "a": Want.READY, "b": Want.DRAIN, "c": Want.DRAIN, "d": Want.GONE, "e": Want.GONE}


def test_only_members_with_the_backend_tag():
    got = desired_servers([m("a"), m("lb", role="balancer")], TAG, None)
    assert list(got) == ["a"]


def test_port_from_tag_else_default_else_skipped(caplog):
    got = desired_servers([m("a", port="9000"), m("b", port=None), m("c", port="nope")],
                          TAG, 3000)
    assert (got["a"].port, got["b"].port, got["c"].port) == (9000, 3000, 3000)
    none = desired_servers([m("b", port=None), m("c", port="99999")], TAG, None)
    assert none == {}
    assert "no 'port' tag" in caplog.text and "bad port tag" in caplog.text


def test_address_brackets_ipv6():
    got = desired_servers([m("a", addr="::1")], TAG, None)
    assert got["a"].address == "[::1]:8000"
    assert desired_servers([m("b")], TAG, None)["b"].address == "10.0.0.1:8000"


def test_cluster_members_from_swimlib_work_directly():
    members = [ClusterMember("web-1", "127.0.0.1", 7946, {"role": "backend", "port": "8080"}),
               ClusterMember("web-2", "127.0.0.1", 7947, {"role": "backend", "port": "8081"},
                             status=MemberStatus.FAILED)]
    got = desired_servers(members, TAG, None)
    assert got["web-1"].want is Want.READY and got["web-2"].want is Want.GONE


def test_duplicate_server_names_keep_the_first(caplog):
    got = desired_servers([m("a"), m("a", port="9")], TAG, None)
    assert got["a"].port == 8000 and "already taken by member a" in caplog.text


def test_members_json_serf_shape():
    data = {"members": [
        {"name": "web-1", "addr": "127.0.0.1:7947", "port": 7947,
         "tags": {"role": "backend", "port": "8001"}, "status": "alive",
         "protocol": {"max": 5, "min": 2, "version": 5}},
        {"name": "v6", "addr": "[::1]:7948", "port": 7948, "tags": {}, "status": "failed"},
        {"name": "v6b", "addr": "::1:7949", "port": 7949, "tags": None, "status": "left"},
    ]}
    got = members_from_json(data)
    assert [(r.name, r.addr, r.status) for r in got] == [
        ("web-1", "127.0.0.1", "alive"), ("v6", "::1", "failed"), ("v6b", "::1", "left")]
    assert got[0].tag_map == {"role": "backend", "port": "8001"}
    assert members_from_json(data["members"]) == got  # a bare list works too


@pytest.mark.parametrize("bad", [{}, {"members": {}}, {"members": [{"addr": "x"}]},
                                 {"members": [{"name": "a", "addr": "x", "port": "p"}]},
                                 {"members": [{"name": "a", "addr": "x", "tags": "t"}]}, "text"])
def test_members_json_errors_name_the_problem(bad):
    with pytest.raises(ValueError, match=r"members|serf members"):
        members_from_json(bad)


def test_non_ip_addresses_are_skipped(caplog):
    got = desired_servers([m("a", addr="host.example"), m("b", addr="10.0.0.1;x")], TAG, None)
    assert got == {} and "not an IP address" in caplog.text
