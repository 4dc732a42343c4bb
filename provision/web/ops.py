"""Operational endpoints: /healthz, /metrics, and installation media under /media/."""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..core.files import open_media
from .deps import services
from .mediafiles import send_opened

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    try:
        generation = services().store.generation()
    except Exception as exc:  # the database and the TFTP loop are what a health check must report
        return jsonify(status="error", error=type(exc).__name__), 503
    tftp = services().tftp
    if tftp is not None and not tftp.alive:
        return jsonify(status="error", error="tftp loop not running"), 503
    cache, gate = services().bootcache, services().gate
    return jsonify(status="ok", generation=generation, bootcache={"warm": cache.warmed, "nodes": len(cache.node_macs),
                                                                  "synced_generation": cache.seen,
                                                                  "renders": cache.renders},
                   **({"tftp_sessions": tftp.session_count,
                       "tftp_refused": {"busy": tftp.refused_busy, "per-source": tftp.refused_source}}
                      if tftp is not None else {}),
                   **({"http": {"refused": dict(gate.refused)}} if gate is not None else {}))


@bp.get("/metrics")
def metrics():
    return Response(generate_latest(services().metrics.registry), mimetype=CONTENT_TYPE_LATEST)


@bp.route("/media/<path:path>", methods=["GET", "HEAD"])
def media(path: str):
    """Installation media under [paths] media, as core/files.py opens them (the TFTP policy)."""
    _outcome, opened = open_media(services().cfg.paths.media, path)
    if opened is None:
        abort(404)
    return send_opened(opened)
