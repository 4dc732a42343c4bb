"""The real boot chain: a QEMU machine powered over IPMI (ipmi_sim whose chassis control drives
QEMU) gets its address from dnsmasq configured by `provision dhcp export` and boots from
`provision serve`:
- UEFI: OVMF's own PXE loads Debian's shim and a GRUB network image over TFTP, GRUB reads our
  grub.cfg-01-<mac> and loads the kernel and initramfs over TFTP;
- BIOS: SeaBIOS with the NIC's iPXE ROM; DHCP sees iPXE and hands it our /boot/ipxe?mac= URL,
  whose script loads the kernel and initramfs over HTTP.
The initramfs is built here by dracut with its network modules, so dracut itself parses our kernel
command line; a hook standing in for Anaconda fetches the kickstart with the MAC headers, reports
it and the live interfaces, calls back `installed` and powers off. The next boot of the same
machine gets the local-boot config. Each case prints a timeline of its hops, read from the BMC's,
dnsmasq's and provision's own logs."""

from __future__ import annotations

import itertools
import re
import time
from datetime import UTC, datetime

import pytest
from pykickstart.parser import KickstartParser
from pykickstart.version import RHEL8, RHEL9, makeVersion

from provision import config as config_mod
from provision import services

from .vm.lab import MACS, NODE, NODE_IP, SERVER, VmLab, build_initramfs

CFG = "grub.cfg-01-" + MACS[0].replace(":", "-")


@pytest.fixture(scope="session")
def initrd(tmp_path_factory):
    return build_initramfs(tmp_path_factory.mktemp("initramfs") / "initrd.img")


@pytest.fixture(params=["uefi", "bios"])
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
        if "DHCPACK" in line and MACS[0] in line:
            out.append(datetime.strptime(f"{year} {line[:15]}", "%Y %b %d %H:%M:%S").timestamp())
    return out


_VM = re.escape(NODE_IP)
HOPS = {  # what provision's log says at each hop of a boot, per firmware: requests from the VM's address
    "uefi": [("TFTP shimx64.efi", rf"tftp shimx64\.efi to {_VM}:"), ("TFTP grubx64.efi", rf"tftp grubx64\.efi to {_VM}:"),
             (f"TFTP {CFG}", rf"tftp /?{CFG} to {_VM}:"),
             ("TFTP kernel", rf"tftp /?media/vm/images/pxeboot/vmlinuz to {_VM}:"),
             ("TFTP initrd", rf"tftp /?media/vm/images/pxeboot/initrd\.img to {_VM}:")],
    "bios": [("HTTP /boot/ipxe?mac= (iPXE)", rf"http GET /boot/ipxe from {_VM}:"),
             ("HTTP kernel", rf"http GET /media/vm/images/pxeboot/vmlinuz from {_VM}:"),
             ("HTTP initrd", rf"http GET /media/vm/images/pxeboot/initrd\.img from {_VM}:")],
}


def test_a_machine_reinstalls_itself_from_provision(lab):
    config_hop = HOPS[lab.firmware][2 if lab.firmware == "uefi" else 0][1]
    svc = services.build(config_mod.load(lab.cfg), bootcheck=False)
    try:
        node = svc.store.get(NODE).node
        build, _ = svc.store.arm(NODE, svc.key, 3600)
        _until("serve to pick up the arm (another process)", lambda: "(install el)" in lab.fetch(f"/boot/grub/{CFG}"), 30)
        power = svc.workflow.power(node)
        t_power = time.time()
        action = power.netboot(uefi=lab.firmware == "uefi", once=f"{NODE}-build{build.id}")
        assert action == "on", action  # it was off: the chassis control starts QEMU
        _until("the installed callback", lambda: (b := svc.store.active_build(NODE)) and b.boot_local_at, 900)
        _until("the machine to power itself off", lambda: not lab.vm_running(), 120)
        assert power.get_power_state() == "off"

        # what the installer stand-in saw: the kickstart as served, and dracut's interfaces
        sink = lab.tmp / "sink"
        ks = (sink / "ks").read_text()
        for version in (RHEL8, RHEL9):
            parser = KickstartParser(makeVersion(version))
            parser.readKickstartFromString(ks)
            (net,) = [n for n in parser.handler.network.network if n.device == MACS[0]]
            assert (net.bootProto, net.ip, net.netmask, net.gateway) == ("static", NODE_IP, "255.255.255.0", SERVER)
        addrs, links = (sink / "live").read_text().split("---\n")
        assert re.search(rf"^\d+: eno1\s+inet {re.escape(NODE_IP)}/24 ", addrs, re.M), addrs  # ifname= and ip=
        assert re.search(rf"^\d+: eno1: .*link/ether {MACS[0]} ", links, re.M), links
        t_installed = svc.store.active_build(NODE).boot_local_at.replace(tzinfo=UTC).timestamp()

        # the next boot of the same machine: its config now says local boot
        assert "(local boot)" in lab.fetch(f"/boot/grub/{CFG}") and "(local boot)" in lab.fetch(f"/boot/ipxe?mac={MACS[0]}")
        t_second = time.time()
        power.set_boot_device("network", uefi=lab.firmware == "uefi")
        power.set_power_state("on")
        second = _until("the second boot's config fetch",
                        lambda: [(t, line) for t, line in _serve_lines(lab, config_hop) if t >= t_second - 1], 600)
        if lab.firmware == "uefi":  # the TFTP log line carries the config's first line
            assert "(local boot)" in second[0][1], second[0][1]
        power.set_power_state("off")
        _until("power off", lambda: not lab.vm_running(), 60)
    finally:
        svc.close()

    first = [(t, line) for t, line in _serve_lines(lab, config_hop) if t < t_second - 1]
    if lab.firmware == "uefi":
        assert "(install el)" in first[0][1], first[0][1]
    hops = [("power-cycle (IPMI to ipmi_sim; its chassis control starts QEMU)", t_power),
            ("DHCPACK to the boot NIC (dnsmasq)", _dhcp_acks(lab)[0])]
    hops += [(what, _serve_lines(lab, pattern)[0][0]) for what, pattern in HOPS[lab.firmware]]
    hops += [("kickstart fetched with the MAC headers", _serve_lines(lab, rf"http GET /ks/\*+ from {_VM}:")[0][0]),
             ("installed callback accepted", t_installed),
             ("second boot: power on over IPMI", t_second),
             ("second boot: config fetched, local boot", second[0][0])]
    print(f"\n{lab.firmware} boot chain, seconds after the power-cycle:")
    for what, t in hops:
        print(f"  {t - t_power:7.1f}  {what}")
    times = [t for _, t in hops]  # dnsmasq logs whole seconds: a second of slack
    assert all(b >= a - 1 for a, b in itertools.pairwise(times)), hops
    calls = (lab.bmc_dir / "calls.log").read_text()
    assert "set boot pxe" in calls and "set power 1" in calls and "set power 0" in calls
