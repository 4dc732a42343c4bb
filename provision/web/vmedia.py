"""GET/HEAD /vmedia/<token>/boot.iso: a node's virtual-media boot ISO (provision/vmedia.py), for
its BMC to fetch (Redfish InsertMedia). Served while the build is live and the node has not
reported `installed`; built on the first request; whole, or the Range a BMC reads it by."""

from __future__ import annotations

from flask import Blueprint, Response, send_file

from ..core.kickstart import installing_build
from ..vmedia import ensure_iso
from .deps import services

bp = Blueprint("vmedia", __name__)


def _deny(status: int) -> Response:
    return Response(f"{'not found' if status == 404 else 'forbidden'}\n", status=status, mimetype="text/plain")


@bp.route("/vmedia/<token>/boot.iso", methods=["GET", "HEAD"])
def vmedia(token: str):
    store = services().store
    decision = installing_build(store, token)  # ended, expired, or `installed` was accepted: refused
    if not decision.allowed or decision.build is None:
        return _deny(decision.status)
    build = decision.build
    path = ensure_iso(services().cfg, store, services().renderer, build)
    return send_file(path, mimetype="application/x-iso9660-image", conditional=True, etag=True, max_age=0)
