"""A virtual machine with real firmware on a private network, for the boot-chain test.

A network namespace holds a bridge (10.77.0.1/24) and three tap devices for the VM's three NICs.
Inside it run `provision serve` (HTTP :8080, TFTP :69), dnsmasq as the DHCP server with the
configuration `provision dhcp export` wrote, and a small HTTP sink where the installer stand-in
reports. An ipmi_sim BMC on loopback (outside the namespace) has a chassis_control program that
starts and stops `qemu-system-x86_64` in the namespace (chassis_qemu.sh). Every process is
stopped by PID and the namespace is removed afterwards, also on failure."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ..ipmisim import free_udp_port

HERE = Path(__file__).parent
REPO = HERE.parent.parent
KVER = sorted(p.name[len("vmlinuz-"):] for p in Path("/boot").glob("vmlinuz-*"))
OVMF_CODE, OVMF_VARS = Path("/usr/share/OVMF/OVMF_CODE_4M.fd"), Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
SERVER, NODE_IP = "10.77.0.1", "10.77.0.13"
MACS = ["52:54:00:77:00:01", "52:54:00:77:00:02", "52:54:00:77:00:03"]
NODE = "vmnode"
GRUB_MODULES = "efinet tftp http net linux normal echo configfile efi_gop all_video gzio part_gpt fat"


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


def inventory(password_file: Path, bmc_port: int, firmware: str) -> dict:
    return {"nodes": [{
        "name": NODE, "fqdn": f"{NODE}.lab.example.com", "cluster": "vmlab", "profile": "el",
        "bmc": {"address": "127.0.0.1", "port": bmc_port, "username": "admin", "password_file": str(password_file)},
        "facts": {
            "firmware": firmware,
            "nics": [{"name": f"eno{i + 1}", "mac": m} for i, m in enumerate(MACS)],
            "bonds": [{"name": "bond0", "mode": "active-backup", "slaves": ["eno2", "eno3"],
                       "options": {"miimon": "100"}}],
            "vlans": [{"id": 20, "parent": "bond0"}],
            "networks": [{"network": "ovirtmgmt", "interface": "eno1", "management": True,
                          "address": f"{NODE_IP}/24", "gateway": SERVER},
                         {"network": "storage", "interface": "bond0.20", "address": "198.51.100.13/24"}],
            "disks": [{"wwn": "0x5002538e4030a1b2", "serial": "VMDISK1", "size_gb": 20, "install": True}],
            "dns_servers": [SERVER],
        }}]}


class VmLab:
    """firmware "uefi": q35 with OVMF and its own PXE (the NIC's iPXE ROM off), so DHCP hands it
    shimx64.efi over TFTP; "bios": SeaBIOS with the NIC's iPXE ROM, which DHCP hands our iPXE URL."""

    def __init__(self, tmp: Path, initrd: Path, firmware: str) -> None:
        self.tmp, self.initrd, self.firmware = tmp, initrd, firmware
        self.ns = f"pvvm{os.getpid()}"
        self.procs: list[subprocess.Popen] = []
        self.bmc_dir = tmp / "bmc"
        self.cfg = tmp / "provision.toml"

    # -- set-up -------------------------------------------------------------------------------
    def start(self) -> VmLab:
        run("ip", "netns", "add", self.ns)
        script = (f"ip link set lo up && ip link add br0 type bridge && ip addr add {SERVER}/24 dev br0 && "
                  "ip link set br0 up && for t in tap0 tap1 tap2; do ip tuntap add $t mode tap && "
                  "ip link set $t master br0 && ip link set $t up; done")
        run("sh", "-c", script, ns=self.ns)
        self._files()
        self._bmc()
        p = [sys.executable, "-m", "provision", "--config", str(self.cfg)]
        subprocess.run(p + ["node", "import", str(self.tmp / "nodes.yaml")], check=True, capture_output=True)
        subprocess.run(p + ["dhcp", "export", "--format", "dnsmasq", "--next-server", SERVER, "-o",
                            str(self.tmp / "dnsmasq.conf")], check=True, capture_output=True)
        self._spawn("serve", p + ["serve"])
        self._spawn("dnsmasq", ["dnsmasq", "--no-daemon", "--port=0", "--interface=br0", "--bind-interfaces",
                                f"--conf-file={self.tmp / 'dnsmasq.conf'}", "--log-dhcp",
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
        shutil.copy(f"/boot/vmlinuz-{KVER[-1]}", pxe / "vmlinuz")
        shutil.copy(self.initrd, pxe / "initrd.img")
        for f in (boot / "shimx64.efi", boot / "grubx64.efi", pxe / "vmlinuz", pxe / "initrd.img"):
            f.chmod(0o644)
        (t / "bmc.pw").write_text("password\n")
        self.bmc_port = free_udp_port()
        (t / "nodes.yaml").write_text(yaml.safe_dump(inventory(t / "bmc.pw", self.bmc_port, self.firmware)))
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
kernel_args = "console=ttyS0 provision.sink=http://{SERVER}:8099 provision.ip={NODE_IP}"
""")

    def _bmc(self) -> None:
        d = self.bmc_dir
        (d / "state").mkdir(parents=True)
        shutil.copy(HERE / "chassis_qemu.sh", d / "chassis_control.sh")
        shutil.copy(OVMF_VARS, d / "vars.fd")
        uefi = self.firmware == "uefi"
        nics = " ".join(f"-netdev tap,id=n{i},ifname=tap{i},script=no,downscript=no "
                        f"-device virtio-net-pci,netdev=n{i},mac={m}"
                        + (",bootindex=1" if i == 0 else "") + (",romfile=" if uefi or i else "")
                        for i, m in enumerate(MACS))
        machine = (f"-machine q35 -drive if=pflash,format=raw,readonly=on,file={OVMF_CODE} "
                   f"-drive if=pflash,format=raw,file={d}/vars.fd") if uefi else "-machine pc"
        # TCG even where /dev/kvm exists: on this kind of machine OVMF under KVM stops with "KVM internal
        # error", and SeaBIOS under KVM exits at once ("host doesn't support requested feature")
        start = d / "start-vm"
        start.write_text(f"""#!/bin/sh
# $1: the boot device last set over IPMI; the VM has no disk, so the firmware netboots either way
echo "$(date +%s.%N) start $1" >> {d}/vm.log
exec ip netns exec {self.ns} qemu-system-x86_64 {machine} -m 1024 -display none -no-reboot \\
  -daemonize -pidfile {d}/qemu.pid -chardev file,id=s0,path={d}/console.log,append=on -serial chardev:s0 \\
  {nics}
""")
        start.chmod(0o755)
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

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.tmp / f"{name}.log", "a")
        self.procs.append(subprocess.Popen(["ip", "netns", "exec", self.ns] + cmd, stdout=log,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))

    def _wait_http(self, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while subprocess.run(["ip", "netns", "exec", self.ns, "curl", "-sf", "-o", "/dev/null", url]).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError("provision serve did not come up:\n" + (self.tmp / "serve.log").read_text())
            time.sleep(0.2)

    def fetch(self, path: str) -> str:
        """GET a URL of provision's as a machine on the lab network would."""
        return run("curl", "-sf", f"http://{SERVER}:8080{path}", ns=self.ns).stdout

    def vm_running(self) -> bool:
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
