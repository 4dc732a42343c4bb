"""Facts from the node itself: parse what kickstarts/collect.sh.j2 sends (`ip -j`,
/proc/net/bonding/*, `lsblk -J`, /dev/disk/by-id, /sys/firmware/efi, /etc/resolv.conf).

Names of engine networks are not visible on a node except as VDSM bridges (a bridged network's
bridge carries its name); the others keep the names of the previous snapshot's attachments on
the same device. The management network is the one carrying the default route."""

from __future__ import annotations

import json
import re

from pydantic import ValidationError

from ..domain import Facts, format_errors
from ..domain.bonding import MODE_NAMES
from ..errors import InputError

SKIP_KINDS = {"veth", "tun", "tap", "dummy", "ifb", "macvtap", "openvswitch", "vxlan", "geneve", "ipip", "gre"}
SKIP_PREFIX = ("vnet", "virbr", "docker", ";vdsm", "ovs-", "br-int", "lo")


def sections(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        if line.startswith("### "):
            name = line[4:].strip()
            out[name] = ""
        elif name is not None:
            out[name] += line + "\n"
    if "end" not in out:
        raise InputError("node capture: the upload is incomplete (no '### end' section)")
    return out


def _json(sec: dict, name: str, default):
    text = sec.get(name, "").strip()
    try:
        return json.loads(text) if text else default
    except json.JSONDecodeError:
        raise InputError(f"node capture: section {name!r} is not valid JSON") from None


def parse_bonding(text: str) -> dict:
    """/proc/net/bonding/<bond> -> {'mode', 'options', 'slaves': {name: perm_mac}}."""
    mode, opts, slaves, current = None, {}, {}, None
    for line in text.splitlines():
        key, _, value = (p.strip() for p in line.partition(":"))
        if key == "Bonding Mode":
            low = value.lower()
            mode = ("802.3ad" if "802.3ad" in low else "active-backup" if "active-backup" in low
                    else next((m for m in MODE_NAMES if m in low), "balance-rr"))
        elif key == "MII Polling Interval (ms)":
            opts["miimon"] = value
        elif key == "Transmit Hash Policy":
            opts["xmit_hash_policy"] = value.split()[0]
        elif key == "LACP rate":
            opts["lacp_rate"] = value
        elif key == "Primary Slave" and value and value.split()[0] != "None":
            opts["primary"] = value.split()[0]
        elif key == "Slave Interface":
            current = value
            slaves[current] = None
        elif key == "Permanent HW addr" and current:
            slaves[current] = value.lower()
    return {"mode": mode or "balance-rr", "options": opts, "slaves": slaves}


def _disks(sec: dict, previous: Facts | None) -> list[dict]:
    byid: dict[str, list[str]] = {}
    for line in sec.get("by-id", "").splitlines():
        m = re.search(r"\s(\S+) -> \.\./\.\./(\S+)$", line)
        if m and "-part" not in m.group(1):
            byid.setdefault(m.group(2), []).append(m.group(1))
    rank = lambda n: next((i for i, p in enumerate(("wwn-", "nvme-eui.", "scsi-3", "nvme-", "ata-", "scsi-")) if n.startswith(p)), 9)  # noqa: E731

    def mounts(dev: dict) -> set[str]:
        found = {dev.get("mountpoint")} if dev.get("mountpoint") else set()
        for child in dev.get("children", []) or []:
            found |= mounts(child)
        return found

    prev_install = previous.install_disk if previous else None
    disks = []
    for dev in _json(sec, "lsblk", {}).get("blockdevices", []):
        if dev.get("type") != "disk" or dev["name"].startswith(("zram", "loop", "sr")):
            continue
        wwn = (dev.get("wwn") or "").lower() or None
        serial = re.sub(r"[^A-Za-z0-9_.-]", "", (dev.get("serial") or "").strip()) or None
        names = sorted(byid.get(dev["name"], []), key=rank)
        ident = names[0] if names else (f"wwn-{wwn}" if wwn else None)
        disk = {"id": ident, "wwn": wwn, "serial": serial, "size_gb": round(int(dev.get("size") or 0) / 1e9, 1),
                "model": (dev.get("model") or "").strip() or None, "install": False, "_mounts": mounts(dev)}
        if prev_install and ((wwn and wwn == prev_install.wwn) or (serial and serial == prev_install.serial)):
            disk["install"] = True
        disks.append(disk)
    if not any(d["install"] for d in disks):
        root = [d for d in disks if "/" in d["_mounts"]]
        if len(root) == 1:
            root[0]["install"] = True
    for d in disks:
        d.pop("_mounts")
        for k in [k for k, v in d.items() if v is None]:
            d.pop(k)
    return disks


def facts_from_node(text: str, previous: Facts | None) -> Facts:
    sec = sections(text)
    links = {link["ifname"]: link for link in _json(sec, "ip-link", [])}
    addrs = {a["ifname"]: a for a in _json(sec, "ip-addr", [])}
    bonding = {name.split(" ", 1)[1]: parse_bonding(body) for name, body in sec.items() if name.startswith("bond ")}
    kind = lambda link: (link.get("linkinfo") or {}).get("info_kind")  # noqa: E731
    nics, bonds, vlans, bridges = [], [], [], {}
    for name, link in links.items():
        k = kind(link)
        if name.startswith(SKIP_PREFIX) or link.get("link_type") not in ("ether", None) or k in SKIP_KINDS:
            continue
        if k == "bond":
            info = bonding.get(name) or {"mode": (link["linkinfo"].get("info_data") or {}).get("mode", "balance-rr"),
                                         "options": {}, "slaves": {}}
            slaves = sorted(n for n, l2 in links.items() if l2.get("master") == name)
            bonds.append({"name": name, "mode": info["mode"], "slaves": slaves,
                          "options": {k2: v for k2, v in info["options"].items() if k2 != "primary" or v in slaves},
                          **({"mtu": link["mtu"]} if link.get("mtu", 1500) != 1500 else {})})
        elif k == "vlan":
            vid, parent = int(link["linkinfo"]["info_data"]["id"]), link["link"]
            vlans.append({"id": vid, "parent": parent, **({"name": name} if name != f"{parent}.{vid}" else {}),
                          **({"mtu": link["mtu"]} if link.get("mtu", 1500) != 1500 else {})})
        elif k == "bridge":
            bridges[name] = sorted(n for n, l2 in links.items() if l2.get("master") == name)
        elif link.get("link_type") == "ether":
            perm = ((link.get("linkinfo") or {}).get("info_slave_data") or {}).get("perm_hwaddr")
            master = link.get("master")
            perm = perm or (bonding.get(master, {}).get("slaves", {}).get(name) if master else None)
            nics.append({"name": name, "mac": (perm or link.get("address", "")).lower(),
                         **({"mtu": link["mtu"]} if link.get("mtu", 1500) != 1500 else {})})
    gateways = {fam: {r.get("dev"): r.get("gateway") for r in _json(sec, f"route{fam}", []) if r.get("dst") == "default"}
                for fam in (4, 6)}
    default_dev = gateways[4] | gateways[6]

    def ips(dev: str) -> dict:
        out = {}
        for a in addrs.get(dev, {}).get("addr_info", []):
            if a.get("scope") != "global":
                continue
            key = "address" if a["family"] == "inet" else "address6"
            out.setdefault(key, f"{a['local']}/{a['prefixlen']}")
        for key, gkey, fam in (("address", "gateway", 4), ("address6", "gateway6", 6)):
            gw = gateways[fam].get(dev)
            if key in out and gw:
                out[gkey] = gw
        return out

    prev_by_iface = {a.interface: a for a in previous.networks} if previous else {}
    devices = ([n["name"] for n in nics] + [b["name"] for b in bonds]
               + [v.get("name", f"{v['parent']}.{v['id']}") for v in vlans])
    networks, placed = [], set()
    for bridge, all_ports in bridges.items():
        ports = [p for p in all_ports if p in devices]  # not the VMs' tap devices (vnetN)
        if len(ports) == 1:
            networks.append({"network": bridge, "interface": ports[0], "management": bridge in default_dev, **ips(bridge)})
            placed.add(ports[0])
    for dev in devices:
        if dev in placed or links.get(dev, {}).get("master"):
            continue
        prev = prev_by_iface.get(dev)
        found = ips(dev)
        if prev or found:
            networks.append({"network": prev.network if prev else f"net-{dev}".replace(".", "-"),
                             "interface": dev, "management": dev in default_dev, **found})
    dns = [line.split()[1] for line in sec.get("resolv", "").splitlines() if line.startswith("nameserver")][:3]
    search = next((line.split()[1:] for line in sec.get("resolv", "").splitlines() if line.startswith("search")), [])
    data = {"firmware": sec.get("firmware", "").strip() or "bios", "nics": nics, "bonds": bonds, "vlans": vlans,
            "networks": networks, "disks": _disks(sec, previous), "dns_servers": dns, "dns_search": search[:6]}
    try:
        return Facts.model_validate(data)
    except ValidationError as exc:
        raise InputError("node capture: " + "; ".join(format_errors(exc, "facts."))) from None
