"""The VM test's Redfish BMC: sushy-tools' emulator with its libvirt driver (the pair Ironic's own
CI uses), managing a QEMU machine through Debian's libvirtd.

libvirtd runs in the lab's network namespace, so the machine's NICs are the lab's tap devices
(`<interface type='ethernet'>`, unmanaged), and in a mount namespace of its own (`unshare -m`), where
the test's directories are bound over /etc/libvirt (our libvirtd.conf and qemu.conf), /run/libvirt,
/var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt: nothing of the host's libvirt is read or
written, and two test runs do not share a daemon. qemu.conf runs QEMU as root with no security
driver, cgroups or namespaces (a container has none to give). Debian makes the `libvirt-qemu`
user in libvirt-daemon-system, which we do not install; passwd and group copies with that user are
bound over /etc/passwd and /etc/group in the daemon's mount namespace only.

The emulator also runs in the namespace: it downloads the ISO from `provision serve` there
(VirtualMedia.InsertMedia), uploads it into the storage pool "default" and attaches it as a SATA
CD, sets the boot order from the override, and maps ComputerSystem.Reset to the domain's create and
destroy."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import bcrypt

LIBVIRTD_CONF = """unix_sock_group = "root"
unix_sock_rw_perms = "0770"
auth_unix_rw = "none"
auth_unix_ro = "none"
listen_tls = 0
listen_tcp = 0
log_outputs = "3:stderr"
"""
QEMU_CONF = """user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
"""
MOUNTS = ("run", "lib", "cache", "log")  # bound over /run/libvirt, /var/lib/libvirt, ...
START = """set -e
R={root}
mkdir -p /etc/libvirt  # not every libvirt package set ships it (--no-install-recommends does not)
mount --bind $R/etc /etc/libvirt
mount --bind $R/passwd /etc/passwd
mount --bind $R/group /etc/group
mkdir -p /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt
mount --bind $R/run /run/libvirt
mount --bind $R/lib /var/lib/libvirt
mount --bind $R/cache /var/cache/libvirt
mount --bind $R/log /var/log/libvirt
exec libvirtd -f /etc/libvirt/libvirtd.conf -p /run/libvirt/libvirtd.pid
"""
OVMF_CODE, OVMF_VARS = "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"
DOMAIN_UUID = "c0ffee00-0000-4000-8000-000000000077"


def start_libvirtd(root: Path, ns: str) -> tuple[subprocess.Popen, str]:
    """libvirtd in namespace `ns` with its state under `root`; (process, URI), once it answers."""
    for d in ("etc",) + MOUNTS:
        (root / d).mkdir(parents=True)
    (root / "etc" / "libvirtd.conf").write_text(LIBVIRTD_CONF)
    (root / "etc" / "qemu.conf").write_text(QEMU_CONF)
    passwd, group = Path("/etc/passwd").read_text(), Path("/etc/group").read_text()
    if "\nlibvirt-qemu:" not in "\n" + passwd:
        passwd += "libvirt-qemu:x:64055:64055:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin\n"
    for name, gid in (("libvirt-qemu", 64055), ("kvm", 64056)):
        if f"\n{name}:" not in "\n" + group:
            group += f"{name}:x:{gid}:\n"
    (root / "passwd").write_text(passwd)
    (root / "group").write_text(group)
    (root / "start.sh").write_text(START.format(root=root))
    proc = subprocess.Popen(["ip", "netns", "exec", ns, "unshare", "-m", "sh", str(root / "start.sh")],
                            stdout=open(root / "libvirtd.log", "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    uri = f"qemu:///system?socket={root}/run/libvirt-sock"
    import libvirt  # libvirt-python (make test builds it against Debian's libvirt-dev)

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # not the socket's absence on stderr while it starts
    deadline = time.monotonic() + 60
    while True:
        try:
            libvirt.open(uri).close()
            return proc, uri
        except libvirt.libvirtError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("libvirtd did not start:\n" + (root / "libvirtd.log").read_text()) from None
            time.sleep(0.2)


def define_machine(uri: str, tmp: Path, *, kvm: bool, macs: list[str], console: Path) -> None:
    """The storage pool the emulator uploads media into, and the node: q35 with OVMF (no Secure
    Boot), a blank virtio disk, NICs on the lab's tap0.. (no option ROM: OVMF has its own), the
    serial console in a file. Defined and off, as a server in its rack."""
    import libvirt

    (tmp / "pool").mkdir()
    disk = tmp / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    shutil.copy(OVMF_VARS, tmp / "vars.fd")
    nics = "".join(f"""
    <interface type='ethernet'>
      <mac address='{mac}'/><target dev='tap{i}' managed='no'/><model type='virtio'/><rom enabled='no'/>
    </interface>""" for i, mac in enumerate(macs))
    conn = libvirt.open(uri)
    try:
        pool = conn.storagePoolDefineXML(f"<pool type='dir'><name>default</name><target><path>{tmp / 'pool'}</path>"
                                         "</target></pool>")
        pool.create()
        conn.defineXML(f"""<domain type='{"kvm" if kvm else "qemu"}'>
  <name>vmnode</name>
  <uuid>{DOMAIN_UUID}</uuid>
  <memory unit='MiB'>1024</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' secure='no' type='pflash'>{OVMF_CODE}</loader>
    <nvram template='{OVMF_VARS}'>{tmp / 'vars.fd'}</nvram>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>{shutil.which("qemu-system-x86_64")}</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/><source file='{disk}'/><target dev='vda' bus='virtio'/><boot order='1'/>
    </disk>{nics}
    <serial type='file'><source path='{console}' append='on'/><target port='0'/></serial>
  </devices>
</domain>""")
    finally:
        conn.close()


def domain_xml(uri: str) -> str:
    """The machine's persistent configuration, as the emulator last defined it."""
    import libvirt

    conn = libvirt.open(uri)
    try:
        return conn.lookupByUUIDString(DOMAIN_UUID).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    finally:
        conn.close()


def is_running(uri: str) -> bool:
    import libvirt

    conn = libvirt.open(uri)
    try:
        return bool(conn.lookupByUUIDString(DOMAIN_UUID).isActive())
    finally:
        conn.close()


def emulator_config(tmp: Path, uri: str, listen: str, port: int, password: str) -> Path:
    """sushy-tools' configuration: its libvirt driver on our daemon, OVMF without Secure Boot for
    a UEFI override, basic auth from a bcrypt htpasswd file, and its virtual-media state in this
    lab's directory (its default, /tmp/sushy-emulator, is shared by every emulator on the machine:
    two runs at once saw each other's CD as ejected)."""
    (tmp / "htpasswd").write_text(f"admin:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()}\n")
    cfg = tmp / "emulator.conf"
    cfg.write_text(f"""SUSHY_EMULATOR_LISTEN_IP = '{listen}'
SUSHY_EMULATOR_LISTEN_PORT = {port}
SUSHY_EMULATOR_LIBVIRT_URI = '{uri}'
SUSHY_EMULATOR_AUTH_FILE = '{tmp / "htpasswd"}'
SUSHY_EMULATOR_STATE_DIR = '{tmp / "emulator-state"}'
SUSHY_EMULATOR_BOOT_LOADER_MAP = {{'UEFI': {{'x86_64': '{OVMF_CODE}'}}, 'Legacy': {{'x86_64': None}}}}
SUSHY_EMULATOR_SECURE_BOOT_DISABLED_NVRAM = '{OVMF_VARS}'
SUSHY_EMULATOR_SECURE_BOOT_ENABLED_NVRAM = '{OVMF_VARS}'
""")
    return cfg


def emulator_command(cfg: Path) -> list[str]:
    return [str(Path(sys.executable).parent / "sushy-emulator"), "--config", str(cfg)]
