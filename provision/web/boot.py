"""Per-MAC boot configs over HTTP: GRUB, pxelinux, iPXE (same names as over TFTP); the TFTP root too."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Blueprint, Response, abort, request, send_file

from ..bootnames import mac_from_name
from ..domain.types import normalize_mac
from ..tftp.files import FileResolver
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


@bp.get("/boot/<path:name>")
def tftp_namespace(name: str):
    """The TFTP root over HTTP, for UEFI HTTP boot (DHCP hands it `<public_url>/boot/shimx64.efi`):
    loaders from [paths] bootfiles, and GRUB's per-MAC configs in its prefix directory, resolved
    exactly as over TFTP (tftp/files.py: no traversal, no links out of the root, no templates)."""
    cfg = svc("cfg")
    _outcome, source = FileResolver(cfg.paths.bootfiles, cfg.paths.media, svc("bootcache")).open(name)
    if source is None:
        abort(404)
    if source.data is not None:
        return Response(source.data, mimetype="text/plain")
    try:  # the descriptor the resolver checked, by path, so Range and If-Modified-Since work
        return send_file(f"/proc/self/fd/{source.fd}", mimetype="application/octet-stream",
                         download_name=Path(name).name, conditional=True, etag=False)
    finally:
        os.close(source.fd)
