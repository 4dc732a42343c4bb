"""Capture before wipe: facts from the engine and from the node, immutable snapshots, diffs,
the drift gate in the rebuild, export and prune."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
import requests
import yaml
from click.testing import CliRunner

from provision.capture.diff import diff, drift
from provision.capture.engine import facts_from_engine
from provision.capture.node import facts_from_node
from provision.cli import main
from provision.domain import Facts, load_yaml, parse_nodes
from provision.integrations.engine import FakeEngine
from provision.integrations.fakestate import FakeState
from provision.workflow import states as S
from provision.workflow.batch import Batch

from .conftest import EXAMPLE
from .fakes.ovirt_json import engine_json
from .test_workflow import wf  # noqa: F401  (fixture)

DATA = Path(__file__).parent / "data"
EXAMPLE_FACTS = parse_nodes(yaml.safe_load(EXAMPLE.read_text()))[0].facts
VARIANTS = parse_nodes(yaml.safe_load((DATA / "variants.yaml").read_text()))


def engine_fixture() -> dict:
    load = lambda f, key: json.loads((DATA / "engine" / f"rhvnode3-{f}.json").read_text())[key]  # noqa: E731
    return {"nics": load("nics", "host_nic"), "attachments": load("networkattachments", "network_attachment"),
            "networks": load("networks", "network")}


def mutated(**changes) -> Facts:
    data = EXAMPLE_FACTS.model_dump(mode="json")
    for path, value in changes.items():
        target = data
        *parents, last = path.split("__")
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        target[int(last) if last.isdigit() else last] = value
    return Facts.model_validate(data)


# -- engine ----------------------------------------------------------------------------------
def test_engine_fixture_maps_bonds_vlan_on_bond_bridged_mgmt_and_ipv6():
    facts = facts_from_engine(engine_fixture(), EXAMPLE_FACTS)
    assert [c.text for c in diff(EXAMPLE_FACTS, facts)] == ["IPv6 of storage changed (none) -> 2001:db8:20::13/64"]
    assert facts.bond("bond0").mode == "802.3ad" and facts.bond("bond1").options == {"miimon": "100", "primary": "ens1f0"}
    assert facts.management.network == "ovirtmgmt" and facts.management.interface == "eno1"
    assert facts.vlan("bond1.20").parent == "bond1"
    assert facts.disks == EXAMPLE_FACTS.disks  # the engine knows no disks: kept from the snapshot


@pytest.mark.parametrize("facts", [n.facts for n in parse_nodes(yaml.safe_load(EXAMPLE.read_text()))]
                         + [n.facts for n in VARIANTS], ids=["rhvnode3", "rhvnode4", "rhvnode5", "kvm1"])
def test_engine_json_round_trip(facts):
    assert facts_from_engine(engine_json(facts), facts) == facts


def test_engine_capture_without_a_previous_snapshot_is_partial():
    facts = facts_from_engine(engine_fixture(), None)
    assert facts.disks == [] and facts.firmware is None and facts.install_disk is None
    assert facts.missing() == ["install disk (no disks known)", "firmware (uefi or bios)"]
    assert facts.management.network == "ovirtmgmt"


def test_node_imported_without_facts_captures_from_engine_then_render_and_rebuild_refuse(cfg_path, tmp_path):
    """facts capture --from engine on a node imported without facts: a partial snapshot is stored and shown;
    render and rebuild refuse (exit 2) naming the missing install disk until a node/file capture."""
    data = yaml.safe_load(EXAMPLE.read_text())
    node = data["nodes"][0]
    full = node.pop("facts")
    data["nodes"] = [node]
    (tmp_path / "bare.yaml").write_text(yaml.safe_dump(data))
    fake_dir = tmp_path / "fakes"
    cfg_path.write_text(cfg_path.read_text() + f'\n[integrations]\nfake_dir = "{fake_dir}"\n')
    run = lambda *a: CliRunner().invoke(main, ["--config", str(cfg_path), *a])  # noqa: E731
    assert run("node", "import", str(tmp_path / "bare.yaml")).exit_code == 0
    state = FakeState(fake_dir / "engine.json")
    with state.edit() as d:
        d.setdefault("hosts", {})["id-rhvnode3"] = {"id": "id-rhvnode3", "name": "rhvnode3", "status": "up",
                                                    "cluster": "ocpcluster",
                                                    "network_json": engine_json(Facts.model_validate(full))}
    res = run("facts", "capture", "rhvnode3", "--from", "engine")
    assert res.exit_code == 0, res.output
    assert "partial snapshot, missing install disk (no disks known) and firmware" in res.output
    shown = run("facts", "show", "rhvnode3")
    assert "partial snapshot: missing install disk" in shown.output
    res = run("render", "rhvnode3", "--kind", "kickstart", "--install")
    assert res.exit_code == 2 and "is partial, missing install disk" in res.output
    res = run("rebuild", "rhvnode3", "--yes")
    assert res.exit_code == 2 and "is partial, missing install disk" in res.output
    data["nodes"][0]["facts"] = full
    (tmp_path / "full.yaml").write_text(yaml.safe_dump(data))
    assert run("facts", "capture", "rhvnode3", "--from", "file", "--file", str(tmp_path / "full.yaml")).exit_code == 0
    assert run("render", "rhvnode3", "--kind", "kickstart", "--install").exit_code == 0


# -- diff / drift ----------------------------------------------------------------------------
@pytest.mark.parametrize("changes,text", [
    ({"nics__0__name": "enp1s0", "networks__0__interface": "enp1s0"}, "NIC renamed eno1 -> enp1s0 (0c:c4:7a:3b:03:01)"),
    ({"nics__3__mac": "0c:c4:7a:3b:03:99"}, "MAC of eno4 changed -> 0c:c4:7a:3b:03:99, was 0c:c4:7a:3b:03:04"),
    ({"bonds__0__options": {"miimon": "200", "lacp_rate": "fast", "xmit_hash_policy": "layer3+4"}},
     "bond bond0 option miimon changed 100 -> 200"),
    ({"bonds__0__slaves": ["eno2", "eno4"]}, "bond bond0 slaves changed eno2, eno3 -> eno2, eno4"),
    ({"networks__1__interface": "bond1"}, "network vmnet moved bond0 -> bond1"),
    ({"networks__2__address": "198.51.100.77/24"}, "IP of storage changed 198.51.100.13/24 -> 198.51.100.77/24"),
    ({"disks": [EXAMPLE_FACTS.disks[0].model_dump(mode="json")]}, "disk ata-ST4000NM0035-1V4107_ZC138QJ4 missing"),
    ({"firmware": "bios"}, "firmware changed uefi -> bios"),
])
def test_each_kind_of_drift_is_reported(changes, text):
    found = drift(EXAMPLE_FACTS, mutated(**changes))
    assert text in [c.text for c in found], [c.text for c in found]


def test_mtu_and_dns_changes_are_not_drift():
    new = mutated(nics__0__mtu=9000, dns_servers=["192.0.2.9"])
    assert diff(EXAMPLE_FACTS, new) and drift(EXAMPLE_FACTS, new) == []


# -- node collector over a running server ------------------------------------------------------
def fake_bin(tmp: Path, fixture: Path, real_ip: bool) -> Path:
    """`ip`, `lsblk` and `ls` that print the EL8 fixture for the collector's exact calls."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    scripts = {
        "lsblk": f'cat "{fixture}/lsblk.json"',
        "ls": f'cat "{fixture}/by-id.txt"',
    }
    if not real_ip:
        scripts["ip"] = f'''case "$*" in
  "-j -d link show") cat "{fixture}/ip-link.json";;
  "-j addr show") cat "{fixture}/ip-addr.json";;
  "-j -4 route show default") cat "{fixture}/route4.json";;
  "-j -6 route show default") cat "{fixture}/route6.json";;
  *) echo "unexpected: ip $*" >&2; exit 1;;
esac'''
    for name, body in scripts.items():
        p = bin_dir / name
        p.write_text(f"#!/bin/sh\n{body}\n")
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def run_collector(srv, name: str, tmp: Path, real_ip: bool) -> subprocess.CompletedProcess:
    res = CliRunner().invoke(main, ["--config", str(srv.config), "facts", "capture", name, "--from", "node"])
    assert res.exit_code == 0, res.output
    url = re.search(r"curl -fsS '(\S+)' \| sh", res.output).group(1)
    script = requests.get(url, timeout=10)
    assert script.status_code == 200 and script.text.startswith("#!/bin/sh")
    fixture = DATA / "node" / "el8"
    env = dict(os.environ, PATH=f"{fake_bin(tmp, fixture, real_ip)}:{os.environ['PATH']}", PROVISION_ROOT=str(fixture))
    return subprocess.run(["sh"], input=script.text, env=env, capture_output=True, text=True, timeout=60), url


def test_collector_under_sh_with_fake_tools_posts_facts(server, tmp_path):
    server.svc.store.import_nodes(parse_nodes(yaml.safe_load(EXAMPLE.read_text())))
    res, url = run_collector(server, "rhvnode3", tmp_path, real_ip=False)
    assert res.returncode == 0, res.stderr
    reply = json.loads(res.stdout)
    assert reply["node"] == "rhvnode3" and reply["changes"] == []
    assert requests.get(url, timeout=10).status_code == 403  # the token is one-time
    snaps = server.svc.store.snapshots("rhvnode3")
    assert [s.source for s in snaps] == ["file", "node"]  # details (disk size, model) differ; no drift
    assert snaps[-1].facts.install_disk.model == "Samsung SSD 860 PRO 512GB"
    assert snaps[-1].facts.networks == snaps[0].facts.networks and snaps[-1].facts.bonds == snaps[0].facts.bonds


def test_collector_with_the_machines_own_ip(server, tmp_path):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["nodes"] = data["nodes"][:1]
    server.svc.store.import_nodes(parse_nodes(data))
    res, _ = run_collector(server, "rhvnode3", tmp_path, real_ip=True)
    assert res.returncode == 0, res.stderr + res.stdout
    reply = json.loads(res.stdout)
    links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True).stdout)
    own = {link["address"] for link in links if link.get("link_type") == "ether" and not link["ifname"].startswith("ifb")}
    snap = server.svc.store.snapshot("rhvnode3")
    assert snap.source == "node" and reply["snapshot"] == snap.id
    assert {n.mac for n in snap.facts.nics} == own
    assert any("missing" in c for c in reply["changes"])  # this machine is not rhvnode3: the diff says so
    assert len(server.svc.store.snapshots("rhvnode3")) == 2  # the old snapshot is kept


def test_collector_upload_garbage_is_refused_and_nothing_stored(server):
    server.svc.store.import_nodes(parse_nodes(yaml.safe_load(EXAMPLE.read_text())))
    token = server.svc.store.create_collection("rhvnode4", 600)
    r = requests.post(f"{server.http}/api/v1/collect/{token}", data="### ip-link\nnot json\n### end\n", timeout=10)
    assert r.status_code == 422 and "not valid JSON" in r.json()["error"]
    assert len(server.svc.store.snapshots("rhvnode4")) == 1
    assert requests.post(f"{server.http}/api/v1/collect/nope", data="x", timeout=10).status_code == 403


# -- the drift gate in a rebuild ---------------------------------------------------------------
def test_rebuild_stops_on_drift_and_resumes_with_accept_drift(wf):  # noqa: F811
    engine_state = FakeState()
    with engine_state.edit() as d:
        d["hosts"] = {"id-rhvnode3": {"id": "id-rhvnode3", "name": "rhvnode3", "status": "up", "cluster": "ocpcluster"}}
    facts = wf.store.snapshot("rhvnode3").facts
    drifted = facts.model_dump(mode="json")
    drifted["nics"][3]["mac"] = "0c:c4:7a:3b:03:99"
    with engine_state.edit() as d:
        d["hosts"]["id-rhvnode3"]["network_json"] = engine_json(Facts.model_validate(drifted))
    wf = dataclasses.replace(wf, engine=FakeEngine(engine_state, poll=0.01))
    run = wf.store.create_rebuild(["rhvnode3"], {})
    result = Batch(wf, ["rhvnode3"], rebuild_id=run.id).run()
    st = wf.store.node_state("rhvnode3")
    assert result.failed == ["rhvnode3"] and st.failed_step == S.CAPTURE
    assert "MAC of eno4 changed -> 0c:c4:7a:3b:03:99" in st.fail_reason and "--accept-drift" in st.fail_reason
    assert [c["verb"] for c in engine_state.read()["calls"]].count("deactivate") == 0  # nothing touched
    Batch(wf, ["rhvnode3"], rebuild_id=run.id, retry={"rhvnode3"}, accept_drift=True).run()
    st = wf.store.node_state("rhvnode3")
    assert st.state != S.FAILED or st.failed_step != S.CAPTURE
    snaps = wf.store.snapshots("rhvnode3")
    assert [s.source for s in snaps] == ["file", "engine"] and st.data["snapshot_id"] == snaps[-1].id


# -- CLI: capture from file, diff, export, prune ---------------------------------------------
def test_capture_diff_export_prune(cfg_path, tmp_path):
    run = lambda *a: CliRunner().invoke(main, ["--config", str(cfg_path), *a])  # noqa: E731
    assert run("node", "import", str(EXAMPLE)).exit_code == 0
    changed = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
    changed["nodes"][0]["facts"]["networks"][2]["address"] = "198.51.100.77/24"
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(changed))
    res = run("facts", "capture", "rhvnode3", "--from", "file", "--file", str(tmp_path / "changed.yaml"))
    assert res.exit_code == 0 and "DRIFT  IP of storage changed 198.51.100.13/24 -> 198.51.100.77/24" in res.output
    res = run("facts", "diff", "rhvnode3")
    assert res.exit_code == 1 and "#1 (file) -> #4 (file): 1 change(s)" in res.output
    assert run("facts", "diff", "rhvnode3", "1", "1").exit_code == 0
    exported = run("facts", "export", "rhvnode3", "rhvnode4").output
    (tmp_path / "exported.yaml").write_text(exported)
    again = parse_nodes(load_yaml(exported, "export"))
    assert again[0].facts.networks[2].address.ip.compressed == "198.51.100.77"
    assert run("node", "import", str(tmp_path / "exported.yaml")).output.endswith("0 new facts snapshot(s)\n")
    res = run("facts", "prune", "rhvnode3", "--keep", "1")
    assert res.exit_code == 0 and "pruned 1 snapshot(s): 1" in res.output
    assert run("facts", "prune", "rhvnode3", "--keep", "0").exit_code == 2
    assert json.loads(run("facts", "show", "rhvnode3", "--json").output)["snapshots"][0]["id"] == 4


def fixture_upload(d: Path, firmware: str) -> str:
    """What the collector sends, assembled from a fixture directory."""
    bonds = "".join(f"### bond {b.name}\n{b.read_text()}\n" for b in sorted((d / "proc/net/bonding").iterdir()))
    parts = [f"### {name}\n{(d / f'{name}.json').read_text()}\n" for name in ("ip-link", "ip-addr", "route4", "route6")]
    return ("".join(parts) + bonds + f"### lsblk\n{(d / 'lsblk.json').read_text()}\n### by-id\n{(d / 'by-id.txt').read_text()}"
            f"### firmware\n{firmware}\n### resolv\n{(d / 'etc/resolv.conf').read_text()}### end\n")


@pytest.mark.parametrize("host,firmware,facts", [
    ("el8", "uefi", EXAMPLE_FACTS),  # oVirt Node: VDSM bridges, two bonds, VLAN on a bond, SATA disks by WWN
    ("el9", "bios", VARIANTS[0].facts),  # EL9 KVM host: mgmt on a VLAN over LACP, IPv6, NVMe by EUI, virbr0
])
def test_node_fixtures_reproduce_their_facts(host, firmware, facts):
    assert diff(facts, facts_from_node(fixture_upload(DATA / "node" / host, firmware), facts)) == []


def test_node_capture_without_a_previous_snapshot_finds_mgmt_and_install_disk():
    f = facts_from_node(fixture_upload(DATA / "node" / "el9", "bios"), None)
    assert f.install_disk.id == "nvme-eui.0025388b81b01234" and f.install_disk.serial == "S437NA0M123456"
    mgmt = f.management
    assert (mgmt.interface, str(mgmt.address), str(mgmt.gateway), str(mgmt.gateway6)) == (
        "bond0.10", "10.10.10.21/24", "10.10.10.1", "2001:db8:10::1")
    assert f.bond("bond0").options == {"miimon": "100"} and "virbr0" not in [a.interface for a in f.networks]


def test_capture_and_diff_a_whole_cluster_in_one_table(cfg_path, tmp_path):
    run = lambda *a: CliRunner().invoke(main, ["--config", str(cfg_path), *a])  # noqa: E731
    assert run("node", "import", str(EXAMPLE)).exit_code == 0
    changed = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
    changed["nodes"][0]["facts"]["networks"][2]["address"] = "198.51.100.77/24"
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(changed))
    res = run("facts", "capture", "--cluster", "ocpcluster", "--from", "file", "--file", str(tmp_path / "changed.yaml"),
              "--parallel", "2")
    assert res.exit_code == 0, res.output
    rows = {line.split()[0]: line for line in res.stdout.splitlines()[1:-1]}
    assert "1 change(s) (DRIFT)" in rows["rhvnode3"] and "no changes" in rows["rhvnode4"]
    assert res.stdout.splitlines()[-1] == "3 node(s): 3 captured, 0 failed"
    res = run("facts", "diff", "--cluster", "ocpcluster")
    assert res.exit_code == 1
    rows = {line.split()[0]: line for line in res.stdout.splitlines()[1:-1]}
    assert "DRIFT" in rows["rhvnode3"] and "IP of storage changed 198.51.100.13/24 -> 198.51.100.77/24" in rows["rhvnode3"]
    assert "one snapshot" in rows["rhvnode4"]
    assert res.stdout.splitlines()[-1] == "3 node(s): 1 drifted (rhvnode3)"
    # a node the capture cannot serve is a row of the table, and the command exits 1
    res = run("facts", "capture", "rhvnode3", "rhvnode4", "--from", "engine")
    assert res.exit_code == 1 and "2 node(s): 0 captured, 2 failed" in res.stdout
    assert all(len(line.split()) > 3 and "\n" not in line for line in res.stdout.splitlines()[1:-1])
    assert run("facts", "capture", "rhvnode3", "rhvnode4", "--from", "node").exit_code == 2  # needs --ssh
    assert run("facts", "diff", "rhvnode3", "rhvnode4", "1").exit_code == 2  # ids go with one node
