"""Per-MAC boot configs over HTTP: GRUB, pxelinux, iPXE (same names as over TFTP); the TFTP root too."""

from __future__ import annotations

from flask import Blueprint, Response, abort, request

from ..bootnames import mac_from_name
from ..core.boot import BootFiles
from ..domain.types import normalize_mac
from .deps import services
from .mediafiles import send_opened

bp = Blueprint("boot", __name__)


def _boot_files() -> BootFiles:
    cfg = services().cfg
    return BootFiles(cfg.paths.bootfiles, cfg.paths.media, services().bootcache)


def _serve(mac: str | None, kind: str) -> Response:
    served = _boot_files().config(kind, mac)
    if served.data is None:
        abort(404)
    services().metrics.renders.labels(kind).inc()
    return Response(served.data, mimetype="text/plain")


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
    loaders from [paths] bootfiles, and GRUB's per-MAC configs in its prefix directory, exactly as
    over TFTP (core/boot.py)."""
    served = _boot_files().lookup(name)
    if served.data is not None:
        return Response(served.data, mimetype="text/plain")
    if served.file is None:
        abort(404)
    return send_opened(served.file, "application/octet-stream")
