"""Facts from the node itself: parse what kickstarts/collect.sh.j2 sends (`ip -j` or, on EL7,
`ip -o` and /sys/class/net (capture/iproute.py), /proc/net/bonding/*, `lsblk -J` or `lsblk -P`,
/dev/disk/by-id and `pvs` (capture/disks.py), /sys/firmware/efi, /etc/resolv.conf).

Names of engine networks are not visible on a node except as VDSM bridges (a bridged network's
bridge carries its name); the others keep the names of the previous snapshot's attachments on
the same device. The management network is the one carrying the default route."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from ..domain import Facts, format_errors
from ..domain.bonding import MODE_NAMES
from ..errors import InputError
from . import disks, iproute

SKIP_KINDS = {"veth", "tun", "tap", "dummy", "ifb", "macvtap", "openvswitch", "vxlan", "geneve", "ipip", "gre"}
SKIP_PREFIX = ("vnet", "virbr", "docker", ";vdsm", "ovs-", "br-int", "lo")


MAX_WARNINGS = 20  # the collector's warnings recorded one by one; the rest are counted


def sections(text: str) -> dict[str, str]:
    """The upload's `### name` sections, in one pass (linear in the upload, whatever its shape)."""
    parts: dict[str, list[str]] = {}
    lines: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("### "):
            lines = parts[line[4:].strip()] = []
        elif lines is not None:
            lines.append(line)
    if "end" not in parts:
        raise InputError("node capture: the upload is incomplete (no '### end' section)")
    return {name: "".join(f"{line}\n" for line in lines) for name, lines in parts.items()}


def _json(sec: dict, name: str, default):
    text = sec.get(name, "").strip()
    try:
        return json.loads(text) if text else default
    except json.JSONDecodeError:
        raise InputError(f"node capture: section {name!r} is not valid JSON") from None
    except RecursionError:
        raise InputError(f"node capture: section {name!r} is nested too deeply") from None


def parse_bonding(text: str) -> dict:
    """/proc/net/bonding/<bond> -> {'mode', 'options', 'slaves': {name: perm_mac}}."""
    mode, current = None, None
    opts: dict[str, str] = {}
    slaves: dict[str, str | None] = {}
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


def _links(sec: dict) -> list[dict]:
    if "ip-link" in sec:
        return _json(sec, "ip-link", [])
    if "ip-link-oneline" in sec:
        return iproute.links_oneline(sec["ip-link-oneline"])
    if "sysfs-net" in sec:
        return iproute.links_sysfs(sec["sysfs-net"], sec.get("vlan-config", ""))
    raise InputError("node capture: no network interfaces in the upload (ip link and /sys/class/net both failed)"
                     + _warned(sec))


def _addrs(sec: dict) -> list[dict]:
    if "ip-addr" in sec:
        return _json(sec, "ip-addr", [])
    if "ip-addr-oneline" in sec:
        return iproute.addrs_oneline(sec["ip-addr-oneline"])
    raise InputError("node capture: no IP addresses in the upload (ip addr failed)" + _warned(sec))


def _routes(sec: dict, fam: int) -> list[dict]:
    if f"route{fam}" in sec:
        return _json(sec, f"route{fam}", [])
    return iproute.routes_text(sec.get(f"route{fam}-text", ""))


def _blocks(sec: dict) -> dict:
    if "lsblk" in sec:
        return _json(sec, "lsblk", {})
    if "lsblk-pairs" in sec:
        return disks.lsblk_pairs(sec["lsblk-pairs"])
    raise InputError("node capture: no block devices in the upload (lsblk failed)" + _warned(sec))


def warnings(text: str) -> list[str]:
    """What the collector said it could not read (one line each, each at most 300 characters): the
    first MAX_WARNINGS, then one line counting the rest."""
    said = [w[:300] for w in sections(text).get("warnings", "").splitlines() if w.strip()]
    if len(said) > MAX_WARNINGS:
        return said[:MAX_WARNINGS] + [f"... and {len(said) - MAX_WARNINGS} more warnings (not recorded)"]
    return said


def _warned(sec: dict) -> str:
    w = [line[:300] for line in sec.get("warnings", "").splitlines() if line.strip()][:MAX_WARNINGS]
    return f"; the collector reported: {'; '.join(w)}" if w else ""


def facts_from_node(text: str, previous: Facts | None) -> Facts:
    """Facts from a collector upload; anything malformed is an InputError naming the problem."""
    try:
        return _facts_from_node(text, previous)
    except InputError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise InputError(f"node capture: malformed upload ({type(exc).__name__}: {str(exc)[:120]})") from None


def _facts_from_node(text: str, previous: Facts | None) -> Facts:
    sec = sections(text)
    links = {link["ifname"]: link for link in _links(sec)}
    addrs = {a["ifname"]: a for a in _addrs(sec)}
    bonding = {name.split(" ", 1)[1]: parse_bonding(body) for name, body in sec.items() if name.startswith("bond ")}
    sysfs_perm = {link["ifname"]: link["linkinfo"]["info_slave_data"]["perm_hwaddr"]
                  for link in iproute.links_sysfs(sec.get("sysfs-net", ""), "")
                  if (link.get("linkinfo") or {}).get("info_slave_data")}
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
            perm = perm or sysfs_perm.get(name)
            nics.append({"name": name, "mac": (perm or link.get("address", "")).lower(),
                         **({"mtu": link["mtu"]} if link.get("mtu", 1500) != 1500 else {})})
    gateways = {fam: {r.get("dev"): r.get("gateway") for r in _routes(sec, fam) if r.get("dst") == "default"}
                for fam in (4, 6)}
    default_dev = gateways[4] | gateways[6]

    def ips(dev: str) -> dict:
        out: dict[str, Any] = {}
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
            "networks": networks,
            "disks": disks.disks(_blocks(sec), sec.get("by-id", ""), sec.get("pvs", ""), previous), "dns_servers": dns, "dns_search": search[:6]}
    try:
        return Facts.model_validate(data)
    except ValidationError as exc:
        raise InputError("node capture: " + "; ".join(format_errors(exc, "facts."))) from None
