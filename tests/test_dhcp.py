"""`provision dhcp export`: each format is accepted by the real daemon's own checker (dnsmasq
--test, kea-dhcp4 -t, dhcpd -t), and a broken copy of it is refused by the same checker, so the
check is not vacuous. Reservations, boot files by client architecture and the proxy mode are read
back from the output."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from provision.domain import parse_nodes

from .conftest import EXAMPLE, run_cli, start_server, write_config

CHECKERS = {
    "dnsmasq": lambda f: ["dnsmasq", "--test", f"--conf-file={f}"],
    "kea": lambda f: ["kea-dhcp4", "-t", str(f)],
    "isc": lambda f: ["dhcpd", "-4", "-t", "-cf", str(f)],
}
BROKEN = {"dnsmasq": "dhcp-boot=tag:\n", "kea": "}\n", "isc": "host x {\n"}
NODES = {"rhvnode3": ("0c:c4:7a:3b:03:01", "192.0.2.13"), "rhvnode4": ("0c:c4:7a:3b:04:01", "192.0.2.14"),
         "rhvnode5": ("0c:c4:7a:3b:05:01", "192.0.2.15")}


def _daemon(cmd: list[str]) -> str:
    path = shutil.which(cmd[0]) or f"/usr/sbin/{cmd[0]}"
    assert Path(path).exists(), f"{cmd[0]} is not installed (make test installs it)"
    return path


def _check(fmt: str, path: Path) -> subprocess.CompletedProcess:
    cmd = CHECKERS[fmt](path)
    return subprocess.run([_daemon(cmd)] + cmd[1:], capture_output=True, text=True, timeout=60)


@pytest.fixture
def cfg(tmp_path):
    cfg = write_config(tmp_path)
    data = yaml.safe_load(EXAMPLE.read_text())
    extra = copy.deepcopy(data["nodes"][0])  # a node the inventory knows, without facts yet
    extra.update(name="rhvnode9", fqdn="rhvnode9.lab.example.com")
    del extra["facts"]
    data["nodes"].append(extra)
    inv = tmp_path / "inventory.yaml"
    inv.write_text(yaml.safe_dump(data))
    res = run_cli("node", "import", str(inv), config=cfg)
    assert res.returncode == 0, res.stderr
    return cfg


@pytest.mark.parametrize("fmt", ["dnsmasq", "kea", "isc"])
def test_each_format_passes_its_daemons_checker(cfg, tmp_path, fmt):
    out = tmp_path / f"dhcp.{fmt}"
    res = run_cli("dhcp", "export", "--format", fmt, "--next-server", "192.0.2.10", "-o", str(out), config=cfg)
    assert res.returncode == 0, res.stderr
    checked = _check(fmt, out)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    broken = tmp_path / f"broken.{fmt}"
    broken.write_text(out.read_text() + BROKEN[fmt])
    assert _check(fmt, broken).returncode != 0  # the checker does read what we give it
    text = out.read_text()
    assert "Not exported: rhvnode9: no facts" in text
    assert "TFTP port 69, provision's tftp_bind is port 6969" in text
    assert oct(out.stat().st_mode & 0o777) == "0o644"


@pytest.mark.parametrize("fmt", ["dnsmasq", "kea", "isc"])
def test_no_ipxe_gives_ipxe_clients_their_firmwares_loader(cfg, tmp_path, fmt):
    """--no-ipxe: no iPXE rule at all, so an iPXE NIC ROM is answered by client architecture like
    any PXE client (BIOS -> pxelinux.0); the daemon's checker still accepts the output."""
    out = tmp_path / f"dhcp.{fmt}"
    res = run_cli("dhcp", "export", "--format", fmt, "--no-ipxe", "--next-server", "192.0.2.10", "-o", str(out),
                  config=cfg)
    assert res.returncode == 0, res.stderr
    checked = _check(fmt, out)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = out.read_text()
    assert "/boot/ipxe" not in text and "iPXE clients as their firmware (--no-ipxe)" in text
    assert "pxelinux.0" in text and "shimx64.efi" in text
    if fmt == "kea":
        body = json.loads(text[text.index("{"):])
        assert {c["name"] for c in body["Dhcp4"]["client-classes"]} == {"httpboot", "uefi", "bios"}
        assert all("ipxe" not in c["test"] for c in body["Dhcp4"]["client-classes"])
    else:
        assert not re.search(r"user-?class", text, re.I)


def test_dnsmasq_reserves_each_boot_nic_and_picks_the_boot_file_by_architecture(cfg):
    res = run_cli("dhcp", "export", "--format", "dnsmasq", "--next-server", "192.0.2.10", config=cfg)
    lines = res.stdout.splitlines()
    for name, (mac, ip) in NODES.items():
        assert f"dhcp-host={mac},{ip},{name}" in lines
    assert "dhcp-range=set:net0,192.0.2.0,static,255.255.255.0" in lines  # reserved MACs only
    assert "dhcp-option=tag:net0,option:router,192.0.2.1" in lines
    assert "dhcp-option=tag:net0,option:dns-server,192.0.2.2,192.0.2.3" in lines
    assert "dhcp-match=set:bios,option:client-arch,0" in lines
    assert {"dhcp-match=set:uefi,option:client-arch,7", "dhcp-match=set:uefi,option:client-arch,9"} <= set(lines)
    assert "dhcp-boot=tag:bios,tag:!ipxe,pxelinux.0,,192.0.2.10" in lines
    assert "dhcp-boot=tag:uefi,tag:!ipxe,shimx64.efi,,192.0.2.10" in lines
    assert "dhcp-boot=tag:httpboot,tag:!ipxe,http://127.0.0.1:8080/boot/shimx64.efi" in lines
    assert "dhcp-boot=tag:ipxe,http://127.0.0.1:8080/boot/ipxe?mac=${net0/mac}" in lines


def test_kea_and_isc_carry_the_same_reservations(cfg):
    kea = run_cli("dhcp", "export", "--format", "kea", "--next-server", "192.0.2.10", config=cfg).stdout
    conf = json.loads("\n".join(line for line in kea.splitlines() if not line.startswith("//")))["Dhcp4"]
    (subnet,) = conf["subnet4"]
    assert subnet["subnet"] == "192.0.2.0/24"
    assert {(r["hostname"], r["hw-address"], r["ip-address"]) for r in subnet["reservations"]} == \
        {(n, mac, ip) for n, (mac, ip) in NODES.items()}
    classes = {c["name"]: c for c in conf["client-classes"]}
    assert classes["uefi"]["boot-file-name"] == "shimx64.efi" and classes["uefi"]["next-server"] == "192.0.2.10"
    assert classes["bios"]["boot-file-name"] == "pxelinux.0"
    assert classes["ipxe"]["boot-file-name"].endswith("/boot/ipxe?mac=${net0/mac}")
    isc = run_cli("dhcp", "export", "--format", "isc", "--next-server", "192.0.2.10", config=cfg).stdout
    hosts = re.findall(r"host (\S+) \{\s+hardware ethernet (\S+);\s+fixed-address (\S+);", isc)
    assert set(hosts) == {(n, mac, ip) for n, (mac, ip) in NODES.items()}


def test_proxy_mode_hands_out_no_address_and_answers_only_the_nodes(cfg, tmp_path):
    out = tmp_path / "proxy.conf"
    res = run_cli("dhcp", "export", "--format", "dnsmasq", "--proxy", "--next-server", "192.0.2.10", "-o", str(out),
                  config=cfg)
    assert res.returncode == 0, res.stderr
    assert _check("dnsmasq", out).returncode == 0
    lines = out.read_text().splitlines()
    assert "dhcp-range=192.0.2.0,proxy,255.255.255.0" in lines
    assert {f"dhcp-host={mac},set:provision" for mac, _ in NODES.values()} <= set(lines)
    assert not any("192.0.2.13" in line for line in lines)  # no reservations: the other server's job
    assert all("tag:provision" in line for line in lines if line.startswith(("pxe-service", "dhcp-boot")))
    for fmt in ("kea", "isc"):
        res = run_cli("dhcp", "export", "--format", fmt, "--proxy", "--next-server", "192.0.2.10", config=cfg)
        assert res.returncode == 2 and "--proxy: only dnsmasq" in res.stderr and not res.stdout


def test_a_vlan_or_ipv6_only_management_network_is_said_in_a_comment(tmp_path):
    cfg = write_config(tmp_path)
    data = yaml.safe_load(EXAMPLE.read_text())
    facts4, facts5 = data["nodes"][1]["facts"], data["nodes"][2]["facts"]
    facts4["vlans"].append({"id": 30, "parent": "eno4"})
    facts4["networks"][0]["interface"] = "eno4.30"
    mgmt5 = facts5["networks"][0]
    del mgmt5["address"], mgmt5["gateway"]
    mgmt5["address6"] = "2001:db8::15/64"
    (tmp_path / "inv.yaml").write_text(yaml.safe_dump(data))
    assert run_cli("node", "import", str(tmp_path / "inv.yaml"), config=cfg).returncode == 0
    out = tmp_path / "dhcp.conf"
    assert run_cli("dhcp", "export", "--format", "dnsmasq", "--next-server", "192.0.2.10", "-o", str(out),
                   config=cfg).returncode == 0
    assert _check("dnsmasq", out).returncode == 0
    text = out.read_text()
    assert "# rhvnode4: management is on VLAN 30: the firmware asks untagged" in text
    assert "dhcp-host=0c:c4:7a:3b:04:04,192.0.2.14,rhvnode4" in text  # the VLAN's base NIC boots
    assert "dhcp-host=0c:c4:7a:3b:05:01,rhvnode5" in text and "no IPv4 management address" in text


@pytest.mark.parametrize("args,message", [
    (["--format", "bind"], "--format: 'bind' is not one of dnsmasq, kea, isc"),
    (["--format", "kea", "--next-server", "2001:db8::1"], "--next-server: '2001:db8::1' is not an IPv4 address"),
    (["--format", "kea"], "--next-server: neither [server] tftp_bind nor public_url"),  # both are 127.0.0.1
    (["--format", "kea", "--next-server", "192.0.2.10", "-o", "/no/such/dir/dhcp.conf"],
     "--output: directory '/no/such/dir' does not exist"),
])
def test_bad_options_are_input_errors(cfg, args, message):
    res = run_cli("dhcp", "export", *args, config=cfg)
    assert res.returncode == 2 and message in res.stderr and not res.stdout, res.stderr


def test_the_tftp_root_is_served_over_http_for_uefi_http_boot(tmp_path):
    gen = start_server(tmp_path)
    srv = next(gen)
    try:
        srv.svc.store.import_nodes(parse_nodes(yaml.safe_load(EXAMPLE.read_text())))
        loader = b"MZ" + bytes(range(256)) * 40
        (tmp_path / "bootfiles" / "shimx64.efi").write_bytes(loader)
        (tmp_path / "bootfiles" / "grub.cfg.j2").write_text("template")
        (tmp_path / "secret").write_text("outside")
        (tmp_path / "bootfiles" / "escape").symlink_to(tmp_path / "secret")
        got = requests.get(f"{srv.http}/boot/shimx64.efi", timeout=10)
        assert got.status_code == 200 and got.content == loader
        part = requests.get(f"{srv.http}/boot/shimx64.efi", headers={"Range": "bytes=2-9"}, timeout=10)
        assert part.status_code == 206 and part.content == loader[2:10]
        mac = "0c-c4-7a-3b-03-01"  # GRUB loaded over HTTP looks for its config in its own directory
        assert requests.get(f"{srv.http}/boot/grub.cfg-01-{mac}", timeout=10).text == \
            requests.get(f"{srv.http}/boot/grub/grub.cfg-01-{mac}", timeout=10).text
        for refused in ("grub.cfg.j2", "escape", "..%2Fsecret", "nothing.efi"):
            assert requests.get(f"{srv.http}/boot/{refused}", timeout=10).status_code == 404, refused
    finally:
        gen.close()
