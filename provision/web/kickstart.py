"""GET /ks/<token>: the installer's kickstart fetch. Nothing is rendered unless the token is a
live build token whose node has not reported `installed` yet, and the MACs the installer sends
(inst.ks.sendmac, always on our kernel command lines) include one of the node's and none of
another node's: a request without them is refused (the token alone is readable from the
unauthenticated per-MAC boot configs). HEAD answers the same checks but records no fetch."""

from __future__ import annotations

from flask import Blueprint, Response, request

from .. import tokens
from ..domain.types import normalize_mac
from .deps import svc

bp = Blueprint("kickstart", __name__)


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


def sent_macs() -> list[str]:
    return macs_from(v for k, v in request.headers.items() if k.lower().startswith(MAC_HEADER))


def _deny(status: int, reason: str) -> Response:
    svc("metrics").ks_denied.labels(reason).inc()
    return Response(f"{'not found' if status == 404 else 'forbidden'}\n", status=status, mimetype="text/plain")


@bp.route("/ks/<token>", methods=["GET", "HEAD"])
def kickstart(token: str):
    store = svc("store")
    if not tokens.looks_valid(token):
        return _deny(404, "malformed")
    build = store.build_by_digest(tokens.digest(token))
    if build is None:
        return _deny(404, "unknown")
    if not build.live():
        return _deny(403, "expired")
    if not build.boots_install:  # `installed` was accepted: the install is over, so is the kickstart
        return _deny(403, "installed")
    macs = sent_macs()
    if not macs:
        store.add_event(build.node, "ks-denied", f"kickstart refused: no X-RHN-Provisioning-MAC header from "
                        f"{request.remote_addr}")
        return _deny(403, "no-mac")
    owners = {m: store.node_for_mac(m) for m in set(macs[:MAX_MAC_HEADERS])}
    mine = {m for m, o in owners.items() if o == build.node}
    foreign = {m for m, o in owners.items() if o not in (None, build.node)}
    if not mine or foreign or len(macs) > MAX_MAC_HEADERS:
        store.add_event(build.node, "ks-denied", f"kickstart refused: MACs {sorted(set(macs))[:16]} from "
                        f"{request.remote_addr} do not match the node")
        return _deny(403, "mac")
    data = svc("bootcache").kickstart(build)
    if request.method == "HEAD":
        return Response(mimetype="text/plain", headers={"Content-Length": str(len(data))})
    store.mark_ks_fetched(build.id, f"kickstart fetched by {request.remote_addr}")
    svc("metrics").renders.labels("kickstart").inc()
    return Response(data, mimetype="text/plain")
