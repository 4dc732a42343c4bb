"""The Linux bonding driver's modes and options (Documentation/networking/bonding.rst).

Only options from this set are accepted, each with a value of the shape the driver takes,
so a bond option can never carry a comma, a space or a shell metacharacter onto a
kickstart, dracut or setupnetworks line.
"""

from __future__ import annotations

import ipaddress
import re

from .types import normalize_mac, show

MODES = {
    "0": "balance-rr", "1": "active-backup", "2": "balance-xor", "3": "broadcast",
    "4": "802.3ad", "5": "balance-tlb", "6": "balance-alb",
}
MODE_NAMES = set(MODES.values())

_INT = re.compile(r"^[0-9]{1,9}$")
_ENUMS = {
    "ad_select": {"stable", "bandwidth", "count", "0", "1", "2"},
    "all_slaves_active": {"0", "1"},
    "arp_validate": {"none", "active", "backup", "all", "filter", "filter_active", "filter_backup",
                     "0", "1", "2", "3", "4", "5", "6"},
    "arp_all_targets": {"any", "all", "0", "1"},
    "fail_over_mac": {"none", "active", "follow", "0", "1", "2"},
    "lacp_active": {"on", "off", "0", "1"},
    "lacp_rate": {"slow", "fast", "0", "1"},
    "primary_reselect": {"always", "better", "failure", "0", "1", "2"},
    "tlb_dynamic_lb": {"0", "1"},
    "use_carrier": {"0", "1"},
    "xmit_hash_policy": {"layer2", "layer2+3", "layer3+4", "encap2+3", "encap3+4", "vlan+srcmac",
                         "0", "1", "2", "3", "4", "5"},
}
_INTS = {
    "ad_actor_sys_prio", "ad_user_port_key", "arp_interval", "arp_missed_max", "downdelay",
    "lp_interval", "miimon", "min_links", "num_grat_arp", "num_unsol_na", "packets_per_slave",
    "peer_notif_delay", "resend_igmp", "updelay",
}
_IFACE = {"primary", "active_slave"}
OPTIONS = set(_ENUMS) | _INTS | _IFACE | {"arp_ip_target", "ad_actor_system", "ns_ip6_target"}
# Kernel defaults that /proc/net/bonding prints whether set or not: stored as unset, so facts
# from an inventory, the engine and the node compare equal.
DEFAULTS = {"lacp_rate": {"slow", "0"}, "xmit_hash_policy": {"layer2", "0"}, "ad_select": {"stable", "0"}}


def normalize_mode(value: str) -> str:
    v = str(value).strip()
    if v in MODES:
        return MODES[v]
    if v not in MODE_NAMES:
        raise ValueError(f"{show(value)} is not a bonding mode ({', '.join(sorted(MODE_NAMES))})")
    return v


def check_option(name: str, value: str, slaves: list[str]) -> str:
    """Return the normalised value of one bond option, or raise ValueError naming it."""
    value = str(value).strip()
    if name == "mode":
        raise ValueError("'mode' is a field of its own, not an option")
    if name not in OPTIONS:
        raise ValueError(f"{name!r} is not a Linux bonding option")
    if name in _INTS:
        if not _INT.match(value):
            raise ValueError(f"{name}={show(value)}: expected a non-negative integer")
        return str(int(value))
    if name in _ENUMS:
        if value not in _ENUMS[name]:
            raise ValueError(f"{name}={show(value)}: expected one of {', '.join(sorted(_ENUMS[name]))}")
        return value
    if name in _IFACE:
        if value not in slaves:
            raise ValueError(f"{name}={show(value)}: not one of the bond's slaves {slaves}")
        return value
    if name == "ad_actor_system":
        return normalize_mac(value)
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{name}={show(value)}: expected one IP address") from None
    if (name == "arp_ip_target") != (addr.version == 4):
        raise ValueError(f"{name}={show(value)}: wrong address family")
    return str(addr)
