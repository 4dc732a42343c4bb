"""Per-MAC boot configs over HTTP: GRUB, pxelinux, iPXE (same names as over TFTP)."""

from __future__ import annotations

from urllib.parse import unquote

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


class BootFastPath:
    """WSGI middleware for the hottest path of a boot storm: a GET of a per-MAC boot config that the
    cache answers is served without Flask's request machinery (about half the cost of a request).
    Anything else, and any miss or error, goes to the Flask app unchanged, which answers as always."""

    _PREFIXES = (("/boot/grub/", "grub"), ("/boot/pxelinux.cfg/", "pxelinux"))

    def __init__(self, app, ext: dict) -> None:
        self.app, self.ext = app, ext

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") == "GET":
            data, kind = self._lookup(environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""))
            if data is not None:
                metrics = self.ext["metrics"]
                metrics.renders.labels(kind).inc()
                metrics.http_requests.labels(f"boot.{kind}", "200").inc()
                start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                                          ("Content-Length", str(len(data)))])
                return [data]
        return self.app(environ, start_response)

    def _lookup(self, path: str, query: str) -> tuple[bytes | None, str]:
        mac, kind = None, ""
        for prefix, k in self._PREFIXES:
            if path.startswith(prefix):
                mac, kind = mac_from_name(path[len(prefix):], k), k
                break
        else:
            if path == "/boot/ipxe" and query.startswith("mac=") and "&" not in query:
                kind = "ipxe"
                try:
                    mac = normalize_mac(unquote(query[4:]))
                except ValueError:
                    mac = None
        if mac is None:
            return None, kind
        try:
            return self.ext["bootcache"].boot_config(kind, mac), kind
        except Exception:  # let the Flask route raise it again and answer it the usual way
            return None, kind
