"""Redfish power driver (sushy) against sushy-tools' Redfish emulator over real HTTP: power and
boot-override round trips read back from the BMC itself, refused credentials, a BMC that rejects
the override and one that does not hold it, virtual media insert and eject, an unreachable BMC,
`provision check`, and the inventory's Redfish fields."""

from __future__ import annotations

import http.server
import threading
import time

import pytest
from pydantic import ValidationError

from provision.domain import Bmc
from provision.power import PowerAuthError, PowerRejected, PowerUnreachable
from provision.power.once import BmcLocks
from provision.power.redfish import RedfishDriver

from .conftest import free_port
from .redfishsim import start_redfish


@pytest.fixture(scope="module")
def bmc(tmp_path_factory):
    sim = start_redfish(tmp_path_factory.mktemp("redfish"))
    yield sim
    sim.stop()


def driver(sim, tmp_path, system="node1", password=None, **kw) -> RedfishDriver:
    pw = tmp_path / f"pw-{system}"
    pw.write_text((password or sim.password) + "\n")
    b = Bmc(driver="redfish", address=sim.url, username="admin", password_file=str(pw),
            system=sim.uuids[system] if system else None)
    return RedfishDriver(system or "node1", b, BmcLocks(), **({"attempts": 1, "backoff": 0.01} | kw))


def _until(what, fn, timeout=40.0):
    """The emulator applies a power change 1 to 11 s after it accepts it, like a real BMC."""
    deadline = time.monotonic() + timeout
    while not fn():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_power_on_and_off_are_applied_by_the_bmc(bmc, tmp_path):
    d = driver(bmc, tmp_path)
    assert d.get_power_state() == "off"
    d.set_power_state("on")
    _until("power on", lambda: bmc.system("node1")["PowerState"] == "On")
    assert d.get_power_state() == "on"
    d.set_power_state("off")
    _until("power off", lambda: bmc.system("node1")["PowerState"] == "Off")
    assert d.get_power_state() == "off"


def test_boot_override_round_trips_target_and_mode(bmc, tmp_path):
    d = driver(bmc, tmp_path)
    d.set_boot_device("network", uefi=True)
    boot = bmc.system("node1")["Boot"]
    assert (boot["BootSourceOverrideTarget"], boot["BootSourceOverrideMode"]) == ("Pxe", "UEFI")
    d.set_boot_device("disk", uefi=False)
    boot = bmc.system("node1")["Boot"]
    assert (boot["BootSourceOverrideTarget"], boot["BootSourceOverrideMode"]) == ("Hdd", "Legacy")


def test_netboot_sets_pxe_then_powers_on_at_most_once_per_key(bmc, tmp_path):
    state = tmp_path / "power"
    d = driver(bmc, tmp_path, state_dir=state)
    _until("node1 off", lambda: d.get_power_state() == "off")
    assert d.netboot(uefi=True, once="node1-build7") == "on"
    assert bmc.system("node1")["Boot"]["BootSourceOverrideTarget"] == "Pxe"
    again = driver(bmc, tmp_path, state_dir=state)  # e.g. a resumed process
    assert again.netboot(uefi=True, once="node1-build7") == "already"
    _until("power on", lambda: d.get_power_state() == "on")
    assert d.netboot(uefi=True, once="node1-build8") == "cycle"  # on: a restart
    d.set_power_state("off")
    _until("power off", lambda: d.get_power_state() == "off")


def test_wrong_password_is_an_auth_error_without_the_password(bmc, tmp_path):
    d = driver(bmc, tmp_path, password="not-the-password")
    with pytest.raises(PowerAuthError) as err:
        d.get_power_state()
    assert bmc.url in str(err.value) and "credentials refused (HTTP 401)" in str(err.value)
    assert "not-the-password" not in str(err.value) and bmc.password not in str(err.value)


def test_a_bmc_that_rejects_the_override_or_does_not_hold_it(bmc, tmp_path):
    with pytest.raises(PowerRejected, match="cannot be set now"):
        driver(bmc, tmp_path, system="rejects").set_boot_device("network", uefi=True)
    with pytest.raises(PowerRejected, match=r"boot override Pxe/UEFI not held: the BMC reports Hdd"):
        driver(bmc, tmp_path, system="ignores").set_boot_device("network", uefi=True)
    with pytest.raises(PowerRejected, match=r"7 Redfish systems .*set bmc.system"):
        driver(bmc, tmp_path, system=None).get_power_state()


class _Image(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        body = b"\0" * 4096
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_virtual_media_insert_and_eject(bmc, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Image)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/boot/node1.iso"
        d = driver(bmc, tmp_path)
        assert d.insert_media(url) == "Cd"
        media = dict(d.check()["virtual_media"])
        assert "CD" in media["Cd"] or "DVD" in media["Cd"]
        assert d.eject_media() is True
        assert d.eject_media() is False  # nothing inserted: nothing to do, and says so
    finally:
        server.shutdown()


def test_an_unreachable_bmc_is_retried_then_reported(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("x\n")
    b = Bmc(driver="redfish", address=f"http://127.0.0.1:{free_port()}", username="admin", password_file=str(pw))
    d = RedfishDriver("node1", b, BmcLocks(), attempts=2, backoff=0.01, timeout=5)
    with pytest.raises(PowerUnreachable, match=r"node node1: BMC http://127\.0\.0\.1:\d+:"):
        d.get_power_state()


def test_check_reports_what_the_bmc_offers(bmc, tmp_path):
    info = driver(bmc, tmp_path).check()
    assert info["power"] in ("on", "off")
    assert {"On", "ForceOff"} <= set(info["reset"]) and {"Pxe", "Hdd", "Cd"} <= set(info["boot_targets"])
    assert any(name == "Cd" for name, _ in info["virtual_media"])


@pytest.mark.parametrize("fields, message", [
    ({"driver": "redfish", "address": "bmc1.example.com"}, "is not a Redfish BMC URL"),
    ({"driver": "redfish", "address": "https://bmc1.example.com/redfish/v1"}, "is not a Redfish BMC URL"),
    ({"driver": "redfish", "address": "https://bmc1.example.com:99999"}, "has a bad port"),
    ({"address": "https://bmc1.example.com"}, "is neither an IP address nor a host name"),
    ({"address": "10.0.0.1", "verify": False}, "verify and system are Redfish settings"),
])
def test_inventory_bmc_fields_are_checked_by_driver(fields, message):
    with pytest.raises(ValidationError, match=message):
        Bmc(username="admin", password_file="/etc/bmc.pw", **fields)
    good = Bmc(driver="redfish", address="HTTPS://BMC1.example.com:8443/", username="admin",
               password_file="/etc/bmc.pw", verify="/etc/pki/bmc-ca.pem")
    assert (good.address, good.label, good.verify) == ("https://bmc1.example.com:8443", "https://bmc1.example.com:8443",
                                                       "/etc/pki/bmc-ca.pem")


def test_provision_check_reaches_the_redfish_bmc(bmc, tmp_path):
    """Through services.build: the node's bmc.driver picks the Redfish driver."""
    import yaml

    from provision import config as config_mod
    from provision import services
    from provision.domain import parse_nodes
    from provision.workflow.nodecheck import run_checks

    from .conftest import EXAMPLE, write_config

    pw = tmp_path / "bmc.pw"
    pw.write_text(bmc.password + "\n")
    data = yaml.safe_load(EXAMPLE.read_text())
    data["nodes"][0]["bmc"] = {"driver": "redfish", "address": bmc.url, "username": "admin",
                               "password_file": str(pw), "system": bmc.uuids["node1"]}
    s = services.build(config_mod.load(write_config(tmp_path)))
    try:
        s.store.import_nodes(parse_nodes(data))
        name = data["nodes"][0]["name"]
        (row,) = [r for r in run_checks(s, name) if r["check"] == "bmc"]
    finally:
        s.close()
    assert row["result"] == "ok", row
    assert row["detail"].startswith(f"BMC {bmc.url} (Sushy Emulator): power ") and "CD virtual media Cd" in row["detail"]
    assert row["detail"].endswith("netboot: one-time boot override Pxe; boot mode UEFI already: not written"), row


def test_vmedia_netboot_step_puts_the_served_iso_in_the_bmcs_cd(bmc, tmp_path):
    """The netboot step of a `boot = "vmedia"` node on a real serve: the server builds and serves
    the build's ISO, the emulated BMC downloads it on InsertMedia, boots its CD once and powers on;
    the `installed` side ejects it and deletes the ISO."""
    import yaml

    from provision.domain import parse_nodes
    from provision.workflow import callbacks, steps

    from .conftest import EXAMPLE, start_server

    boot, pxe = tmp_path / "bootfiles", tmp_path / "media" / "rhvh" / "images" / "pxeboot"
    pxe.mkdir(parents=True)
    boot.mkdir()
    (pxe / "vmlinuz").write_bytes(b"k" * 4096)
    (pxe / "initrd.img").write_bytes(b"i" * 8192)
    (boot / "efiboot.img").write_bytes(b"\xeb\x3c\x90" + bytes(16 * 2048 - 3))  # stand-in FAT image
    pw = tmp_path / "bmc.pw"
    pw.write_text(bmc.password + "\n")
    gen = start_server(tmp_path)
    server = next(gen)
    try:
        data = yaml.safe_load(EXAMPLE.read_text())
        node = data["nodes"][0]
        node["bmc"] = {"driver": "redfish", "address": bmc.url, "username": "admin", "password_file": str(pw),
                       "system": bmc.uuids["node1"], "boot": "vmedia"}
        store, ctx = server.svc.store, server.svc
        store.import_nodes(parse_nodes({"nodes": [node]}))
        build, token = store.arm(node["name"], server.svc.key, 3600)
        store.update_data(node["name"], build_id=build.id)
        steps.netboot(ctx, store.node_state(node["name"]))
        cd = ctx.power(store.get(node["name"]).node)._run(lambda system: RedfishDriver._cd(system))
        assert cd.inserted and cd.image == f"{server.http}/vmedia/{token}/boot.iso"
        assert bmc.system("node1")["Boot"]["BootSourceOverrideTarget"] == "Cd"
        _until("power on", lambda: bmc.system("node1")["PowerState"] == "On")
        served = (tmp_path / "serve.log").read_text()
        assert "Traceback" not in served
        events = [e.message for e in store.events(node["name"])]
        assert any(m.startswith("boot ISO served") for m in events), events
        assert f"/vmedia/{token}/" not in " ".join(events)  # the token stays out of the event log
        iso = server.svc.cfg.paths.state_dir / "vmedia" / f"{build.node}-build-{build.id}.iso"
        assert iso.is_file()
        callbacks._eject(ctx, node["name"], build)
        cd.refresh()
        assert not cd.inserted and not iso.exists()
        ctx.power(store.get(node["name"]).node).set_power_state("off")
    finally:
        gen.close()


# -- vendor profiles (tests/fakes/redfish_bmc.py says what each BMC refuses, and where that is cited) --
def _image_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Image)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_ilo5_mode_read_only_etag_and_refusals_during_post(bmc, tmp_path):
    """iLO 5: the override is set without writing the mode it already has, with If-Match, and is
    asked again while the host is in POST; a mode it would have to change is a clear refusal."""
    d = driver(bmc, tmp_path, system="ilo5", post_attempts=6, post_delay=0.01)
    d.set_power_state("on")  # the host goes through POST: the next boot changes are refused for a while
    assert d.netboot(uefi=True) in ("cycle", "on")
    boot = bmc.system("ilo5")["Boot"]
    assert (boot["BootSourceOverrideTarget"], boot["BootSourceOverrideMode"]) == ("Pxe", "UEFI")
    with pytest.raises(PowerRejected, match="boot mode UEFI cannot be changed to Legacy through Redfish .*"
                                            "read only.*set it in the firmware setup"):
        d.set_boot_device("network", uefi=False)
    d.set_power_state("on")
    stubborn = driver(bmc, tmp_path, system="ilo5", post_attempts=1, post_delay=0.01)
    with pytest.raises(PowerRejected, match="refused the boot change 1 times while the host was in POST"):
        stubborn.set_boot_device("network", uefi=True)
    info = d.check(uefi=True, device="network")
    assert info["vendor"] == "HPE ProLiant DL380 Gen10" and info["problems"] == []
    assert "boot mode UEFI already: not written" in info["plan"] and info["media_home"].startswith("Managers/")


def test_idrac9_virtual_media_under_the_system_ejected_before_an_insert(bmc, tmp_path):
    """iDRAC 9 >= 6 has virtual media under the System only, and refuses an insert into a device
    that holds an image (what a failed build leaves): the driver ejects first."""
    server = _image_server()
    try:
        d = driver(bmc, tmp_path, system="idrac9")
        info = d.check(uefi=True, device="cd")
        assert info["media_home"] == "Systems" and info["problems"] == [], info
        first, second = (f"http://127.0.0.1:{server.server_port}/boot/idrac9-{n}.iso" for n in (1, 2))
        assert d.insert_media(first) == "Cd"
        assert d.insert_media(second) == "Cd"  # a retried build, the first ISO still in
        cd = d._run(lambda system: RedfishDriver._cd(system))
        assert cd.inserted and cd.image == second
        assert d.eject_media() is True
    finally:
        server.shutdown()


def test_supermicro_cd_is_usbcd_and_insert_without_read_only_fields(bmc, tmp_path):
    server = _image_server()
    try:
        d = driver(bmc, tmp_path, system="supermicro")
        url = f"http://127.0.0.1:{server.server_port}/boot/smc.iso"
        assert d.insert_media(url) == "Cd"
        assert d.boot_from("cd", uefi=True) in ("cycle", "on")
        assert bmc.system("supermicro")["Boot"]["BootSourceOverrideTarget"] == "UsbCd"
        assert "one-time boot override UsbCd" in d.check(uefi=True, device="cd")["plan"]
    finally:
        server.shutdown()


def test_xcc_virtual_media_by_patch_and_eject_before_insert(bmc, tmp_path):
    """No InsertMedia action: sushy PATCHes the device. A second insert (a retried build) ejects the
    first image before it inserts the new one."""
    server = _image_server()
    try:
        d = driver(bmc, tmp_path, system="xcc")
        first, second = (f"http://127.0.0.1:{server.server_port}/boot/xcc-{n}.iso" for n in (1, 2))
        assert d.insert_media(first) == "Cd"
        assert d.insert_media(second) == "Cd"
        cd = d._run(lambda system: RedfishDriver._cd(system))
        assert cd.inserted and cd.image == second
        assert d.eject_media() is True and d.eject_media() is False
    finally:
        server.shutdown()
