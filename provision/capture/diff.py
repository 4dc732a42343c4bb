"""Human-readable differences between two facts snapshots, and which of them are drift that
must stop a rebuild (MACs, bond membership and options, network placement, IPs, disks)."""

from __future__ import annotations

from dataclasses import dataclass

from ..domain import Facts


@dataclass(frozen=True)
class Change:
    kind: str  # nic | bond | vlan | network | ip | disk | firmware | mtu | dns
    text: str

    @property
    def drift(self) -> bool:
        return self.kind in DRIFT


DRIFT = {"nic", "bond", "vlan", "network", "ip", "disk", "firmware"}


def diff(old: Facts, new: Facts) -> list[Change]:
    out: list[Change] = []
    add = lambda kind, text: out.append(Change(kind, text))  # noqa: E731
    old_nics, new_nics = {n.mac: n for n in old.nics}, {n.mac: n for n in new.nics}
    for mac, n in old_nics.items():
        if mac not in new_nics:
            add("nic", f"NIC {n.name} ({mac}) missing")
        elif new_nics[mac].name != n.name:
            add("nic", f"NIC renamed {n.name} -> {new_nics[mac].name} ({mac})")
        elif (new_nics[mac].mtu or 1500) != (n.mtu or 1500):
            add("mtu", f"MTU of {n.name} changed {n.mtu} -> {new_nics[mac].mtu}")
    old_names = {n.name: n.mac for n in old.nics}
    for mac, n in new_nics.items():
        if mac not in old_nics:
            was = f", was {old_names[n.name]}" if n.name in old_names else ""
            add("nic", f"MAC of {n.name} changed -> {mac}{was}" if was else f"new NIC {n.name} ({mac})")
    for name, a, b in _paired(old.bonds, new.bonds, lambda x: x.name):
        if b is None:
            add("bond", f"bond {name} missing")
        elif a is None:
            add("bond", f"new bond {name} ({', '.join(b.slaves)}, mode {b.mode})")
        else:
            if sorted(a.slaves) != sorted(b.slaves):
                add("bond", f"bond {name} slaves changed {', '.join(a.slaves)} -> {', '.join(b.slaves)}")
            if a.mode != b.mode:
                add("bond", f"bond {name} mode changed {a.mode} -> {b.mode}")
            for opt in sorted(a.options.keys() | b.options.keys()):
                if a.options.get(opt) != b.options.get(opt):
                    add("bond", f"bond {name} option {opt} changed {a.options.get(opt, '(unset)')} -> "
                                f"{b.options.get(opt, '(unset)')}")
    for name, a, b in _paired(old.vlans, new.vlans, lambda x: x.ifname):
        if a is None or b is None:
            add("vlan", f"VLAN {name} missing" if b is None else f"new VLAN {name}")
    for name, a, b in _paired(old.networks, new.networks, lambda x: x.network):
        if b is None:
            add("network", f"network {name} missing (was on {a.interface})")
        elif a is None:
            add("network", f"new network {name} on {b.interface}")
        else:
            if a.interface != b.interface:
                add("network", f"network {name} moved {a.interface} -> {b.interface}")
            if a.management != b.management:
                add("network", f"network {name} management {a.management} -> {b.management}")
            for label, x, y in (("IP", a.address, b.address), ("IPv6", a.address6, b.address6),
                                ("gateway", a.gateway, b.gateway), ("IPv6 gateway", a.gateway6, b.gateway6)):
                if x != y:
                    add("ip", f"{label} of {name} changed {x or '(none)'} -> {y or '(none)'}")
    def same(a, b) -> bool:  # one shared identifier is enough: WWN, serial or by-id name
        return bool((a.wwn and a.wwn == b.wwn) or (a.serial and a.serial == b.serial) or a.id == b.id)

    for d in old.disks:
        match = next((n for n in new.disks if same(d, n)), None)
        if match is None:
            add("disk", f"disk {d.id} missing" + (" (the install disk)" if d.install else ""))
        elif match.install != d.install:
            add("disk", f"install disk changed: {d.id} is {'no longer' if d.install else 'now'} the install disk")
    for nd in new.disks:
        if not any(same(d, nd) for d in old.disks):
            add("disk", f"new disk {nd.id}")
    if old.firmware != new.firmware:
        add("firmware", f"firmware changed {old.firmware} -> {new.firmware}")
    if [str(s) for s in old.dns_servers] != [str(s) for s in new.dns_servers] or old.dns_search != new.dns_search:
        add("dns", "DNS servers or search domains changed")
    return out


def _paired(old: list, new: list, key):
    """(name, old item or None, new item or None) for every name in either list, sorted."""
    a, b = {key(x): x for x in old}, {key(x): x for x in new}
    return [(name, a.get(name), b.get(name)) for name in sorted(a.keys() | b.keys())]


def drift(old: Facts, new: Facts) -> list[Change]:
    return [c for c in diff(old, new) if c.drift]
