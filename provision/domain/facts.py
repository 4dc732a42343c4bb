"""Host facts: what a node is before it is wiped (NICs by MAC, bonds, VLANs, networks, disks)."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from . import bonding
from .types import DiskId, Fqdn, IfName, IpAddress, IpInterface, Mac, Name, Str, show

# 1500 is the Ethernet default: stored as unset, so equal facts compare equal whatever the source
Mtu = Annotated[int, Field(ge=68, le=9216), AfterValidator(lambda v: None if v == 1500 else v)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Nic(_Model):
    name: IfName
    mac: Mac
    mtu: Mtu | None = None


class Bond(_Model):
    name: IfName
    mode: Str
    slaves: list[IfName] = Field(min_length=1, max_length=16)
    options: dict[str, Str] = Field(default_factory=dict)
    mtu: Mtu | None = None

    @field_validator("mode")
    @classmethod
    def _mode(cls, v: str) -> str:
        return bonding.normalize_mode(v)

    @model_validator(mode="after")
    def _options(self) -> Bond:
        clean = {}
        for key, value in self.options.items():
            value = bonding.check_option(key, value, list(self.slaves))
            if value not in bonding.DEFAULTS.get(key, ()):
                clean[key] = value
        object.__setattr__(self, "options", dict(sorted(clean.items())))
        if len(set(self.slaves)) != len(self.slaves):
            raise ValueError(f"bond {self.name}: a slave is listed twice")
        return self

    def option_string(self, sep: str = ",") -> str:
        return sep.join([f"mode={self.mode}"] + [f"{k}={v}" for k, v in self.options.items()])


class Vlan(_Model):
    id: int = Field(ge=1, le=4094)
    parent: IfName
    name: IfName | None = None
    mtu: Mtu | None = None

    @property
    def ifname(self) -> str:
        return self.name or f"{self.parent}.{self.id}"


class NetworkAttachment(_Model):
    """An engine network placed on a NIC, bond or VLAN device of this host."""

    network: Name
    interface: IfName
    address: IpInterface | None = None
    gateway: IpAddress | None = None
    address6: IpInterface | None = None
    gateway6: IpAddress | None = None
    management: bool = False

    @model_validator(mode="after")
    def _gateways(self) -> NetworkAttachment:
        for addr, gw, fam, label in ((self.address, self.gateway, 4, "gateway"),
                                     (self.address6, self.gateway6, 6, "gateway6")):
            if addr is not None and addr.version != fam:
                raise ValueError(f"{'address' if fam == 4 else 'address6'} {addr} is not IPv{fam}")
            if gw is None:
                continue
            if addr is None:
                raise ValueError(f"{label} {gw} given without an address")
            if gw.version != fam or gw not in addr.network:
                raise ValueError(f"{label} {gw} is not inside {addr.network}")
            if gw == addr.ip:
                raise ValueError(f"{label} {gw} is the host's own address")
        for addr in (self.address, self.address6):
            if addr is not None and addr.network.num_addresses > 2 and addr.ip in (
                addr.network.network_address, addr.network.broadcast_address
            ):
                raise ValueError(f"address {addr} is the network or broadcast address of its prefix")
        return self


_WWN = re.compile(r"^(0x[0-9a-f]{16}|0x[0-9a-f]{32}|eui\.[0-9a-f]{16,32}|naa\.[0-9a-f]{16,32}"
                  r"|nvme\.[0-9a-f]{4}-[0-9a-f]{2,80}-[0-9a-f]{2,80}-[0-9a-f]{8})\Z")
_SERIAL = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
VgName = Annotated[str, Field(pattern=r"^[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}$")]


def udev_link(wwn: str, multipath: bool = False) -> str:
    """The /dev/disk/by-id name udev creates on EL8/EL9 for a disk with this WWN (lsblk's WWN column):
    SATA/SAS `wwn-0x...` (60-persistent-storage.rules, ID_WWN_WITH_EXTENSION), NVMe `nvme-<wwid>`
    (`nvme-eui.*`, `nvme-nvme.*`: the namespace's sysfs wwid), multipath `dm-uuid-mpath-<WWID>` with
    WWID = '3' + the NAA hex (13-dm-disk.rules; RHEL's documented name for SAN disks)."""
    if wwn.startswith(("eui.", "nvme.")):
        return f"nvme-{wwn}"
    hex_ = wwn.removeprefix("0x").removeprefix("naa.")
    return f"dm-uuid-mpath-3{hex_}" if multipath else f"wwn-0x{hex_}"


class Disk(_Model):
    id: DiskId | None = None
    wwn: Str | None = None
    serial: Str | None = None
    size_gb: float | None = Field(default=None, ge=0)
    model: Str | None = None
    install: bool = False
    multipath: bool = False  # a SAN disk reached over several paths: named by its dm-uuid-mpath- link
    vgs: list[VgName] = Field(default_factory=list, max_length=64)  # LVM volume groups on this disk

    @model_validator(mode="after")
    def _identity(self) -> Disk:
        if self.wwn is not None:
            wwn = self.wwn.lower()
            if not _WWN.match(wwn):
                raise ValueError(f"wwn {show(self.wwn)} is not a WWN (0x + 16 or 32 hex digits, eui., naa., nvme.)")
            object.__setattr__(self, "wwn", wwn)
        if self.serial is not None and not _SERIAL.match(self.serial):
            raise ValueError(f"serial {show(self.serial)} may hold only A-Z a-z 0-9 _ . -")
        if self.id is None:
            if self.wwn is None:
                raise ValueError("a disk needs an id (/dev/disk/by-id name) or a wwn")
            object.__setattr__(self, "id", udev_link(self.wwn, self.multipath))
        link: str = self.id  # type: ignore[assignment]  # set just above when it was None
        for bad in ("wwn-eui.", "wwn-nvme.", "wwn-naa."):
            if link.startswith(bad):
                raise ValueError(f"id {link}: udev creates no such link; an NVMe namespace is "
                                 f"nvme-{link.removeprefix('wwn-')}, a SCSI NAA id is wwn-0x<hex>")
        if self.multipath and not link.startswith(("dm-uuid-mpath-", "dm-name-")):
            raise ValueError(f"id {link}: a multipath disk must be named by its multipath device "
                             f"(dm-uuid-mpath-<WWID>), not by one of its paths")
        if self.install and self.wwn is None and self.serial is None:
            raise ValueError(f"install disk {self.id}: needs a wwn or serial to be identified uniquely")
        object.__setattr__(self, "vgs", sorted(set(self.vgs)))
        return self

    @property
    def by_id(self) -> str:
        return f"disk/by-id/{self.id}"


class Facts(_Model):
    """A host's facts. A *partial* snapshot (from the engine, which knows networks but not disks or
    firmware) has no disks and firmware None: it is kept, shown, and refused by render and rebuild
    until a node or file capture supplies the missing parts (`missing()`)."""

    firmware: Literal["uefi", "bios"] | None = None
    nics: list[Nic] = Field(min_length=1, max_length=64)
    bonds: list[Bond] = Field(default_factory=list, max_length=32)
    vlans: list[Vlan] = Field(default_factory=list, max_length=256)
    networks: list[NetworkAttachment] = Field(min_length=1, max_length=256)
    disks: list[Disk] = Field(default_factory=list, max_length=64)
    dns_servers: list[IpAddress] = Field(default_factory=list, max_length=3)
    dns_search: list[Fqdn] = Field(default_factory=list, max_length=6)

    @model_validator(mode="after")
    def _consistent(self) -> Facts:
        _unique("nics", [n.name for n in self.nics], "NIC name")
        _unique("nics", [n.mac for n in self.nics], "MAC")
        nic_names = {n.name for n in self.nics}
        bond_names = {b.name for b in self.bonds}
        _unique("bonds", [b.name for b in self.bonds], "bond name")
        if nic_names & bond_names:
            raise ValueError(f"bonds: {sorted(nic_names & bond_names)} also named as NICs")
        enslaved: dict[str, str] = {}
        for i, bond in enumerate(self.bonds):
            for s in bond.slaves:
                if s not in nic_names:
                    raise ValueError(f"bonds[{i}].slaves: {s!r} is not one of the host's NICs")
                if s in enslaved:
                    raise ValueError(f"bonds[{i}].slaves: {s!r} is already a slave of {enslaved[s]}")
                enslaved[s] = bond.name
        _unique("vlans", [v.ifname for v in self.vlans], "VLAN interface")
        for i, vlan in enumerate(self.vlans):
            if vlan.parent not in nic_names | bond_names:
                raise ValueError(f"vlans[{i}].parent: {vlan.parent!r} is not a NIC or bond of the host")
            if vlan.parent in enslaved:
                raise ValueError(f"vlans[{i}].parent: {vlan.parent!r} is a bond slave")
        devices = nic_names | bond_names | {v.ifname for v in self.vlans}
        _unique("networks", [a.network for a in self.networks], "network")
        for i, att in enumerate(self.networks):
            if att.interface not in devices:
                raise ValueError(f"networks[{i}].interface: {att.interface!r} is not a NIC, bond or VLAN of the host")
            if att.interface in enslaved:
                raise ValueError(f"networks[{i}].interface: {att.interface!r} is a bond slave")
        mgmt = [a for a in self.networks if a.management]
        if len(mgmt) != 1:
            raise ValueError(f"networks: exactly one attachment needs management: true (found {len(mgmt)})")
        if mgmt[0].address is None and mgmt[0].address6 is None:
            raise ValueError(f"networks: management network {mgmt[0].network} needs a static address")
        _unique("networks", [str(a.ip) for a in self.addresses()], "IP address")
        _unique("disks", [d.id for d in self.disks if d.id], "disk id")
        _unique("disks", [d.wwn for d in self.disks if d.wwn], "disk wwn")
        installs = [d for d in self.disks if d.install]
        if self.disks and len(installs) != 1:
            raise ValueError(f"disks: exactly one disk needs install: true (found {len(installs)})")
        return self

    # -- derived views, used by render and the engine client -------------------------------
    def addresses(self) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
        return [a for att in self.networks for a in (att.address, att.address6) if a is not None]

    @property
    def management(self) -> NetworkAttachment:
        return next(a for a in self.networks if a.management)

    @property
    def install_disk(self) -> Disk | None:
        """None only in a partial snapshot (see missing())."""
        return next((d for d in self.disks if d.install), None)

    def missing(self) -> list[str]:
        """What a partial snapshot lacks before a node can be rendered or rebuilt."""
        return (["install disk (no disks known)"] if not self.disks else []) + \
            (["firmware (uefi or bios)"] if self.firmware is None else [])

    @property
    def kept_disks(self) -> list[Disk]:
        return [d for d in self.disks if not d.install]

    def nic(self, name: str) -> Nic | None:
        return next((n for n in self.nics if n.name == name), None)

    def bond(self, name: str) -> Bond | None:
        return next((b for b in self.bonds if b.name == name), None)

    def vlan(self, ifname: str) -> Vlan | None:
        return next((v for v in self.vlans if v.ifname == ifname), None)

    def macs(self) -> list[str]:
        return [n.mac for n in self.nics]

    def management_nics(self) -> list[Nic]:
        """The NICs under the management network: its VLAN's base, and a bond's slaves in order.
        The first is the one the boot configs are armed for."""
        vlan = self.vlan(self.management.interface)
        base = vlan.parent if vlan else self.management.interface
        bond = self.bond(base)
        return [nic for n in (bond.slaves if bond else [base]) if (nic := self.nic(n)) is not None]

    def in_use(self) -> list[Nic]:
        """NICs that carry something: a bond slave, a VLAN base, or a network attachment's device."""
        used = {s for b in self.bonds for s in b.slaves} | {v.parent for v in self.vlans} | \
            {a.interface for a in self.networks}
        return [n for n in self.nics if n.name in used]

    def renamed(self, names: dict[str, str]) -> Facts:
        """The same facts with NICs renamed (old -> new): bond slaves and `primary`, VLAN bases (and
        the default VLAN device names built on them) and network attachments follow."""
        if not any(old != new for old, new in names.items()):
            return self
        r = lambda n: names.get(n, n)  # noqa: E731
        d = self.model_dump(mode="json")
        for n in d["nics"]:
            n["name"] = r(n["name"])
        for b in d["bonds"]:
            b["slaves"] = [r(s) for s in b["slaves"]]
            if "primary" in b["options"]:
                b["options"]["primary"] = r(b["options"]["primary"])
        vlan_names = {}
        for v, vd in zip(self.vlans, d["vlans"], strict=True):
            vd["parent"] = r(v.parent)
            vlan_names[v.ifname] = vd.get("name") or f"{vd['parent']}.{vd['id']}"
        for a in d["networks"]:
            a["interface"] = vlan_names.get(a["interface"], r(a["interface"]))
        return Facts.model_validate(d)


def _unique(field: str, values: list[str], what: str) -> None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"{field}: {what} {v!r} appears twice")
        seen.add(v)
