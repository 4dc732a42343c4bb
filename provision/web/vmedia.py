"""GET/HEAD /vmedia/<token>/boot.iso: a node's virtual-media boot ISO (provision/vmedia.py), for
its BMC to fetch (Redfish InsertMedia). Served while the build is live and the node has not
reported `installed`; built on the first request; whole, or the Range a BMC reads it by."""

from __future__ import annotations

from flask import Blueprint, Response, send_file

from .. import tokens
from ..vmedia import ensure_iso
from .deps import services

bp = Blueprint("vmedia", __name__)


def _deny(status: int) -> Response:
    return Response(f"{'not found' if status == 404 else 'forbidden'}\n", status=status, mimetype="text/plain")


@bp.route("/vmedia/<token>/boot.iso", methods=["GET", "HEAD"])
def vmedia(token: str):
    store = services().store
    if not tokens.looks_valid(token):
        return _deny(404)
    build = store.build_by_digest(tokens.digest(token))
    if build is None:
        return _deny(404)
    if not build.boots_install:  # ended, expired, or `installed` was accepted
        return _deny(403)
    path = ensure_iso(services().cfg, store, services().renderer, build)
    return send_file(path, mimetype="application/x-iso9660-image", conditional=True, etag=True, max_age=0)
