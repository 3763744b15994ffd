"""``--vip`` settings, the rendered keepalived.conf, the health file (no keepalived needed)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import re

import pytest

from lbadapter import vrrp
from lbadapter.cli import build_parser, main
from lbadapter.config import SettingsError, load_settings, settings_from_mapping
from lbadapter.keepalived import HealthFile, render_keepalived


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["run", *argv])


def test_no_vip_by_default():
    s = load_settings(parse())
    assert s.vip is None and s.vip_interface is None and s.vip_unicast_peers == ()


def test_flags_and_toml(tmp_path):
    s = load_settings(parse("--vip", "10.0.0.100/24", "--vip-interface", "eth0",
                            "--state-dir", str(tmp_path)))
    assert s.vip == ipaddress.IPv4Interface("10.0.0.100/24") and s.vip_interface == "eth0"
    assert (s.vip_priority, s.vip_advert_interval, s.vip_router_id) == (100, 0.5, None)
    cfg = tmp_path / "lb.toml"
    cfg.write_text('vip = "192.168.1.10/16"\nvip-interface = "bond0.12"\nvip_router_id = 42\n'
                   'vip_priority = 150\nvip_advert_interval = 1\n'
                   'vip_unicast_peers = ["192.168.1.2", "192.168.1.3"]\n'
                   'keepalived = "/opt/k/keepalived"\n')
    s = load_settings(parse("--config", str(cfg), "--vip-interface", "eth1"))
    assert s.vip == ipaddress.IPv4Interface("192.168.1.10/16") and s.vip_interface == "eth1"
    assert (s.vip_router_id, s.vip_priority, s.vip_advert_interval) == (42, 150, 1.0)
    assert s.vip_unicast_peers == ("192.168.1.2", "192.168.1.3")
    assert s.keepalived == "/opt/k/keepalived"


@pytest.mark.parametrize("value, message", [
    ("10.0.0.100", "ADDR/PREFIX"),
    ("10.0.0.300/24", "does not appear to be"),
    ("10.0.0.100/33", "does not appear to be"),
    ("fd00::10/64", "only IPv4"),
    ("10.0.0.0/24", "network or broadcast"),
    ("10.0.0.255/24", "network or broadcast"),
    ("127.0.0.5/8", "cannot be a floating"),
    ("224.0.0.18/24", "cannot be a floating"),
    ("10.0.0.1/24\n}", "does not appear to be"),
])
def test_bad_vip(value, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings(parse("--vip", value, "--vip-interface", "eth0"))


@pytest.mark.parametrize("name", ["", "a" * 16, "eth0 x", "eth0}", "e#0", "e!0", "a/b", "..",
                                  'eth"0', "eth0\n"])
def test_bad_interface(name):
    with pytest.raises(SettingsError, match="not an interface name"):
        load_settings(parse("--vip", "10.0.0.100/24", "--vip-interface", name))


@pytest.mark.parametrize("key, value, message", [
    ("vip_router_id", 0, "from 1 to 255"), ("vip_router_id", 256, "from 1 to 255"),
    ("vip_router_id", True, "from 1 to 255"), ("vip_priority", 255, "from 1 to 254"),
    ("vip_priority", "high", "from 1 to 254"), ("vip_advert_interval", 0.01, "0.05 to 40"),
    ("vip_advert_interval", 41, "0.05 to 40"), ("vip_unicast_peers", ["10.0.0.2", "x"],
                                                 "not an IPv4 address"),
    ("vip_unicast_peers", ["10.0.0.100"], "the floating address itself"),
])
def test_bad_tuning(key, value, message):
    with pytest.raises(SettingsError, match=message):
        settings_from_mapping({"vip": "10.0.0.100/24", "vip_interface": "eth0", key: value})


def test_settings_that_go_together():
    with pytest.raises(SettingsError, match="go together"):
        load_settings(parse("--vip", "10.0.0.100/24"))
    with pytest.raises(SettingsError, match="go together"):
        load_settings(parse("--vip-interface", "eth0"))
    with pytest.raises(SettingsError, match="needs --vip"):
        settings_from_mapping({"vip_unicast_peers": ["10.0.0.2"]})
    with pytest.raises(SettingsError, match="must listen on"):
        load_settings(parse("--vip", "10.0.0.100/24", "--vip-interface", "eth0",
                            "--listen", "10.0.0.5:80"))
    for ok in ("0.0.0.0:8080", "10.0.0.100:80"):
        load_settings(parse("--vip", "10.0.0.100/24", "--vip-interface", "eth0", "--listen", ok))


def test_state_dir_must_be_plain_with_a_vip(tmp_path):
    with pytest.raises(SettingsError, match=r"keepalived\.conf"):
        load_settings(parse("--vip", "10.0.0.100/24", "--vip-interface", "eth0",
                            "--state-dir", str(tmp_path / 'x"y')))


def test_router_id_is_derived_from_the_vip():
    a = vrrp.router_id_for(ipaddress.IPv4Interface("10.0.0.100/24"))
    assert a == vrrp.router_id_for(ipaddress.IPv4Interface("10.0.0.100/25"))  # address only
    assert vrrp.router_id_for(ipaddress.IPv4Interface("10.0.0.100/24"), 7) == 7
    ids = [vrrp.router_id_for(ipaddress.IPv4Interface(f"10.0.{i // 250}.{i % 250 + 1}/16"))
           for i in range(2550)]
    assert min(ids) == 1 and max(ids) == 255 and len(set(ids)) > 250  # spread evenly
    # Fixed forever: balancers of different versions must agree (documented value).
    assert vrrp.router_id_for(ipaddress.IPv4Interface("10.0.0.100/24")) == a == 120


def test_rendered_config(tmp_path):
    s = settings_from_mapping({"vip": "10.0.0.100/24", "vip_interface": "eth0",
                               "state_dir": str(tmp_path)})
    text = render_keepalived(s, adapter_pid=4321, test_binary="/usr/bin/test")
    assert "vrrp_version 3" in text and "state BACKUP" in text
    assert "    interface eth0\n" in text and "        10.0.0.100/24 dev eth0\n" in text
    assert f"virtual_router_id {vrrp.router_id_for(s.vip)}\n" in text  # type: ignore[arg-type]
    assert "priority 100\n" in text and "advert_int 0.5\n" in text
    assert f'file "{tmp_path}/haproxy-fault"' in text
    assert 'script "/usr/bin/test -d /proc/4321"' in text
    assert "unicast_peer" not in text
    assert text.count("{") == text.count("}")
    s = settings_from_mapping({"vip": "10.0.0.100/24", "vip_interface": "eth0",
                               "state_dir": str(tmp_path), "vip_router_id": 9,
                               "vip_priority": 200, "vip_advert_interval": 0.25,
                               "vip_unicast_peers": ["10.0.0.2", "10.0.0.3"]})
    text = render_keepalived(s, adapter_pid=1)
    assert "virtual_router_id 9\n" in text and "priority 200\n" in text
    assert "advert_int 0.25\n" in text
    assert "unicast_peer {\n        10.0.0.2\n        10.0.0.3\n    }" in text


def test_health_file_is_replaced_whole(tmp_path):
    health = HealthFile(tmp_path / "haproxy-fault")
    health.set(False)
    assert health.path.read_text() == "1\n"
    inode = os.stat(health.path).st_ino
    health.set(False)  # no change, no write
    assert os.stat(health.path).st_ino == inode
    health.set(True)
    assert health.path.read_text() == "0\n" and os.stat(health.path).st_ino != inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["haproxy-fault"]


def test_run_refuses_a_bad_vip_before_starting(tmp_path, capsys):
    code = main(["run", "--vip", "10.0.0.1", "--vip-interface", "eth0",
                 "--state-dir", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("lbadapter: error: --vip: expected ADDR/PREFIX"), err
    assert not (tmp_path / "s").exists()


def test_run_refuses_a_missing_interface_or_keepalived(tmp_path, capsys):
    code = main(["run", "--vip", "10.0.0.100/24", "--vip-interface", "nosuch0",
                 "--state-dir", str(tmp_path / "s"), "--haproxy", "/bin/true"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert ("nosuch0: no such interface" in err or "needs root" in err
            or "needs keepalived" in err), err
    assert not (tmp_path / "s").exists()
