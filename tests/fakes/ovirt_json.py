"""Build the engine's JSON view of a host (HostNic, NetworkAttachment, Network, as in
ovirt-engine-api-model) from facts, for the fake engine to serve."""

from __future__ import annotations

from provision.domain import Facts
from provision.integrations.ovirt import MODE_NUMBERS


def engine_json(facts: Facts) -> dict:
    nics, ids = [], {}
    for i, n in enumerate(facts.nics):
        ids[n.name] = f"nic-{i}"
        nics.append({"id": ids[n.name], "name": n.name, "mac": {"address": n.mac}, "mtu": n.mtu or 1500})
    for b in facts.bonds:
        ids[b.name] = f"bond-{b.name}"
        opts = [{"name": "mode", "value": MODE_NUMBERS[b.mode]}] + [{"name": k, "value": v} for k, v in b.options.items()]
        nics.append({"id": ids[b.name], "name": b.name, "mtu": b.mtu or 1500,
                     "bonding": {"options": {"option": opts}, "slaves": {"host_nic": [{"id": ids[s]} for s in b.slaves]}}})
    for v in facts.vlans:
        ids[v.ifname] = f"vlan-{v.ifname}"
        nics.append({"id": ids[v.ifname], "name": v.ifname, "vlan": {"id": v.id}, "base_interface": v.parent,
                     **({"mtu": v.mtu} if v.mtu else {})})
    networks, attachments = [], []
    for i, a in enumerate(facts.networks):
        vlan = facts.vlan(a.interface)
        net = {"id": f"net-{a.network}", "name": a.network,
               "usages": {"usage": ["vm", "management"] if a.management else ["vm"]}}
        if vlan:
            net["vlan"] = {"id": vlan.id}
        networks.append(net)
        assignments = []
        for addr, gw, version in ((a.address, a.gateway, "v4"), (a.address6, a.gateway6, "v6")):
            if addr is not None:
                ip = {"address": str(addr.ip), "version": version,
                      "netmask": str(addr.netmask) if version == "v4" else str(addr.network.prefixlen)}
                if gw is not None:
                    ip["gateway"] = str(gw)
                assignments.append({"assignment_method": "static", "ip": ip})
        attachments.append({"id": f"att-{i}", "network": {"id": net["id"]},
                            "host_nic": {"id": ids[vlan.parent if vlan else a.interface]},
                            "ip_address_assignments": {"ip_address_assignment": assignments}})
    return {"nics": nics, "attachments": attachments, "networks": networks}
