"""The fact collector as served, run under dash with stub tools of the oldest target (EL7: no `ip -j`,
no `lsblk -J`, curl 7.29) against a running server; EL7 and multipath/NVMe fixtures; what it
cannot read is reported, never silently dropped."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import yaml
from click.testing import CliRunner

from provision.capture.diff import diff
from provision.capture.disks import disks, lsblk_pairs
from provision.capture.node import facts_from_node, warnings
from provision.cli import main
from provision.domain import Disk, parse_nodes
from provision.errors import InputError

from .conftest import EXAMPLE
from .stubtools import make_stubs

DATA = Path(__file__).parent / "data" / "node"
EXAMPLE_FACTS = parse_nodes(yaml.safe_load(EXAMPLE.read_text()))[0].facts
EL7_FACTS = EXAMPLE_FACTS.model_copy(update={"firmware": "bios"})  # oVirt 4.3 on this host booted BIOS
LSBLK7 = "-P -b -o NAME,KNAME,WWN,SIZE,TYPE,MODEL,TRAN,MOUNTPOINT"


def el7_host(tmp: Path) -> tuple[Path, object]:
    """A fake / for the EL7 host (sysfs, procfs, resolv.conf, /dev/disk/by-id links) and EL7 stubs."""
    root = tmp / "host"
    shutil.copytree(DATA / "el7", root, symlinks=True)
    byid = root / "dev/disk/by-id"
    byid.mkdir(parents=True)
    for line in (DATA / "el7" / "by-id.txt").read_text().splitlines():
        m = re.search(r"\s(\S+) -> (\S+)$", line)
        if m:
            (byid / m.group(1)).symlink_to(m.group(2))
    stubs = make_stubs(tmp, "el7")
    d = DATA / "el7"
    stubs.output("ip -o -d link show", (d / "ip-link-oneline.txt").read_text())
    stubs.output("ip -o addr show", (d / "ip-addr-oneline.txt").read_text())
    stubs.output("ip -4 route show default", (d / "route4.txt").read_text())
    stubs.output("ip -6 route show default", (d / "route6.txt").read_text())
    stubs.output(f"lsblk {LSBLK7}", (d / "lsblk-pairs.txt").read_text())
    stubs.output("pvs --noheadings --separator | -o pv_name,vg_name", (d / "pvs.txt").read_text())
    stubs.output("dmidecode -s system-serial-number", "S123456X\n")
    return root, stubs


def collect(server, name: str, root: Path, stubs, fail: str = "") -> tuple[subprocess.CompletedProcess, str]:
    res = CliRunner().invoke(main, ["--config", str(server.config), "facts", "capture", name, "--from", "node"])
    assert res.exit_code == 0, res.output
    url = re.search(r"curl -fsS '(\S+)' \| sh", res.output).group(1)
    script = requests.get(url, timeout=10).text
    env = stubs.env(fail=fail, real="curl", PROVISION_ROOT=str(root))
    return subprocess.run(["dash"], input=script, env=env, capture_output=True, text=True, timeout=120), url


@pytest.fixture
def el7_server(server):
    server.svc.store.import_nodes(parse_nodes(yaml.safe_load(EXAMPLE.read_text())))
    return server


def test_collector_on_el7_tools_falls_back_and_reproduces_the_facts(el7_server, tmp_path):
    root, stubs = el7_host(tmp_path)
    res, url = collect(el7_server, "rhvnode3", root, stubs)
    assert res.returncode == 0, res.stderr
    rejected = [c for c in stubs.calls() if c.get("rejected")]
    assert {c["tool"] for c in rejected} == {"ip", "lsblk"}  # -j and -J tried first, refused as EL7 would
    assert [c for c in stubs.calls("curl") if not c.get("rejected")], "the upload must use curl 7.29's options"
    reply = json.loads(res.stdout)
    assert reply["warnings"] == ["lsblk has no SERIAL column (EL7): disk serials not captured"]
    assert "disk serials not captured" in res.stderr
    snap = el7_server.svc.store.snapshot("rhvnode3")
    assert snap.source == "node" and diff(EL7_FACTS, snap.facts) == []
    assert snap.facts.install_disk.vgs == ["rhvh"] and snap.facts.bond("bond1").options["primary"] == "ens1f0"
    assert requests.get(url, timeout=10).status_code == 403  # one-time token: a rerun changes nothing


def test_collector_falls_back_to_sysfs_when_ip_link_fails(el7_server, tmp_path):
    root, stubs = el7_host(tmp_path)
    res, _ = collect(el7_server, "rhvnode3", root, stubs, fail="ip@2")  # call 1 is `ip -j` (refused)
    assert res.returncode == 0, res.stderr
    assert any(w.startswith("could not read ip link") for w in json.loads(res.stdout)["warnings"])
    assert diff(EL7_FACTS, el7_server.svc.store.snapshot("rhvnode3").facts) == []


@pytest.mark.parametrize("fail,what", [
    ("ip", "ip addr"), ("lsblk", "block devices (lsblk)"), ("ls", "/dev/disk/by-id"),
    ("pvs", "LVM physical volumes (pvs)"), ("dmidecode", "the system serial (dmidecode)"),
    ("curl", None), ("mktemp", None),
])
def test_collector_says_what_it_could_not_read(el7_server, tmp_path, fail, what):
    root, stubs = el7_host(tmp_path)
    before = len(el7_server.svc.store.snapshots("rhvnode3"))
    res, _ = collect(el7_server, "rhvnode3", root, stubs, fail=fail)
    left = list(Path("/tmp").glob("provision-collect.*"))
    assert not [p for p in left if p.stat().st_uid == 0 and str(tmp_path) in p.read_text(errors="replace")]
    if fail in ("curl", "mktemp"):
        assert res.returncode != 0 and len(el7_server.svc.store.snapshots("rhvnode3")) == before
        return
    if what in ("ip addr", "block devices (lsblk)"):
        # without these there are no facts: the server refuses, naming what the collector could not read
        assert res.returncode != 0 and f"could not read {what}" in res.stdout + res.stderr
        assert len(el7_server.svc.store.snapshots("rhvnode3")) == before
        return
    assert res.returncode == 0, res.stderr
    reply = json.loads(res.stdout)
    assert any(w.startswith(f"could not read {what}") for w in reply["warnings"]), reply
    assert f"could not read {what}" in res.stderr


# -- fixtures ---------------------------------------------------------------------------------------
def el7_upload(sysfs_only: bool = False) -> str:
    d = DATA / "el7"
    bonds = "".join(f"### bond {b.name}\n{b.read_text()}\n" for b in sorted((d / "proc/net/bonding").iterdir()))
    link = "" if sysfs_only else f"### ip-link-oneline\n{(d / 'ip-link-oneline.txt').read_text()}\n"
    sysfs = []
    for n in sorted((d / "sys/class/net").iterdir()):
        kind = "bond" if (n / "bonding").is_dir() else "bridge" if (n / "bridge").is_dir() else ""
        master = (n / "master").readlink().name if (n / "master").is_symlink() else ""
        perm = (n / "bonding_slave/perm_hwaddr").read_text().strip() if (n / "bonding_slave").is_dir() else ""
        sysfs.append(f"{n.name} type={(n / 'type').read_text().strip()} address={(n / 'address').read_text().strip()} "
                     f"mtu={(n / 'mtu').read_text().strip()} master={master} kind={kind} perm={perm}")
    return (link + f"### ip-addr-oneline\n{(d / 'ip-addr-oneline.txt').read_text()}\n"
            f"### route4-text\n{(d / 'route4.txt').read_text()}\n### sysfs-net\n" + "\n".join(sysfs) + "\n"
            f"### vlan-config\n{(d / 'proc/net/vlan/config').read_text()}\n" + bonds
            + f"### lsblk-pairs\n{(d / 'lsblk-pairs.txt').read_text()}\n### by-id\n{(d / 'by-id.txt').read_text()}\n"
            f"### pvs\n{(d / 'pvs.txt').read_text()}### firmware\nbios\n### resolv\n"
            f"{(d / 'etc/resolv.conf').read_text()}### end\n")


@pytest.mark.parametrize("sysfs_only", [False, True])
def test_el7_fixture_reproduces_its_facts(sysfs_only):
    assert diff(EL7_FACTS, facts_from_node(el7_upload(sysfs_only), EL7_FACTS)) == []


def test_el7_fixture_without_previous_snapshot_finds_the_install_disk_by_its_root_mount():
    f = facts_from_node(el7_upload(), None)
    assert f.install_disk.id == "wwn-0x5002538e4030a1b2" and f.management.network == "ovirtmgmt"


def test_no_network_source_at_all_is_a_clear_error():
    text = "### warnings\ncould not read ip link: ip: not found\n### end\n"
    with pytest.raises(InputError, match="no network interfaces.*could not read ip link"):
        facts_from_node(text, None)
    assert warnings(text) == ["could not read ip link: ip: not found"]


def test_multipath_and_nvme_fixture():
    d = DATA / "mpath"
    got = disks(json.loads((d / "lsblk.json").read_text()), (d / "by-id.txt").read_text(),
                (d / "pvs.txt").read_text(), None)
    expected = yaml.safe_load((d / "expected-disks.yaml").read_text())
    assert [Disk.model_validate(g) for g in got] == [Disk.model_validate(e) for e in expected]


def test_lsblk_pairs_groups_children_under_their_disk():
    tree = lsblk_pairs((DATA / "el7" / "lsblk-pairs.txt").read_text())
    assert [d["name"] for d in tree["blockdevices"]] == ["sda", "sdb", "sr0"]
    assert "/" in {c.get("mountpoint") for c in tree["blockdevices"][0]["children"]}


@pytest.mark.parametrize("disk,expected_id", [
    ({"wwn": "0x5002538e4030a1b2"}, "wwn-0x5002538e4030a1b2"),
    ({"wwn": "eui.0025388b81b01234"}, "nvme-eui.0025388b81b01234"),
    ({"wwn": "nvme.144d-5333354e-53414d53554e47-00000001"}, "nvme-nvme.144d-5333354e-53414d53554e47-00000001"),
    ({"wwn": "naa.600508b1001c7e4d9f0a2b3c4d5e6f70"}, "wwn-0x600508b1001c7e4d9f0a2b3c4d5e6f70"),
    ({"wwn": "0x600508b1001c7e4d9f0a2b3c4d5e6f70", "multipath": True},
     "dm-uuid-mpath-3600508b1001c7e4d9f0a2b3c4d5e6f70"),
])
def test_every_identifier_maps_to_a_link_udev_creates(disk, expected_id):
    assert Disk.model_validate(disk).id == expected_id


@pytest.mark.parametrize("disk,msg", [
    ({"id": "wwn-eui.0025388b81b01234"}, "nvme-eui.0025388b81b01234"),
    ({"id": "wwn-0x600508b1001c7e4d", "wwn": "0x600508b1001c7e4d", "multipath": True}, "dm-uuid-mpath-"),
])
def test_links_udev_does_not_create_are_refused(disk, msg):
    with pytest.raises(ValueError, match=msg):
        Disk.model_validate(disk)


# -- a kept disk holding the install's VG name ---------------------------------------------------------
def test_kept_disk_with_the_install_vg_name_is_flagged_and_refused(cfg_path, tmp_path):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["nodes"][0]["facts"]["disks"][1]["vgs"] = ["onn"]  # rhvnode3's data disk: an old oVirt Node
    (tmp_path / "inv.yaml").write_text(yaml.safe_dump(data))
    run = lambda *a: CliRunner().invoke(main, ["--config", str(cfg_path), *a])  # noqa: E731
    assert run("node", "import", str(tmp_path / "inv.yaml")).exit_code == 0
    res = run("render", "rhvnode3", "--kind", "kickstart", "--install", "--check")
    assert res.exit_code == 1
    assert "# WARNING: kept disk ata-ST4000NM0035-1V4107_ZC138QJ4 holds volume group onn" in res.output
    assert "(volume groups: onn)" in res.output
    res = run("rebuild", "rhvnode3", "--yes")
    assert res.exit_code == 2 and "holds volume group onn" in res.output and "--accept-foreign-vg" in res.output
    assert run("rebuild", "rhvnode3", "--dry-run", "--accept-foreign-vg").exit_code == 0
    res = run("check", "rhvnode3", "--json")
    row = next(r for r in json.loads(res.output) if r["check"] == "kept disks")
    assert res.exit_code == 1 and row["result"] == "FAIL" and "volume group onn" in row["detail"]
    assert run("render", "rhvnode4", "--kind", "kickstart", "--install", "--check").exit_code == 0
