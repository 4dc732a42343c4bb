"""The real boot chain: a QEMU machine powered over IPMI (ipmi_sim whose chassis control drives
QEMU, with the boot order from the last IPMI boot-device setting) gets its address from dnsmasq
configured by `provision dhcp export` and boots from `provision serve`:
- uefi: OVMF's own PXE loads Debian's shim and a GRUB network image over TFTP, GRUB reads our
  grub.cfg-01-<mac> over TFTP and loads the kernel and initramfs over HTTP ([defaults] grub_fetch);
- bios: SeaBIOS with the NIC's iPXE ROM, exported with --no-ipxe: DHCP hands it pxelinux.0, which
  reads our pxelinux.cfg/01-<mac> and loads the kernel and initramfs over TFTP;
- bond: SeaBIOS with iPXE on the second NIC; management is on VLAN 20 of a bond of NICs 2 and 3.
  DHCP sees iPXE and hands it our /boot/ipxe?mac= URL, whose script loads the kernel and
  initramfs over HTTP; dracut parses our bond=, vlan= and ip= and the installer stand-in fetches
  its kickstart over bond0.20;
- iso and redfish: no DHCP server; the node's virtual-media ISO from a CD drive (BIOS over IPMI),
  and a whole `provision rebuild` through Redfish (sushy-tools and libvirtd; UEFI, the ISO's El
  Torito EFI image).
The initramfs is built here by dracut with its network modules, so dracut itself parses our kernel
command line; a hook standing in for Anaconda fetches the kickstart with the MAC headers, reports
it and the live interfaces, calls back `installed` and powers off. The next boot of the same
machine gets the local-boot config. Each case prints a timeline of its hops, read from the BMC's,
dnsmasq's and provision's own logs."""

from __future__ import annotations

import io
import itertools
import json
import re
import subprocess
import time
from datetime import UTC, datetime

import pytest
from pykickstart.parser import KickstartParser
from pykickstart.version import RHEL8, RHEL9, makeVersion

from provision import config as config_mod
from provision import services

from .vm import virt
from .vm.lab import (
    CASES,
    ISO_CASE,
    MACS,
    NODE,
    NODE_IP,
    REDFISH_CASE,
    SERVER,
    VLAN_SERVER,
    VmLab,
    accel,
    build_initramfs,
)


@pytest.fixture(scope="session")
def initrd(tmp_path_factory):
    return build_initramfs(tmp_path_factory.mktemp("initramfs") / "initrd.img")


@pytest.fixture(params=CASES + (ISO_CASE, REDFISH_CASE))
def lab(request, tmp_path, initrd):
    lab = VmLab(tmp_path, initrd, request.param)
    try:
        yield lab.start()
    finally:
        lab.stop()


def _until(what: str, fn, timeout: float):
    deadline = time.monotonic() + timeout
    while not (value := fn()):
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.5)
    return value


def _serve_lines(lab, pattern: str) -> list[tuple[float, str]]:
    """(epoch, line) of provision's log lines matching `pattern` (logging's asctime is local time)."""
    out = []
    for line in (lab.tmp / "serve.log").read_text().splitlines():
        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ", line)
        if m and re.search(pattern, line):
            out.append((datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + int(m.group(2)) / 1000, line))
    return out


def _dhcp_acks(lab) -> list[float]:
    """dnsmasq's DHCPACKs to the VM's boot NIC (its log's time stamps have whole seconds)."""
    year = datetime.now().year
    out = []
    for line in (lab.tmp / "dhcp.log").read_text().splitlines():  # dnsmasq's --log-facility file
        if "DHCPACK" in line and lab.boot_mac in line:
            out.append(datetime.strptime(f"{year} {line[:15]}", "%Y %b %d %H:%M:%S").timestamp())
    return out


def _hops(lab) -> list[tuple[str, str]]:
    """What provision's log says at each hop of a boot: requests from the address the firmware
    got (the reservation, or the native-VLAN pool when management is on a VLAN)."""
    pxe = r"10\.77\.0\.1\d\d" if lab.case == "bond" else re.escape(NODE_IP)
    cfg = "grub.cfg-01-" + lab.boot_mac.replace(":", "-")
    media = "/?media/vm/images/pxeboot"
    return {
        "uefi": [("TFTP shimx64.efi", rf"tftp shimx64\.efi to {pxe}:"), ("TFTP grubx64.efi", rf"tftp grubx64\.efi to {pxe}:"),
                 (f"TFTP {cfg}", rf"tftp /?{cfg} to {pxe}:"),
                 ("HTTP kernel (GRUB's http module)", rf"http GET /media/vm/images/pxeboot/vmlinuz from {pxe}:"),
                 ("HTTP initrd (GRUB's http module)", rf"http GET /media/vm/images/pxeboot/initrd\.img from {pxe}:")],
        "bios": [("TFTP pxelinux.0", rf"tftp pxelinux\.0 to {pxe}:"), ("TFTP ldlinux.c32", rf"tftp /?ldlinux\.c32 to {pxe}:"),
                 ("TFTP pxelinux.cfg/01-<mac>", rf"tftp /?pxelinux\.cfg/01-{lab.boot_mac.replace(':', '-')} to {pxe}:"),
                 ("TFTP kernel", rf"tftp {media}/vmlinuz to {pxe}:"), ("TFTP initrd", rf"tftp {media}/initrd\.img to {pxe}:")],
        "bond": [("HTTP /boot/ipxe?mac= (iPXE)", rf"http GET /boot/ipxe from {pxe}:"),
                 ("HTTP kernel", rf"http GET /media/vm/images/pxeboot/vmlinuz from {pxe}:"),
                 ("HTTP initrd", rf"http GET /media/vm/images/pxeboot/initrd\.img from {pxe}:")],
    }[lab.case]


def _network_line(lab, ks: str):
    """The kickstart's management network line, as RHEL 8 and RHEL 9 parse it (the same on both)."""
    lines = []
    for version in (RHEL8, RHEL9):
        parser = KickstartParser(makeVersion(version))
        parser.readKickstartFromString(ks)
        device = "bond0" if lab.case == "bond" else lab.boot_mac
        (net,) = [n for n in parser.handler.network.network if n.device == device]
        lines.append(net)
    return lines


def test_a_machine_reinstalls_itself_from_provision(lab):
    if lab.case == ISO_CASE:
        return _boots_its_iso(lab)
    if lab.case == REDFISH_CASE:
        return _rebuilds_through_redfish_virtual_media(lab)
    hops_expected = _hops(lab)
    config_hop = hops_expected[0 if lab.case == "bond" else 2][1]  # its per-MAC boot config
    grub_cfg = "/boot/grub/grub.cfg-01-" + lab.boot_mac.replace(":", "-")
    svc = services.build(config_mod.load(lab.cfg), bootcheck=False)
    try:
        node = svc.store.get(NODE).node
        build, _ = svc.store.arm(NODE, svc.key, 3600)
        _until("serve to pick up the arm (another process)", lambda: "(install el)" in lab.fetch(grub_cfg), 30)
        power = svc.power(node)
        t_power = time.time()
        action = power.netboot(uefi=lab.firmware == "uefi", once=f"{NODE}-build{build.id}")
        assert action == "on", action  # it was off: the chassis control starts QEMU
        _until("the installed callback", lambda: (b := svc.store.active_build(NODE)) and b.boot_local_at, 900)
        _until("the machine to power itself off", lambda: not lab.vm_running(), 120)
        assert power.get_power_state() == "off"

        # what the installer stand-in saw: the kickstart as served, and dracut's interfaces
        sink = lab.tmp / "sink"
        ks = (sink / "ks").read_text()
        addrs, links = (sink / "live").read_text().split("---\n")
        for net in _network_line(lab, ks):
            assert (net.bootProto, net.ip, net.netmask) == ("static", lab.node_ip, "255.255.255.0")
            if lab.case == "bond":
                assert (net.bondslaves, net.vlanid, net.gateway) == ("eno2,eno3", "20", VLAN_SERVER)
            else:
                assert net.gateway == SERVER
        if lab.case == "bond":  # dracut built the bond and its VLAN from bond= and vlan=, named by ifname=
            assert re.search(rf"^\d+: bond0\.20\s+inet {re.escape(lab.node_ip)}/24 ", addrs, re.M), addrs
            assert re.search(r"^\d+: bond0\.20@bond0: .* vlan protocol 802\.1Q id 20 ", links, re.M), links
            assert re.search(r"^\d+: bond0: .* bond mode active-backup ", links, re.M), links
            for nic, mac in (("eno2", MACS[1]), ("eno3", MACS[2])):
                assert re.search(rf"^\d+: {nic}: .* master bond0 .*perm_hwaddr {mac} ", links, re.M), links
        else:
            assert re.search(rf"^\d+: eno1\s+inet {re.escape(lab.node_ip)}/24 ", addrs, re.M), addrs  # ifname=, ip=
            assert re.search(rf"^\d+: eno1: .*link/ether {lab.boot_mac} ", links, re.M), links
        t_installed = svc.store.active_build(NODE).boot_local_at.replace(tzinfo=UTC).timestamp()

        # the next boot of the same machine: its config now says local boot
        assert "(local boot)" in lab.fetch(grub_cfg) and "(local boot)" in lab.fetch(f"/boot/ipxe?mac={lab.boot_mac}")
        t_second = time.time()
        power.set_boot_device("network", uefi=lab.firmware == "uefi")
        power.set_power_state("on")
        second = _until("the second boot's config fetch",
                        lambda: [(t, line) for t, line in _serve_lines(lab, config_hop) if t >= t_second - 1], 600)
        if lab.case != "bond":  # a TFTP log line carries the config's first line
            assert "(local boot)" in second[0][1], second[0][1]
        power.set_power_state("off")
        _until("power off", lambda: not lab.vm_running(), 60)
    finally:
        svc.close()

    first = [(t, line) for t, line in _serve_lines(lab, config_hop) if t < t_second - 1]
    if lab.case != "bond":
        assert "(install el)" in first[0][1], first[0][1]
    hops = [("power-cycle (IPMI to ipmi_sim; its chassis control starts QEMU)", t_power),
            ("DHCPACK to the boot NIC (dnsmasq)", _dhcp_acks(lab)[0])]
    hops += [(what, _serve_lines(lab, pattern)[0][0]) for what, pattern in hops_expected]
    hops += [("kickstart fetched with the MAC headers",
              _serve_lines(lab, rf"http GET /ks/\*+ from {re.escape(lab.node_ip)}:")[0][0]),
             ("installed callback accepted", t_installed),
             ("second boot: power on over IPMI", t_second),
             ("second boot: config fetched, local boot", second[0][0])]
    print(f"\n{lab.case} boot chain (QEMU {accel()}), seconds after the power-cycle:")
    for what, t in hops:
        print(f"  {t - t_power:7.1f}  {what}")
    times = [t for _, t in hops]  # dnsmasq logs whole seconds: a second of slack
    assert all(b >= a - 1 for a, b in itertools.pairwise(times)), hops
    calls = (lab.bmc_dir / "calls.log").read_text()
    assert "set boot pxe" in calls and "set power 1" in calls and "set power 0" in calls
    # both power-ons came after a one-shot network boot: QEMU started with the boot NIC first
    starts = [line.split()[1:] for line in (lab.bmc_dir / "vm.log").read_text().splitlines()]
    assert [s[:3] for s in starts] == [["start", "pxe", "order=net,disk"]] * 2, starts
    if lab.case == "bond":  # the native-VLAN pool answered the untagged PXE request
        acks = [line for line in (lab.tmp / "dhcp.log").read_text().splitlines() if "DHCPACK" in line]
        assert any(re.search(rf"DHCPACK\(br0\) 10\.77\.0\.1\d\d {lab.boot_mac}", a) for a in acks), acks


def _boots_its_iso(lab):
    """The node's virtual-media ISO, fetched as a BMC would, boots the machine from a CD with no
    DHCP server in the namespace: isolinux, our isolinux.cfg, dracut with the static ip= it carries,
    the kickstart, `installed`; then the ISO is no longer served."""
    import pycdlib

    svc = services.build(config_mod.load(lab.cfg), bootcheck=False)
    try:
        node = svc.store.get(NODE).node
        build, token = svc.store.arm(NODE, svc.key, 3600)
        iso_file = lab.bmc_dir / "boot.iso"
        lab.download(f"/vmedia/{token}/boot.iso", iso_file)
        iso = pycdlib.PyCdlib()
        iso.open(str(iso_file))
        try:
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, rr_path="/isolinux/isolinux.cfg")
        finally:
            iso.close()
        assert f"ip={NODE_IP}::{SERVER}:255.255.255.0:{NODE}.lab.example.com:eno1:none" in out.getvalue().decode()
        power = svc.power(node)
        t_power = time.time()
        power.set_power_state("on")  # the CD drive boots first (the BMC's virtual CD)
        _until("the installed callback", lambda: (b := svc.store.active_build(NODE)) and b.boot_local_at, 900)
        _until("the machine to power itself off", lambda: not lab.vm_running(), 120)
        t_installed = svc.store.active_build(NODE).boot_local_at.replace(tzinfo=UTC).timestamp()
        ks = (lab.tmp / "sink" / "ks").read_text()
        for net in _network_line(lab, ks):
            assert (net.bootProto, net.ip, net.gateway) == ("static", NODE_IP, SERVER)
        addrs = (lab.tmp / "sink" / "live").read_text().split("---\n")[0]
        assert re.search(rf"^\d+: eno1\s+inet {re.escape(NODE_IP)}/24 ", addrs, re.M), addrs  # from ip=, no DHCP
        gone = subprocess.run(["ip", "netns", "exec", lab.ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                               f"http://{SERVER}:8080/vmedia/{token}/boot.iso"], capture_output=True, text=True)
        assert gone.stdout == "403"  # installed: the ISO is not served any more
    finally:
        svc.close()
    assert not (lab.tmp / "dhcp.log").exists()  # no DHCP server ran
    ks_at = _serve_lines(lab, rf"http GET /ks/\*+ from {re.escape(NODE_IP)}:")[0][0]
    iso_at = _serve_lines(lab, r"http GET /vmedia/\*+/boot\.iso from ")[0][0]
    print(f"\niso boot chain (QEMU {accel()}), seconds after power-on:")
    for what, t in (("ISO fetched (as a BMC would, before power-on)", iso_at), ("power on over IPMI, CD first", t_power),
                    ("kickstart fetched with the MAC headers", ks_at), ("installed callback accepted", t_installed)):
        print(f"  {t - t_power:7.1f}  {what}")
    assert iso_at <= t_power + 1 < ks_at + 1 and ks_at <= t_installed + 1


def _rebuilds_through_redfish_virtual_media(lab):
    """`provision rebuild` of a node whose BMC speaks Redfish (sushy-tools' emulator, its libvirt
    driver, libvirtd running the machine) with `boot: vmedia`: the step has the BMC insert the
    build's ISO (the emulator downloads it from serve), sets a one-time UEFI boot from Cd and powers
    on; OVMF boots the ISO's El Torito EFI image, whose GRUB reads our grub.cfg from the CD; dracut
    brings up the static address; the stand-in calls back; serve ejects the media on `installed`;
    the rebuild ends `done`. No DHCP server runs in the namespace."""
    started = time.time()
    res = lab.provision("rebuild", NODE, "--yes", timeout=1200)
    assert res.returncode == 0, res.stdout + res.stderr
    svc = services.build(config_mod.load(lab.cfg), bootcheck=False)
    try:
        assert svc.store.node_state(NODE).state == "done"
        events = [(e.ts.replace(tzinfo=UTC).timestamp(), e.message) for e in svc.store.events(NODE)]
    finally:
        svc.close()
    messages = [m for _, m in events]
    inserted = f"virtual media Cd: http://{SERVER}:8080/vmedia/********/boot.iso inserted"
    assert inserted in messages, messages
    assert "one-shot boot from virtual CD set (uefi=True); power on" in messages, messages
    assert "virtual media ejected" in messages, messages
    assert not list((lab.tmp / "var" / "vmedia").glob("*.iso"))  # the build's ISO was removed with the media
    assert not (lab.tmp / "dhcp.log").exists()  # no DHCP server ran

    # what the BMC did: OVMF started the virtual CD, whose GRUB loaded the kernel; the media is out
    console = (lab.bmc_dir / "console.log").read_text(errors="replace")
    assert re.search(r'BdsDxe: starting Boot\w+ "UEFI QEMU DVD-ROM', console), console[-2000:]
    assert "Linux version" in console
    calls = (lab.tmp / "emulator.log").read_text()
    actions = [line for line in calls.splitlines() if re.search(r"POST|PATCH|ERROR|Traceback", line)]
    for call in ("POST /redfish/v1/[^ ]+/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia",
                 "PATCH /redfish/v1/Systems/" + virt.DOMAIN_UUID, "POST /redfish/v1/Systems/[^ ]+/Actions/ComputerSystem.Reset",
                 "POST /redfish/v1/[^ ]+/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia"):
        assert re.search(call, calls), (call, actions)
    domain = virt.domain_xml(lab.uri)
    assert "/usr/share/OVMF/OVMF_CODE_4M.fd" in domain, domain
    assert "device='cdrom'" not in domain, (actions, [m for _, m in events], domain)

    # what the installer stand-in saw: the kickstart as served, the static address from ip=
    ks = (lab.tmp / "sink" / "ks").read_text()
    for net in _network_line(lab, ks):
        assert (net.bootProto, net.ip, net.gateway) == ("static", NODE_IP, SERVER)
    addrs = (lab.tmp / "sink" / "live").read_text().split("---\n")[0]
    assert re.search(rf"^\d+: eno1\s+inet {re.escape(NODE_IP)}/24 ", addrs, re.M), addrs
    engine = json.loads((lab.tmp / "fakes" / "engine.json").read_text())
    (host,) = [h for h in engine["hosts"].values() if h["name"] == NODE]
    assert host["status"] == "up", host  # registered again and activated

    def at(pattern: str) -> float:
        return next(t for t, m in events if re.search(pattern, m))

    iso_at = _serve_lines(lab, rf"http GET /vmedia/\*+/boot\.iso from {re.escape(SERVER)}:")[0][0]
    ks_at = _serve_lines(lab, rf"http GET /ks/\*+ from {re.escape(NODE_IP)}:")[0][0]
    hops = [("rebuild started", started), ("ISO inserted (the BMC downloaded it from serve)", at("inserted$")),
            ("one-time Cd boot set, power on", at("virtual CD set")), ("kickstart fetched with the MAC headers", ks_at),
            ("installed: media ejected", at("^virtual media ejected$")), ("rebuild done", events[-1][0])]
    print(f"\nredfish virtual-media rebuild (QEMU {accel()} under libvirtd), seconds after `provision rebuild`:")
    for what, t in hops:
        print(f"  {t - started:7.1f}  {what}")
    print(f"  (the emulator fetched the ISO at {iso_at - started:.1f})")
    times = [t for _, t in hops]
    assert all(b >= a - 1 for a, b in itertools.pairwise(times)), hops
