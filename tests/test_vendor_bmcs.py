"""A whole rebuild against each vendor profile of the test BMC (tests/fakes/redfish_bmc.py: HPE iLO 5,
Dell iDRAC 9 >= 6, Supermicro X11, Lenovo XCC), over the network and from virtual media: the real
Redfish driver (sushy) over HTTP to sushy-tools' emulator taught what those BMCs refuse, a real
`provision serve` serving the build's ISO that the emulated BMC downloads, and the engine, IPA and
Satellite as in-process fakes. And preflight: what a BMC cannot do stops the node before anything
is deleted."""

from __future__ import annotations

import time

import pytest
import yaml

from provision import config as config_mod
from provision import services
from provision.domain import parse_nodes
from provision.integrations.dns import FakeDns
from provision.integrations.engine import FakeEngine
from provision.integrations.fakestate import FakeState
from provision.integrations.ipa import FakeIpa
from provision.integrations.satellite import FakeSatellite
from provision.power.redfish import RedfishDriver
from provision.workflow import callbacks
from provision.workflow import states as S
from provision.workflow.batch import Batch

from .conftest import start_server
from .redfishsim import start_redfish
from .workflow_helpers import FakeInstaller, loopback_inventory, seed_fakes, with_fakes

NODE = "rhvnode3"


@pytest.fixture(scope="module")
def bmc(tmp_path_factory):
    sim = start_redfish(tmp_path_factory.mktemp("vendors"), post_refusals=2)
    yield sim
    sim.stop()


@pytest.fixture
def lab(tmp_path, bmc):
    """A serve for the build's ISO, and services on the same store with fake integrations and the
    real power drivers (a retry during POST waits 0.05 s here, 5 s by default)."""
    pxe = tmp_path / "media" / "rhvh" / "images" / "pxeboot"
    pxe.mkdir(parents=True)
    (pxe / "vmlinuz").write_bytes(b"k" * 4096)
    (pxe / "initrd.img").write_bytes(b"i" * 8192)
    (tmp_path / "bootfiles").mkdir(exist_ok=True)
    (tmp_path / "bootfiles" / "efiboot.img").write_bytes(b"\xeb\x3c\x90" + bytes(16 * 2048 - 3))
    gen = start_server(tmp_path, extra="[defaults]\npoll_interval = 0.02\nredfish_post_delay = 0.05\n"
                                       "step_timeouts = {drain = 5, installing = 60, enroll = 30, register = 5}\n")
    server = next(gen)
    states = {k: FakeState() for k in ("engine", "ipa", "sat")}
    seed_fakes(states["engine"], states["ipa"], states["sat"])
    svc = services.build(config_mod.load(server.config), bootcheck=False, engine=FakeEngine(states["engine"], poll=0.01),
                         ipa=FakeIpa(states["ipa"]), satellite=FakeSatellite(states["sat"]), dns=FakeDns())
    svc = with_fakes(svc, states)
    (tmp_path / "bmc.pw").write_text(bmc.password + "\n")
    yield svc
    svc.close()
    gen.close()


def _import(svc, bmc, tmp_path, vendor: str, boot: str, firmware: str = "uefi") -> None:
    data = loopback_inventory(pw_file=str(tmp_path / "bmc.pw"))
    node = next(n for n in data["nodes"] if n["name"] == NODE)
    node["bmc"] = {"driver": "redfish", "address": bmc.url, "username": "admin", "password_file": str(tmp_path / "bmc.pw"),
                   "system": bmc.uuids[vendor], "boot": boot}
    node["facts"]["firmware"] = firmware
    data["nodes"] = [node]
    svc.store.import_nodes(parse_nodes(yaml.safe_load(yaml.safe_dump(data))))


def _rebuild(svc) -> tuple:
    installing = lambda name: name == NODE and svc.store.node_state(name).state == S.INSTALLING  # noqa: E731
    installer = FakeInstaller(svc, installing, callbacks.handle)
    installer.start()
    try:
        run = svc.store.create_rebuild([NODE], {})
        return Batch(svc, [NODE], rebuild_id=run.id).run(), installer
    finally:
        installer.stop.set()


@pytest.mark.parametrize("vendor,boot", [("ilo5", "network"), ("ilo5", "vmedia"), ("idrac9", "vmedia"),
                                         ("supermicro", "network"), ("supermicro", "vmedia"), ("xcc", "vmedia")])
def test_a_rebuild_completes_against_each_vendor_bmc(lab, bmc, tmp_path, vendor, boot):
    _import(lab, bmc, tmp_path, vendor, boot)
    result, installer = _rebuild(lab)
    state = lab.store.node_state(NODE)
    assert result.done == [NODE], (state.state, state.fail_reason)
    assert NODE in installer.replies
    system = bmc.system(vendor)
    want = {"network": "Pxe", "vmedia": "UsbCd" if vendor == "supermicro" else "Cd"}[boot]
    assert system["Boot"]["BootSourceOverrideTarget"] == want
    events = [e.message for e in lab.store.events(NODE)]
    said = next(m for m in events if m.startswith(f"bmc: BMC {bmc.url}"))  # preflight said what netboot would do
    assert "boot mode UEFI already: not written" in said and f"one-time boot override {want}" in said, said
    if boot == "vmedia":  # the installed side takes it out, after its answer
        deadline = time.monotonic() + 60
        while not any(e.message == "virtual media ejected" for e in lab.store.events(NODE)):
            assert time.monotonic() < deadline, [e.message for e in lab.store.events(NODE)]
            time.sleep(0.05)
        cd = lab.power(lab.store.get(NODE).node)._run(RedfishDriver._cd)
        assert not cd.inserted
    host = next(h for h in lab.fakes["engine"].read()["hosts"].values() if h["name"] == NODE)
    assert host["status"] == "up" and host["fence_agents"][0]["type"] == "redfish"


def test_preflight_stops_a_node_whose_bmc_cannot_do_what_netboot_needs_before_anything_is_deleted(lab, bmc, tmp_path):
    """iLO 5 reports UEFI and will not change the mode: a BIOS node would be retired and then fail to
    netboot. Preflight reads the BMC and stops it, with the reason, before retire."""
    _import(lab, bmc, tmp_path, "ilo5", "network", firmware="bios")
    before = bmc.system("ilo5")["Boot"]
    result, _ = _rebuild(lab)
    state = lab.store.node_state(NODE)
    assert result.done == [] and state.state == S.FAILED and state.failed_step == S.PREFLIGHT, state
    assert "reports boot mode UEFI and the node boots Legacy" in state.fail_reason
    assert "set the boot mode in the firmware setup" in state.fail_reason
    verbs = [c["verb"] for c in lab.fakes["engine"].read()["calls"]]
    assert "remove" not in verbs and "deactivate" not in verbs
    assert f"{NODE}.lab.example.com" in lab.fakes["ipa"].read()["hosts"]
    assert bmc.system("ilo5")["Boot"] == before  # nothing was written to the BMC


def test_check_shows_the_bmc_gate_per_node(lab, bmc, tmp_path):
    from provision.workflow.nodecheck import run_checks

    _import(lab, bmc, tmp_path, "ilo5", "network", firmware="bios")
    (row,) = [r for r in run_checks(lab, NODE) if r["check"] == "bmc"]
    assert row["result"] == "FAIL" and "does not offer" in row["detail"], row
    _import(lab, bmc, tmp_path, "idrac9", "vmedia")
    (row,) = [r for r in run_checks(lab, NODE) if r["check"] == "bmc"]
    assert row["result"] == "ok" and "Dell Inc. PowerEdge R650" in row["detail"], row
    assert "under Systems" in row["detail"] and "eject, insert the build's ISO" in row["detail"], row
