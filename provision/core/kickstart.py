"""Whether an installer gets its kickstart: GET /ks/<token> is answered only when every rule holds,
in this order (the first that fails is the answer):

| rule                                                      | else        | reason    |
|-----------------------------------------------------------|-------------|-----------|
| the token is well-formed                                  | 404         | malformed |
| it is a build token the store knows                       | 404         | unknown   |
| the build is live (not ended, not expired)                | 403         | expired   |
| it still boots the installer (no `installed` accepted)    | 403         | installed |
| the installer sent X-RHN-Provisioning-MAC headers         | 403         | no-mac    |
| at most MAX_MAC_HEADERS, one of them the node's, none another node's | 403 | mac   |
| the fetch comes from the node's own address, or from [server] install_sources | 403 | source |

The token alone is readable from the unauthenticated per-MAC boot configs and the MACs are in
their file names: only the source address binds the fetch to the machine being installed."""

from __future__ import annotations

from dataclasses import dataclass

from .. import tokens
from ..domain.types import normalize_mac
from ..store import Build
from .sources import from_node

MAC_HEADER = "x-rhn-provisioning-mac-"
# anaconda sends one header per /sys/class/net entry (inst.ks.sendmac): the node's own NICs, and a BMC's
# USB NIC, InfiniBand ports, dracut's bond and VLAN devices, ... A bound against a header flood, not
# a count of NICs: far above any host's, and 256 headers are ~13 KB, inside every HTTP server's limit
MAX_MAC_HEADERS = 256


def macs_from(values) -> list[str]:
    """MACs from the values of `X-RHN-Provisioning-MAC-N: eth0 AA:BB:CC:DD:EE:FF` headers."""
    macs = []
    for value in values:
        try:
            macs.append(normalize_mac(value.split()[-1]))
        except (ValueError, IndexError):
            macs.append("invalid")
    return macs


@dataclass(frozen=True)
class Decision:
    status: int  # 200, or the refusal's
    reason: str  # "ok", or the rule that failed (the ks_denied metric's label)
    build: Build | None = None
    detail: str = ""  # for the node's event log, when there is a node to tell

    @property
    def allowed(self) -> bool:
        return self.status == 200


def installing_build(store, token: str) -> Decision:
    """The first four rules: what the kickstart and the virtual-media ISO (web/vmedia.py) are both
    served under, a live build token whose node still boots the installer."""
    if not tokens.looks_valid(token):
        return Decision(404, "malformed")
    build = store.build_by_digest(tokens.digest(token))
    if build is None:
        return Decision(404, "unknown")
    if not build.live():
        return Decision(403, "expired", build)
    if not build.boots_install:
        return Decision(403, "installed", build)
    return Decision(200, "ok", build)


def decide(store, token: str, macs: list[str], peer: str | None, install_sources=()) -> Decision:
    first = installing_build(store, token)
    if not first.allowed:
        return first
    build = first.build
    assert build is not None
    if not macs:
        return Decision(403, "no-mac", build, f"kickstart refused: no X-RHN-Provisioning-MAC header from {peer}")
    owners = {m: store.node_for_mac(m) for m in set(macs[:MAX_MAC_HEADERS])}
    mine = any(o == build.node for o in owners.values())
    foreign = any(o not in (None, build.node) for o in owners.values())
    if not mine or foreign or len(macs) > MAX_MAC_HEADERS:
        return Decision(403, "mac", build, f"kickstart refused: MACs {sorted(set(macs))[:16]} from {peer} "
                                           "do not match the node")
    facts = store.get(build.node).node.facts
    own = [a.ip for a in facts.addresses()] if facts is not None else []
    if not from_node(peer, own, install_sources):
        return Decision(403, "source", build, f"kickstart refused: fetched from {peer}, not one of the node's "
                                              "addresses nor in [server] install_sources")
    return Decision(200, "ok", build)
