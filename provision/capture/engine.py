"""Facts from the oVirt engine: /hosts/{id}/nics, /hosts/{id}/networkattachments and the host's
cluster networks /clusters/{cluster}/networks (JSON as in ovirt-engine-api-model: HostNic with
mac.address, bonding.options.option[], bonding.slaves.host_nic[] by id, vlan.id + base_interface;
NetworkAttachment with network.id, host_nic.id, ip_address_assignments.ip_address_assignment[];
Network with name, vlan.id and usages.usage[]). The management role belongs to the cluster
(network_cluster.management): it shows in `usages` only when networks are read in a cluster.

The engine knows networks, not disks or firmware: those come from the previous snapshot; without
one the snapshot is partial (Facts.missing()) until a node or file capture supplies them."""

from __future__ import annotations

import ipaddress

from pydantic import ValidationError

from ..domain import Facts, format_errors
from ..domain.bonding import MODES
from ..errors import InputError
from ..integrations.ovirtjson import integer


def _iface(ip: dict | None) -> str | None:
    if not ip or not ip.get("address"):
        return None
    mask = ip.get("netmask") or ("64" if ip.get("version") == "v6" else None)
    if mask is None:
        return None
    prefix = mask if str(mask).isdigit() else ipaddress.ip_network(f"0.0.0.0/{mask}").prefixlen
    return f"{ip['address']}/{prefix}"


def _mtu(d: dict) -> dict:
    """The engine reports 1500 (as the string "1500", like every scalar) where facts leave MTU unset."""
    mtu = integer(d.get("mtu"), f"host_nic {d.get('name')}: mtu")
    return {"mtu": mtu} if mtu and mtu != 1500 else {}


def facts_from_engine(raw: dict, previous: Facts | None) -> Facts:
    nics_by_id = {n["id"]: n for n in raw.get("nics", [])}
    nics, bonds, vlans = [], [], []
    for n in raw.get("nics", []):
        if n.get("vlan"):
            parent = n.get("base_interface") or n["name"].rsplit(".", 1)[0]
            vid = integer(n["vlan"].get("id"), f"host_nic {n['name']}: vlan.id")
            named = {"name": n["name"]} if n["name"] != f"{parent}.{vid}" else {}  # default names stay implicit
            vlans.append({"id": vid, "parent": parent, **named, **_mtu(n)})
        elif n.get("bonding"):
            opts = {o["name"]: str(o["value"]) for o in n["bonding"].get("options", {}).get("option", [])}
            mode = MODES.get(opts.pop("mode", "0"), opts.get("mode", "balance-rr"))
            slaves = [nics_by_id[s["id"]]["name"] if s.get("id") in nics_by_id else s.get("name")
                      for s in n["bonding"].get("slaves", {}).get("host_nic", [])]
            bonds.append({"name": n["name"], "mode": mode, "slaves": slaves, "options": opts, **_mtu(n)})
        else:
            nics.append({"name": n["name"], "mac": n.get("mac", {}).get("address", ""), **_mtu(n)})
    networks_by_id = {net["id"]: net for net in raw.get("networks", [])}
    vlan_names = {(v["parent"], v["id"]): v.get("name", f"{v['parent']}.{v['id']}") for v in vlans}
    attachments = []
    for att in raw.get("attachments", []):
        net = networks_by_id.get(att.get("network", {}).get("id"), {})
        dev = nics_by_id.get(att.get("host_nic", {}).get("id"), {})
        base = dev.get("name", "")
        vlan_id = integer(net.get("vlan", {}).get("id"), f"network {net.get('name')}: vlan.id")
        iface = vlan_names.get((base, vlan_id), f"{base}.{vlan_id}") if vlan_id else base
        if vlan_id and (base, vlan_id) not in vlan_names:
            vlans.append({"id": vlan_id, "parent": base})
            vlan_names[(base, vlan_id)] = iface
        entry = {"network": net.get("name", ""), "interface": iface,
                 "management": "management" in net.get("usages", {}).get("usage", [])}
        for a in att.get("ip_address_assignments", {}).get("ip_address_assignment", []):
            if a.get("assignment_method") != "static":
                continue
            ip = a.get("ip", {})
            if ip.get("version") == "v6":
                entry["address6"] = _iface(ip)
                if ip.get("gateway"):
                    entry["gateway6"] = ip["gateway"]
            else:
                entry["address"] = _iface(ip)
                if ip.get("gateway"):
                    entry["gateway"] = ip["gateway"]
        attachments.append(entry)
    if not any(a["management"] for a in attachments):
        where = f"cluster {raw['cluster_id']}" if raw.get("cluster_id") else "the host's cluster"
        raise InputError(f"engine capture: the engine names no management network for {where} (no network with "
                         "usage 'management' in its cluster networks attached to this host)")
    data = previous.model_dump(mode="json") if previous is not None else {}
    data.update(nics=nics, bonds=bonds, vlans=vlans, networks=attachments)
    try:
        return Facts.model_validate(data)
    except ValidationError as exc:
        raise InputError("engine capture: " + "; ".join(format_errors(exc, "facts."))) from None
