"""Per-MAC boot configs over HTTP: GRUB, pxelinux, iPXE (same names as over TFTP)."""

from __future__ import annotations

from flask import Blueprint, Response, abort, request

from ..bootnames import mac_from_name
from ..domain.types import normalize_mac
from .deps import svc

bp = Blueprint("boot", __name__)


def _serve(mac: str | None, kind: str) -> Response:
    if mac is None:
        abort(404)
    data = svc("bootcache").boot_config(kind, mac)
    if data is None:
        abort(404)
    svc("metrics").renders.labels(kind).inc()
    return Response(data, mimetype="text/plain")


@bp.get("/boot/grub/<path:filename>")
def grub(filename: str):
    return _serve(mac_from_name(filename, "grub"), "grub")


@bp.get("/boot/pxelinux.cfg/<filename>")
def pxelinux(filename: str):
    return _serve(mac_from_name(filename, "pxelinux"), "pxelinux")


@bp.get("/boot/ipxe")
def ipxe():
    try:
        mac = normalize_mac(request.args.get("mac", ""))
    except ValueError:
        abort(404)
    return _serve(mac, "ipxe")
