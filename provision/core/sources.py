"""Whether a request comes from a node: its source address is one of the node's own (the addresses
of its latest facts) or in a network the operator declares for it ([server] install_sources for
the installer's kickstart fetch, collect_sources for a collector upload). The callbacks, the
kickstart and the collector all ask this one question."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable


def from_node(peer: str | None, own: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address],
              declared: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] = ()) -> bool:
    try:
        addr = ipaddress.ip_address(peer or "")
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr in set(own) or any(addr in net for net in declared)
