"""Fact collection from a node: GET /collect.sh?token=T (the collector script) and
POST /api/v1/collect/<token> (its output). The token is one-time and names the node."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ..capture import service
from .deps import services

bp = Blueprint("collect", __name__)


@bp.get("/collect.sh")
def collect_script():
    token = request.args.get("token", "")
    text = service.collector_script(services(), services().renderer.env, token)
    if text is None:
        return Response("unknown, used or expired token\n", status=403, mimetype="text/plain")
    return Response(text, mimetype="text/x-shellscript")


@bp.post("/api/v1/collect/<token>")
def collect_upload(token: str):
    status, body = service.accept_upload(services(), token, request.get_data(as_text=True),
                                         request.remote_addr or "")
    return jsonify(body), status
