"""Operational endpoints: /healthz, /metrics, and installation media under /media/."""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify, send_file
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import mediafiles
from .deps import svc

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    try:
        generation = svc("store").generation()
    except Exception as exc:  # the database and the TFTP loop are what a health check must report
        return jsonify(status="error", error=type(exc).__name__), 503
    tftp = svc("tftp")
    if tftp is not None and not tftp.alive:
        return jsonify(status="error", error="tftp loop not running"), 503
    cache, front = svc("bootcache"), svc("front")
    return jsonify(status="ok", generation=generation, bootcache={"warm": cache.warmed, "nodes": len(cache.node_macs),
                                                                  "synced_generation": cache.seen,
                                                                  "renders": cache.renders},
                   **({"tftp_sessions": tftp.session_count} if tftp is not None else {}),
                   **({"http": {"answered_by_front": front.answered, "handed_to_wsgi": front.handed}}
                      if front is not None else {}))


@bp.get("/metrics")
def metrics():
    return Response(generate_latest(svc("metrics").registry), mimetype=CONTENT_TYPE_LATEST)


@bp.route("/media/<path:path>", methods=["GET", "HEAD"])
def media(path: str):
    """The same policy as TFTP: a symlink is followed only while it stays inside the media root
    (so an ISO mounted or linked under it works), never out of it. The HTTP front answers most
    GETs itself (sendfile); HEAD, conditional and multi-range requests come here."""
    target = mediafiles.resolve(svc("cfg").paths.media, path)
    if target is None:
        abort(404)
    return send_file(target, mimetype=mediafiles.content_type(target.name), etag=mediafiles.etag(target.stat()),
                     conditional=True)
