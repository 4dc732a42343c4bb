"""GET /ks/<token>: the installer's kickstart fetch. Nothing is rendered unless the token is a
live build token and the MACs the installer sends (inst.ks.sendmac) include one of the node's
and none of another node's."""

from __future__ import annotations

from flask import Blueprint, Response, request

from .. import tokens
from ..domain.types import normalize_mac
from .deps import svc

bp = Blueprint("kickstart", __name__)


def sent_macs() -> list[str]:
    """MACs from `X-RHN-Provisioning-MAC-N: eth0 AA:BB:CC:DD:EE:FF` headers."""
    macs = []
    for key, value in request.headers.items():
        if key.lower().startswith("x-rhn-provisioning-mac-"):
            try:
                macs.append(normalize_mac(value.split()[-1]))
            except (ValueError, IndexError):
                macs.append("invalid")
    return macs


def _deny(status: int, reason: str) -> Response:
    svc("metrics").ks_denied.labels(reason).inc()
    return Response(f"{'not found' if status == 404 else 'forbidden'}\n", status=status, mimetype="text/plain")


@bp.get("/ks/<token>")
def kickstart(token: str):
    store = svc("store")
    if not tokens.looks_valid(token):
        return _deny(404, "malformed")
    build = store.build_by_digest(tokens.digest(token))
    if build is None:
        return _deny(404, "unknown")
    if not build.live():
        return _deny(403, "expired")
    macs = sent_macs()
    if macs:
        owners = store.macs()
        mine = {m for m in macs if owners.get(m) == build.node}
        foreign = {m for m in macs if owners.get(m) not in (None, build.node)}
        if not mine or foreign:
            store.add_event(build.node, "ks-denied", f"kickstart refused: MACs {sorted(set(macs))} from "
                            f"{request.remote_addr} do not match the node")
            return _deny(403, "mac")
    rendered = svc("renderer").render_build(build, "kickstart")
    store.mark_ks_fetched(build.id)
    store.add_event(build.node, "ks-fetched", f"kickstart fetched by {request.remote_addr}")
    svc("metrics").renders.labels("kickstart").inc()
    return Response(rendered.text, mimetype="text/plain")
