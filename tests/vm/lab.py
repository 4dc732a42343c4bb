"""A virtual machine with real firmware on a private network, for the boot-chain test.

A network namespace holds a bridge (10.77.0.1/24, untagged) and three tap devices for the VM's
three NICs; for the "bond" case also an address on VLAN 20 of that bridge (10.77.20.1/24), given
by vlan.py in user space because the kernels this runs on have no 802.1Q support. Inside it run `provision
serve` (HTTP :8080, TFTP :69), dnsmasq as the DHCP server with the configuration `provision dhcp
export` wrote, and a small HTTP sink where the installer stand-in reports. Three cases:
- "uefi": q35 with OVMF's own PXE on NIC 1, management on that plain NIC;
- "bios": SeaBIOS with the NIC's iPXE ROM, exported with --no-ipxe so it loads pxelinux.0;
- "bond": SeaBIOS and iPXE on NIC 2, management on VLAN 20 of a bond of NICs 2 and 3: the
  firmware asks untagged, so dnsmasq also has a pool for the native VLAN (the site's, not the
  export's), and dracut brings up bond0.20 from our bond=, vlan= and ip= arguments;
- "iso": SeaBIOS booting the node's virtual-media ISO (/vmedia/<token>/boot.iso) from a CD drive,
  with no DHCP server in the namespace: isolinux, then dracut with our static ip= arguments;
- "redfish": a whole `provision rebuild` of a node with `bmc.driver: redfish` and `boot: vmedia`,
  against sushy-tools' emulator with its libvirt driver and libvirtd managing the machine (virt.py):
  OVMF boots the build's ISO from the virtual CD through its UEFI El Torito image (GRUB), no DHCP
  server in the namespace; the engine, IPA and Satellite are provision's file-backed fakes.
In the other cases an ipmi_sim BMC on loopback (outside the namespace) has a chassis_control program that
starts and stops `qemu-system-x86_64` in the namespace (chassis_qemu.sh). Every process is
stopped by PID and the namespace is removed afterwards, also on failure."""

from __future__ import annotations

import functools
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ..ipmisim import free_udp_port
from . import virt

HERE = Path(__file__).parent
REPO = HERE.parent.parent
KVER = sorted(p.name[len("vmlinuz-"):] for p in Path("/boot").glob("vmlinuz-*"))
OVMF_CODE, OVMF_VARS = Path("/usr/share/OVMF/OVMF_CODE_4M.fd"), Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
SERVER, NODE_IP = "10.77.0.1", "10.77.0.13"
VLAN_SERVER, VLAN_NODE_IP = "10.77.20.1", "10.77.20.13"  # management on VLAN 20 ("bond")
NATIVE_POOL = ("10.77.0.100", "10.77.0.150")  # the site's pool on the native VLAN ("bond")
MACS = ["52:54:00:77:00:01", "52:54:00:77:00:02", "52:54:00:77:00:03"]
NODE = "vmnode"
CASES = ("uefi", "bios", "bond")
ISO_CASE = "iso"  # BIOS, booting the node's virtual-media ISO from a CD, no DHCP server at all
REDFISH_CASE = "redfish"  # UEFI, a rebuild through Redfish virtual media (sushy-tools + libvirt), no DHCP
REDFISH_PORT = 8000
ISO_GRUB_MODULES = "iso9660 part_gpt fat normal linux configfile search search_label echo all_video efi_gop gzio"
GRUB_MODULES = "efinet tftp http net linux normal echo configfile efi_gop all_video gzio part_gpt fat"
PXELINUX = (Path("/usr/lib/PXELINUX/pxelinux.0"), Path("/usr/lib/syslinux/modules/bios/ldlinux.c32"))
ISOLINUX = Path("/usr/lib/ISOLINUX/isolinux.bin")


def run(*cmd: str, ns: str | None = None, **kw) -> subprocess.CompletedProcess:
    full = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    return subprocess.run(full, check=True, capture_output=True, text=True, timeout=120, **kw)


def build_initramfs(out: Path) -> Path:
    """Debian's kernel and an initramfs built here by dracut with its network modules, so our ip=,
    bond=, vlan=, ifname= and nameserver= arguments are parsed by dracut itself; the hooks in this
    directory stand in for Anaconda (root.sh claims the root, hook.sh does the installer's part)."""
    run("dracut", "-q", "--force", "--no-hostonly", "--kver", KVER[-1], "--no-early-microcode",
        "-m", "base network-legacy url-lib",
        "--omit", "systemd systemd-initrd systemd-networkd dracut-systemd plymouth i18n",
        "--drivers", "virtio_net virtio_pci bonding 8021q af_packet", "--install", "curl sed grep cat head",
        "--include", str(HERE / "hook.sh"), "/lib/dracut/hooks/initqueue/settled/90-provision.sh",
        "--include", str(HERE / "root.sh"), "/lib/dracut/hooks/cmdline/99-provision-root.sh",
        "--include", str(HERE / "finished.sh"), "/lib/dracut/hooks/initqueue/finished/90-provision.sh",
        str(out))
    return out


@functools.cache
def accel() -> str:
    """"kvm" when /dev/kvm can run this kernel (it prints its banner on the serial console within
    20 s), else "tcg". Some hosts expose /dev/kvm that cannot: under nested virtualisation here, a
    KVM guest never reaches the kernel's first line and OVMF stops with "KVM internal error"."""
    found = "tcg"
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        probe = subprocess.Popen(["qemu-system-x86_64", "-accel", "kvm", "-machine", "pc", "-m", "256",
                                  "-display", "none", "-nodefaults", "-no-reboot", "-serial", "stdio",
                                  "-kernel", f"/boot/vmlinuz-{KVER[-1]}", "-append", "console=ttyS0 panic=-1"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            found = _banner(probe)
        finally:
            probe.kill()
            probe.wait()
    return found


def _banner(probe: subprocess.Popen, timeout: float = 20.0) -> str:
    sel = selectors.DefaultSelector()
    sel.register(probe.stdout, selectors.EVENT_READ)
    seen, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(max(0.0, deadline - time.monotonic())):
            chunk = os.read(probe.stdout.fileno(), 4096)
            if not chunk:
                break
            seen = (seen + chunk)[-4096:]
            if b"Linux version" in seen:
                return "kvm"
    return "tcg"


def inventory(password_file: Path, bmc_port: int, case: str) -> dict:
    bmc = {"address": "127.0.0.1", "port": bmc_port, "username": "admin", "password_file": str(password_file)}
    if case == REDFISH_CASE:  # the emulator, in the namespace: serve (the eject) and rebuild run there too
        bmc = {"driver": "redfish", "address": f"http://{SERVER}:{REDFISH_PORT}", "system": virt.DOMAIN_UUID,
               "username": "admin", "password_file": str(password_file), "boot": "vmedia"}
    if case == "bond":  # management on VLAN 20 of the bond; the plain NIC carries storage
        networks = [{"network": "ovirtmgmt", "interface": "bond0.20", "management": True,
                     "address": f"{VLAN_NODE_IP}/24", "gateway": VLAN_SERVER},
                    {"network": "storage", "interface": "eno1", "address": "198.51.100.13/24"}]
    else:
        networks = [{"network": "ovirtmgmt", "interface": "eno1", "management": True,
                     "address": f"{NODE_IP}/24", "gateway": SERVER},
                    {"network": "storage", "interface": "bond0.20", "address": "198.51.100.13/24"}]
    return {"nodes": [{
        "name": NODE, "fqdn": f"{NODE}.lab.example.com", "cluster": "vmlab", "profile": "el",
        "bmc": bmc,
        "facts": {
            "firmware": "uefi" if case in ("uefi", REDFISH_CASE) else "bios",
            "nics": [{"name": f"eno{i + 1}", "mac": m} for i, m in enumerate(MACS)],
            "bonds": [{"name": "bond0", "mode": "active-backup", "slaves": ["eno2", "eno3"],
                       "options": {"miimon": "100"}}],
            "vlans": [{"id": 20, "parent": "bond0"}],
            "networks": networks,
            "disks": [{"wwn": "0x5002538e4030a1b2", "serial": "VMDISK1", "size_gb": 20, "install": True}],
            "dns_servers": [SERVER],
        }}]}


class VmLab:
    """One of CASES (see the module's docstring)."""

    def __init__(self, tmp: Path, initrd: Path, case: str) -> None:
        assert case in CASES + (ISO_CASE, REDFISH_CASE), case
        self.tmp, self.initrd, self.case = tmp, initrd, case
        self.firmware = "uefi" if case in ("uefi", REDFISH_CASE) else "bios"
        self.boot_nic = 1 if case == "bond" else 0  # the management network's first NIC
        self.boot_mac = MACS[self.boot_nic]
        self.node_ip = VLAN_NODE_IP if case == "bond" else NODE_IP  # where the installer's requests come from
        self.ns = f"pvvm{os.getpid()}"
        self.procs: list[subprocess.Popen] = []
        self.bmc_dir = tmp / "bmc"
        self.cfg = tmp / "provision.toml"

    # -- set-up -------------------------------------------------------------------------------
    def start(self) -> VmLab:
        run("ip", "netns", "add", self.ns)
        script = (f"ip link set lo up && ip link add br0 type bridge && ip addr add {SERVER}/24 dev br0 && "
                  "ip link set br0 up && for t in tap0 tap1 tap2; do ip tuntap add $t mode tap && "
                  "ip link set $t master br0 && ip link set $t up; done && "
                  "ip link add vtrunk type veth peer name vtrunkp && ip link set vtrunk master br0 && "
                  "ip link set vtrunk up && ip link set vtrunkp up")
        run("sh", "-c", script, ns=self.ns)
        self._files()
        if self.case == REDFISH_CASE:
            self._redfish()
        else:
            self._bmc()
        if self.case == "bond":  # the host's address on VLAN 20: vl20, a tap fed by vlan.py
            self._spawn("vlan", [sys.executable, str(HERE / "vlan.py"), "vtrunkp", "20", "vl20", f"{VLAN_SERVER}/24"])
            deadline = time.monotonic() + 30
            while "ready" not in (self.tmp / "vlan.log").read_text():
                assert time.monotonic() < deadline, (self.tmp / "vlan.log").read_text()
                time.sleep(0.1)
        p = [sys.executable, "-m", "provision", "--config", str(self.cfg)]
        subprocess.run(p + ["node", "import", str(self.tmp / "nodes.yaml")], check=True, capture_output=True)
        subprocess.run(p + ["dhcp", "export", "--format", "dnsmasq", "--next-server", SERVER, "-o",
                            str(self.tmp / "dnsmasq.conf")] + (["--no-ipxe"] if self.case == "bios" else []),
                       check=True, capture_output=True)
        self._spawn("serve", p + ["serve"])
        # "bond": the export reserves the management address on VLAN 20 and says the firmware asks
        # untagged; the site's native-VLAN pool (ours here) answers that request
        pool = [f"--dhcp-range={NATIVE_POOL[0]},{NATIVE_POOL[1]},255.255.255.0,1h"] if self.case == "bond" else []
        if self.case not in (ISO_CASE, REDFISH_CASE):  # the virtual-media cases have no DHCP server at all
            self._spawn("dnsmasq", ["dnsmasq", "--no-daemon", "--port=0", "--interface=br0", "--bind-interfaces",
                                    f"--conf-file={self.tmp / 'dnsmasq.conf'}", "--log-dhcp", *pool,
                                    f"--log-facility={self.tmp / 'dhcp.log'}",
                                    f"--dhcp-leasefile={self.tmp / 'leases'}"])
        self._spawn("sink", [sys.executable, str(HERE / "sink.py"), SERVER, "8099", str(self.tmp / "sink")])
        self._wait_http(f"http://{SERVER}:8080/healthz")
        return self

    def _files(self) -> None:
        t = self.tmp
        boot, pxe = t / "bootfiles", t / "media" / "vm" / "images" / "pxeboot"
        boot.mkdir()
        pxe.mkdir(parents=True)
        (t / "sink").mkdir()
        (t / "var").mkdir()
        shutil.copy("/usr/lib/shim/shimx64.efi.signed", boot / "shimx64.efi")  # Debian's shim loads grubx64.efi
        run("grub-mkimage", "-O", "x86_64-efi", "-o", str(boot / "grubx64.efi"), "-p", "(tftp)/",
            *GRUB_MODULES.split())  # RHEL-like: GRUB reads grub.cfg-01-<mac> from its own directory
        for f in PXELINUX + (ISOLINUX,):  # Debian's pxelinux, isolinux and the ldlinux.c32 both load next
            shutil.copy(f, boot / f.name)
        shutil.copy(f"/boot/vmlinuz-{KVER[-1]}", pxe / "vmlinuz")
        (pxe.parent.parent / ".treeinfo").write_text("[general]\nname = provision VM lab\n")  # the gate HEADs the tree
        shutil.copy(self.initrd, pxe / "initrd.img")
        if self.case == REDFISH_CASE:  # the media's own UEFI El Torito image, as `media import` copies it
            self._efiboot(pxe.parent / "efiboot.img")
        for f in (boot / "shimx64.efi", boot / "grubx64.efi", pxe / "vmlinuz", pxe / "initrd.img"):
            f.chmod(0o644)
        (t / "bmc.pw").write_text("password\n")
        self.bmc_port = free_udp_port()
        (t / "nodes.yaml").write_text(yaml.safe_dump(inventory(t / "bmc.pw", self.bmc_port, self.case)))
        enroll = " provision.enroll=1" if self.case == REDFISH_CASE else ""  # a whole rebuild waits for it
        self.cfg.write_text(f"""[server]
http_bind = "{SERVER}:8080"
tftp_bind = "{SERVER}:69"
public_url = "http://{SERVER}:8080"
access_log = true
db_url = "sqlite:///{t}/provision.db"
admin_token_file = "{t}/admin.token"
secret_key_file = "{t}/secret.key"
[paths]
state_dir = "{t}/var"
bootfiles = "{boot}"
media = "{t}/media"
templates = "{REPO}"
[defaults]
el_media = "vm"
grub_fetch = "{'http' if self.case == 'uefi' else 'tftp'}"
kernel_args = "console=ttyS0 provision.sink=http://{SERVER}:8099 provision.ip={self.node_ip}{enroll}"
""" + (f"""[integrations]
fake_dir = "{t}/fakes"
""" if self.case == REDFISH_CASE else ""))

    def _bmc(self) -> None:
        d = self.bmc_dir
        (d / "state").mkdir(parents=True)
        shutil.copy(HERE / "chassis_qemu.sh", d / "chassis_control.sh")
        shutil.copy(OVMF_VARS, d / "vars.fd")
        uefi = self.firmware == "uefi"
        # UEFI: OVMF's own PXE (no NIC ROM); BIOS: the iPXE ROM on the boot NIC only
        nics = " ".join(f"-netdev tap,id=n{i},ifname=tap{i},script=no,downscript=no "
                        f"-device virtio-net-pci,netdev=n{i},mac={m}"
                        + (",romfile=" if uefi or i != self.boot_nic else "")
                        + ("$nic" if i == self.boot_nic else "")
                        for i, m in enumerate(MACS))
        machine = (f"-machine q35 -drive if=pflash,format=raw,readonly=on,file={OVMF_CODE} "
                   f"-drive if=pflash,format=raw,file={d}/vars.fd") if uefi else "-machine pc"
        start = d / "start-vm"
        # the boot order follows the boot device last set over IPMI, as VirtualBMC maps it for
        # libvirt (bootindex, which SeaBIOS and OVMF both honour): pxe -> the boot NIC first, disk ->
        # the disk only, else the disk then the boot NIC. The disk is blank: nothing boots from it.
        # the ISO case: the node's boot ISO (fetched by the test) in a CD drive that boots first
        cdrom = (f"-drive if=none,id=cd0,media=cdrom,format=raw,file={d}/boot.iso -device ide-cd,drive=cd0,bootindex=0"
                 if self.case == ISO_CASE else "")
        start.write_text(f"""#!/bin/sh
case "$1" in
  pxe) nic=",bootindex=1"; disk=",bootindex=2"; order=net,disk;;
  disk) nic=""; disk=",bootindex=1"; order=disk;;
  *) nic=",bootindex=2"; disk=",bootindex=1"; order=disk,net;;
esac
echo "$(date +%s.%N) start $1 order={'cd,' if cdrom else ''}$order accel={accel()}" >> {d}/vm.log
exec ip netns exec {self.ns} qemu-system-x86_64 -accel {accel()} {machine} -m 1024 -display none -no-reboot \\
  -daemonize -pidfile {d}/qemu.pid -chardev file,id=s0,path={d}/console.log,append=on -serial chardev:s0 \\
  -drive if=none,id=d0,format=raw,file={d}/disk.img -device virtio-blk-pci,drive=d0$disk {cdrom} {nics}
""")
        start.chmod(0o755)
        with open(d / "disk.img", "wb") as disk:
            disk.truncate(64 << 20)
        (d / "lan.conf").write_text(f"""name "{NODE}"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 {self.bmc_port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcd77
  endlan
  chassis_control "{d / 'chassis_control.sh'}"
  user 2 true "admin" "password" admin 10 none md2 md5 straight
""")
        (d / "bmc.emu").write_text("mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 "
                                   "persist_sdr\nmc_enable 0x20\n")
        exe = shutil.which("ipmi_sim") or "/usr/bin/ipmi_sim"
        self.procs.append(subprocess.Popen([exe, "-c", str(d / "lan.conf"), "-f", str(d / "bmc.emu"), "-s",
                                            str(d / "state"), "-n"], stdout=open(d / "sim.log", "w"),
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))

    def _efiboot(self, out: Path) -> None:
        """A FAT image with GRUB as EFI/BOOT/BOOTX64.EFI whose prefix is /EFI/BOOT on the device it
        booted from, as the installer ISO's images/efiboot.img has (there shim, then GRUB): booted
        from the CD's El Torito entry, GRUB reads /EFI/BOOT/grub.cfg from the ISO 9660 volume."""
        efi = self.tmp / "BOOTX64.EFI"
        run("grub-mkimage", "-O", "x86_64-efi", "-o", str(efi), "-p", "/EFI/BOOT", *ISO_GRUB_MODULES.split())
        run("mkfs.vfat", "-C", "-n", "EFIBOOT", str(out), "4096")
        run("mmd", "-i", str(out), "::/EFI", "::/EFI/BOOT")
        run("mcopy", "-i", str(out), str(efi), "::/EFI/BOOT/BOOTX64.EFI")
        out.chmod(0o644)

    def _redfish(self) -> None:
        """libvirtd and the machine, then sushy-tools' emulator on them, all in the namespace; the
        engine knows the host, as before a reinstall (IPA and Satellite do not need to)."""
        from provision.integrations.fakestate import FakeState

        d = self.bmc_dir
        d.mkdir()
        self.libvirtd, self.uri = virt.start_libvirtd(d / "libvirt", self.ns)
        self.procs.append(self.libvirtd)
        virt.define_machine(self.uri, d, kvm=accel() == "kvm", macs=MACS, console=d / "console.log")
        cfg = virt.emulator_config(d, self.uri, SERVER, REDFISH_PORT, "password")
        self._spawn("emulator", virt.emulator_command(cfg))
        with FakeState(self.tmp / "fakes" / "engine.json").edit() as state:
            state["hosts"] = {f"id-{NODE}": {"id": f"id-{NODE}", "name": NODE, "status": "up", "cluster": "vmlab",
                                             "address": f"{NODE}.lab.example.com"}}
        self._wait_http(f"http://{SERVER}:{REDFISH_PORT}/redfish/v1/", "the Redfish emulator", "emulator.log")

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.tmp / f"{name}.log", "a")
        self.procs.append(subprocess.Popen(["ip", "netns", "exec", self.ns] + cmd, stdout=log,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))

    def _wait_http(self, url: str, what: str = "provision serve", log: str = "serve.log", timeout: float = 60) -> None:
        """Until `url` answers 2xx, or, for the emulator (basic auth everywhere), answers at all."""
        deadline = time.monotonic() + timeout
        flags = "-sf" if log == "serve.log" else "-s"
        while subprocess.run(["ip", "netns", "exec", self.ns, "curl", flags, "-o", "/dev/null", url]).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not come up:\n" + (self.tmp / log).read_text())
            time.sleep(0.2)

    def fetch(self, path: str) -> str:
        """GET a URL of provision's as a machine on the lab network would."""
        return run("curl", "-sf", f"http://{SERVER}:8080{path}", ns=self.ns).stdout

    def download(self, path: str, dest: Path) -> None:
        """Save a URL of provision's to `dest`, as a BMC fetching virtual media would."""
        run("curl", "-sf", "-o", str(dest), f"http://{SERVER}:8080{path}", ns=self.ns)

    def provision(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        """`provision ARGS` run in the namespace, as an operator on the lab network would."""
        return subprocess.run(["ip", "netns", "exec", self.ns, sys.executable, "-m", "provision", "--config",
                               str(self.cfg), *args], capture_output=True, text=True, timeout=timeout)

    def vm_running(self) -> bool:
        if self.case == REDFISH_CASE:
            return virt.is_running(self.uri)
        pid = self.bmc_dir / "qemu.pid"
        try:
            os.kill(int(pid.read_text()), 0)
            return True
        except (OSError, ValueError):
            return False

    # -- tear-down ----------------------------------------------------------------------------
    def stop(self) -> None:
        pids = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True).stdout.split()
        for pid in pids:  # qemu (daemonized), serve and its pumps, dnsmasq, the sink
            try:
                os.kill(int(pid), signal.SIGTERM)
            except OSError:
                pass
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 10
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
        for pid in subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
