"""Which fence agents a reinstalled host gets back in the engine.

`retire` records the host's agents (type, address, port, username, order, options) before the host is
removed; `register` puts them back. The engine never shows an agent's password, and provision knows
one password: the node's own BMC's. So an agent pointing at the node's BMC is restored as it was,
with that password; any other (a PDU, a second BMC) cannot be, and is named in the node's events.
A host that had no agent for its BMC gets the one its BMC driver implies: `ipmilan` with
`lanplus=1` for IPMI, `redfish` (oVirt 4.4+) for Redfish, with its port, system and TLS settings."""

from __future__ import annotations

from urllib.parse import urlsplit


def bmc_host(bmc) -> str:
    """The address an engine fence agent names for this BMC (a Redfish URL's host)."""
    if bmc.driver == "redfish":
        return urlsplit(bmc.address).hostname or bmc.address
    return bmc.address


def default_agent(bmc) -> dict:
    if bmc.driver == "redfish":
        url = urlsplit(bmc.address)
        options = {"ssl": "1"} if url.scheme == "https" else {}
        if bmc.verify is False:
            options["ssl_insecure"] = "1"
        if bmc.system:
            options["systems_uri"] = f"/redfish/v1/Systems/{bmc.system}"
        return {"type": "redfish", "address": url.hostname or "", "port": url.port or (443 if url.scheme == "https" else 80),
                "username": bmc.username, "order": 1, "encrypt_options": False, "options": options}
    return {"type": "ipmilan", "address": bmc.address, "port": bmc.port, "username": bmc.username, "order": 1,
            "encrypt_options": False, "options": {"lanplus": "1"}}


def agents_to_restore(bmc, captured: list[dict] | None) -> tuple[list[dict], list[str]]:
    """(agents to add, each with the BMC's password; notes on those that cannot be restored)."""
    mine = [a for a in captured or () if a.get("address") == bmc_host(bmc)]
    others = [a for a in captured or () if a not in mine]
    notes = [f"fence agent {a['type']} {a['address']} (order {a['order']}) not restored: the engine does not show "
             "its password and it is not this node's BMC; add it back in the engine" for a in others]
    if not mine:
        agent = default_agent(bmc)
        if captured:
            agent["order"] = max(a.get("order") or 0 for a in captured) + 1
        mine = [agent]
    return mine, notes


def describe(agent: dict) -> str:
    opts = ",".join(f"{k}={v}" for k, v in sorted(agent.get("options", {}).items()))
    return f"{agent['type']} {agent['address']}:{agent.get('port') or '-'} order {agent.get('order')}" + \
        (f" [{opts}]" if opts else "")
